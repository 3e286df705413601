#include "faults.h"
void fx_add_frozen(Suite *s) { (void)s; }
void fx_add_stuck_peers(Suite *s) { (void)s; }
