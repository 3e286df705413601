/* metrics.h: renders a struct sp_stats snapshot as Prometheus text (exposition format 0.0.4)
 * and as the /status JSON document. Pure formatting: no locks, no I/O, no libuv. */
#ifndef SPLICER_METRICS_H
#define SPLICER_METRICS_H

#include "stats.h"
#include "strbuf.h"

/* Content types of the two renderings, for the HTTP layer. */
#define SP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define SP_STATUS_CONTENT_TYPE  "application/json"

/* Appends every metric family of `st` to `out`: one "# HELP" and one "# TYPE" line per family,
 * then its samples, with label values escaped (backslash, double quote, newline). Returns 0 or
 * -ENOMEM; on failure `out` may hold a partial rendering the caller should discard. Any
 * thread; `st` is only read. */
int sp_metrics_render(const struct sp_stats *st, struct sp_strbuf *out);

/* Appends the /status JSON object of `st` (process, relay, listeners, upstreams with their
 * servers), one line, newline-terminated. Strings are JSON-escaped and bytes that are not
 * valid UTF-8 become U+FFFD, so the output always parses. Returns 0 or -ENOMEM, as above. */
int sp_metrics_render_status(const struct sp_stats *st, struct sp_strbuf *out);

/* Appends `s` as a JSON string literal with its quotes (null for NULL), escaped as in
 * sp_metrics_render_status. Returns 0 or -ENOMEM. */
int sp_metrics_json_str(struct sp_strbuf *out, const char *s);

#endif
