/* config_yaml.c: the YAML half of the config loader. Owns the libyaml document for one load,
 * turns libyaml's 0-based marks into "FILE:LINE:COL: message" errors, and walks mappings against
 * the key tables that config.c declares. Knows nothing about listeners or upstreams. */
#include "config_yaml.h"
#include "common.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FIELDS    16
#define MAX_FILE_SIZE (16u << 20) /* a config is small; refuse to slurp a disk image */

#define FIELD_AT(obj, off, type) ((type *)(void *)((char *)(obj) + (off)))

int sp_cfg_read_file(const char *path, char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -errno;

    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    int rc = b == NULL ? -ENOMEM : 0;
    while (rc == 0) {
        if (n == cap) {
            char *nb = cap >= MAX_FILE_SIZE ? NULL : realloc(b, cap * 2 + 1);
            if (nb == NULL) {
                rc = cap >= MAX_FILE_SIZE ? -EFBIG : -ENOMEM;
                break;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            rc = -errno;
        else if (r == 0)
            break;
        else
            n += (size_t)r;
    }
    close(fd);
    if (rc != 0) {
        free(b);
        return rc;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int sp_cfg_fail(struct sp_cfg_walk *w, yaml_mark_t mark, const char *fmt, ...)
{
    char *t = w->err->text;
    size_t room = sizeof(w->err->text);
    int n = snprintf(t, room, "%s:%zu:%zu: ", w->file, mark.line + 1, mark.column + 1);
    if (n > 0 && (size_t)n < room) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t + n, room - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int sp_cfg_oom(struct sp_cfg_walk *w)
{
    snprintf(w->err->text, sizeof(w->err->text), "%s: out of memory", w->file);
    return -ENOMEM;
}

yaml_node_t *sp_cfg_node(struct sp_cfg_walk *w, int id)
{
    return yaml_document_get_node(&w->doc, id);
}

bool sp_cfg_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *sp_cfg_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return sp_cfg_is_null(n) ? "an empty value" : "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

int sp_cfg_expect(struct sp_cfg_walk *w, const yaml_node_t *n, yaml_node_type_t type,
                  const char *what)
{
    if (n->type == type)
        return 0;
    const char *want = type == YAML_MAPPING_NODE    ? "a mapping"
                       : type == YAML_SEQUENCE_NODE ? "a sequence"
                                                    : "a scalar";
    return sp_cfg_fail(w, n->start_mark, "expected %s for %s, found %s", want, what,
                       sp_cfg_kind(n));
}

/* Reader errors carry a byte offset instead of a mark: count lines up to it ourselves. */
static yaml_mark_t offset_mark(const struct sp_cfg_walk *w, size_t off)
{
    yaml_mark_t m = {0, 0, 0};
    for (size_t i = 0; i < off && i < w->len; i++) {
        if (w->text[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    m.index = off;
    return m;
}

/* True when line `line` holds an unquoted "[v6]:port" value, which YAML reads as the start of a
 * flow sequence and reports in words that never mention the address. */
static bool unquoted_v6(const struct sp_cfg_walk *w, size_t line)
{
    const char *p = w->text, *end = w->text + w->len;
    for (size_t l = 0; l < line && p < end; p++) {
        if (*p == '\n')
            l++;
    }
    for (; p + 1 < end && *p != '\n'; p++) {
        if (p[0] != ' ' || p[1] != '[')
            continue;
        const char *q = p + 2;
        while (q < end && (strchr("0123456789abcdefABCDEF:.", *q) != NULL && *q != '\0'))
            q++;
        if (q + 2 < end && q[0] == ']' && q[1] == ':' && q[2] >= '0' && q[2] <= '9')
            return true;
    }
    return false;
}

static int yaml_error(struct sp_cfg_walk *w, const yaml_parser_t *p)
{
    const char *problem = p->problem != NULL ? p->problem : "cannot parse";

    if (p->error == YAML_MEMORY_ERROR)
        return sp_cfg_oom(w);
    if (p->error == YAML_READER_ERROR) {
        yaml_mark_t m = offset_mark(w, p->problem_offset);
        if (p->problem_value != -1)
            return sp_cfg_fail(w, m, "YAML error: %s (#x%X)", problem, p->problem_value);
        return sp_cfg_fail(w, m, "YAML error: %s", problem);
    }
    /* libyaml's words for a tab in the indentation do not say "tab" */
    size_t at = p->problem_mark.index;
    if (p->error == YAML_SCANNER_ERROR && at < w->len && w->text[at] == '\t')
        return sp_cfg_fail(w, p->problem_mark, "YAML error: %s (a tab; indent with spaces)",
                           problem);
    if (unquoted_v6(w, p->problem_mark.line))
        return sp_cfg_fail(w, p->problem_mark,
                           "YAML error: %s (quote bracketed IPv6 addresses, as in \"[::1]:80\")",
                           problem);
    if (p->context != NULL)
        return sp_cfg_fail(w, p->problem_mark, "YAML error: %s (%s at line %zu, column %zu)",
                           problem, p->context, p->context_mark.line + 1,
                           p->context_mark.column + 1);
    return sp_cfg_fail(w, p->problem_mark, "YAML error: %s", problem);
}

/* A second document is refused rather than ignored: someone would expect it to count. */
static int check_single_document(struct sp_cfg_walk *w, yaml_parser_t *p)
{
    yaml_document_t extra;
    if (!yaml_parser_load(p, &extra))
        return yaml_error(w, p);
    yaml_node_t *root = yaml_document_get_root_node(&extra);
    int rc = 0;
    if (root != NULL)
        rc = sp_cfg_fail(w, root->start_mark, "multiple YAML documents are not supported");
    yaml_document_delete(&extra);
    return rc;
}

/* The deepest a valid configuration nests is 6 (listeners > name > routes > item > sni > name);
 * libyaml allows 1,000 levels and spends some kilobytes on each, so 184 bytes of '{' cost 350 KB
 * (found by fuzz_config). Past this depth the file cannot be a configuration. */
#define SP_CFG_MAX_DEPTH 32

/* Scans the events once before the document is built, refusing the first alias (`*name`) and
 * the first collection nested deeper than SP_CFG_MAX_DEPTH, with their positions. libyaml's
 * document shares an aliased node rather than copying it, but the walk then builds the node's
 * contents once per use: a mapping aliased by every listener, whose `allow` list holds aliased
 * entries, made a 95 KB file cost 623 MiB and 3.6 s (listeners x entries). Without aliases the
 * document is a tree and the walk is linear in the file. A syntax error stops the scan; the
 * loader reports it in full. */
static int refuse_aliases(struct sp_cfg_walk *w)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int rc = 0, depth = 0;

    if (!yaml_parser_initialize(&p))
        return sp_cfg_oom(w);
    yaml_parser_set_input_string(&p, (const unsigned char *)w->text, w->len);
    while (rc == 0 && yaml_parser_parse(&p, &ev)) {
        yaml_event_type_t type = ev.type;
        if (type == YAML_ALIAS_EVENT)
            rc = sp_cfg_fail(w, ev.start_mark,
                             "YAML alias '*%.64s' is not supported: an alias repeats a value "
                             "without its text, so a small file could expand into a huge "
                             "configuration (write the value out)",
                             (const char *)ev.data.alias.anchor);
        else if ((type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) &&
                 ++depth > SP_CFG_MAX_DEPTH)
            rc = sp_cfg_fail(w, ev.start_mark,
                             "nested more than %d levels deep: no configuration key is",
                             SP_CFG_MAX_DEPTH);
        else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT)
            depth--;
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return rc;
}

int sp_cfg_doc_load(struct sp_cfg_walk *w, yaml_node_t **root)
{
    yaml_parser_t p;
    int rc = refuse_aliases(w);

    if (rc != 0)
        return rc;
    if (!yaml_parser_initialize(&p))
        return sp_cfg_oom(w);
    yaml_parser_set_input_string(&p, (const unsigned char *)w->text, w->len);
    /* on failure yaml_parser_load frees the partial document itself */
    if (!yaml_parser_load(&p, &w->doc)) {
        rc = yaml_error(w, &p);
        goto out;
    }
    w->doc_loaded = true;
    rc = check_single_document(w, &p);
    if (rc != 0)
        goto out;

    yaml_node_t *r = yaml_document_get_root_node(&w->doc);
    if (r == NULL || sp_cfg_is_null(r)) {
        yaml_mark_t start = {0, 0, 0};
        rc = sp_cfg_fail(w, start, "configuration is empty");
    } else if (r->type != YAML_MAPPING_NODE) {
        rc = sp_cfg_fail(w, r->start_mark, "expected a mapping at top level, found %s",
                         sp_cfg_kind(r));
    } else {
        *root = r;
    }
out:
    yaml_parser_delete(&p);
    return rc;
}

void sp_cfg_doc_free(struct sp_cfg_walk *w)
{
    if (w->doc_loaded)
        yaml_document_delete(&w->doc);
    w->doc_loaded = false;
}

unsigned sp_cfg_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned row[65];

    if (la > 64 || lb > 64)
        return UINT_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = SP_MIN(up, row[j - 1]) + 1;
            unsigned subst = diag + (a[i - 1] != b[j - 1]);
            row[j] = SP_MIN(best, subst);
            diag = up;
        }
    }
    return row[lb];
}

struct dup_sort {
    const void *ctx;
    sp_cfg_cmp_fn cmp;
};

/* By key, then by position: each run of equal keys starts with its first entry in the file. */
static int dup_order(const void *a, const void *b, void *arg)
{
    const struct dup_sort *d = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = d->cmp(d->ctx, x, y);
    return c != 0 ? c : (x > y) - (x < y);
}

int sp_cfg_first_duplicate(const void *ctx, size_t n, sp_cfg_cmp_fn cmp, size_t *first, size_t *dup)
{
    struct dup_sort d = {ctx, cmp};
    size_t best = n, best_first = 0;

    if (n < 2)
        return 0;
    size_t *idx = malloc(n * sizeof(*idx));
    if (idx == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    qsort_r(idx, n, sizeof(*idx), dup_order, &d);
    for (size_t k = 1, start = 0; k < n; k++) {
        if (cmp(ctx, idx[start], idx[k]) != 0) {
            start = k;
            continue;
        }
        if (k == start + 1 && idx[k] < best) { /* the run's second entry repeats its first */
            best = idx[k];
            best_first = idx[start];
        }
    }
    free(idx);
    if (best == n)
        return 0;
    *first = best_first;
    *dup = best;
    return 1;
}

/* "in listener 'web'" or "at top level", for messages about keys of a section. */
static const char *place(const char *where, char *buf, size_t size)
{
    if (where == NULL)
        return "at top level";
    snprintf(buf, size, "in %s", where);
    return buf;
}

static int unknown_key(struct sp_cfg_walk *w, const yaml_node_t *k, const struct sp_cfg_field *tab,
                       size_t n, const char *in)
{
    const char *key = (const char *)k->data.scalar.value;
    const char *best = NULL;
    unsigned best_d = 3; /* suggest only within two edits: further is more likely noise */

    for (size_t i = 0; i < n; i++) {
        unsigned d = sp_cfg_distance(key, tab[i].key);
        if (d < best_d) {
            best_d = d;
            best = tab[i].key;
        }
    }
    if (best != NULL)
        return sp_cfg_fail(w, k->start_mark, "unknown key '%.64s' %s (did you mean '%s'?)", key, in,
                           best);
    return sp_cfg_fail(w, k->start_mark, "unknown key '%.64s' %s", key, in);
}

int sp_cfg_walk_map(struct sp_cfg_walk *w, yaml_node_t *map, const struct sp_cfg_field *tab,
                    size_t n, void *obj, const char *where, yaml_mark_t owner)
{
    yaml_mark_t seen[MAX_FIELDS];
    bool got[MAX_FIELDS] = {false};
    char in[160], what[224];
    const char *inp = place(where, in, sizeof(in));

    if (n > MAX_FIELDS)
        abort(); /* a table grew past the seen[] array: a bug, not a config error */
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = sp_cfg_node(w, p->key);
        yaml_node_t *v = sp_cfg_node(w, p->value);
        if (k->type != YAML_SCALAR_NODE)
            return sp_cfg_fail(w, k->start_mark, "expected a scalar key %s, found %s", inp,
                               sp_cfg_kind(k));
        const char *key = (const char *)k->data.scalar.value;
        size_t i = 0;
        while (i < n && strcmp(key, tab[i].key) != 0)
            i++;
        if (i == n)
            return unknown_key(w, k, tab, n, inp);
        if (got[i])
            return sp_cfg_fail(w, k->start_mark, "duplicate key '%s' %s (first at line %zu)", key,
                               inp, seen[i].line + 1);
        got[i] = true;
        seen[i] = k->start_mark;
        if (where == NULL)
            snprintf(what, sizeof(what), "'%s'", key);
        else
            snprintf(what, sizeof(what), "'%s' in %s", key, where);
        int rc = tab[i].parse(w, &tab[i], v, obj, what);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (tab[i].required && !got[i])
            return sp_cfg_fail(w, owner, "missing required key '%s' %s", tab[i].key, inp);
    }
    return 0;
}

static int scalar_node(struct sp_cfg_walk *w, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE)
        return sp_cfg_expect(w, n, YAML_SCALAR_NODE, what);
    if (sp_cfg_is_null(n))
        return sp_cfg_fail(w, n->start_mark, "missing value for %s", what);
    return 0;
}

int sp_cfg_scalar(struct sp_cfg_walk *w, const yaml_node_t *n, const char *what, const char **out)
{
    int rc = scalar_node(w, n, what);
    if (rc != 0)
        return rc;
    const char *v = (const char *)n->data.scalar.value;
    /* libyaml decodes "\0" in double quotes; every parser below would stop at it silently */
    if (strlen(v) != n->data.scalar.length)
        return sp_cfg_fail(w, n->start_mark, "NUL byte in the value of %s", what);
    *out = v;
    return 0;
}

int sp_cfg_parse_uint(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what)
{
    const char *s = NULL;
    uint64_t v;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    rc = sp_parse_uint(s, f->min, f->max, &v);
    if (rc == -EINVAL)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid integer '%.64s' for %s (expected %" PRIu64 "..%" PRIu64 ")", s,
                           what, f->min, f->max);
    if (rc != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "value '%.64s' for %s is out of range (%" PRIu64 "..%" PRIu64 ")", s,
                           what, f->min, f->max);
    *FIELD_AT(obj, f->off, unsigned) = (unsigned)v;
    return 0;
}

int sp_cfg_parse_duration(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                          void *obj, const char *what)
{
    const char *s = NULL;
    uint64_t v;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    rc = sp_parse_duration_ms(s, &v);
    if (rc == -EINVAL)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid duration '%.64s' for %s (expected a number and a unit: ms, "
                           "s, m or h, as in 2s)",
                           s, what);
    if (rc != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "duration '%.64s' for %s is too long (at most about 24 days)", s, what);
    if (v < f->min)
        return sp_cfg_fail(w, val->start_mark, "%s must be greater than 0", what);
    *FIELD_AT(obj, f->off, uint64_t) = v;
    return 0;
}

/* 4096 -> "4k": bounds in messages read like the values a user writes. */
static void fmt_size(char *buf, size_t size, uint64_t v)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        uint64_t u = (uint64_t)1 << (10 * (3 - i));
        if (v >= u && v % u == 0) {
            snprintf(buf, size, "%" PRIu64 "%c", v / u, units[i]);
            return;
        }
    }
    snprintf(buf, size, "%" PRIu64, v);
}

int sp_cfg_parse_size(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what)
{
    const char *s = NULL;
    uint64_t v;
    char lo[24], hi[24];
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    rc = sp_parse_size(s, &v);
    if (rc == -EINVAL)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid size '%.64s' for %s (expected bytes, or a number with k, m "
                           "or g, as in 64k)",
                           s, what);
    if (rc != 0 || v < f->min || v > f->max) {
        fmt_size(lo, sizeof(lo), f->min);
        fmt_size(hi, sizeof(hi), f->max);
        return sp_cfg_fail(w, val->start_mark, "size '%.64s' for %s is out of range (%s..%s)", s,
                           what, lo, hi);
    }
    *FIELD_AT(obj, f->off, uint64_t) = v;
    return 0;
}

int sp_cfg_parse_bool(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what)
{
    const char *s = NULL;
    bool v;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    if (sp_parse_bool(s, &v) != 0)
        return sp_cfg_fail(w, val->start_mark,
                           "invalid boolean '%.64s' for %s (expected true or false)", s, what);
    *FIELD_AT(obj, f->off, bool) = v;
    return 0;
}

int sp_cfg_parse_enum(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what)
{
    const char *s = NULL;
    char list[160] = "";
    size_t used = 0;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    for (unsigned i = 0; f->names[i] != NULL; i++) {
        if (strcmp(s, f->names[i]) == 0) {
            *FIELD_AT(obj, f->off, unsigned) = i;
            return 0;
        }
        int m = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", f->names[i]);
        if (m > 0 && (size_t)m < sizeof(list) - used)
            used += (size_t)m;
    }
    return sp_cfg_fail(w, val->start_mark, "invalid value '%.64s' for %s (expected one of: %s)", s,
                       what, list);
}

int sp_cfg_parse_string(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what)
{
    const char *s = NULL;
    int rc = sp_cfg_scalar(w, val, what, &s);
    if (rc != 0)
        return rc;
    char *copy = strdup(s);
    if (copy == NULL)
        return sp_cfg_oom(w);
    *FIELD_AT(obj, f->off, char *) = copy;
    return 0;
}

int sp_cfg_parse_bytes(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what)
{
    int rc = scalar_node(w, val, what);
    if (rc != 0)
        return rc;
    size_t len = val->data.scalar.length;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return sp_cfg_oom(w);
    memcpy(copy, val->data.scalar.value, len);
    copy[len] = '\0'; /* for printing; the length field is what counts */
    *FIELD_AT(obj, f->off, char *) = copy;
    *FIELD_AT(obj, f->off2, size_t) = len;
    return 0;
}

struct sp_conf_mark sp_cfg_mark(yaml_mark_t m)
{
    struct sp_conf_mark c = {(int)m.line + 1, (int)m.column + 1};
    return c;
}

yaml_mark_t sp_cfg_yaml_mark(struct sp_conf_mark m)
{
    yaml_mark_t y = {0, (size_t)m.line - 1, (size_t)m.col - 1};
    return y;
}

/* ---- named sections --------------------------------------------------------------------- */

/* The key of a listener or upstream entry is its name: a non-empty scalar. */
static int section_name(struct sp_cfg_walk *w, const yaml_node_t *k, const char *kind,
                        const char **name)
{
    if (k->type != YAML_SCALAR_NODE)
        return sp_cfg_fail(w, k->start_mark, "expected a scalar %s name, found %s", kind,
                           sp_cfg_kind(k));
    const char *s = (const char *)k->data.scalar.value;
    if (s[0] == '\0' || strlen(s) != k->data.scalar.length)
        return sp_cfg_fail(w, k->start_mark, "%s name must be a non-empty string", kind);
    *name = s;
    return 0;
}

int sp_cfg_section_count(struct sp_cfg_walk *w, const struct sp_cfg_section *sc, yaml_node_t *val,
                         const char *what, size_t *n)
{
    int rc = sp_cfg_expect(w, val, YAML_MAPPING_NODE, what);
    if (rc != 0)
        return rc;
    *n = (size_t)(val->data.mapping.pairs.top - val->data.mapping.pairs.start);
    if (*n == 0)
        return sp_cfg_fail(w, val->start_mark, "%s is empty (at least one %s is required)", what,
                           sc->kind);
    return 0;
}

static char **entry_name(const struct sp_cfg_section *sc, void *entries, size_t i)
{
    return (char **)(void *)((char *)entries + i * sc->size + sc->name_off);
}

static struct sp_conf_mark *entry_mark(const struct sp_cfg_section *sc, void *entries, size_t i)
{
    return (struct sp_conf_mark *)(void *)((char *)entries + i * sc->size + sc->mark_off);
}

/* Entry i of a named section: a unique name, kept with its position, then its fields. */
static int parse_entry(struct sp_cfg_walk *w, const struct sp_cfg_section *sc, yaml_node_pair_t *p,
                       void *entries, size_t i)
{
    yaml_node_t *k = sp_cfg_node(w, p->key), *v = sp_cfg_node(w, p->value);
    const char *name = NULL;
    char where[96];

    int rc = section_name(w, k, sc->kind, &name);
    if (rc != 0)
        return rc;
    *entry_mark(sc, entries, i) = sp_cfg_mark(k->start_mark);
    if ((*entry_name(sc, entries, i) = strdup(name)) == NULL)
        return sp_cfg_oom(w);
    snprintf(where, sizeof(where), "%s '%.64s'", sc->kind, name);
    rc = sp_cfg_expect(w, v, YAML_MAPPING_NODE, where);
    if (rc == 0)
        rc = sp_cfg_walk_map(w, v, sc->fields, sc->nfields, (char *)entries + i * sc->size, where,
                             k->start_mark);
    return rc;
}

struct named {
    const struct sp_cfg_section *sc;
    void *entries;
};

static int cmp_name(const void *ctx, size_t a, size_t b)
{
    const struct named *nm = ctx;
    return strcmp(*entry_name(nm->sc, nm->entries, a), *entry_name(nm->sc, nm->entries, b));
}

int sp_cfg_parse_section(struct sp_cfg_walk *w, const struct sp_cfg_section *sc, yaml_node_t *val,
                         void *entries, size_t n)
{
    int rc;
    for (size_t i = 0; i < n; i++) {
        sc->defaults((char *)entries + i * sc->size);
        rc = parse_entry(w, sc, &val->data.mapping.pairs.start[i], entries, i);
        if (rc != 0)
            return rc;
    }
    struct named nm = {sc, entries};
    size_t first, dup;
    rc = sp_cfg_first_duplicate(&nm, n, cmp_name, &first, &dup);
    if (rc < 0)
        return sp_cfg_oom(w);
    if (rc == 0)
        return 0;
    yaml_node_t *k = sp_cfg_node(w, val->data.mapping.pairs.start[dup].key);
    return sp_cfg_fail(w, k->start_mark, "duplicate %s '%.64s' (first at line %d)", sc->kind,
                       *entry_name(sc, entries, dup), entry_mark(sc, entries, first)->line);
}
