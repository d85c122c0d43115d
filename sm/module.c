/* module: the module platform. At start it takes the modules of the compiled
 * list (modules_list.c) that sm.xml leaves enabled, gives each an index for
 * its per-user state, starts them in list order and registers their IQ
 * namespaces (iq.c). The hook runners here call each loaded module's typed
 * hook in list order; there is no limit on modules or handlers: the loaded
 * set is an array sized at start and fixed while stanzas flow, so a handler
 * may run other chains. */
#include "module_run.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static sm_module_t **loaded;      /* enabled modules, list order */
static size_t nloaded;

size_t sm_modules_loaded(sm_module_t *const **out)
{
    *out = loaded;
    return nloaded;
}

int sm_module_enabled(const sm_module_t *m)
{
    for (size_t i = 0; i < nloaded; i++)
        if (loaded[i] == m)
            return 1;
    return 0;
}

int sm_modules_init(void)
{
    loaded = xcalloc(sm_module_count + 1, sizeof *loaded);
    for (size_t i = 0; i < sm_module_count; i++) {
        sm_module_t *m = sm_module_list[i];
        m->index = (int)i;                 /* state slots: every compiled module has one */
        if (!sm_module_config_enabled(m)) {
            log_info("event=module-disabled module=%s", m->name);
            continue;
        }
        if (m->init && m->init() < 0) {
            log_error("event=module-failed module=%s", m->name);
            return -1;
        }
        loaded[nloaded++] = m;
        log_debug("event=module-loaded module=%s", m->name);
    }
    return sm_iq_registry_init();
}

void sm_modules_free(void)
{
    sm_iq_registry_free();
    for (size_t i = nloaded; i-- > 0;)
        if (loaded[i]->free)
            loaded[i]->free();
    free(loaded);
    loaded = NULL;
    nloaded = 0;
}

/* --- per-user state ------------------------------------------------------------ */

void *sm_user_state(const sm_user_t *u, const sm_module_t *m)
{
    return u->state ? u->state[m->index] : NULL;
}

void sm_user_state_set(sm_user_t *u, const sm_module_t *m, void *state)
{
    if (!u->state)
        u->state = xcalloc(sm_module_count, sizeof *u->state);
    u->state[m->index] = state;
}

void sm_run_user_free(sm_user_t *u)
{
    if (!u->state)
        return;
    for (size_t i = 0; i < sm_module_count; i++) {
        sm_module_t *m = sm_module_list[i];
        if (u->state[i] && m->user_state_free)
            m->user_state_free(u, u->state[i]);
    }
    free(u->state);
    u->state = NULL;
}

/* --- hook runners ---------------------------------------------------------------- */

#define EACH_LOADED(m) for (size_t i_ = 0; i_ < nloaded && ((m) = loaded[i_]->hooks, 1); i_++) if (m)

void sm_run_sess_start(sm_sess_t *s)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->sess_start) h->sess_start(s);
}

void sm_run_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->sess_end) h->sess_end(s, unavailable);
}

void sm_run_sess_hibernate(sm_sess_t *s, int on, unsigned pending)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->sess_hibernate) h->sess_hibernate(s, on, pending);
}

void sm_run_user_load(sm_user_t *u)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->user_load) h->user_load(u);
}

void sm_run_user_delete(sm_user_t *u)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->user_delete) h->user_delete(u);
}

sm_ret_t sm_run_out(sm_sess_t *s, xml_node_t *st)
{
    const sm_hooks_t *h;
    char k = st->name[0];                 /* message, presence or iq: checked by the caller */
    EACH_LOADED(h) {
        sm_ret_t (*fn)(sm_sess_t *, xml_node_t *) = k == 'm' ? h->message_out
                                                 : k == 'p' ? h->presence_out : h->iq_out;
        if (fn && fn(s, st) == SM_HANDLED)
            return SM_HANDLED;
    }
    return SM_PASS;
}

sm_ret_t sm_run_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st)
{
    const sm_hooks_t *h;
    char k = st->name[0];
    EACH_LOADED(h) {
        sm_ret_t (*fn)(sm_user_t *, sm_sess_t *, xml_node_t *) = k == 'm' ? h->message_in
                                                              : k == 'p' ? h->presence_in : h->iq_in;
        if (fn && fn(u, to, st) == SM_HANDLED)
            return SM_HANDLED;
    }
    return SM_PASS;
}

sm_ret_t sm_run_undelivered(sm_user_t *u, xml_node_t *msg)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->undelivered && h->undelivered(u, msg) == SM_HANDLED) return SM_HANDLED;
    return SM_PASS;
}

void sm_run_component_change(const char *name, const char *instance, int up)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->component_change) h->component_change(name, instance, up);
}

void sm_run_cron(double now)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->cron) h->cron(now);
}

void sm_hooks_roster_change(sm_user_t *u, const char *contact, int sub)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) if (h->roster_change) h->roster_change(u, contact, sub);
}

void sm_disco_features(xml_node_t *query, int server, sm_user_t *u, sm_sess_t *asker)
{
    for (size_t i = 0; i < nloaded; i++) {
        const char *const *f = server ? loaded[i]->server_features : loaded[i]->account_features;
        for (; f && *f; f++) {
            xml_node_t *el = xml_add_child(query, query->ns, "feature");
            xml_attr_set(el, "var", *f);
        }
    }
    const sm_hooks_t *h;
    EACH_LOADED(h) {
        if (server && h->disco_server)
            h->disco_server(asker, query);
        else if (!server && h->disco_account)
            h->disco_account(u, query);
    }
}

int sm_disco_server_node(const char *from_bare, const char *node, int items, xml_node_t *query)
{
    const sm_hooks_t *h;
    EACH_LOADED(h) {
        if (h->disco_server_node && h->disco_server_node(from_bare, node, items, query))
            return 1;
    }
    return 0;
}
