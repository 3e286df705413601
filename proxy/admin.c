/* admin.c: the admin HTTP endpoint. libmicrohttpd (MHD) parses HTTP; a thread of our own runs
 * it, routes requests to the sp_admin_ops table, decides who may change state, and bounds how
 * long any client may hold a connection. It shares nothing with the relay but what the ops copy
 * out, so a slow or hostile admin client costs the relay nothing.
 *
 * Authorization. Reading (/metrics, /status, /healthz, and the status page on /) is open:
 * probes and scrapers need it. Drain and enable change state and are POST only (GET and HEAD
 * get 405), and, in this order:
 *  - refused (403) when the request carries Origin, or Sec-Fetch-Site other than "none": it
 *    comes from a script in a browser, and no page of ours ever needs to send one;
 *  - with admin.token_file: `Authorization: Bearer <token>` is required, compared in constant
 *    time; a missing or wrong one gets 401 with `WWW-Authenticate: Bearer`;
 *  - without a token, on a listener beyond loopback (anything but 127.0.0.0/8 and ::1): 403;
 *  - without a token, on loopback: the request must not be one a cross-site HTML form could
 *    send: it needs the header `X-Splicer-Admin` or a JSON Content-Type (neither crosses sites
 *    without a CORS preflight, which this endpoint never grants), and a Host that is an IP
 *    address or localhost (a DNS-rebinding page names its own host). Else 403.
 *
 * Slow clients. MHD's own timeout is an idle timeout, and its connection limit is a plain cap:
 * 32 clients sending one header byte every 3 s held every slot and kept /healthz out for as long
 * as they liked. So MHD runs in "external polling" mode on our thread (serve()): the thread polls
 * MHD's epoll descriptor, calls MHD_run, then sweeps a table of the open connections (struct
 * conn, one per socket, kept by MHD's connection notifications and the request callbacks):
 *  - a request has READ_DEADLINE_MS from its start (the accept, or the end of the previous
 *    reply on a kept-alive connection) until it is read whole (headers and body), and the reply
 *    then has REPLY_DEADLINE_MS to be sent; past either, the socket is shut down;
 *  - past SOFT_LIMIT open connections, each new one shuts down the oldest that is still reading
 *    its request (or, if none is, the oldest being answered), so a probe always gets in; MHD's
 *    own limit (HARD_LIMIT) leaves room for those while they close, and bounds the descriptors
 *    the endpoint can take.
 * The socket is shut down (shutdown(2)), never closed: MHD sees the hang-up at its next run and
 * closes it itself. Every MHD callback and that shutdown run on this one thread (MHD_stop_daemon
 * runs its last callbacks on the main thread, after the join), so an entry can never name a
 * descriptor that MHD already closed (MHD notifies the close before it closes, daemon.c).
 *
 * What a bad request gets from libmicrohttpd 0.9.75 (Debian 12), pinned by test_admin.c:
 *  - a request line with a bad shape ("GET /", a fourth token, "FOO/1.1" for the version), a
 *    header line without ':' or a bad Content-Length: 400 Bad Request, then a close;
 *  - a request line longer than the 16 KiB per-connection memory: 414 URI Too Long, then a close;
 *    headers that outgrow it: 431 Request Header Fields Too Large, then a close;
 *  - a one-word request line ("GARBAGE"): closed at once WITHOUT a reply. The library does this
 *    before any callback of ours runs, so no 400 can be sent for it short of owning the parser;
 *  - bytes that never complete a request (binary junk, an unknown Transfer-Encoding waiting for
 *    a body, a trickle): closed at READ_DEADLINE_MS, or after IDLE_TIMEOUT_S of silence,
 *    without a reply;
 *  - a declared body above BODY_MAX: 413 before the body is read, then a close; a chunked body
 *    that grows past it: closed without a reply. */
#include "admin.h"
#include "admin_page.h"
#include "admin_path.h"
#include "log.h"
#include "metrics.h"
#include "sock.h"
#include "strbuf.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SOFT_LIMIT        64u   /* open connections before the oldest reader is evicted */
#define HARD_LIMIT        128u  /* MHD's limit: SOFT_LIMIT plus evicted ones still closing */
#define IDLE_TIMEOUT_S    5u    /* MHD's: silence in any phase */
#define READ_DEADLINE_MS  5000u /* a whole request, from its start */
#define REPLY_DEADLINE_MS 30000u
#define CONN_MEMORY       ((size_t)16 * 1024) /* request line + headers must fit in here */
#define BODY_MAX          4096u               /* POST bodies are read and dropped up to this */

enum phase {
    PH_FREE = 0, /* the slot is unused */
    PH_READING,  /* waiting for (the rest of) a request */
    PH_REPLYING, /* a reply is queued */
    PH_CLOSING,  /* shut down by us; MHD has yet to notice and close it */
};

/* One open connection. Admin thread only (see the header comment). */
struct conn {
    enum phase phase;
    int fd;            /* borrowed from MHD; valid while phase != PH_FREE */
    uint64_t since;    /* ms: the current request's start; eviction takes the smallest */
    uint64_t deadline; /* ms: shut down at this time */
};

struct sp_admin {
    struct MHD_Daemon *daemon; /* owned */
    struct sp_admin_ops ops;   /* a copy */
    void *ctx;                 /* borrowed; the ops' argument */
    bool loopback;             /* the listener is on 127.0.0.0/8 or ::1 */
    char listen[64];           /* as configured, for messages */

    pthread_t thread; /* runs serve() */
    bool thread_started;
    int listen_fd; /* borrowed: the daemon owns it once started */
    int epoll_fd;  /* borrowed from the daemon: readable when MHD has work */
    int wake_fd;   /* owned eventfd: sp_admin_stop wakes serve() with it */
    atomic_bool stop;

    pthread_mutex_t lock; /* guards token between a reload (main thread) and requests */
    char *token;          /* owned; NULL without admin.token_file */
    size_t token_len;

    struct conn conns[HARD_LIMIT]; /* admin thread only */
    unsigned open;                 /* conns READING or REPLYING */
};

/* Per request, between the access handler's calls. */
struct request {
    uint64_t body; /* bytes of body seen and dropped */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *header_value(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* ---- the connection table --------------------------------------------------------------- */

static struct conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

static void doom(struct sp_admin *a, struct conn *k, const char *why)
{
    shutdown(k->fd, SHUT_RDWR);
    k->phase = PH_CLOSING;
    a->open--;
    sp_log_debug("admin: connection %d shut down: %s", k->fd, why);
}

/* True when k should go before old: readers before connections being answered, then the one
 * whose request started first. */
static bool evict_before(const struct conn *k, const struct conn *old)
{
    if (old == NULL || k->phase != old->phase)
        return old == NULL || k->phase == PH_READING;
    return k->since < old->since;
}

/* Makes room for `fresh`: shuts down the connection that has waited longest for its request
 * (or, when every other one is being answered, the oldest of those). */
static void evict_oldest(struct sp_admin *a, const struct conn *fresh)
{
    struct conn *old = NULL;
    for (unsigned i = 0; i < HARD_LIMIT; i++) {
        struct conn *k = &a->conns[i];
        bool live = k->phase == PH_READING || k->phase == PH_REPLYING;
        if (k != fresh && live && evict_before(k, old))
            old = k;
    }
    if (old != NULL)
        doom(a, old, "the oldest of too many unfinished requests");
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct sp_admin *a = cls;
    struct conn *k = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (k != NULL && k->phase != PH_CLOSING)
            a->open--;
        if (k != NULL)
            *k = (struct conn){.phase = PH_FREE, .fd = -1};
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    for (unsigned i = 0; k == NULL && ci != NULL && i < HARD_LIMIT; i++) {
        if (a->conns[i].phase == PH_FREE)
            k = &a->conns[i];
    }
    if (k == NULL) {
        /* cannot happen: MHD frees a slot (NOTIFY_CLOSED) before it counts one less */
        if (ci != NULL)
            shutdown(ci->connect_fd, SHUT_RDWR);
        return;
    }
    uint64_t now = now_ms();
    *k = (struct conn){PH_READING, ci->connect_fd, now, now + READ_DEADLINE_MS};
    *socket_context = k;
    if (++a->open > SOFT_LIMIT)
        evict_oldest(a, k);
}

/* A reply is queued: the request was read in time, the reply gets its own deadline. */
static void replying(struct MHD_Connection *c)
{
    struct conn *k = conn_of(c);
    if (k != NULL && k->phase == PH_READING) {
        k->phase = PH_REPLYING;
        k->deadline = now_ms() + REPLY_DEADLINE_MS;
    }
}

/* Shuts down the connections past their deadline; returns the next deadline (UINT64_MAX when
 * none). */
static uint64_t sweep(struct sp_admin *a, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < HARD_LIMIT; i++) {
        struct conn *k = &a->conns[i];
        if (k->phase != PH_READING && k->phase != PH_REPLYING)
            continue;
        if (now >= k->deadline)
            doom(a, k,
                 k->phase == PH_READING ? "request not read in time" : "reply not sent in time");
        else if (k->deadline < next)
            next = k->deadline;
    }
    return next;
}

/* ---- replies ---------------------------------------------------------------------------- */

/* Queues r (NULL: out of memory, MHD_NO) and destroys our reference to it. */
static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r)
{
    if (r == NULL)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES)
        replying(c);
    return ok;
}

static enum MHD_Result reply_h(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len, const char *hname, const char *hval)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (ok == MHD_YES && hname != NULL)
        ok = MHD_add_response_header(r, hname, hval);
    /* no caching proxy should serve stale metrics or a stale health answer */
    if (ok == MHD_YES)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (ok != MHD_YES) {
        MHD_destroy_response(r);
        return ok;
    }
    return queue(c, status, r);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len)
{
    return reply_h(c, status, type, body, len, NULL, NULL);
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, const char *json)
{
    return reply(c, status, "application/json", json, strlen(json));
}

static enum MHD_Result reply_405(struct MHD_Connection *c, const char *allow)
{
    static const char text[] = "method not allowed\n";
    return reply_h(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", text,
                   sizeof(text) - 1, MHD_HTTP_HEADER_ALLOW, allow);
}

/* ---- GET routes ------------------------------------------------------------------------- */

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* /metrics and /status: a fresh snapshot, rendered on this thread. */
static enum MHD_Result serve_stats(struct sp_admin *a, struct MHD_Connection *c, bool json)
{
    struct sp_stats *st = NULL;
    struct sp_strbuf sb;

    int rc = a->ops.snapshot(a->ctx, &st);
    if (rc != 0) {
        sp_log_warn("admin: snapshot: %s", strerror(-rc));
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "snapshot failed\n");
    }
    sp_strbuf_init(&sb);
    rc = json ? sp_metrics_render_status(st, &sb) : sp_metrics_render(st, &sb);
    sp_stats_free(st);
    enum MHD_Result ok;
    if (rc != 0)
        ok = reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    else
        ok = reply(c, MHD_HTTP_OK, json ? SP_STATUS_CONTENT_TYPE : SP_METRICS_CONTENT_TYPE, sb.data,
                   sb.len);
    sp_strbuf_deinit(&sb);
    return ok;
}

static enum MHD_Result serve_healthz(struct sp_admin *a, struct MHD_Connection *c)
{
    if (a->ops.draining(a->ctx))
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "draining\n");
    return reply_text(c, MHD_HTTP_OK, "ok\n");
}

/* ---- who may change state (see the header comment) -------------------------------------- */

/* Equal in a time that depends on the secret's length only. */
static bool same_secret(const char *secret, size_t slen, const char *given, size_t glen)
{
    volatile unsigned char diff = slen != glen;
    for (size_t i = 0; i < slen; i++)
        diff |= (unsigned char)secret[i] ^ (unsigned char)(i < glen ? given[i] : 0);
    return diff == 0;
}

/* 1: a token is configured and `auth` carries it; 0: a token is configured and `auth` does
 * not; -1: no token is configured. */
static int check_bearer(struct sp_admin *a, const char *auth)
{
    const char *t = NULL;
    size_t n = 0;
    /* the scheme is case-insensitive, then one or more spaces (RFC 6750 2.1) */
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
        t = auth + 7 + strspn(auth + 7, " ");
        n = strlen(t);
        while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\t'))
            n--;
    }
    pthread_mutex_lock(&a->lock);
    int rc = a->token == NULL ? -1 : t == NULL ? 0 : same_secret(a->token, a->token_len, t, n);
    pthread_mutex_unlock(&a->lock);
    return rc;
}

/* A Host that a DNS-rebinding page cannot send: absent, an IP address, or localhost. */
static bool local_host(const char *host)
{
    if (host == NULL || host[0] == '[')
        return true;
    size_t n = strcspn(host, ":");
    if (n == strlen("localhost") && strncasecmp(host, "localhost", n) == 0)
        return true;
    return n > 0 && strspn(host, "0123456789.") == n;
}

/* Content-Type application/json (any parameters): a cross-site form cannot send it. */
static bool json_body(const char *type)
{
    static const char j[] = "application/json";
    /* what follows the media type: its end (strchr finds the NUL too), or parameters */
    return type != NULL && strncasecmp(type, j, sizeof(j) - 1) == 0 &&
           strchr("; \t", type[sizeof(j) - 1]) != NULL;
}

/* Logs a refused state change (an audit trail next to the server's "drained" lines) and
 * queues the reply. */
static enum MHD_Result refuse(struct MHD_Connection *c, unsigned status, const char *hval,
                              const char *json)
{
    char peer[SP_ADDRSTRLEN] = "?";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci != NULL && ci->client_addr != NULL)
        sp_sock_addr_str(ci->client_addr, peer, sizeof(peer));
    sp_log_info("admin: refused a state change from %s: %u %.*s", peer, status,
                (int)strcspn(json, "\n"), json);
    return reply_h(c, status, "application/json", json, strlen(json),
                   hval != NULL ? MHD_HTTP_HEADER_WWW_AUTHENTICATE : NULL, hval);
}

/* Lets a drain or enable through (*allowed) or queues its refusal. */
static enum MHD_Result authorize(struct sp_admin *a, struct MHD_Connection *c, bool *allowed)
{
    const char *site = header_value(c, "Sec-Fetch-Site");
    *allowed = false;
    if (header_value(c, "Origin") != NULL || (site != NULL && strcmp(site, "none") != 0))
        return refuse(c, MHD_HTTP_FORBIDDEN, NULL,
                      "{\"error\":\"a request from a web page (Origin or Sec-Fetch-Site) may not "
                      "change state\"}\n");
    const char *auth = header_value(c, MHD_HTTP_HEADER_AUTHORIZATION);
    int bearer = check_bearer(a, auth);
    if (bearer == 0)
        return refuse(c, MHD_HTTP_UNAUTHORIZED,
                      auth == NULL ? "Bearer realm=\"splicer\""
                                   : "Bearer realm=\"splicer\", error=\"invalid_token\"",
                      "{\"error\":\"send Authorization: Bearer and the token of "
                      "admin.token_file\"}\n");
    if (bearer < 0 && !a->loopback)
        return refuse(c, MHD_HTTP_FORBIDDEN, NULL,
                      "{\"error\":\"drain and enable need admin.token_file when the admin "
                      "endpoint listens beyond loopback\"}\n");
    if (bearer < 0 && !local_host(header_value(c, MHD_HTTP_HEADER_HOST)))
        return refuse(c, MHD_HTTP_FORBIDDEN, NULL,
                      "{\"error\":\"Host must be an IP address or localhost\"}\n");
    if (bearer < 0 && header_value(c, "X-Splicer-Admin") == NULL &&
        !json_body(header_value(c, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return refuse(c, MHD_HTTP_FORBIDDEN, NULL,
                      "{\"error\":\"send the header X-Splicer-Admin: 1 to change state\"}\n");
    *allowed = true;
    return MHD_YES;
}

/* ---- POST /upstreams/NAME/servers/ADDR/{drain,enable} ----------------------------------- */

static enum MHD_Result drain_reply(struct MHD_Connection *c, const char *name, const char *addr,
                                   bool drain)
{
    struct sp_strbuf sb;
    sp_strbuf_init(&sb);
    int rc = sp_strbuf_puts(&sb, "{\"upstream\":");
    if (rc == 0)
        rc = sp_metrics_json_str(&sb, name);
    if (rc == 0)
        rc = sp_strbuf_puts(&sb, ",\"server\":");
    if (rc == 0)
        rc = sp_metrics_json_str(&sb, addr);
    if (rc == 0)
        rc = sp_strbuf_appendf(&sb, ",\"drained\":%s}\n", drain ? "true" : "false");
    enum MHD_Result ok = rc != 0 ? reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n")
                                 : reply(c, MHD_HTTP_OK, "application/json", sb.data, sb.len);
    sp_strbuf_deinit(&sb);
    return ok;
}

/* Authorizes, then drains or enables a server. */
static enum MHD_Result server_action(struct sp_admin *a, struct MHD_Connection *c, const char *url,
                                     const char *name, const char *addr, bool drain)
{
    bool allowed;
    enum MHD_Result ok = authorize(a, c, &allowed);
    if (!allowed)
        return ok;
    int rc = a->ops.set_drain(a->ctx, name, addr, drain);
    if (rc == -ENOENT)
        return reply_json(c, MHD_HTTP_NOT_FOUND, "{\"error\":\"no such upstream or server\"}\n");
    if (rc != 0) {
        sp_log_warn("admin: set_drain %s %s: %s", name, addr, strerror(-rc));
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "failed\n");
    }
    /* the server logs the state change itself; this only traces the request */
    sp_log_debug("admin: POST %s: %s", url, drain ? "drained" : "enabled");
    return drain_reply(c, name, addr, drain);
}

/* Answers POST /upstreams/NAME/servers/ADDR/{drain,enable}. Returns MHD_YES with *handled
 * false, having queued nothing, when the URL is not of that shape. */
static enum MHD_Result serve_server_action(struct sp_admin *a, struct MHD_Connection *c,
                                           const char *url, const char *method, bool *handled)
{
    size_t len = strlen(url) + 1;
    char *buf = malloc(3 * len);
    if (buf == NULL)
        return MHD_NO;
    char *name = buf, *addr = buf + len, *action = buf + 2 * len;
    enum MHD_Result ok = MHD_YES;

    int rc = sp_admin_split_server_path(url, name, addr, action);
    bool drain = rc > 0 && strcmp(action, "drain") == 0;
    *handled = rc < 0 || drain || (rc > 0 && strcmp(action, "enable") == 0);
    if (rc < 0)
        ok = reply_text(c, MHD_HTTP_BAD_REQUEST, "bad percent-encoding in the path\n");
    else if (*handled && strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        ok = reply_405(c, "POST"); /* never a state change on GET or HEAD */
    else if (*handled)
        ok = server_action(a, c, url, name, addr, drain);
    free(buf);
    return ok;
}

/* ---- dispatch --------------------------------------------------------------------------- */

static enum MHD_Result route(struct sp_admin *a, struct MHD_Connection *c, const char *url,
                             const char *method)
{
    static const struct {
        const char *path;
        int kind; /* 0 metrics, 1 status, 2 healthz, 3 the status page */
    } gets[] = {{"/metrics", 0}, {"/status", 1}, {"/healthz", 2}, {"/", 3}};

    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        if (strcmp(url, gets[i].path) != 0)
            continue;
        if (!is_get(method))
            return reply_405(c, "GET, HEAD");
        if (gets[i].kind == 3)
            return queue(c, MHD_HTTP_OK, sp_admin_page_response());
        return gets[i].kind == 2 ? serve_healthz(a, c) : serve_stats(a, c, gets[i].kind == 1);
    }
    bool handled = false;
    enum MHD_Result ok = serve_server_action(a, c, url, method, &handled);
    if (ok == MHD_YES && !handled)
        ok = reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    return ok;
}

/* MHD calls this once when the headers are in, then once per chunk of body, then once more
 * with *upload_size == 0: the reply is queued on that last call, so every body is consumed
 * (and bounded) before anything is answered and keep-alive stays correct. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    struct sp_admin *a = cls;
    struct request *rq = *req_cls;
    (void)version;
    (void)upload;

    if (rq == NULL) {
        const char *cl = header_value(c, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > BODY_MAX)
            return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
        rq = calloc(1, sizeof(*rq));
        if (rq == NULL)
            return MHD_NO;
        *req_cls = rq;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        rq->body += *upload_size;
        *upload_size = 0;
        return rq->body > BODY_MAX ? MHD_NO : MHD_YES;
    }
    return route(a, c, url, method);
}

/* The reply is sent (or the request abandoned): a kept-alive connection starts its next
 * request, and that request's deadline, now. */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    free(*req_cls);
    *req_cls = NULL;
    struct conn *k = conn_of(c);
    if (k != NULL && (k->phase == PH_READING || k->phase == PH_REPLYING)) {
        k->phase = PH_READING;
        k->since = now_ms();
        k->deadline = k->since + READ_DEADLINE_MS;
    }
}

/* Keeps the path raw: sp_admin_split_server_path decodes each segment after splitting. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[256];
    (void)cls;

    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    sp_log_debug("admin: %s", line);
}

/* ---- the thread --------------------------------------------------------------------------- */

/* How long serve() may sleep: until MHD's next timeout or our next deadline, at most 1 s. */
static int wait_ms(struct sp_admin *a, uint64_t next_deadline)
{
    MHD_UNSIGNED_LONG_LONG mhd;
    uint64_t wait = 1000, now = now_ms();
    if (MHD_get_timeout(a->daemon, &mhd) == MHD_YES && mhd < wait)
        wait = mhd;
    if (next_deadline != UINT64_MAX)
        wait = next_deadline <= now ? 0 : next_deadline - now < wait ? next_deadline - now : wait;
    return (int)wait;
}

static void *serve(void *arg)
{
    struct sp_admin *a = arg;
    struct pollfd p[2] = {{.fd = a->epoll_fd, .events = POLLIN},
                          {.fd = a->wake_fd, .events = POLLIN}};
    uint64_t next = UINT64_MAX;

    while (!atomic_load(&a->stop)) {
        if (poll(p, 2, wait_ms(a, next)) == -1 && errno != EINTR) {
            sp_log_error("admin: poll: %s", strerror(errno));
            usleep(100 * 1000); /* do not spin; the requests wait a little */
        }
        /* MHD_run reads and writes what is ready, accepts, and applies its idle timeout */
        MHD_run(a->daemon);
        next = sweep(a, now_ms());
    }
    return NULL;
}

/* ---- start / stop ----------------------------------------------------------------------- */

/* Binds and listens here rather than through MHD_OPTION_SOCK_ADDR, because MHD_start_daemon
 * only says NULL: this way a busy or bad address comes back as its own errno. */
static int listen_socket(const struct sp_admin_conf *conf, int *out)
{
    int one = 1;
    int fd = socket(conf->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        (conf->addr.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1) ||
        bind(fd, (const struct sockaddr *)&conf->addr, conf->addrlen) == -1 ||
        listen(fd, 64) == -1) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static struct MHD_Daemon *start_daemon(struct sp_admin *a, int fd)
{
    return MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
        HARD_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, a, MHD_OPTION_UNESCAPE_CALLBACK,
        no_unescape, NULL, MHD_OPTION_END);
}

static void log_policy(const struct sp_admin *a, const struct sp_admin_conf *conf, const char *verb)
{
    if (conf->token != NULL)
        sp_log_info("admin: %s http://%s; drain and enable need the bearer token of %s", verb,
                    a->listen, conf->token_file);
    else if (a->loopback)
        sp_log_info("admin: %s http://%s; no token_file: drain and enable need the header "
                    "X-Splicer-Admin, on loopback only",
                    verb, a->listen);
    else
        sp_log_info("admin: %s http://%s; no token_file: drain and enable are refused beyond "
                    "loopback",
                    verb, a->listen);
}

/* Frees a (half-)started endpoint; the thread, if any, must have been joined. */
static void admin_free(struct sp_admin *a)
{
    if (a->daemon != NULL)
        MHD_stop_daemon(a->daemon); /* closes every connection and the listening socket */
    if (a->wake_fd != -1)
        close(a->wake_fd);
    if (a->token != NULL)
        explicit_bzero(a->token, a->token_len);
    free(a->token);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

int sp_admin_start(const struct sp_admin_conf *conf, const struct sp_admin_ops *ops, void *ctx,
                   struct sp_admin **out)
{
    return sp_admin_start_fd(conf, -1, ops, ctx, out);
}

int sp_admin_start_fd(const struct sp_admin_conf *conf, int fd, const struct sp_admin_ops *ops,
                      void *ctx, struct sp_admin **out)
{
    *out = NULL;
    struct sp_admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->ops = *ops;
    a->ctx = ctx;
    a->wake_fd = -1;
    a->loopback = sp_sock_is_loopback((const struct sockaddr *)&conf->addr);
    snprintf(a->listen, sizeof(a->listen), "%s", conf->listen);
    pthread_mutex_init(&a->lock, NULL);
    for (unsigned i = 0; i < HARD_LIMIT; i++)
        a->conns[i].fd = -1;
    int rc = sp_admin_reconfigure(a, conf);
    if (rc == 0 && fd == -1)
        rc = listen_socket(conf, &fd);
    else if (rc != 0 && fd != -1)
        close(fd);
    if (rc != 0) {
        sp_log_error("admin: cannot listen on %s: %s", conf->listen, strerror(-rc));
        admin_free(a);
        return rc;
    }
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a->daemon = a->wake_fd != -1 ? start_daemon(a, fd) : NULL;
    const union MHD_DaemonInfo *di =
        a->daemon != NULL ? MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    a->epoll_fd = di != NULL ? di->epoll_fd : -1;
    rc = a->epoll_fd == -1 ? -EIO : -pthread_create(&a->thread, NULL, serve, a);
    if (rc != 0) {
        sp_log_error("admin: cannot start on %s", conf->listen);
        if (a->daemon == NULL)
            close(fd); /* once started, the daemon owns it */
        admin_free(a);
        return rc;
    }
    a->thread_started = true;
    a->listen_fd = fd;
    log_policy(a, conf, "serving");
    *out = a;
    return 0;
}

int sp_admin_reconfigure(struct sp_admin *a, const struct sp_admin_conf *conf)
{
    char *token = NULL;
    if (conf->token != NULL && (token = malloc(conf->token_len + 1)) == NULL)
        return -ENOMEM;
    if (token != NULL)
        memcpy(token, conf->token, conf->token_len + 1);
    pthread_mutex_lock(&a->lock);
    char *old = a->token;
    size_t old_len = a->token_len;
    a->token = token;
    a->token_len = conf->token_len;
    pthread_mutex_unlock(&a->lock);
    if (old != NULL)
        explicit_bzero(old, old_len);
    free(old);
    if (a->thread_started)
        log_policy(a, conf, "still serving");
    return 0;
}

int sp_admin_listen_fd(const struct sp_admin *a)
{
    return a != NULL ? a->listen_fd : -1;
}

void sp_admin_stop(struct sp_admin *a)
{
    if (a == NULL)
        return;
    if (a->thread_started) {
        uint64_t one = 1;
        atomic_store(&a->stop, true);
        if (write(a->wake_fd, &one, sizeof(one)) == -1)
            sp_log_warn("admin: wake: %s", strerror(errno)); /* serve() sees stop within 1 s */
        pthread_join(a->thread, NULL);
    }
    admin_free(a);
}
