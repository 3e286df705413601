/* placeholder: upstream.c is being written */
