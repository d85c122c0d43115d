/* weftctl_archive.c: `weftctl archive delete USER`, which empties a user's
 * message archive (mod_mam, docs/mam.md) in the database.
 *
 * The archive is the user's "mam" collection and one "mam:<contact bare JID>"
 * collection per contact holding the same records. Storage has no list of a
 * user's collections, so the contacts are read from the records of "mam"
 * (each record's header line names its contact), a page at a time; then
 * every one of those collections is emptied in one transaction. The user's
 * preferences (collection "mam-prefs") stay. Safe while the sm runs: a
 * message archived meanwhile may survive the delete (run it again), nothing
 * is half-deleted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"
#include "weftctl.h"

#define PAGE 1000

typedef struct names {
    char **v;
    size_t n;
} names_t;

static void names_add(names_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], name))
            return;
    s->v = realloc(s->v, (s->n + 1) * sizeof *s->v);
    if (!s->v)
        abort();
    s->v[s->n++] = strdup(name);
}

/* The contact's bare JID from a record's header "<stamp> <i|o> <JID>\n...". */
static char *record_contact(const char *val, size_t len)
{
    const char *nl = memchr(val, '\n', len);
    const char *sp = nl ? memchr(val, ' ', (size_t)(nl - val)) : NULL;
    if (!sp || nl - sp < 4)
        return NULL;
    size_t n = (size_t)(nl - (sp + 3));
    char *full = malloc(n + 1);
    if (!full)
        abort();
    memcpy(full, sp + 3, n);
    full[n] = '\0';
    char *bare = jid_bare_of(full);
    free(full);
    return bare;
}

static int archive_delete(storage_t *st, const char *bare)
{
    names_t colls = {0};
    char *after = NULL;
    long total = 0;
    int rc = 0;
    for (;;) {
        storage_range_t q = {0};
        q.after = after;
        q.limit = PAGE;
        storage_res_t res = {0};
        if (storage_range(st, bare, "mam", &q, &res) != 0) {
            storage_res_clear(&res);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < res.nrecs; i++) {
            char *c = record_contact(res.recs[i].val, res.recs[i].len);
            if (c) {
                char coll[3200];
                snprintf(coll, sizeof coll, "mam:%s", c);
                names_add(&colls, coll);
                free(c);
            }
        }
        total += (long)res.nrecs;
        free(after);
        after = res.nrecs ? strdup(res.recs[res.nrecs - 1].key) : NULL;
        size_t got = res.nrecs;
        storage_res_clear(&res);
        if (got < PAGE)
            break;
    }
    free(after);
    if (rc == 0 && storage_begin(st) == 0) {
        for (size_t i = 0; i < colls.n && rc == 0; i++)
            rc = storage_del_all(st, bare, colls.v[i]) < 0 ? -1 : 0;
        if (rc == 0)
            rc = storage_del_all(st, bare, "mam") < 0 ? -1 : 0;
        if (rc == 0 && storage_commit(st) == 0) {
            printf("deleted the archive of %s: %ld messages with %zu contacts\n", bare, total, colls.n);
        } else {
            storage_rollback(st);
            rc = -1;
        }
    } else {
        rc = -1;
    }
    for (size_t i = 0; i < colls.n; i++)
        free(colls.v[i]);
    free(colls.v);
    return rc;
}

int weftctl_archive(const char *url, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[0], "delete") != 0)
        return XIT_USAGE;
    jid_t j;
    if (weftctl_parse_user(argv[1], &j) < 0)
        return XIT_USAGE;
    storage_t *st = weftctl_open_db(url, 0);
    if (!st) {
        jid_clear(&j);
        return XIT_STORAGE;
    }
    int rc;
    int exists = storage_user_exists(st, j.bare);
    if (exists < 0) {
        rc = XIT_STORAGE;
    } else if (!exists) {
        fprintf(stderr, "weftctl: %s does not exist\n", j.bare);
        rc = XIT_EXISTS;
    } else {
        rc = archive_delete(st, j.bare) == 0 ? XIT_OK : XIT_STORAGE;
    }
    storage_close(st);
    jid_clear(&j);
    return rc;
}
