/* storage_driver: what a storage driver implements and what storage.c gives
 * it. Private to common/storage*.c.
 *
 * storage.c turns every call into a request (arguments copied) and hands it
 * to the driver's submit. The driver runs requests strictly in submission
 * order and finishes each exactly once with storage_req_done, which runs the
 * caller's callback and frees the request: at once (SQLite) or later from the
 * event loop (PostgreSQL). */
#ifndef WEFT_STORAGE_DRIVER_H
#define WEFT_STORAGE_DRIVER_H
#include "storage.h"

typedef enum storage_op {
    SOP_BEGIN, SOP_COMMIT, SOP_ROLLBACK,
    SOP_USER_CREATE, SOP_USER_GET, SOP_USER_SET, SOP_USER_DELETE, SOP_USER_EXISTS,
    SOP_USER_LIST, SOP_USER_COUNT, SOP_USER_IMPORT,
    SOP_GET, SOP_PUT, SOP_DEL, SOP_DEL_ALL, SOP_APPEND, SOP_LIST, SOP_COUNT, SOP_RANGE,
    SOP_SCAN, SOP_IMPORT, SOP_IMPORT_DONE, SOP_PING, SOP_PUT_MANY,
} storage_op_t;

typedef struct storage_req storage_req_t;
struct storage_req {
    storage_op_t op;
    const char *opname;     /* for log lines */
    /* Arguments, owned by the request. Accounts use owner for the bare JID. */
    char *owner, *coll, *key;
    char *tag;              /* put, import: the record's tag; range: its filter */
    char *sha256, *sha1;
    char *val;
    size_t len;
    int64_t seq;            /* import: the record's seq; scan: after this seq */
    int64_t stamp;          /* put/append/import: the stamp to store */
    uint64_t put_no;        /* put: its number among this storage's puts; put_many: its
                             * first record's */
    storage_put_rec_t *many;   /* put_many: num records in val (len bytes), owned */
    int borrowed;           /* a put made by a driver from a put_many record: key and
                             * val point into that request's buffer, not to be taken */
    storage_hint_t hint;    /* put: the hint of storage_put_take_async (zero: none) */
    int64_t created;        /* user create/import */
    int64_t num;            /* scan: limit; ping: delay in ms; put_many: records */
    storage_range_t range;  /* range: tag/after/before point at tag/after/before */
    char *after, *before;
    int step;               /* drivers' own progress through a request */
    int64_t a_seq, a_stamp, b_seq, b_stamp;   /* range: resolved after/before */
    storage_res_t res;
    storage_cb cb;
    void *arg;
    int64_t submitted_us;   /* for the latency histogram (storage.c) */
    storage_req_t *next;    /* drivers' queues */
};

typedef struct storage_driver {
    const char *name;
    int async;
    int shares_tails;       /* keeps a storage_hint_t's shared bytes once (storage.h) */
    int put_many;           /* runs SOP_PUT_MANY itself (else storage.c splits it) */
    /* target: the URL without its scheme for sqlite (a path), the whole
     * setting for postgresql. Fills st->drv. Runs before the loop: it may
     * block (connect, migrations). */
    int (*open)(storage_t *st, const char *target, char *err, size_t errlen);
    void (*close)(storage_t *st);
    void (*submit)(storage_t *st, storage_req_t *r);
    void (*set_cache)(storage_t *st, size_t bytes);   /* may be NULL */
} storage_driver_t;

struct storage {
    const storage_driver_t *drv;
    void *drv_data;
    struct event_base *base;
    int own_base;
    unsigned pending;       /* submitted, not yet done */
    uint64_t puts;          /* puts submitted: their numbers (put_no) */
};

/* Finishes r: runs its callback with r->res, then frees r and the result. */
void storage_req_done(storage_t *st, storage_req_t *r);
/* Appends an empty record to r's result and returns it. */
storage_rec_t *storage_res_add(storage_res_t *res);
void storage_res_add_name(storage_res_t *res, const char *name);
/* A copy of n bytes, NUL-terminated. */
char *storage_memdup(const void *p, size_t n);

extern const storage_driver_t storage_sqlite_driver;
#ifdef WEFT_HAVE_PGSQL
extern const storage_driver_t storage_pgsql_driver;
#endif

#endif
