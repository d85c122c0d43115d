/* mod_roster's API for other modules: the subscription state of a user's
 * contacts (RFC 6121) and their groups. When the roster module is disabled,
 * every contact reads as absent (-1), in no group, and the iteration is
 * empty. */
#ifndef WEFT_SM_MOD_ROSTER_H
#define WEFT_SM_MOD_ROSTER_H
#include "sm.h"

typedef enum sm_sub { SM_SUB_NONE = 0, SM_SUB_TO = 1, SM_SUB_FROM = 2, SM_SUB_BOTH = 3 } sm_sub_t;
/* Subscription of u toward contact (bare JID), or -1 if not in the roster. */
int sm_roster_sub(sm_user_t *u, const char *contact);
/* 1 if contact (bare JID) is in u's roster and in the group of that name
 * (RFC 6121 2.1.2.5: names compared as given, case-sensitive); else 0. */
int sm_roster_in_group(sm_user_t *u, const char *contact, const char *group);
typedef void (*sm_roster_fn)(const char *contact, sm_sub_t sub, void *arg);
void sm_roster_foreach(sm_user_t *u, sm_roster_fn fn, void *arg);

#endif
