/* placeholder: pipe_pool.c is being written */
