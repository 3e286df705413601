/* placeholder: session.c is being written */
