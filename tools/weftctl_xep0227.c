/* weftctl_xep0227: `weftctl import FILE` and `weftctl export [FILE]`, user
 * data in the XEP-0227 format (Portable Import/Export Format), the format
 * prosody-migrator and ejabberd's export_piefxis write.
 *
 * The records are written and read in exactly the formats the sm modules
 * keep (docs/weftctl.md lists them):
 *   account       keys: scram_keys_format() texts, SCRAM-SHA-256 and -1
 *   "roster"      key contact → <item name subscription ask [approved]
 *                 [pending-in] [in-roster]><group/>…</item> (no namespace)
 *   "roster-pending" key contact → the <presence type='subscribe'/> received
 *   "vcard"       key "" → <vCard xmlns='vcard-temp'/> (mod_vcard)
 *   "private"     key namespace → its elements serialized one after the other
 *   "offline"     appended → <message xmlns='jabber:client'/> (mod_offline)
 *   "blocklist"   key prepared JID → empty value (mod_blocking)
 *   "pep-node", "pep-item"  PEP nodes and their items (mod_pep): weftctl_pie_pep.c
 *   "mam" (tagged)       the message archive (mod_mam): weftctl_pie_mam.c
 *
 * <xi:include href/> of a relative file is followed where a <host/> or a
 * <user/> may stand (ejabberd writes one file per host and per user).
 * ejabberd 23.01 double-base64s scram-credentials: recognised and undone.
 * Import runs in one transaction: any error (named with file, line, user
 * and element) rolls everything back. Existing accounts are never merged
 * into: an account already present is an error. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base64.h"
#include "jid.h"
#include "log.h"
#include "sasl.h"
#include "weftctl.h"
#include "weftctl_pie.h"
#include "xml.h"
#include "xml_stream.h"

#define NS_ROSTER "jabber:iq:roster"
#define NS_PRIVATE "jabber:iq:private"
#define NS_VCARD "vcard-temp"
#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_XINCLUDE "http://www.w3.org/2001/XInclude"
#define NS_PUBSUB_ANY "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_OWNER_ANY "http://jabber.org/protocol/pubsub#owner"

/* The sm modules' limits: a record they would refuse is refused here. */
#define VCARD_MAX (64u * 1024u)      /* mod_vcard VCARD_MAX */
#define PRIVATE_MAX (256u * 1024u)   /* mod_private PRIVATE_MAX */
#define PRIVATE_MAX_NS 128           /* mod_private PRIVATE_MAX_NS */
#define INPUT_MAX (1024u * 1024u * 1024u)

static void say(const imp_t *im, const xml_node_t *el, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void say(const imp_t *im, const xml_node_t *el, const char *fmt, va_list ap)
{
    fprintf(stderr, "weftctl: %s:%u: ", im->file, el ? el->line : 0);
    if (im->user)
        fprintf(stderr, "user %s: ", im->user);
    if (el && el->name)
        fprintf(stderr, "<%s xmlns='%s'>: ", el->name, el->ns ? el->ns : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int pie_bad(const imp_t *im, const xml_node_t *el, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(im, el, fmt, ap);
    va_end(ap);
    return -1;
}

void pie_note(const imp_t *im, const xml_node_t *el, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(im, el, fmt, ap);
    va_end(ap);
}

int pie_ns_is(const xml_node_t *el, const char *ns, const char *name)
{
    return el->name && !strcmp(el->ns ? el->ns : "", ns) && !strcmp(el->name, name);
}

int pie_count_elems(const xml_node_t *el)
{
    int k = 0;
    for (xml_node_t *c = xml_child(el, NULL, NULL); c; c = xml_next(c, NULL, NULL))
        k++;
    return k;
}

/* Text content without surrounding white space; caller frees. */
static char *trimmed_text(const xml_node_t *el)
{
    char *t = xml_text(el);
    char *s = t;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    char *out = xstrndup(s, n);
    free(t);
    return out;
}

xml_node_t *pie_parse(const char *val, size_t len, char *err, size_t errlen, unsigned *line)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = len + 16 > lim.max_stanza_bytes ? len + 16 : lim.max_stanza_bytes;
    lim.max_text = lim.max_stanza_bytes;
    lim.max_depth = 256;
    lim.max_attrs = 256;
    return xml_parse_document(val, len, &lim, err, errlen, line);
}

/* ------------------------------------------------------------ import: accounts */

/* 1 when b64 decodes to text that is itself the base64 of hash_len bytes
 * (and so not a key of hash_len bytes itself). */
static int double_base64(const char *b64, size_t hash_len)
{
    strbuf_t once, twice;
    strbuf_init(&once);
    strbuf_init(&twice);
    int r = base64_decode(b64, strlen(b64), &once) == 0 && once.len != hash_len &&
            base64_decode(once.data ? once.data : "", once.len, &twice) == 0 && twice.len == hash_len;
    strbuf_free(&once);
    strbuf_free(&twice);
    return r;
}

/* <scram-credentials mechanism='SCRAM-SHA-1|SCRAM-SHA-256'> into its key text. */
static int scram_from_pie(const imp_t *im, const xml_node_t *el, strbuf_t *sha256, strbuf_t *sha1)
{
    const char *mech = xml_attr_get(el, "mechanism");
    strbuf_t *out;
    const char *hash;
    if (mech && !strcmp(mech, "SCRAM-SHA-1"))
        out = sha1, hash = "SHA-1";
    else if (mech && !strcmp(mech, "SCRAM-SHA-256"))
        out = sha256, hash = "SHA-256";
    else
        return pie_bad(im, el, "mechanism '%s' is not SCRAM-SHA-1 or SCRAM-SHA-256", mech ? mech : "");
    const char *names[] = {"iter-count", "salt", "stored-key", "server-key"};
    char *f[4] = {0};
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        xml_node_t *c = xml_child(el, NS_PIE_SCRAM, names[i]);
        if (!c) {
            rc = pie_bad(im, el, "no <%s>", names[i]);
            break;
        }
        f[i] = trimmed_text(c);
    }
    if (rc == 0 && double_base64(f[2], strcmp(hash, "SHA-1") ? 32 : 20)) {
        /* ejabberd (23.01 and before) writes the base64 texts it stores,
         * base64-encoded again: salt and keys are one decoding deeper. */
        for (int i = 1; i < 4; i++) {
            strbuf_t d;
            strbuf_init(&d);
            if (base64_decode(f[i], strlen(f[i]), &d) == 0 && d.len) {
                free(f[i]);
                f[i] = xstrndup(d.data, d.len);
            }
            strbuf_free(&d);
        }
    }
    if (rc == 0) {
        strbuf_reset(out);
        strbuf_printf(out, "%s:%s:%s:%s:%s", hash, f[0], f[1], f[2], f[3]);
        scram_keys_t k;
        if (scram_keys_parse(out->data, &k) < 0) {
            rc = pie_bad(im, el, "unusable keys (iteration count, or base64 of the salt or of "
                             "a key of the wrong length)");
            OPENSSL_cleanse(out->data, out->cap);
            strbuf_reset(out);
        }
        OPENSSL_cleanse(&k, sizeof k);
    }
    for (int i = 0; i < 4; i++)
        free(f[i]);
    return rc;
}

/* The account: keys from scram-credentials; a plaintext password attribute
 * gives both SCRAM-SHA-256 and SCRAM-SHA-1 keys (and wins over stored keys). */
static int import_account(imp_t *im, const xml_node_t *user)
{
    strbuf_t k256, k1;
    strbuf_init(&k256);
    strbuf_init(&k1);
    int rc = 0;
    const char *pw = xml_attr_get(user, "password");
    for (xml_node_t *c = xml_child(user, NS_PIE_SCRAM, "scram-credentials"); c && rc == 0;
         c = xml_next(c, NS_PIE_SCRAM, "scram-credentials"))
        rc = scram_from_pie(im, c, &k256, &k1);
    if (rc == 0 && pw && *pw) {
        strbuf_reset(&k256);
        strbuf_reset(&k1);
        if (weftctl_make_keys(pw, &k256, &k1) < 0)
            rc = pie_bad(im, user, "the password attribute cannot be used (above)");
    }
    if (rc == 0 && !k256.len && !k1.len)
        rc = pie_bad(im, user, "no password attribute and no <scram-credentials>: nobody could log in");
    if (rc == 0) {
        int r = storage_user_exists(im->st, im->user);
        if (r == 1)
            rc = pie_bad(im, user, "the account already exists here (import never merges)");
        else if (r < 0 || storage_user_create(im->st, im->user, k256.len ? k256.data : NULL,
                                              k1.len ? k1.data : NULL) != 0)
            rc = pie_bad(im, user, "cannot create the account (storage error)");
    }
    if (k256.data)
        OPENSSL_cleanse(k256.data, k256.cap);
    if (k1.data)
        OPENSSL_cleanse(k1.data, k1.cap);
    strbuf_free(&k256);
    strbuf_free(&k1);
    if (rc == 0)
        im->n.users++;
    return rc;
}

/* ------------------------------------------------------------ import: roster */

/* A contact JID prepared to its bare form into *out (malloc'd). */
static int contact_jid(const imp_t *im, const xml_node_t *el, const char *s, char **out)
{
    jid_t j;
    jid_err_t e = s ? jid_parse(s, &j) : JID_OK;
    if (!s)
        return pie_bad(im, el, "no 'jid'/'from' attribute");
    if (e != JID_OK)
        return pie_bad(im, el, "'%s' is not a JID: %s", s, jid_strerror(e));
    *out = xstrdup(j.bare);
    jid_clear(&j);
    return 0;
}

static int put_xml(imp_t *im, const xml_node_t *el, const char *coll, const char *key,
                   const xml_node_t *x, const char *default_ns)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(x, default_ns, &sb);
    int r = storage_put(im->st, im->user, coll, key, sb.data, sb.len);
    strbuf_free(&sb);
    return r == 0 ? 0 : pie_bad(im, el, "storage error writing %s", coll);
}

typedef struct pending {
    char *jid;
    const xml_node_t *presence;
    int in_roster;
} pending_t;

/* Incoming subscription requests (<presence type='subscribe'/> children of
 * <user>) and roster items: mod_roster keeps both in "roster" records. */
static int import_roster(imp_t *im, const xml_node_t *user)
{
    size_t np = 0;
    for (xml_node_t *p = xml_child(user, NS_CLIENT, "presence"); p; p = xml_next(p, NS_CLIENT, "presence"))
        np++;
    pending_t *pend = np ? xcalloc(np, sizeof *pend) : NULL;
    int rc = 0;
    size_t i = 0;
    for (xml_node_t *p = xml_child(user, NS_CLIENT, "presence"); p && rc == 0;
         p = xml_next(p, NS_CLIENT, "presence")) {
        const char *type = xml_attr_get(p, "type");
        if (!type || strcmp(type, "subscribe") != 0) {
            rc = pie_bad(im, p, "only type='subscribe' (a pending subscription request) belongs here");
            break;
        }
        rc = contact_jid(im, p, xml_attr_get(p, "from"), &pend[i].jid);
        pend[i++].presence = p;
    }
    np = i;

    xml_node_t *q = xml_child(user, NS_ROSTER, "query");
    if (q && xml_next(q, NS_ROSTER, "query"))
        rc = rc ? rc : pie_bad(im, xml_next(q, NS_ROSTER, "query"), "a second roster");
    for (xml_node_t *it = q ? xml_child(q, NULL, NULL) : NULL; it && rc == 0; it = xml_next(it, NULL, NULL)) {
        if (!pie_ns_is(it, NS_ROSTER, "item")) {
            rc = pie_bad(im, it, "not a roster <item/>");
            break;
        }
        char *jid = NULL;
        if ((rc = contact_jid(im, it, xml_attr_get(it, "jid"), &jid)) < 0)
            break;
        const char *sub = xml_attr_get(it, "subscription");
        const char *ask = xml_attr_get(it, "ask");
        const char *name = xml_attr_get(it, "name");
        if (!sub)
            sub = "none";
        if (strcmp(sub, "none") && strcmp(sub, "to") && strcmp(sub, "from") && strcmp(sub, "both"))
            rc = pie_bad(im, it, "contact %s: subscription '%s' is not none, to, from or both", jid, sub);
        else if (ask && strcmp(ask, "subscribe"))
            rc = pie_bad(im, it, "contact %s: ask '%s' is not 'subscribe'", jid, ask);
        else if (storage_get(im->st, im->user, "roster", jid, NULL, NULL) == 0)
            rc = pie_bad(im, it, "contact %s is listed twice", jid);
        if (rc == 0) {
            xml_node_t *x = xml_elem_new(NULL, "item");
            if (name)
                xml_attr_set(x, "name", name);
            xml_attr_set(x, "subscription", sub);
            if (ask)
                xml_attr_set(x, "ask", "subscribe");
            for (size_t k = 0; k < np; k++) {
                if (!strcmp(pend[k].jid, jid)) {
                    xml_attr_set(x, "pending-in", "true");
                    pend[k].in_roster = 1;
                }
            }
            for (xml_node_t *g = xml_child(it, NS_ROSTER, "group"); g; g = xml_next(g, NS_ROSTER, "group")) {
                char *gt = xml_text(g);
                xml_node_t *xg = xml_add_child(x, NULL, "group");
                xml_add_text(xg, gt, strlen(gt));
                free(gt);
            }
            rc = put_xml(im, it, "roster", jid, x, "");
            xml_free(x);
            im->n.roster++;
        }
        free(jid);
    }
    /* Requests from contacts not in the roster: a hidden item holds them. */
    for (size_t k = 0; k < np && rc == 0; k++) {
        if (!pend[k].in_roster) {
            xml_node_t *x = xml_elem_new(NULL, "item");
            xml_attr_set(x, "subscription", "none");
            xml_attr_set(x, "pending-in", "true");
            xml_attr_set(x, "in-roster", "false");
            rc = put_xml(im, pend[k].presence, "roster", pend[k].jid, x, "");
            xml_free(x);
        }
        if (rc == 0) {
            xml_node_t *p = xml_copy(pend[k].presence);
            xml_attr_set(p, "from", pend[k].jid);
            xml_attr_set(p, "to", im->user);
            rc = put_xml(im, pend[k].presence, "roster-pending", pend[k].jid, p, "");
            xml_free(p);
            im->n.pending++;
        }
    }
    for (size_t k = 0; k < np; k++)
        free(pend[k].jid);
    free(pend);
    return rc;
}

/* ------------------------------------------------------------ import: the rest */

static int import_vcard(imp_t *im, const xml_node_t *vc)
{
    if (!xml_child(vc, NULL, NULL))
        return 0;   /* an empty vCard is none (mod_vcard deletes on it) */
    if (storage_get(im->st, im->user, "vcard", "", NULL, NULL) == 0)
        return pie_bad(im, vc, "a second vCard");
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(vc, "", &sb);
    int rc;
    if (sb.len > VCARD_MAX)
        rc = pie_bad(im, vc, "%zu bytes, over the %u the server keeps for a vCard", sb.len, VCARD_MAX);
    else if (storage_put(im->st, im->user, "vcard", "", sb.data, sb.len) != 0)
        rc = pie_bad(im, vc, "storage error");
    else
        rc = 0, im->n.vcards++;
    strbuf_free(&sb);
    return rc;
}

/* Private XML: one record per namespace, its elements concatenated. */
static int import_private(imp_t *im, const xml_node_t *q)
{
    int rc = 0;
    for (xml_node_t *c = xml_child(q, NULL, NULL); c && rc == 0; c = xml_next(c, NULL, NULL)) {
        if (!c->ns || !*c->ns || !strcmp(c->ns, NS_PRIVATE) || !strcmp(c->ns, NS_CLIENT)) {
            rc = pie_bad(im, c, "private XML needs a namespace of its own");
            break;
        }
        /* Earlier siblings of the same namespace were stored with the first. */
        int seen = 0;
        for (xml_node_t *p = xml_child(q, NULL, NULL); p != c; p = xml_next(p, NULL, NULL))
            seen |= !strcmp(p->ns, c->ns);
        if (seen)
            continue;
        strbuf_t sb;
        strbuf_init(&sb);
        for (xml_node_t *s = c; s; s = xml_next(s, NULL, NULL))
            if (!strcmp(s->ns, c->ns))
                xml_serialize(s, "", &sb);
        if (sb.len > PRIVATE_MAX)
            rc = pie_bad(im, c, "%zu bytes, over the %u the server keeps for a namespace", sb.len, PRIVATE_MAX);
        else if (storage_get(im->st, im->user, "private", c->ns, NULL, NULL) == 0)
            rc = pie_bad(im, c, "namespace %s given twice", c->ns);
        else if (storage_count(im->st, im->user, "private") >= PRIVATE_MAX_NS)
            rc = pie_bad(im, c, "over %d namespaces", PRIVATE_MAX_NS);
        else if (storage_put(im->st, im->user, "private", c->ns, sb.data, sb.len) != 0)
            rc = pie_bad(im, c, "storage error");
        else
            im->n.privates++;
        strbuf_free(&sb);
    }
    return rc;
}

static int import_offline(imp_t *im, const xml_node_t *box)
{
    int rc = 0;
    for (xml_node_t *m = xml_child(box, NULL, NULL); m && rc == 0; m = xml_next(m, NULL, NULL)) {
        if (!pie_ns_is(m, NS_CLIENT, "message")) {
            rc = pie_bad(im, m, "offline messages are <message xmlns='jabber:client'/>");
            break;
        }
        strbuf_t sb;
        strbuf_init(&sb);
        xml_serialize(m, NULL, &sb);   /* declares its namespace, as mod_offline */
        if (storage_append(im->st, im->user, "offline", sb.data, sb.len, NULL) != 0)
            rc = pie_bad(im, m, "storage error");
        else
            im->n.offline++;
        strbuf_free(&sb);
    }
    return rc;
}

static int import_blocklist(imp_t *im, const xml_node_t *bl)
{
    int rc = 0;
    for (xml_node_t *it = xml_child(bl, NULL, NULL); it && rc == 0; it = xml_next(it, NULL, NULL)) {
        const char *s = pie_ns_is(it, NS_BLOCKING, "item") ? xml_attr_get(it, "jid") : NULL;
        jid_t j;
        jid_err_t e = s ? jid_parse(s, &j) : JID_OK;
        if (!s)
            rc = pie_bad(im, it, "a blocklist holds <item jid='...'/>");
        else if (e != JID_OK)
            rc = pie_bad(im, it, "'%s' is not a JID: %s", s, jid_strerror(e));
        else {
            if (storage_put(im->st, im->user, "blocklist", j.full, "", 0) != 0)
                rc = pie_bad(im, it, "storage error");
            else
                im->n.blocked++;
            jid_clear(&j);
        }
    }
    return rc;
}

static int import_user(imp_t *im, const xml_node_t *user)
{
    if (import_account(im, user) < 0 || import_roster(im, user) < 0 || pie_import_pep(im, user) < 0)
        return -1;
    xml_node_t *arch = xml_child(user, NS_PIE_MAM, "archive");
    if (arch && xml_next(arch, NS_PIE_MAM, "archive"))
        return pie_bad(im, xml_next(arch, NS_PIE_MAM, "archive"), "a second archive");
    for (xml_node_t *c = xml_child(user, NULL, NULL); c; c = xml_next(c, NULL, NULL)) {
        int rc = 0;
        if (pie_ns_is(c, NS_VCARD, "vCard"))
            rc = import_vcard(im, c);
        else if (pie_ns_is(c, NS_PRIVATE, "query"))
            rc = import_private(im, c);
        else if (pie_ns_is(c, NS_PIE, "offline-messages"))
            rc = import_offline(im, c);
        else if (pie_ns_is(c, NS_BLOCKING, "blocklist"))
            rc = import_blocklist(im, c);
        else if (pie_ns_is(c, NS_PIE_MAM, "archive"))
            rc = pie_import_archive(im, c);
        else if (pie_ns_is(c, NS_PIE_SCRAM, "scram-credentials") || pie_ns_is(c, NS_ROSTER, "query") ||
                 pie_ns_is(c, NS_CLIENT, "presence") || pie_ns_is(c, NS_PUBSUB_ANY, "pubsub") ||
                 pie_ns_is(c, NS_PUBSUB_OWNER_ANY, "pubsub"))
            rc = 0;   /* done above */
        else {
            fprintf(stderr, "weftctl: %s:%u: user %s: <%s xmlns='%s'> skipped: weft keeps no such data\n",
                    im->file, c->line, im->user, c->name, c->ns ? c->ns : "");
            im->n.skipped++;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static char *read_file(const char *file, size_t *len);

/* <xi:include href='...'/> (ejabberd's export_piefxis splits hosts and users
 * into files that way): the document it names, relative to the including
 * file, parsed; NULL after saying why. *path gets the file's name. */
static xml_node_t *include_doc(imp_t *im, const xml_node_t *inc, char **path)
{
    const char *href = xml_attr_get(inc, "href");
    if (!href || !*href || strchr(href, ':')) {
        pie_bad(im, inc, "only a relative file href is followed");
        return NULL;
    }
    const char *slash = strrchr(im->file, '/');
    strbuf_t p;
    strbuf_init(&p);
    if (href[0] != '/' && slash)
        strbuf_append(&p, im->file, (size_t)(slash - im->file) + 1);
    strbuf_puts(&p, href);
    size_t len = 0;
    char *data = read_file(p.data, &len);
    xml_node_t *doc = NULL;
    if (data) {
        char err[256] = "";
        unsigned line = 0;
        doc = pie_parse(data, len, err, sizeof err, &line);
        if (!doc)
            pie_bad(im, inc, "%s:%u: not well-formed XML: %s", p.data, line, err);
        free(data);
    } else {
        pie_bad(im, inc, "cannot read %s", p.data);
    }
    *path = strbuf_steal(&p);
    return doc;
}

static int import_user_el(imp_t *im, const char *domain, const xml_node_t *u)
{
    if (pie_ns_is(u, NS_XINCLUDE, "include")) {
        char *path = NULL;
        xml_node_t *doc = include_doc(im, u, &path);
        const char *outer = im->file;
        int rc = -1;
        if (doc) {
            im->file = path;
            rc = import_user_el(im, domain, doc);
            im->file = outer;
        }
        xml_free(doc);
        free(path);
        return rc;
    }
    const char *name = pie_ns_is(u, NS_PIE, "user") ? xml_attr_get(u, "name") : NULL;
    if (!name)
        return pie_bad(im, u, "host %s: only <user name='...'/> elements belong here", domain);
    jid_t j;
    jid_err_t e = jid_build(name, domain, NULL, &j);
    if (e != JID_OK)
        return pie_bad(im, u, "user '%s@%s' is not a JID: %s", name, domain, jid_strerror(e));
    im->user = j.bare;
    int rc = import_user(im, u);
    im->user = NULL;
    jid_clear(&j);
    return rc;
}

static int import_host(imp_t *im, const xml_node_t *h)
{
    if (pie_ns_is(h, NS_XINCLUDE, "include")) {
        char *path = NULL;
        xml_node_t *doc = include_doc(im, h, &path);
        const char *outer = im->file;
        int rc = -1;
        if (doc) {
            im->file = path;
            rc = import_host(im, doc);
            im->file = outer;
        }
        xml_free(doc);
        free(path);
        return rc;
    }
    if (!pie_ns_is(h, NS_PIE, "host"))
        return pie_bad(im, h, "only <host/> elements belong in <server-data/>");
    const char *hj = xml_attr_get(h, "jid");
    char *domain = hj ? jid_prep_domain(hj) : NULL;
    if (!domain)
        return pie_bad(im, h, "host jid '%s' is not a domain", hj ? hj : "");
    int rc = 0;
    for (xml_node_t *u = xml_child(h, NULL, NULL); u && rc == 0; u = xml_next(u, NULL, NULL))
        rc = import_user_el(im, domain, u);
    free(domain);
    return rc;
}

static int import_doc(imp_t *im, const xml_node_t *root)
{
    if (!pie_ns_is(root, NS_PIE, "server-data"))
        return pie_bad(im, root, "the document is not <server-data xmlns='%s'>", NS_PIE);
    for (xml_node_t *h = xml_child(root, NULL, NULL); h; h = xml_next(h, NULL, NULL))
        if (import_host(im, h) < 0)
            return -1;
    return 0;
}

static char *read_file(const char *file, size_t *len)
{
    FILE *fp = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!fp) {
        fprintf(stderr, "weftctl: %s: %s\n", file, strerror(errno));
        return NULL;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0 && sb.len <= INPUT_MAX)
        strbuf_append(&sb, buf, n);
    int err = ferror(fp);
    if (fp != stdin)
        fclose(fp);
    if (err || sb.len > INPUT_MAX) {
        fprintf(stderr, "weftctl: %s: %s\n", file, err ? "read error" : "over 1 GiB");
        strbuf_free(&sb);
        return NULL;
    }
    *len = sb.len;
    return sb.data ? strbuf_steal(&sb) : xstrdup("");
}

/* Every file is parsed before the storage is touched; then all of them are
 * imported in one transaction (prosody-migrator writes one file per user). */
int weftctl_import(const char *url, char **files, int nfiles, int dry_run)
{
    xml_node_t **roots = xcalloc((size_t)nfiles, sizeof *roots);
    int rc = XIT_USAGE;
    storage_t *st = NULL;
    for (int i = 0; i < nfiles; i++) {
        size_t len = 0;
        char *data = read_file(files[i], &len);
        if (!data)
            goto out;
        char err[256] = "";
        unsigned line = 0;
        roots[i] = pie_parse(data, len, err, sizeof err, &line);
        free(data);
        if (!roots[i]) {
            fprintf(stderr, "weftctl: %s:%u: not well-formed XML: %s; nothing imported\n", files[i],
                    line, err);
            goto out;
        }
    }
    rc = XIT_STORAGE;
    st = weftctl_open_db(url, 1);
    if (!st || storage_begin(st) < 0)
        goto out;
    imp_t im = {.st = st};
    for (int i = 0; i < nfiles; i++) {
        im.file = files[i];
        if (import_doc(&im, roots[i]) < 0) {
            storage_rollback(st);
            fprintf(stderr, "weftctl: nothing imported\n");
            rc = XIT_EXISTS;
            goto out;
        }
    }
    if (dry_run) {
        storage_rollback(st);
    } else if (storage_commit(st) < 0) {
        storage_rollback(st);
        fprintf(stderr, "weftctl: the commit failed: nothing imported\n");
        goto out;
    }
    printf("%s users=%ld roster-items=%ld pending-subscriptions=%ld vcards=%ld "
           "private=%ld offline=%ld blocked=%ld pep-nodes=%ld pep-items=%ld pep-affiliations=%ld "
           "pep-subscriptions=%ld archived=%ld skipped=%ld\n",
           dry_run ? "would import (dry run, nothing written)" : "imported", im.n.users,
           im.n.roster, im.n.pending, im.n.vcards, im.n.privates, im.n.offline, im.n.blocked,
           im.n.pep_nodes, im.n.pep_items, im.n.pep_affs, im.n.pep_subs, im.n.archived, im.n.skipped);
    rc = fflush(stdout) == 0 ? XIT_OK : XIT_STORAGE;
out:
    if (st)
        storage_close(st);
    for (int i = 0; i < nfiles; i++)
        xml_free(roots[i]);
    free(roots);
    return rc;
}

/* ------------------------------------------------------------ export */

typedef struct names {
    char **v;
    size_t n, cap;
} names_t;

static int collect_name(const char *bare, void *arg)
{
    names_t *nm = arg;
    if (nm->n == nm->cap) {
        nm->cap = nm->cap ? nm->cap * 2 : 64;
        nm->v = xrealloc(nm->v, nm->cap * sizeof *nm->v);
    }
    nm->v[nm->n++] = xstrdup(bare);
    return 0;
}

/* Users grouped by domain, then by bare JID. */
static int by_domain(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    const char *dx = strchr(x, '@'), *dy = strchr(y, '@');
    int c = strcmp(dx ? dx + 1 : x, dy ? dy + 1 : y);
    return c ? c : strcmp(x, y);
}

static void add_scram(xml_node_t *user, const char *text)
{
    scram_keys_t k;
    if (!text || scram_keys_parse(text, &k) < 0)
        return;
    xml_node_t *s = xml_add_child(user, NS_PIE_SCRAM, "scram-credentials");
    xml_attr_set(s, "mechanism", k.hash == SCRAM_SHA1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256");
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%u", k.iterations);
    xml_add_text(xml_add_child(s, NS_PIE_SCRAM, "iter-count"), sb.data, sb.len);
    struct { const char *name; const unsigned char *p; size_t n; } f[3] = {
        {"salt", k.salt, k.salt_len},
        {"server-key", k.server_key, scram_hash_len(k.hash)},
        {"stored-key", k.stored_key, scram_hash_len(k.hash)},
    };
    for (int i = 0; i < 3; i++) {
        strbuf_reset(&sb);
        base64_encode(f[i].p, f[i].n, &sb);
        xml_add_text(xml_add_child(s, NS_PIE_SCRAM, f[i].name), sb.data, sb.len);
    }
    OPENSSL_cleanse(sb.data, sb.cap);
    strbuf_free(&sb);
    OPENSSL_cleanse(&k, sizeof k);
}

xml_node_t *pie_parse_record(exp_t *ex, const char *coll, const char *key, const char *val,
                             size_t len)
{
    char err[128] = "";
    unsigned line = 0;
    xml_node_t *x = pie_parse(val, len, err, sizeof err, &line);
    if (!x) {
        fprintf(stderr, "weftctl: user %s: %s record '%s' is not XML (%s): left out\n", ex->user,
                coll, key, err);
        ex->bad++;
    }
    return x;
}

static int export_roster_item(const char *key, const char *val, size_t len, void *arg)
{
    exp_t *ex = arg;
    xml_node_t *x = pie_parse_record(ex, "roster", key, val, len);
    if (!x)
        return 0;
    const char *in_roster = xml_attr_get(x, "in-roster");
    if (!in_roster || strcmp(in_roster, "false")) {
        xml_node_t *it = xml_add_child(ex->parent, NS_ROSTER, "item");
        xml_attr_set(it, "jid", key);
        const char *a[] = {"name", "subscription", "ask"};
        for (int i = 0; i < 3; i++)
            if (xml_attr_get(x, a[i]))
                xml_attr_set(it, a[i], xml_attr_get(x, a[i]));
        for (xml_node_t *g = xml_child(x, NULL, "group"); g; g = xml_next(g, NULL, "group")) {
            char *t = xml_text(g);
            xml_add_text(xml_add_child(it, NS_ROSTER, "group"), t, strlen(t));
            free(t);
        }
        ex->n.roster++;
    }
    xml_free(x);
    return 0;
}

static int export_pending(const char *key, const char *val, size_t len, void *arg)
{
    exp_t *ex = arg;
    xml_node_t *p = pie_parse_record(ex, "roster-pending", key, val, len);
    if (p) {
        xml_append(ex->parent, p);
        ex->n.pending++;
    }
    return 0;
}

static int export_private(const char *key, const char *val, size_t len, void *arg)
{
    exp_t *ex = arg;
    /* The namespace's elements one after the other: parsed inside a wrapper. */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<w>");
    strbuf_append(&sb, val, len);
    strbuf_puts(&sb, "</w>");
    xml_node_t *w = pie_parse_record(ex, "private", key, sb.data, sb.len);
    strbuf_free(&sb);
    if (!w)
        return 0;
    while (w->first_child) {
        xml_node_t *c = w->first_child;
        xml_detach(c);
        if (c->name)
            xml_append(ex->parent, c);
        else
            xml_free(c);
    }
    xml_free(w);
    ex->n.privates++;
    return 0;
}

static int export_offline(const char *key, const char *val, size_t len, void *arg)
{
    exp_t *ex = arg;
    xml_node_t *m = pie_parse_record(ex, "offline", key, val, len);
    if (m) {
        xml_append(ex->parent, m);
        ex->n.offline++;
    }
    return 0;
}

static int export_blocked(const char *key, const char *val, size_t len, void *arg)
{
    (void)val, (void)len;
    exp_t *ex = arg;
    xml_attr_set(xml_add_child(ex->parent, NS_BLOCKING, "item"), "jid", key);
    ex->n.blocked++;
    return 0;
}

/* One <user/> element with everything the account owns; NULL on a storage error. */
static xml_node_t *export_user(storage_t *st, exp_t *ex, const char *bare)
{
    const char *at = strchr(bare, '@');
    char *node = xstrndup(bare, at ? (size_t)(at - bare) : 0);
    xml_node_t *u = xml_elem_new(NS_PIE, "user");
    xml_attr_set(u, "name", node);
    free(node);
    char *k256 = NULL, *k1 = NULL;
    if (storage_user_get(st, bare, &k256, &k1) != 0)
        goto fail;
    add_scram(u, k1);
    add_scram(u, k256);
    if (k256)
        OPENSSL_cleanse(k256, strlen(k256));
    if (k1)
        OPENSSL_cleanse(k1, strlen(k1));
    free(k256);
    free(k1);
    ex->user = bare;

    ex->parent = xml_elem_new(NS_ROSTER, "query");
    if (storage_list(st, bare, "roster", export_roster_item, ex) < 0) {
        xml_free(ex->parent);
        goto fail;
    }
    xml_append(u, ex->parent);
    ex->parent = u;
    if (storage_list(st, bare, "roster-pending", export_pending, ex) < 0)
        goto fail;

    char *vc = NULL;
    size_t vl = 0;
    int r = storage_get(st, bare, "vcard", "", &vc, &vl);
    if (r < 0)
        goto fail;
    if (r == 0) {
        xml_node_t *x = pie_parse_record(ex, "vcard", "", vc, vl);
        if (x) {
            xml_append(u, x);
            ex->n.vcards++;
        }
        free(vc);
    }

    struct { const char *coll, *ns, *name; storage_rec_fn fn; } colls[] = {
        {"private", NS_PRIVATE, "query", export_private},
        {"offline", NS_PIE, "offline-messages", export_offline},
        {"blocklist", NS_BLOCKING, "blocklist", export_blocked},
    };
    for (size_t i = 0; i < sizeof colls / sizeof colls[0]; i++) {
        ex->parent = xml_elem_new(colls[i].ns, colls[i].name);
        if (storage_list(st, bare, colls[i].coll, colls[i].fn, ex) < 0) {
            xml_free(ex->parent);
            goto fail;
        }
        if (ex->parent->first_child)
            xml_append(u, ex->parent);
        else
            xml_free(ex->parent);
    }
    if (pie_export_pep(st, ex, bare, u) < 0)
        goto fail;
    ex->n.users++;
    return u;
fail:
    fprintf(stderr, "weftctl: user %s: storage error\n", bare);
    xml_free(u);
    return NULL;
}

int weftctl_export(const char *url, const char *file)
{
    storage_t *st = weftctl_open_db(url, 0);
    if (!st)
        return XIT_STORAGE;
    names_t nm = {0};
    int rc = XIT_STORAGE;
    FILE *out = stdout;
    strbuf_t tmp;
    strbuf_init(&tmp);
    if (storage_user_list(st, collect_name, &nm) != 0)
        goto out;
    qsort(nm.v, nm.n, sizeof *nm.v, by_domain);
    if (file && strcmp(file, "-")) {
        /* Keys are inside: the file is the owner's only, and appears whole. */
        strbuf_printf(&tmp, "%s.tmp", file);
        mode_t old = umask(077);
        out = fopen(tmp.data, "w");
        umask(old);
        if (!out) {
            fprintf(stderr, "weftctl: %s: %s\n", tmp.data, strerror(errno));
            goto out;
        }
    }
    exp_t ex = {0};
    fputs("<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='" NS_PIE "'>\n", out);
    const char *cur = NULL;
    strbuf_t sb;
    strbuf_init(&sb);
    int failed = 0;
    for (size_t i = 0; i < nm.n && !failed; i++) {
        const char *at = strchr(nm.v[i], '@');
        const char *dom = at ? at + 1 : nm.v[i];
        if (!at) {
            fprintf(stderr, "weftctl: account '%s' has no node: left out\n", nm.v[i]);
            continue;
        }
        if (!cur || strcmp(cur, dom)) {
            if (cur)
                fputs("</host>\n", out);
            strbuf_reset(&sb);
            xml_escape(&sb, dom, strlen(dom), 1);
            fprintf(out, "<host jid='%s'>\n", sb.data);
            cur = dom;
        }
        xml_node_t *u = export_user(st, &ex, nm.v[i]);
        if (!u) {
            failed = 1;
            break;
        }
        strbuf_reset(&sb);
        xml_serialize(u, NS_PIE, &sb);
        xml_free(u);
        /* The archive streams in before </user>: reopen the element. */
        if (sb.len >= 2 && !memcmp(sb.data + sb.len - 2, "/>", 2)) {
            sb.data[sb.len - 2] = '>';
            sb.len--;
        } else if (sb.len >= 7 && !memcmp(sb.data + sb.len - 7, "</user>", 7))
            sb.len -= 7;
        else
            log_panic("export: <user/> serialized as neither <user/> nor <user>...</user>");
        fwrite(sb.data, 1, sb.len, out);
        OPENSSL_cleanse(sb.data, sb.cap);
        if (pie_export_archive(st, &ex, nm.v[i], out) < 0) {
            fprintf(stderr, "weftctl: user %s: storage error\n", nm.v[i]);
            failed = 1;
            break;
        }
        fputs("</user>\n", out);
    }
    if (cur)
        fputs("</host>\n", out);
    fputs("</server-data>\n", out);
    strbuf_free(&sb);
    int werr = fflush(out) != 0 || ferror(out);
    if (out != stdout) {
        werr |= fsync(fileno(out)) != 0;
        werr |= fclose(out) != 0;
        if (failed || werr || rename(tmp.data, file) != 0) {
            if (werr)
                fprintf(stderr, "weftctl: %s: %s\n", tmp.data, strerror(errno));
            unlink(tmp.data);
            failed = 1;
        }
    }
    if (failed || werr)
        goto out;
    fprintf(stderr, "exported users=%ld roster-items=%ld pending-subscriptions=%ld vcards=%ld "
                    "private=%ld offline=%ld blocked=%ld pep-nodes=%ld pep-items=%ld "
                    "pep-affiliations=%ld pep-subscriptions=%ld archived=%ld unreadable=%d\n",
            ex.n.users, ex.n.roster, ex.n.pending, ex.n.vcards, ex.n.privates, ex.n.offline,
            ex.n.blocked, ex.n.pep_nodes, ex.n.pep_items, ex.n.pep_affs, ex.n.pep_subs, ex.n.archived,
            ex.bad);
    rc = XIT_OK;
out:
    for (size_t i = 0; i < nm.n; i++)
        free(nm.v[i]);
    free(nm.v);
    strbuf_free(&tmp);
    storage_close(st);
    return rc;
}
