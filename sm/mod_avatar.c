/* mod_avatar: XEP-0084 user avatars (PEP) and vcard-temp avatars kept in
 * step (XEP-0398), and the avatar's hash in the user's presence (XEP-0153).
 *
 * - A client publishes urn:xmpp:avatar:metadata (mod_pep's observer): the
 *   image it names (the item of urn:xmpp:avatar:data with that id) becomes
 *   the vCard's PHOTO (TYPE, BINVAL); an empty <metadata/> (avatar removed)
 *   removes the PHOTO.
 * - A client sets its vCard (seen in its outgoing iq, before mod_vcard
 *   stores it): a PHOTO is published as XEP-0084 data (id = sha-1 of the
 *   image) and metadata on open nodes; no PHOTO publishes an empty
 *   <metadata/>.
 * - Presence: every available presence a session sends, broadcast or
 *   directed (a MUC join: XEP-0398 asks for it there too, and clients that
 *   see urn:xmpp:pep-vcard-conversion:0, Gajim, leave the hash to the
 *   server), carries
 *   <x xmlns='vcard-temp:x:update'><photo>sha-1</photo></x> with the
 *   current avatar's hash, replacing what the client put there: the server
 *   knows which avatar is current. With no avatar, a client's <x/> gets an
 *   empty <photo/>, and a presence without one is left alone. The hash is
 *   read from the stored vCard when the user is loaded (the user is held
 *   until it is there). This module runs before mod_presence (sm/meson.build)
 *   so the broadcast carries it. A changed avatar shows in the client's next
 *   presence.
 *
 * Storage: mod_vcard's documented record (collection "vcard", key ""),
 * read and written with the asynchronous API while the user is held; the
 * PEP nodes through mod_pep.h. Per-user state: the current hash. */
#include "base64.h"
#include "mod_pep.h"
#include "module.h"
#include "log.h"
#include "xml_stream.h"
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_META "urn:xmpp:avatar:metadata"
#define NS_DATA_AV "urn:xmpp:avatar:data"
#define NS_VCARD "vcard-temp"
#define NS_UPDATE "vcard-temp:x:update"
#define COLL_VCARD "vcard"
#define VCARD_PARSE_MAX (4u * 1024u * 1024u)

extern sm_module_t sm_module_avatar;

typedef struct avatar_user {
    char *hash;                /* hex sha-1 of the current image, "" for none, NULL until known */
} avatar_user_t;

static avatar_user_t *state(sm_user_t *u)
{
    avatar_user_t *a = sm_user_state(u, &sm_module_avatar);
    if (!a) {
        a = xcalloc(1, sizeof *a);
        sm_user_state_set(u, &sm_module_avatar, a);
    }
    return a;
}

static void set_hash(sm_user_t *u, const char *hash)
{
    avatar_user_t *a = state(u);
    free(a->hash);
    a->hash = xstrdup(hash);
}

static void user_state_free(sm_user_t *u, void *st)
{
    (void)u;
    avatar_user_t *a = st;
    free(a->hash);
    free(a);
}

static char *sha1_hex(const char *data, size_t len)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)data, len, md);
    char *hex = xcalloc(1, 2 * SHA_DIGEST_LENGTH + 1);
    for (size_t i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

/* Base64 text without its whitespace (vCards wrap BINVAL lines). */
static char *squeeze(const char *t)
{
    char *o = xcalloc(1, strlen(t) + 1), *w = o;
    for (; *t; t++)
        if (*t != ' ' && *t != '\n' && *t != '\r' && *t != '\t')
            *w++ = *t;
    return o;
}

/* The PHOTO of a vCard: its hash (caller frees), and optionally the
 * squeezed base64 and the type. NULL when there is none or it is unreadable. */
static char *photo_of(const xml_node_t *vc, char **b64_out, char **type_out, size_t *bytes)
{
    xml_node_t *ph = vc ? xml_child(vc, NS_VCARD, "PHOTO") : NULL;
    xml_node_t *bv = ph ? xml_child(ph, NS_VCARD, "BINVAL") : NULL;
    if (!bv)
        return NULL;
    char *t = xml_text(bv), *b64 = squeeze(t);
    free(t);
    strbuf_t raw;
    strbuf_init(&raw);
    char *hash = NULL;
    if (*b64 && base64_decode(b64, strlen(b64), &raw) == 0 && raw.len) {
        hash = sha1_hex(raw.data, raw.len);
        if (bytes)
            *bytes = raw.len;
        if (type_out) {
            xml_node_t *ty = xml_child(ph, NS_VCARD, "TYPE");
            *type_out = ty ? xml_text(ty) : xstrdup("image/png");
        }
    }
    strbuf_free(&raw);
    if (hash && b64_out)
        *b64_out = b64;
    else
        free(b64);
    return hash;
}

static xml_node_t *vcard_parse(const char *val, size_t len)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = len + 1024 > VCARD_PARSE_MAX ? len + 1024 : VCARD_PARSE_MAX;
    lim.max_text = len + 1;
    char err[128];
    unsigned line = 0;
    xml_node_t *vc = xml_parse_document(val, len, &lim, err, sizeof err, &line);
    if (vc && (strcmp(vc->ns, NS_VCARD) || strcmp(vc->name, "vCard"))) {
        xml_free(vc);
        vc = NULL;
    }
    return vc;
}

/* --- the hash at load ------------------------------------------------------------------ */

static void got_vcard_hash(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    xml_node_t *vc = res->status == 0 ? vcard_parse(res->val, res->len) : NULL;
    char *h = photo_of(vc, NULL, NULL, NULL);
    if (res->status >= 0)
        set_hash(u, h ? h : "");
    free(h);
    xml_free(vc);
    sm_user_release(u);
}

static void on_user_load(sm_user_t *u)
{
    state(u);
    sm_user_hold(u);
    storage_get_async(sm_storage, u->bare, COLL_VCARD, "", got_vcard_hash, u);
}

/* --- XEP-0153 in presence ---------------------------------------------------------------- */

static sm_ret_t on_presence_out(sm_sess_t *s, xml_node_t *st)
{
    if (xml_attr_get(st, "type"))
        return SM_PASS;               /* only available presence, with or without 'to' */
    avatar_user_t *a = state(s->user);
    xml_node_t *x = xml_child(st, NS_UPDATE, "x");
    if (!a->hash || (!*a->hash && !x))
        return SM_PASS;               /* no avatar and the client said nothing */
    if (x) {
        xml_detach(x);
        xml_free(x);
    }
    x = xml_add_child(st, NS_UPDATE, "x");
    xml_node_t *ph = xml_add_child(x, NS_UPDATE, "photo");
    if (*a->hash)
        xml_add_text(ph, a->hash, strlen(a->hash));
    return SM_PASS;
}

/* --- XEP-0084 -> vCard ---------------------------------------------------------------------- */

typedef struct vc_edit {
    sm_user_t *u;
    char *b64, *type;          /* new PHOTO, or NULL to remove it */
} vc_edit_t;

static void vc_written(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    if (res->status < 0)
        log_warn("event=avatar-sync result=error user=%s what=vcard", u->bare);
    sm_user_release(u);
}

static void vc_got(storage_res_t *res, void *arg)
{
    vc_edit_t *e = arg;
    sm_user_t *u = e->u;
    xml_node_t *vc = res->status == 0 ? vcard_parse(res->val, res->len) : NULL;
    if (res->status < 0) {
        log_warn("event=avatar-sync result=error user=%s what=vcard-read", u->bare);
    } else {
        if (!vc)
            vc = xml_elem_new(NS_VCARD, "vCard");
        xml_node_t *old;
        while ((old = xml_child(vc, NS_VCARD, "PHOTO"))) {
            xml_detach(old);
            xml_free(old);
        }
        if (e->b64) {
            xml_node_t *ph = xml_add_child(vc, NS_VCARD, "PHOTO");
            xml_add_text(xml_add_child(ph, NS_VCARD, "TYPE"), e->type, strlen(e->type));
            xml_add_text(xml_add_child(ph, NS_VCARD, "BINVAL"), e->b64, strlen(e->b64));
        }
        strbuf_t sb;
        strbuf_init(&sb);
        xml_serialize(vc, "", &sb);
        sm_user_hold(u);
        storage_put_async(sm_storage, u->bare, COLL_VCARD, "", sb.data, sb.len, vc_written, u);
        strbuf_free(&sb);
    }
    xml_free(vc);
    free(e->b64);
    free(e->type);
    free(e);
    sm_user_release(u);
}

static void vcard_set_photo(sm_user_t *u, const char *b64, const char *type)
{
    vc_edit_t *e = xcalloc(1, sizeof *e);
    e->u = u;
    e->b64 = b64 ? xstrdup(b64) : NULL;
    e->type = type ? xstrdup(type) : NULL;
    sm_user_hold(u);
    storage_get_async(sm_storage, u->bare, COLL_VCARD, "", vc_got, e);
}

static void on_metadata(sm_user_t *u, const char *node, const char *id, const xml_node_t *item)
{
    (void)node;
    (void)id;
    xml_node_t *md = item ? xml_child(item, NS_META, "metadata") : NULL;
    if (!md)
        return;                        /* a retraction: nothing to follow */
    xml_node_t *info = xml_child(md, NS_META, "info");
    const char *hid = info ? xml_attr_get(info, "id") : NULL;
    if (!hid) {                        /* avatar disabled */
        set_hash(u, "");
        vcard_set_photo(u, NULL, NULL);
        return;
    }
    const xml_node_t *di = pep_get(u, NS_DATA_AV, hid);
    xml_node_t *data = di ? xml_child(di, NS_DATA_AV, "data") : NULL;
    if (!data) {
        /* Published elsewhere (an url) or data not there: the vCard keeps
         * what it had; the hash is what the metadata names. */
        log_info("event=avatar-sync result=no-data user=%s id=%s", u->bare, hid);
        set_hash(u, hid);
        return;
    }
    char *t = xml_text(data), *b64 = squeeze(t);
    free(t);
    const char *type = xml_attr_get(info, "type");
    vcard_set_photo(u, b64, type ? type : "image/png");
    set_hash(u, hid);
    free(b64);
}

/* --- vCard -> XEP-0084 ---------------------------------------------------------------------- */

static sm_ret_t on_iq_out(sm_sess_t *s, xml_node_t *iq)
{
    const char *to = xml_attr_get(iq, "to");
    xml_node_t *vc = xml_child(iq, NS_VCARD, "vCard");
    if (!vc || !sm_streq(xml_attr_get(iq, "type"), "set") || (to && strcmp(to, s->user->bare)))
        return SM_PASS;
    sm_user_t *u = s->user;
    char *b64 = NULL, *type = NULL;
    size_t bytes = 0;
    char *hash = photo_of(vc, &b64, &type, &bytes);
    if (!hash) {
        xml_node_t *md = xml_elem_new(NS_META, "metadata");
        pep_put(u, NS_META, "current", md, PN_OPEN, 1);
        xml_free(md);
        set_hash(u, "");
        return SM_PASS;
    }
    xml_node_t *d = xml_elem_new(NS_DATA_AV, "data");
    xml_add_text(d, b64, strlen(b64));
    int r = pep_put(u, NS_DATA_AV, hash, d, PN_OPEN, 1);
    xml_free(d);
    if (r == 0) {
        xml_node_t *md = xml_elem_new(NS_META, "metadata");
        xml_node_t *info = xml_add_child(md, NS_META, "info");
        char num[32];
        snprintf(num, sizeof num, "%zu", bytes);
        xml_attr_set(info, "id", hash);
        xml_attr_set(info, "bytes", num);
        xml_attr_set(info, "type", type);
        pep_put(u, NS_META, hash, md, PN_OPEN, 1);
        xml_free(md);
    }
    set_hash(u, hash);
    log_debug("event=avatar-sync user=%s from=vcard hash=%s published=%d", u->bare, hash, r == 0);
    free(hash);
    free(b64);
    free(type);
    return SM_PASS;
}

static int avatar_init(void)
{
    pep_observe(NS_META, on_metadata);
    return 0;
}

static const sm_hooks_t avatar_hooks = {
    .user_load = on_user_load,
    .presence_out = on_presence_out,
    .iq_out = on_iq_out,
};

static const char *const avatar_account_features[] = {"urn:xmpp:pep-vcard-conversion:0", NULL};

sm_module_t sm_module_avatar = {
    .name = "avatar",
    .help = "Avatars: XEP-0084 (PEP) and vcard-temp kept in step (XEP-0398), the hash in presence (XEP-0153).",
    .init = avatar_init,
    .hooks = &avatar_hooks,
    .account_features = avatar_account_features,
    .user_state_free = user_state_free,
};
