/* The resync window (docs/sm.md, "resync window").
 *
 * When the sm starts, or gains users because another instance was taken
 * over, the router hands it at once what it held for those users; c2s
 * re-announces their sessions (resync) only after it saw the sm's name come
 * up, so those re-announcements arrive after the held stanzas. A stanza for
 * a session the sm does not know yet would be handled as for an absent
 * resource: a groupchat message answered with an error (on which a room
 * removes the occupant, XEP-0045 status 333), a directed presence or an IQ
 * lost. So while the window is open stanzas for full JIDs the sm does not
 * know wait here, in order, and are handled as if they had just arrived
 * when it closes: sessions.resync-wait seconds after it opened and after
 * the last re-announcement.
 *
 * Per user order is kept: once a user has a stanza waiting, every later one
 * for that user waits too. Past sessions.resync-max waiting stanzas, a
 * stanza is handled at once, as without the window. Stanzas for users that
 * move to another instance (a handback) or for everyone (we were taken
 * over) go back through the router (sm_resync_send_away). */
#include "sm.h"
#include "store.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

#define WAIT_BUCKETS 1024

typedef struct waiting {
    xml_node_t *st;
    char *bare;                 /* the user it is for */
    sm_ack_t *ack;              /* the router element it came from */
    struct waiting *next;
} waiting_t;

typedef struct user_count {     /* users with stanzas waiting, and how many */
    char *bare;
    size_t n;
    struct user_count *next;
} user_count_t;

static waiting_t *head, **tail = &head;
static size_t nwaiting;
static user_count_t *counts[WAIT_BUCKETS];
static double until;            /* the window is open while now < until */
static struct event *timer;
static int warned_full;
static size_t drained;          /* handled since the window closed */
static int replaying;           /* sm_inbound of a waiting stanza: it does not wait again */

static unsigned bucket_of(const char *bare)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)bare; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % WAIT_BUCKETS;
}

static user_count_t **count_find(const char *bare)
{
    user_count_t **pp = &counts[bucket_of(bare)];
    while (*pp && strcmp((*pp)->bare, bare))
        pp = &(*pp)->next;
    return pp;
}

static void count_add(const char *bare)
{
    user_count_t **pp = count_find(bare);
    if (!*pp) {
        *pp = xcalloc(1, sizeof **pp);
        (*pp)->bare = xstrdup(bare);
    }
    (*pp)->n++;
}

static void count_drop(const char *bare)
{
    user_count_t **pp = count_find(bare), *c = *pp;
    if (c && !--c->n) {
        *pp = c->next;
        free(c->bare);
        free(c);
    }
}

/* Unlinked already: its count, acknowledgement and memory go. */
static void waiting_free(waiting_t *w)
{
    count_drop(w->bare);
    sm_ack_drop(w->ack);
    xml_free(w->st);
    free(w->bare);
    free(w);
    nwaiting--;
}

/* The window closed: what waited is handled, oldest first, while the router
 * link takes it (backpressure, docs/component-protocol.md 10.1). The rest
 * goes on when the link is below its low-water mark again (sm_resync_resume,
 * from sm_users_resume, as the users' own queues do); meanwhile a user's
 * later stanzas queue behind its own (sm_resync_waits), so its order holds. */
static void replay(void)
{
    size_t n = 0;
    while (head && !sm_link_above()) {
        waiting_t *w = head;
        head = w->next;
        if (!head)
            tail = &head;
        sm_ack_t *prev = sm_ack_swap(w->ack);
        replaying = 1;
        sm_inbound(w->st);
        replaying = 0;
        sm_ack_swap(prev);
        waiting_free(w);
        n++;
    }
    drained += n;
    if (head) {
        log_debug("event=resync-window state=draining handled=%zu left=%zu", drained, nwaiting);
        return;
    }
    log_notice("event=resync-window state=closed handled=%zu", drained);
    drained = 0;
    warned_full = 0;
}

void sm_resync_resume(void)
{
    if (until <= 0 && head)
        replay();
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void arm(void)
{
    if (!timer)
        timer = evtimer_new(daemon_base(), on_timer, NULL);
    double left = until - daemon_now();
    if (left < 0)
        left = 0;
    struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6)};
    evtimer_add(timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (daemon_now() < until) {
        arm();                                /* a re-announcement moved the end */
        return;
    }
    until = 0;
    replay();
}

void sm_resync_open(const char *why)
{
    if (sm_config->resync_wait <= 0)
        return;
    double end = daemon_now() + sm_config->resync_wait;
    if (end > until)
        until = end;
    log_info("event=resync-window state=open reason=%s seconds=%g", why, sm_config->resync_wait);
    arm();
}

void sm_resync_seen(void)
{
    if (until > 0) {
        double end = daemon_now() + sm_config->resync_wait;
        if (end > until)
            until = end;                      /* the timer re-arms itself */
    }
}

/* Whether to is a full JID with no session yet. A stanza for a bare JID is
 * handled at once: a message is stored offline and delivered when the
 * re-announcement brings the session's presence, a presence or an IQ is
 * the account's, as when the user is offline. */
static int unmatched(const jid_t *to)
{
    if (!to->resource)
        return 0;
    sm_user_t *u = sm_user_get(to->bare);
    return !u || !sm_sess_find(u, to->resource);
}

int sm_resync_waits(const xml_node_t *st, const jid_t *to)
{
    if ((until <= 0 && !head) || replaying || !to->node)
        return 0;
    /* Open: a stanza for a session not known yet waits. Draining after the
     * close: only those behind a stanza of their user's still waiting. */
    if (!*count_find(to->bare) && (until <= 0 || !unmatched(to)))
        return 0;
    if (nwaiting >= (size_t)sm_config->resync_max) {
        if (!warned_full)
            log_warn("event=resync-window result=full max=%ld", sm_config->resync_max);
        warned_full = 1;
        return 0;
    }
    waiting_t *w = xcalloc(1, sizeof *w);
    w->st = xml_copy(st);
    w->bare = xstrdup(to->bare);
    w->ack = sm_ack_take();
    *tail = w;
    tail = &w->next;
    nwaiting++;
    count_add(to->bare);
    return 1;
}

/* What waits for a user this instance no longer owns (all: for anyone)
 * goes to the router, which takes it to the owner; send is the core's. */
void sm_resync_send_away(int all, int (*send)(const xml_node_t *st))
{
    size_t n = 0;
    for (waiting_t **pp = &head; *pp;) {
        waiting_t *w = *pp;
        if (!all && sm_owns(w->bare)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        send(w->st);
        waiting_free(w);
        n++;
    }
    tail = &head;
    while (*tail)
        tail = &(*tail)->next;
    if (n)
        log_notice("event=resync-window result=sent-away stanzas=%zu all=%d", n, all);
}

size_t sm_resync_waiting(void)
{
    return nwaiting;
}

/* At exit: what waited is not acknowledged, so the router sends it again. */
void sm_resync_free(void)
{
    while (head) {
        waiting_t *w = head;
        head = w->next;
        waiting_free(w);
    }
    tail = &head;
    drained = 0;
    until = 0;
    replaying = 0;
    if (timer)
        event_free(timer);
    timer = NULL;
}
