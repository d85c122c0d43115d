/* storage_pgsql: the PostgreSQL driver of storage.h, on libpq's asynchronous
 * API and the storage's libevent loop.
 *
 * One connection, one query in flight: requests wait in a FIFO queue; the
 * head is sent with PQsendQueryParams (non-blocking connection, PQflush until
 * the socket takes it all), its socket is watched by a libevent read event,
 * and PQconsumeInput / PQisBusy / PQgetResult collect the answer without ever
 * waiting. Every operation is one statement (user delete and append use a
 * data-modifying CTE) so it is atomic by itself; a range with after/before
 * keys takes two (the keys' positions, then the rows).
 *
 * Open connects and migrates synchronously: it runs before the loop does.
 * Later, when the server goes away, the request in flight fails (its outcome
 * is unknown: a write may have committed), queued ones fail, and a timer
 * reconnects with capped, jittered backoff (0.1 s doubling to 10 s, forever).
 * While no connection is up, requests fail at once instead of piling up;
 * once it is back they run again. A transaction open when the link died is
 * gone: until its commit (which then fails) or rollback, requests fail.
 *
 * Schema: a schema_version table holds how many steps of pg_migrations have
 * run; open applies the missing ones under an advisory lock, so several sm
 * instances starting together migrate once. Results come in binary format
 * (bigint as 8 big-endian bytes, text and bytea as their bytes). */
#include "storage_driver.h"
#include "log.h"
#include "strbuf.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_BACKOFF_MIN 0.1
#define PG_BACKOFF_MAX 10.0
#define PG_MIGRATE_LOCK 0x77656674   /* "weft": the advisory lock of migrations */
#define PG_MAX_PARAMS 10

static const char *const pg_migrations[] = {
    /* v1: as SQLite's v2 (stamps included from the start). */
    "CREATE TABLE users ("
    "  bare text PRIMARY KEY NOT NULL,"
    "  sha256 text,"
    "  sha1 text,"
    "  created bigint NOT NULL);"
    "CREATE TABLE records ("
    "  seq bigserial PRIMARY KEY,"
    "  owner text NOT NULL,"
    "  coll text NOT NULL,"
    "  key text,"
    "  value bytea NOT NULL,"
    "  stamp bigint NOT NULL DEFAULT 0,"
    "  UNIQUE (owner, coll, key));"
    "CREATE INDEX records_list ON records (owner, coll, seq);"
    "CREATE INDEX records_stamp ON records (owner, coll, stamp, seq);",
    /* v2: as SQLite's v3, a tag per record, indexed where there is one; the
     * per-contact copies of mod_mam's archive become the tags of its "mam"
     * records (docs/mam.md). The index is built after the update. */
    "ALTER TABLE records ADD COLUMN tag text;"
    "UPDATE records r SET tag = substr(w.coll, 5) FROM records w"
    "  WHERE r.coll = 'mam' AND w.owner = r.owner AND w.key = r.key"
    "  AND substr(w.coll, 1, 4) = 'mam:';"
    "DELETE FROM records WHERE substr(coll, 1, 4) = 'mam:';"
    "CREATE INDEX records_tag ON records (owner, coll, tag, stamp, seq) WHERE tag IS NOT NULL;",
};
#define PG_VERSION ((int)(sizeof pg_migrations / sizeof pg_migrations[0]))

/* Ranges: $3/$4 the after point (seq, stamp), $5/$6 the before point, $7/$8
 * the stamp bounds, $9 the limit (NULL: none), $10 the tag of a tag range
 * ("tag = $10" lets the planner use the partial index records_tag). Rows:
 * seq, stamp, key, value, tag (pg_rows). */
#define PG_REC_COLS "SELECT seq, stamp, key, value, tag FROM records "
#define PG_RANGE_HEAD PG_REC_COLS "WHERE owner = $1 AND coll = $2" \
    " AND stamp >= $7::bigint AND stamp <= $8::bigint AND "
#define PG_TAG_HEAD PG_REC_COLS "WHERE owner = $1 AND coll = $2 AND tag = $10" \
    " AND stamp >= $7::bigint AND stamp <= $8::bigint AND "
#define PG_BY_SEQ "seq > $3::bigint AND seq < $5::bigint ORDER BY seq "
#define PG_BY_STAMP "(stamp, seq) > ($4::bigint, $3::bigint) AND (stamp, seq) < ($6::bigint, $5::bigint)" \
    " ORDER BY stamp "

typedef enum { PG_DOWN, PG_CONNECTING, PG_UP } pg_state_t;

typedef struct pg {
    storage_t *st;
    char *conninfo;
    PGconn *conn;
    pg_state_t state;
    struct event *ev_read, *ev_write;   /* on the connection's socket */
    struct event *ev_connect;           /* socket readiness while connecting */
    struct event *ev_retry;             /* reconnect timer */
    double backoff;
    storage_req_t *head, *tail;         /* queue; head is in flight when sent */
    int sent;
    int step_more;                      /* head needs another statement */
    int in_txn, txn_lost;
} pg_t;

/* One statement's parameters: text unless binary (values). Integers are
 * typed int8, so a statement need not use every one (range by seq). */
typedef struct pg_params {
    int n;
    Oid type[PG_MAX_PARAMS];
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
} pg_params_t;

static void pg_send_next(pg_t *p);
static void pg_lost(pg_t *p, const char *why);

static void p_text(pg_params_t *pp, const char *s)
{
    pp->v[pp->n] = s;
    pp->len[pp->n] = 0;
    pp->fmt[pp->n++] = 0;
}

#define PG_INT8OID 20
#define PG_BYTEAOID 17

static void p_int(pg_params_t *pp, int64_t v)
{
    snprintf(pp->num[pp->n], sizeof pp->num[pp->n], "%lld", (long long)v);
    pp->type[pp->n] = PG_INT8OID;
    p_text(pp, pp->num[pp->n]);
}

static void p_blob(pg_params_t *pp, const char *v, size_t len)
{
    pp->v[pp->n] = v;
    pp->len[pp->n] = (int)len;
    pp->type[pp->n] = PG_BYTEAOID;
    pp->fmt[pp->n++] = 1;
}

static int64_t pg_int(const PGresult *res, int row, int col)
{
    const unsigned char *b = (const unsigned char *)PQgetvalue(res, row, col);
    int n = PQgetlength(res, row, col);
    uint64_t v = 0;
    for (int i = 0; i < n && i < 8; i++)
        v = v << 8 | b[i];
    if (n == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}

static char *pg_dup(const PGresult *res, int row, int col, size_t *len)
{
    if (PQgetisnull(res, row, col))
        return NULL;
    size_t n = (size_t)PQgetlength(res, row, col);
    if (len)
        *len = n;
    return storage_memdup(PQgetvalue(res, row, col), n);
}

static int pg_changed(const PGresult *res)
{
    return atoi(PQcmdTuples((PGresult *)res));
}

/* ------------------------------------------------------------ statements */

/* Builds the statement of r's current step into *sql and pp; 0, or 1 when
 * the request is answered without the server (a driver-side refusal). */
static int pg_build(pg_t *p, storage_req_t *r, const char **sql, pg_params_t *pp)
{
    memset(pp, 0, sizeof *pp);
    const storage_range_t *q = &r->range;
    switch (r->op) {
    case SOP_BEGIN:
        if (p->in_txn || p->txn_lost) {
            log_error("storage: driver=postgresql op=begin error=\"nested transactions are not supported\"");
            return 1;
        }
        *sql = "BEGIN";
        return 0;
    case SOP_COMMIT:
        if (!p->in_txn) {
            log_error("storage: driver=postgresql op=commit error=\"%s\"",
                      p->txn_lost ? "the transaction was lost with the connection" : "no transaction");
            p->txn_lost = 0;
            return 1;
        }
        *sql = "COMMIT";
        return 0;
    case SOP_ROLLBACK:
        *sql = "ROLLBACK";
        return 0;
    case SOP_USER_CREATE: case SOP_USER_IMPORT:
        *sql = "INSERT INTO users (bare, sha256, sha1, created) VALUES ($1, $2, $3, $4)"
               " ON CONFLICT (bare) DO NOTHING";
        p_text(pp, r->owner);
        p_text(pp, r->sha256);
        p_text(pp, r->sha1);
        p_int(pp, r->created);
        return 0;
    case SOP_USER_GET:
        *sql = "SELECT sha256, sha1, created FROM users WHERE bare = $1";
        p_text(pp, r->owner);
        return 0;
    case SOP_USER_SET:
        *sql = "UPDATE users SET sha256 = $2, sha1 = $3 WHERE bare = $1";
        p_text(pp, r->owner);
        p_text(pp, r->sha256);
        p_text(pp, r->sha1);
        return 0;
    case SOP_USER_DELETE:
        *sql = "WITH r AS (DELETE FROM records WHERE owner = $1)"
               " DELETE FROM users WHERE bare = $1";
        p_text(pp, r->owner);
        return 0;
    case SOP_USER_EXISTS:
        *sql = "SELECT 1 FROM users WHERE bare = $1";
        p_text(pp, r->owner);
        return 0;
    case SOP_USER_LIST:
        *sql = "SELECT bare FROM users ORDER BY bare COLLATE \"C\"";
        return 0;
    case SOP_USER_COUNT:
        *sql = "SELECT count(*) FROM users";
        return 0;
    case SOP_GET:
        *sql = "SELECT value FROM records WHERE owner = $1 AND coll = $2 AND key = $3";
        break;
    case SOP_PUT:
        *sql = "INSERT INTO records (owner, coll, key, value, stamp, tag)"
               " VALUES ($1, $2, $3, $4, $5, $6)"
               " ON CONFLICT (owner, coll, key) DO UPDATE SET value = excluded.value,"
               " stamp = excluded.stamp, tag = excluded.tag";
        break;
    case SOP_DEL:
        *sql = "DELETE FROM records WHERE owner = $1 AND coll = $2 AND key = $3";
        break;
    case SOP_DEL_ALL:
        *sql = "DELETE FROM records WHERE owner = $1 AND coll = $2";
        break;
    case SOP_APPEND:
        /* The key is the seq, both from one nextval: one atomic statement. */
        *sql = "WITH s AS (SELECT nextval(pg_get_serial_sequence('records', 'seq')) AS n)"
               " INSERT INTO records (seq, owner, coll, key, value, stamp)"
               " SELECT n, $1, $2, n::text, $3, $4 FROM s RETURNING seq";
        break;
    case SOP_LIST:
        *sql = PG_REC_COLS "WHERE owner = $1 AND coll = $2 ORDER BY seq";
        break;
    case SOP_COUNT:
        *sql = "SELECT count(*) FROM records WHERE owner = $1 AND coll = $2";
        break;
    case SOP_RANGE:
        if (r->step == 0 && (q->after || q->before)) {
            /* In a tag range, a key without that tag is not in the set. */
#define PG_KEY_POS(col, k) "(SELECT " col " FROM records WHERE owner = $1 AND coll = $2" \
            " AND key = " k " AND ($5::text IS NULL OR tag = $5::text))"
            *sql = "SELECT " PG_KEY_POS("seq", "$3") ", " PG_KEY_POS("stamp", "$3") ", "
                   PG_KEY_POS("seq", "$4") ", " PG_KEY_POS("stamp", "$4");
#undef PG_KEY_POS
            p_text(pp, r->owner);
            p_text(pp, r->coll);
            p_text(pp, q->after);
            p_text(pp, q->before);
            p_text(pp, q->tag);
            return 0;
        }
        if (r->step == 0) {
            r->a_seq = -1;
            r->a_stamp = INT64_MIN;
            r->b_seq = r->b_stamp = INT64_MAX;
            r->step = 1;
        }
        if (q->tag)
            *sql = q->by_stamp ? (q->reverse ? PG_TAG_HEAD PG_BY_STAMP "DESC, seq DESC LIMIT $9"
                                             : PG_TAG_HEAD PG_BY_STAMP "ASC, seq ASC LIMIT $9")
                               : (q->reverse ? PG_TAG_HEAD PG_BY_SEQ "DESC LIMIT $9"
                                             : PG_TAG_HEAD PG_BY_SEQ "ASC LIMIT $9");
        else
            *sql = q->by_stamp ? (q->reverse ? PG_RANGE_HEAD PG_BY_STAMP "DESC, seq DESC LIMIT $9"
                                             : PG_RANGE_HEAD PG_BY_STAMP "ASC, seq ASC LIMIT $9")
                               : (q->reverse ? PG_RANGE_HEAD PG_BY_SEQ "DESC LIMIT $9"
                                             : PG_RANGE_HEAD PG_BY_SEQ "ASC LIMIT $9");
        p_text(pp, r->owner);
        p_text(pp, r->coll);
        p_int(pp, r->a_seq);
        p_int(pp, r->a_stamp);
        p_int(pp, r->b_seq);
        p_int(pp, r->b_stamp);
        p_int(pp, q->since ? q->since : INT64_MIN);
        p_int(pp, q->until ? q->until : INT64_MAX);
        if (q->limit)
            p_int(pp, (int64_t)q->limit);
        else
            p_text(pp, NULL);
        if (q->tag)
            p_text(pp, q->tag);
        return 0;
    case SOP_SCAN:
        *sql = "SELECT seq, stamp, key, value, tag, owner, coll FROM records WHERE seq > $1::bigint"
               " ORDER BY seq LIMIT $2::bigint";
        p_int(pp, r->seq);
        if (r->num > 0)
            p_int(pp, r->num);
        else
            p_text(pp, NULL);
        return 0;
    case SOP_IMPORT:
        *sql = "INSERT INTO records (seq, owner, coll, key, value, stamp, tag)"
               " VALUES ($6, $1, $2, $3, $4, $5, $7)";
        break;
    case SOP_IMPORT_DONE:
        *sql = "SELECT setval(pg_get_serial_sequence('records', 'seq'),"
               " GREATEST((SELECT max(seq) FROM records), 1))";
        return 0;
    case SOP_PING:
        *sql = "SELECT pg_sleep($1::float8 / 1000)";
        p_int(pp, r->num > 0 ? r->num : 0);
        return 0;
    case SOP_PUT_MANY:          /* storage.c splits it into puts for this driver */
        log_error("storage: driver=postgresql op=put_many error=\"not a request of this driver\"");
        r->res.status = -1;
        return 1;
    }
    /* Record statements: $1 owner, $2 coll, then key / value / stamp. */
    p_text(pp, r->owner);
    p_text(pp, r->coll);
    switch (r->op) {
    case SOP_GET: case SOP_DEL:
        p_text(pp, r->key);
        break;
    case SOP_PUT: case SOP_IMPORT:
        p_text(pp, r->key);
        p_blob(pp, r->val, r->len);
        p_int(pp, r->stamp);
        if (r->op == SOP_IMPORT)
            p_int(pp, r->seq);
        p_text(pp, r->tag);
        break;
    case SOP_APPEND:
        p_blob(pp, r->val, r->len);
        p_int(pp, r->stamp);
        break;
    default:
        break;
    }
    return 0;
}

/* Reads rows (seq, stamp, key, value, tag[, owner, coll]) into r's result. */
static void pg_rows(const PGresult *res, storage_req_t *r, int with_owner)
{
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        storage_rec_t *rec = storage_res_add(&r->res);
        rec->seq = pg_int(res, i, 0);
        rec->stamp = pg_int(res, i, 1);
        rec->key = pg_dup(res, i, 2, NULL);
        rec->val = pg_dup(res, i, 3, &rec->len);
        if (!rec->val)
            rec->val = storage_memdup("", 0);
        rec->tag = pg_dup(res, i, 4, NULL);
        if (with_owner) {
            rec->owner = pg_dup(res, i, 5, NULL);
            rec->coll = pg_dup(res, i, 6, NULL);
        }
    }
}

/* Takes one successful result of r's current statement into r->res. */
static void pg_take(pg_t *p, storage_req_t *r, const PGresult *res)
{
    int rows = PQntuples(res);
    r->res.status = 0;
    switch (r->op) {
    case SOP_BEGIN:
        p->in_txn = 1;
        break;
    case SOP_COMMIT:
        /* A transaction that hit an error answers COMMIT with ROLLBACK. */
        p->in_txn = 0;
        if (strcmp(PQcmdStatus((PGresult *)res), "COMMIT") != 0) {
            log_error("storage: driver=postgresql op=commit error=\"the transaction was rolled back\"");
            r->res.status = -1;
        }
        break;
    case SOP_ROLLBACK:
        p->in_txn = 0;
        break;
    case SOP_USER_CREATE: case SOP_USER_IMPORT:
    case SOP_USER_SET: case SOP_USER_DELETE: case SOP_DEL:
        r->res.status = pg_changed(res) == 0 ? 1 : 0;
        break;
    case SOP_USER_GET:
        if (!rows) {
            r->res.status = 1;
            break;
        }
        r->res.sha256 = pg_dup(res, 0, 0, NULL);
        r->res.sha1 = pg_dup(res, 0, 1, NULL);
        r->res.created = pg_int(res, 0, 2);
        break;
    case SOP_USER_EXISTS:
        r->res.n = rows > 0;
        break;
    case SOP_USER_LIST:
        for (int i = 0; i < rows; i++) {
            char *name = pg_dup(res, i, 0, NULL);
            storage_res_add_name(&r->res, name ? name : "");
            free(name);
        }
        break;
    case SOP_USER_COUNT: case SOP_COUNT:
        r->res.n = rows ? pg_int(res, 0, 0) : 0;
        break;
    case SOP_GET:
        if (!rows)
            r->res.status = 1;
        else
            r->res.val = pg_dup(res, 0, 0, &r->res.len);
        break;
    case SOP_APPEND:
        r->res.n = rows ? pg_int(res, 0, 0) : 0;
        break;
    case SOP_LIST:
        pg_rows(res, r, 0);
        break;
    case SOP_RANGE:
        if (r->step == 0) {
            const storage_range_t *q = &r->range;
            if ((q->after && PQgetisnull(res, 0, 0)) || (q->before && PQgetisnull(res, 0, 2))) {
                r->res.status = 1;
                break;
            }
            r->a_seq = q->after ? pg_int(res, 0, 0) : -1;
            r->a_stamp = q->after ? pg_int(res, 0, 1) : INT64_MIN;
            r->b_seq = q->before ? pg_int(res, 0, 2) : INT64_MAX;
            r->b_stamp = q->before ? pg_int(res, 0, 3) : INT64_MAX;
            r->step = 1;
            p->step_more = 1;
            break;
        }
        pg_rows(res, r, 0);
        break;
    case SOP_SCAN:
        pg_rows(res, r, 1);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------ the queue */

static storage_req_t *pg_pop(pg_t *p)
{
    storage_req_t *r = p->head;
    p->head = r->next;
    if (!p->head)
        p->tail = NULL;
    r->next = NULL;
    p->sent = 0;
    p->step_more = 0;
    return r;
}

static void pg_fail(pg_t *p, storage_req_t *r, const char *why)
{
    log_error("storage: driver=postgresql op=%s error=\"%s\"", r->opname, why);
    r->res.status = -1;
    storage_req_done(p->st, r);
}

/* Fails every queued request (the connection is gone). */
static void pg_fail_all(pg_t *p, const char *why)
{
    while (p->head)
        pg_fail(p, pg_pop(p), why);
}

static void pg_flush(pg_t *p)
{
    int rc = PQflush(p->conn);
    if (rc < 0)
        pg_lost(p, PQerrorMessage(p->conn));
    else if (rc > 0)
        event_add(p->ev_write, NULL);
}

/* Sends the head of the queue if nothing is in flight. Requests answered
 * without the server finish here, in order. */
static void pg_send_next(pg_t *p)
{
    while (p->state == PG_UP && p->head && !p->sent) {
        storage_req_t *r = p->head;
        if (p->txn_lost && r->op != SOP_COMMIT && r->op != SOP_ROLLBACK) {
            pg_fail(p, pg_pop(p), "the transaction was lost with the connection");
            continue;
        }
        if (p->txn_lost && r->op == SOP_ROLLBACK) {
            p->txn_lost = 0;
            pg_pop(p);
            r->res.status = 0;
            storage_req_done(p->st, r);
            continue;
        }
        const char *sql = NULL;
        pg_params_t pp;
        if (pg_build(p, r, &sql, &pp) != 0) {
            pg_pop(p);
            r->res.status = -1;
            storage_req_done(p->st, r);
            continue;
        }
        if (!PQsendQueryParams(p->conn, sql, pp.n, pp.type, pp.v, pp.len, pp.fmt, 1)) {
            pg_lost(p, PQerrorMessage(p->conn));
            return;
        }
        p->sent = 1;
        pg_flush(p);
    }
}

/* Collects what has arrived; finishes the head once its results are all in. */
static void pg_read(pg_t *p)
{
    if (!PQconsumeInput(p->conn)) {
        pg_lost(p, PQerrorMessage(p->conn));
        return;
    }
    while (p->state == PG_UP && !PQisBusy(p->conn)) {
        PGresult *res = PQgetResult(p->conn);
        if (!res) {
            if (!p->sent || !p->head)
                return;
            if (p->step_more) {
                p->sent = 0;
                p->step_more = 0;
                pg_send_next(p);
                if (!p->sent)
                    return;
                continue;
            }
            storage_req_t *r = pg_pop(p);
            storage_req_done(p->st, r);
            pg_send_next(p);
            if (!p->sent)
                return;
            continue;
        }
        ExecStatusType s = PQresultStatus(res);
        if (p->head && p->sent) {
            if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
                pg_take(p, p->head, res);
            } else {
                char *msg = PQresultErrorMessage(res);
                size_t n = strcspn(msg, "\n");
                log_error("storage: driver=postgresql op=%s sqlstate=%s error=\"%.*s\"",
                          p->head->opname, PQresultErrorField(res, PG_DIAG_SQLSTATE) ?
                          PQresultErrorField(res, PG_DIAG_SQLSTATE) : "-", (int)n, msg);
                p->head->res.status = -1;
                p->step_more = 0;
            }
        }
        PQclear(res);
    }
    /* A callback or a send above may have found the link dead already. */
    if (p->state == PG_UP && PQstatus(p->conn) == CONNECTION_BAD)
        pg_lost(p, PQerrorMessage(p->conn));
}

static void pg_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pg_read(arg);
}

static void pg_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pg_t *p = arg;
    if (p->state == PG_UP)
        pg_flush(p);
}

/* ------------------------------------------------------------ connection */

static void pg_notice(void *arg, const char *msg)
{
    (void)arg;
    log_debug("storage: driver=postgresql notice=\"%.*s\"", (int)strcspn(msg, "\n"), msg);
}

static void pg_events_free(pg_t *p)
{
    if (p->ev_read)
        event_free(p->ev_read);
    if (p->ev_write)
        event_free(p->ev_write);
    if (p->ev_connect)
        event_free(p->ev_connect);
    p->ev_read = p->ev_write = p->ev_connect = NULL;
}

/* The connection is up: watch its socket. */
static void pg_up(pg_t *p)
{
    pg_events_free(p);
    PQsetnonblocking(p->conn, 1);
    PQsetNoticeProcessor(p->conn, pg_notice, p);
    int fd = PQsocket(p->conn);
    p->ev_read = event_new(p->st->base, fd, EV_READ | EV_PERSIST, pg_on_read, p);
    p->ev_write = event_new(p->st->base, fd, EV_WRITE, pg_on_write, p);
    event_add(p->ev_read, NULL);
    p->state = PG_UP;
    p->backoff = PG_BACKOFF_MIN;
}

static void pg_schedule_retry(pg_t *p)
{
    /* Jitter: between 0.5 and 1.0 of the current backoff. */
    double d = p->backoff * (0.5 + 0.5 * (double)(random() % 1000) / 1000.0);
    struct timeval tv = {(time_t)d, (suseconds_t)((d - (double)(time_t)d) * 1e6)};
    evtimer_add(p->ev_retry, &tv);
    p->backoff = p->backoff * 2 > PG_BACKOFF_MAX ? PG_BACKOFF_MAX : p->backoff * 2;
}

static void pg_lost(pg_t *p, const char *why)
{
    log_error("storage: driver=postgresql event=connection-lost error=\"%.*s\"",
              (int)strcspn(why ? why : "", "\n"), why ? why : "");
    pg_events_free(p);
    if (p->conn)
        PQfinish(p->conn);
    p->conn = NULL;
    p->state = PG_DOWN;
    if (p->in_txn) {
        p->in_txn = 0;
        p->txn_lost = 1;
    }
    if (p->head && p->sent)
        pg_fail(p, pg_pop(p), "connection lost; the outcome is unknown");
    pg_fail_all(p, "database unavailable");
    pg_schedule_retry(p);
}

static void pg_poll_connect(pg_t *p);

static void pg_on_connect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pg_poll_connect(arg);
}

/* One step of PQconnectPoll; waits for the socket direction it asks for
 * (the socket may change between steps: libpq tries each address). */
static void pg_poll_connect(pg_t *p)
{
    PostgresPollingStatusType s = PQconnectPoll(p->conn);
    if (s == PGRES_POLLING_OK) {
        log_notice("storage: driver=postgresql event=reconnected");
        pg_up(p);
        pg_send_next(p);
        return;
    }
    if (s == PGRES_POLLING_FAILED) {
        log_warn("storage: driver=postgresql event=reconnect-failed error=\"%.*s\"",
                 (int)strcspn(PQerrorMessage(p->conn), "\n"), PQerrorMessage(p->conn));
        PQfinish(p->conn);
        p->conn = NULL;
        p->state = PG_DOWN;
        pg_fail_all(p, "database unavailable");
        pg_schedule_retry(p);
        return;
    }
    if (p->ev_connect)
        event_free(p->ev_connect);
    short ev = s == PGRES_POLLING_WRITING ? EV_WRITE : EV_READ;
    p->ev_connect = event_new(p->st->base, PQsocket(p->conn), ev, pg_on_connect, p);
    event_add(p->ev_connect, NULL);
}

static void pg_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pg_t *p = arg;
    p->conn = PQconnectStart(p->conninfo);
    if (!p->conn || PQstatus(p->conn) == CONNECTION_BAD) {
        log_warn("storage: driver=postgresql event=reconnect-failed error=\"%s\"",
                 p->conn ? PQerrorMessage(p->conn) : "out of memory");
        if (p->conn)
            PQfinish(p->conn);
        p->conn = NULL;
        pg_schedule_retry(p);
        return;
    }
    p->state = PG_CONNECTING;
    pg_poll_connect(p);
}

/* Runs one statement synchronously (open only, before the loop runs). */
static int pg_exec_sync(PGconn *c, const char *sql, char *err, size_t errlen, PGresult **out)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "postgresql: %.*s", (int)strcspn(PQerrorMessage(c), "\n"),
                 PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

static int pg_migrate(PGconn *c, char *err, size_t errlen)
{
    char text[128];
    snprintf(text, sizeof text, "SELECT pg_advisory_lock(%d)", PG_MIGRATE_LOCK);
    if (pg_exec_sync(c, text, err, errlen, NULL) < 0)
        return -1;
    int rc = -1;
    PGresult *res = NULL;
    if (pg_exec_sync(c, "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
                     err, errlen, NULL) < 0 ||
        pg_exec_sync(c, "SELECT version FROM schema_version", err, errlen, &res) < 0)
        goto out;
    int version = PQntuples(res) ? atoi(PQgetvalue(res, 0, 0)) : 0;
    PQclear(res);
    if (version > PG_VERSION) {
        snprintf(err, errlen, "postgresql: schema version %d is newer than this build knows (%d)",
                 version, PG_VERSION);
        goto out;
    }
    for (int v = version; v < PG_VERSION; v++) {
        snprintf(text, sizeof text,
                 "DELETE FROM schema_version; INSERT INTO schema_version VALUES (%d)", v + 1);
        if (pg_exec_sync(c, "BEGIN", err, errlen, NULL) < 0)
            goto out;
        if (pg_exec_sync(c, pg_migrations[v], err, errlen, NULL) < 0 ||
            pg_exec_sync(c, text, err, errlen, NULL) < 0 ||
            pg_exec_sync(c, "COMMIT", err, errlen, NULL) < 0) {
            PQclear(PQexec(c, "ROLLBACK"));
            goto out;
        }
        log_info("storage: driver=postgresql event=migrated version=%d", v + 1);
    }
    rc = 0;
out:
    snprintf(text, sizeof text, "SELECT pg_advisory_unlock(%d)", PG_MIGRATE_LOCK);
    PQclear(PQexec(c, text));
    return rc;
}

/* postgresql://... and postgres://... go to libpq whole; postgresql:CONNINFO
 * gives the conninfo after the scheme. */
static char *pg_conninfo(const char *url)
{
    if (!strncasecmp(url, "postgresql://", 13) || !strncasecmp(url, "postgres://", 11))
        return xstrdup(url);
    return xstrdup(strchr(url, ':') + 1);
}

static void pg_close(storage_t *st)
{
    pg_t *p = st->drv_data;
    if (!p)
        return;
    pg_fail_all(p, "storage closed");
    pg_events_free(p);
    if (p->ev_retry)
        event_free(p->ev_retry);
    if (p->conn)
        PQfinish(p->conn);
    free(p->conninfo);
    free(p);
    st->drv_data = NULL;
}

static int pg_open(storage_t *st, const char *url, char *err, size_t errlen)
{
    pg_t *p = xcalloc(1, sizeof *p);
    p->st = st;
    p->conninfo = pg_conninfo(url);
    st->drv_data = p;
    p->ev_retry = evtimer_new(st->base, pg_on_retry, p);
    p->conn = PQconnectdb(p->conninfo);
    if (!p->conn || PQstatus(p->conn) != CONNECTION_OK) {
        /* libpq's message may name the host, never the password. */
        snprintf(err, errlen, "postgresql: %.*s",
                 p->conn ? (int)strcspn(PQerrorMessage(p->conn), "\n") : 13,
                 p->conn ? PQerrorMessage(p->conn) : "out of memory");
        pg_close(st);
        return -1;
    }
    PQsetNoticeProcessor(p->conn, pg_notice, p);
    if (pg_migrate(p->conn, err, errlen) < 0) {
        pg_close(st);
        return -1;
    }
    pg_up(p);
    return 0;
}

static void pg_submit(storage_t *st, storage_req_t *r)
{
    pg_t *p = st->drv_data;
    if (p->state == PG_DOWN) {
        pg_fail(p, r, "database unavailable");
        return;
    }
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    pg_send_next(p);
}

const storage_driver_t storage_pgsql_driver = {
    .name = "postgresql",
    .async = 1,
    .open = pg_open,
    .close = pg_close,
    .submit = pg_submit,
    .set_cache = NULL,
};
