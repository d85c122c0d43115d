/* mod_example: the sm module API in one small module, built into the test
 * binary weft-sm-example and driven by tests/integration/test_sm_modules.py.
 * docs/sm-modules.md walks through it. It uses every part of the API:
 *
 * - options: greeting (a string) and delay (seconds), in sm.xml as
 *   <module name="example"><greeting>..</greeting><delay>..</delay></module>;
 * - hooks: message_out counts the messages each user's sessions send,
 *   roster_change the changes of its roster;
 *   presence_out, for a presence carrying <hold xmlns='urn:weft:example:1'/>,
 *   holds the user for delay seconds as a hook waiting for asynchronous
 *   storage would (sm_user_hold / sm_user_release);
 * - per-user state: that count, freed by user_state_free when the user
 *   leaves memory;
 * - an IQ namespace, urn:weft:example:1, served for accounts (the user's own
 *   account only: others get forbidden):
 *     get <count/>  answers <count n='N' roster='R' greeting='...'/> at once;
 *     get <slow/>   defers the request and answers <slow/> after delay
 *                   seconds from a timer, as a handler waiting for
 *                   asynchronous storage would; meanwhile the core holds the
 *                   user's later stanzas, so they are handled after it;
 *   a set gets feature-not-implemented (the registry's refusal);
 * - a disco feature of the domain: urn:weft:example:1. */
#include "module.h"
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_EXAMPLE "urn:weft:example:1"

typedef struct example_cfg {
    char *greeting;
    double delay;
} example_cfg_t;

typedef struct example_user {
    long messages;              /* sent by the user's sessions since it was loaded */
    long roster_changes;        /* roster_change hooks seen for the user */
} example_user_t;

extern sm_module_t sm_module_example;

static example_user_t *state_of(sm_user_t *u)
{
    example_user_t *st = sm_user_state(u, &sm_module_example);
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st)
            abort();
        sm_user_state_set(u, &sm_module_example, st);
    }
    return st;
}

static sm_ret_t count_message(sm_sess_t *s, xml_node_t *msg)
{
    (void)msg;
    state_of(s->user)->messages++;
    return SM_PASS;                 /* observe only: the message goes on */
}

static void count_roster_change(sm_user_t *u, const char *contact, int sub)
{
    (void)contact;
    (void)sub;
    state_of(u)->roster_changes++;
}

static void user_state_free(sm_user_t *u, void *state)
{
    (void)u;
    free(state);
}

/* A held user and the timer that releases it. */
typedef struct hold {
    sm_user_t *u;
    struct event *ev;
} hold_t;

static void hold_end(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hold_t *h = arg;
    event_free(h->ev);
    sm_user_t *u = h->u;
    free(h);
    sm_user_release(u);             /* processes what waited, in order */
}

static struct timeval delay_tv(void)
{
    const example_cfg_t *cfg = sm_module_config(&sm_module_example);
    struct timeval tv = {(time_t)cfg->delay, (suseconds_t)((cfg->delay - (long)cfg->delay) * 1e6)};
    return tv;
}

static sm_ret_t hold_presence(sm_sess_t *s, xml_node_t *pres)
{
    if (!xml_child(pres, NS_EXAMPLE, "hold"))
        return SM_PASS;
    hold_t *h = calloc(1, sizeof *h);
    if (!h)
        abort();
    h->u = s->user;
    h->ev = evtimer_new(daemon_base(), hold_end, h);
    struct timeval tv = delay_tv();
    evtimer_add(h->ev, &tv);
    sm_user_hold(s->user);          /* the user stays loaded while held */
    return SM_PASS;
}

/* A deferred request and the timer that answers it. */
typedef struct slow {
    sm_iq_t *req;
    struct event *ev;
} slow_t;

static void slow_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    slow_t *sl = arg;
    sm_iq_reply(sl->req, xml_elem_new(NS_EXAMPLE, "slow"));
    event_free(sl->ev);
    free(sl);
}

static void example_get(sm_iq_t *req)
{
    const example_cfg_t *cfg = sm_module_config(&sm_module_example);
    if (!req->own) {
        sm_iq_error(req, "forbidden", "auth");
        return;
    }
    if (!strcmp(req->payload->name, "slow")) {
        slow_t *sl = calloc(1, sizeof *sl);
        if (!sl)
            abort();
        sl->req = sm_iq_defer(req);
        sl->ev = evtimer_new(daemon_base(), slow_answer, sl);
        struct timeval tv = delay_tv();
        evtimer_add(sl->ev, &tv);
        return;
    }
    if (strcmp(req->payload->name, "count")) {
        sm_iq_error(req, "bad-request", "modify");
        return;
    }
    const example_user_t *st = sm_user_state(req->user, &sm_module_example);
    char n[32], r[32];
    snprintf(n, sizeof n, "%ld", st ? st->messages : 0L);
    snprintf(r, sizeof r, "%ld", st ? st->roster_changes : 0L);
    xml_node_t *c = xml_elem_new(NS_EXAMPLE, "count");
    xml_attr_set(c, "n", n);
    xml_attr_set(c, "roster", r);
    xml_attr_set(c, "greeting", cfg->greeting);
    sm_iq_reply(req, c);
}

static const cfg_option_t example_options[] = {
    {"greeting", CFG_STRING, "hello", 0, 0, 1, offsetof(example_cfg_t, greeting), NULL,
     "Text the count answer carries."},
    {"delay", CFG_SECONDS, "0.3", 0, 10, 1, offsetof(example_cfg_t, delay), NULL,
     "How long a <slow/> request waits before its answer."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t example_hooks = {
    .message_out = count_message,
    .presence_out = hold_presence,
    .roster_change = count_roster_change,
};

static const sm_iq_handler_t example_iqs[] = {
    {NS_EXAMPLE, SM_IQ_ACCOUNT, example_get, NULL, "feature-not-implemented"},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const example_features[] = {NS_EXAMPLE, NULL};

sm_module_t sm_module_example = {
    .name = "example",
    .help = "The example module of docs/sm-modules.md (tests only).",
    .off_by_default = 1,
    .options = example_options,
    .config_size = sizeof(example_cfg_t),
    .hooks = &example_hooks,
    .iqs = example_iqs,
    .server_features = example_features,
    .user_state_free = user_state_free,
};
