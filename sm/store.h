/* store: the sm's storage on behalf of what it is processing.
 *
 * Every element the router delivers to the sm is acknowledged to the router
 * only once the sm is done with it (comp_client manual_ack): processed, and
 * every write its processing submitted committed. A write submitted here
 * takes a reference on the acknowledgement of the element being processed
 * (sm_ack_take) and drops it from its callback, so a message stored offline,
 * a roster change or an account created is never acknowledged before the
 * database has it: if the sm dies first, the router gives the element to the
 * next sm process, which does the work again (at least once, never lost).
 *
 * Writes run in submission order on storage's one connection, so a read
 * submitted after a write sees it. On SQLite the callback runs before the
 * call returns; on PostgreSQL later from the loop: code must accept both.
 * A batch is a transaction: its operations are kept in memory and submitted
 * together (begin, operations, commit) when it is committed, so no other
 * request can fall inside it; done(ok) runs once it committed (ok 1) or
 * failed and rolled back (ok 0). Errors are logged by storage. */
#ifndef WEFT_SM_STORE_H
#define WEFT_SM_STORE_H
#include <stddef.h>
#include "storage.h"

typedef struct sm_ack sm_ack_t;
/* A reference to the acknowledgement of the element being processed (NULL
 * when none: a timer, a callback of storage); drop it when done. */
sm_ack_t *sm_ack_take(void);
void sm_ack_drop(sm_ack_t *a);

/* Writes that hold the current element's acknowledgement until they
 * completed; cb (may be NULL) gets the result as storage gives it. */
void sm_store_put(const char *owner, const char *coll, const char *key, const char *val, size_t len,
                  storage_cb cb, void *arg);
void sm_store_del(const char *owner, const char *coll, const char *key, storage_cb cb, void *arg);
void sm_store_del_all(const char *owner, const char *coll, storage_cb cb, void *arg);
void sm_store_append(const char *owner, const char *coll, const char *val, size_t len, storage_cb cb,
                     void *arg);

typedef struct sm_batch sm_batch_t;
typedef void (*sm_batch_fn)(int ok, void *arg);
sm_batch_t *sm_batch_new(void);
void sm_batch_put(sm_batch_t *b, const char *owner, const char *coll, const char *key, const char *val,
                  size_t len);
void sm_batch_del(sm_batch_t *b, const char *owner, const char *coll, const char *key);
void sm_batch_del_all(sm_batch_t *b, const char *owner, const char *coll);
/* Submits the batch and frees it after done (may be NULL) ran. An empty
 * batch calls done(1) at once. */
void sm_batch_commit(sm_batch_t *b, sm_batch_fn done, void *arg);

/* For the core (main.c, core.c): the element being processed. enter makes a
 * fresh acknowledgement for token current (one reference, dropped by leave);
 * swap makes a (borrowed) one current and returns the one it replaces. */
void sm_ack_init(void (*done)(unsigned long long token));
void sm_ack_enter(unsigned long long token);
void sm_ack_leave(void);
sm_ack_t *sm_ack_swap(sm_ack_t *a);
/* Acknowledgements waiting for writes (a gauge for logs and tests). */
size_t sm_ack_waiting(void);

#endif
