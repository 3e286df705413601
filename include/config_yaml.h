/* config_yaml.h: internal to the config module. The libyaml document, "FILE:LINE:COL: message"
 * errors, and the table-driven mapping walker that config.c builds each section with: a key
 * that is not in a section's table is an error by construction. Not for other modules. */
#ifndef SPLICER_CONFIG_YAML_H
#define SPLICER_CONFIG_YAML_H

#include "config.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

/* One load in progress. config.c embeds it in its own state and recovers that with
 * sp_container_of inside the field parsers. */
struct sp_cfg_walk {
    const char *file;            /* borrowed; stands for FILE in messages */
    const char *text;            /* borrowed; the input, to place reader errors */
    size_t len;                  /* length of text */
    struct sp_config_error *err; /* borrowed; receives the first error */
    yaml_document_t doc;         /* owned once doc_loaded is set */
    bool doc_loaded;
};

struct sp_cfg_field;

/* Parses `val` (the value of key f->key) into `obj`; `what` names the key for messages, such as
 * "'listen' in listener 'web'". Returns 0, or the result of sp_cfg_fail/sp_cfg_oom. */
typedef int (*sp_cfg_parse_fn)(struct sp_cfg_walk *w, const struct sp_cfg_field *f,
                               yaml_node_t *val, void *obj, const char *what);

/* One row of a section table. */
struct sp_cfg_field {
    const char *key;
    sp_cfg_parse_fn parse;
    size_t off;               /* destination inside obj */
    size_t off2;              /* byte strings: where the length goes */
    uint64_t min, max;        /* integers and sizes: bounds; durations: min 1 means "> 0" */
    const char *const *names; /* enums: the accepted words, NULL-terminated, index = value */
    bool required;
};

/* Reads a whole file into a new NUL-terminated buffer (*buf, free with free()). Returns 0 or a
 * negative errno (-EFBIG above 16 MiB). */
int sp_cfg_read_file(const char *path, char **buf, size_t *len);

/* Parses w->text as a single YAML document. On success returns 0, sets w->doc_loaded and
 * *root to a mapping node. Otherwise fills w->err (syntax error, an alias, several documents,
 * empty configuration, a top level that is not a mapping) and returns -EINVAL or -ENOMEM.
 * Aliases are refused so that the document is a tree: every walk over it is then linear in
 * the size of the file. */
int sp_cfg_doc_load(struct sp_cfg_walk *w, yaml_node_t **root);

/* Frees the document if one is loaded. Safe to call twice. */
void sp_cfg_doc_free(struct sp_cfg_walk *w);

/* Formats "FILE:LINE:COL: message" into w->err from a libyaml (0-based) mark; returns -EINVAL. */
int sp_cfg_fail(struct sp_cfg_walk *w, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports "FILE: out of memory"; returns -ENOMEM. */
int sp_cfg_oom(struct sp_cfg_walk *w);

/* The node with this id in the document (never NULL for ids libyaml handed out). */
yaml_node_t *sp_cfg_node(struct sp_cfg_walk *w, int id);

/* True for a plain scalar that YAML reads as null: `key:` with nothing after it, `~`, `null`. */
bool sp_cfg_is_null(const yaml_node_t *n);

/* "a mapping", "a sequence", "a scalar" or "an empty value" (a plain "", "~" or "null"). */
const char *sp_cfg_kind(const yaml_node_t *n);

/* Fails with "expected <type> for <what>, found <kind>" unless n has the given type. */
int sp_cfg_expect(struct sp_cfg_walk *w, const yaml_node_t *n, yaml_node_type_t type,
                  const char *what);

/* Levenshtein distance, capped: strings longer than 64 bytes count as far from everything. */
unsigned sp_cfg_distance(const char *a, const char *b);

/* Orders entries a and b of ctx by key: < 0, 0 (same key) or > 0, a total order. */
typedef int (*sp_cfg_cmp_fn)(const void *ctx, size_t a, size_t b);

/* The first repeated key among entries 0..n-1 of ctx, in file order: the smallest *dup that
 * has an earlier entry *first with the same key. Sorts (O(n log n)) rather than comparing every
 * pair, so a long list costs what its length does. Returns 1 with *first and *dup set, 0 when
 * all keys differ, -ENOMEM. */
int sp_cfg_first_duplicate(const void *ctx, size_t n, sp_cfg_cmp_fn cmp, size_t *first,
                           size_t *dup);

/* Walks the mapping `map` against table `tab` (at most 16 rows), calling each row's parser
 * with `obj`. `where` names the section ("listener 'web'"), NULL for the top level. Fails on a
 * non-scalar key, an unknown key (suggesting the nearest row), a duplicate key, and, at
 * `owner` (the section's own key), on a missing required key. */
int sp_cfg_walk_map(struct sp_cfg_walk *w, yaml_node_t *map, const struct sp_cfg_field *tab,
                    size_t n, void *obj, const char *where, yaml_mark_t owner);

/* A libyaml (0-based) mark as the config model keeps positions: 1-based line and column, and
 * back, for a cross-check that reports at a position the model kept. */
struct sp_conf_mark sp_cfg_mark(yaml_mark_t m);
yaml_mark_t sp_cfg_yaml_mark(struct sp_conf_mark m);

/* A named section (listeners, upstreams): a mapping from each entry's name to its keys, parsed
 * into an array of structs that each hold a char *name and a struct sp_conf_mark mark. */
struct sp_cfg_section {
    const char *kind; /* "listener", for messages */
    const struct sp_cfg_field *fields;
    size_t nfields;
    size_t size;                   /* of one entry */
    size_t name_off;               /* of its char *name */
    size_t mark_off;               /* of its struct sp_conf_mark mark */
    void (*defaults)(void *entry); /* fills an entry before its keys are read */
};

/* The number of entries of the named section `val` (the value of key `what`); an absent or
 * empty section is an error. */
int sp_cfg_section_count(struct sp_cfg_walk *w, const struct sp_cfg_section *sc, yaml_node_t *val,
                         const char *what, size_t *n);

/* Parses the n entries of the named section `val` into `entries`, a zeroed array of n that the
 * caller has already stored where the field parsers (and the free on failure) find it. Refuses
 * a name that is not a non-empty string, and a name used twice. */
int sp_cfg_parse_section(struct sp_cfg_walk *w, const struct sp_cfg_section *sc, yaml_node_t *val,
                         void *entries, size_t n);

/* Field parsers. Destinations: unsigned (uint, with min/max), uint64_t milliseconds (duration,
 * with min), uint64_t bytes (size, with min/max), bool, unsigned enum index (enum, with
 * names), char * owned (string), char * owned + size_t length (bytes, keeps NULs). */
int sp_cfg_parse_uint(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what);
int sp_cfg_parse_duration(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                          void *obj, const char *what);
int sp_cfg_parse_size(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what);
int sp_cfg_parse_bool(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what);
int sp_cfg_parse_enum(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                      void *obj, const char *what);
int sp_cfg_parse_string(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                        void *obj, const char *what);
int sp_cfg_parse_bytes(struct sp_cfg_walk *w, const struct sp_cfg_field *f, yaml_node_t *val,
                       void *obj, const char *what);

/* The text of a scalar value for `what`: fails on a non-scalar, on an empty plain value
 * ("missing value for ...") and on an embedded NUL. The text lives as long as the document. */
int sp_cfg_scalar(struct sp_cfg_walk *w, const yaml_node_t *n, const char *what, const char **out);

#endif
