/* shed.c: the pacing of on_server_down: shutdown (see shed.h): pure arithmetic. */
#include "shed.h"

uint64_t sp_shed_due(uint64_t start, uint64_t spread, size_t i, size_t n)
{
    if (n == 0)
        return start;
    /* spread * i / n as (q * n + r) * i / n: q * i <= spread, and r * i < n * n fits for any n
     * below 2^32. */
    uint64_t q = spread / n, r = spread % n;
    return start + q * i + (r * i) / n;
}

uint64_t sp_shed_tick_ms(uint64_t spread)
{
    uint64_t t = spread / 64;
    return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

uint64_t sp_shed_delay(uint64_t now, uint64_t due, uint64_t tick)
{
    uint64_t wait = due > now ? due - now : 0;
    return wait > tick ? wait : tick;
}
