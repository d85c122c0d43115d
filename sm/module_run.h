/* module_run: what the core (core.c, iq.c, module_config.c) calls into the
 * module platform (module.c). Not for modules: they see module.h only. */
#ifndef WEFT_SM_MODULE_RUN_H
#define WEFT_SM_MODULE_RUN_H
#include "module.h"

/* modules_list.c (generated from sm/meson.build): every module compiled in,
 * in hook order. */
extern sm_module_t *const sm_module_list[];
extern const size_t sm_module_count;

/* The loaded (enabled) modules, in list order. */
size_t sm_modules_loaded(sm_module_t *const **out);
/* Where a module's enabled flag lives in the config (module_config.c). */
int sm_module_config_enabled(const sm_module_t *m);

void sm_run_sess_start(sm_sess_t *s);
void sm_run_sess_end(sm_sess_t *s, xml_node_t *unavailable);
void sm_run_sess_hibernate(sm_sess_t *s, int on, unsigned pending);
void sm_run_user_load(sm_user_t *u);
void sm_run_user_delete(sm_user_t *u);
void sm_run_user_free(sm_user_t *u);         /* frees every module's user state */
sm_ret_t sm_run_out(sm_sess_t *s, xml_node_t *st);                 /* by st->name */
sm_ret_t sm_run_in(sm_user_t *u, sm_sess_t *to, xml_node_t *st);   /* by st->name */
sm_ret_t sm_run_undelivered(sm_user_t *u, xml_node_t *msg);
/* main.c: a <w:name/> availability notice from the router. */
void sm_run_component_change(const char *name, const char *instance, int up);
void sm_run_cron(double now);

/* iq.c: the IQ registry. */
int sm_iq_registry_init(void);               /* 0, or -1 on a namespace served twice */
void sm_iq_registry_free(void);
/* Dispatches an iq get/set addressed to the domain (user NULL) or to the
 * account u (sess: the local session that sent it, see sm_iq_t). When
 * no_to, an account handler is preferred and the domain's is the fallback. */
void sm_iq_dispatch(xml_node_t *iq, sm_user_t *u, sm_sess_t *sess, int no_to);

#endif
