/* storage: the one interface to users' durable data, SQLite behind it.
 *
 * Two kinds of records: accounts (bare JID → SCRAM keys) and key/value records
 * grouped by owner (a bare JID) and collection (a short name chosen by an sm
 * module: "roster", "offline", "vcard", "private", "blocklist", "last", ...).
 * Values are opaque bytes (modules store serialized XML). Records of a
 * collection list in insertion order.
 *
 * The database runs in WAL mode with synchronous=NORMAL, foreign keys on, a
 * schema version in PRAGMA user_version and migrations applied at open. Every
 * statement is prepared once. Calls are synchronous: a local SQLite write in
 * WAL mode takes microseconds; storage_begin/commit group a module's writes.
 * A write that acknowledges something to a client must have returned 0 before
 * the acknowledgement is sent.
 *
 * Return values: 0 success; 1 "not found" (get) or "already exists" (create);
 * -1 error (logged with the SQLite message). */
#ifndef WEFT_STORAGE_H
#define WEFT_STORAGE_H
#include <stddef.h>

typedef struct storage storage_t;

storage_t *storage_open(const char *path, char *err, size_t errlen);
void storage_close(storage_t *st);
/* Caps SQLite's page cache of this database at about `bytes`. */
void storage_set_cache(storage_t *st, size_t bytes);
int storage_begin(storage_t *st);
int storage_commit(storage_t *st);
int storage_rollback(storage_t *st);

/* Accounts. keys are scram_keys_format() texts; either may be NULL on set. */
int storage_user_create(storage_t *st, const char *bare, const char *sha256, const char *sha1);
/* *sha256 / *sha1 are malloc'd (caller frees); NULL when not stored. */
int storage_user_get(storage_t *st, const char *bare, char **sha256, char **sha1);
int storage_user_set_keys(storage_t *st, const char *bare, const char *sha256, const char *sha1);
/* Deletes the account and every record it owns. 1 if there was no account. */
int storage_user_delete(storage_t *st, const char *bare);
int storage_user_exists(storage_t *st, const char *bare);  /* 1 yes, 0 no, -1 error */
typedef int (*storage_user_fn)(const char *bare, void *arg);  /* non-zero stops */
int storage_user_list(storage_t *st, storage_user_fn fn, void *arg);
int storage_user_count(storage_t *st);

/* Key/value records. *val is malloc'd and NUL-terminated (len excludes it). */
int storage_get(storage_t *st, const char *owner, const char *coll, const char *key,
                char **val, size_t *len);
int storage_put(storage_t *st, const char *owner, const char *coll, const char *key,
                const char *val, size_t len);               /* insert or replace */
int storage_del(storage_t *st, const char *owner, const char *coll, const char *key);
int storage_del_all(storage_t *st, const char *owner, const char *coll);
/* Appends with a fresh key (the record's sequence number, as decimal text). */
int storage_append(storage_t *st, const char *owner, const char *coll, const char *val, size_t len);
typedef int (*storage_rec_fn)(const char *key, const char *val, size_t len, void *arg);
int storage_list(storage_t *st, const char *owner, const char *coll, storage_rec_fn fn, void *arg);
int storage_count(storage_t *st, const char *owner, const char *coll);   /* -1 on error */

#endif
