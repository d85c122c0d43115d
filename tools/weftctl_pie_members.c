/* weftctl_pie_members: a PEP node's affiliations and explicit subscriptions
 * in XEP-0227 files (1.1, "PEP node configuration": XEP-0060's owner
 * elements beside the node's <configure/>), read into and written from the
 * node record mod_pep keeps (sm/pubsub_node.c's pn_node_record, its JID maps
 * from sm/pubsub_members.c: linked in, not copied).
 *
 *   <affiliations node=N><affiliation jid=J affiliation=A/>...</affiliations>
 *   <subscriptions node=N><subscription jid=J subscription=S [subid]/>...
 *
 * Import applies the rules the sm applies to the owner's own requests
 * (XEP-0060 8.8, 8.9; sm/pep_subs.c): affiliations by bare JID, the account
 * always the owner, subscriptions by the JID subscribed (bare or full), at
 * most max-affiliations / max-subscriptions per node. A bad JID, a value
 * XEP-0060 does not have, or a list past the limit is an error (nothing is
 * imported); what XEP-0060 has and weft does not (pending or unconfigured
 * subscriptions, subscription options) is left out with a notice, so an
 * import never lets anyone read more than the old server did. A
 * subscription the node's access model and affiliations would refuse (as
 * the sm refuses it: outcast, publish-only, whitelist, no roster entry,
 * presence subscription or allowed roster group in the imported roster) is
 * left out with a notice too.
 *
 * prosody-migrator 0.12 writes each subscription as <subscription jid
 * subscribed='subscribed'/> (its attribute misnamed; Prosody's own reader
 * then drops them): read as 'subscribed'. */
#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "pubsub_node.h"
#include "weftctl_pie.h"

#define PEP_MAX_AFFILIATIONS 256      /* mod_pep max-affiliations default */
#define PEP_MAX_SUBSCRIPTIONS 1000    /* mod_pep max-subscriptions default */

/* ------------------------------------------------------------ import */

int pie_pep_import_affiliations(imp_t *im, pn_node_t *n, const xml_node_t *el)
{
    for (xml_node_t *a = xml_child(el, NULL, NULL); a; a = xml_next(a, NULL, NULL)) {
        if (!pie_ns_is(a, NS_PUBSUB_OWNER, "affiliation"))
            return pie_bad(im, a, "node %s: only <affiliation/> elements belong in <affiliations/>", n->name);
        const char *js = xml_attr_get(a, "jid"), *as = xml_attr_get(a, "affiliation");
        if (!js || !as)
            return pie_bad(im, a, "node %s: an affiliation needs 'jid' and 'affiliation'", n->name);
        int aff = pn_aff_parse(as);
        if (aff < 0)
            return pie_bad(im, a, "node %s: affiliation '%s' of %s is not owner, publisher, publish-only, "
                           "member, none or outcast", n->name, as, js);
        jid_t j;
        jid_err_t e = jid_parse(js, &j);
        if (e != JID_OK)
            return pie_bad(im, a, "node %s: affiliation of '%s': not a JID: %s", n->name, js, jid_strerror(e));
        int rc = 0, had = pn_jidmap_get(&n->affs, j.bare);
        if (!strcmp(j.bare, im->user)) {
            /* mod_pep: the account owns its nodes whatever the list says */
            if (aff != PN_AFF_OWNER)
                pie_note(im, a, "node %s: the account stays the owner of its node, not '%s'", n->name, as);
        } else if (had >= 0 && had != aff) {
            rc = pie_bad(im, a, "node %s: %s is given two affiliations, %s and %s", n->name, j.bare,
                         pn_aff_name((pn_aff_t)had), as);
        } else if (aff != PN_AFF_NONE && had < 0 && n->affs.n >= PEP_MAX_AFFILIATIONS) {
            rc = pie_bad(im, a, "node %s: more than %d affiliations, the most the server keeps "
                         "(pep max-affiliations)", n->name, PEP_MAX_AFFILIATIONS);
        } else if (aff != PN_AFF_NONE) {
            pn_jidmap_set(&n->affs, j.bare, aff);
        }
        jid_clear(&j);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The subscription of bare in the roster imported just before (the record
 * mod_roster keeps): -1 when bare is not in it, else 1 when the contact has
 * a presence subscription from the account (from, both), else 0. With n
 * (a roster node): -1 also when bare is in none of n's allowed groups. */
static int roster_from(imp_t *im, const char *bare, const pn_node_t *n)
{
    char *val = NULL;
    size_t len = 0;
    if (storage_get(im->st, im->user, "roster", bare, &val, &len) != 0)
        return -1;
    char err[128];
    unsigned line = 0;
    xml_node_t *it = pie_parse(val, len, err, sizeof err, &line);
    free(val);
    const char *sub = it ? xml_attr_get(it, "subscription") : NULL;
    int from = sub && (!strcmp(sub, "from") || !strcmp(sub, "both"));
    int grouped = !n;
    for (xml_node_t *g = it && n ? xml_child(it, NULL, "group") : NULL; g && !grouped; g = xml_next(g, NULL, "group")) {
        char *name = xml_text(g);
        grouped = pn_config_has_group(&n->cfg, name);
        free(name);
    }
    xml_free(it);
    return grouped ? from : -1;
}

/* 1 when the sm would let bare read n (sm/mod_pep.c pep_may_read, less the
 * blocklist, which the sm checks at each notification). */
static int may_read(imp_t *im, const pn_node_t *n, const char *bare)
{
    if (!strcmp(bare, im->user))
        return 1;
    int aff = pn_jidmap_get(&n->affs, bare);
    if (aff == PN_AFF_OUTCAST || aff == PN_AFF_PUBLISH_ONLY)
        return 0;
    if (aff == PN_AFF_OWNER || aff == PN_AFF_PUBLISHER || aff == PN_AFF_MEMBER)
        return 1;
    switch (n->cfg.access) {
    case PN_OPEN:
        return 1;
    case PN_PRESENCE:
        return roster_from(im, bare, NULL) == 1;
    case PN_ROSTER:
        return roster_from(im, bare, n) >= 0;
    case PN_WHITELIST:
        return 0;
    }
    return 0;
}

/* The state of a <subscription/>: its 'subscription', or what
 * prosody-migrator 0.12 writes in its place; NULL when there is neither. */
static const char *sub_state(const xml_node_t *s)
{
    const char *state = xml_attr_get(s, "subscription");
    if (!state && xml_attr_get(s, "subscribed") && !strcmp(xml_attr_get(s, "subscribed"), "subscribed"))
        state = "subscribed";
    return state;
}

int pie_pep_import_subscriptions(imp_t *im, pn_node_t *n, const xml_node_t *el)
{
    int options = 0;
    for (xml_node_t *s = xml_child(el, NULL, NULL); s; s = xml_next(s, NULL, NULL)) {
        if (!pie_ns_is(s, NS_PUBSUB_OWNER, "subscription"))
            return pie_bad(im, s, "node %s: only <subscription/> elements belong in <subscriptions/>", n->name);
        const char *js = xml_attr_get(s, "jid"), *state = sub_state(s);
        if (!js || !state)
            return pie_bad(im, s, "node %s: a subscription needs 'jid' and 'subscription'", n->name);
        int sub = !strcmp(state, "subscribed");
        if (!sub && strcmp(state, "none") && strcmp(state, "pending") && strcmp(state, "unconfigured"))
            return pie_bad(im, s, "node %s: subscription '%s' of %s is not none, pending, unconfigured or "
                           "subscribed", n->name, state, js);
        jid_t j;
        jid_err_t e = jid_parse(js, &j);
        if (e != JID_OK)
            return pie_bad(im, s, "node %s: subscription of '%s': not a JID: %s", n->name, js, jid_strerror(e));
        int rc = 0;
        if (!sub && strcmp(state, "none"))
            pie_note(im, s, "node %s: %s not kept (weft's subscriptions are 'subscribed' only, not '%s')",
                     n->name, j.full, state);
        else if (sub && !may_read(im, n, j.bare))
            pie_note(im, s, "node %s: %s not kept (access model '%s' and the node's affiliations do not "
                     "let it subscribe)", n->name, j.full, pn_access_name(n->cfg.access));
        else if (sub && pn_jidmap_get(&n->subs, j.full) < 0 && n->subs.n >= PEP_MAX_SUBSCRIPTIONS)
            rc = pie_bad(im, s, "node %s: more than %d subscriptions, the most the server keeps "
                         "(pep max-subscriptions)", n->name, PEP_MAX_SUBSCRIPTIONS);
        else if (sub) {
            pn_jidmap_set(&n->subs, j.full, 1);   /* several subids: weft has one per JID */
            options |= xml_child(s, NULL, "options") != NULL;
        }
        jid_clear(&j);
        if (rc < 0)
            return rc;
    }
    if (options)
        pie_note(im, el, "node %s: subscription options ignored (weft has none: every notification)", n->name);
    return 0;
}

/* ------------------------------------------------------------ export */

void pie_pep_export_members(exp_t *ex, const pn_node_t *n, xml_node_t *owner)
{
    if (n->affs.n) {
        /* listed as the sm lists them (XEP-0060 8.9.1): the account first */
        xml_node_t *l = xml_add_child(owner, NS_PUBSUB_OWNER, "affiliations");
        xml_attr_set(l, "node", n->name);
        xml_node_t *a = xml_add_child(l, NS_PUBSUB_OWNER, "affiliation");
        xml_attr_set(a, "jid", ex->user);
        xml_attr_set(a, "affiliation", "owner");
        for (size_t i = 0; i < n->affs.n; i++) {
            a = xml_add_child(l, NS_PUBSUB_OWNER, "affiliation");
            xml_attr_set(a, "jid", n->affs.e[i].jid);
            xml_attr_set(a, "affiliation", pn_aff_name((pn_aff_t)n->affs.e[i].val));
        }
        ex->n.pep_affs += (long)n->affs.n;
    }
    if (n->subs.n) {
        xml_node_t *l = xml_add_child(owner, NS_PUBSUB_OWNER, "subscriptions");
        xml_attr_set(l, "node", n->name);
        for (size_t i = 0; i < n->subs.n; i++) {
            xml_node_t *s = xml_add_child(l, NS_PUBSUB_OWNER, "subscription");
            xml_attr_set(s, "jid", n->subs.e[i].jid);
            xml_attr_set(s, "subscription", "subscribed");
        }
        ex->n.pep_subs += (long)n->subs.n;
    }
}
