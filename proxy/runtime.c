/* placeholder: runtime.c is being written */
