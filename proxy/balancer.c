/* placeholder: balancer.c is being written */
