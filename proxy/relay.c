/* placeholder: relay.c is being written */
