/* mod_iq_basic: the small services every XMPP server answers.
 *
 * - XEP-0092 software version, to the domain: version.name, WEFT_VERSION and,
 *   only when version.show-os is set, the operating system (uname).
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
 * Version and time sent with no 'to' are answered by the server too (the core
 * runs SM_HOOK_SERVER for them); ping and last activity with no 'to' are
 * about the user's own account (RFC 6120 10.3.3).
 *
 * Storage: collection "last", key "" of the user: "<unix seconds>\n<status>",
 * written when the user's last session ends. Memory: user->mod[slot] holds
 * the status of the most recent unavailable broadcast presence and the session
 * that sent it, freed on SM_HOOK_USER_FREE. */
#include "sm.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

/* The release this code is; keep in step with project() in meson.build. */
#define WEFT_VERSION "0.1.0"

#define NS_VERSION "jabber:iq:version"
#define NS_TIME "urn:xmpp:time"
#define NS_PING "urn:xmpp:ping"
#define NS_LAST "jabber:iq:last"
#define COLL_LAST "last"
#define STATUS_MAX 1024           /* bytes of status kept for last activity */

typedef struct last_state {
    sm_sess_t *sess;              /* the session whose unavailable status is kept */
    char *status;
} last_state_t;

static int slot;
static double started;            /* daemon_now() at init: uptime origin */

static void add_text_child(xml_node_t *parent, const char *ns, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, ns, name);
    xml_add_text(c, text, strlen(text));
}

/* The namespaces we serve; which one st carries (its first child), or NULL. */
static xml_node_t *payload(const xml_node_t *iq, const char **ns)
{
    static const char *const known[][2] = {
        {NS_VERSION, "query"}, {NS_TIME, "time"}, {NS_PING, "ping"}, {NS_LAST, "query"},
    };
    if (strcmp(iq->name, "iq"))
        return NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        xml_node_t *c = xml_child(iq, known[i][0], known[i][1]);
        if (c) {
            *ns = known[i][0];
            return c;
        }
    }
    return NULL;
}

/* Every service here is get-only: 1 if the caller should answer. */
static int is_get(xml_node_t *iq)
{
    const char *type = xml_attr_get(iq, "type");
    if (sm_streq(type, "set"))
        sm_reply_error(iq, "not-allowed", "cancel");
    return sm_streq(type, "get");
}

/* --- the domain's answers ---------------------------------------------------- */

static void version_answer(sm_sess_t *s, xml_node_t *iq)
{
    xml_node_t *res = sm_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_VERSION, "query");
    const char *name = sm_config->version_name;
    add_text_child(q, NS_VERSION, "name", name && *name ? name : "weft");
    add_text_child(q, NS_VERSION, "version", WEFT_VERSION);
    struct utsname un;
    if (sm_config->version_os && uname(&un) == 0) {
        char os[2 * sizeof un.sysname + 2];
        snprintf(os, sizeof os, "%s %s", un.sysname, un.release);
        add_text_child(q, NS_VERSION, "os", os);
    }
    sm_answer(s, res);
}

static void time_answer(sm_sess_t *s, xml_node_t *iq)
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
    xml_node_t *res = sm_iq_result(iq);
    xml_node_t *t = xml_add_child(res, NS_TIME, "time");
    add_text_child(t, NS_TIME, "tzo", tzo);
    add_text_child(t, NS_TIME, "utc", utcs);
    sm_answer(s, res);
}

static void last_answer(sm_sess_t *s, xml_node_t *iq, long seconds, const char *status)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", seconds < 0 ? 0 : seconds);
    xml_node_t *res = sm_iq_result(iq);
    xml_node_t *q = xml_add_child(res, NS_LAST, "query");
    xml_attr_set(q, "seconds", buf);
    if (status && *status)
        xml_add_text(q, status, strlen(status));
    sm_answer(s, res);
}

static sm_ret_t on_server(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)u;
    (void)arg;
    const char *ns = NULL;
    if (!payload(st, &ns))
        return SM_PASS;
    /* With no 'to', ping and last activity are about the account (SM_HOOK_OUT
     * answered them already); version and time are the server's. */
    if (!is_get(st))
        return SM_HANDLED;
    if (!strcmp(ns, NS_VERSION))
        version_answer(s, st);
    else if (!strcmp(ns, NS_TIME))
        time_answer(s, st);
    else if (!strcmp(ns, NS_PING))
        sm_answer(s, sm_iq_result(st));
    else
        last_answer(s, st, (long)(daemon_now() - started), NULL);
    return SM_HANDLED;
}

/* --- an account's answers ------------------------------------------------------- */

static last_state_t *state_get(sm_user_t *u)
{
    if (!u->mod[slot])
        u->mod[slot] = xcalloc(1, sizeof(last_state_t));
    return u->mod[slot];
}

static int any_available(const sm_user_t *u)
{
    for (const sm_sess_t *s = u->sessions; s; s = s->next)
        if (s->available)
            return 1;
    return 0;
}

static void account_last(sm_user_t *u, sm_sess_t *s, xml_node_t *iq)
{
    if (any_available(u)) {
        last_answer(s, iq, 0, NULL);
        return;
    }
    char *val = NULL;
    size_t len = 0;
    int r = storage_get(sm_storage, u->bare, COLL_LAST, "", &val, &len);
    if (r < 0) {
        sm_reply_error(iq, "internal-server-error", "wait");
        return;
    }
    if (r == 1) {
        sm_reply_error(iq, "item-not-found", "cancel");
        return;
    }
    char *nl = strchr(val, '\n');
    long long when = strtoll(val, NULL, 10);
    long long now = (long long)time(NULL);
    last_answer(s, iq, (long)(now > when ? now - when : 0), nl ? nl + 1 : NULL);
    free(val);
}

/* The owner or a contact with a 'from'/'both' subscription. */
static int is_trusted(sm_user_t *u, const xml_node_t *st)
{
    const char *from = xml_attr_get(st, "from");
    char *fb = from ? jid_bare_of(from) : NULL;
    if (!fb)
        return 0;
    int ok = !strcmp(fb, u->bare);
    if (!ok) {
        int sub = sm_roster_sub(u, fb);
        ok = sub >= 0 && (sub & SM_SUB_FROM);
    }
    free(fb);
    return ok;
}

static void account_iq(sm_user_t *u, sm_sess_t *s, xml_node_t *iq, const char *ns, int trusted)
{
    if (!strcmp(ns, NS_PING)) {
        if (!trusted)
            sm_reply_error(iq, "service-unavailable", "cancel");
        else if (is_get(iq))
            sm_answer(s, sm_iq_result(iq));
    } else if (!strcmp(ns, NS_LAST)) {
        if (!trusted)
            sm_reply_error(iq, "forbidden", "auth");
        else if (is_get(iq))
            account_last(u, s, iq);
    } else {
        /* version and time of an account: its clients answer, not we. */
        sm_reply_error(iq, "service-unavailable", "cancel");
    }
}

static sm_ret_t on_out(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)arg;
    const char *to = xml_attr_get(st, "to");
    if (!strcmp(st->name, "presence")) {
        /* Remember the status of an unavailable broadcast for last activity. */
        if (to)
            return SM_PASS;
        const char *type = xml_attr_get(st, "type");
        last_state_t *ls = state_get(u);
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
    const char *ns = NULL;
    if (!payload(st, &ns) || !(!strcmp(ns, NS_PING) || !strcmp(ns, NS_LAST)))
        return SM_PASS;
    if (to && strcmp(to, u->bare))
        return SM_PASS;
    account_iq(u, s, st, ns, 1);
    return SM_HANDLED;
}

static sm_ret_t on_in_bare(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)arg;
    const char *ns = NULL;
    if (!payload(st, &ns))
        return SM_PASS;
    const char *type = xml_attr_get(st, "type");
    if (!sm_streq(type, "get") && !sm_streq(type, "set"))
        return SM_HANDLED;
    account_iq(u, s, st, ns, is_trusted(u, st));
    return SM_HANDLED;
}

/* The user's last session ends: record when, with the status it left with. */
static sm_ret_t on_sess_end(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)st;
    (void)arg;
    last_state_t *ls = u->mod[slot];
    const char *status = ls && ls->sess == s && ls->status ? ls->status : "";
    if (ls && ls->sess == s)
        ls->sess = NULL;
    if (u->sessions != s || s->next)
        return SM_PASS;                        /* other sessions remain */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%lld\n%s", (long long)time(NULL), status);
    if (storage_put(sm_storage, u->bare, COLL_LAST, "", sb.data, sb.len) < 0)
        log_warn("event=last-activity result=store-failed user=%s", u->bare);
    strbuf_free(&sb);
    return SM_PASS;
}

static sm_ret_t on_features(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *q, void *arg)
{
    (void)u;
    (void)s;
    (void)arg;
    static const char *const server[] = {NS_VERSION, NS_TIME, NS_PING, NS_LAST};
    static const char *const account[] = {NS_PING, NS_LAST};
    int srv = hook == SM_HOOK_DISCO_FEATURES;
    size_t n = srv ? 4 : 2;
    for (size_t i = 0; i < n; i++) {
        xml_node_t *f = xml_add_child(q, q->ns, "feature");
        xml_attr_set(f, "var", srv ? server[i] : account[i]);
    }
    return SM_PASS;
}

static sm_ret_t on_user_delete(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)s;
    (void)st;
    (void)arg;
    storage_del_all(sm_storage, u->bare, COLL_LAST);
    return SM_PASS;
}

static sm_ret_t on_user_free(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)s;
    (void)st;
    (void)arg;
    last_state_t *ls = u->mod[slot];
    if (ls) {
        free(ls->status);
        free(ls);
        u->mod[slot] = NULL;
    }
    return SM_PASS;
}

void mod_iq_basic_init(void)
{
    slot = sm_module_slot();
    started = daemon_now();
    sm_hook_add(SM_HOOK_OUT, on_out, NULL);
    sm_hook_add(SM_HOOK_SERVER, on_server, NULL);
    sm_hook_add(SM_HOOK_IN_BARE, on_in_bare, NULL);
    sm_hook_add(SM_HOOK_SESS_END, on_sess_end, NULL);
    sm_hook_add(SM_HOOK_DISCO_FEATURES, on_features, NULL);
    sm_hook_add(SM_HOOK_ACCOUNT_FEATURES, on_features, NULL);
    sm_hook_add(SM_HOOK_USER_DELETE, on_user_delete, NULL);
    sm_hook_add(SM_HOOK_USER_FREE, on_user_free, NULL);
}
