/* test_status_page.c: the status page on GET / of the admin endpoint, on the real binary.
 * Without a browser (main group): the page and its headers (a strict Content-Security-Policy
 * by hashes, no external URL, GET and HEAD only). Group "openssl": the CSP hashes are those of
 * the page's inline style and script, computed by openssl. Group "browser": the page in headless
 * Chromium driven by chromedriver (Debian: chromium, chromium-driver): every server shows with
 * its state, a server killed during the test turns `down` on the page that is already open (by
 * the page's own refresh from /status) and back `up` once restarted, and a drained one gets its
 * flag; traffic through a server shows as bytes per second each way on its row, with the age of
 * its last health check; after a SIGHUP that swaps a server, the page shows the new set. Each
 * group skips (exit 77) when its programs are missing. */
#include "common.h"
#include "deploy.h"
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NSERVERS 3
#define CONF                                                                                       \
    "workers: 1\n"                                                                                 \
    "shutdown_timeout: 1s\n"                                                                       \
    "admin:\n"                                                                                     \
    "  listen: 127.0.0.1:%d\n"                                                                     \
    "listeners:\n"                                                                                 \
    "  web:\n"                                                                                     \
    "    listen: 127.0.0.1:%d\n"                                                                   \
    "    upstream: pool\n"                                                                         \
    "upstreams:\n"                                                                                 \
    "  pool:\n"                                                                                    \
    "    health_check:\n"                                                                          \
    "      interval: 200ms\n"                                                                      \
    "      timeout: 200ms\n"                                                                       \
    "      rise: 1\n"                                                                              \
    "      fall: 2\n"                                                                              \
    "    servers:\n"                                                                               \
    "%s"

#define PAGE_MAX   (256 * 1024)
#define BROWSER_MS 60000 /* chromium's start, on a loaded CI box */
#define SEEN_MS    20000 /* a change in /status reaching the page: 2 s refresh plus slack */

struct setup {
    struct sph_px px;
    char conf[SPH_PATH_MAX];
    struct sph_backend *b[NSERVERS];
};

/* The servers: lines of the config for backends b[0..n). */
static void servers(char *out, size_t cap, struct sph_backend *const b[], int n)
{
    size_t off = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        off +=
            (size_t)snprintf(out + off, cap - off, "      - address: 127.0.0.1:%d\n", b[i]->port);
}

static void start(struct setup *s)
{
    char list[512];
    for (int i = 0; i < NSERVERS; i++) {
        s->b[i] = sph_backend_new(SPH_ECHO, AF_INET);
        ck_assert_ptr_nonnull(s->b[i]);
        ck_assert_int_eq(sph_backend_start(s->b[i]), 0);
    }
    s->px.port = sph_free_port(AF_INET);
    s->px.admin = sph_free_port(AF_INET);
    servers(list, sizeof(list), s->b, NSERVERS);
    ck_assert_int_eq(sph_config_write(s->conf, CONF, s->px.admin, s->px.port, list), 0);
    int rc = sph_splicer_start(&s->px.proc, s->conf, s->px.port, SPH_START_MS);
    ck_assert_msg(rc == 0, "splicer did not start (%s):\n%s", strerror(-rc),
                  sph_proc_stderr(&s->px.proc));
    /* the admin endpoint comes up just after the listeners */
    ck_assert_int_eq(sph_admin_req(s->px.admin, "GET", "/healthz", NULL, 0), 200);
}

/* The whole reply to `METHOD / HTTP/1.0` on the admin port: head and body. */
static char *get_root(int admin, const char *method)
{
    char req[128];
    char *reply = malloc(PAGE_MAX);
    ck_assert_ptr_nonnull(reply);
    int n = snprintf(req, sizeof(req), "%s / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method);
    int got = sph_http_raw(admin, req, (size_t)n, reply, PAGE_MAX);
    ck_assert_msg(got > 0, "%s /: %d", method, got);
    return reply;
}

/* The value of header `name` in the head of reply (case-insensitive name), into out. */
static const char *header(const char *reply, const char *name, char *out, size_t cap)
{
    const char *end = strstr(reply, "\r\n\r\n");
    size_t nl = strlen(name);
    out[0] = '\0';
    for (const char *p = strstr(reply, "\r\n"); p != NULL && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl + strspn(p + 3 + nl, " ");
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r"), v);
            break;
        }
    }
    return out;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- main group: the page and its headers ------------------------------------------------ */

START_TEST(page_and_csp)
{
    struct setup s;
    char v[1024];
    start(&s);

    char *reply = get_root(s.px.admin, "GET");
    ck_assert_msg(strncmp(reply, "HTTP/1.1 200 ", 13) == 0, "%.80s", reply);
    ck_assert_str_eq(header(reply, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
    ck_assert_str_eq(header(reply, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
    ck_assert_str_eq(header(reply, "Cache-Control", v, sizeof(v)), "no-store");
    header(reply, "Content-Security-Policy", v, sizeof(v));
    /* nothing may load but the page's own hashed style and script, and its fetch of /status */
    ck_assert_msg(strncmp(v, "default-src 'none'; ", 20) == 0, "CSP: %s", v);
    ck_assert_msg(strstr(v, "script-src 'sha256-") != NULL, "CSP: %s", v);
    ck_assert_msg(strstr(v, "style-src 'sha256-") != NULL, "CSP: %s", v);
    ck_assert_msg(strstr(v, "connect-src 'self'") != NULL, "CSP: %s", v);
    ck_assert_msg(strstr(v, "frame-ancestors 'none'") != NULL, "CSP: %s", v);
    ck_assert_msg(strstr(v, "unsafe") == NULL && strstr(v, "*") == NULL, "CSP: %s", v);

    const char *page = strstr(reply, "\r\n\r\n") + 4;
    ck_assert_msg(strncmp(page, "<!DOCTYPE html>", 15) == 0, "%.80s", page);
    ck_assert_ptr_nonnull(strstr(page, "</html>"));
    /* one inline style and one inline script, the ones the hashes cover; no external asset */
    ck_assert_int_eq(count(page, "<script"), 1);
    ck_assert_int_eq(count(page, "<script>"), 1);
    ck_assert_int_eq(count(page, "<style"), 1);
    ck_assert_int_eq(count(page, "<style>"), 1);
    static const char *const external[] = {"://",     "src=",     "href=",   "url(",
                                           "@import", "<link",    "<iframe", "<img",
                                           " style=", " onload=", "//cdn"};
    for (size_t i = 0; i < SP_ARRAY_LEN(external); i++)
        ck_assert_msg(strstr(page, external[i]) == NULL, "the page holds \"%s\"", external[i]);
    ck_assert_ptr_nonnull(strstr(page, "fetch(\"/status\""));
    /* the server rows' byte rates each way and the age of their last health check */
    static const char *const server_columns[] = {"s.bytes_upstream",
                                                 "s.bytes_downstream",
                                                 "s.last_check_age_ms",
                                                 "[\"client \\u2192 server\", \"num\"]",
                                                 "[\"server \\u2192 client\", \"num\"]",
                                                 "\"checked \""};
    for (size_t i = 0; i < SP_ARRAY_LEN(server_columns); i++)
        ck_assert_msg(strstr(page, server_columns[i]) != NULL, "the page lacks %s",
                      server_columns[i]);
    for (const unsigned char *p = (const unsigned char *)page; *p != '\0'; p++)
        ck_assert_msg(*p < 0x80, "a non-ASCII byte at %td", (const char *)p - page);
    free(reply);

    reply = get_root(s.px.admin, "HEAD");
    ck_assert_msg(strncmp(reply, "HTTP/1.1 200 ", 13) == 0, "%.80s", reply);
    ck_assert_str_eq(strstr(reply, "\r\n\r\n") + 4, "");
    free(reply);
    char body[256];
    ck_assert_int_eq(sph_http(s.px.admin, "POST", "/", body, sizeof(body)), 405);
    ck_assert_int_eq(sph_http(s.px.admin, "GET", "/index.html", body, sizeof(body)), 404);
}
END_TEST

/* ---- group openssl: the hashes are those of the page's inline elements ----------------- */

/* base64(sha256(text)) by openssl, through files. */
static void openssl_hash(const char *text, size_t len, char *out, size_t cap)
{
    char in[SPH_PATH_MAX], dig[SPH_PATH_MAX];
    ck_assert_int_eq(sph_config_write(in, "%.*s", (int)len, text), 0);
    ck_assert_int_eq(sph_config_write(dig, "%s", ""), 0);
    const char *openssl = sph_tool("openssl");
    const char *const a1[] = {openssl, "dgst", "-sha256", "-binary", "-out", dig, in, NULL};
    free(sph_run_capture(a1, 10000));
    const char *const a2[] = {openssl, "base64", "-A", "-in", dig, NULL};
    char *b64 = sph_run_capture(a2, 10000);
    snprintf(out, cap, "'sha256-%.*s'", (int)strcspn(b64, "\r\n"), b64);
    free(b64);
}

static void element_hash(const char *page, const char *tag, char *out, size_t cap)
{
    char open[16], close[16];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(page, open), *b = strstr(page, close);
    ck_assert(a != NULL && b != NULL && b > a);
    a += strlen(open);
    openssl_hash(a, (size_t)(b - a), out, cap);
}

START_TEST(csp_hashes_match)
{
    struct setup s;
    char csp[1024], want[128];
    start(&s);
    char *reply = get_root(s.px.admin, "GET");
    header(reply, "Content-Security-Policy", csp, sizeof(csp));
    const char *page = strstr(reply, "\r\n\r\n") + 4;
    element_hash(page, "script", want, sizeof(want));
    ck_assert_msg(strstr(csp, want) != NULL, "script %s not in CSP: %s", want, csp);
    element_hash(page, "style", want, sizeof(want));
    ck_assert_msg(strstr(csp, want) != NULL, "style %s not in CSP: %s", want, csp);
    free(reply);
}
END_TEST

/* ---- group browser: headless Chromium through chromedriver (WebDriver, W3C) ------------- */

static char profile[64]; /* the browser's --user-data-dir: made and removed by the parent */
static pid_t driver_pgid = -1;
static int driver_port;
static char session[64];

static void driver_stop(void)
{
    if (driver_pgid <= 0)
        return;
    kill(-driver_pgid, SIGTERM);
    for (int i = 0; i < 200 && waitpid(driver_pgid, NULL, WNOHANG) == 0; i++)
        sph_sleep_ms(10);
    kill(-driver_pgid, SIGKILL); /* the browsers, if chromedriver left any */
    waitpid(driver_pgid, NULL, WNOHANG);
    driver_pgid = -1;
}

/* chromedriver in a process group of its own, so that teardown ends the browsers it started
 * too, whatever state the test left them in. */
static void driver_start(const char *log)
{
    char port_arg[32];
    driver_port = sph_free_port(AF_INET);
    snprintf(port_arg, sizeof(port_arg), "--port=%d", driver_port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the test was killed (its timeout) */
        FILE *f = freopen(log, "w", stdout);
        if (f == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) == -1)
            _exit(127);
        execl(sph_tool("chromedriver"), "chromedriver", port_arg, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* either this or the child's call wins the race; both set the same */
    driver_pgid = pid;
    atexit(driver_stop); /* a failed assertion ends the test with exit() before its teardown */
    for (int i = 0; i < 400 && !sph_port_listening(driver_port); i++)
        sph_sleep_ms(25);
    ck_assert_msg(sph_port_listening(driver_port), "chromedriver did not listen on %d",
                  driver_port);
}

/* One WebDriver command; returns the reply's body (malloc'd), after asserting a 200.
 * chromedriver keeps the connection open whatever Connection says: the reply ends at its
 * Content-Length. */
static char *wd(const char *method, const char *path, const char *json)
{
    static char buf[1 << 20];
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, driver_port, strlen(json));
    int fd = sph_connect(AF_INET, driver_port, 3000);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(sph_write_all(fd, head, (size_t)n, 3000), 0);
    ck_assert_int_eq(sph_write_all(fd, json, strlen(json), 3000), 0);

    size_t got = 0, want = SIZE_MAX;
    int64_t until = sph_now_ms() + BROWSER_MS;
    while (got < want && got < sizeof(buf) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(until - sph_now_ms());
        ck_assert_msg(left > 0 && poll(&p, 1, left) == 1, "%s %s: no reply in time", method, path);
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        ck_assert_msg(r > 0, "%s %s: closed after %zu bytes", method, path, got);
        got += (size_t)r;
        buf[got] = '\0';
        const char *end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (end != NULL && cl != NULL && cl < end)
            want = (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10);
    }
    close(fd);
    const char *body = strstr(buf, "\r\n\r\n");
    ck_assert_msg(body != NULL && strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s %s: %.600s", method,
                  path, buf);
    return strdup(body + 4);
}

/* The JSON string value after `"key":` in json, unescaped (\uXXXX beyond ASCII as '?'). */
static char *json_string(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    ck_assert_msg(p != NULL, "no %s in %.300s", key, json);
    p += strlen(pat);
    char *out = malloc(strlen(p) + 1), *o = out;
    ck_assert_ptr_nonnull(out);
    for (; *p != '\0' && *p != '"'; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'n':
            *o++ = '\n';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u':
            *o++ = strncmp(p + 1, "00", 2) == 0 ? (char)strtol((char[3]){p[3], p[4], 0}, NULL, 16)
                                                : '?';
            p += 4;
            break;
        default:
            *o++ = *p; /* \" \\ \/ */
        }
    }
    *o = '\0';
    return out;
}

/* Runs `script` (a function body returning a string) in the page; returns its result. */
static char *page_eval(const char *script)
{
    char path[128], json[2048];
    snprintf(path, sizeof(path), "/session/%s/execute/sync", session);
    snprintf(json, sizeof(json), "{\"script\":\"%s\",\"args\":[]}", script);
    char *reply = wd("POST", path, json);
    char *value = json_string(reply, "value");
    free(reply);
    return value;
}

/* What a reader sees: the page's text, cells separated by tabs. */
static char *page_text(void)
{
    return page_eval("return document.body.innerText;");
}

/* True when the page shows `addr` in the state `state` ("ADDR<tab>STATE" in its text). */
static bool shows(const char *text, const char *addr, const char *state)
{
    char want[96];
    snprintf(want, sizeof(want), "%s\t%s\t", addr, state);
    return strstr(text, want) != NULL;
}

/* Polls the page's text until every server i shows states[i] (cells after the address, tab
 * separated), within ms. */
static char *wait_states(struct setup *s, const char *const states[NSERVERS], int ms)
{
    int64_t until = sph_now_ms() + ms;
    for (;;) {
        char *text = page_text();
        bool all = true;
        for (int i = 0; i < NSERVERS; i++) {
            char addr[64];
            snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->b[i]->port);
            all = all && shows(text, addr, states[i]);
        }
        if (all)
            return text;
        if (sph_now_ms() > until)
            ck_abort_msg("the page did not show the states in time; it shows:\n%s", text);
        free(text);
        sph_sleep_ms(250);
    }
}

/* The row of server `addr` in the page's text (up to its newline), into out; false if none. */
static bool server_row(const char *text, const char *addr, char *out, size_t cap)
{
    char start[80];
    snprintf(start, sizeof(start), "%s\t", addr);
    const char *row = strstr(text, start);
    if (row == NULL)
        return false;
    snprintf(out, cap, "%.*s", (int)strcspn(row, "\n"), row);
    return true;
}

/* Echoes traffic through one connection, refresh after refresh, until the row of the server it
 * reached shows a byte rate each way (client -> server, server -> client: "KiB/s" or more) and
 * says when that server was last checked. */
static void wait_byte_rates(struct setup *s)
{
    int fd = sph_connect(AF_INET, s->px.port, 3000);
    ck_assert_int_ge(fd, 0);
    int64_t until = sph_now_ms() + SEEN_MS;
    char row[1024] = "";
    for (uint64_t seed = 1;; seed++) {
        struct sph_xfer x;
        sph_xfer_init(&x, 512 * 1024, seed, 10000);
        ck_assert_int_eq(sph_echo_xfer(fd, &x), 0);
        char *text = page_text();
        for (int i = 0; i < NSERVERS; i++) {
            char addr[64], r[1024];
            snprintf(addr, sizeof(addr), "127.0.0.1:%d", s->b[i]->port);
            if (server_row(text, addr, r, sizeof(r)) && count(r, "iB/s") >= 2 &&
                strstr(r, "checked ") != NULL && strstr(r, " s ago") != NULL)
                snprintf(row, sizeof(row), "%s", r);
        }
        if (row[0] != '\0') {
            free(text);
            break;
        }
        ck_assert_msg(sph_now_ms() < until, "no server row with byte rates; the page shows:\n%s",
                      text);
        free(text);
    }
    close(fd);
}

/* The computed background colour of the state badge of the row of `addr`. */
static char *state_colour(const char *addr)
{
    char script[512];
    snprintf(script, sizeof(script),
             "var r = Array.from(document.querySelectorAll('tr')).find(function (t) { "
             "return t.cells[0] && t.cells[0].textContent === '%s'; }); "
             "return r ? getComputedStyle(r.querySelector('.state')).backgroundColor : 'none';",
             addr);
    return page_eval(script);
}

START_TEST(browser_shows_servers_and_failover)
{
    struct setup s;
    char log[SPH_PATH_MAX], caps[1024], url[128], path[128];
    start(&s);
    ck_assert_int_eq(sph_config_write(log, "%s", ""), 0);
    driver_start(log);

    ck_assert_msg(profile[0] != '\0', "no profile directory");
    snprintf(caps, sizeof(caps),
             "{\"capabilities\":{\"alwaysMatch\":{\"goog:chromeOptions\":{\"binary\":\"%s\","
             "\"args\":[\"--headless=new\",\"--no-sandbox\",\"--disable-gpu\","
             "\"--disable-dev-shm-usage\",\"--no-first-run\",\"--window-size=1200,800\","
             "\"--disable-crash-reporter\",\"--user-data-dir=%s\"]}}}}",
             sph_tool("chromium"), profile);
    char *reply = wd("POST", "/session", caps);
    char *id = json_string(reply, "sessionId");
    snprintf(session, sizeof(session), "%s", id);
    free(id);
    free(reply);

    snprintf(path, sizeof(path), "/session/%s/url", session);
    snprintf(url, sizeof(url), "{\"url\":\"http://127.0.0.1:%d/\"}", s.px.admin);
    free(wd("POST", path, url));

    /* every server, with the word /status uses for its state */
    static const char *const all_up[NSERVERS] = {"up", "up", "up"};
    char *text = wait_states(&s, all_up, SEEN_MS);
    char listener[64];
    snprintf(listener, sizeof(listener), "web\t127.0.0.1:%d\tpool\t", s.px.port);
    ck_assert_msg(strstr(text, listener) != NULL, "no listener row in:\n%s", text);
    ck_assert_msg(strstr(text, "Upstream pool") != NULL, "no upstream in:\n%s", text);
    free(text);

    /* traffic through a server: its row shows bytes per second each way */
    wait_byte_rates(&s);

    /* killed while the page is open: the page's own refresh shows it down, the others up */
    char killed[64], alive[64];
    snprintf(killed, sizeof(killed), "127.0.0.1:%d", s.b[1]->port);
    snprintf(alive, sizeof(alive), "127.0.0.1:%d", s.b[0]->port);
    char *up_colour = state_colour(killed);
    sph_backend_stop(s.b[1]);
    static const char *const one_down[NSERVERS] = {"up", "down", "up"};
    free(wait_states(&s, one_down, SEEN_MS));
    char *down_colour = state_colour(killed);
    char *alive_colour = state_colour(alive);
    ck_assert_str_ne(up_colour, down_colour); /* the word and a colour */
    ck_assert_str_eq(up_colour, alive_colour);
    free(up_colour);
    free(down_colour);
    free(alive_colour);

    /* and back: the page follows /status both ways */
    ck_assert_int_eq(sph_backend_restart(s.b[1]), 0);
    free(wait_states(&s, all_up, SEEN_MS));

    /* a drained server keeps its state word, and gets a flag beside it */
    char drain[128];
    snprintf(drain, sizeof(drain), "/upstreams/pool/servers/127.0.0.1:%d/drain", s.b[2]->port);
    ck_assert_int_eq(sph_http(s.px.admin, "POST", drain, NULL, 0), 200);
    static const char *const two_up_drained[NSERVERS] = {"up", "up", "up\tdrained"};
    text = wait_states(&s, two_up_drained, SEEN_MS);
    ck_assert_msg(strstr(text, "2 of 3 taking connections") != NULL, "%s", text);
    free(text);

    /* a reload that swaps a server for a new one: the open page follows it */
    struct sph_backend *fresh = sph_backend_new(SPH_ECHO, AF_INET);
    ck_assert_ptr_nonnull(fresh);
    ck_assert_int_eq(sph_backend_start(fresh), 0);
    struct sph_backend *const after[NSERVERS] = {s.b[1], s.b[2], fresh};
    char list[512], gone[80], added[64];
    servers(list, sizeof(list), after, NSERVERS);
    ck_assert_int_eq(sph_config_rewrite(s.conf, CONF, s.px.admin, s.px.port, list), 0);
    ck_assert_int_eq(sph_proc_signal(&s.px.proc, SIGHUP), 0);
    snprintf(gone, sizeof(gone), "%s\t", alive);
    snprintf(added, sizeof(added), "127.0.0.1:%d", fresh->port);
    int64_t until = sph_now_ms() + SEEN_MS;
    for (text = page_text(); !shows(text, added, "up") || strstr(text, gone) != NULL ||
                             strstr(text, "config generation 2") == NULL;
         text = page_text()) {
        ck_assert_msg(sph_now_ms() < until, "the page did not follow the reload:\n%s", text);
        free(text);
        sph_sleep_ms(250);
    }
    free(text);

    snprintf(path, sizeof(path), "/session/%s", session);
    free(wd("DELETE", path, ""));
}
END_TEST

static void browser_teardown(void)
{
    driver_stop();
    sph_deploy_teardown();
}

/* Unchecked (the parent process, around the forked test): a profile directory of our own; after
 * the test, whatever way it ended (a failed assertion, its timeout), every process that names
 * that directory on its command line, which is the browser chromedriver started, is killed, and
 * the directory removed. Chromium leaves chromedriver's process group, and outlives it. */
static void profile_setup(void)
{
    sph_suite_setup();
    snprintf(profile, sizeof(profile), "/tmp/splicer-chromium.XXXXXX");
    if (mkdtemp(profile) == NULL)
        profile[0] = '\0';
}

static int kill_named(const char *needle)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[64], cmd[16384];
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        if (pid <= 0 || pid == getpid())
            continue;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        FILE *f = fopen(path, "r");
        size_t len = f != NULL ? fread(cmd, 1, sizeof(cmd) - 1, f) : 0;
        if (f != NULL)
            fclose(f);
        for (size_t i = 0; i < len; i++)
            cmd[i] = cmd[i] == '\0' ? ' ' : cmd[i];
        cmd[len] = '\0';
        if (strstr(cmd, needle) != NULL && kill(pid, SIGKILL) == 0)
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void profile_teardown(void)
{
    if (profile[0] != '\0') {
        for (int i = 0; i < 50 && kill_named(profile) > 0; i++)
            sph_sleep_ms(100);
        nftw(profile, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        profile[0] = '\0';
    }
    sph_suite_teardown();
}

/* ---- groups ------------------------------------------------------------------------------- */

static void add_main(Suite *s)
{
    TCase *tc = tcase_create("page");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_test(tc, page_and_csp);
    suite_add_tcase(s, tc);
}

static void add_openssl(Suite *s)
{
    TCase *tc = tcase_create("csp_hashes");
    tcase_add_unchecked_fixture(tc, sph_suite_setup, sph_suite_teardown);
    tcase_add_checked_fixture(tc, NULL, sph_deploy_teardown);
    tcase_add_test(tc, csp_hashes_match);
    suite_add_tcase(s, tc);
}

static void add_browser(Suite *s)
{
    TCase *tc = tcase_create("browser");
    tcase_add_unchecked_fixture(tc, profile_setup, profile_teardown);
    tcase_add_checked_fixture(tc, NULL, browser_teardown);
    tcase_set_timeout(tc, 270);
    tcase_add_test(tc, browser_shows_servers_and_failover);
    suite_add_tcase(s, tc);
}

static const struct sph_group groups[] = {
    {.name = NULL, .add = add_main},
    {.name = "openssl", .tools = {"openssl"}, .add = add_openssl},
    {.name = "browser", .tools = {"chromium", "chromedriver"}, .add = add_browser},
};

int main(int argc, char **argv)
{
    return sph_main(argc, argv, "integration.status_page", groups, SP_ARRAY_LEN(groups));
}
