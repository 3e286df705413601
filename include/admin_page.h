/* admin_page.h: the status page the admin endpoint serves on GET /. Its HTML lives in
 * proxy/status_page.html; the build embeds it (cmake/embed_page.cmake) with the
 * Content-Security-Policy that lets its one inline style and one inline script run, by hash. */
#ifndef SPLICER_ADMIN_PAGE_H
#define SPLICER_ADMIN_PAGE_H

#include <stddef.h>

struct MHD_Response;

/* Generated (build/generated/status_page.c): the page, its length, and its CSP header value. */
extern const unsigned char sp_status_page_html[];
extern const size_t sp_status_page_len;
extern const char sp_status_page_csp[];

/* A new response carrying the page and its headers (Content-Type, Content-Security-Policy,
 * nosniff, no referrer, no caching), for MHD_queue_response; the caller destroys it. NULL when
 * out of memory. Any thread. */
struct MHD_Response *sp_admin_page_response(void);

#endif
