/* weftctl_pie.h: what the files of `weftctl import` / `weftctl export`
 * (XEP-0227, the Portable Import/Export format) share:
 *   weftctl_xep0227.c  the document, accounts, roster, vCard, private XML,
 *                      offline messages, blocklist; the commands themselves
 *   weftctl_pie_pep.c  PEP nodes: configuration and items (mod_pep's records)
 *   weftctl_pie_members.c  a PEP node's affiliations and subscriptions
 *   weftctl_pie_mam.c  the message archive (mod_mam's records)
 * An import runs in one transaction that any error rolls back; every error
 * names the file, line, user and element (pie_bad). */
#ifndef WEFT_WEFTCTL_PIE_H
#define WEFT_WEFTCTL_PIE_H
#include <stdio.h>

#include "storage.h"
#include "xml.h"

#define NS_PIE "urn:xmpp:pie:0"
#define NS_PIE_SCRAM "urn:xmpp:pie:0#scram"
#define NS_PIE_MAM "urn:xmpp:pie:0#mam"
#define NS_CLIENT "jabber:client"

typedef struct counts {
    long users, roster, pending, vcards, privates, offline, blocked, skipped;
    long pep_nodes, pep_items, pep_affs, pep_subs, archived;
} counts_t;

typedef struct imp {
    storage_t *st;
    const char *file;
    const char *user;   /* bare JID being imported, for messages */
    counts_t n;
} imp_t;

typedef struct exp {
    const char *user;
    xml_node_t *parent;   /* where list callbacks add */
    counts_t n;
    int bad;              /* records left out as unreadable */
} exp_t;

/* Says on stderr what is wrong with element el of the current user (file,
 * line, user, element, then the message); returns -1. */
int pie_bad(const imp_t *im, const xml_node_t *el, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Says on stderr that el was not imported and why (a notice, not an error). */
void pie_note(const imp_t *im, const xml_node_t *el, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 1 when el is the element {ns}name. */
int pie_ns_is(const xml_node_t *el, const char *ns, const char *name);
/* Number of element children of el. */
int pie_count_elems(const xml_node_t *el);
/* A document (or a stored record) parsed with limits that fit its size. */
xml_node_t *pie_parse(const char *val, size_t len, char *err, size_t errlen, unsigned *line);
/* A stored record parsed; NULL after reporting it (left out of the export). */
xml_node_t *pie_parse_record(exp_t *ex, const char *coll, const char *key, const char *val,
                             size_t len);

/* weftctl_pie_pep.c: the user's <pubsub xmlns='...#owner'> (node
 * configurations) and <pubsub xmlns='...pubsub'> (items), read together. */
int pie_import_pep(imp_t *im, const xml_node_t *user);
/* Adds both <pubsub/> elements to user; -1 on a storage error. */
int pie_export_pep(storage_t *st, exp_t *ex, const char *bare, xml_node_t *user);

/* weftctl_pie_members.c: a node's <affiliations/> and <subscriptions/>
 * (XEP-0060 owner elements) into n; the subscriptions are checked against
 * n's configuration and affiliations, so read them after both. -1 after
 * pie_bad. */
struct pn_node;
int pie_pep_import_affiliations(imp_t *im, struct pn_node *n, const xml_node_t *el);
int pie_pep_import_subscriptions(imp_t *im, struct pn_node *n, const xml_node_t *el);
/* Adds n's <affiliations/> (the account first, as owner) and
 * <subscriptions/> to owner, each when n has any. */
void pie_pep_export_members(exp_t *ex, const struct pn_node *n, xml_node_t *owner);

/* weftctl_pie_mam.c: one <archive xmlns='urn:xmpp:pie:0#mam'>. */
int pie_import_archive(imp_t *im, const xml_node_t *archive);
/* Writes the archive of bare to out as <archive/> (nothing when it is
 * empty), a page of records at a time: an archive may be far larger than
 * everything else a user has. -1 on a storage error. */
int pie_export_archive(storage_t *st, exp_t *ex, const char *bare, FILE *out);

#endif
