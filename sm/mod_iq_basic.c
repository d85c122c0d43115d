/* mod_iq_basic: the small services every XMPP server answers (XEP-0092
 * software version is mod_version).
 *
 * - XEP-0202 entity time, to the domain: the host's UTC offset and the UTC
 *   time with milliseconds.
 * - XEP-0199 ping: to the domain; to an account's bare JID the server answers
 *   on the account's behalf, for the owner and for contacts with a 'from' or
 *   'both' subscription (others get service-unavailable, as for a missing
 *   account: a ping must not reveal an account to a stranger).
 * - XEP-0012 last activity: to the domain, the sm's uptime in seconds; to an
 *   account, for the owner and contacts with 'from'/'both': 0 while the user
 *   has an available session, otherwise the seconds since the last session
 *   ended and the status of the user's last unavailable presence; anyone else
 *   gets forbidden (XEP-0012 section 4); no record yet: item-not-found.
 *
 * Time sent with no 'to' is answered by the server (the registry falls back
 * to the domain's handler); ping and last activity with no 'to' are about
 * the user's own account (RFC 6120 10.3.3). Every service is get-only: a set
 * gets not-allowed.
 *
 * Storage: collection "last", key "" of the user: "<unix seconds>\n<status>",
 * written when the user's last session ends. Memory: the module's user state
 * holds the status of the most recent unavailable broadcast presence and the
 * session that sent it. */
#include "mod_roster.h"
#include "module.h"
#include "store.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_TIME "urn:xmpp:time"
#define NS_PING "urn:xmpp:ping"
#define NS_LAST "jabber:iq:last"
#define COLL_LAST "last"
#define STATUS_MAX 1024           /* bytes of status kept for last activity */

typedef struct last_state {
    sm_sess_t *sess;              /* the session whose unavailable status is kept */
    char *status;
} last_state_t;

extern sm_module_t sm_module_iq_basic;
static double started;            /* daemon_now() at init: uptime origin */

static void add_text_child(xml_node_t *parent, const char *ns, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, ns, name);
    xml_add_text(c, text, strlen(text));
}

static void time_get(sm_iq_t *req)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t now = ts.tv_sec;
    struct tm utc, local;
    gmtime_r(&now, &utc);
    localtime_r(&now, &local);
    char utcs[64], tzo[16];
    size_t n = strftime(utcs, sizeof utcs, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(utcs + n, sizeof utcs - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
    long off = local.tm_gmtoff;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    int mins = (int)((off / 60) % (24 * 60));     /* real offsets are below a day */
    snprintf(tzo, sizeof tzo, "%c%02d:%02d", sign, mins / 60, mins % 60);
    xml_node_t *t = xml_elem_new(NS_TIME, "time");
    add_text_child(t, NS_TIME, "tzo", tzo);
    add_text_child(t, NS_TIME, "utc", utcs);
    sm_iq_reply(req, t);
}

static void last_answer(sm_iq_t *req, long seconds, const char *status)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", seconds < 0 ? 0 : seconds);
    xml_node_t *q = xml_elem_new(NS_LAST, "query");
    xml_attr_set(q, "seconds", buf);
    if (status && *status)
        xml_add_text(q, status, strlen(status));
    sm_iq_reply(req, q);
}

/* --- an account's answers ------------------------------------------------------- */

static last_state_t *state_get(sm_user_t *u)
{
    last_state_t *ls = sm_user_state(u, &sm_module_iq_basic);
    if (!ls) {
        ls = xcalloc(1, sizeof *ls);
        sm_user_state_set(u, &sm_module_iq_basic, ls);
    }
    return ls;
}

static int any_available(const sm_user_t *u)
{
    for (const sm_sess_t *s = u->sessions; s; s = s->next)
        if (s->available)
            return 1;
    return 0;
}

static void last_got(storage_res_t *res, void *arg)
{
    sm_iq_t *req = arg;
    if (res->status < 0) {
        sm_iq_error(req, "internal-server-error", "wait");
        return;
    }
    if (res->status == 1) {
        sm_iq_error(req, "item-not-found", "cancel");
        return;
    }
    char *nl = strchr(res->val, '\n');
    long long when = strtoll(res->val, NULL, 10);
    long long now = (long long)time(NULL);
    last_answer(req, (long)(now > when ? now - when : 0), nl ? nl + 1 : NULL);
}

static void account_last(sm_iq_t *req)
{
    sm_user_t *u = req->user;
    if (any_available(u)) {
        last_answer(req, 0, NULL);
        return;
    }
    storage_get_async(sm_storage, u->bare, COLL_LAST, "", last_got, sm_iq_defer(req));
}

/* The owner or a contact with a 'from'/'both' subscription. */
static int is_trusted(const sm_iq_t *req)
{
    if (req->own)
        return 1;
    int sub = req->from_bare ? sm_roster_sub(req->user, req->from_bare) : -1;
    return sub >= 0 && (sub & SM_SUB_FROM);
}

/* Ping of an account: answered on its behalf for those it trusts; a
 * stranger must not learn that it exists. */
static void ping_get(sm_iq_t *req)
{
    if (req->user && !is_trusted(req))
        sm_iq_error(req, "service-unavailable", "cancel");
    else
        sm_iq_reply(req, NULL);
}

static void last_get(sm_iq_t *req)
{
    if (!req->user)
        last_answer(req, (long)(daemon_now() - started), NULL);
    else if (!is_trusted(req))
        sm_iq_error(req, "forbidden", "auth");
    else
        account_last(req);
}

/* Get-only services; a stranger gets the answer a get would give it. */
static void ping_set(sm_iq_t *req)
{
    if (req->user && !is_trusted(req))
        sm_iq_error(req, "service-unavailable", "cancel");
    else
        sm_iq_error(req, "not-allowed", "cancel");
}

static void last_set(sm_iq_t *req)
{
    if (req->user && !is_trusted(req))
        sm_iq_error(req, "forbidden", "auth");
    else
        sm_iq_error(req, "not-allowed", "cancel");
}

/* --- hooks ------------------------------------------------------------------------ */

/* Remember the status of an unavailable broadcast for last activity. */
static sm_ret_t on_presence_out(sm_sess_t *s, xml_node_t *st)
{
    if (xml_attr_get(st, "to"))
        return SM_PASS;
    const char *type = xml_attr_get(st, "type");
    last_state_t *ls = state_get(s->user);
    if (!type || sm_streq(type, "unavailable")) {
        free(ls->status);
        ls->status = NULL;
        ls->sess = NULL;
    }
    if (sm_streq(type, "unavailable")) {
        xml_node_t *stt = xml_child(st, NULL, "status");
        char *t = stt ? xml_text(stt) : xstrdup("");
        if (strlen(t) > STATUS_MAX) {
            size_t cut = STATUS_MAX;
            while (cut > 0 && ((unsigned char)t[cut] & 0xC0) == 0x80)
                cut--;                      /* never split a UTF-8 sequence */
            t[cut] = '\0';
        }
        ls->status = t;
        ls->sess = s;
    }
    return SM_PASS;
}

static void last_stored(storage_res_t *res, void *arg)
{
    (void)arg;
    if (res->status < 0)
        log_warn("event=last-activity result=store-failed");
}

/* The user's last session ends: record when, with the status it left with. */
static void on_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    (void)unavailable;                        /* its status was kept by on_presence_out */
    sm_user_t *u = s->user;
    last_state_t *ls = sm_user_state(u, &sm_module_iq_basic);
    const char *status = ls && ls->sess == s && ls->status ? ls->status : "";
    if (ls && ls->sess == s)
        ls->sess = NULL;
    if (u->sessions != s || s->next)
        return;                               /* other sessions remain */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%lld\n%s", (long long)time(NULL), status);
    sm_store_put(u->bare, COLL_LAST, "", sb.data, sb.len, last_stored, NULL);
    strbuf_free(&sb);
}

static void on_user_delete(sm_user_t *u)
{
    sm_store_del_all(u->bare, COLL_LAST, NULL, NULL);
}

static void state_free(sm_user_t *u, void *state)
{
    (void)u;
    last_state_t *ls = state;
    free(ls->status);
    free(ls);
}

static int iq_basic_init(void)
{
    started = daemon_now();
    return 0;
}

static const sm_hooks_t iq_basic_hooks = {
    .presence_out = on_presence_out,
    .sess_end = on_sess_end,
    .user_delete = on_user_delete,
};

static const sm_iq_handler_t iq_basic_iqs[] = {
    {NS_TIME, SM_IQ_SERVER, time_get, NULL, "not-allowed"},
    {NS_PING, SM_IQ_SERVER | SM_IQ_ACCOUNT, ping_get, ping_set, NULL},
    {NS_LAST, SM_IQ_SERVER | SM_IQ_ACCOUNT, last_get, last_set, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const server_features[] = {NS_TIME, NS_PING, NS_LAST, NULL};
static const char *const account_features[] = {NS_PING, NS_LAST, NULL};

sm_module_t sm_module_iq_basic = {
    .name = "iq-basic",
    .help = "Entity time (XEP-0202), ping (XEP-0199) and last activity (XEP-0012).",
    .init = iq_basic_init,
    .hooks = &iq_basic_hooks,
    .iqs = iq_basic_iqs,
    .server_features = server_features,
    .account_features = account_features,
    .user_state_free = state_free,
};
