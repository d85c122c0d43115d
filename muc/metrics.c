/* metrics: weft-muc's Prometheus metrics (served at metrics.listen by the
 * skeleton; docs/muc.md, "Metrics"). Rooms, occupants and sessions are
 * counted from room.c's tables at each scrape, the router link's state from
 * main.c; stanzas, MAM queries and gone sessions are counted where they
 * happen. No label names a room or a user: the values come from fixed sets. */
#include "muc.h"
#include "metrics.h"
#include <string.h>

static metrics_family_t *m_rooms, *m_occs, *m_sess, *m_stanzas, *m_mam, *m_gone, *m_restored,
    *m_link, *m_unacked, *m_deferred, *m_held;

/* Only the three stanza kinds: anything else the router gave is not one. */
static const char *kind_of(const char *name)
{
    static const char *const kinds[] = {"message", "presence", "iq"};
    for (size_t i = 0; i < 3; i++)
        if (name && !strcmp(name, kinds[i]))
            return kinds[i];
    return NULL;
}

void muc_metrics_stanza(const char *direction, const char *name)
{
    const char *k = kind_of(name);
    if (m_stanzas && k)
        metrics_inc(m_stanzas, direction, k);
}

void muc_metrics_mam_query(void)
{
    if (m_mam)
        metrics_inc(m_mam, NULL, NULL);
}

void muc_metrics_session_gone(void)
{
    if (m_gone)
        metrics_inc(m_gone, NULL, NULL);
}

void muc_metrics_restored(size_t occupants, size_t sessions)
{
    if (!m_restored)
        return;
    metrics_gauge_set(m_restored, "occupants", NULL, (double)occupants);
    metrics_gauge_set(m_restored, "sessions", NULL, (double)sessions);
}

static void muc_metrics_collect(void)
{
    size_t persistent = 0, temporary = 0, occs = 0, sess = 0;
    for (muc_room_t *r = muc_room_each(NULL); r; r = muc_room_each(r)) {
        if (r->cfg.persistent)
            persistent++;
        else
            temporary++;
        occs += r->nocc;
        for (muc_occ_t *o = r->occs; o; o = o->next)
            sess += o->nsess;
    }
    metrics_gauge_set(m_rooms, "persistent", NULL, (double)persistent);
    metrics_gauge_set(m_rooms, "temporary", NULL, (double)temporary);
    metrics_gauge_set(m_occs, NULL, NULL, (double)occs);
    metrics_gauge_set(m_sess, NULL, NULL, (double)sess);
    metrics_gauge_set(m_link, NULL, NULL, muc_link_ready() ? 1 : 0);
    metrics_gauge_set(m_unacked, NULL, NULL, (double)muc_link_unacked());
    metrics_gauge_set(m_deferred, NULL, NULL, (double)muc_deferred_count());
    metrics_gauge_set(m_held, NULL, NULL, (double)muc_outq_held());
}

void muc_metrics_register(void)
{
    m_rooms = metrics_family("weft_muc_rooms", METRICS_GAUGE, "Rooms of this instance by kind.", "kind", NULL, 0);
    m_occs = metrics_family("weft_muc_occupants", METRICS_GAUGE, "Occupants (nicks) in every room.", NULL, NULL, 0);
    m_sess = metrics_family("weft_muc_sessions", METRICS_GAUGE,
                            "Occupant sessions (real full JIDs): more than occupants when devices share a nick.",
                            NULL, NULL, 0);
    m_stanzas = metrics_family("weft_muc_stanzas_total", METRICS_COUNTER,
                               "Stanzas from the router (in) and to it (out: every broadcast copy) by kind.",
                               "direction,kind", NULL, 0);
    m_mam = metrics_family("weft_muc_mam_queries_total", METRICS_COUNTER, "MAM queries on room archives.", NULL,
                           NULL, 0);
    m_gone = metrics_family("weft_muc_sessions_gone_total", METRICS_COUNTER,
                            "Sessions removed because a delivery to them failed (status 333).", NULL, NULL, 0);
    m_restored = metrics_family("weft_muc_restored", METRICS_GAUGE,
                                "Occupants and sessions read back from storage at this start.", "what", NULL, 0);
    m_link = metrics_family("weft_muc_router_link_up", METRICS_GAUGE,
                            "1 while the router link is authenticated and the service domain bound.", NULL, NULL, 0);
    m_unacked = metrics_family("weft_muc_router_unacked_stanzas", METRICS_GAUGE,
                               "Stanzas written to the router and not yet acknowledged.", NULL, NULL, 0);
    m_deferred = metrics_family("weft_muc_deferred_stanzas", METRICS_GAUGE,
                                "Stanzas received and waiting for room on the router socket before being handled.",
                                NULL, NULL, 0);
    m_held = metrics_family("weft_muc_held_stanzas", METRICS_GAUGE,
                            "Stanzas handled whose output waits for their storage writes to commit (PostgreSQL).",
                            NULL, NULL, 0);
    static const char *const kinds[] = {"message", "presence", "iq"};
    for (size_t i = 0; i < 3; i++) {
        metrics_series(m_stanzas, "in", kinds[i]);
        metrics_series(m_stanzas, "out", kinds[i]);
    }
    metrics_series(m_mam, NULL, NULL);
    metrics_series(m_gone, NULL, NULL);
    metrics_series(m_restored, "occupants", NULL);
    metrics_series(m_restored, "sessions", NULL);
    storage_metrics_register();
    metrics_collector(muc_metrics_collect);
}
