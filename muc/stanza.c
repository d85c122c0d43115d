/* stanza: replies, errors and the small builders and names every other file
 * of weft-muc uses. Nothing here keeps state. */
#include "muc.h"
#include "comp_proto.h"
#include "stanza_check.h"
#include "log.h"
#include "xml_stream.h"
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void add_error(xml_node_t *e, const char *condition, const char *type, const char *text)
{
    xml_node_t *err = xml_add_child(e, NS_CLIENT, "error");
    xml_attr_set(err, "type", type);
    xml_add_child(err, NS_STANZAS, condition);
    if (text)
        muc_child_text(err, NS_STANZAS, "text", text);
}

void muc_reply_error(const xml_node_t *st, const char *condition, const char *type, const char *text)
{
    const char *from = xml_attr_get(st, "from");
    if (!stanza_error_allowed(st) || !from)
        return;
    xml_node_t *e = xml_copy(st);
    char *to = xml_attr_get(st, "to") ? xstrdup(xml_attr_get(st, "to")) : NULL;
    xml_attr_set(e, "to", from);
    xml_attr_set(e, "from", to);
    free(to);
    xml_attr_set(e, "type", "error");
    add_error(e, condition, type, text);
    muc_send_free(e);
}

void muc_presence_error(const xml_node_t *st, const char *condition, const char *type)
{
    xml_node_t *e = xml_elem_new(NS_CLIENT, "presence");
    xml_attr_set(e, "to", xml_attr_get(st, "from"));
    xml_attr_set(e, "from", xml_attr_get(st, "to"));
    xml_attr_set(e, "type", "error");
    if (xml_attr_get(st, "id"))
        xml_attr_set(e, "id", xml_attr_get(st, "id"));
    xml_add_child(e, NS_MUC, "x");
    add_error(e, condition, type, NULL);
    muc_send_free(e);
}

xml_node_t *muc_iq_result(const xml_node_t *iq)
{
    xml_node_t *r = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(r, "type", "result");
    xml_attr_set(r, "to", xml_attr_get(iq, "from"));
    xml_attr_set(r, "from", xml_attr_get(iq, "to"));
    xml_attr_set(r, "id", xml_attr_get(iq, "id"));
    return r;
}

xml_node_t *muc_child_text(xml_node_t *parent, const char *ns, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, ns, name);
    if (text && *text)
        xml_add_text(c, text, strlen(text));
    return c;
}

static const char *const role_names[] = {"none", "visitor", "participant", "moderator"};
static const char *const aff_names[] = {"outcast", "none", "member", "admin", "owner"};

const char *muc_role_name(muc_role_t r)
{
    return role_names[r];
}

const char *muc_aff_name(muc_aff_t a)
{
    return aff_names[a];
}

int muc_role_parse(const char *s, muc_role_t *out)
{
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, role_names[i])) {
            *out = (muc_role_t)i;
            return 0;
        }
    return -1;
}

int muc_aff_parse(const char *s, muc_aff_t *out)
{
    for (int i = 0; s && i < 5; i++)
        if (!strcmp(s, aff_names[i])) {
            *out = (muc_aff_t)i;
            return 0;
        }
    return -1;
}

char *muc_stamp(int64_t us, char *buf, size_t len)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%06ldZ", base, (long)(us % 1000000));
    return buf;
}

/* XEP-0082 date-time: YYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm|-hh:mm). */
int64_t muc_stamp_parse(const char *s)
{
    struct tm tm = {0};
    int n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const char *p = s + n;
    int64_t frac = 0, scale = 1000000;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    }
    long off = 0;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return -1;
        off = (hh * 3600L + mm * 60L) * (*p == '-' ? -1 : 1);
    } else if (*p != 'Z') {
        return -1;
    }
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - off) * 1000000 + frac;
}

char *muc_new_id(void)
{
    char hex[17];
    comp_proto_random_hex(hex, 8);
    hex[16] = 0;
    return xstrdup(hex);
}

/* One fetch of the digest for the process: OpenSSL 3's one-shot SHA256()
 * fetches it again on every call, which weighed as much as the hashing in a
 * room message's handling (two hashes each: its id and the sender's
 * occupant id when not cached). */
static EVP_MD *sha256_md;

void muc_sha256_hex(const void *data, size_t len, char *hex, size_t bytes)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!sha256_md)
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256_md || !EVP_Digest(data, len, md, &mdlen, sha256_md, NULL))
        log_fatal("event=sha256-unavailable");
    if (bytes > mdlen)
        bytes = mdlen;
    for (size_t i = 0; i < bytes; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * bytes] = 0;
}

void muc_sha256_free(void)
{
    EVP_MD_free(sha256_md);
    sha256_md = NULL;
}

char *muc_derived_id(const char *epoch, uint64_t seq)
{
    char buf[96];
    int n = snprintf(buf, sizeof buf, "%s:%llu", epoch, (unsigned long long)seq);
    char *hex = xmalloc(17);
    muc_sha256_hex(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, hex, 8);
    return hex;
}

char *muc_serialize(const xml_node_t *el, size_t *len)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(el, "", &sb);
    *len = sb.len;
    return strbuf_steal(&sb);
}

xml_node_t *muc_parse(const char *val, size_t len)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = len + 1024;
    char err[128];
    unsigned line = 0;
    xml_node_t *el = xml_parse_document(val, len, &lim, err, sizeof err, &line);
    if (!el)
        log_warn("event=record-unreadable error=\"%s\"", err);
    return el;
}
