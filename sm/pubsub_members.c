/* pubsub_members: a PEP node's affiliations and explicit subscriptions as
 * JID -> value maps. Lookups are linear: the maps are bounded by mod_pep's
 * max-affiliations and max-subscriptions (hundreds), and are read once per
 * request or per notification, never per byte. */
#include "pubsub_members.h"
#include "strbuf.h"
#include <stdlib.h>
#include <string.h>

static const char *const aff_names[] = {"none", "owner", "publisher", "member", "outcast", "publish-only"};

const char *pn_aff_name(pn_aff_t a)
{
    return aff_names[a];
}

int pn_aff_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof aff_names / sizeof *aff_names; i++)
        if (!strcmp(aff_names[i], name))
            return (int)i;
    return -1;
}

static pn_entry_t *find(const pn_jidmap_t *m, const char *jid)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].jid, jid))
            return &m->e[i];
    return NULL;
}

int pn_jidmap_get(const pn_jidmap_t *m, const char *jid)
{
    const pn_entry_t *e = find(m, jid);
    return e ? e->val : -1;
}

void pn_jidmap_set(pn_jidmap_t *m, const char *jid, int val)
{
    pn_entry_t *e = find(m, jid);
    if (e) {
        e->val = val;
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 4;
        m->e = xrealloc(m->e, m->cap * sizeof *m->e);
    }
    m->e[m->n].jid = xstrdup(jid);
    m->e[m->n].val = val;
    m->n++;
}

int pn_jidmap_del(pn_jidmap_t *m, const char *jid)
{
    pn_entry_t *e = find(m, jid);
    if (!e)
        return -1;
    size_t i = (size_t)(e - m->e);
    free(e->jid);
    memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof *m->e);
    m->n--;
    return 0;
}

void pn_jidmap_clear(pn_jidmap_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->e[i].jid);
    free(m->e);
    memset(m, 0, sizeof *m);
}
