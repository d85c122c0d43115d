/* mod_vcard: vcard-temp (XEP-0054) for local accounts.
 *
 * - get, from anyone, to an account's bare JID (or with no 'to' / to the
 *   sender's own bare JID: the sender's own vCard): the stored <vCard/>, or an
 *   empty <vCard xmlns='vcard-temp'/> when the user never published one (what
 *   clients expect; XEP-0054 allows either that or item-not-found).
 * - set, only by a session of the account itself: replaces the stored vCard;
 *   an empty <vCard/> deletes it. Larger than VCARD_MAX bytes serialized:
 *   not-acceptable. A set to another account: forbidden.
 * - vcard-temp is advertised on the domain and on accounts.
 *
 * Storage: collection "vcard", key "" of the owner: the <vCard/> element
 * serialized with its namespace declared. The write is committed before the
 * result leaves. SM_HOOK_USER_DELETE removes it. No per-user state. */
#include "sm.h"
#include "log.h"
#include "xml_stream.h"
#include <stdlib.h>
#include <string.h>

#define NS_VCARD "vcard-temp"
#define COLL_VCARD "vcard"
#define VCARD_MAX (64u * 1024u)   /* bytes of one serialized vCard */

static void vcard_get(const char *owner, sm_sess_t *s, xml_node_t *iq)
{
    char *val = NULL;
    size_t len = 0;
    int r = storage_get(sm_storage, owner, COLL_VCARD, "", &val, &len);
    if (r < 0) {
        sm_reply_error(iq, "internal-server-error", "wait");
        return;
    }
    xml_node_t *vc = NULL;
    if (r == 0) {
        xml_limits_t lim;
        xml_limits_default(&lim);
        lim.max_stanza_bytes = VCARD_MAX * 2;
        char err[128];
        unsigned line = 0;
        vc = xml_parse_document(val, len, &lim, err, sizeof err, &line);
        if (!vc || strcmp(vc->ns, NS_VCARD) || strcmp(vc->name, "vCard")) {
            log_warn("event=vcard-load result=bad-record user=%s error=\"%s\"", owner, vc ? "not a vCard" : err);
            xml_free(vc);
            vc = NULL;
        }
        free(val);
    }
    if (!vc)
        vc = xml_elem_new(NS_VCARD, "vCard");
    xml_node_t *res = sm_iq_result(iq);
    xml_append(res, vc);
    sm_answer(s, res);
}

static void vcard_set(sm_user_t *u, sm_sess_t *s, xml_node_t *iq, xml_node_t *vc)
{
    int r;
    if (!xml_child(vc, NULL, NULL)) {
        r = storage_del(sm_storage, u->bare, COLL_VCARD, "");
    } else {
        strbuf_t sb;
        strbuf_init(&sb);
        xml_serialize(vc, "", &sb);
        if (sb.len > VCARD_MAX) {
            strbuf_free(&sb);
            log_info("event=vcard-set result=too-large user=%s", u->bare);
            sm_reply_error(iq, "not-acceptable", "modify");
            return;
        }
        r = storage_put(sm_storage, u->bare, COLL_VCARD, "", sb.data, sb.len);
        strbuf_free(&sb);
    }
    if (r < 0) {
        sm_reply_error(iq, "internal-server-error", "wait");
        return;
    }
    sm_answer(s, sm_iq_result(iq));
}

/* own: the sender is the account u itself. */
static void vcard_iq(sm_user_t *u, sm_sess_t *s, xml_node_t *iq, xml_node_t *vc, int own)
{
    const char *type = xml_attr_get(iq, "type");
    if (sm_streq(type, "get"))
        vcard_get(u->bare, s, iq);
    else if (sm_streq(type, "set") && own)
        vcard_set(u, s, iq, vc);
    else if (sm_streq(type, "set"))
        sm_reply_error(iq, "forbidden", "auth");
}

static sm_ret_t on_out(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)arg;
    xml_node_t *vc;
    if (strcmp(st->name, "iq") || !(vc = xml_child(st, NS_VCARD, "vCard")))
        return SM_PASS;
    const char *to = xml_attr_get(st, "to");
    if (to && strcmp(to, u->bare))
        return SM_PASS;
    vcard_iq(u, s, st, vc, 1);
    return SM_HANDLED;
}

static sm_ret_t on_in_bare(sm_hook_t hook, sm_user_t *u, sm_sess_t *s, xml_node_t *st, void *arg)
{
    (void)hook;
    (void)arg;
    xml_node_t *vc;
    if (strcmp(st->name, "iq") || !(vc = xml_child(st, NS_VCARD, "vCard")))
        return SM_PASS;
    const char *from = xml_attr_get(st, "from");
    char *fb = from ? jid_bare_of(from) : NULL;
    int own = fb && !strcmp(fb, u->bare);
    free(fb);
    vcard_iq(u, s, st, vc, own);
    return SM_HANDLED;
}

void mod_vcard_init(void)
{
    sm_hook_add(SM_HOOK_OUT, on_out, NULL);
    sm_hook_add(SM_HOOK_IN_BARE, on_in_bare, NULL);
    sm_hook_add(SM_HOOK_DISCO_FEATURES, sm_feature_handler, (void *)NS_VCARD);
    sm_hook_add(SM_HOOK_ACCOUNT_FEATURES, sm_feature_handler, (void *)NS_VCARD);
    sm_hook_add(SM_HOOK_USER_DELETE, sm_delete_collection_handler, (void *)COLL_VCARD);
}
