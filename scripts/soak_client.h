/* soak_client.h: what the parts of soak-client (scripts/soak.sh's load and fault peers) share:
 * the options, the event log, time, random numbers and dialing. libc and pthreads only. */
#ifndef SOAK_CLIENT_H
#define SOAK_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SOAK_NAME_MAX   63 /* longest backend name line, without its '\n' */
#define SOAK_MAX_HELLOS 8

struct soak_opts {
    const char *cmd;
    struct sockaddr_storage addr; /* --connect, or --listen for the resetter */
    socklen_t addrlen;
    const char *name;  /* --name: the resetter's name line */
    int lanes;         /* --lanes: parallel transfers */
    int conns;         /* --conns: idle connections held */
    int abort_pct;     /* --abort-pct: bulk transfers the client aborts on purpose */
    int pause_ms;      /* --pause-ms: pause between two exchanges of one lane */
    double seconds;    /* --seconds: no new work starts after this */
    double ping_every; /* --ping-every: mean seconds between two pings of an idle connection */
    uint64_t min, max; /* --min/--max: bulk transfer sizes */
    int nhello;
    struct {
        uint8_t *buf; /* owned; the captured ClientHello */
        size_t len;
        char name[SOAK_NAME_MAX + 1]; /* the backend its SNI routes to */
    } hello[SOAK_MAX_HELLOS];
};

/* Parsed once by main before any thread starts, read-only afterwards. */
extern struct soak_opts soak_opt;
/* Set by SIGTERM/SIGINT: stop now, report what is in progress as "stopped". */
extern atomic_bool soak_stop;

/* Wall-clock milliseconds since the epoch (comparable with `date +%s%3N` in soak.sh). */
int64_t soak_now_ms(void);

/* True while new work may start: no signal yet and --seconds not over. Any thread. */
bool soak_may_start(void);

/* Appends "T0 NOW LOAD RESULT BACKEND BYTES DETAIL\n" to the log with one write(2). Empty
 * backend or detail are written as "-". Any thread. */
void soak_log(int64_t t0, const char *load, const char *result, const char *backend, uint64_t bytes,
              const char *detail);

/* xorshift64*: the next number of state *s (never 0). */
uint64_t soak_rnd(uint64_t *s);

/* A fresh non-zero seed, different for each call in the process. Any thread. */
uint64_t soak_seed(void);

/* Starts a non-blocking connect to --connect. Returns the socket (connect in progress or done)
 * or -errno. */
int soak_dial_start(void);

/* Closes fd with SO_LINGER 0, so the peer gets a reset. */
void soak_close_reset(int fd);

/* The idle pool and the resetting backend (soak_peers.c). Return the process exit code. */
int soak_idle_main(void);
int soak_resetter_main(void);

#endif
