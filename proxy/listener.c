/* placeholder: listener.c is being written */
