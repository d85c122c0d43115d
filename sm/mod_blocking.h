/* mod_blocking's API for other modules (XEP-0191). */
#ifndef WEFT_SM_MOD_BLOCKING_H
#define WEFT_SM_MOD_BLOCKING_H
#include "sm.h"

/* 1 if u blocks jid (full or bare; XEP-0191 section 3.3: a bare item blocks
 * every resource). 0 when the blocking module is disabled. */
int sm_blocking_blocks(sm_user_t *u, const char *jid);

#endif
