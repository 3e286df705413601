/* admin_path.c: the admin endpoint's one structured path (drain and enable), split and
 * percent-decoded. Pure string work, kept apart from the HTTP layer (admin.c). */
#include "admin_path.h"

#include <errno.h>
#include <string.h>

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes a path segment [s, end) into out (size > end - s). Splitting comes first so
 * that an encoded '/' stays inside its segment. Returns 0, or -EINVAL for a bad escape or NUL. */
static int decode_segment(const char *s, const char *end, char *out)
{
    while (s < end) {
        if (*s != '%') {
            *out++ = *s++;
            continue;
        }
        int hi = end - s >= 3 ? hexval(s[1]) : -1;
        int lo = end - s >= 3 ? hexval(s[2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -EINVAL;
        *out++ = (char)(hi << 4 | lo);
        s += 3;
    }
    *out = '\0';
    return 0;
}

int sp_admin_split_server_path(const char *url, char *name, char *addr, char *action)
{
    static const char up[] = "/upstreams/", sv[] = "/servers/";
    if (strncmp(url, up, sizeof(up) - 1) != 0)
        return 0;
    const char *n = url + sizeof(up) - 1;
    const char *n_end = strchr(n, '/');
    if (n_end == NULL || n_end == n || strncmp(n_end, sv, sizeof(sv) - 1) != 0)
        return 0;
    const char *s = n_end + sizeof(sv) - 1;
    const char *s_end = strchr(s, '/');
    if (s_end == NULL || s_end == s || strchr(s_end + 1, '/') != NULL)
        return 0;
    if (decode_segment(n, n_end, name) != 0 || decode_segment(s, s_end, addr) != 0 ||
        decode_segment(s_end + 1, s_end + 1 + strlen(s_end + 1), action) != 0)
        return -EINVAL;
    return 1;
}
