/* dispatch: weft-muc's one entry point for a stanza from the network and its
 * one exit. muc_dispatch checks the addressing and sizes and hands the
 * stanza to occupant.c (presence), message.c or disco.c (IQs); every
 * stanza the service writes goes through muc_send to the output main.c set
 * (the router link). Nothing here knows the link, so tests/fuzz drives the
 * whole service through these two calls with an output that captures. */
#include "muc.h"
#include "log.h"
#include "stanza_check.h"
#include <stdlib.h>
#include <string.h>

muc_cfg_t *muc_config;
storage_t *muc_storage;

static muc_output_fn output;
static const char *cur_id;     /* of the stanza being handled, from its marker */

void muc_set_output(muc_output_fn fn)
{
    output = fn;
}

int muc_send(const xml_node_t *st)
{
    muc_metrics_stanza("out", st->name);
    return output ? output(st) : -1;
}

void muc_send_free(xml_node_t *st)
{
    muc_send(st);
    xml_free(st);
}

char *muc_in_stanza_id(void)
{
    return cur_id ? xstrdup(cur_id) : muc_new_id();
}

static size_t serialized_len(const xml_node_t *st)
{
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NS_CLIENT, &sb);
    size_t n = sb.len;
    strbuf_free(&sb);
    return n;
}

static void route(xml_node_t *st)
{
    const char *to = xml_attr_get(st, "to"), *from = xml_attr_get(st, "from");
    const char *type = xml_attr_get(st, "type");
    if (!to || !from)
        return;
    const char *bad = stanza_check(st);
    if (bad) {
        muc_reply_error(st, bad, "modify", NULL);
        return;
    }
    jid_t j, f;
    if (jid_parse(to, &j) != JID_OK) {
        muc_reply_error(st, "jid-malformed", "modify", NULL);
        return;
    }
    if (jid_parse(from, &f) != JID_OK) {
        jid_clear(&j);
        return;
    }
    jid_clear(&f);
    if (strcmp(j.domain, muc_config->domain)) {
        log_warn("event=inbound result=dropped reason=not-our-domain to=%s", to);
    } else if (!strcmp(st->name, "iq") && j.resource && type &&
               (!strcmp(type, "result") || !strcmp(type, "error")) && muc_iq_relay_reply(st)) {
        ;                                         /* an occupant's answer, sent on */
    } else if (type && !strcmp(type, "error")) {
        muc_occ_error_in(st, &j);
    } else if (!strcmp(st->name, "iq")) {
        muc_iq_in(st, &j);
    } else if (serialized_len(st) > muc_config->stanza_max) {
        muc_reply_error(st, "policy-violation", "modify", "stanza too large");
    } else if (!strcmp(st->name, "presence")) {
        muc_presence_in(st, &j);
    } else {
        muc_message_in(st, &j);
    }
    jid_clear(&j);
}

void muc_dispatch(xml_node_t *st, const char *in_id)
{
    muc_metrics_stanza("in", st->name);
    cur_id = in_id;
    route(st);
    cur_id = NULL;
}
