/* mod_admin: the XEP-0133 service administration commands, run as XEP-0050
 * ad-hoc commands through mod_adhoc by the JIDs of adhoc's `admins` option
 * (forbidden to anyone else). Nodes http://jabber.org/protocol/admin#X:
 *
 *   add-user              accountjid, password, password-verify
 *   delete-user           accountjids (the account and all its data go)
 *   disable-user          accountjids (sessions end; logins fail with
 *                         SASL <account-disabled/> until reenable-user)
 *   reenable-user         accountjids
 *   change-user-password  accountjid, password
 *   end-user-session      accountjids (bare: every session; full: that one)
 *   get-user-stats        accountjid -> rostersize, onlineresources
 *   get-online-users-list max_items -> onlineuserjids
 *   get-online-users-num  -> onlineusersnum (no form)
 *   get-registered-users-num -> registeredusersnum (no form)
 *   announce              subject, announcement: a headline message from
 *                         the domain to every available session
 *   set-motd / edit-motd  motd (edit shows the current one)
 *   delete-motd           (no form)
 *
 * The message of the day is stored (collection "motd", owner the domain)
 * and sent, as a headline from the domain, to each session when it first
 * sends available presence. Which sessions got it is per-user state (a
 * list of session pointers, dropped when a session ends).
 *
 * Online users and sessions are those of this sm instance. Every command
 * runs synchronously on the storage (no deferral); accounts are changed
 * through account.h as the c2s's authreg requests are. */
#include "account.h"
#include "mod_adhoc.h"
#include "mod_roster.h"
#include "module.h"
#include "store.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_ADMIN "http://jabber.org/protocol/admin"
#define COLL_MOTD "motd"
#define ADMIN_MAX_JIDS 100

extern sm_module_t sm_module_admin;

/* --- helpers ------------------------------------------------------------------ */

/* A form for a command: type form with the XEP-0133 FORM_TYPE. */
static xml_node_t *form(const char *title, const char *instructions)
{
    return adhoc_form("form", NS_ADMIN, title, instructions);
}

static void fail(adhoc_out_t *out, const char *condition, const char *text)
{
    out->error = condition;
    out->error_text = text;
}

/* Parses a submitted JID of a local account: 0 and j filled (the caller
 * clears it), or -1. full_ok allows a resource. */
static int local_jid(const char *s, jid_t *j, int full_ok)
{
    if (!s || jid_parse(s, j) != JID_OK)
        return -1;
    if (!j->node || (j->resource && !full_ok) || !sm_is_local(j->domain)) {
        jid_clear(j);
        return -1;
    }
    return 0;
}

/* A command's work on several accounts, each finished by job_done (from
 * storage's callback: at once on SQLite, later on PostgreSQL). */
typedef struct jobs {
    adhoc_later_t *later;
    const char *done_fmt;
    int ok, left;
} jobs_t;

static const char *note(const char *fmt, int n);

static void job_done(int rc, void *arg)
{
    jobs_t *jb = arg;
    jb->ok += rc == 0;
    if (--jb->left)
        return;
    adhoc_out_t *out = adhoc_later_out(jb->later);
    out->done = 1;
    out->note = note(jb->done_fmt, jb->ok);
    adhoc_finish(jb->later);
    free(jb);
}

/* Runs fn on every JID of the jid-multi field accountjids (at most
 * ADMIN_MAX_JIDS); fn calls job_done(rc, jb) once for each. Returns -1
 * when the field is missing or a JID is not a local account's (nothing is
 * done then), else 0. */
typedef void (*jid_fn)(const jid_t *j, jobs_t *jb);
static int each_jid(const xml_node_t *x, int full_ok, jid_fn fn, jobs_t *jb)
{
    char *all = adhoc_values(x, "accountjids");
    if (!all)
        all = adhoc_values(x, "accountjid");
    if (!all || !*all) {
        free(all);
        return -1;
    }
    int n = 0, bad = 0, count = 0;
    for (char *p = all; *p && !bad; p += strcspn(p, "\n"), p += *p == '\n') {
        size_t len = strcspn(p, "\n");
        char one[3072];
        if (len == 0)
            continue;
        if (len >= sizeof one || ++count > ADMIN_MAX_JIDS) {
            bad = 1;
            break;
        }
        memcpy(one, p, len);
        one[len] = 0;
        jid_t j;
        if (local_jid(one, &j, full_ok) < 0)
            bad = 1;
        else
            jid_clear(&j);
    }
    for (char *p = all; *p && !bad; p += strcspn(p, "\n"), p += *p == '\n') {
        size_t len = strcspn(p, "\n");
        char one[3072];
        if (len == 0)
            continue;
        memcpy(one, p, len);
        one[len] = 0;
        jid_t j;
        if (local_jid(one, &j, full_ok) == 0) {
            jb->left++;
            fn(&j, jb);
            jid_clear(&j);
        }
    }
    free(all);
    return bad ? -1 : n;
}

static xml_node_t *jids_form(const char *title, int full_ok)
{
    xml_node_t *x = form(title, full_ok ? "The accounts (bare JIDs) or sessions (full JIDs)." : "The accounts.");
    xml_node_t *f = adhoc_field(x, "jid-multi", "accountjids", "The Jabber ID(s)", NULL);
    xml_add_child(f, NS_XDATA, "required");
    return x;
}

static char *note_buf;   /* the note of the last completed command */
static const char *note(const char *fmt, int n)
{
    free(note_buf);
    size_t len = strlen(fmt) + 32;
    note_buf = xmalloc(len);
    snprintf(note_buf, len, fmt, n);
    return note_buf;
}

/* A command on a list of accounts: the form, then fn on each. */
static void jids_command(const xml_node_t *x, adhoc_out_t *out, const char *title, int full_ok, jid_fn fn,
                         const char *done_fmt)
{
    if (!x) {
        out->form = jids_form(title, full_ok);
        return;
    }
    jobs_t *jb = xcalloc(1, sizeof *jb);
    jb->done_fmt = done_fmt;
    jb->left = 1;                             /* until every job has started */
    if (each_jid(x, full_ok, fn, jb) < 0) {
        free(jb);
        fail(out, "bad-request", "accountjids must name accounts of this server");
        return;
    }
    jb->later = adhoc_defer(out);
    job_done(1, jb);
}

/* --- accounts ----------------------------------------------------------------- */

/* A command stage waiting for one storage request. */
typedef struct store_op {
    adhoc_later_t *later;
    char *from, *bare;
} store_op_t;

static store_op_t *store_op_new(adhoc_out_t *out, const char *from, const char *bare)
{
    store_op_t *op = xcalloc(1, sizeof *op);
    op->later = adhoc_defer(out);
    op->from = xstrdup(from ? from : "-");
    op->bare = bare ? xstrdup(bare) : NULL;
    return op;
}

static adhoc_out_t *store_op_out(store_op_t *op)
{
    return adhoc_later_out(op->later);
}

static void store_op_finish(store_op_t *op)
{
    adhoc_finish(op->later);
    free(op->from);
    free(op->bare);
    free(op);
}

static void user_created(storage_res_t *res, void *arg)
{
    store_op_t *op = arg;
    adhoc_out_t *out = store_op_out(op);
    if (res->status > 0)
        fail(out, "conflict", "the account already exists");
    else if (res->status < 0)
        fail(out, "internal-server-error", NULL);
    else {
        log_notice("sm: event=account-created user=%s by=%s", op->bare, op->from);
        out->done = 1;
        out->note = "The account was created.";
    }
    store_op_finish(op);
}

static void keys_set(storage_res_t *res, void *arg)
{
    store_op_t *op = arg;
    adhoc_out_t *out = store_op_out(op);
    if (res->status > 0)
        fail(out, "item-not-found", "no such account");
    else if (res->status < 0)
        fail(out, "internal-server-error", NULL);
    else {
        log_notice("sm: event=password-changed user=%s by=%s", op->bare, op->from);
        out->done = 1;
        out->note = "The password was changed.";
    }
    store_op_finish(op);
}

static void add_user(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    if (!x) {
        xml_node_t *f = form("Adding a User", "Fill out this form to add a user.");
        xml_add_child(adhoc_field(f, "jid-single", "accountjid", "The Jabber ID for the account to be added", NULL),
                      NS_XDATA, "required");
        xml_add_child(adhoc_field(f, "text-private", "password", "The password for this account", NULL), NS_XDATA,
                      "required");
        xml_add_child(adhoc_field(f, "text-private", "password-verify", "Retype password", NULL), NS_XDATA,
                      "required");
        out->form = f;
        return;
    }
    char *jid = adhoc_value(x, "accountjid"), *pw = adhoc_value(x, "password");
    char *pw2 = adhoc_value(x, "password-verify");
    char *k256 = NULL, *k1 = NULL;
    jid_t j = {0};
    if (local_jid(jid, &j, 0) < 0)
        fail(out, "bad-request", "accountjid must be a JID of this server");
    else if (pw2 && (!pw || strcmp(pw, pw2)))
        fail(out, "bad-request", "the passwords do not match");
    else if (sm_account_keys(pw, &k256, &k1) < 0)
        fail(out, "not-acceptable", "the password is empty or not acceptable (SASLprep)");
    else
        storage_user_create_async(sm_storage, j.bare, k256, k1, user_created, store_op_new(out, from, j.bare));
    jid_clear(&j);
    free(jid);
    free(pw);
    free(pw2);
    free(k256);
    free(k1);
}

static void change_password(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    if (!x) {
        xml_node_t *f = form("Changing a User Password", "Fill out this form to change a user's password.");
        xml_add_child(adhoc_field(f, "jid-single", "accountjid", "The Jabber ID for this account", NULL), NS_XDATA,
                      "required");
        xml_add_child(adhoc_field(f, "text-private", "password", "The password for this account", NULL), NS_XDATA,
                      "required");
        out->form = f;
        return;
    }
    char *jid = adhoc_value(x, "accountjid"), *pw = adhoc_value(x, "password");
    char *k256 = NULL, *k1 = NULL;
    jid_t j = {0};
    if (local_jid(jid, &j, 0) < 0)
        fail(out, "bad-request", "accountjid must be a JID of this server");
    else if (sm_account_keys(pw, &k256, &k1) < 0)
        fail(out, "not-acceptable", "the password is empty or not acceptable (SASLprep)");
    else
        storage_user_set_keys_async(sm_storage, j.bare, k256, k1, keys_set, store_op_new(out, from, j.bare));
    jid_clear(&j);
    free(jid);
    free(pw);
    free(k256);
    free(k1);
}

typedef struct job {
    jobs_t *jb;
    char *bare;
    const char *event;
} job_t;

static void job_end(int rc, void *arg)
{
    job_t *jo = arg;
    if (rc == 0)
        log_notice("sm: event=%s user=%s%s", jo->event, jo->bare,
                   !strcmp(jo->event, "account-removed") ? " by=admin-command" : "");
    job_done(rc, jo->jb);
    free(jo->bare);
    free(jo);
}

static job_t *job_new(jobs_t *jb, const jid_t *j, const char *event)
{
    job_t *jo = xmalloc(sizeof *jo);
    jo->jb = jb;
    jo->bare = xstrdup(j->bare);
    jo->event = event;
    return jo;
}

static void do_delete(const jid_t *j, jobs_t *jb)
{
    sm_account_remove(j->bare, "not-authorized", job_end, job_new(jb, j, "account-removed"));
}

static void do_disable(const jid_t *j, jobs_t *jb)
{
    sm_account_set_disabled(j->bare, 1, job_end, job_new(jb, j, "account-disabled"));
}

static void do_enable(const jid_t *j, jobs_t *jb)
{
    sm_account_set_disabled(j->bare, 0, job_end, job_new(jb, j, "account-reenabled"));
}

static void do_end_session(const jid_t *j, jobs_t *jb)
{
    if (!j->resource) {
        job_done(sm_account_end_sessions(j->bare, "reset") > 0 ? 0 : 1, jb);
        return;
    }
    sm_user_t *u = sm_user_get(j->bare);
    sm_sess_t *s = u ? sm_sess_find(u, j->resource) : NULL;
    if (s)
        sm_sess_end(s, 1, "reset");
    job_done(s ? 0 : 1, jb);
}

static void delete_user(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)from;
    jids_command(x, out, "Deleting a User", 0, do_delete, "%d account(s) deleted.");
}

static void disable_user(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)from;
    jids_command(x, out, "Disabling a User", 0, do_disable, "%d account(s) disabled.");
}

static void reenable_user(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)from;
    jids_command(x, out, "Re-Enabling a User", 0, do_enable, "%d account(s) re-enabled.");
}

static void end_session(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)from;
    jids_command(x, out, "Ending a User Session", 1, do_end_session, "%d session(s) or account(s) ended.");
}

/* --- sessions and statistics ---------------------------------------------------- */

typedef struct sess_list {
    sm_sess_t **v;
    size_t n, cap;
    int available_only;
} sess_list_t;

static void collect(const sm_sess_t *s, void *arg)
{
    sess_list_t *l = arg;
    if (l->available_only && !s->available)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (sm_sess_t *)s;   /* admin.c's index holds live sessions */
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The distinct bare JIDs with a live session, sorted (pointers into the
 * sessions; valid until one ends). Returns the count. */
static size_t online_users(const char ***out)
{
    sess_list_t l = {0};
    admin_foreach_session(collect, &l);
    const char **b = xcalloc(l.n + 1, sizeof *b);
    for (size_t i = 0; i < l.n; i++)
        b[i] = l.v[i]->user->bare;
    qsort(b, l.n, sizeof *b, cmp_str);
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++)
        if (n == 0 || strcmp(b[n - 1], b[i]))
            b[n++] = b[i];
    free(l.v);
    *out = b;
    return n;
}

static void online_list(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)from;
    if (!x) {
        xml_node_t *f = form("Getting List of Online Users", NULL);
        xml_node_t *m = adhoc_field(f, "list-single", "max_items", "Maximum number of items to show", "100");
        static const char *const opts[] = {"25", "50", "75", "100", "150", "200", "none"};
        for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
            xml_node_t *o = xml_add_child(m, NS_XDATA, "option");
            xml_attr_set(o, "label", opts[i]);
            adhoc_field_value(o, opts[i]);
        }
        out->form = f;
        return;
    }
    char *max = adhoc_value(x, "max_items");
    long lim = max && strcmp(max, "none") ? strtol(max, NULL, 10) : -1;
    free(max);
    const char **users;
    size_t n = online_users(&users);
    xml_node_t *r = adhoc_form("result", NS_ADMIN, "Online Users", NULL);
    xml_node_t *f = adhoc_field(r, "text-multi", "onlineuserjids", "The list of all online users", NULL);
    for (size_t i = 0; i < n && (lim < 0 || (long)i < lim); i++)
        adhoc_field_value(f, users[i]);
    free(users);
    out->form = r;
    out->done = 1;
}

static void result_number(adhoc_out_t *out, const char *title, const char *var, const char *label, long v)
{
    char num[32];
    snprintf(num, sizeof num, "%ld", v);
    xml_node_t *r = adhoc_form("result", NS_ADMIN, title, NULL);
    adhoc_field(r, "text-single", var, label, num);
    out->form = r;
    out->done = 1;
}

static void online_num(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)from;
    (void)x;
    const char **users;
    size_t n = online_users(&users);
    free(users);
    result_number(out, "Number of Online Users", "onlineusersnum", "The number of online users", (long)n);
}

static void users_counted(storage_res_t *res, void *arg)
{
    store_op_t *op = arg;
    if (res->status < 0)
        fail(store_op_out(op), "internal-server-error", NULL);
    else
        result_number(store_op_out(op), "Number of Registered Users", "registeredusersnum",
                      "The number of registered users", (long)res->n);
    store_op_finish(op);
}

static void registered_num(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)x;
    storage_user_count_async(sm_storage, users_counted, store_op_new(out, from, NULL));
}

static void count_contact(const char *contact, sm_sub_t sub, void *arg)
{
    (void)contact;
    (void)sub;
    (*(long *)arg)++;
}

/* Once the account is checked and its roster loaded. */
static void stats_of(sm_user_t *u, void *arg)
{
    store_op_t *op = arg;
    adhoc_out_t *out = store_op_out(op);
    if (!u) {
        fail(out, "item-not-found", "no such account");
    } else {
        long contacts = 0;
        sm_roster_foreach(u, count_contact, &contacts);
        char num[32];
        snprintf(num, sizeof num, "%ld", contacts);
        xml_node_t *r = adhoc_form("result", NS_ADMIN, "User Statistics", NULL);
        adhoc_field(r, "jid-single", "accountjid", "The Jabber ID", op->bare);
        adhoc_field(r, "text-single", "rostersize", "Roster size", num);
        xml_node_t *res = adhoc_field(r, "text-multi", "onlineresources", "Online resources", NULL);
        for (sm_sess_t *s = u->sessions; s; s = s->next)
            adhoc_field_value(res, s->jid.resource);
        out->form = r;
        out->done = 1;
    }
    store_op_finish(op);
}

static void user_stats(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    if (!x) {
        xml_node_t *f = form("Get User Statistics", "Fill out this form to get a user's statistics.");
        xml_add_child(adhoc_field(f, "jid-single", "accountjid", "The Jabber ID for statistics", NULL), NS_XDATA,
                      "required");
        out->form = f;
        return;
    }
    char *jid = adhoc_value(x, "accountjid");
    jid_t j = {0};
    if (local_jid(jid, &j, 0) < 0)
        fail(out, "bad-request", "accountjid must be a JID of this server");
    else
        sm_user_with(j.bare, stats_of, store_op_new(out, from, j.bare));
    jid_clear(&j);
    free(jid);
}

/* --- announcements and the message of the day ------------------------------------- */

static void send_headline(sm_sess_t *s, const char *subject, const char *body)
{
    xml_node_t *m = xml_elem_new(NS_CLIENT, "message");
    xml_attr_set(m, "type", "headline");
    xml_attr_set(m, "from", sm_config->domain);
    xml_attr_set(m, "to", s->jid.full);
    if (subject && *subject)
        xml_add_text(xml_add_child(m, NS_CLIENT, "subject"), subject, strlen(subject));
    xml_add_text(xml_add_child(m, NS_CLIENT, "body"), body, strlen(body));
    sm_deliver(s, m);
    xml_free(m);
}

static void announce(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    if (!x) {
        xml_node_t *f = form("Making an Announcement", "Fill out this form to make an announcement to all "
                                                        "active users of this service.");
        adhoc_field(f, "text-single", "subject", "Subject", NULL);
        xml_add_child(adhoc_field(f, "text-multi", "announcement", "Announcement", NULL), NS_XDATA, "required");
        out->form = f;
        return;
    }
    char *subject = adhoc_value(x, "subject"), *body = adhoc_values(x, "announcement");
    if (!body || !*body) {
        fail(out, "bad-request", "the announcement is empty");
    } else {
        sess_list_t l = {.available_only = 1};
        admin_foreach_session(collect, &l);
        for (size_t i = 0; i < l.n; i++)
            send_headline(l.v[i], subject, body);
        log_notice("sm: event=announcement by=%s sessions=%zu", from, l.n);
        free(l.v);
        out->done = 1;
        out->note = note("Announcement sent to %d session(s).", (int)l.n);
    }
    free(subject);
    free(body);
}

/* The message of the day is kept in memory: every initial presence shows
 * it, and a read per login would be a database round trip on PostgreSQL.
 * Read at start and again, in the background, when the copy is older than
 * MOTD_REFRESH seconds (another sm instance sharing the database may have
 * changed it); this instance's own changes update it at once. */
#define MOTD_REFRESH 10.0
static char *motd_cache;
static double motd_read_at;
static int motd_reading;

static void motd_read(storage_res_t *res, void *arg)
{
    (void)arg;
    motd_reading = 0;
    if (res->status < 0)
        return;                               /* keep what we had; logged by storage */
    free(motd_cache);
    motd_cache = res->status == 0 ? xstrndup(res->val, res->len) : NULL;
    motd_read_at = daemon_now();
}

static void motd_refresh(void)
{
    if (motd_reading)
        return;
    motd_reading = 1;
    storage_get_async(sm_storage, sm_config->domain, COLL_MOTD, "", motd_read, NULL);
}

/* The message of the day, or NULL (caller frees). */
static char *motd_get(void)
{
    if (daemon_now() - motd_read_at > MOTD_REFRESH)
        motd_refresh();
    return motd_cache ? xstrdup(motd_cache) : NULL;
}

/* A set or delete: the copy follows once the write committed. */
static void motd_written(storage_res_t *res, void *arg)
{
    store_op_t *op = arg;
    adhoc_out_t *out = store_op_out(op);
    if (res->status < 0) {
        fail(out, "internal-server-error", NULL);
    } else {
        free(motd_cache);
        motd_cache = op->bare;                /* the new text, or NULL: deleted */
        op->bare = NULL;
        motd_read_at = daemon_now();
        log_notice("sm: event=%s by=%s", motd_cache ? "motd-set" : "motd-deleted", op->from);
        out->done = 1;
        out->note = motd_cache ? "The message of the day was set." : "The message of the day was deleted.";
    }
    store_op_finish(op);
}

static void motd_form(const char *from, const xml_node_t *x, adhoc_out_t *out, int edit)
{
    if (!x) {
        char *cur = edit ? motd_get() : NULL;
        xml_node_t *f = form(edit ? "Editing the Message of the Day" : "Setting the Message of the Day",
                             "Fill out this form to set the message of the day.");
        xml_node_t *m = adhoc_field(f, "text-multi", "motd", "Message of the Day", NULL);
        xml_add_child(m, NS_XDATA, "required");
        for (char *p = cur; p && *p;) {
            size_t len = strcspn(p, "\n");
            char save = p[len];
            p[len] = 0;
            adhoc_field_value(m, p);
            p[len] = save;
            p += len + (save != 0);
        }
        free(cur);
        out->form = f;
        return;
    }
    char *motd = adhoc_values(x, "motd");
    if (!motd || !*motd)
        fail(out, "bad-request", "the message of the day is empty");
    else
        sm_store_put(sm_config->domain, COLL_MOTD, "", motd, strlen(motd), motd_written,
                     store_op_new(out, from, motd));
    free(motd);
}

static void set_motd(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    motd_form(from, x, out, 0);
}

static void edit_motd(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    motd_form(from, x, out, 1);
}

static void delete_motd(const char *from, const xml_node_t *x, adhoc_out_t *out)
{
    (void)x;
    sm_store_del(sm_config->domain, COLL_MOTD, "", motd_written, store_op_new(out, from, NULL));
}

/* Per-user state: the sessions that got the message of the day. */
typedef struct motd_seen {
    sm_sess_t **v;
    size_t n;
} motd_seen_t;

static motd_seen_t *seen_of(sm_user_t *u, int create)
{
    motd_seen_t *m = sm_user_state(u, &sm_module_admin);
    if (!m && create) {
        m = xcalloc(1, sizeof *m);
        sm_user_state_set(u, &sm_module_admin, m);
    }
    return m;
}

static void seen_free(sm_user_t *u, void *state)
{
    (void)u;
    motd_seen_t *m = state;
    free(m->v);
    free(m);
}

static sm_ret_t on_presence_out(sm_sess_t *s, xml_node_t *pres)
{
    if (xml_attr_get(pres, "to") || xml_attr_get(pres, "type"))
        return SM_PASS;
    motd_seen_t *m = seen_of(s->user, 1);
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i] == s)
            return SM_PASS;
    char *motd = motd_get();
    if (!motd)
        return SM_PASS;
    m->v = xrealloc(m->v, (m->n + 1) * sizeof *m->v);
    m->v[m->n++] = s;
    send_headline(s, "Message of the Day", motd);
    free(motd);
    return SM_PASS;
}

static void on_sess_end(sm_sess_t *s, xml_node_t *unavailable)
{
    (void)unavailable;
    motd_seen_t *m = seen_of(s->user, 0);
    for (size_t i = 0; m && i < m->n; i++) {
        if (m->v[i] == s) {
            m->v[i] = m->v[--m->n];
            break;
        }
    }
}

/* --- the module ---------------------------------------------------------------------- */

static int admin_init(void)
{
    static const struct {
        const char *node, *name;
        adhoc_fn fn;
    } list[] = {
        {NS_ADMIN "#add-user", "Add User", add_user},
        {NS_ADMIN "#delete-user", "Delete User", delete_user},
        {NS_ADMIN "#disable-user", "Disable User", disable_user},
        {NS_ADMIN "#reenable-user", "Re-Enable User", reenable_user},
        {NS_ADMIN "#change-user-password", "Change User Password", change_password},
        {NS_ADMIN "#end-user-session", "End User Session", end_session},
        {NS_ADMIN "#get-user-stats", "Get User Statistics", user_stats},
        {NS_ADMIN "#get-online-users-list", "Get List of Online Users", online_list},
        {NS_ADMIN "#get-online-users-num", "Get Number of Online Users", online_num},
        {NS_ADMIN "#get-registered-users-num", "Get Number of Registered Users", registered_num},
        {NS_ADMIN "#announce", "Send Announcement to Online Users", announce},
        {NS_ADMIN "#set-motd", "Set Message of the Day", set_motd},
        {NS_ADMIN "#edit-motd", "Edit Message of the Day", edit_motd},
        {NS_ADMIN "#delete-motd", "Delete Message of the Day", delete_motd},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        adhoc_register(list[i].node, list[i].name, 1, list[i].fn);
    motd_refresh();
    return 0;
}

static void admin_free_module(void)
{
    free(note_buf);
    note_buf = NULL;
    free(motd_cache);
    motd_cache = NULL;
}

static const sm_hooks_t admin_hooks = {
    .presence_out = on_presence_out,
    .sess_end = on_sess_end,
};

sm_module_t sm_module_admin = {
    .name = "admin",
    .help = "Service administration (XEP-0133) as ad-hoc commands for the admins named in adhoc.admins.",
    .init = admin_init,
    .free = admin_free_module,
    .hooks = &admin_hooks,
    .user_state_free = seen_free,
};
