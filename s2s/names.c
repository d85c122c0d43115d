/* names: the names the router serves to local components (comp.example.org,
 * a MUC or a XEP-0114 bot), learned from its availability notifications
 * (docs/component-protocol.md §7), so that remote servers reach them without
 * the operator listing them in `domains` too. s2s_is_local asks here after
 * `domains`: incoming streams and dialback for such a name are accepted, and
 * outgoing streams may start from it, while it is served.
 *
 * The router announces each (name, instance) slot as up or down and lists
 * every up slot again after each (re)connection; the table is emptied when
 * the link goes down. A name counts while at least one of its slots is up.
 * What can enter is safe by construction: the default route is never
 * announced (so no remote domain can become "local" by being routed to us),
 * this s2s's own instance name and the names in components.exclude are left
 * out, and with components.federate off nothing is learned (a notice names
 * what would have been, and what to add to `domains` instead). */
#include "s2s.h"
#include "jid.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

#define NAME_BUCKETS 256

typedef struct name_slot {
    char *name;               /* prepared domain */
    char *instance;           /* the component that bound it */
    struct name_slot *next;
} name_slot_t;

static name_slot_t *slots[NAME_BUCKETS];
static size_t nslots;

static unsigned names_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NAME_BUCKETS;
}

/* 1 if name is one of the space-separated words of list. */
static int names_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',')
            p++;
        size_t len = strcspn(p, " \t\n,");
        if (len == n && !strncmp(p, name, n))
            return 1;
        p += len;
    }
    return 0;
}

static name_slot_t **names_find(const char *name, const char *instance)
{
    for (name_slot_t **pp = &slots[names_hash(name)]; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->name, name) && (!instance || !strcmp((*pp)->instance, instance)))
            return pp;
    return NULL;
}

int names_served(const char *domain)
{
    return nslots && names_find(domain, NULL) != NULL;
}

void names_update(const char *name, const char *instance, int up)
{
    char *d = jid_prep_domain(name);
    if (!d)
        return;   /* an instance name that is no domain (never addressed from outside) */
    if (names_listed(s2s_config->domains, d)) {
        free(d);   /* local anyway */
        return;
    }
    const char *skip = !strcmp(d, s2s_config->instance) ? "own-instance"
                       : names_listed(s2s_config->components_exclude, d) ? "components.exclude"
                       : NULL;
    if (!skip && !s2s_config->components_federate) {
        if (up)
            log_warn("event=component-name name=%s instance=%s state=up federated=no "
                     "reason=components.federate=false hint=\"add %s to domains for remote servers to reach it\"",
                     d, instance, d);
        free(d);
        return;
    }
    if (skip) {
        if (up)
            log_info("event=component-name name=%s instance=%s state=up federated=no reason=%s", d, instance,
                     skip);
        free(d);
        return;
    }
    name_slot_t **pp = names_find(d, instance);
    if (up && !pp) {
        name_slot_t *e = xcalloc(1, sizeof *e);
        e->name = d;
        e->instance = xstrdup(instance);
        unsigned b = names_hash(d);
        e->next = slots[b];
        slots[b] = e;
        nslots++;
        log_notice("event=component-name name=%s instance=%s state=up federated=yes", d, instance);
        return;
    }
    if (!up && pp) {
        name_slot_t *e = *pp;
        *pp = e->next;
        nslots--;
        log_notice("event=component-name name=%s instance=%s state=down federated=%s", d, instance,
                   names_served(d) ? "yes" : "no");
        free(e->name);
        free(e->instance);
        free(e);
    }
    free(d);
}

void names_clear(void)
{
    for (size_t b = 0; b < NAME_BUCKETS; b++) {
        while (slots[b]) {
            name_slot_t *e = slots[b];
            slots[b] = e->next;
            free(e->name);
            free(e->instance);
            free(e);
        }
    }
    nslots = 0;
}
