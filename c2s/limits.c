/* limits: per-IP counters — open connections, SASL failures and in-band
 * registrations in a sliding window. One small hash table keyed by the
 * address text; an entry lives while any counter is non-zero and is reaped by
 * the cron. Per-connection limits (stanza size, depth, read rate) are applied
 * where the connection is set up (client.c) since libevent and the parser
 * enforce them. */
#include "c2s.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

#define LIMITS_BUCKETS 1024

typedef struct ip_ent {
    char ip[48];
    long conns;
    long auth_fails;
    double auth_start;
    long regs;
    double reg_start;
    struct ip_ent *next;
} ip_ent_t;

static ip_ent_t *limits_tab[LIMITS_BUCKETS];

static unsigned limits_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % LIMITS_BUCKETS;
}

static ip_ent_t *limits_get(const char *ip, int create)
{
    unsigned b = limits_hash(ip);
    for (ip_ent_t *e = limits_tab[b]; e; e = e->next)
        if (!strcmp(e->ip, ip))
            return e;
    if (!create)
        return NULL;
    ip_ent_t *e = xcalloc(1, sizeof *e);
    snprintf(e->ip, sizeof e->ip, "%s", ip);
    e->next = limits_tab[b];
    limits_tab[b] = e;
    return e;
}

int limits_conn_add(const char *ip)
{
    ip_ent_t *e = limits_get(ip, 1);
    if (e->conns >= c2s_config->conns_per_ip)
        return -1;
    e->conns++;
    return 0;
}

void limits_conn_del(const char *ip)
{
    ip_ent_t *e = limits_get(ip, 0);
    if (e && e->conns > 0)
        e->conns--;
}

/* Windows restart at the first event after they expire (fixed windows): cheap
 * and good enough against guessing; fail2ban acts on the logs for more. */
int limits_auth_blocked(const char *ip)
{
    ip_ent_t *e = limits_get(ip, 0);
    if (!e || e->auth_fails == 0)
        return 0;
    if (daemon_now() - e->auth_start > c2s_config->auth_fail_window) {
        e->auth_fails = 0;
        return 0;
    }
    return e->auth_fails >= c2s_config->auth_fail_max;
}

void limits_auth_failed(const char *ip)
{
    ip_ent_t *e = limits_get(ip, 1);
    double now = daemon_now();
    if (e->auth_fails == 0 || now - e->auth_start > c2s_config->auth_fail_window) {
        e->auth_fails = 0;
        e->auth_start = now;
    }
    e->auth_fails++;
}

int limits_reg_allowed(const char *ip)
{
    ip_ent_t *e = limits_get(ip, 1);
    double now = daemon_now();
    if (e->regs == 0 || now - e->reg_start > c2s_config->reg_window) {
        e->regs = 0;
        e->reg_start = now;
    }
    if (e->regs >= c2s_config->reg_max)
        return 0;
    e->regs++;
    return 1;
}

void limits_cron(double now)
{
    for (unsigned b = 0; b < LIMITS_BUCKETS; b++) {
        ip_ent_t **pp = &limits_tab[b];
        while (*pp) {
            ip_ent_t *e = *pp;
            int auth_live = e->auth_fails && now - e->auth_start <= c2s_config->auth_fail_window;
            int reg_live = e->regs && now - e->reg_start <= c2s_config->reg_window;
            if (!e->conns && !auth_live && !reg_live) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

void limits_free(void)
{
    for (unsigned b = 0; b < LIMITS_BUCKETS; b++) {
        while (limits_tab[b]) {
            ip_ent_t *e = limits_tab[b];
            limits_tab[b] = e->next;
            free(e);
        }
    }
}
