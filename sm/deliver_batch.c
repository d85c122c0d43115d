/* deliver_batch: the sm's deliveries to clients, merged when they carry the
 * same stanza.
 *
 * sm_deliver hands one stanza to one session's c2s. A room message reaches
 * the sm as one delivery per occupant, a PEP publish makes one notification
 * per contact, a presence goes to every contact's sessions: runs of
 * deliveries of one stanza that differ only in 'to'. Each used to be its own
 * <route/>, which the router scanned and c2s parsed again, one by one. Here
 * consecutive deliveries of the same stanza (serialized without 'to', byte
 * for byte) wait in a batch, and go to each c2s instance as one
 * <deliver/> element (docs/session-protocol.md, "Delivering one stanza to
 * several sessions"): the stanza once, then one <r sid='...' to='...'/> per
 * session. A batch of one is a plain <route/>, as before.
 *
 * Order on the link is kept: the batch is written before anything else the
 * sm writes to the router (sm_link_send_raw flushes it first) and before
 * every acknowledgement (comp_client's before_ack), so a router element is
 * never acknowledged before the deliveries it caused are on the link, and
 * what goes to one c2s goes in the order it was handed over. What is left at
 * the end of a loop turn is written then. A batch never grows past half the
 * router's limit for one element, nor past sessions.deliver-recipients
 * sessions: c2s writes a batch's copies once it has read the whole element,
 * so a PEP publish to 1,000 contacts in one element reached the first of
 * them only after the sm had handled all 1,000 and c2s had queued them all
 * (26.5 ms a round against 23.3 with 64 a batch, weft-bench-xmpp pep). */
#include "sm.h"
#include "comp_client.h"
#include "comp_proto.h"
#include "log.h"
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

typedef struct rcpt {
    char *c2s, *sid, *to;    /* to: the stanza's 'to' for this session, NULL if it had none */
    int sent;                /* written at this flush already (grouping by c2s) */
} rcpt_t;                    /* c2s is one allocation holding all three strings */

static strbuf_t tmpl;        /* the stanza of the batch, serialized without 'to' */
static strbuf_t cand;        /* the next delivery's, compared with tmpl (kept: no malloc each time) */
static strbuf_t out;         /* what a flush writes, one element at a time (kept, as cand) */
static size_t tmpl_name_end; /* offset in tmpl right after "<name" */
static rcpt_t *rcpts;
static size_t nrcpt, rcpt_cap, rcpt_bytes;
static int flushing;
static struct event *flush_ev;
/* sm_deliver_shared: the fan-out's tree, the xml_mutations() count at which it
 * was declared, and its generation; tmpl_gen is the generation tmpl was
 * made from (0: none of them). */
static const xml_node_t *shared_st;
static unsigned long shared_mark;
static unsigned long shared_gen, tmpl_gen;

/* " name='value'", escaped. */
static void put_attr(strbuf_t *out, const char *name, const char *value)
{
    strbuf_putc(out, ' ');
    strbuf_puts(out, name);
    strbuf_append(out, "='", 2);
    xml_escape(out, value, strlen(value), 1);
    strbuf_putc(out, '\'');
}

/* The stanza of the batch with r's 'to' put back. */
static void put_stanza(strbuf_t *out, const rcpt_t *r)
{
    strbuf_append(out, tmpl.data, tmpl_name_end);
    if (r->to)
        put_attr(out, "to", r->to);
    strbuf_append(out, tmpl.data + tmpl_name_end, tmpl.len - tmpl_name_end);
}

static void write_route(strbuf_t *out, const rcpt_t *r, const char *domain)
{
    strbuf_puts(out, "<route xmlns='" SM_NS_SESSION "'");
    put_attr(out, "to", r->c2s);
    put_attr(out, "from", domain);
    put_attr(out, "sid", r->sid);
    strbuf_puts(out, ">");
    put_stanza(out, r);
    strbuf_puts(out, "</route>");
}

static void write_deliver(strbuf_t *out, size_t first, const char *domain)
{
    const char *c2s = rcpts[first].c2s;
    strbuf_puts(out, "<deliver xmlns='" SM_NS_SESSION "'");
    put_attr(out, "to", c2s);
    put_attr(out, "from", domain);
    strbuf_puts(out, ">");
    for (size_t i = first; i < nrcpt; i++) {
        rcpt_t *r = &rcpts[i];
        if (r->sent || strcmp(r->c2s, c2s))
            continue;
        strbuf_puts(out, "<r");
        put_attr(out, "sid", r->sid);
        if (r->to)
            put_attr(out, "to", r->to);
        strbuf_puts(out, "/>");
        r->sent = 1;
    }
    strbuf_append(out, tmpl.data, tmpl.len);
    strbuf_puts(out, "</deliver>");
}

void sm_deliver_flush(void)
{
    if (!nrcpt || flushing)
        return;
    flushing = 1;
    const char *domain = sm_domain();
    for (size_t i = 0; i < nrcpt; i++) {
        if (rcpts[i].sent)
            continue;
        size_t same = 0;
        for (size_t j = i; j < nrcpt && same < 2; j++)
            same += !rcpts[j].sent && !strcmp(rcpts[j].c2s, rcpts[i].c2s);
        strbuf_reset(&out);
        if (same == 1) {
            write_route(&out, &rcpts[i], domain);
            rcpts[i].sent = 1;
        } else {
            write_deliver(&out, i, domain);
        }
        sm_link_send_raw(out.data, out.len);
    }
    if (out.cap > 1024 * 1024) {        /* one huge batch does not keep its buffer */
        strbuf_free(&out);
        strbuf_init(&out);
    }
    for (size_t i = 0; i < nrcpt; i++)
        free(rcpts[i].c2s);
    nrcpt = 0;
    rcpt_bytes = 0;
    flushing = 0;
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    sm_deliver_flush();
}

/* The plain route, for a c2s that did not say it takes <deliver/> (an
 * older one, in a rolling upgrade). */
static void deliver_route(sm_sess_t *s, xml_node_t *st)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<route xmlns='" SM_NS_SESSION "'");
    put_attr(&sb, "to", s->c2s);
    put_attr(&sb, "from", sm_domain());
    put_attr(&sb, "sid", s->sid);
    strbuf_puts(&sb, ">");
    xml_serialize(st, COMP_NS_ACCEPT, &sb);
    strbuf_puts(&sb, "</route>");
    sm_link_send_raw(sb.data, sb.len);   /* writes what the batch holds first */
    strbuf_free(&sb);
}

void sm_deliver(sm_sess_t *s, xml_node_t *st)
{
    if (!s->deliver_many) {
        deliver_route(s, st);
        return;
    }
    const char *to = xml_attr_get(st, "to");
    /* A fan-out's shared tree, unchanged since tmpl was made from it: tmpl
     * is its serialization already (a room message to 500 occupants is
     * serialized once, not 500 times). */
    int shared = st == shared_st && xml_mutations() == shared_mark;
    int reuse = shared && tmpl_gen == shared_gen;
    if (!reuse) {
        strbuf_reset(&cand);
        xml_serialize_omit(st, COMP_NS_ACCEPT, "to", &cand);
    }
    size_t lc = strlen(s->c2s) + 1, ls = strlen(s->sid) + 1, lt = to ? strlen(to) + 1 : 0;
    size_t add = lc + ls + lt + 32;
    size_t limit = sm_link_stanza_limit() / 2;
    if (nrcpt && ((!reuse && (cand.len != tmpl.len || memcmp(cand.data, tmpl.data, cand.len))) ||
                  tmpl.len + rcpt_bytes + add > limit || (long)nrcpt >= sm_config->deliver_recipients))
        sm_deliver_flush();
    if (!nrcpt && !reuse) {
        strbuf_t t = tmpl;
        tmpl = cand;
        cand = t;
        tmpl_name_end = 1 + strlen(st->name);   /* serialized as "<name..." */
        tmpl_gen = shared ? shared_gen : 0;
    }
    if (nrcpt == rcpt_cap) {
        rcpt_cap = rcpt_cap ? 2 * rcpt_cap : 64;
        rcpts = xrealloc(rcpts, rcpt_cap * sizeof *rcpts);
    }
    char *block = xmalloc(lc + ls + lt);
    memcpy(block, s->c2s, lc);
    memcpy(block + lc, s->sid, ls);
    if (to)
        memcpy(block + lc + ls, to, lt);
    rcpts[nrcpt++] = (rcpt_t){.c2s = block, .sid = block + lc, .to = to ? block + lc + ls : NULL};
    rcpt_bytes += add;
    if (nrcpt == 1) {
        if (!flush_ev)
            flush_ev = event_new(daemon_base(), -1, 0, flush_cb, NULL);
        event_active(flush_ev, EV_TIMEOUT, 1);   /* after what this turn still has to handle */
    }
}

void sm_deliver_shared(const xml_node_t *st, int fresh)
{
    if (fresh || st != shared_st)
        shared_gen++;
    shared_st = st;
    shared_mark = xml_mutations();
}

void sm_deliver_batch_free(void)
{
    sm_deliver_flush();
    if (flush_ev)
        event_free(flush_ev);
    flush_ev = NULL;
    free(rcpts);
    rcpts = NULL;
    rcpt_cap = 0;
    strbuf_free(&tmpl);
    tmpl_gen = 0;
    shared_st = NULL;
    strbuf_free(&cand);
    strbuf_free(&out);
}
