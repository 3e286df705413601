#include "faults.h"
void fx_add_fd_exhaustion(Suite *s)
{
    (void)s;
}
void fx_add_pipe_exhaustion(Suite *s)
{
    (void)s;
}
