/* test_faults.c: fault injection against the real splicer, in network namespaces of its own
 * (faults.h): one ctest entry per fault, `faults.<case>`, run as root; each is skipped (exit 77,
 * with a line saying why) when not root or when ip, iptables or tc is missing. */
#include "faults.h"

#include <stdlib.h>

#define NEEDS SPH_NEED_ROOT
#define TOOLS                                                                                      \
    {                                                                                              \
        "ip", "iptables", "tc", NULL                                                               \
    }

static const struct sph_group groups[] = {
    {"loss", NEEDS, TOOLS, fx_add_loss},
    {"blackhole", NEEDS, TOOLS, fx_add_blackhole},
    {"reset", NEEDS, TOOLS, fx_add_reset},
    {"slow_client", NEEDS, TOOLS, fx_add_slow_client},
    {"frozen", NEEDS, TOOLS, fx_add_frozen},
    {"stuck_peers", NEEDS, TOOLS, fx_add_stuck_peers},
    {"fd_exhaustion", NEEDS, TOOLS, fx_add_fd_exhaustion},
    {"pipe_exhaustion", NEEDS, {"ip", "iptables", "tc", "setpriv"}, fx_add_pipe_exhaustion},
};

int main(int argc, char **argv)
{
    fx_init_names();
    return sph_main(argc, argv, "faults", groups, sizeof(groups) / sizeof(groups[0]));
}
