/* slot: weft-upload's XMPP side (XEP-0363 HTTP File Upload, version 1.0,
 * namespace urn:xmpp:http:upload:0).
 *
 * - disco#info: identity store/file, the upload feature and the
 *   max-file-size form (XEP-0363 section 3); disco#items: empty.
 * - <request filename size content-type/> (iq get) from a user of one of
 *   upload.allowed-domains: a slot (PUT URL with its token, GET URL).
 *   Errors as XEP-0363 section 4.1 words them: too large is not-acceptable
 *   with <file-too-large><max-file-size/>; over the user's quota is
 *   resource-constraint (wait) with <retry stamp/> set to when the user's
 *   first file expires; anyone else is not-allowed; a malformed request is
 *   bad-request.
 * - Any other iq get/set: service-unavailable; results, errors, messages and
 *   presences are dropped (nothing here sends requests of its own). */
#include "comp_proto.h"
#include "jid.h"
#include "log.h"
#include "store.h"
#include "upload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_UPLOAD "urn:xmpp:http:upload:0"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_XDATA "jabber:x:data"
#define FILENAME_MAX_BYTES 255
#define CTYPE_MAX_BYTES 255

/* The reply skeleton of an iq: type, swapped addresses, same id. */
static xml_node_t *reply_to(const xml_node_t *iq, const char *type)
{
    xml_node_t *r = xml_elem_new(COMP_NS_ACCEPT, "iq");
    xml_attr_set(r, "type", type);
    const char *from = xml_attr_get(iq, "from"), *to = xml_attr_get(iq, "to"), *id = xml_attr_get(iq, "id");
    if (from)
        xml_attr_set(r, "to", from);
    xml_attr_set(r, "from", to ? to : upload_config->domain);
    if (id)
        xml_attr_set(r, "id", id);
    return r;
}

/* An error reply; returns its <error/> so callers may add children. */
static xml_node_t *error_reply(const xml_node_t *iq, const char *condition, const char *type,
                               const char *text, xml_node_t **out)
{
    xml_node_t *r = reply_to(iq, "error");
    xml_node_t *e = xml_add_child(r, COMP_NS_ACCEPT, "error");
    xml_attr_set(e, "type", type);
    xml_add_child(e, NS_STANZAS, condition);
    if (text) {
        xml_node_t *t = xml_add_child(e, NS_STANZAS, "text");
        xml_add_text(t, text, strlen(text));
    }
    *out = r;
    return e;
}

static void send_error(const xml_node_t *iq, const char *condition, const char *type, const char *text)
{
    xml_node_t *r;
    error_reply(iq, condition, type, text, &r);
    upload_send(r);
    xml_free(r);
}

static void add_text_child(xml_node_t *parent, const char *ns, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, ns, name);
    xml_add_text(c, text, strlen(text));
}

static void disco_info(const xml_node_t *iq)
{
    xml_node_t *r = reply_to(iq, "result");
    xml_node_t *q = xml_add_child(r, NS_DISCO_INFO, "query");
    xml_node_t *id = xml_add_child(q, NS_DISCO_INFO, "identity");
    xml_attr_set(id, "category", "store");
    xml_attr_set(id, "type", "file");
    xml_attr_set(id, "name", "HTTP File Upload");
    const char *features[] = {NS_DISCO_INFO, NS_DISCO_ITEMS, NS_UPLOAD};
    for (size_t i = 0; i < sizeof features / sizeof *features; i++)
        xml_attr_set(xml_add_child(q, NS_DISCO_INFO, "feature"), "var", features[i]);
    xml_node_t *x = xml_add_child(q, NS_XDATA, "x");
    xml_attr_set(x, "type", "result");
    xml_node_t *f = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(f, "var", "FORM_TYPE");
    xml_attr_set(f, "type", "hidden");
    add_text_child(f, NS_XDATA, "value", NS_UPLOAD);
    f = xml_add_child(x, NS_XDATA, "field");
    xml_attr_set(f, "var", "max-file-size");
    char n[32];
    snprintf(n, sizeof n, "%zu", upload_config->max_file_size);
    add_text_child(f, NS_XDATA, "value", n);
    upload_send(r);
    xml_free(r);
}

/* 1 if domain is one of the space-separated allowed domains. */
static int domain_allowed(const char *domain)
{
    const char *p = upload_config->allowed_domains;
    size_t dl = strlen(domain);
    while (*p) {
        p += strspn(p, " \t\n,");
        size_t n = strcspn(p, " \t\n,");
        if (n == dl && !strncmp(p, domain, n))
            return 1;
        p += n;
    }
    return 0;
}

/* Printable ASCII with a '/', as a header value may carry it safely. */
static int ctype_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > CTYPE_MAX_BYTES || !strchr(t, '/'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x20 || (unsigned char)t[i] > 0x7e)
            return 0;
    return 1;
}

/* No control characters (the name ends up in a URL, percent-encoded). */
static int filename_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FILENAME_MAX_BYTES)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* RFC 3986 unreserved characters stay, everything else is %XX. */
static void url_escape(strbuf_t *sb, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c))
            strbuf_putc(sb, (char)c);
        else
            strbuf_printf(sb, "%%%02X", c);
    }
}

static void quota_error(const xml_node_t *iq, const char *owner)
{
    xml_node_t *r;
    xml_node_t *e = error_reply(iq, "resource-constraint", "wait",
                                "Quota reached: wait until older files expire", &r);
    time_t t = (time_t)store_first_expiry(owner, upload_config->expire_after, upload_config->slot_timeout);
    if (t) {
        char stamp[32];
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        xml_attr_set(xml_add_child(e, NS_UPLOAD, "retry"), "stamp", stamp);
    }
    upload_send(r);
    xml_free(r);
}

static void too_large(const xml_node_t *iq)
{
    char text[96], n[32];
    snprintf(n, sizeof n, "%zu", upload_config->max_file_size);
    snprintf(text, sizeof text, "File too large: the largest is %s bytes", n);
    xml_node_t *r;
    xml_node_t *e = error_reply(iq, "not-acceptable", "modify", text, &r);
    xml_node_t *ftl = xml_add_child(e, NS_UPLOAD, "file-too-large");
    add_text_child(ftl, NS_UPLOAD, "max-file-size", n);
    upload_send(r);
    xml_free(r);
}

static void slot_request(const xml_node_t *iq, const xml_node_t *req)
{
    const char *from = xml_attr_get(iq, "from");
    jid_t j;
    if (!from || jid_parse(from, &j) != JID_OK) {
        upload_metrics_slot("not-allowed");
        send_error(iq, "not-allowed", "cancel", "Only local users may upload here");
        return;
    }
    int allowed = j.node && domain_allowed(j.domain);
    char *owner = xstrdup(j.bare);
    jid_clear(&j);
    if (!allowed) {
        log_info("event=slot-refused from=%s reason=not-allowed", from);
        upload_metrics_slot("not-allowed");
        send_error(iq, "not-allowed", "cancel", "Only local users may upload here");
        free(owner);
        return;
    }
    const char *filename = xml_attr_get(req, "filename");
    const char *size_s = xml_attr_get(req, "size");
    const char *ctype = xml_attr_get(req, "content-type");
    /* Digits only (strtoll would take spaces and a sign), at most 18. */
    size_t sl = size_s ? strlen(size_s) : 0;
    long long size = sl && sl <= 18 && strspn(size_s, "0123456789") == sl ? strtoll(size_s, NULL, 10) : -1;
    if (!filename || !filename_ok(filename) || size <= 0 ||
        (ctype && *ctype && !ctype_ok(ctype))) {
        upload_metrics_slot("bad-request");
        send_error(iq, "bad-request", "modify", "A filename, a positive size and a valid content-type are needed");
        free(owner);
        return;
    }
    if ((unsigned long long)size > upload_config->max_file_size) {
        log_info("event=slot-refused owner=%s reason=too-large size=%lld", owner, size);
        upload_metrics_slot("too-large");
        too_large(iq);
        free(owner);
        return;
    }
    long long used = store_usage(owner);
    if ((unsigned long long)(used + size) > upload_config->quota) {
        log_info("event=slot-refused owner=%s reason=quota used=%lld size=%lld", owner, used, size);
        upload_metrics_slot("quota");
        quota_error(iq, owner);
        free(owner);
        return;
    }
    store_file_t *f = store_slot_new(owner, filename, ctype ? ctype : "", size);
    if (!f) {
        upload_metrics_slot("error");
        send_error(iq, "internal-server-error", "wait", "The slot could not be stored");
        free(owner);
        return;
    }
    strbuf_t get, put;
    strbuf_init(&get);
    strbuf_init(&put);
    strbuf_printf(&get, "%s/%s/", upload_base_url(), f->id);
    url_escape(&get, filename);
    char token[STORE_TOKEN_LEN + 1];
    store_token(f->id, token);
    strbuf_printf(&put, "%s?token=%s", get.data, token);
    xml_node_t *r = reply_to(iq, "result");
    xml_node_t *slot = xml_add_child(r, NS_UPLOAD, "slot");
    xml_attr_set(xml_add_child(slot, NS_UPLOAD, "put"), "url", put.data);
    xml_attr_set(xml_add_child(slot, NS_UPLOAD, "get"), "url", get.data);
    upload_send(r);
    xml_free(r);
    upload_metrics_slot("given");
    log_info("event=slot id=%s owner=%s size=%lld type=\"%s\"", f->id, owner, size, *f->ctype ? f->ctype : "-");
    strbuf_free(&get);
    strbuf_free(&put);
    free(owner);
}

static xml_node_t *first_element(const xml_node_t *el)
{
    for (xml_node_t *c = el->first_child; c; c = c->next)
        if (c->name)
            return c;
    return NULL;
}

void slot_handle(xml_node_t *st)
{
    if (strcmp(st->name, "iq"))
        return;
    const char *type = xml_attr_get(st, "type");
    if (!type || (strcmp(type, "get") && strcmp(type, "set")))
        return;
    int get = !strcmp(type, "get");
    xml_node_t *p = first_element(st);
    const char *ns = p ? p->ns : "";
    if (p && get && !strcmp(ns, NS_DISCO_INFO) && !strcmp(p->name, "query")) {
        if (xml_attr_get(p, "node"))
            send_error(st, "item-not-found", "cancel", NULL);
        else
            disco_info(st);
    } else if (p && get && !strcmp(ns, NS_DISCO_ITEMS) && !strcmp(p->name, "query")) {
        xml_node_t *r = reply_to(st, "result");
        xml_add_child(r, NS_DISCO_ITEMS, "query");
        upload_send(r);
        xml_free(r);
    } else if (p && !strcmp(ns, NS_UPLOAD) && !strcmp(p->name, "request")) {
        if (get)
            slot_request(st, p);
        else
            send_error(st, "bad-request", "modify", "A slot is requested with an iq of type get");
    } else {
        send_error(st, "service-unavailable", "cancel", NULL);
    }
}
