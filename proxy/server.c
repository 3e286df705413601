/* placeholder: server.c is being written */
