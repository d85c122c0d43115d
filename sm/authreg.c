/* authreg: the sm's side of the account protocol (docs/session-protocol.md,
 * "Accounts"). c2s never reads storage: it asks the sm that owns a user for
 * the user's SCRAM keys (get), and asks it to create an account (register),
 * replace its keys (password) or remove it (remove). Every request is
 * answered, by id, with one <authreg type='result'/> or type='error'
 * condition='...'.
 *
 * Invariants: the user is a prepared bare JID of the domain this sm serves;
 * keys are stored only after scram_keys_parse accepted them and only under the
 * attribute of their own hash; an answer goes out only after the storage
 * write it reports has completed (committed): requests use storage's
 * asynchronous form and answer from its callback (at once on SQLite, later
 * on PostgreSQL), and the router gets the request's acknowledgement after
 * the answer (store.h). Keys never appear in a log line.
 *
 * Trust: a request is believed to come from a c2s because the router let it
 * through; the router's ACL is what keeps other components from sending one. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "account.h"
#include "log.h"
#include "sasl.h"
#include "module_run.h"
#include "store.h"

#define SCRAM_ITERATIONS 4096
#define COLL_ACCOUNT "account"

/* Answers req (type result or error) to the component that asked. The
 * answer is freed here. */
static void authreg_reply(const xml_node_t *req, xml_node_t *ans)
{
    xml_attr_set(ans, "id", xml_attr_get(req, "id"));
    xml_attr_set(ans, "to", xml_attr_get(req, "from"));
    xml_attr_set(ans, "from", sm_config->domain);
    xml_attr_set(ans, "user", xml_attr_get(req, "user"));
    sm_send_raw_element(ans);
    xml_free(ans);
}

static xml_node_t *authreg_answer(const char *type)
{
    xml_node_t *ans = xml_elem_new(SM_NS_AUTHREG, "authreg");
    xml_attr_set(ans, "type", type);
    return ans;
}

static void authreg_error(const xml_node_t *req, const char *condition)
{
    xml_node_t *ans = authreg_answer("error");
    xml_attr_set(ans, "condition", condition);
    authreg_reply(req, ans);
}

/* Checks the keys of a register/password request: each one present must
 * parse and be of the hash its attribute names; at least one is needed. */
static int authreg_keys_ok(const xml_node_t *req, const char **sha256, const char **sha1)
{
    *sha256 = xml_attr_get(req, "sha256");
    *sha1 = xml_attr_get(req, "sha1");
    if (!*sha256 && !*sha1)
        return 0;
    scram_keys_t k;
    int ok = 1;
    if (*sha256 && (scram_keys_parse(*sha256, &k) < 0 || k.hash != SCRAM_SHA256))
        ok = 0;
    if (ok && *sha1 && (scram_keys_parse(*sha1, &k) < 0 || k.hash != SCRAM_SHA1))
        ok = 0;
    return ok;
}

/* An authreg request waiting for storage: the request copied, its answer
 * sent from the callback (at once on SQLite). */
typedef struct areq {
    xml_node_t *req;
    char *bare, *c2s;
    char *sha256, *sha1;     /* get: the keys read */
    sm_ack_t *ack;           /* the request is acknowledged once answered */
} areq_t;

static areq_t *areq_new(const xml_node_t *req, const char *bare, const char *c2s)
{
    areq_t *a = xcalloc(1, sizeof *a);
    a->req = xml_copy(req);
    a->bare = xstrdup(bare);
    a->c2s = c2s ? xstrdup(c2s) : NULL;
    a->ack = sm_ack_take();
    return a;
}

static void areq_free(areq_t *a)
{
    xml_free(a->req);
    free(a->bare);
    free(a->c2s);
    free(a->sha256);
    free(a->sha1);
    sm_ack_drop(a->ack);
    free(a);
}

/* c2s refuses a disabled account only once the password is proven, so the
 * flag tells nothing to someone who does not know it. */
static void get_disabled(storage_res_t *res, void *arg)
{
    areq_t *a = arg;
    xml_node_t *ans = authreg_answer("result");
    xml_attr_set(ans, "sha256", a->sha256);
    xml_attr_set(ans, "sha1", a->sha1);
    if (res->status == 0) {
        log_notice("sm: event=login-disabled-account user=%s", a->bare);
        xml_attr_set(ans, "disabled", "true");
    }
    authreg_reply(a->req, ans);
    areq_free(a);
}

static void get_keys(storage_res_t *res, void *arg)
{
    areq_t *a = arg;
    if (res->status != 0) {
        authreg_error(a->req, res->status > 0 ? "item-not-found" : "internal-server-error");
        areq_free(a);
        return;
    }
    a->sha256 = res->sha256;
    a->sha1 = res->sha1;
    res->sha256 = res->sha1 = NULL;          /* kept (storage.h) */
    storage_get_async(sm_storage, a->bare, COLL_ACCOUNT, "disabled", get_disabled, a);
}

static void authreg_get(const xml_node_t *req, const char *bare)
{
    storage_user_get_async(sm_storage, bare, get_keys, areq_new(req, bare, NULL));
}

static void register_done(storage_res_t *res, void *arg)
{
    areq_t *a = arg;
    if (res->status != 0)
        authreg_error(a->req, res->status > 0 ? "conflict" : "internal-server-error");
    else {
        log_notice("sm: event=account-created user=%s c2s=%s", a->bare, a->c2s);
        authreg_reply(a->req, authreg_answer("result"));
    }
    areq_free(a);
}

static void authreg_register(const xml_node_t *req, const char *bare, const char *c2s)
{
    const char *sha256, *sha1;
    if (!authreg_keys_ok(req, &sha256, &sha1)) {
        log_warn("sm: event=authreg-refused type=register user=%s c2s=%s reason=bad-keys", bare, c2s);
        authreg_error(req, "bad-request");
        return;
    }
    storage_user_create_async(sm_storage, bare, sha256, sha1, register_done, areq_new(req, bare, c2s));
}

static void password_done(storage_res_t *res, void *arg)
{
    areq_t *a = arg;
    if (res->status != 0)
        authreg_error(a->req, res->status > 0 ? "item-not-found" : "internal-server-error");
    else {
        log_notice("sm: event=password-changed user=%s c2s=%s", a->bare, a->c2s);
        authreg_reply(a->req, authreg_answer("result"));
    }
    areq_free(a);
}

static void authreg_password(const xml_node_t *req, const char *bare, const char *c2s)
{
    const char *sha256, *sha1;
    if (!authreg_keys_ok(req, &sha256, &sha1)) {
        log_warn("sm: event=authreg-refused type=password user=%s c2s=%s reason=bad-keys", bare, c2s);
        authreg_error(req, "bad-request");
        return;
    }
    /* Both keys are replaced (an absent one is cleared): the old password
     * must not keep working through the other hash. */
    storage_user_set_keys_async(sm_storage, bare, sha256, sha1, password_done, areq_new(req, bare, c2s));
}

/* Ends every session of the user, looking the user up again after each end:
 * ending the last session may free it. Bounded, in case a session refuses to
 * leave the list. */
int sm_account_end_sessions(const char *bare, const char *reason)
{
    int n = 0, ended = 0;
    sm_user_t *u = sm_user_get(bare);
    for (sm_sess_t *s = u ? u->sessions : NULL; s; s = s->next)
        n++;
    while (n-- > 0) {
        u = sm_user_get(bare);
        if (!u || !u->sessions)
            break;
        sm_sess_end(u->sessions, 1, reason);
        ended++;
    }
    return ended;
}

/* An account operation waiting for storage (sm_account_remove, _set_disabled). */
typedef struct aop {
    char *bare, *reason;
    int disabled;
    sm_account_fn done;
    void *arg;
    sm_user_t *held;
    sm_ack_t *ack;
} aop_t;

static aop_t *aop_new(const char *bare, const char *reason, sm_account_fn done, void *arg)
{
    aop_t *op = xcalloc(1, sizeof *op);
    op->bare = xstrdup(bare);
    op->reason = reason ? xstrdup(reason) : NULL;
    op->done = done;
    op->arg = arg;
    op->ack = sm_ack_take();
    return op;
}

static void aop_end(aop_t *op, int rc)
{
    if (op->done)
        op->done(rc, op->arg);
    if (op->held)
        sm_user_release(op->held);
    sm_ack_drop(op->ack);
    free(op->bare);
    free(op->reason);
    free(op);
}

static void remove_done(storage_res_t *res, void *arg)
{
    aop_t *op = arg;
    if (res->status == 0 && op->held)
        sm_user_unload(op->held);            /* what waited finds no account */
    aop_end(op, res->status < 0 ? -1 : res->status);
}

/* Order: sessions end first (their unavailable presence still reaches the
 * contacts, which needs the roster), then the modules forget the user
 * (user_delete hooks), then the account and every record it owns go in one
 * storage transaction; the user is held until then. */
static void remove_user(sm_user_t *u, void *arg)
{
    aop_t *op = arg;
    if (!u) {
        aop_end(op, 1);
        return;
    }
    sm_account_end_sessions(op->bare, op->reason);
    sm_user_hold(u);
    op->held = u;
    sm_run_user_delete(u);
    storage_user_delete_async(sm_storage, op->bare, remove_done, op);
}

void sm_account_remove(const char *bare, const char *reason, sm_account_fn done, void *arg)
{
    sm_user_with(bare, remove_user, aop_new(bare, reason, done, arg));
}

static void disabled_done(storage_res_t *res, void *arg)
{
    aop_t *op = arg;
    if (res->status >= 0 && op->disabled)
        sm_account_end_sessions(op->bare, "not-authorized");
    aop_end(op, res->status < 0 ? -1 : 0);
}

static void disable_user(sm_user_t *u, void *arg)
{
    aop_t *op = arg;
    if (!u) {
        aop_end(op, 1);
        return;
    }
    if (op->disabled)
        storage_put_async(sm_storage, op->bare, COLL_ACCOUNT, "disabled", "1", 1, disabled_done, op);
    else
        storage_del_async(sm_storage, op->bare, COLL_ACCOUNT, "disabled", disabled_done, op);
}

void sm_account_set_disabled(const char *bare, int disabled, sm_account_fn done, void *arg)
{
    aop_t *op = aop_new(bare, NULL, done, arg);
    op->disabled = disabled;
    sm_user_with(bare, disable_user, op);
}

int sm_account_keys(const char *password, char **sha256, char **sha1)
{
    char *prepped = password && *password ? sasl_saslprep(password, 0) : NULL;
    if (!prepped || !*prepped) {
        free(prepped);
        return -1;
    }
    scram_keys_t k;
    strbuf_t a, b;
    strbuf_init(&a);
    strbuf_init(&b);
    int rc = scram_keys_new(SCRAM_SHA256, prepped, SCRAM_ITERATIONS, &k);
    if (rc == 0)
        scram_keys_format(&k, &a);
    if (rc == 0 && (rc = scram_keys_new(SCRAM_SHA1, prepped, SCRAM_ITERATIONS, &k)) == 0)
        scram_keys_format(&k, &b);
    OPENSSL_cleanse(&k, sizeof k);
    OPENSSL_cleanse(prepped, strlen(prepped));
    free(prepped);
    if (rc != 0) {
        strbuf_free(&a);
        strbuf_free(&b);
        return -1;
    }
    *sha256 = strbuf_steal(&a);
    *sha1 = strbuf_steal(&b);
    return 0;
}

static void removed(int rc, void *arg)
{
    areq_t *a = arg;
    if (rc != 0)
        authreg_error(a->req, rc > 0 ? "item-not-found" : "internal-server-error");
    else {
        log_notice("sm: event=account-removed user=%s c2s=%s", a->bare, a->c2s);
        authreg_reply(a->req, authreg_answer("result"));
    }
    areq_free(a);
}

static void authreg_remove(const xml_node_t *req, const char *bare, const char *c2s)
{
    sm_account_remove(bare, "not-authorized", removed, areq_new(req, bare, c2s));
}

void sm_authreg_handle(xml_node_t *req)
{
    const char *type = xml_attr_get(req, "type");
    const char *id = xml_attr_get(req, "id");
    const char *from = xml_attr_get(req, "from");
    const char *user = xml_attr_get(req, "user");
    if (strcmp(req->ns, SM_NS_AUTHREG) != 0 || strcmp(req->name, "authreg") != 0) {
        log_warn("sm: event=protocol-error element=%s from=%s reason=not-authreg", req->name,
                 from ? from : "-");
        return;
    }
    /* Without a sender or an id an answer could not reach or match anything;
     * answers themselves are never answered (no loops). */
    if (!from || !id || !type) {
        log_warn("sm: event=protocol-error element=authreg from=%s reason=missing-%s",
                 from ? from : "-", !from ? "from" : !id ? "id" : "type");
        return;
    }
    if (!strcmp(type, "result") || !strcmp(type, "error")) {
        log_warn("sm: event=protocol-error element=authreg from=%s reason=unexpected-%s", from, type);
        return;
    }
    int known = !strcmp(type, "get") || !strcmp(type, "register") ||
                !strcmp(type, "password") || !strcmp(type, "remove");
    if (!known) {
        log_warn("sm: event=protocol-error element=authreg from=%s reason=unknown-type", from);
        authreg_error(req, "bad-request");
        return;
    }

    jid_t j;
    if (!user || jid_parse(user, &j) != JID_OK) {
        authreg_error(req, "not-allowed");
        return;
    }
    if (!j.node || j.resource || !sm_is_local(j.domain)) {
        log_warn("sm: event=authreg-refused type=%s user=%s c2s=%s reason=not-our-user", type,
                 j.full, from);
        jid_clear(&j);
        authreg_error(req, "not-allowed");
        return;
    }
    if (!strcmp(type, "get"))
        authreg_get(req, j.bare);
    else if (!strcmp(type, "register"))
        authreg_register(req, j.bare, from);
    else if (!strcmp(type, "password"))
        authreg_password(req, j.bare, from);
    else
        authreg_remove(req, j.bare, from);
    jid_clear(&j);
}
