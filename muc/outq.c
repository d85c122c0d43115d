/* outq: what weft-muc writes to the router for each stanza it handles,
 * held until the storage writes that stanza caused are committed, then
 * written together with the stanza's acknowledgement (docs/muc.md,
 * "Storage and restarts").
 *
 * On SQLite a write completes inside the call, so a stanza's output goes to
 * the link as its handler returns: its last fan-out element carries the
 * acknowledgement (else a <w:a/> follows), in one write to the kernel, and a
 * kill -9 leaves the router all of it or nothing. On PostgreSQL a write
 * completes later: every element the stanza's handling sent (a room
 * message's fan-out, the sender's echo included; a presence broadcast's
 * copies; replies) waits here in one entry, with the stanza's token and its
 * journal of writes (persist.c), which is submitted when the handling ends;
 * once the last of those writes completed (the driver runs requests in
 * order, so every one before it has too) it goes out as it would have on
 * SQLite.
 *
 * Invariants: one FIFO for the process, so entries leave in the order their
 * stanzas came: a room's messages keep their order, and the router's
 * acknowledgements, which are cumulative, never pass an entry still
 * waiting (an entry that caused no write waits behind one that did). An
 * entry leaves only when the router socket can take it in one write. When
 * a write failed, that entry's journal and those of every entry after it
 * are submitted again, in order, after a backoff, until their last writes report
 * success: the stanza is not acknowledged before its writes are stored.
 * Entries own their bytes; an entry still named by a submission in flight
 * is freed by its completion. */
#include "muc.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

#define ROOM_NEEDED (1u << 19)
#define RETRY_MIN 0.1
#define RETRY_MAX 2.0

typedef struct item {
    strbuf_t bytes;            /* one serialized stanza */
    char **to;                 /* fan-out recipients, or NULL for a plain element */
    size_t n;
    struct item *next;
} item_t;

typedef struct entry {
    uint64_t token;            /* of the stanza handled; 0: output outside a handler */
    size_t bytes;              /* its elements and recipients */
    item_t *items, **items_tail;
    muc_journal_t *journal;    /* its writes, NULL when none */
    unsigned gen;              /* bumped when the journal is submitted again */
    int ready;                 /* its writes are committed (or it has none) */
    int failed;                /* one of its writes failed: submitted again */
    int pings;                 /* submissions in flight naming it */
    int gone;                  /* written to the link (freed once pings is 0) */
    struct entry *next;
} entry_t;

typedef struct ping {           /* a submission of an entry's journal */
    entry_t *e;
    unsigned gen;
} ping_t;

static comp_client_t **linkp;
static entry_t *cur;                 /* the stanza being handled */
static entry_t *head, **tail = &head;
static size_t nheld, held_bytes;     /* entries in the FIFO, and their bytes */
static struct event *room_timer, *retry_timer;
static double backoff = RETRY_MIN;
static int retrying;                 /* a failure waits for its retry */
static uint64_t fail_seen;           /* muc_persist_failures() at the last completion */

static void release(void);

void muc_outq_init(comp_client_t **link)
{
    linkp = link;
}

static entry_t *entry_new(uint64_t token)
{
    entry_t *e = xcalloc(1, sizeof *e);
    e->token = token;
    e->items_tail = &e->items;
    return e;
}

static void entry_free(entry_t *e)
{
    while (e->items) {
        item_t *i = e->items;
        e->items = i->next;
        strbuf_free(&i->bytes);
        for (size_t k = 0; k < i->n; k++)
            free(i->to[k]);
        free(i->to);
        free(i);
    }
    muc_persist_journal_free(e->journal);
    free(e);
}

/* Writes e's elements and acknowledges its stanza: the last fan-out takes
 * the acknowledgement, else comp_client_done adds a <w:a/> after. */
static void emit(entry_t *e)
{
    comp_client_t *l = linkp ? *linkp : NULL;
    for (item_t *i = e->items; i; i = i->next) {
        int r = -1;
        if (l && i->to)
            r = comp_client_send_fanout(l, i->bytes.data, i->bytes.len, (const char *const *)i->to, i->n,
                                        i->next ? 0 : e->token);
        else if (l)
            r = comp_client_send_raw(l, i->bytes.data, i->bytes.len);
        if (r < 0)
            log_warn("event=router-send result=dropped reason=buffer-full bytes=%zu recipients=%zu",
                     i->bytes.len, i->to ? i->n : 1);
    }
    if (l && e->token)
        comp_client_done(l, e->token);
    if (l)
        comp_client_flush(l);
}

static void append(entry_t *e, strbuf_t *bytes, const char *const *to, size_t n)
{
    item_t *i = xcalloc(1, sizeof *i);
    i->bytes = *bytes;
    strbuf_init(bytes);
    e->bytes += i->bytes.len;
    if (to) {
        i->to = xmalloc((n ? n : 1) * sizeof *i->to);
        for (size_t k = 0; k < n; k++) {
            i->to[k] = xstrdup(to[k]);
            e->bytes += strlen(to[k]) + 16;
        }
        i->n = n;
    }
    *e->items_tail = i;
    e->items_tail = &i->next;
}

static void push(entry_t *e)
{
    *tail = e;
    tail = &e->next;
    nheld++;
    held_bytes += e->bytes;
}

void muc_outq_add(strbuf_t *bytes, const char *const *to, size_t n)
{
    if (cur) {
        append(cur, bytes, to, n);
        return;
    }
    /* Outside a handler (nothing does this today but the cron could):
     * behind what is held, or at once. */
    entry_t *e = entry_new(0);
    append(e, bytes, to, n);
    e->ready = 1;
    if (head) {
        push(e);
        release();
        return;
    }
    emit(e);
    entry_free(e);
}

void muc_outq_begin(uint64_t token)
{
    if (cur)
        entry_free(cur);
    cur = entry_new(token);
}

static void committed(storage_res_t *res, void *arg);

static void submit(entry_t *e)
{
    ping_t *p = xmalloc(sizeof *p);
    p->e = e;
    p->gen = e->gen;
    e->pings++;
    muc_persist_journal_submit(e->journal, committed, p);
}

void muc_outq_end(muc_journal_t *writes)
{
    entry_t *e = cur;
    cur = NULL;
    if (!e)
        return;
    if (!writes && !head) {
        emit(e);              /* nothing to wait for: as on SQLite */
        entry_free(e);
        return;
    }
    e->journal = writes;
    e->ready = !writes;
    push(e);                  /* first: a failure may call back inside the submission */
    if (writes)
        submit(e);
    release();
}

/* Room on the router socket for an entry in one write: as main.c's
 * has_room, without the link's high-water mark (that is for input). */
static int has_room(void)
{
    size_t room, cap;
    comp_client_t *l = linkp ? *linkp : NULL;
    if (!l || comp_client_write_room(l, &room, &cap) < 0)
        return 1;
    return room >= (cap / 2 < ROOM_NEEDED ? cap / 2 : ROOM_NEEDED);
}

static void room_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    release();
}

/* Writes the ready entries at the head, one write each. */
static void release(void)
{
    while (head && head->ready) {
        if (!has_room()) {
            if (!room_timer)
                room_timer = evtimer_new(daemon_base(), room_cb, NULL);
            if (!evtimer_pending(room_timer, NULL)) {
                struct timeval tv = {0, 1000};
                evtimer_add(room_timer, &tv);
            }
            return;
        }
        entry_t *e = head;
        head = e->next;
        if (!head)
            tail = &head;
        nheld--;
        held_bytes -= e->bytes;
        emit(e);
        e->gone = 1;
        if (!e->pings)
            entry_free(e);
    }
}

/* Submits again the journal of the first failed entry and of every entry
 * after it, in order: a later write of the same record then still comes
 * last. Entries before it keep their state. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    retrying = 0;
    entry_t *e = head;
    while (e && !e->failed)
        e = e->next;
    size_t n = 0;
    for (; e; e = e->next) {
        if (!e->journal)
            continue;
        e->gen++;
        e->ready = 0;
        e->failed = 0;
        submit(e);
        n++;
    }
    log_notice("event=store-retry stanzas=%zu", n);
}

static void retry_schedule(void)
{
    if (retrying)
        return;
    retrying = 1;
    if (!retry_timer)
        retry_timer = evtimer_new(daemon_base(), retry_cb, NULL);
    struct timeval tv = {(time_t)backoff, (suseconds_t)((backoff - (double)(time_t)backoff) * 1e6)};
    evtimer_add(retry_timer, &tv);
    log_warn("event=store-failed action=retry after=%.1fs held=%zu", backoff, nheld);
    backoff = backoff * 2 > RETRY_MAX ? RETRY_MAX : backoff * 2;
}

/* The last write of an entry's journal completed: every write before it
 * did too. A failure counted since the previous completion is one of this
 * entry's writes (or, when entries are submitted again, one of theirs: the
 * retry takes them all). */
static void committed(storage_res_t *res, void *arg)
{
    ping_t *p = arg;
    entry_t *e = p->e;
    uint64_t f = muc_persist_failures();
    int failed = res->status < 0 || f != fail_seen;
    fail_seen = f;
    e->pings--;
    if (p->gen == e->gen && !e->gone) {
        if (failed) {
            e->failed = 1;
            retry_schedule();
        } else {
            e->ready = 1;
            if (!retrying)
                backoff = RETRY_MIN;
        }
    }
    free(p);
    if (e->gone && !e->pings) {
        entry_free(e);
        return;
    }
    release();
}

/* Also past a quarter of router.buffer in bytes: released, the output
 * goes into the link's retained buffer, whose high-water mark is half. */
int muc_outq_blocked(void)
{
    return retrying || nheld >= (size_t)muc_config->held_max || held_bytes >= muc_config->link.buffer / 4;
}

size_t muc_outq_held(void)
{
    return nheld;
}

/* At exit, after storage_drain: what is still held was never acknowledged,
 * so the router gives its stanzas to the next start. */
void muc_outq_free(void)
{
    if (cur)
        entry_free(cur);
    cur = NULL;
    while (head) {
        entry_t *e = head;
        head = e->next;
        if (!e->pings)
            entry_free(e);
        else
            e->gone = 1;      /* a submission still names it */
    }
    tail = &head;
    nheld = held_bytes = 0;
    if (room_timer)
        event_free(room_timer);
    if (retry_timer)
        event_free(retry_timer);
    room_timer = retry_timer = NULL;
}
