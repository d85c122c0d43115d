/* store: acknowledgements that wait for writes, and the sm's write helpers
 * (store.h). One sm_ack_t per element the router delivered; references are
 * held by the element's processing (sm_ack_enter/leave), by what the core
 * queued of it (held, local or pending stanzas), by deferred IQ requests and
 * by writes in flight. The last reference dropped tells main.c, which
 * acknowledges the element to the router (comp_client_done). */
#include "store.h"
#include "sm.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

struct sm_ack {
    unsigned long long token;
    unsigned refs;
    int waits;                    /* outlived its processing: counted in waiting */
};

static sm_ack_t *cur;
static void (*ack_done)(unsigned long long token);
static size_t waiting;

void sm_ack_init(void (*done)(unsigned long long token))
{
    ack_done = done;
}

sm_ack_t *sm_ack_take(void)
{
    if (cur)
        cur->refs++;
    return cur;
}

void sm_ack_drop(sm_ack_t *a)
{
    if (!a)
        return;
    if (a->refs == 0)
        log_panic("event=ack-drop reason=no-reference");
    if (--a->refs)
        return;
    if (a->waits)
        waiting--;
    if (ack_done)
        ack_done(a->token);
    if (cur == a)
        cur = NULL;
    free(a);
}

void sm_ack_enter(unsigned long long token)
{
    cur = xcalloc(1, sizeof *cur);
    cur->token = token;
    cur->refs = 1;
}

void sm_ack_leave(void)
{
    sm_ack_t *a = cur;
    cur = NULL;
    if (!a)
        return;
    if (a->refs > 1) {
        a->waits = 1;                 /* counted until its last reference goes */
        waiting++;
    }
    sm_ack_drop(a);
}

sm_ack_t *sm_ack_swap(sm_ack_t *a)
{
    sm_ack_t *old = cur;
    cur = a;
    return old;
}

size_t sm_ack_waiting(void)
{
    return waiting;
}

/* --- single writes ---------------------------------------------------------------- */

typedef struct write_ctx {
    sm_ack_t *ack;
    storage_cb cb;
    void *arg;
} write_ctx_t;

static write_ctx_t *write_ctx(storage_cb cb, void *arg)
{
    write_ctx_t *w = xmalloc(sizeof *w);
    w->ack = sm_ack_take();
    w->cb = cb;
    w->arg = arg;
    return w;
}

static void write_done(storage_res_t *res, void *arg)
{
    write_ctx_t *w = arg;
    if (w->cb)
        w->cb(res, w->arg);
    sm_ack_drop(w->ack);
    free(w);
}

void sm_store_put(const char *owner, const char *coll, const char *key, const char *val, size_t len,
                  storage_cb cb, void *arg)
{
    storage_put_async(sm_storage, owner, coll, key, val, len, write_done, write_ctx(cb, arg));
}

void sm_store_del(const char *owner, const char *coll, const char *key, storage_cb cb, void *arg)
{
    storage_del_async(sm_storage, owner, coll, key, write_done, write_ctx(cb, arg));
}

void sm_store_del_all(const char *owner, const char *coll, storage_cb cb, void *arg)
{
    storage_del_all_async(sm_storage, owner, coll, write_done, write_ctx(cb, arg));
}

void sm_store_append(const char *owner, const char *coll, const char *val, size_t len, storage_cb cb,
                     void *arg)
{
    storage_append_async(sm_storage, owner, coll, val, len, write_done, write_ctx(cb, arg));
}

/* --- batches ------------------------------------------------------------------------ */

typedef enum { OP_PUT, OP_DEL, OP_DEL_ALL } op_kind_t;

typedef struct batch_op {
    op_kind_t kind;
    char *owner, *coll, *key, *val;
    size_t len;
} batch_op_t;

struct sm_batch {
    batch_op_t *ops;
    size_t n;
    sm_ack_t *ack;
    int failed;
    sm_batch_fn done;
    void *arg;
};

sm_batch_t *sm_batch_new(void)
{
    return xcalloc(1, sizeof(sm_batch_t));
}

static batch_op_t *batch_add(sm_batch_t *b, op_kind_t kind, const char *owner, const char *coll,
                             const char *key)
{
    b->ops = xrealloc(b->ops, (b->n + 1) * sizeof *b->ops);
    batch_op_t *op = &b->ops[b->n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->owner = xstrdup(owner);
    op->coll = xstrdup(coll);
    op->key = key ? xstrdup(key) : NULL;
    return op;
}

void sm_batch_put(sm_batch_t *b, const char *owner, const char *coll, const char *key, const char *val,
                  size_t len)
{
    batch_op_t *op = batch_add(b, OP_PUT, owner, coll, key);
    op->val = xmalloc(len + 1);
    memcpy(op->val, val, len);
    op->val[len] = '\0';
    op->len = len;
}

void sm_batch_del(sm_batch_t *b, const char *owner, const char *coll, const char *key)
{
    batch_add(b, OP_DEL, owner, coll, key);
}

void sm_batch_del_all(sm_batch_t *b, const char *owner, const char *coll)
{
    batch_add(b, OP_DEL_ALL, owner, coll, NULL);
}

static void batch_free(sm_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->ops[i].owner);
        free(b->ops[i].coll);
        free(b->ops[i].key);
        free(b->ops[i].val);
    }
    free(b->ops);
    sm_ack_drop(b->ack);
    free(b);
}

/* A failed statement: on PostgreSQL it aborts the transaction (the commit
 * then fails); on SQLite it is seen here before the commit is submitted. */
static void batch_op_done(storage_res_t *res, void *arg)
{
    sm_batch_t *b = arg;
    if (res->status < 0)
        b->failed = 1;
}

static void batch_end(storage_res_t *res, void *arg)
{
    sm_batch_t *b = arg;
    int ok = res->status == 0 && !b->failed;
    if (b->done)
        b->done(ok, b->arg);
    batch_free(b);
}

static void batch_rolled_back(storage_res_t *res, void *arg)
{
    (void)res;
    sm_batch_t *b = arg;
    b->failed = 1;
    batch_end(res, arg);
}

void sm_batch_commit(sm_batch_t *b, sm_batch_fn done, void *arg)
{
    b->done = done;
    b->arg = arg;
    b->ack = sm_ack_take();
    if (!b->n) {
        if (done)
            done(1, arg);
        batch_free(b);
        return;
    }
    storage_begin_async(sm_storage, batch_op_done, b);
    for (size_t i = 0; i < b->n && !b->failed; i++) {
        batch_op_t *op = &b->ops[i];
        if (op->kind == OP_PUT)
            storage_put_async(sm_storage, op->owner, op->coll, op->key, op->val, op->len, batch_op_done, b);
        else if (op->kind == OP_DEL)
            storage_del_async(sm_storage, op->owner, op->coll, op->key, batch_op_done, b);
        else
            storage_del_all_async(sm_storage, op->owner, op->coll, batch_op_done, b);
    }
    if (b->failed)
        storage_rollback_async(sm_storage, batch_rolled_back, b);
    else
        storage_commit_async(sm_storage, batch_end, b);
}
