/* jid: splitting and preparation of XMPP addresses.
 *
 * Splitting follows RFC 7622 §3.1: the first '/' starts the resource (which may
 * itself hold '/' and '@'), then the first '@' before it ends the node. Each part
 * is prepared with the stringprep profiles of RFC 6122 (nodeprep, nameprep,
 * resourceprep from libidn), always with STRINGPREP_NO_UNASSIGNED: we never know
 * whether a JID will be stored, and a string accepted today must not prepare to
 * something else after a Unicode update.
 *
 * Domains: one trailing '.' is stripped first; "[v6]" literals and dotted IPv4
 * are kept as they are; otherwise the name is split into labels (on the four
 * IDNA dots), A-labels are turned into U-labels, each label is nameprep'd and
 * must pass ToASCII with the STD3 rules (LDH, no leading/trailing hyphen) within
 * 63 bytes. The prepared domain is kept in Unicode form so that a JID given with
 * an A-label and one given with the U-label compare equal.
 *
 * Invariants of a parsed jid_t: every part is valid UTF-8, prepared, non-empty
 * and at most JID_PART_MAX bytes; parsing j->full again gives the same jid_t. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* inet_pton, strncasecmp */
#endif
#include "jid.h"
#include "strbuf.h"

#include <arpa/inet.h>
#include <idn-free.h>
#include <idna.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stringprep.h>

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. A NUL
 * cannot appear since we work on C strings. */
static int jid_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned min, cp;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Runs one stringprep profile over s[0..n) into a new xmalloc'd string, growing
 * the buffer as libidn asks (NFKC may lengthen the string). NULL if the profile
 * rejects the input. The caller frees. */
static char *jid_stringprep(const char *s, size_t n, const Stringprep_profile *profile)
{
    size_t cap = n * 2 + 16;
    for (;;) {
        char *buf = xmalloc(cap);
        memcpy(buf, s, n);
        buf[n] = '\0';
        int rc = stringprep(buf, cap, STRINGPREP_NO_UNASSIGNED, profile);
        if (rc == STRINGPREP_OK)
            return buf;
        free(buf);
        if (rc != STRINGPREP_TOO_SMALL_BUFFER || cap > (size_t)1 << 24)
            return NULL;
        cap *= 2;
    }
}

/* Which profile an ASCII fast path stands in for. */
enum { PREP_NODE, PREP_RESOURCE };

/* Nodeprep and resourceprep of a pure ASCII string, without libidn: on ASCII
 * both profiles map nothing and NFKC changes nothing, nodeprep folds A-Z and
 * prohibits space, controls and "&'/:<>@, and resourceprep only prohibits
 * controls. Most JIDs are ASCII and stringprep runs for every address of
 * every stanza, so this is the common case (tests/unit/test_jid.c checks it
 * against libidn for every ASCII character). Returns 0 and *out, or -1 when
 * the string is refused; 1 when it is not pure ASCII. */
static int jid_ascii_prep(const char *s, size_t n, int kind, char **out)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    char *p = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((unsigned char)c < 0x20 || c == 0x7f ||
            (kind == PREP_NODE && (c == ' ' || strchr("\"&'/:<>@", c)))) {
            free(p);
            return -1;
        }
        p[i] = (kind == PREP_NODE && c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    p[n] = '\0';
    *out = p;
    return 0;
}

/* Prepares a node part; the part must be non-empty before and after. */
static jid_err_t jid_node_prep(const char *s, size_t n, char **out)
{
    *out = NULL;
    if (n == 0)
        return JID_ERR_NODE;
    if (!jid_utf8_valid(s, n))
        return JID_ERR_UTF8;
    char *p = NULL;
    int fast = jid_ascii_prep(s, n, PREP_NODE, &p);
    if (fast < 0)
        return JID_ERR_NODE;
    if (fast > 0 && !(p = jid_stringprep(s, n, stringprep_xmpp_nodeprep)))
        return JID_ERR_NODE;
    size_t len = strlen(p);
    if (len == 0) {
        free(p);
        return JID_ERR_NODE;
    }
    if (len > JID_PART_MAX) {
        free(p);
        return JID_ERR_TOO_LONG;
    }
    *out = p;
    return JID_OK;
}

static jid_err_t jid_resource_prep(const char *s, size_t n, char **out)
{
    *out = NULL;
    if (n == 0)
        return JID_ERR_RESOURCE;
    if (!jid_utf8_valid(s, n))
        return JID_ERR_UTF8;
    char *p = NULL;
    int fast = jid_ascii_prep(s, n, PREP_RESOURCE, &p);
    if (fast < 0)
        return JID_ERR_RESOURCE;
    if (fast > 0 && !(p = jid_stringprep(s, n, stringprep_xmpp_resourceprep)))
        return JID_ERR_RESOURCE;
    size_t len = strlen(p);
    if (len == 0) {
        free(p);
        return JID_ERR_RESOURCE;
    }
    if (len > JID_PART_MAX) {
        free(p);
        return JID_ERR_TOO_LONG;
    }
    *out = p;
    return JID_OK;
}

/* Length of an IDNA label separator starting at s (U+002E, U+3002, U+FF0E,
 * U+FF61, per RFC 3490 §3.1), or 0. */
static size_t jid_dot_len(const char *s, size_t avail)
{
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] == '.')
        return 1;
    if (avail >= 3 && ((p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x82) ||
                       (p[0] == 0xef && p[1] == 0xbc && p[2] == 0x8e) ||
                       (p[0] == 0xef && p[1] == 0xbd && p[2] == 0xa1)))
        return 3;
    return 0;
}

static int jid_has_dot(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (jid_dot_len(s + i, n - i))
            return 1;
    return 0;
}

static int jid_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* STD3 host name rule for one ASCII label of n bytes (already lowercased by
 * nameprep). */
static int jid_ldh_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

/* Prepares one domain label into sb. Returns 0 or -1. */
static int jid_label_prep(const char *s, size_t n, strbuf_t *sb)
{
    /* An ASCII label that is not an A-label: nameprep only folds A-Z, and the
     * LDH rule below refuses anything it would have let through. */
    if (jid_is_ascii(s, n) && !(n >= 4 && strncasecmp(s, "xn--", 4) == 0)) {
        size_t at = sb->len;
        for (size_t i = 0; i < n; i++)
            strbuf_putc(sb, (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i]);
        if (jid_ldh_ok(sb->data + at, sb->len - at))
            return 0;
        sb->len = at;
        sb->data[at] = '\0';
        return -1;
    }
    char *label = xstrndup(s, n);
    int ok = 0;
    char *prepped = NULL, *ace = NULL;

    /* A-label: decode to the U-label so both spellings prepare alike. ToUnicode
     * hands back its input when the label is not a valid, round-tripping
     * A-label; such a label is refused rather than kept as a lookalike. */
    if (n >= 4 && jid_is_ascii(s, n) && strncasecmp(s, "xn--", 4) == 0) {
        char *u = NULL;
        if (idna_to_unicode_8z8z(label, &u, 0) != IDNA_SUCCESS || !u)
            goto out;
        int still_ace = strncasecmp(u, "xn--", 4) == 0 || jid_has_dot(u);
        free(label);
        label = xstrdup(u);
        idn_free(u);
        if (still_ace)
            goto out;
    }
    prepped = jid_stringprep(label, strlen(label), stringprep_nameprep);
    /* NFKC can create a dot (U+2024 -> '.'), which would change the label count;
     * and a prepared label that looks like an A-label ("xn--fu\u00dfball" ->
     * "xn--fussball") would be read as one on the next parse. */
    if (!prepped || prepped[0] == '\0' || jid_has_dot(prepped) ||
        strncasecmp(prepped, "xn--", 4) == 0)
        goto out;
    if (jid_is_ascii(prepped, strlen(prepped))) {
        ok = jid_ldh_ok(prepped, strlen(prepped));
    } else {
        if (idna_to_ascii_8z(prepped, &ace, IDNA_USE_STD3_ASCII_RULES) != IDNA_SUCCESS || !ace)
            goto out;
        /* Belt and braces: the ACE form obeys the same LDH rule and 63-byte cap. */
        for (char *p = ace; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        ok = jid_ldh_ok(ace, strlen(ace));
    }
    if (ok)
        strbuf_puts(sb, prepped);
out:
    free(label);
    free(prepped);
    if (ace)
        idn_free(ace);
    return ok ? 0 : -1;
}

/* 1 if s is already what preparing it gives: lowercase LDH labels of 1 to
 * 63 bytes, no A-label (which would be decoded and checked), at most
 * JID_PART_MAX bytes. Nearly every domain of every stanza is; the label by
 * label path below builds the same string a byte at a time. */
static int jid_domain_is_prepared(const char *s, size_t n)
{
    if (n > JID_PART_MAX)
        return 0;
    for (size_t start = 0; start <= n;) {
        const char *dot = memchr(s + start, '.', n - start);
        size_t len = dot ? (size_t)(dot - s) - start : n - start;
        if (!jid_ldh_ok(s + start, len) || (len >= 4 && !memcmp(s + start, "xn--", 4)))
            return 0;
        start += len + 1;
    }
    return 1;
}

static jid_err_t jid_domain_prep(const char *s, size_t n, char **out)
{
    *out = NULL;
    if (n > 0 && s[n - 1] == '.') /* RFC 7622 §3.2: strip before anything else */
        n--;
    if (n == 0)
        return JID_ERR_EMPTY;
    if (!jid_utf8_valid(s, n))
        return JID_ERR_UTF8;

    /* IP literals are kept verbatim; inet_pton is strict about their syntax. */
    if (s[0] == '[') {
        if (n < 3 || s[n - 1] != ']' || n - 2 > INET6_ADDRSTRLEN)
            return JID_ERR_DOMAIN;
        char tmp[INET6_ADDRSTRLEN + 1];
        unsigned char addr[16];
        memcpy(tmp, s + 1, n - 2);
        tmp[n - 2] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return JID_ERR_DOMAIN;
        *out = xstrndup(s, n);
        return JID_OK;
    }
    if (n <= 15) {
        char tmp[16];
        unsigned char addr[4];
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        if (inet_pton(AF_INET, tmp, addr) == 1) {
            *out = xstrndup(s, n);
            return JID_OK;
        }
    }

    if (jid_domain_is_prepared(s, n)) {
        *out = xstrndup(s, n);
        return JID_OK;
    }
    strbuf_t sb;
    strbuf_init(&sb);
    size_t start = 0, i = 0;
    for (;;) {
        size_t dl = i < n ? jid_dot_len(s + i, n - i) : 0;
        if (i == n || dl) {
            if (i == start || jid_label_prep(s + start, i - start, &sb) < 0) {
                strbuf_free(&sb);
                return JID_ERR_DOMAIN;
            }
            if (i == n)
                break;
            strbuf_putc(&sb, '.');
            i += dl;
            start = i;
        } else {
            i++;
        }
    }
    if (sb.len > JID_PART_MAX) {
        strbuf_free(&sb);
        return JID_ERR_TOO_LONG;
    }
    *out = strbuf_steal(&sb);
    return JID_OK;
}

/* Fills j from the prepared parts (node/resource may be NULL), in one
 * allocation that starts at j->full: full, bare, node, domain, resource, each
 * NUL-terminated. A JID is parsed for nearly every stanza; five allocations
 * each time showed in profiles. jid_clear frees the block. */
static void jid_assemble(jid_t *j, const char *node, const char *domain, const char *resource)
{
    size_t nl = node ? strlen(node) : 0, dl = strlen(domain), rl = resource ? strlen(resource) : 0;
    size_t bl = (node ? nl + 1 : 0) + dl, fl = bl + (resource ? rl + 1 : 0);
    char *p = xmalloc(fl + 1 + bl + 1 + (node ? nl + 1 : 0) + dl + 1 + (resource ? rl + 1 : 0));
    j->full = p;
    if (node) {
        memcpy(p, node, nl);
        p[nl] = '@';
        p += nl + 1;
    }
    memcpy(p, domain, dl);
    p += dl;
    if (resource) {
        *p++ = '/';
        memcpy(p, resource, rl);
        p += rl;
    }
    *p++ = '\0';
    j->bare = p;
    memcpy(p, j->full, bl);
    p[bl] = '\0';
    p += bl + 1;
    j->node = NULL;
    if (node) {
        j->node = p;
        memcpy(p, node, nl + 1);
        p += nl + 1;
    }
    j->domain = p;
    memcpy(p, domain, dl + 1);
    p += dl + 1;
    j->resource = NULL;
    if (resource) {
        j->resource = p;
        memcpy(p, resource, rl + 1);
    }
}

static void jid_zero(jid_t *j)
{
    j->node = j->domain = j->resource = j->bare = j->full = NULL;
}

/* Prepares the three raw parts (node/resource may be absent: NULL). The domain
 * is checked first so that "juliet@" reports an empty domain. */
static jid_err_t jid_from_parts(const char *node, size_t nlen, const char *dom, size_t dlen,
                                const char *res, size_t rlen, jid_t *out)
{
    char *pn = NULL, *pd = NULL, *pr = NULL;
    jid_err_t e;

    jid_zero(out);
    if ((e = jid_domain_prep(dom, dlen, &pd)) != JID_OK)
        goto fail;
    if (node && (e = jid_node_prep(node, nlen, &pn)) != JID_OK)
        goto fail;
    if (res && (e = jid_resource_prep(res, rlen, &pr)) != JID_OK)
        goto fail;
    jid_assemble(out, pn, pd, pr);
    e = JID_OK;
fail:
    free(pn);
    free(pd);
    free(pr);
    return e;
}

jid_err_t jid_parse(const char *s, jid_t *out)
{
    jid_zero(out);
    if (!s || !*s)
        return JID_ERR_EMPTY;
    size_t n = strlen(s);
    /* Invalid UTF-8 anywhere is reported as such, whatever part it falls in. */
    if (!jid_utf8_valid(s, n))
        return JID_ERR_UTF8;
    const char *slash = memchr(s, '/', n);
    size_t head = slash ? (size_t)(slash - s) : n;
    const char *at = memchr(s, '@', head);
    const char *dom = at ? at + 1 : s;
    size_t dlen = head - (size_t)(dom - s);
    return jid_from_parts(at ? s : NULL, at ? (size_t)(at - s) : 0, dom, dlen,
                          slash ? slash + 1 : NULL, slash ? n - head - 1 : 0, out);
}

jid_err_t jid_build(const char *node, const char *domain, const char *resource, jid_t *out)
{
    jid_zero(out);
    if (!domain)
        return JID_ERR_EMPTY;
    return jid_from_parts(node, node ? strlen(node) : 0, domain, strlen(domain), resource,
                          resource ? strlen(resource) : 0, out);
}

void jid_clear(jid_t *j)
{
    if (!j)
        return;
    free(j->full);                            /* the one block (jid_assemble) */
    jid_zero(j);
}

jid_err_t jid_copy(const jid_t *src, jid_t *dst)
{
    jid_zero(dst);
    if (!src || !src->domain)
        return JID_ERR_EMPTY;
    jid_assemble(dst, src->node, src->domain, src->resource);
    return JID_OK;
}

int jid_equal(const jid_t *a, const jid_t *b)
{
    return a->full && b->full && strcmp(a->full, b->full) == 0;
}

int jid_bare_equal(const jid_t *a, const jid_t *b)
{
    return a->bare && b->bare && strcmp(a->bare, b->bare) == 0;
}

char *jid_prep_node(const char *s)
{
    char *p;
    return s && jid_node_prep(s, strlen(s), &p) == JID_OK ? p : NULL;
}

char *jid_prep_domain(const char *s)
{
    char *p;
    return s && jid_domain_prep(s, strlen(s), &p) == JID_OK ? p : NULL;
}

char *jid_prep_resource(const char *s)
{
    char *p;
    return s && jid_resource_prep(s, strlen(s), &p) == JID_OK ? p : NULL;
}

char *jid_bare_of(const char *s)
{
    jid_t j;
    if (jid_parse(s, &j) != JID_OK)
        return NULL;
    char *bare = xstrdup(j.bare);
    jid_clear(&j);
    return bare;
}

/* Same split as jid_parse, without preparing or allocating. An empty domain
 * ("juliet@", "/x") also gives NULL: there is nothing to route on. */
const char *jid_domain_span(const char *s, size_t *len)
{
    *len = 0;
    if (!s || !*s)
        return NULL;
    size_t head = strcspn(s, "/");
    const char *at = memchr(s, '@', head);
    const char *dom = at ? at + 1 : s;
    size_t dlen = head - (size_t)(dom - s);
    if (dlen == 0)
        return NULL;
    *len = dlen;
    return dom;
}

const char *jid_strerror(jid_err_t e)
{
    switch (e) {
    case JID_OK: return "ok";
    case JID_ERR_EMPTY: return "empty address or domain";
    case JID_ERR_NODE: return "invalid localpart";
    case JID_ERR_DOMAIN: return "invalid domainpart";
    case JID_ERR_RESOURCE: return "invalid resourcepart";
    case JID_ERR_TOO_LONG: return "part longer than 1023 bytes";
    case JID_ERR_UTF8: return "invalid UTF-8";
    }
    return "unknown error";
}
