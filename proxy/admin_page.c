/* admin_page.c: the reply to GET / on the admin endpoint: the embedded status page and the
 * headers that keep it self-contained (it may fetch /status from its own origin and nothing
 * else, run no script or style but its own, and be framed by no other site). */
#include "admin_page.h"

#include <microhttpd.h>

struct MHD_Response *sp_admin_page_response(void)
{
    static const char *const headers[][2] = {
        {MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8"},
        {MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, sp_status_page_csp},
        {MHD_HTTP_HEADER_X_CONTENT_TYPE_OPTIONS, "nosniff"},
        {"Referrer-Policy", "no-referrer"},
        {MHD_HTTP_HEADER_X_FRAME_OPTIONS, "DENY"},   /* frame-ancestors, for older browsers */
        {MHD_HTTP_HEADER_CACHE_CONTROL, "no-store"}, /* a new binary brings a new page */
    };
    /* the page is static data: no copy per request */
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sp_status_page_len, (void *)sp_status_page_html, MHD_RESPMEM_PERSISTENT);
    for (size_t i = 0; r != NULL && i < sizeof(headers) / sizeof(headers[0]); i++) {
        if (MHD_add_response_header(r, headers[i][0], headers[i][1]) != MHD_YES) {
            MHD_destroy_response(r);
            r = NULL;
        }
    }
    return r;
}
