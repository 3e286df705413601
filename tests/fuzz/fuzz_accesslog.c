/* fuzz_accesslog.c: the access-log formatter (sp_access_format in accesslog.c), both formats.
 * The input makes an entry: end cause, client address, the four counters, then the listener,
 * upstream and server names separated by NUL bytes (no server when there is no third name).
 * Names come from the config, which libyaml has checked as UTF-8, so a byte that would break
 * UTF-8 is replaced by '?' first. Properties:
 *  - one entry is one line: exactly one newline, the last byte; no other control byte in text;
 *  - the length returned is the line's, and a buffer too small gets the same answer and exactly
 *    that many first bytes of the line (snprintf's contract);
 *  - JSON: the line is one JSON object (strict: json_check.h) whose members, decoded, are the
 *    entry's fields, names byte for byte;
 *  - text: the line splits into `key=value` fields, a value bare or in double quotes, and every
 *    name decodes back to itself byte for byte: no name can cut a field or forge one. */
#include "accesslog.h"
#include "common.h"
#include "fuzz.h"
#include "json_check.h"
#include "sock.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>

#define MAX_INPUT 4096

struct entry_in {
    struct sp_access_entry e;
    struct sockaddr_storage client;
    char *names[3]; /* listener, upstream, server; owned */
};

static uint64_t take_u64(const uint8_t **p, const uint8_t *end, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && *p < end; i++)
        v = v << 8 | *(*p)++;
    return v;
}

/* The bytes as a NUL-terminated string of valid UTF-8 (a bad byte becomes '?'). */
static char *utf8_name(const uint8_t *p, size_t n)
{
    char *s = fz_str(p, n);
    struct jc j = {(const unsigned char *)s, (const unsigned char *)s + n};
    while (j.p < j.end) {
        if (*j.p < 0x80) {
            j.p++;
        } else if (!jc_utf8(&j)) {
            s[j.p - (const unsigned char *)s] = '?';
            j.p++;
        }
    }
    return s;
}

static void make_entry(const uint8_t *data, size_t size, struct entry_in *in)
{
    const uint8_t *p = data, *end = data + size;
    memset(in, 0, sizeof(*in));
    unsigned end_cause = (unsigned)take_u64(&p, end, 1), family = (unsigned)take_u64(&p, end, 1);
    in->e.end = (enum sp_end)(end_cause % (SP_END_COUNT + 1)); /* SP_END_COUNT: "unknown" */
    if (family % 3 == 1) {
        struct sockaddr_in *a = (struct sockaddr_in *)&in->client;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = (uint32_t)take_u64(&p, end, 4);
        a->sin_port = (uint16_t)take_u64(&p, end, 2);
        in->e.client = (struct sockaddr *)a;
    } else if (family % 3 == 2) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&in->client;
        a->sin6_family = AF_INET6;
        for (int i = 0; i < 16; i++)
            a->sin6_addr.s6_addr[i] = (uint8_t)take_u64(&p, end, 1);
        a->sin6_port = (uint16_t)take_u64(&p, end, 2);
        in->e.client = (struct sockaddr *)a;
    }
    in->e.bytes_up = take_u64(&p, end, 8);
    in->e.bytes_down = take_u64(&p, end, 8);
    in->e.duration_ms = take_u64(&p, end, 8);
    in->e.attempts = (unsigned)take_u64(&p, end, 4);
    for (int k = 0; k < 3 && (k < 2 || p < end); k++) {
        const uint8_t *nul = p < end ? memchr(p, 0, (size_t)(end - p)) : NULL;
        const uint8_t *stop = nul != NULL ? nul : end;
        in->names[k] = utf8_name(p, (size_t)(stop - p));
        p = nul != NULL ? nul + 1 : end;
    }
    in->e.listener = in->names[0];
    in->e.upstream = in->names[1];
    in->e.server = in->names[2]; /* NULL: no server reached */
}

/* ---- JSON: the members of the line's object, decoded ------------------------------------ */

/* Decodes the JSON string at *p (checked by json_check already) into out, at most cap bytes;
 * returns its length. Only the escapes the formatter writes need be understood, but all are. */
static size_t json_str(const char **p, char *out, size_t cap)
{
    size_t n = 0;
    const char *s = *p + 1;
    while (*s != '"') {
        char c = *s++;
        if (c == '\\') {
            char e = *s++;
            if (e == 'u') {
                unsigned v = 0;
                for (int i = 0; i < 4; i++, s++)
                    v = v * 16 + (unsigned)(*s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10);
                FZ_CHECK(v < 0x80, "\\u%04x where the formatter writes ASCII escapes only", v);
                c = (char)v;
            } else {
                c = e == 'n'   ? '\n'
                    : e == 'r' ? '\r'
                    : e == 't' ? '\t'
                    : e == 'b' ? '\b'
                    : e == 'f' ? '\f'
                               : e;
            }
        }
        FZ_CHECK(n < cap, "JSON string longer than its input");
        out[n++] = c;
    }
    *p = s + 1;
    out[n] = '\0';
    return n;
}

static void expect_json_name(const char *got, const char *want, const char *key)
{
    FZ_CHECK(strcmp(got, want) == 0, "JSON %s '%s', entry has '%s'", key, got, want);
}

static void check_json(const char *line, size_t n, const struct entry_in *in, const char *client)
{
    FZ_CHECK(json_check(line, n - 1, true), "not a JSON object: %.*s", (int)n, line);
    static const char *const keys[] = {"time",     "listener", "client",     "upstream",
                                       "server",   "bytes_up", "bytes_down", "duration_ms",
                                       "attempts", "end"};
    char *val = malloc(n + 1);
    if (val == NULL)
        abort();
    const char *p = line + 1;
    for (size_t k = 0; k < SP_ARRAY_LEN(keys); k++) {
        char key[32];
        FZ_CHECK(*p == '"', "member %zu", k);
        json_str(&p, key, sizeof(key) - 1);
        FZ_CHECK(strcmp(key, keys[k]) == 0 && *p == ':', "member %zu is '%s'", k, key);
        p++;
        if (*p == '"') {
            json_str(&p, val, n);
        } else {
            size_t len = strcspn(p, ",}");
            memcpy(val, p, len);
            val[len] = '\0';
            p += len;
        }
        FZ_CHECK(*p == (k + 1 < SP_ARRAY_LEN(keys) ? ',' : '}'), "after member %zu", k);
        p++;
        char num[24];
        switch (k) {
        case 1:
        case 3:
            expect_json_name(val, in->names[k == 1 ? 0 : 1], keys[k]);
            break;
        case 2:
            expect_json_name(val, client, keys[k]);
            break;
        case 4:
            expect_json_name(val, in->names[2] != NULL ? in->names[2] : "null", keys[k]);
            break;
        case 5:
        case 6:
        case 7:
        case 8:
            snprintf(num, sizeof(num), "%" PRIu64,
                     k == 5   ? in->e.bytes_up
                     : k == 6 ? in->e.bytes_down
                     : k == 7 ? in->e.duration_ms
                              : (uint64_t)in->e.attempts);
            expect_json_name(val, num, keys[k]);
            break;
        case 9:
            expect_json_name(val, sp_end_name(in->e.end), keys[k]);
            break;
        }
    }
    free(val);
}

/* ---- text: key=value fields ------------------------------------------------------------- */

/* Decodes the value at *p (bare up to a space, or quoted with \" \\ \n \r \t \xHH) into out. */
static void text_value(const char **p, char *out, bool *quoted)
{
    const char *s = *p;
    size_t n = 0;
    *quoted = *s == '"';
    if (!*quoted) {
        while (*s != ' ' && *s != '\n')
            out[n++] = *s++;
    } else {
        for (s++; *s != '"'; s++) {
            FZ_CHECK(*s != '\n' && *s != '\0', "unterminated quoted value");
            if (*s != '\\') {
                out[n++] = *s;
                continue;
            }
            char e = *++s;
            if (e == 'x') {
                unsigned v = 0;
                for (int i = 0; i < 2; i++) {
                    char h = *++s;
                    FZ_CHECK((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f'), "bad \\x escape");
                    v = v * 16 + (unsigned)(h <= '9' ? h - '0' : h - 'a' + 10);
                }
                out[n++] = (char)v;
            } else {
                FZ_CHECK(strchr("\"\\nrt", e) != NULL && e != '\0', "bad escape \\%c", e);
                out[n++] = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
            }
        }
        s++;
    }
    out[n] = '\0';
    *p = s;
}

static void check_text(const char *line, size_t n, const struct entry_in *in, const char *client)
{
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)line[i];
        FZ_CHECK(c >= 0x20 && c != 0x7f, "control byte 0x%02x in a text line", c);
    }
    static const char *const keys[] = {"listener", "client",      "upstream", "server", "up",
                                       "down",     "duration_ms", "attempts", "end"};
    char *val = malloc(n + 1);
    if (val == NULL)
        abort();
    const char *p = strchr(line, ' '); /* after the time */
    FZ_CHECK(p != NULL, "no fields");
    for (size_t k = 0; k < SP_ARRAY_LEN(keys); k++) {
        size_t kl = strlen(keys[k]);
        FZ_CHECK(*p == ' ' && strncmp(p + 1, keys[k], kl) == 0 && p[1 + kl] == '=',
                 "field %zu is not %s: %s", k, keys[k], p);
        p += kl + 2;
        bool quoted;
        text_value(&p, val, &quoted);
        const char *want = NULL;
        char num[24];
        switch (k) {
        case 0:
        case 2:
            want = in->names[k == 0 ? 0 : 1];
            break;
        case 1:
            want = client;
            break;
        case 3:
            want = in->names[2] != NULL ? in->names[2] : "-";
            /* a server literally named "-" is quoted, so it stays apart from "none" */
            FZ_CHECK(in->names[2] != NULL || !quoted, "no server written quoted");
            break;
        case 8:
            want = sp_end_name(in->e.end);
            break;
        default:
            snprintf(num, sizeof(num), "%" PRIu64,
                     k == 4   ? in->e.bytes_up
                     : k == 5 ? in->e.bytes_down
                     : k == 6 ? in->e.duration_ms
                              : (uint64_t)in->e.attempts);
            want = num;
        }
        FZ_CHECK(strcmp(val, want) == 0, "text %s '%s', entry has '%s'", keys[k], val, want);
    }
    FZ_CHECK(*p == '\n' && (size_t)(p - line) == n - 1, "text line goes on after 'end'");
    free(val);
}

/* Formats e in one format; checks the length contract and one line; returns the line. */
static char *format(const struct entry_in *in, enum sp_log_format f, size_t *len)
{
    size_t need = sp_access_format(NULL, 0, &in->e, f);
    char *line = malloc(need + 1);
    if (line == NULL)
        abort();
    FZ_CHECK(sp_access_format(line, need, &in->e, f) == need, "length changes with the buffer");
    line[need] = '\0';
    FZ_CHECK(need > 0 && line[need - 1] == '\n' && memchr(line, '\n', need) == line + need - 1,
             "not exactly one line: %s", line);
    FZ_CHECK(strlen(line) == need, "NUL byte in the line");
    /* a buffer too small gets the same answer and the line's first bytes (the clock may have
     * moved: compare from the first field on, after the time) */
    size_t short_len = need / 2;
    char *part = malloc(short_len + 1);
    if (part == NULL)
        abort();
    memset(part, 0x5a, short_len + 1);
    size_t again = sp_access_format(part, short_len, &in->e, f);
    FZ_CHECK(part[short_len] == 0x5a, "wrote past a buffer of %zu", short_len);
    FZ_CHECK(again == need, "%zu with a small buffer, %zu with room", again, need);
    free(part);
    *len = need;
    return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct entry_in in;
    char client[SP_ADDRSTRLEN] = "-";
    size_t n;
    if (size > MAX_INPUT)
        return 0;
    make_entry(data, size, &in);
    if (in.e.client != NULL)
        sp_sock_addr_str(in.e.client, client, sizeof(client));

    char *line = format(&in, SP_LOG_FORMAT_JSON, &n);
    check_json(line, n, &in, client);
    free(line);
    line = format(&in, SP_LOG_FORMAT_TEXT, &n);
    check_text(line, n, &in, client);
    free(line);
    for (int k = 0; k < 3; k++)
        free(in.names[k]);
    return 0;
}
