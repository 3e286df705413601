/* resolver.c: DNS names of servers, resolved at load and refreshed on the thread pool. */
#include "resolver.h"

#include "log.h"
#include "sock.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t index_of(const struct sp_config *cfg, size_t u, size_t s)
{
    size_t idx = 0;
    for (size_t i = 0; i < u; i++)
        idx += cfg->upstreams[i].nservers;
    return idx + s;
}

const struct sp_addr_list *sp_resolved_get(const struct sp_resolved *r, const struct sp_config *cfg,
                                           size_t u, size_t s)
{
    return &r->lists[index_of(cfg, u, s)];
}

static int cmp_addr(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct sockaddr_storage));
}

/* getaddrinfo's answer as a sorted list without duplicates, so two answers compare by memcmp. */
static int list_from(const struct addrinfo *ai, uint16_t port, struct sp_addr_list *out)
{
    size_t n = 0;
    for (const struct addrinfo *p = ai; p != NULL; p = p->ai_next)
        n++;
    struct sockaddr_storage *v = calloc(n != 0 ? n : 1, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    size_t k = 0;
    for (const struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
        if (p->ai_family != AF_INET && p->ai_family != AF_INET6)
            continue;
        memcpy(&v[k], p->ai_addr, p->ai_addrlen);
        if (p->ai_family == AF_INET)
            ((struct sockaddr_in *)&v[k])->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&v[k])->sin6_port = htons(port);
        k++;
    }
    qsort(v, k, sizeof(*v), cmp_addr);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u == 0 || cmp_addr(&v[u - 1], &v[i]) != 0)
            v[u++] = v[i];
    }
    out->v = v;
    out->n = u;
    return 0;
}

static bool same_list(const struct sp_addr_list *a, const struct sp_addr_list *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

static void log_list(const char *upstream, const struct sp_server_conf *sc,
                     const struct sp_addr_list *l)
{
    char text[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < l->n && used + SP_ADDRSTRLEN + 2 < sizeof(text); i++) {
        char one[SP_ADDRSTRLEN];
        sp_sock_addr_str((const struct sockaddr *)&l->v[i], one, sizeof(one));
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s%s", i ? ", " : "", one);
    }
    sp_log_info("upstream %s: %s resolves to %zu address%s%s%s%s", upstream, sc->address, l->n,
                l->n == 1 ? "" : "es", l->n ? " (" : "", text, l->n ? ")" : "");
}

static const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

int sp_resolved_load(const struct sp_config *cfg, struct sp_resolved *out)
{
    size_t n = index_of(cfg, cfg->nupstreams, 0);
    *out = (struct sp_resolved){.lists = calloc(n != 0 ? n : 1, sizeof(*out->lists)), .n = n};
    if (out->lists == NULL)
        return -ENOMEM;
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const struct sp_upstream_conf *uc = &cfg->upstreams[u];
        for (size_t s = 0; s < uc->nservers; s++) {
            const struct sp_server_conf *sc = &uc->servers[s];
            if (!sc->needs_resolve)
                continue;
            struct addrinfo *ai = NULL;
            int rc = getaddrinfo(sc->host, NULL, &hints, &ai);
            struct sp_addr_list *l = &out->lists[index_of(cfg, u, s)];
            if (rc != 0) {
                sp_log_warn("upstream %s: cannot resolve %s: %s; retrying every %llu ms", uc->name,
                            sc->address, gai_strerror(rc), (unsigned long long)uc->dns_refresh_ms);
                continue;
            }
            rc = list_from(ai, sc->port, l);
            freeaddrinfo(ai);
            if (rc != 0)
                return rc;
            log_list(uc->name, sc, l);
        }
    }
    return 0;
}

void sp_resolved_deinit(struct sp_resolved *r)
{
    for (size_t i = 0; r->lists != NULL && i < r->n; i++)
        free(r->lists[i].v);
    free(r->lists);
    r->lists = NULL;
    r->n = 0;
}

/* ---- periodic refresh ------------------------------------------------------------------- */

struct lookup {
    uv_getaddrinfo_t req;
    struct sp_resolver *owner;
    size_t u, s;
    bool busy;
    bool failing; /* the last lookup failed: log again only when it recovers */
};

struct upstream_timer {
    uv_timer_t timer;
    struct sp_resolver *owner;
    size_t u;
};

struct sp_resolver {
    const struct sp_config *cfg; /* borrowed */
    struct sp_resolved *res;     /* borrowed */
    sp_resolver_change_fn changed;
    void *arg;
    struct lookup *lookups;        /* owned, one per server slot (only named ones used) */
    struct upstream_timer *timers; /* owned, one per upstream (only those with names started) */
    unsigned pending;              /* handles and lookups still to call back after stop */
    bool stopping;
};

static void maybe_free(struct sp_resolver *r)
{
    if (r->stopping && r->pending == 0) {
        free(r->lookups);
        free(r->timers);
        free(r);
    }
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct lookup *lk = req->data;
    struct sp_resolver *r = lk->owner;
    lk->busy = false;
    r->pending--;
    if (r->stopping) {
        uv_freeaddrinfo(ai);
        maybe_free(r);
        return;
    }
    const struct sp_upstream_conf *uc = &r->cfg->upstreams[lk->u];
    const struct sp_server_conf *sc = &uc->servers[lk->s];
    if (status != 0) {
        if (!lk->failing)
            sp_log_warn("upstream %s: cannot resolve %s: %s; keeping the last %zu address(es)",
                        uc->name, sc->address, uv_strerror(status),
                        sp_resolved_get(r->res, r->cfg, lk->u, lk->s)->n);
        lk->failing = true;
        uv_freeaddrinfo(ai);
        return;
    }
    lk->failing = false;
    struct sp_addr_list fresh;
    int rc = list_from(ai, sc->port, &fresh);
    uv_freeaddrinfo(ai);
    if (rc != 0)
        return;
    struct sp_addr_list *cur = &r->res->lists[index_of(r->cfg, lk->u, lk->s)];
    if (same_list(cur, &fresh)) {
        free(fresh.v);
        return;
    }
    free(cur->v);
    *cur = fresh;
    log_list(uc->name, sc, cur);
    r->changed(r->arg);
}

static void on_refresh(uv_timer_t *t)
{
    struct upstream_timer *ut = t->data;
    struct sp_resolver *r = ut->owner;
    const struct sp_upstream_conf *uc = &r->cfg->upstreams[ut->u];
    for (size_t s = 0; s < uc->nservers; s++) {
        const struct sp_server_conf *sc = &uc->servers[s];
        struct lookup *lk = &r->lookups[index_of(r->cfg, ut->u, s)];
        if (!sc->needs_resolve || lk->busy)
            continue;
        if (uv_getaddrinfo(t->loop, &lk->req, on_lookup, sc->host, NULL, &hints) == 0) {
            lk->busy = true;
            r->pending++;
        }
    }
}

static bool has_names(const struct sp_upstream_conf *uc)
{
    for (size_t s = 0; s < uc->nservers; s++) {
        if (uc->servers[s].needs_resolve)
            return true;
    }
    return false;
}

int sp_resolver_start(uv_loop_t *loop, const struct sp_config *cfg, struct sp_resolved *res,
                      sp_resolver_change_fn changed, void *arg, struct sp_resolver **out)
{
    *out = NULL;
    bool any = false;
    for (size_t u = 0; u < cfg->nupstreams; u++)
        any = any || has_names(&cfg->upstreams[u]);
    if (!any)
        return 0;
    struct sp_resolver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    *r = (struct sp_resolver){.cfg = cfg, .res = res, .changed = changed, .arg = arg};
    r->lookups = calloc(res->n != 0 ? res->n : 1, sizeof(*r->lookups));
    r->timers = calloc(cfg->nupstreams, sizeof(*r->timers));
    if (r->lookups == NULL || r->timers == NULL) {
        r->stopping = true;
        maybe_free(r);
        return -ENOMEM;
    }
    for (size_t u = 0; u < cfg->nupstreams; u++) {
        const struct sp_upstream_conf *uc = &cfg->upstreams[u];
        for (size_t s = 0; s < uc->nservers; s++) {
            struct lookup *lk = &r->lookups[index_of(cfg, u, s)];
            *lk = (struct lookup){.owner = r, .u = u, .s = s};
            lk->req.data = lk;
        }
        if (!has_names(uc))
            continue;
        struct upstream_timer *ut = &r->timers[u];
        ut->owner = r;
        ut->u = u;
        uv_timer_init(loop, &ut->timer);
        ut->timer.data = ut;
        uv_timer_start(&ut->timer, on_refresh, uc->dns_refresh_ms, uc->dns_refresh_ms);
        r->pending++;
    }
    *out = r;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct upstream_timer *ut = h->data;
    struct sp_resolver *r = ut->owner;
    r->pending--;
    maybe_free(r);
}

void sp_resolver_stop(struct sp_resolver *r)
{
    if (r == NULL)
        return;
    r->stopping = true;
    for (size_t u = 0; u < r->cfg->nupstreams; u++) {
        if (r->timers[u].owner != NULL)
            uv_close((uv_handle_t *)&r->timers[u].timer, on_timer_closed);
    }
    for (size_t i = 0; i < r->res->n; i++) {
        if (r->lookups[i].busy)
            uv_cancel((uv_req_t *)&r->lookups[i].req); /* its callback still comes */
    }
}
