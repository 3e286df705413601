/* fuzz_config.c: the YAML config loader (config.c, config_yaml.c, config_deploy.c and the
 * scalar parsers under them): load, validate, free. Properties:
 *  - a refused file has a message "fuzz.yaml:LINE:COL: ..." (or "fuzz.yaml: out of memory"),
 *    and loading it again gives the same message (no uninitialised byte in it);
 *  - a loaded config is consistent: every listener and route points at one of its upstreams,
 *    every upstream has servers, names are unique;
 *  - a work budget: the bytes the loader allocates stay within a fixed multiple of the input's
 *    size. Work out of proportion to the input (a few aliases making a file expand to millions
 *    of values) is no crash, so only such a budget lets the fuzzer see it. The count comes from
 *    the sanitizers' allocation hooks; a build without them (plain replay) skips the budget. */
#include "config.h"
#include "fuzz.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>

#define MAX_INPUT (64 << 10)
/* Bytes allocated per input byte, plus a constant for the fixed part (libyaml's buffers, ~70
 * KiB). Measured over the corpus: at most ~50 per byte above the fixed part; the alias blow-up
 * of issue 9 (item 13) took 24,000 per byte in a 3 KB file, and grows with the file. */
#define BUDGET_PER_BYTE 400
#define BUDGET_FIXED    (256 << 10)

int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *))
    __attribute__((weak));

static bool counting;
static size_t allocated;

static void on_malloc(const volatile void *p, size_t n)
{
    (void)p;
    if (counting)
        allocated += n;
}

static void on_free(const volatile void *p)
{
    (void)p;
}

static bool hooks_ok(void)
{
    static int state; /* 0 unknown, 1 installed, -1 unavailable */
    if (state == 0)
        state = __sanitizer_install_malloc_and_free_hooks != NULL &&
                        __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0
                    ? 1
                    : -1;
    return state == 1;
}

static void check_message(const char *text)
{
    static const char prefix[] = "fuzz.yaml:";
    FZ_CHECK(strncmp(text, prefix, sizeof(prefix) - 1) == 0, "message '%s'", text);
    const char *p = text + sizeof(prefix) - 1;
    if (strcmp(p, " out of memory") == 0)
        return;
    for (int field = 0; field < 2; field++) {
        FZ_CHECK(*p >= '1' && *p <= '9', "no line/column in '%s'", text);
        while (isdigit((unsigned char)*p))
            p++;
        FZ_CHECK(*p == ':', "no line/column in '%s'", text);
        p++;
    }
    FZ_CHECK(p[0] == ' ' && p[1] != '\0', "no message in '%s'", text);
}

static bool in_upstreams(const struct sp_config *cfg, const struct sp_upstream_conf *u)
{
    return u != NULL && u >= cfg->upstreams && u < cfg->upstreams + cfg->nupstreams;
}

static void check_config(const struct sp_config *cfg)
{
    FZ_CHECK(cfg->nlisteners > 0 && cfg->nupstreams > 0, "empty config loaded");
    FZ_CHECK(cfg->workers >= 1, "workers %u", cfg->workers);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sp_listener_conf *l = &cfg->listeners[i];
        FZ_CHECK(in_upstreams(cfg, l->upstream), "listener %zu without upstream", i);
        FZ_CHECK(strcmp(l->upstream->name, l->upstream_name) == 0, "listener %zu upstream", i);
        for (size_t j = 0; j < i; j++)
            FZ_CHECK(strcmp(cfg->listeners[j].name, l->name) != 0, "listener name twice");
        for (size_t r = 0; r < l->nroutes; r++)
            FZ_CHECK(in_upstreams(cfg, l->routes[r].upstream) && l->routes[r].nsni > 0,
                     "route %zu of listener %zu", r, i);
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct sp_upstream_conf *u = &cfg->upstreams[i];
        FZ_CHECK(u->nservers > 0 && u->servers != NULL, "upstream %zu without servers", i);
        for (size_t j = 0; j < i; j++)
            FZ_CHECK(strcmp(cfg->upstreams[j].name, u->name) != 0, "upstream name twice");
    }
}

static int load(const char *text, size_t size, struct sp_config_error *err, size_t *bytes)
{
    struct sp_config *cfg = NULL;
    allocated = 0;
    counting = true;
    int rc = sp_config_load_string("fuzz.yaml", text, size, &cfg, err);
    counting = false;
    *bytes = allocated;
    if (rc == 0) {
        FZ_CHECK(cfg != NULL, "rc 0 without a config");
        check_config(cfg);
        sp_config_free(cfg);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_config_error err, err2;
    size_t bytes, bytes2;
    if (size > MAX_INPUT)
        return 0;
    /* the loader takes a length, and a file read from disk is NUL-terminated after it */
    char *text = fz_str(data, size);
    bool budget = hooks_ok();
    int rc = load(text, size, &err, &bytes);
    FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM, "rc %d", rc);
    if (rc != 0) {
        check_message(err.text);
        int rc2 = load(text, size, &err2, &bytes2);
        FZ_CHECK(rc2 == rc && strcmp(err.text, err2.text) == 0, "second load: '%s' then '%s'",
                 err.text, err2.text);
    }
    if (getenv("FUZZ_BUDGET_PRINT") != NULL) /* for measuring the budget over a corpus */
        fprintf(stderr, "%zu bytes: %zu allocated\n", size, bytes);
    if (budget)
        FZ_CHECK(bytes <= BUDGET_FIXED + (size_t)BUDGET_PER_BYTE * size,
                 "%zu bytes allocated to load %zu bytes (budget %zu per byte)", bytes, size,
                 (size_t)BUDGET_PER_BYTE);
    free(text);
    return 0;
}
