/* placeholder: worker.c is being written */
