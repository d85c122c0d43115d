/* weftctl_pie_pep: a user's PEP nodes (XEP-0163) in XEP-0227 files, read
 * into and written from the records mod_pep keeps.
 *
 * The file (XEP-0227 1.1, section "Personal Eventing Protocol"; what
 * prosody-migrator 0.12 writes for its "pep" store):
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
 *     <configure node=N><x xmlns='jabber:x:data'>node_config fields</x></configure>
 *     [<affiliations node=N/>] [<subscriptions node=N/>]   weftctl_pie_members.c
 *   </pubsub>
 *   <pubsub xmlns='http://jabber.org/protocol/pubsub'>
 *     <items node=N><item id=...>one payload</item>... oldest first</items>
 *   </pubsub>
 * The storage (sm/mod_pep.c's comment, docs/pep.md): collection "pep-node",
 * key = node, value = pn_node_record() of sm/pubsub_node.c (linked in, so the
 * configuration is written and read by the very code the sm uses); collection
 * "pep-item", key = node "\n" id, value = <i xmlns='urn:xmpp:weft:pep:1'
 * node=N> around the <item/>, in publish order (the sequence number is the
 * order the sm loads them in).
 *
 * Configuration fields weft has (pubsub_node.c) are applied, and a value it
 * refuses is an error naming the node and field; other fields are ignored
 * with one notice per node (XEP-0227: importers SHOULD ignore options they
 * do not know), unless their value is what weft does anyway (notifications
 * with payloads, as headlines, published by the owner). Access model
 * 'authorize' narrows who may read rather than be dropped, so an import
 * never opens a node wider than it was: it becomes 'whitelist' (only the
 * owner), with a notice. 'roster' keeps its roster_groups_allowed (none:
 * only the owner and affiliates, as in the sm). A node whose form gives no max_items and that has
 * more items than weft's default (1) keeps them all ('max'). The sm's limits
 * (max-nodes 100, max-item-size 128 KiB by default) are checked as the sm
 * checks a publish; a node keeps its newest max_items items. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pubsub_node.h"
#include "weftctl_pie.h"

#define COLL_NODES "pep-node"          /* mod_pep.c COLL_NODES */
#define COLL_ITEMS "pep-item"          /* mod_pep.c COLL_ITEMS */
#define NS_PEP_RECORD "urn:xmpp:weft:pep:1"
#define PEP_MAX_NODES 100              /* mod_pep max-nodes default */
#define PEP_MAX_ITEM_SIZE (128u * 1024u)   /* mod_pep max-item-size default */
/* A max_items the file may ask for: the sm keeps at most its max-items
 * option (256 by default) of them whatever the record says. */
#define PEP_ITEMS_LIMIT 1000000

/* ------------------------------------------------------------ import */

typedef struct pnode {
    pn_node_t *n;
    const xml_node_t *configure, *items;   /* where they were given */
    const xml_node_t *affiliations, *subscriptions;
    int max_given;                         /* the form had pubsub#max_items */
} pnode_t;

typedef struct nodes {
    pnode_t *v;
    size_t n;
} nodes_t;

static pnode_t *nodes_find(nodes_t *ns, const char *name)
{
    for (size_t i = 0; i < ns->n; i++)
        if (!strcmp(ns->v[i].n->name, name))
            return &ns->v[i];
    return NULL;
}

static pnode_t *nodes_add(nodes_t *ns, const char *name)
{
    pn_config_t c;
    pn_config_default(&c);
    ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof *ns->v);
    pnode_t *p = &ns->v[ns->n++];
    memset(p, 0, sizeof *p);
    p->n = pn_node_new(name, &c);
    pn_config_clear(&c);
    return p;
}

static void nodes_free(nodes_t *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        pn_node_free(ns->v[i].n);
    free(ns->v);
}

/* The node attribute of el: a name mod_pep can key records with. */
static const char *node_name(imp_t *im, const xml_node_t *el)
{
    const char *n = xml_attr_get(el, "node");
    if (!n || !*n) {
        pie_bad(im, el, "no 'node' attribute");
        return NULL;
    }
    if (strchr(n, '\n')) {
        pie_bad(im, el, "node '%s': a line break in a node name", n);
        return NULL;
    }
    return n;
}

static int field_known(const char *var)
{
    static const char *const known[] = {
        "pubsub#access_model", "pubsub#max_items", "pubsub#persist_items",
        "pubsub#send_last_published_item", "pubsub#notify_retract", "pubsub#notify_delete",
        "pubsub#title", "pubsub#roster_groups_allowed",
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(var, known[i]))
            return 1;
    return 0;
}

static char *field_value(const xml_node_t *f)
{
    xml_node_t *v = xml_child(f, NS_DATA, "value");
    return v ? xml_text(v) : xstrdup("");
}

/* Fields weft has no setting for whose value is what weft does anyway:
 * nothing is lost, nothing to tell. */
static int field_as_weft(const char *var, const char *v)
{
    static const struct { const char *var, *v1, *v2; } same[] = {
        {"pubsub#deliver_notifications", "1", "true"},
        {"pubsub#deliver_payloads", "1", "true"},
        {"pubsub#notification_type", "headline", NULL},
        {"pubsub#publish_model", "publishers", NULL},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (!strcmp(var, same[i].var))
            return !strcmp(v, same[i].v1) || (same[i].v2 && !strcmp(v, same[i].v2));
    return 0;
}

/* One <field/> applied to c through pubsub_node.c's own form code. */
static int apply_one(imp_t *im, const xml_node_t *conf, const char *node, const xml_node_t *f,
                     pn_config_t *c)
{
    xml_node_t *x = xml_elem_new(NS_DATA, "x");
    xml_append(x, xml_copy(f));
    const char *bad = NULL;
    int r = pn_config_apply(c, x, PEP_ITEMS_LIMIT, &bad);
    xml_free(x);
    if (r == 0)
        return 0;
    char *v = field_value(f);
    pie_bad(im, conf, "node %s: %s '%s' is not a value weft accepts (docs/pep.md)", node,
            xml_attr_get(f, "var"), v);
    free(v);
    return -1;
}

/* The node's configuration from its <configure/> form. */
static int import_configure(imp_t *im, const xml_node_t *conf, const char *node, pn_config_t *c,
                            int *max_given)
{
    const xml_node_t *x = xml_child(conf, NS_DATA, "x");
    strbuf_t ignored;
    strbuf_init(&ignored);
    int authorize = 0, rc = 0;
    for (xml_node_t *f = x ? xml_child(x, NS_DATA, "field") : NULL; f && rc == 0;
         f = xml_next(f, NS_DATA, "field")) {
        const char *var = xml_attr_get(f, "var");
        /* A field without a value says nothing (prosody-migrator writes one
         * for each setting a node left at the default). */
        if (!var || !strcmp(var, "FORM_TYPE") || !xml_child(f, NS_DATA, "value"))
            continue;
        char *v = field_value(f);
        if (!field_known(var)) {
            if (!field_as_weft(var, v))
                strbuf_printf(&ignored, "%s%s", ignored.len ? ", " : "", var);
            free(v);
            continue;
        }
        *max_given |= !strcmp(var, "pubsub#max_items");
        if (!strcmp(var, "pubsub#access_model") && !strcmp(v, "authorize"))
            authorize = 1;
        else
            rc = apply_one(im, conf, node, f, c);
        free(v);
    }
    if (rc == 0 && authorize) {
        pie_note(im, conf, "node %s: access model 'authorize' is not one weft has: the node is "
                 "'whitelist' (its owner only)", node);
        c->access = PN_WHITELIST;
    }
    if (rc == 0 && ignored.len)
        pie_note(im, conf, "node %s: fields weft has no setting for, ignored: %s", node, ignored.data);
    strbuf_free(&ignored);
    return rc;
}

static int import_item(imp_t *im, pnode_t *p, const xml_node_t *it)
{
    const char *node = p->n->name;
    if (!pie_ns_is(it, NS_PUBSUB, "item"))
        return pie_bad(im, it, "node %s: only <item/> elements belong in <items/>", node);
    const char *id = xml_attr_get(it, "id");
    if (!id || !*id || strchr(id, '\n'))
        return pie_bad(im, it, "node %s: an item needs an 'id' (without line breaks)", node);
    if (pn_node_find(p->n, id))
        return pie_bad(im, it, "node %s: item '%s' given twice", node, id);
    if (pie_count_elems(it) != 1)
        return pie_bad(im, it, "node %s: item '%s' holds %d payload elements, not one", node, id,
                       pie_count_elems(it));
    xml_node_t *item = xml_elem_new(NS_PUBSUB, "item");
    xml_attr_set(item, "id", id);
    xml_append(item, xml_copy(xml_child(it, NULL, NULL)));
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(item, "", &sb);   /* measured as mod_pep measures a publish */
    size_t size = sb.len;
    strbuf_free(&sb);
    if (size > PEP_MAX_ITEM_SIZE) {
        xml_free(item);
        return pie_bad(im, it, "node %s: item '%s' is %zu bytes, over the %u the server takes "
                       "(pep max-item-size)", node, id, size, PEP_MAX_ITEM_SIZE);
    }
    pn_node_put(p->n, id, item);
    return 0;
}

/* The node named by el (<affiliations/>, <subscriptions/>, <items/>), added
 * with weft's default configuration when the file has no <configure/> for
 * it (XEP-0227 wants one per node; Prosody reads such a node too). */
static pnode_t *node_of(imp_t *im, nodes_t *ns, const xml_node_t *el, const char *name)
{
    pnode_t *p = nodes_find(ns, name);
    if (!p) {
        pie_note(im, el, "node %s has no <configure/>: it gets weft's default configuration", name);
        p = nodes_add(ns, name);
    }
    return p;
}

/* The owner elements of kind what ("affiliations", "subscriptions"), at most
 * one per node, read into their nodes. */
static int read_members(imp_t *im, const xml_node_t *owner, nodes_t *ns, const char *what)
{
    int affs = !strcmp(what, "affiliations");
    for (xml_node_t *c = xml_child(owner, NS_PUBSUB_OWNER, what); c; c = xml_next(c, NS_PUBSUB_OWNER, what)) {
        const char *name = node_name(im, c);
        if (!name)
            return -1;
        pnode_t *p = node_of(im, ns, c, name);
        const xml_node_t **seen = affs ? &p->affiliations : &p->subscriptions;
        if (*seen)
            return pie_bad(im, c, "the %s of node %s are given twice", what, name);
        *seen = c;
        if ((affs ? pie_pep_import_affiliations(im, p->n, c) : pie_pep_import_subscriptions(im, p->n, c)) < 0)
            return -1;
    }
    return 0;
}

/* Collects the nodes of both <pubsub/> elements into ns: configurations
 * first, then affiliations, then subscriptions (which the two decide), then
 * items, whatever their order in the file. */
static int read_nodes(imp_t *im, const xml_node_t *owner, const xml_node_t *items, nodes_t *ns)
{
    for (xml_node_t *c = owner ? xml_child(owner, NULL, NULL) : NULL; c; c = xml_next(c, NULL, NULL)) {
        const char *name = node_name(im, c);
        if (!name)
            return -1;
        if (pie_ns_is(c, NS_PUBSUB_OWNER, "affiliations") || pie_ns_is(c, NS_PUBSUB_OWNER, "subscriptions"))
            continue;
        if (!pie_ns_is(c, NS_PUBSUB_OWNER, "configure")) {
            pie_note(im, c, "node %s: not kept (not a node's configuration, affiliations or subscriptions)",
                     name);
            im->n.skipped++;
            continue;
        }
        pnode_t *p = nodes_find(ns, name);
        if (p)
            return pie_bad(im, c, "node %s configured twice", name);
        p = nodes_add(ns, name);
        p->configure = c;
        if (import_configure(im, c, name, &p->n->cfg, &p->max_given) < 0)
            return -1;
    }
    if (owner && (read_members(im, owner, ns, "affiliations") < 0 ||
                  read_members(im, owner, ns, "subscriptions") < 0))
        return -1;
    for (xml_node_t *c = items ? xml_child(items, NULL, NULL) : NULL; c; c = xml_next(c, NULL, NULL)) {
        if (!pie_ns_is(c, NS_PUBSUB, "items"))
            return pie_bad(im, c, "only <items node='...'/> elements belong here");
        const char *name = node_name(im, c);
        if (!name)
            return -1;
        pnode_t *p = node_of(im, ns, c, name);
        if (p->items)
            return pie_bad(im, c, "the items of node %s are given twice", name);
        p->items = c;
        for (xml_node_t *it = xml_child(c, NULL, NULL); it; it = xml_next(it, NULL, NULL))
            if (import_item(im, p, it) < 0)
                return -1;
        /* No max_items in the file: it keeps all its items, not weft's default 1. */
        if (!p->max_given && p->n->nitems > pn_config_keep(&p->n->cfg, PEP_ITEMS_LIMIT)) {
            pie_note(im, c, "node %s: no pubsub#max_items given for its %zu items: 'max'", name,
                     p->n->nitems);
            p->n->cfg.max_items = PN_MAX_ITEMS_MAX;
        }
    }
    return 0;
}

static int put_node(imp_t *im, const pnode_t *p)
{
    const pn_node_t *n = p->n;
    const xml_node_t *where = p->configure ? p->configure : p->items;
    if (!where)
        where = p->affiliations ? p->affiliations : p->subscriptions;
    strbuf_t sb;
    strbuf_init(&sb);
    xml_node_t *r = pn_node_record(n);
    xml_serialize(r, "", &sb);
    xml_free(r);
    int rc = storage_put(im->st, im->user, COLL_NODES, n->name, sb.data, sb.len);
    for (size_t i = 0; rc == 0 && i < n->nitems; i++) {
        r = xml_elem_new(NS_PEP_RECORD, "i");
        xml_attr_set(r, "node", n->name);
        xml_append(r, xml_copy(n->items[i].item));
        strbuf_reset(&sb);
        xml_serialize(r, "", &sb);
        xml_free(r);
        strbuf_t key;
        strbuf_init(&key);
        strbuf_printf(&key, "%s\n%s", n->name, n->items[i].id);
        rc = storage_put(im->st, im->user, COLL_ITEMS, key.data, sb.data, sb.len);
        strbuf_free(&key);
    }
    strbuf_free(&sb);
    if (rc != 0)
        return pie_bad(im, where, "node %s: storage error", n->name);
    im->n.pep_nodes++;
    im->n.pep_items += (long)n->nitems;
    im->n.pep_affs += (long)n->affs.n;
    im->n.pep_subs += (long)n->subs.n;
    return 0;
}

int pie_import_pep(imp_t *im, const xml_node_t *user)
{
    const xml_node_t *owner = xml_child(user, NS_PUBSUB_OWNER, "pubsub");
    const xml_node_t *items = xml_child(user, NS_PUBSUB, "pubsub");
    if (owner && xml_next(owner, NS_PUBSUB_OWNER, "pubsub"))
        return pie_bad(im, xml_next(owner, NS_PUBSUB_OWNER, "pubsub"), "a second <pubsub/> of node configurations");
    if (items && xml_next(items, NS_PUBSUB, "pubsub"))
        return pie_bad(im, xml_next(items, NS_PUBSUB, "pubsub"), "a second <pubsub/> of items");
    nodes_t ns = {0};
    int rc = read_nodes(im, owner, items, &ns);
    if (rc == 0 && ns.n > PEP_MAX_NODES)
        rc = pie_bad(im, owner ? owner : items, "%zu nodes, over the %d the server allows (pep max-nodes)",
                     ns.n, PEP_MAX_NODES);
    for (size_t i = 0; rc == 0 && i < ns.n; i++) {
        pn_node_t *n = ns.v[i].n;
        pn_node_trim(n, pn_config_keep(&n->cfg, PEP_ITEMS_LIMIT), NULL, NULL);
        rc = put_node(im, &ns.v[i]);
    }
    nodes_free(&ns);
    return rc;
}

/* ------------------------------------------------------------ export */

typedef struct exp_nodes {
    exp_t *ex;
    pn_node_t **v;
    size_t n;
} exp_nodes_t;

static pn_node_t *exp_find(exp_nodes_t *en, const char *name)
{
    for (size_t i = 0; i < en->n; i++)
        if (!strcmp(en->v[i]->name, name))
            return en->v[i];
    return NULL;
}

static int got_node(const char *key, const char *val, size_t len, void *arg)
{
    exp_nodes_t *en = arg;
    xml_node_t *r = pie_parse_record(en->ex, COLL_NODES, key, val, len);
    if (!r)
        return 0;
    pn_node_t *n = pn_node_from_record(r);
    xml_free(r);
    if (!n) {
        fprintf(stderr, "weftctl: user %s: %s record '%s' is not a node: left out\n", en->ex->user,
                COLL_NODES, key);
        en->ex->bad++;
    }
    if (n && exp_find(en, n->name)) {
        pn_node_free(n);
        n = NULL;
    }
    if (n) {
        en->v = xrealloc(en->v, (en->n + 1) * sizeof *en->v);
        en->v[en->n++] = n;
    }
    return 0;
}

/* Items in sequence order, as the sm loads them; items of no node are left
 * out, as the sm leaves them. */
static int got_item(const char *key, const char *val, size_t len, void *arg)
{
    exp_nodes_t *en = arg;
    xml_node_t *r = pie_parse_record(en->ex, COLL_ITEMS, key, val, len);
    if (!r)
        return 0;
    const char *node = xml_attr_get(r, "node");
    xml_node_t *item = xml_child(r, NS_PUBSUB, "item");
    const char *id = item ? xml_attr_get(item, "id") : NULL;
    pn_node_t *n = node && !strcmp(r->ns, NS_PEP_RECORD) ? exp_find(en, node) : NULL;
    if (n && id) {
        char *idc = xstrdup(id);
        xml_detach(item);
        pn_node_put(n, idc, item);
        free(idc);
    }
    xml_free(r);
    return 0;
}

int pie_export_pep(storage_t *st, exp_t *ex, const char *bare, xml_node_t *user)
{
    exp_nodes_t en = {ex, NULL, 0};
    int rc = 0;
    if (storage_list(st, bare, COLL_NODES, got_node, &en) < 0 ||
        (en.n && storage_list(st, bare, COLL_ITEMS, got_item, &en) < 0))
        rc = -1;
    if (rc == 0 && en.n) {
        xml_node_t *owner = xml_add_child(user, NS_PUBSUB_OWNER, "pubsub");
        xml_node_t *items = xml_add_child(user, NS_PUBSUB, "pubsub");
        for (size_t i = 0; i < en.n; i++) {
            pn_node_t *n = en.v[i];
            /* what the sm would serve: its newest max_items */
            pn_node_trim(n, pn_config_keep(&n->cfg, PEP_ITEMS_LIMIT), NULL, NULL);
            xml_node_t *conf = xml_add_child(owner, NS_PUBSUB_OWNER, "configure");
            xml_attr_set(conf, "node", n->name);
            xml_append(conf, pn_config_form(&n->cfg));
            pie_pep_export_members(ex, n, owner);
            xml_node_t *its = xml_add_child(items, NS_PUBSUB, "items");
            xml_attr_set(its, "node", n->name);
            for (size_t k = 0; k < n->nitems; k++)
                xml_append(its, xml_copy(n->items[k].item));
            ex->n.pep_nodes++;
            ex->n.pep_items += (long)n->nitems;
        }
    }
    for (size_t i = 0; i < en.n; i++)
        pn_node_free(en.v[i]);
    free(en.v);
    return rc;
}
