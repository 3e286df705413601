/* placeholder: parse.c is being written */
