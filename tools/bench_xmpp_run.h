/* bench_xmpp_run: what weft-bench-xmpp's scenarios share (bench_xmpp.c):
 * the options, the sessions, the loop, the measurements and the report. A
 * scenario in its own file (bench_xmpp_pep.c) uses them as the ones in
 * bench_xmpp.c do. */
#ifndef WEFT_BENCH_XMPP_RUN_H
#define WEFT_BENCH_XMPP_RUN_H
#include "bench_xmpp.h"
#include <stdint.h>

typedef struct bx_opt {
    const char *host, *scenario, *label, *reg, *levels_s, *peer_host, *peer_domain, *ready_file;
    const char *muc_service;     /* muc: the rooms' domain (default conference.DOMAIN) */
    int port, users, contacts, pairs, window, concurrency, rounds, body_bytes, cmd_jobs, peer_port;
    int rooms, occupants, senders; /* muc: K rooms of N occupants, S of them sending */
    int rate_given;              /* --rate was on the command line (muc: rate, not window) */
    double seconds, settle, rate, drain;
} bx_opt_t;
extern bx_opt_t opt;
extern bx_target_t tgt, peer_tgt;
extern int failures;
extern char first_failure[200];

typedef struct peer {
    bx_conn_t *c;
    int ready;
    /* chat */
    uint32_t next_seq, expect_seq, inflight;
    uint64_t sent, recvd;
    /* fanout */
    int got_hub;
    int hub_has;             /* pep: the hub received this contact's presence */
    int round_seen;
    /* steady (sender: next_seq, sent; receiver: the rest) */
    char *to;                /* the bare JID messages to this user go to */
    uint8_t *seen;           /* bit per sequence number received from the partner */
    size_t seen_bytes;
    uint64_t uniq, dups, delayed, reordered, next_send_ns, retry_ns, recovered_ns;
    uint32_t max_seq;
    double backoff;
    int lost_once, reconnects;
} peer_t;
extern peer_t *peers;
extern int n_peers, n_ready;

/* Measured interval: wall, own CPU, server CPU, and the stanzas all our
 * connections received in it (bx_stanzas_in), so the generator's CPU per
 * received stanza (gen_us_per_received) shows how close it is to being the
 * bottleneck. */
typedef struct span {
    uint64_t t0, rx0, rx, raw0, raw;
    double self0, srv0, wall, self_pct, srv_pct, self_s;
} span_t;
void span_begin(span_t *s);
void span_end(span_t *s);
/* CPU seconds (utime+stime) of each --pids/--procs process, with its comm
 * name; returns how many were filled (at most max). */
int cpu_server_each(double *secs, char (*names)[16], int max);
#define BX_MAX_PROCS 16
double loadavg_1m(void);                /* -1 when unknown */

/* Latency samples in microseconds; lat_q: quantile in ms (sorts them). */
typedef struct lat { uint32_t *v; size_t n, cap; } lat_t;
void lat_add(lat_t *l, uint64_t ns);
double lat_q(lat_t *l, double q);

void loop_run(void (*fn)(void));        /* fn every 10 ms until loop_stop() */
void loop_stop(void);
void loop_for(double s);
double since_s(uint64_t t0);

void peers_alloc(int n);
void sess_ready(bx_conn_t *c);
void sess_closed(bx_conn_t *c, int clean, const char *why);
int ramp_to(int upto, int flags, const bx_handler_t *h);   /* 0 when all ready */
void close_all(void);

void json_open(strbuf_t *j);
void json_common(strbuf_t *j, const span_t *s);
int from_is(const char *from, const char *bare);   /* from is bare or one of its resources */
int cmp_dbl(const void *a, const void *b);

int run_pep(void);                                  /* bench_xmpp_pep.c */
int run_muc(void);                                  /* bench_xmpp_muc.c */

#endif
