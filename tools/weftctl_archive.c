/* weftctl_archive.c: `weftctl archive delete USER`, which empties a user's
 * message archive (mod_mam, docs/mam.md) in the database.
 *
 * The archive is the user's "mam" collection, one record per message tagged
 * with its contact's bare JID. Its records are read a page at a time to
 * count the messages and contacts for the report, then the collection is
 * emptied in one statement. The user's preferences (collection "mam-prefs")
 * stay. Safe while the sm runs: a message archived meanwhile may survive the
 * delete (run it again), nothing is half-deleted. */
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

static int archive_delete(storage_t *st, const char *bare)
{
    names_t contacts = {0};
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
        for (size_t i = 0; i < res.nrecs; i++)
            if (res.recs[i].tag)
                names_add(&contacts, res.recs[i].tag);
        total += (long)res.nrecs;
        free(after);
        after = res.nrecs ? strdup(res.recs[res.nrecs - 1].key) : NULL;
        size_t got = res.nrecs;
        storage_res_clear(&res);
        if (got < PAGE)
            break;
    }
    free(after);
    if (rc == 0 && storage_del_all(st, bare, "mam") == 0)
        printf("deleted the archive of %s: %ld messages with %zu contacts\n", bare, total,
               contacts.n);
    else
        rc = -1;
    for (size_t i = 0; i < contacts.n; i++)
        free(contacts.v[i]);
    free(contacts.v);
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
