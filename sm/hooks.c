/* hooks: the sm's named hook chains. Modules register handlers at start
 * (sm_modules_init); a chain runs its handlers in registration order until one
 * returns SM_HANDLED. Registration happens only at start, so the tables are
 * fixed while stanzas flow and a handler may safely run other chains. */
#include "sm.h"
#include "log.h"
#include <stdlib.h>

#define SM_HOOK_MAX_HANDLERS 32

typedef struct hook_entry {
    sm_handler_fn fn;
    void *arg;
} hook_entry_t;

static hook_entry_t chains[SM_HOOK_COUNT][SM_HOOK_MAX_HANDLERS];
static size_t nchain[SM_HOOK_COUNT];
static int nslots;

void sm_hook_add(sm_hook_t hook, sm_handler_fn fn, void *arg)
{
    if ((unsigned)hook >= SM_HOOK_COUNT || !fn)
        log_panic("event=hook-add reason=bad-hook hook=%d", (int)hook);
    if (nchain[hook] >= SM_HOOK_MAX_HANDLERS)
        log_panic("event=hook-add reason=too-many-handlers hook=%d", (int)hook);
    chains[hook][nchain[hook]].fn = fn;
    chains[hook][nchain[hook]].arg = arg;
    nchain[hook]++;
}

sm_ret_t sm_hook_run(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess, xml_node_t *stanza)
{
    if ((unsigned)hook >= SM_HOOK_COUNT)
        log_panic("event=hook-run reason=bad-hook hook=%d", (int)hook);
    for (size_t i = 0; i < nchain[hook]; i++)
        if (chains[hook][i].fn(hook, user, sess, stanza, chains[hook][i].arg) == SM_HANDLED)
            return SM_HANDLED;
    return SM_PASS;
}

int sm_module_slot(void)
{
    if (nslots >= SM_MAX_MODULES)
        log_panic("event=module-slot reason=too-many-modules max=%d", SM_MAX_MODULES);
    return nslots++;
}

sm_ret_t sm_feature_handler(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess,
                            xml_node_t *query, void *arg)
{
    (void)hook;
    (void)user;
    (void)sess;
    if (query) {
        xml_node_t *f = xml_add_child(query, query->ns, "feature");
        xml_attr_set(f, "var", arg);
    }
    return SM_PASS;
}

sm_ret_t sm_delete_collection_handler(sm_hook_t hook, sm_user_t *user, sm_sess_t *sess,
                                      xml_node_t *stanza, void *arg)
{
    (void)hook;
    (void)sess;
    (void)stanza;
    if (user)
        storage_del_all(sm_storage, user->bare, arg);
    return SM_PASS;
}
