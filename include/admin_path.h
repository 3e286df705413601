/* admin_path.h: parsing the admin endpoint's drain and enable paths. No allocation, no I/O. */
#ifndef SPLICER_ADMIN_PATH_H
#define SPLICER_ADMIN_PATH_H

/* Splits "/upstreams/NAME/servers/ADDR/ACTION" (raw, still percent-encoded). Returns 1 when
 * the path has that shape, with the decoded parts in the buffers (each at least as large as
 * strlen(url) + 1); 0 when it does not; -EINVAL for a bad escape or an encoded NUL. Splitting
 * comes before decoding, so an encoded '/' stays inside its segment. Any thread. */
int sp_admin_split_server_path(const char *url, char *name, char *addr, char *action);

#endif
