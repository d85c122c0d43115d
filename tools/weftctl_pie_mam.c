/* weftctl_pie_mam: a user's message archive (XEP-0313) in XEP-0227 files,
 * read into and written from the records mod_mam keeps.
 *
 * The file (XEP-0227 1.1, section "Message Archive"; what prosody-migrator
 * 0.12 writes for its "archive" store), oldest first:
 *   <archive xmlns='urn:xmpp:pie:0#mam'>
 *     <result xmlns='urn:xmpp:mam:2' id=ARCHIVE-ID>
 *       <forwarded xmlns='urn:xmpp:forward:0'>
 *         <delay xmlns='urn:xmpp:delay' stamp=WHEN/><message xmlns='jabber:client'/>
 *   ...
 * The archive id stays the message's id (a client that has it keeps paging
 * from it), the stamp its time (to the microsecond in weft's export), the
 * message is kept as it is. Whether the user sent or received it, and with
 * whom, is read from the message: sent when its 'from' is the user's
 * account or missing (Prosody keeps a client's message without 'from'),
 * with = its 'to'; else received, with = its 'from' (a message to oneself is
 * received, as mod_mam archives it once, when it arrives).
 *
 * How mod_mam stores a message is known by archive_store() and
 * archive_each() below and by nothing else here: when that layout changes,
 * those two change with it. MAM preferences (XEP-0441) have no place in
 * XEP-0227 and are not carried. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jid.h"
#include "weftctl_pie.h"
#include "xml_stream.h"

#define NS_MAM "urn:xmpp:mam:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define ID_MAX 256          /* bytes of an archive id taken from a file */
#define PAGE 1000           /* records read per step on export */

/* One archived message as the file and the records both describe it. */
typedef struct pie_msg {
    const char *id;
    long long stamp;        /* µs since the epoch */
    char dir;               /* 'i' received, 'o' sent */
    const char *with;       /* the contact's JID, full when the stanza had a resource */
    size_t with_len;
    const char *xml;        /* the stanza, serialized with its xmlns */
    size_t xml_len;
} pie_msg_t;

/* ------------------------------------------------------------ the storage layout */

/* mod_mam (sm/mod_mam.h, docs/mam.md): collection "mam", key = archive id,
 * tag = the contact's bare JID (what a query 'with' a contact ranges over),
 * value "<µs> <i|o> <with>\n<message/>", stamp = the message's time; and the
 * owner listed in its domain's "mam-users" (key = owner),
 * which the retention sweep walks. *listed: that entry is written already. */
static int archive_store(storage_t *st, const char *owner, const pie_msg_t *m, int *listed)
{
    strbuf_t val;
    strbuf_init(&val);
    strbuf_printf(&val, "%lld %c ", m->stamp, m->dir);
    strbuf_append(&val, m->with, m->with_len);
    strbuf_putc(&val, '\n');
    strbuf_append(&val, m->xml, m->xml_len);
    char *with = xstrndup(m->with, m->with_len);
    char *bare = jid_bare_of(with);
    int rc = storage_put_at(st, owner, "mam", m->id, bare ? bare : with, val.data, val.len, m->stamp) == 0
                 ? 0 : -1;
    const char *at = strchr(owner, '@');
    if (rc == 0 && !*listed && at) {
        rc = storage_put(st, at + 1, "mam-users", owner, "", 0) == 0 ? 0 : -1;
        *listed = 1;
    }
    free(bare);
    free(with);
    strbuf_free(&val);
    return rc;
}

typedef int (*msg_fn)(const pie_msg_t *m, void *arg);

/* Calls fn for each message of owner's archive, in the order queries give
 * them (stamp, then sequence), PAGE records at a time. A record that is not
 * one is reported and counted in *bad. fn's non-zero return stops. */
static int archive_each(storage_t *st, const char *owner, msg_fn fn, void *arg, int *bad)
{
    char *after = NULL;
    int rc = 0;
    for (;;) {
        storage_range_t q = {0};
        q.by_stamp = 1;
        q.after = after;
        q.limit = PAGE;
        storage_res_t res = {0};
        if (storage_range(st, owner, "mam", &q, &res) != 0) {
            storage_res_clear(&res);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < res.nrecs && rc == 0; i++) {
            const storage_rec_t *r = &res.recs[i];
            const char *nl = memchr(r->val, '\n', r->len);
            char *end = NULL;
            pie_msg_t m = {.id = r->key};
            m.stamp = strtoll(r->val, &end, 10);
            if (!nl || end == r->val || end + 3 > nl || end[0] != ' ' ||
                (end[1] != 'i' && end[1] != 'o') || end[2] != ' ') {
                fprintf(stderr, "weftctl: user %s: archive record '%s' is not one: left out\n",
                        owner, r->key);
                (*bad)++;
                continue;
            }
            m.dir = end[1];
            m.with = end + 3;
            m.with_len = (size_t)(nl - m.with);
            m.xml = nl + 1;
            m.xml_len = r->len - (size_t)(m.xml - r->val);
            rc = fn(&m, arg);
        }
        free(after);
        after = res.nrecs ? xstrdup(res.recs[res.nrecs - 1].key) : NULL;
        size_t got = res.nrecs;
        storage_res_clear(&res);
        if (rc != 0 || got < PAGE)
            break;
    }
    free(after);
    return rc;
}

/* ------------------------------------------------------------ times */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.s...](Z|±hh:mm)) into µs; -1 when
 * it is not one or lies before 1970 (storage stamps are not negative). */
static long long stamp_parse(const char *s)
{
    int y, mo, d, h, mi, sec;
    if (!s || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec) ||
        mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    long long frac = 0, scale = 1000000;
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9')
            return -1;
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (scale > 1)
                frac += (*p - '0') * (scale /= 10);
    }
    long off = 0;
    int oh = 0, om = 0;
    if (*p == 'Z')
        p++;
    else if ((*p == '+' || *p == '-') && !digits(p + 1, 2, &oh) && p[3] == ':' && !digits(p + 4, 2, &om) &&
             oh < 24 && om < 60)
        off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1), p += 6;
    else
        return -1;
    if (*p)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = sec};
    long long t = (long long)timegm(&tm) - off;
    return t < 0 ? -1 : t * 1000000 + frac;
}

/* µs as a DateTime with all six fractional digits: nothing is lost. */
static void stamp_format(long long us, char *buf, size_t len)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%06lldZ", us % 1000000);
}

/* ------------------------------------------------------------ import */

static int id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] <= ' ')
            return 0;
    return 1;
}

/* Direction and contact of msg in the archive of user (see the file comment). */
static int msg_with(imp_t *im, const xml_node_t *msg, char *dir, jid_t *with)
{
    const char *from = xml_attr_get(msg, "from"), *to = xml_attr_get(msg, "to");
    jid_t f = {0}, t = {0};
    int have_f = from && jid_parse(from, &f) == JID_OK, have_t = to && jid_parse(to, &t) == JID_OK;
    if ((from && !have_f) || (to && !have_t)) {
        if (have_f)
            jid_clear(&f);
        if (have_t)
            jid_clear(&t);
        return pie_bad(im, msg, "'%s' is not a JID", from && !have_f ? from : to);
    }
    int sent = !have_f || !strcmp(f.bare, im->user);
    if (sent && have_t && strcmp(t.bare, im->user)) {
        *dir = 'o';
        *with = t;
        if (have_f)
            jid_clear(&f);
        return 0;
    }
    if (have_t)
        jid_clear(&t);
    if (have_f) {
        *dir = 'i';
        *with = f;
        return 0;
    }
    return pie_bad(im, msg, "neither 'from' nor 'to' names the other party of the message");
}

static int import_result(imp_t *im, const xml_node_t *r, int *listed)
{
    if (!pie_ns_is(r, NS_MAM, "result"))
        return pie_bad(im, r, "an archive holds <result xmlns='%s'/> elements", NS_MAM);
    const char *id = xml_attr_get(r, "id");
    if (!id_ok(id))
        return pie_bad(im, r, "the archive id '%s' is not 1 to %d characters without spaces", id ? id : "",
                       ID_MAX);
    const xml_node_t *fw = xml_child(r, NS_FORWARD, "forwarded");
    const xml_node_t *delay = xml_child(fw, NS_DELAY, "delay");
    const xml_node_t *msg = xml_child(fw, NS_CLIENT, "message");
    if (!fw || !delay || !msg)
        return pie_bad(im, r, "message %s: a result holds <forwarded xmlns='%s'> with a <delay/> "
                       "and a <message xmlns='jabber:client'/>", id, NS_FORWARD);
    long long stamp = stamp_parse(xml_attr_get(delay, "stamp"));
    if (stamp < 0)
        return pie_bad(im, delay, "message %s: stamp '%s' is not a DateTime after 1970 (XEP-0082)", id,
                       xml_attr_get(delay, "stamp") ? xml_attr_get(delay, "stamp") : "");
    if (storage_get(im->st, im->user, "mam", id, NULL, NULL) == 0)
        return pie_bad(im, r, "message %s is given twice", id);
    jid_t with = {0};
    char dir = 0;
    if (msg_with(im, msg, &dir, &with) < 0)
        return -1;
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(msg, NULL, &sb);   /* declares its namespace, as mod_mam */
    pie_msg_t m = {.id = id, .stamp = stamp, .dir = dir, .with = with.full,
                   .with_len = strlen(with.full), .xml = sb.data, .xml_len = sb.len};
    int rc = archive_store(im->st, im->user, &m, listed);
    strbuf_free(&sb);
    jid_clear(&with);
    if (rc < 0)
        return pie_bad(im, r, "message %s: storage error", id);
    im->n.archived++;
    return 0;
}

int pie_import_archive(imp_t *im, const xml_node_t *archive)
{
    int listed = 0;
    for (xml_node_t *r = xml_child(archive, NULL, NULL); r; r = xml_next(r, NULL, NULL))
        if (import_result(im, r, &listed) < 0)
            return -1;
    return 0;
}

/* ------------------------------------------------------------ export */

typedef struct exp_arch {
    exp_t *ex;
    FILE *out;
    int opened;
    xml_limits_t lim;
} exp_arch_t;

static int export_msg(const pie_msg_t *m, void *arg)
{
    exp_arch_t *a = arg;
    char err[128] = "";
    xml_node_t *msg = xml_parse_document(m->xml, m->xml_len, &a->lim, err, sizeof err, NULL);
    if (!msg) {
        fprintf(stderr, "weftctl: user %s: archive record '%s' is not XML (%s): left out\n",
                a->ex->user, m->id, err);
        a->ex->bad++;
        return 0;
    }
    xml_node_t *r = xml_elem_new(NS_MAM, "result");
    xml_attr_set(r, "id", m->id);
    xml_node_t *fw = xml_add_child(r, NS_FORWARD, "forwarded");
    char stamp[64];
    stamp_format(m->stamp, stamp, sizeof stamp);
    xml_attr_set(xml_add_child(fw, NS_DELAY, "delay"), "stamp", stamp);
    xml_append(fw, msg);
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(r, NS_PIE_MAM, &sb);
    xml_free(r);
    if (!a->opened)
        fputs("<archive xmlns='" NS_PIE_MAM "'>", a->out);
    a->opened = 1;
    fwrite(sb.data, 1, sb.len, a->out);
    strbuf_free(&sb);
    a->ex->n.archived++;
    return ferror(a->out) ? -1 : 0;
}

int pie_export_archive(storage_t *st, exp_t *ex, const char *bare, FILE *out)
{
    exp_arch_t a = {.ex = ex, .out = out};
    xml_limits_default(&a.lim);
    a.lim.max_stanza_bytes = 4u * 1024 * 1024;   /* as mam_query.c reads them */
    a.lim.max_text = a.lim.max_stanza_bytes;
    ex->user = bare;
    int rc = archive_each(st, bare, export_msg, &a, &ex->bad);
    if (a.opened)
        fputs("</archive>", out);
    return rc;
}
