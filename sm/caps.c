/* caps: the XEP-0115 cache and the disco#info queries that fill it.
 *
 * Cache: an array of (ver, interests), oldest first, at most max entries;
 * a new entry past the bound drops the oldest. Pending queries: (iq id, ver,
 * hash, waiters), at most max as well; a query never answered is dropped
 * the same way. Verification: the sha-1 verification string of the answer
 * (common/caps_hash.c, XEP-0115 section 5) must equal ver; an ill-formed
 * answer (section 5.4) never verifies. */
#include "caps.h"
#include "caps_hash.h"
#include "log.h"
#include "sm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_DISCO_INFO CAPS_NS_DISCO_INFO
#define NOTIFY_SUFFIX "+notify"

typedef struct cache_ent {
    char *ver;
    caps_notify_t nt;
} cache_ent_t;

typedef struct waiter {
    char *owner, *jid;
} waiter_t;

typedef struct pending {
    char *id, *ver, *hash;
    waiter_t *w;
    size_t nw;
} pending_t;

static cache_ent_t *cache;
static size_t ncache;
static pending_t *pend;
static size_t npend;
static size_t max_ents = 1000;
static unsigned long next_id;
static caps_result_fn result_fn;

void caps_init(caps_result_fn fn)
{
    result_fn = fn;
}

void caps_set_max(size_t max)
{
    max_ents = max ? max : 1;
}

void caps_notify_clear(caps_notify_t *nt)
{
    for (size_t i = 0; i < nt->n; i++)
        free(nt->nodes[i]);
    free(nt->nodes);
    nt->nodes = NULL;
    nt->n = 0;
}

void caps_notify_copy(caps_notify_t *dst, const caps_notify_t *src)
{
    dst->n = src->n;
    dst->nodes = src->n ? xcalloc(src->n, sizeof *dst->nodes) : NULL;
    for (size_t i = 0; i < src->n; i++)
        dst->nodes[i] = xstrdup(src->nodes[i]);
}

int caps_notify_has(const caps_notify_t *nt, const char *node)
{
    for (size_t i = 0; i < nt->n; i++)
        if (!strcmp(nt->nodes[i], node))
            return 1;
    return 0;
}

static void pending_free(pending_t *p)
{
    for (size_t i = 0; i < p->nw; i++) {
        free(p->w[i].owner);
        free(p->w[i].jid);
    }
    free(p->w);
    free(p->id);
    free(p->ver);
    free(p->hash);
}

void caps_free(void)
{
    for (size_t i = 0; i < ncache; i++) {
        free(cache[i].ver);
        caps_notify_clear(&cache[i].nt);
    }
    free(cache);
    cache = NULL;
    ncache = 0;
    for (size_t i = 0; i < npend; i++)
        pending_free(&pend[i]);
    free(pend);
    pend = NULL;
    npend = 0;
}

int caps_of(const xml_node_t *pres, const char **ver, const char **node, const char **hash)
{
    xml_node_t *c = xml_child(pres, NS_CAPS, "c");
    if (!c)
        return -1;
    *ver = xml_attr_get(c, "ver");
    *node = xml_attr_get(c, "node");
    *hash = xml_attr_get(c, "hash");
    if (!*ver || !*node || !**ver)
        return -1;
    return 0;
}

const caps_notify_t *caps_lookup(const char *ver)
{
    for (size_t i = ncache; i-- > 0;)
        if (!strcmp(cache[i].ver, ver))
            return &cache[i].nt;
    return NULL;
}

static void cache_put(const char *ver, const caps_notify_t *nt)
{
    if (caps_lookup(ver))
        return;
    if (ncache >= max_ents) {
        free(cache[0].ver);
        caps_notify_clear(&cache[0].nt);
        memmove(&cache[0], &cache[1], (ncache - 1) * sizeof *cache);
        ncache--;
    }
    cache = xrealloc(cache, (ncache + 1) * sizeof *cache);
    cache[ncache].ver = xstrdup(ver);
    caps_notify_copy(&cache[ncache].nt, nt);
    ncache++;
}

static void add_waiter(pending_t *p, const char *owner, const char *jid)
{
    for (size_t i = 0; i < p->nw; i++)
        if (!strcmp(p->w[i].owner, owner) && !strcmp(p->w[i].jid, jid))
            return;
    if (p->nw >= 64)           /* enough entities waiting on one answer */
        return;
    p->w = xrealloc(p->w, (p->nw + 1) * sizeof *p->w);
    p->w[p->nw].owner = xstrdup(owner);
    p->w[p->nw].jid = xstrdup(jid);
    p->nw++;
}

void caps_request(const char *owner, const char *jid, const char *node, const char *ver, const char *hash)
{
    for (size_t i = 0; i < npend; i++) {
        if (!strcmp(pend[i].ver, ver)) {
            add_waiter(&pend[i], owner, jid);
            return;
        }
    }
    if (npend >= max_ents) {
        pending_free(&pend[0]);
        memmove(&pend[0], &pend[1], (npend - 1) * sizeof *pend);
        npend--;
    }
    char id[48];
    snprintf(id, sizeof id, "weft-caps-%lu", ++next_id);
    pend = xrealloc(pend, (npend + 1) * sizeof *pend);
    pending_t *p = &pend[npend++];
    memset(p, 0, sizeof *p);
    p->id = xstrdup(id);
    p->ver = xstrdup(ver);
    p->hash = xstrdup(hash ? hash : "");
    add_waiter(p, owner, jid);

    xml_node_t *iq = xml_elem_new(NS_CLIENT, "iq");
    xml_attr_set(iq, "type", "get");
    xml_attr_set(iq, "id", id);
    xml_attr_set(iq, "from", owner);
    xml_attr_set(iq, "to", jid);
    xml_node_t *q = xml_add_child(iq, NS_DISCO_INFO, "query");
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_printf(&sb, "%s#%s", node, ver);
    xml_attr_set(q, "node", sb.data);
    strbuf_free(&sb);
    log_debug("event=caps-query jid=%s ver=%s", jid, ver);
    sm_send(iq);
    xml_free(iq);
}

/* The +notify nodes a disco#info answer announces. */
static void notify_of(const xml_node_t *query, caps_notify_t *nt)
{
    size_t sl = strlen(NOTIFY_SUFFIX);
    nt->nodes = NULL;
    nt->n = 0;
    for (xml_node_t *c = xml_child(query, NS_DISCO_INFO, "feature"); c; c = xml_next(c, NS_DISCO_INFO, "feature")) {
        const char *v = xml_attr_get(c, "var");
        size_t l = v ? strlen(v) : 0;
        if (l <= sl || strcmp(v + l - sl, NOTIFY_SUFFIX))
            continue;
        nt->nodes = xrealloc(nt->nodes, (nt->n + 1) * sizeof *nt->nodes);
        nt->nodes[nt->n] = xcalloc(1, l - sl + 1);
        memcpy(nt->nodes[nt->n], v, l - sl);
        nt->n++;
    }
}

int caps_iq_result(const char *owner, const xml_node_t *iq)
{
    const char *id = xml_attr_get(iq, "id");
    if (!id || strncmp(id, "weft-caps-", 10))
        return 0;
    size_t i = 0;
    while (i < npend && strcmp(pend[i].id, id))
        i++;
    if (i == npend)
        return 1;                  /* ours, but given up on */
    pending_t p = pend[i];
    memmove(&pend[i], &pend[i + 1], (npend - i - 1) * sizeof *pend);
    npend--;
    const char *from = xml_attr_get(iq, "from");
    xml_node_t *q = xml_child(iq, NS_DISCO_INFO, "query");
    if (!sm_streq(xml_attr_get(iq, "type"), "result") || !q || !from || !p.nw || strcmp(from, p.w[0].jid) ||
        strcmp(owner, p.w[0].owner)) {
        log_debug("event=caps-answer result=refused ver=%s", p.ver);
        pending_free(&p);
        return 1;
    }
    caps_notify_t nt;
    notify_of(q, &nt);
    int verified = 0;
    if (!strcmp(p.hash, "sha-1")) {
        char *v = caps_hash_ver(q);
        verified = v && !strcmp(v, p.ver);
        free(v);
    }
    if (verified) {
        log_debug("event=caps-answer result=verified jid=%s ver=%s notify=%zu", from, p.ver, nt.n);
        cache_put(p.ver, &nt);
        for (size_t k = 0; k < p.nw; k++)
            if (result_fn)
                result_fn(p.w[k].owner, p.w[k].jid, &nt);
    } else {
        /* Not cached (5.4): only the entity that answered gets what it said. */
        log_info("event=caps-answer result=unverified jid=%s ver=%s hash=%s", from, p.ver, p.hash);
        if (result_fn)
            result_fn(p.w[0].owner, p.w[0].jid, &nt);
    }
    caps_notify_clear(&nt);
    pending_free(&p);
    return 1;
}
