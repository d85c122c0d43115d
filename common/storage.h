/* storage: the one interface to users' durable data, with drivers behind it.
 *
 * A storage is opened from a URL-like setting whose scheme names the driver
 * (common/storage.c looks it up, OpenSMTPD table.c style):
 *   sqlite:var/weft.db, sqlite:///abs/path.db, or a bare path  → storage_sqlite.c
 *   postgresql://user@host:port/db, postgres://...,
 *   postgresql:host=... dbname=... (libpq conninfo)            → storage_pgsql.c
 *
 * Two kinds of records: accounts (bare JID → SCRAM keys) and records grouped
 * by owner (a bare JID) and collection (a short name chosen by an sm module:
 * "roster", "offline", "vcard", ...). Each record has a key (unique in its
 * collection), an opaque value (bytes), a sequence number (insertion order,
 * unique in the database, never reused) and a stamp (microseconds since the
 * epoch of its last write). A record may also carry a tag (short text, e.g.
 * the contact of an archived message): a range can be restricted to one tag
 * through an index of its own, so one record serves both "the whole
 * collection" and "the records tagged X" (docs/storage.md, "Tags").
 *
 * Every operation exists in two forms:
 *  - asynchronous, storage_X_async(..., cb, arg): cb(res, arg) runs once
 *    with the result. PostgreSQL calls it later from the event loop; SQLite
 *    calls it before the _async call returns. Callers must accept both.
 *    Arguments are copied: nothing passed needs to outlive the call.
 *  - blocking, storage_X(...): runs the storage's event loop until the
 *    result is there. For tools (weftctl), tests, and the sm while it runs on
 *    SQLite only (where nothing waits). On an asynchronous driver it must
 *    not be called from inside that loop's callbacks: libevent cannot run a
 *    loop from within itself, and storage panics (abort) rather than spin.
 * Operations run one after another in submission order on one connection: a
 * storage_begin covers every operation submitted until its commit/rollback,
 * whoever submitted it.
 *
 * Return values (and res->status): 0 success; 1 "not found" (get, del,
 * user_get, user_set_keys, user_delete, a range's after/before key) or
 * "already exists" (user_create); -1 error (logged, with the database's
 * message, never keys or values). */
#ifndef WEFT_STORAGE_H
#define WEFT_STORAGE_H
#include <stddef.h>
#include <stdint.h>

struct event_base;
typedef struct storage storage_t;

/* One record as a list, range or scan gives it. Pointers belong to the
 * result. val is NUL-terminated (len excludes it) and may hold NUL bytes. */
typedef struct storage_rec {
    int64_t seq;
    int64_t stamp;         /* microseconds since the epoch */
    char *owner, *coll;    /* set by scan only (NULL elsewhere) */
    char *key;
    char *tag;             /* NULL when the record has none */
    char *val;
    size_t len;
} storage_rec_t;

/* A result, valid during the callback (blocking forms copy what they need).
 * A callback may keep a string by setting its pointer to NULL. */
typedef struct storage_res {
    int status;              /* 0, 1, -1 as above */
    int64_t n;               /* count, user_count, append: new seq; exists: 1/0 */
    char *val;               /* get: the value (NUL-terminated) */
    size_t len;
    char *sha256, *sha1;     /* user_get: the keys, NULL when not stored */
    int64_t created;         /* user_get: Unix time of creation */
    storage_rec_t *recs;     /* list, range, scan */
    size_t nrecs;
    char **names;            /* user_list: bare JIDs, sorted */
    size_t nnames;
} storage_res_t;

typedef void (*storage_cb)(storage_res_t *res, void *arg);

/* A range over one collection. Order is by seq, or by (stamp, seq) with
 * by_stamp. after/before name records by key and bound the range exclusively
 * in that order (a key that names no record makes the range fail with 1);
 * since/until bound stamps inclusively (0: unbounded). reverse lists from the
 * end (newest first) — a page before X is {before = X, reverse = 1}. limit 0
 * is no limit. tag (non-NULL) keeps only the records with that tag; by_stamp
 * ranges are then one index scan however large the rest of the collection
 * is (by seq they are sorted after filtering). */
typedef struct storage_range {
    int by_stamp;
    int reverse;
    const char *tag;
    const char *after;
    const char *before;
    int64_t since, until;
    size_t limit;
} storage_range_t;

/* base: the loop asynchronous completions run on; NULL makes a private one
 * (tools, tests). err gets a one-line reason on failure. */
storage_t *storage_open(const char *url, struct event_base *base, char *err, size_t errlen);
void storage_close(storage_t *st);
const char *storage_driver_name(const storage_t *st);   /* "sqlite", "postgresql" */
/* 1 when completions come later from the loop (a network database). */
int storage_is_async(const storage_t *st);
struct event_base *storage_base(const storage_t *st);
/* Caps SQLite's page cache at about `bytes`; other drivers ignore it. */
void storage_set_cache(storage_t *st, size_t bytes);
/* Runs the loop until every submitted operation has completed. */
void storage_drain(storage_t *st);
int64_t storage_now_us(void);
/* Registers (or finds) the request latency histogram that every request
 * fills (weft_storage_request_seconds), so it is listed before the first. */
struct metrics_family *storage_metrics_register(void);

/* Transactions (they do not nest). */
int storage_begin(storage_t *st);
int storage_commit(storage_t *st);
int storage_rollback(storage_t *st);     /* nothing open: does nothing */
void storage_begin_async(storage_t *st, storage_cb cb, void *arg);
void storage_commit_async(storage_t *st, storage_cb cb, void *arg);
void storage_rollback_async(storage_t *st, storage_cb cb, void *arg);

/* Accounts. keys are scram_keys_format() texts; either may be NULL on set. */
int storage_user_create(storage_t *st, const char *bare, const char *sha256, const char *sha1);
/* *sha256 / *sha1 are malloc'd (caller frees); NULL when not stored. */
int storage_user_get(storage_t *st, const char *bare, char **sha256, char **sha1);
/* Both keys are replaced: a NULL clears that key. */
int storage_user_set_keys(storage_t *st, const char *bare, const char *sha256, const char *sha1);
/* Deletes the account and every record it owns, atomically. 1: no account. */
int storage_user_delete(storage_t *st, const char *bare);
int storage_user_exists(storage_t *st, const char *bare);  /* 1 yes, 0 no, -1 error */
typedef int (*storage_user_fn)(const char *bare, void *arg);  /* non-zero stops */
int storage_user_list(storage_t *st, storage_user_fn fn, void *arg);
int storage_user_count(storage_t *st);
/* Creates an account with its creation time as given (weftctl migrate). */
int storage_user_import(storage_t *st, const char *bare, const char *sha256, const char *sha1,
                        int64_t created);

void storage_user_create_async(storage_t *st, const char *bare, const char *sha256,
                               const char *sha1, storage_cb cb, void *arg);
void storage_user_get_async(storage_t *st, const char *bare, storage_cb cb, void *arg);
void storage_user_set_keys_async(storage_t *st, const char *bare, const char *sha256,
                                 const char *sha1, storage_cb cb, void *arg);
void storage_user_delete_async(storage_t *st, const char *bare, storage_cb cb, void *arg);
void storage_user_exists_async(storage_t *st, const char *bare, storage_cb cb, void *arg);
void storage_user_list_async(storage_t *st, storage_cb cb, void *arg);
void storage_user_count_async(storage_t *st, storage_cb cb, void *arg);

/* Records. *val is malloc'd and NUL-terminated (len excludes it). */
int storage_get(storage_t *st, const char *owner, const char *coll, const char *key,
                char **val, size_t *len);
/* Insert or replace; a replaced record keeps its seq and takes a new stamp
 * (and loses any tag). */
int storage_put(storage_t *st, const char *owner, const char *coll, const char *key,
                const char *val, size_t len);
/* As storage_put, the record tagged with tag (NULL: none). */
int storage_put_tag(storage_t *st, const char *owner, const char *coll, const char *key,
                    const char *tag, const char *val, size_t len);
/* storage_put_tag with the record's stamp given (µs since the epoch) instead
 * of the time of the write: data that carries its own time, such as an
 * imported message archive (weftctl import), whose ranges by_stamp must
 * follow it. */
int storage_put_at(storage_t *st, const char *owner, const char *coll, const char *key,
                   const char *tag, const char *val, size_t len, int64_t stamp);
int storage_del(storage_t *st, const char *owner, const char *coll, const char *key);
int storage_del_all(storage_t *st, const char *owner, const char *coll);
/* Appends with a fresh key: the record's sequence number as decimal text,
 * also returned in *seq (may be NULL). */
int storage_append(storage_t *st, const char *owner, const char *coll, const char *val,
                   size_t len, int64_t *seq);
typedef int (*storage_rec_fn)(const char *key, const char *val, size_t len, void *arg);
/* The whole collection in seq order; fn's non-zero return stops and is returned. */
int storage_list(storage_t *st, const char *owner, const char *coll, storage_rec_fn fn, void *arg);
int storage_count(storage_t *st, const char *owner, const char *coll);   /* -1 on error */
/* A range (see storage_range_t) into *res, which the caller frees with
 * storage_res_clear. Returns res->status. */
int storage_range(storage_t *st, const char *owner, const char *coll, const storage_range_t *q,
                  storage_res_t *res);
/* Every record of the database with seq > after_seq, in seq order, at most
 * limit (owner and coll set): how weftctl migrate pages through a database. */
int storage_scan(storage_t *st, int64_t after_seq, size_t limit, storage_res_t *res);
/* Writes a record exactly as given (seq, stamp, key, tag): weftctl migrate, into
 * an empty database. storage_import_done then moves the driver's sequence
 * past every imported seq. */
int storage_import(storage_t *st, const char *owner, const char *coll, const storage_rec_t *rec);
int storage_import_done(storage_t *st);
/* A round trip to the database; with delay_ms the database itself waits that
 * long first (PostgreSQL pg_sleep; SQLite ignores it). Health checks, tests. */
int storage_ping(storage_t *st, int delay_ms);

void storage_get_async(storage_t *st, const char *owner, const char *coll, const char *key,
                       storage_cb cb, void *arg);
void storage_put_async(storage_t *st, const char *owner, const char *coll, const char *key,
                       const char *val, size_t len, storage_cb cb, void *arg);
void storage_put_tag_async(storage_t *st, const char *owner, const char *coll, const char *key,
                           const char *tag, const char *val, size_t len, storage_cb cb,
                           void *arg);
/* What a put may tell the driver about itself, so that it can store the
 * record for less; a driver may use any part or none, and every read gives
 * the same answers either way.
 *
 * Shared tails. A put's value may repeat the end of another's: a chat
 * between two users of one sm is archived whole in both archives. Both
 * sides say so, inside one transaction:
 *  - on the first put (the base), ahead > 0: the put submitted ahead puts
 *    after it on the same storage will share this value's tail;
 *  - on that later put, back > 0 (the same distance): the bytes of its
 *    value from self_at on are the bytes of the base's value from base_at
 *    on, to its end.
 * The SQLite driver keeps those bytes once, for log collections
 * (docs/storage.md, "Shared tails").
 *
 * Stamped keys. stamped = 1 promises that no record of the collection has
 * this put's key, and that the key begins with the put's stamp as 13
 * lowercase hex digits (mod_mam's ids, sm/mam_id.c). The SQLite driver then
 * finds the record by key through its list at that stamp and keeps it out
 * of its key index (docs/storage.md, "Stamped keys"); a key that does not
 * begin with its stamp is indexed as any other. */
typedef struct storage_hint {
    size_t back;            /* 0: this put shares nothing */
    size_t self_at, base_at;
    size_t ahead;           /* 0: no later put shares this one's tail */
    int stamped;
} storage_hint_t;
/* 1 when the driver uses shared tails (SQLite), 0 when it ignores them: a
 * caller need not look for shared bytes then. */
int storage_shares_tails(const storage_t *st);

/* storage_put_at, asynchronous, taking its strings instead of copying them
 * (mod_mam's archive batches, the one writer of many records): owner, coll,
 * key, tag (may be NULL) and val are malloc'd by the caller and taken, freed
 * by storage once the request is done; val holds len bytes and a NUL after
 * them. hint may be NULL. */
void storage_put_take_async(storage_t *st, char *owner, char *coll, char *key, char *tag, char *val,
                            size_t len, int64_t stamp, const storage_hint_t *hint,
                            storage_cb cb, void *arg);
/* One record of storage_put_many_take_async: where its strings are in the
 * request's buffer (offsets of NUL-terminated strings; tag STORAGE_NO_TAG:
 * none), its value (len bytes at val, a NUL after them), stamp and hint. */
typedef struct storage_put_rec {
    size_t owner, coll, key, tag;
    size_t val, len;
    int64_t stamp;
    storage_hint_t hint;
} storage_put_rec_t;
#define STORAGE_NO_TAG ((size_t)-1)
/* n storage_put_take_async in one request, in order (mod_mam's batches): the
 * same records, answers and hints (each record counts as one put for a
 * hint's back and ahead), without a request, five strings and a value
 * allocated, copied and freed per record. buf (size bytes) and recs are
 * malloc'd by the caller and taken. cb gets status 0 when every record was
 * written, -1 when one failed (logged; the rest are not written). A driver
 * without a batch form of its own gets the records as single puts. */
void storage_put_many_take_async(storage_t *st, char *buf, size_t size, storage_put_rec_t *recs,
                                 size_t n, storage_cb cb, void *arg);
void storage_del_async(storage_t *st, const char *owner, const char *coll, const char *key,
                       storage_cb cb, void *arg);
void storage_del_all_async(storage_t *st, const char *owner, const char *coll, storage_cb cb,
                           void *arg);
void storage_append_async(storage_t *st, const char *owner, const char *coll, const char *val,
                          size_t len, storage_cb cb, void *arg);
void storage_list_async(storage_t *st, const char *owner, const char *coll, storage_cb cb,
                        void *arg);
void storage_count_async(storage_t *st, const char *owner, const char *coll, storage_cb cb,
                         void *arg);
void storage_range_async(storage_t *st, const char *owner, const char *coll,
                         const storage_range_t *q, storage_cb cb, void *arg);
void storage_ping_async(storage_t *st, int delay_ms, storage_cb cb, void *arg);

/* 1 when coll is a log collection, else 0. A log collection holds many
 * records per owner, written mostly by appending (new keys, in batches) and
 * read by ranges of stamps: a message archive. Today "mam" (sm/mod_mam.h)
 * and "muc-archive" (muc/persist.c). Its records follow every rule above
 * (same operations, same answers, seq unique in the database), but a driver
 * may keep them apart from the other records, in storage laid out for that
 * use: the SQLite driver does (docs/storage.md, "Log collections"). Adding a
 * name here needs a schema step of the SQLite driver that moves the
 * collection's existing records. */
int storage_coll_is_log(const char *coll);

/* Frees what a result holds and zeroes it. */
void storage_res_clear(storage_res_t *res);

#endif
