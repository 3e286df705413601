/* main.c: command line. Loads and validates the config, raises the descriptor limit, then hands
 * the config to the server. */
#include "common.h"
#include "config.h"
#include "log.h"
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: splicer -c FILE [-t] [--takeover PATH]\n"
                 "       splicer --version | -h\n"
                 "\n"
                 "  -c, --config FILE  YAML configuration to run (required)\n"
                 "  -t, --test         check the configuration and exit: 0 if valid, 1 if not\n"
                 "  --takeover PATH    binary upgrade: take the listening sockets of the splicer\n"
                 "                     serving the control socket PATH, which then drains and\n"
                 "                     exits; on any failure this one exits 1 and it goes on\n"
                 "  -v, --version      print the version and exit\n"
                 "  -h, --help         print this help and exit\n"
                 "\n"
                 "Runs in the foreground and logs to stderr. SIGTERM or SIGINT stops accepting\n"
                 "and lets open connections finish for up to shutdown_timeout; a second signal\n"
                 "closes them at once.\n");
}

static unsigned long long rlim_value(rlim_t v)
{
    return v == RLIM_INFINITY ? ~0ull : (unsigned long long)v;
}

/* Every connection takes 2 descriptors and up to 4 more for pipes, and the usual soft default
 * (1024) would stop splicer at a few hundred connections while the hard limit allows far more:
 * take all of it, as servers do, and say what it is. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        sp_log_warn("file descriptors: cannot read the limit: %s", strerror(errno));
        return;
    }
    unsigned long long was = rlim_value(rl.rlim_cur), hard = rlim_value(rl.rlim_max);
    if (rl.rlim_cur == rl.rlim_max) {
        sp_log_info("file descriptors: limit %llu (soft and hard)", hard);
        return;
    }
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        sp_log_warn("file descriptors: cannot raise the soft limit %llu to the hard limit %llu: %s",
                    was, hard, strerror(errno));
        return;
    }
    sp_log_info("file descriptors: raised the soft limit from %llu to %llu (the hard limit)", was,
                hard);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},        {"help", no_argument, NULL, 'h'},
        {"takeover", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0},
    };
    struct sp_server_opts run = {0};
    const char *path = NULL;
    bool test_only = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("splicer %s\n", SPLICER_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'T':
            run.takeover = optarg;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    struct sp_config *cfg = NULL;
    struct sp_config_error err;
    if (sp_config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err.text);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "%s: configuration OK\n", path);
        sp_config_free(cfg);
        return 0;
    }
    sp_log_set_level(cfg->log_level);
    raise_fd_limit();
    return sp_server_run(cfg, &run);
}
