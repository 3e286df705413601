/* probe.c: splicer-probe, the container image's HEALTHCHECK. The image has no shell and no curl,
 * so this tiny static program does one HTTP GET, copies the body of a 200 reply to stdout and
 * exits 0, or exits 1 on anything else. It doubles as a way to read /status or /metrics without
 * publishing the admin port: docker exec CONTAINER splicer-probe 127.0.0.1:9090 /status
 * Usage: splicer-probe [IPV4:PORT [PATH]]   (default 127.0.0.1:9090 /healthz) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROBE_TIMEOUT_S 3

/* Parses "a.b.c.d:port" into sa. Returns 0, or -1 if it is not a numeric IPv4 address. */
static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return -1;
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *addr = argc > 1 ? argv[1] : "127.0.0.1:9090";
    const char *path = argc > 2 ? argv[2] : "/healthz";
    struct sockaddr_in sa;
    if (parse_addr(addr, &sa) == -1) {
        fprintf(stderr, "usage: splicer-probe [IPV4:PORT [PATH]]\n");
        return 2;
    }
    /* The default action of SIGALRM ends the process: a hung endpoint is a failed probe. */
    alarm(PROBE_TIMEOUT_S);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        perror("splicer-probe: connect");
        return 1;
    }
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
        perror("splicer-probe: write");
        return 1;
    }
    /* Gather the status line and headers, then stream the body to stdout. */
    char buf[16384];
    size_t got = 0;
    char *body = NULL;
    while (body == NULL && got < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        body = strstr(buf, "\r\n\r\n");
    }
    buf[got] = '\0';
    bool ok = got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, " 200", 4) == 0;
    if (ok && body != NULL) {
        body += 4;
        size_t len = got - (size_t)(body - buf);
        ssize_t r;
        do {
            if (fwrite(body, 1, len, stdout) != len)
                ok = false;
            body = buf;
            r = read(fd, buf, sizeof(buf));
            len = r > 0 ? (size_t)r : 0;
        } while (r > 0);
        if (r == -1 || fflush(stdout) == EOF)
            ok = false;
    }
    close(fd);
    if (ok)
        return 0;
    char *eol = strpbrk(buf, "\r\n");
    if (eol != NULL)
        *eol = '\0';
    fprintf(stderr, "splicer-probe: %s%s: %s\n", addr, path, got > 0 ? buf : "no reply");
    return 1;
}
