/* mod_adhoc: XEP-0050 ad-hoc commands at the served domain (see
 * mod_adhoc.h for the registry other modules add commands to).
 *
 * - disco#items of the domain's node http://jabber.org/protocol/commands
 *   lists the commands the requester may run (admin-only ones only to an
 *   admin); disco#info of a command's node answers identity
 *   automation/command-node to those who may run it.
 * - An iq set <command node=... action=...> to the domain runs a stage:
 *   without a sessionid a new run starts; a command that shows a form gets
 *   a session (bound to the requester's full JID, forgotten after
 *   adhoc.session-timeout or once completed or canceled); the submit of
 *   that form continues it. A submitted form without a sessionid runs at
 *   once (one-stage clients). action 'cancel' ends a session; 'prev' is
 *   refused (no command here has more than one form).
 * - Errors: an unknown node item-not-found, a command the requester may not
 *   run forbidden (type auth), an unknown or foreign sessionid or a bad
 *   action bad-request.
 *
 * Admins are the bare JIDs in the `admins` option (space or comma
 * separated); with none, admin-only commands are listed to nobody. */
#include "mod_adhoc.h"
#include "module.h"
#include "log.h"
#include "comp_proto.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define ADHOC_MAX_CMDS 32
#define ADHOC_MAX_SESSIONS 64

typedef struct adhoc_cfg {
    char *admins;
    double session_timeout;
} adhoc_cfg_t;

typedef struct adhoc_cmd {
    const char *node, *name;
    int admin_only;
    adhoc_fn fn;
} adhoc_cmd_t;

typedef struct adhoc_sess {
    char id[40];
    const adhoc_cmd_t *cmd;
    char *owner;               /* full JID that started it; NULL: slot free */
    double expires;
} adhoc_sess_t;

extern sm_module_t sm_module_adhoc;

static adhoc_cmd_t cmds[ADHOC_MAX_CMDS];
static size_t ncmds;
static adhoc_sess_t sessions[ADHOC_MAX_SESSIONS];
static unsigned long sess_counter;

void adhoc_register(const char *node, const char *name, int admin_only, adhoc_fn fn)
{
    if (ncmds == ADHOC_MAX_CMDS) {
        log_error("event=adhoc-register-failed node=%s reason=too-many-commands", node);
        return;
    }
    cmds[ncmds++] = (adhoc_cmd_t){node, name, admin_only, fn};
}

int adhoc_is_admin(const char *bare)
{
    const adhoc_cfg_t *cfg = sm_module_config(&sm_module_adhoc);
    if (!bare || !cfg->admins)
        return 0;
    size_t n = strlen(bare);
    for (const char *p = cfg->admins; *p;) {
        p += strspn(p, " ,\t\n");
        size_t len = strcspn(p, " ,\t\n");
        if (len == n && !strncmp(p, bare, n))
            return 1;
        p += len;
    }
    return 0;
}

static const adhoc_cmd_t *find_cmd(const char *node)
{
    for (size_t i = 0; node && i < ncmds; i++)
        if (!strcmp(cmds[i].node, node))
            return &cmds[i];
    return NULL;
}

static int may_run(const adhoc_cmd_t *c, const char *from_bare)
{
    return !c->admin_only || adhoc_is_admin(from_bare);
}

/* --- forms --------------------------------------------------------------------- */

static void add_text(xml_node_t *parent, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, NS_XDATA, name);
    if (text && *text)
        xml_add_text(c, text, strlen(text));
}

xml_node_t *adhoc_form(const char *type, const char *form_type, const char *title, const char *instructions)
{
    xml_node_t *x = xml_elem_new(NS_XDATA, "x");
    xml_attr_set(x, "type", type);
    if (title)
        add_text(x, "title", title);
    if (instructions)
        add_text(x, "instructions", instructions);
    adhoc_field(x, "hidden", "FORM_TYPE", NULL, form_type);
    return x;
}

xml_node_t *adhoc_field(xml_node_t *x, const char *type, const char *var, const char *label, const char *value)
{
    xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
    if (type)
        xml_attr_set(f, "type", type);
    xml_attr_set(f, "var", var);
    if (label)
        xml_attr_set(f, "label", label);
    if (value)
        add_text(f, "value", value);
    return f;
}

void adhoc_field_value(xml_node_t *field, const char *value)
{
    add_text(field, "value", value);
}

static xml_node_t *field_of(const xml_node_t *x, const char *var)
{
    for (xml_node_t *f = x ? xml_child(x, NS_XDATA, "field") : NULL; f; f = xml_next(f, NS_XDATA, "field"))
        if (sm_streq(xml_attr_get(f, "var"), var))
            return f;
    return NULL;
}

char *adhoc_value(const xml_node_t *x, const char *var)
{
    xml_node_t *f = field_of(x, var);
    xml_node_t *v = f ? xml_child(f, NS_XDATA, "value") : NULL;
    return v ? xml_text(v) : NULL;
}

char *adhoc_values(const xml_node_t *x, const char *var)
{
    xml_node_t *f = field_of(x, var);
    xml_node_t *v = f ? xml_child(f, NS_XDATA, "value") : NULL;
    if (!v)
        return NULL;
    strbuf_t sb;
    strbuf_init(&sb);
    for (; v; v = xml_next(v, NS_XDATA, "value")) {
        char *t = xml_text(v);
        if (sb.len)
            strbuf_putc(&sb, '\n');
        strbuf_puts(&sb, t);
        free(t);
    }
    return strbuf_steal(&sb);
}

/* --- sessions ------------------------------------------------------------------- */

static void sess_drop(adhoc_sess_t *s)
{
    free(s->owner);
    memset(s, 0, sizeof *s);
}

static adhoc_sess_t *sess_find(const char *id, const char *owner)
{
    double now = daemon_now();
    for (size_t i = 0; i < ADHOC_MAX_SESSIONS; i++) {
        adhoc_sess_t *s = &sessions[i];
        if (s->owner && s->expires < now)
            sess_drop(s);
        else if (s->owner && sm_streq(s->id, id))
            return sm_streq(s->owner, owner) ? s : NULL;
    }
    return NULL;
}

/* A new session; when the table is full the one closest to expiry goes. */
static adhoc_sess_t *sess_new(const adhoc_cmd_t *c, const char *owner)
{
    adhoc_sess_t *s = &sessions[0];
    for (size_t i = 0; i < ADHOC_MAX_SESSIONS; i++) {
        if (!sessions[i].owner) {
            s = &sessions[i];
            break;
        }
        if (sessions[i].expires < s->expires)
            s = &sessions[i];
    }
    sess_drop(s);
    const adhoc_cfg_t *cfg = sm_module_config(&sm_module_adhoc);
    /* unguessable, so a session id seen in a log cannot be continued by
     * anyone; the owner check stays the main guard */
    char rnd[17];
    comp_proto_random_hex(rnd, 8);
    snprintf(s->id, sizeof s->id, "%lx-%s", ++sess_counter, rnd);
    s->cmd = c;
    s->owner = xstrdup(owner);
    s->expires = daemon_now() + cfg->session_timeout;
    return s;
}

/* --- the command iq ---------------------------------------------------------------- */

static void cmd_error(sm_iq_t *req, const char *condition, const char *type)
{
    sm_iq_error(req, condition, type);
}

static xml_node_t *answer(const char *node, const char *sid, const char *status)
{
    xml_node_t *c = xml_elem_new(NS_COMMANDS, "command");
    xml_attr_set(c, "node", node);
    xml_attr_set(c, "sessionid", sid);
    xml_attr_set(c, "status", status);
    return c;
}

/* A stage that answers later (adhoc_defer). */
struct adhoc_later {
    adhoc_out_t out;
    int finished;              /* finished before the stage returned */
    sm_iq_t *req;              /* deferred request */
    const adhoc_cmd_t *cmd;
    char *owner, *sid;
};

static void cmd_result(sm_iq_t *req, const adhoc_cmd_t *c, const char *owner, adhoc_sess_t *s, adhoc_out_t *o);

static void cmd_set(sm_iq_t *req)
{
    const xml_node_t *p = req->payload;
    const char *node = xml_attr_get(p, "node");
    const char *action = xml_attr_get(p, "action");
    const char *sid = xml_attr_get(p, "sessionid");
    const char *owner = xml_attr_get(req->iq, "from");
    const adhoc_cmd_t *c = strcmp(p->name, "command") ? NULL : find_cmd(node);
    if (!c) {
        cmd_error(req, "item-not-found", "cancel");
        return;
    }
    if (!may_run(c, req->from_bare)) {
        log_notice("event=adhoc-refused node=%s from=%s reason=not-admin", node,
                   req->from_bare ? req->from_bare : "-");
        cmd_error(req, "forbidden", "auth");
        return;
    }
    if (action && strcmp(action, "execute") && strcmp(action, "complete") && strcmp(action, "next") &&
        strcmp(action, "cancel")) {
        cmd_error(req, "bad-request", "modify");
        return;
    }
    adhoc_sess_t *s = NULL;
    if (sid) {
        s = sess_find(sid, owner);
        if (!s || s->cmd != c) {
            cmd_error(req, "bad-request", "modify");
            return;
        }
    }
    if (sm_streq(action, "cancel")) {
        xml_node_t *a = answer(node, sid ? sid : "-", "canceled");
        if (s)
            sess_drop(s);
        sm_iq_reply(req, a);
        return;
    }
    const xml_node_t *x = xml_child(p, NS_XDATA, "x");
    if (x && !sm_streq(xml_attr_get(x, "type"), "submit"))
        x = NULL;
    if (s && !x) {
        cmd_error(req, "bad-request", "modify");
        return;
    }
    /* The command may end the asking session itself (an admin ending or
     * disabling their own account): the answer then goes on its way to the
     * full JID instead of to a freed session. */
    char *c2s = req->sess ? xstrdup(req->sess->c2s) : NULL, *ssid = req->sess ? xstrdup(req->sess->sid) : NULL;
    adhoc_out_t out = {0};
    c->fn(req->from_bare, x, &out);
    if (c2s)
        req->sess = sm_sess_lookup(c2s, ssid);
    free(c2s);
    free(ssid);
    adhoc_later_t *l = out.later;
    if (l && !l->finished) {                  /* answered by adhoc_finish */
        l->req = sm_iq_defer(req);
        l->cmd = c;
        l->owner = xstrdup(owner);
        l->sid = s ? xstrdup(s->id) : NULL;
        return;
    }
    if (l) {
        out = l->out;
        free(l);
    }
    cmd_result(req, c, owner, s, &out);
}

adhoc_later_t *adhoc_defer(adhoc_out_t *out)
{
    out->later = xcalloc(1, sizeof *out->later);
    return out->later;
}

adhoc_out_t *adhoc_later_out(adhoc_later_t *l)
{
    return &l->out;
}

void adhoc_finish(adhoc_later_t *l)
{
    if (!l->req) {
        l->finished = 1;                      /* cmd_set answers when the stage returns */
        return;
    }
    adhoc_sess_t *s = l->sid ? sess_find(l->sid, l->owner) : NULL;
    cmd_result(l->req, l->cmd, l->owner, s, &l->out);
    free(l->owner);
    free(l->sid);
    free(l);
}

/* The answer to a stage whose command filled out. */
static void cmd_result(sm_iq_t *req, const adhoc_cmd_t *c, const char *owner, adhoc_sess_t *s, adhoc_out_t *o)
{
    adhoc_out_t out = *o;
    const char *node = c->node;
    if (out.error) {
        xml_free(out.form);
        log_info("event=adhoc-error node=%s from=%s condition=%s reason=\"%s\"", node, req->from_bare,
                 out.error, out.error_text ? out.error_text : "-");
        cmd_error(req, out.error, "modify");
        return;
    }
    if (!out.done) {
        if (!s)
            s = sess_new(c, owner);
        xml_node_t *a = answer(node, s->id, "executing");
        xml_node_t *acts = xml_add_child(a, NS_COMMANDS, "actions");
        xml_attr_set(acts, "execute", "complete");
        xml_add_child(acts, NS_COMMANDS, "complete");
        if (out.form)
            xml_append(a, out.form);
        sm_iq_reply(req, a);
        return;
    }
    log_notice("event=adhoc-completed node=%s from=%s", node, req->from_bare ? req->from_bare : "-");
    char done_id[sizeof ((adhoc_sess_t *)0)->id];
    snprintf(done_id, sizeof done_id, "%s", s ? s->id : "done");
    if (s)
        sess_drop(s);
    xml_node_t *a = answer(node, done_id, "completed");
    if (out.note) {
        xml_node_t *n = xml_add_child(a, NS_COMMANDS, "note");
        xml_attr_set(n, "type", "info");
        xml_add_text(n, out.note, strlen(out.note));
    }
    if (out.form)
        xml_append(a, out.form);
    sm_iq_reply(req, a);
}

/* --- disco ------------------------------------------------------------------------- */

static int disco_node(const char *from_bare, const char *node, int items, xml_node_t *query)
{
    if (!strcmp(node, NS_COMMANDS)) {
        if (!items) {
            xml_node_t *id = xml_add_child(query, NS_DISCO_INFO, "identity");
            xml_attr_set(id, "category", "automation");
            xml_attr_set(id, "type", "command-list");
            return 1;
        }
        for (size_t i = 0; i < ncmds; i++) {
            if (!may_run(&cmds[i], from_bare))
                continue;
            xml_node_t *it = xml_add_child(query, NS_DISCO_ITEMS, "item");
            xml_attr_set(it, "jid", sm_config->domain);
            xml_attr_set(it, "node", cmds[i].node);
            xml_attr_set(it, "name", cmds[i].name);
        }
        return 1;
    }
    const adhoc_cmd_t *c = find_cmd(node);
    if (!c || !may_run(c, from_bare))
        return 0;
    if (!items) {
        xml_node_t *id = xml_add_child(query, NS_DISCO_INFO, "identity");
        xml_attr_set(id, "category", "automation");
        xml_attr_set(id, "type", "command-node");
        xml_attr_set(id, "name", c->name);
        xml_attr_set(xml_add_child(query, NS_DISCO_INFO, "feature"), "var", NS_COMMANDS);
        xml_attr_set(xml_add_child(query, NS_DISCO_INFO, "feature"), "var", NS_XDATA);
    }
    return 1;
}

static void adhoc_free(void)
{
    for (size_t i = 0; i < ADHOC_MAX_SESSIONS; i++)
        sess_drop(&sessions[i]);
    ncmds = 0;
}

static const cfg_option_t adhoc_options[] = {
    {"admins", CFG_STRING, "", 0, 0, 1, offsetof(adhoc_cfg_t, admins), NULL,
     "Bare JIDs (space or comma separated) allowed to run the XEP-0133 admin commands; empty: nobody."},
    {"session-timeout", CFG_SECONDS, "10m", 10, 86400, 1, offsetof(adhoc_cfg_t, session_timeout), NULL,
     "How long a started ad-hoc command waits for its form to come back."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_iq_handler_t adhoc_iqs[] = {
    {NS_COMMANDS, SM_IQ_SERVER, NULL, cmd_set, "bad-request"},
    {NULL, 0, NULL, NULL, NULL},
};

static const sm_hooks_t adhoc_hooks = {
    .disco_server_node = disco_node,
};

static const char *const adhoc_features[] = {NS_COMMANDS, NULL};

sm_module_t sm_module_adhoc = {
    .name = "adhoc",
    .help = "Ad-hoc commands (XEP-0050) at the domain; other modules add commands (mod_admin).",
    .free = adhoc_free,
    .options = adhoc_options,
    .config_size = sizeof(adhoc_cfg_t),
    .hooks = &adhoc_hooks,
    .iqs = adhoc_iqs,
    .server_features = adhoc_features,
};
