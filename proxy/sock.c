/* placeholder: sock.c is being written */
