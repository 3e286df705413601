/* health_flap.c: flap damping's memory of verdict changes and its hold (see health_flap.h). */
#include "health_flap.h"

unsigned sp_flap_count(const struct sp_flap *f, uint64_t now, uint64_t window)
{
    unsigned c = 0;
    for (unsigned i = 0; i < f->n; i++) {
        unsigned slot = (f->head + SP_FLAP_MAX_MAX + 1 - 1 - i) % (SP_FLAP_MAX_MAX + 1);
        if (now - f->at[slot] >= window)
            break; /* older ones are older still */
        c++;
    }
    return c;
}

bool sp_flap_change(struct sp_flap *f, bool up, uint64_t now, uint64_t window, unsigned max)
{
    if (up)
        f->up_since = now;
    if (max == 0)
        return false;
    f->at[f->head] = now;
    f->head = (f->head + 1) % (SP_FLAP_MAX_MAX + 1);
    if (f->n < SP_FLAP_MAX_MAX + 1)
        f->n++;
    if (f->held || sp_flap_count(f, now, window) <= max)
        return false;
    f->held = true;
    return true;
}

bool sp_flap_release(struct sp_flap *f, bool up, uint64_t now, uint64_t hold)
{
    if (!f->held || !up || now - f->up_since < hold)
        return false;
    f->held = false;
    /* The changes that led to this hold are paid for: a new hold needs new ones. */
    f->n = 0;
    return true;
}
