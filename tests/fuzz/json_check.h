/* json_check.h: a small strict JSON validator for the fuzz targets (RFC 8259): one value with
 * optional whitespace around it; strings of valid UTF-8 with no raw control character and only
 * the standard escapes; numbers without leading zeros, '+' or a bare '.'; nesting up to 64
 * levels. Written for the access-log target, whose every JSON line must parse. Header-only, so a
 * libFuzzer target links nothing else. */
#ifndef SPLICER_FUZZ_JSON_CHECK_H
#define SPLICER_FUZZ_JSON_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct jc {
    const unsigned char *p, *end;
};

static inline void jc_ws(struct jc *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static inline bool jc_lit(struct jc *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

static inline bool jc_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One UTF-8 sequence at j->p whose lead byte is >= 0x80: shortest form, no surrogate, <= U+10FFFF.
 */
static inline bool jc_utf8(struct jc *j)
{
    unsigned char c = *j->p;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    if (n == 0 || (size_t)(j->end - j->p) < n)
        return false;
    for (size_t i = 1; i < n; i++) {
        if ((j->p[i] & 0xc0) != 0x80)
            return false;
    }
    unsigned char d = j->p[1];
    if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f) || (c == 0xf0 && d < 0x90) ||
        (c == 0xf4 && d > 0x8f))
        return false;
    j->p += n;
    return true;
}

static inline bool jc_string(struct jc *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c >= 0x80) {
            if (!jc_utf8(j))
                return false;
            continue;
        }
        j->p++;
        if (c != '\\')
            continue;
        if (j->p >= j->end)
            return false;
        c = *j->p++;
        if (c == 'u') {
            for (int i = 0; i < 4; i++) {
                if (j->p >= j->end || !jc_hex(*j->p))
                    return false;
                j->p++;
            }
        } else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
            return false;
        }
    }
    return false;
}

static inline bool jc_digits(struct jc *j)
{
    const unsigned char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return j->p > s;
}

static inline bool jc_number(struct jc *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (!jc_digits(j))
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (!jc_digits(j))
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!jc_digits(j))
            return false;
    }
    return true;
}

static inline bool jc_value(struct jc *j, int depth);

/* The members of an object (close '}') or the elements of an array (close ']'). */
static inline bool jc_container(struct jc *j, int depth, unsigned char close)
{
    j->p++;
    jc_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return true;
    }
    for (;;) {
        if (close == '}') {
            if (!jc_string(j))
                return false;
            jc_ws(j);
            if (j->p >= j->end || *j->p != ':')
                return false;
            j->p++;
        }
        if (!jc_value(j, depth + 1))
            return false;
        jc_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            jc_ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return true;
        }
        return false;
    }
}

static inline bool jc_value(struct jc *j, int depth)
{
    if (depth > 64)
        return false;
    jc_ws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{':
    case '[':
        return jc_container(j, depth, *j->p == '{' ? '}' : ']');
    case '"':
        return jc_string(j);
    case 't':
        return jc_lit(j, "true");
    case 'f':
        return jc_lit(j, "false");
    case 'n':
        return jc_lit(j, "null");
    default:
        return jc_number(j);
    }
}

/* True when text[0..len) is exactly one JSON value, an object when `object`. */
static inline bool json_check(const char *text, size_t len, bool object)
{
    struct jc j = {(const unsigned char *)text, (const unsigned char *)text + len};
    jc_ws(&j);
    if (object && (j.p >= j.end || *j.p != '{'))
        return false;
    if (!jc_value(&j, 0))
        return false;
    jc_ws(&j);
    return j.p == j.end;
}

#endif
