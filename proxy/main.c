/* main.c: command line. Loads and validates the config, then hands it to the server. */
#include "common.h"
#include "config.h"
#include "log.h"
#include "server.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: splicer -c FILE [-t]\n"
                 "       splicer --version | -h\n"
                 "\n"
                 "  -c, --config FILE  YAML configuration to run (required)\n"
                 "  -t, --test         check the configuration and exit: 0 if valid, 1 if not\n"
                 "  -v, --version      print the version and exit\n"
                 "  -h, --help         print this help and exit\n"
                 "\n"
                 "Runs in the foreground and logs to stderr. SIGTERM or SIGINT stops accepting\n"
                 "and lets open connections finish for up to shutdown_timeout; a second signal\n"
                 "closes them at once.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
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
    return sp_server_run(cfg);
}
