/* iq_relay: IQs between occupants through the room (XEP-0045 7.2: an
 * occupant asks room/nick for a vCard, version, ping, ...). The request goes
 * to the target's real JID from room/<sender's nick> under an id of our own;
 * its answer, from that real JID to room/<sender's nick>, goes back to the
 * sender from room/<target's nick> under the sender's id. Non-occupants get
 * not-acceptable. Pending requests are forgotten after RELAY_TTL seconds
 * (muc_iq_relay_expire, from the cron); a late answer is then dropped. */
#include "muc.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_TTL 120.0
#define RELAY_MAX 10000

typedef struct relay {
    char *id;            /* the id we sent */
    char *orig_id;
    char *asker;         /* asker's real full JID */
    char *target;        /* target's real full JID */
    char *room;
    char *asker_nick, *target_nick;
    double at;
    struct relay *next;
} relay_t;

static relay_t *relays;
static size_t nrelays;

static void relay_free(relay_t *x)
{
    free(x->id);
    free(x->orig_id);
    free(x->asker);
    free(x->target);
    free(x->room);
    free(x->asker_nick);
    free(x->target_nick);
    free(x);
}

static char *room_nick(const char *room, const char *nick)
{
    char *s = xmalloc(strlen(room) + strlen(nick) + 2);
    sprintf(s, "%s/%s", room, nick);
    return s;
}

void muc_iq_relay(xml_node_t *iq, muc_room_t *r, const char *nick)
{
    const char *from = xml_attr_get(iq, "from");
    muc_occ_t *asker = muc_occ_by_jid(r, from);
    muc_occ_t *target = muc_occ_by_nick(r, nick);
    if (!asker) {
        muc_reply_error(iq, "not-acceptable", "cancel", "only occupants may ask occupants");
        return;
    }
    if (!target) {
        muc_reply_error(iq, "item-not-found", "cancel", NULL);
        return;
    }
    if (nrelays >= RELAY_MAX) {
        muc_reply_error(iq, "resource-constraint", "wait", NULL);
        return;
    }
    relay_t *x = xcalloc(1, sizeof *x);
    char *nid = muc_new_id();
    x->id = xmalloc(strlen(nid) + 5);
    sprintf(x->id, "muc-%s", nid);
    free(nid);
    x->orig_id = xstrdup(xml_attr_get(iq, "id"));
    x->asker = xstrdup(from);
    x->target = xstrdup(muc_occ_primary(target)->jid);   /* one answer: one device */
    x->room = xstrdup(r->jid);
    x->asker_nick = xstrdup(asker->nick);
    x->target_nick = xstrdup(target->nick);
    x->at = daemon_now();
    x->next = relays;
    relays = x;
    nrelays++;
    xml_node_t *out = xml_copy(iq);
    char *f = room_nick(r->jid, asker->nick);
    xml_attr_set(out, "from", f);
    free(f);
    xml_attr_set(out, "to", x->target);
    xml_attr_set(out, "id", x->id);
    muc_send_free(out);
}

int muc_iq_relay_reply(xml_node_t *iq)
{
    const char *id = xml_attr_get(iq, "id"), *from = xml_attr_get(iq, "from");
    if (!id || !from || strncmp(id, "muc-", 4))
        return 0;
    for (relay_t **p = &relays; *p; p = &(*p)->next) {
        relay_t *x = *p;
        if (strcmp(x->id, id))
            continue;
        if (strcmp(x->target, from))
            return 1;                         /* not from whom we asked: dropped */
        *p = x->next;
        nrelays--;
        xml_node_t *out = xml_copy(iq);
        char *f = room_nick(x->room, x->target_nick);
        xml_attr_set(out, "from", f);
        free(f);
        xml_attr_set(out, "to", x->asker);
        xml_attr_set(out, "id", x->orig_id);
        muc_send_free(out);
        relay_free(x);
        return 1;
    }
    return 1;                                 /* late or unknown: nobody waits */
}

void muc_iq_relay_expire(double now)
{
    for (relay_t **p = &relays; *p;) {
        relay_t *x = *p;
        if (now - x->at > RELAY_TTL) {
            *p = x->next;
            nrelays--;
            relay_free(x);
        } else {
            p = &x->next;
        }
    }
}

void muc_iq_relay_free(void)
{
    muc_iq_relay_expire(1e300);
}
