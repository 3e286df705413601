/* run.c: what the host offers the tests (IPv6, root, programs) and the main() of a test binary
 * whose cases are split into groups by what they need, so that a case that cannot run here is
 * reported as a skipped ctest entry instead of passing by doing nothing. See harness.h. */
#include "harness.h"

#include <check.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CAP_SYS_ADMIN_BIT    21 /* linux/capability.h */
#define CAP_SYS_RESOURCE_BIT 24

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t cap, const char *fmt, ...)
{
    if (why == NULL || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

bool sph_have_ipv6(char *why, size_t cap)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        say(why, cap, "no IPv6 on this host (socket(AF_INET6): %s)", strerror(errno));
        return false;
    }
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (!ok)
        say(why, cap, "no IPv6 on this host (bind [::1]:0: %s)", strerror(errno));
    close(fd);
    return ok;
}

/* The effective capability set from /proc/self/status; 0 when unreadable. */
static unsigned long long cap_eff(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (f == NULL)
        return 0;
    char line[256];
    unsigned long long caps = 0;
    for (int i = 0; i < 200 && fgets(line, sizeof(line), f) != NULL; i++) {
        if (sscanf(line, "CapEff: %llx", &caps) == 1)
            break;
    }
    fclose(f);
    return caps;
}

bool sph_have_root(char *why, size_t cap)
{
    if (geteuid() != 0) {
        say(why, cap, "not root (uid %u)", (unsigned)geteuid());
        return false;
    }
    /* The kernel's test for the per-user pipe limits (pipe_is_unprivileged_user). */
    unsigned long long caps = cap_eff();
    if ((caps & (1ULL << CAP_SYS_RESOURCE_BIT | 1ULL << CAP_SYS_ADMIN_BIT)) == 0) {
        say(why, cap,
            "root without CAP_SYS_RESOURCE or CAP_SYS_ADMIN (a container?): the "
            "kernel's per-user pipe limits apply as to any user");
        return false;
    }
    return true;
}

bool sph_can_inspect_fds(char *why, size_t cap)
{
    const char *sleep_bin = sph_tool("sleep");
    bool other = getenv("SPLICER_REAL_BIN") != NULL; /* set by tests/scripts/unprivileged.sh */
    int p[2];
    if (sleep_bin == NULL || pipe2(p, O_CLOEXEC) != 0) {
        say(why, cap, "cannot start a probe process (%s)",
            sleep_bin == NULL ? "no sleep" : strerror(errno));
        return false;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        struct passwd *pw = other ? getpwnam("nobody") : NULL;
        if (other && (pw == NULL || setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
                      setuid(pw->pw_uid) != 0))
            _exit(127);
        /* exec, as splicer's start does: a process that only changed user is not dumpable */
        execl(sleep_bin, "sleep", "30", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char c;
    while (pid > 0 && read(p[0], &c, 1) < 0 && errno == EINTR)
        ; /* end of file once the child has exec'd (or died) */
    close(p[0]);
    if (pid < 0) {
        say(why, cap, "cannot start a probe process (fork: %s)", strerror(errno));
        return false;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fdinfo/0", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int err = errno;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (fd < 0) {
        say(why, cap, "cannot read the fdinfo of a process running as %s (%s)",
            other ? "nobody, as splicer does here" : "this user", strerror(err));
        return false;
    }
    close(fd);
    return true;
}

/* Is dir/name an executable file? Then copy the path to out. */
static bool found_in(const char *dir, size_t dlen, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%.*s/%s", (int)dlen, dlen > 0 ? dir : ".", name);
    return n > 0 && (size_t)n < cap && access(out, X_OK) == 0;
}

static bool search(const char *dirs, const char *name, char *out, size_t cap)
{
    for (const char *p = dirs; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ':');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (found_in(p, len, name, out, cap))
            return true;
        p = end != NULL ? end + 1 : NULL;
    }
    return false;
}

/* Programs looked up so far; path is "" when not found. */
static struct tool {
    char name[32];
    char path[256];
} tools[8];
static size_t ntools;

const char *sph_tool(const char *name)
{
    struct tool *t = NULL;
    for (size_t i = 0; i < ntools && t == NULL; i++)
        t = strcmp(tools[i].name, name) == 0 ? &tools[i] : NULL;
    if (t == NULL && ntools < sizeof(tools) / sizeof(tools[0])) {
        t = &tools[ntools++];
        snprintf(t->name, sizeof(t->name), "%s", name);
        if (strchr(name, '/') != NULL ||
            !(search(getenv("PATH"), name, t->path, sizeof(t->path)) ||
              search("/usr/local/sbin:/usr/sbin:/sbin", name, t->path, sizeof(t->path))))
            t->path[0] = '\0';
    }
    return t != NULL && t->path[0] != '\0' ? t->path : NULL;
}

/* Why group g cannot run here, into why; false when it can. */
static bool missing(const struct sph_group *g, char *why, size_t cap)
{
    if ((g->needs & SPH_NEED_IPV6) != 0 && !sph_have_ipv6(why, cap))
        return true;
    if ((g->needs & SPH_NEED_ROOT) != 0 && !sph_have_root(why, cap))
        return true;
    if ((g->needs & SPH_NEED_FDS) != 0 && !sph_can_inspect_fds(why, cap))
        return true;
    for (size_t i = 0; i < SPH_TOOLS_MAX && g->tools[i] != NULL; i++) {
        if (sph_tool(g->tools[i]) == NULL) {
            say(why, cap, "%s is not installed (not in PATH, /usr/sbin or /sbin)", g->tools[i]);
            return true;
        }
    }
    return false;
}

/* Runs one group: 0 when every case passed, 1 when one failed, SPH_SKIP when it cannot run. */
static int run_group(const char *suite, const struct sph_group *g)
{
    char name[96], why[256];
    snprintf(name, sizeof(name), "%s%s%s", suite, g->name != NULL ? "." : "",
             g->name != NULL ? g->name : "");
    if (missing(g, why, sizeof(why))) {
        printf("SKIP %s: %s\n", name, why);
        fflush(stdout);
        return SPH_SKIP;
    }
    Suite *s = suite_create(name);
    g->add(s);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

int sph_main(int argc, char **argv, const char *suite, const struct sph_group *groups,
             size_t ngroups)
{
    const char *want = argc > 1 ? argv[1] : NULL;
    bool all = want != NULL && strcmp(want, "all") == 0;
    int ran = 0, skipped = 0, failed = 0;
    for (size_t i = 0; i < ngroups; i++) {
        const char *n = groups[i].name;
        bool chosen = all || (want == NULL ? n == NULL : n != NULL && strcmp(n, want) == 0);
        if (!chosen)
            continue;
        int rc = run_group(suite, &groups[i]);
        ran += rc != SPH_SKIP;
        skipped += rc == SPH_SKIP;
        failed += rc == 1;
    }
    if (ran + skipped == 0) {
        fprintf(stderr, "usage: %s [all", argv[0]);
        for (size_t i = 0; i < ngroups; i++) {
            if (groups[i].name != NULL)
                fprintf(stderr, " | %s", groups[i].name);
        }
        fprintf(stderr, "]  (no argument: the main group)\n");
        return 2;
    }
    if (failed > 0)
        return EXIT_FAILURE;
    return ran > 0 ? EXIT_SUCCESS : SPH_SKIP;
}
