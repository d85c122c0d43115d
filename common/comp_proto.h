/* comp_proto: names and small builders of the internal component protocol
 * (docs/component-protocol.md), shared by the router and the component client. */
#ifndef WEFT_COMP_PROTO_H
#define WEFT_COMP_PROTO_H
#include <stddef.h>
#include <stdint.h>
#include "strbuf.h"
#include "xml.h"

#define COMP_NS "urn:xmpp:weft:component:1"
#define COMP_NS_ACCEPT "jabber:component:accept"
#define NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"

/* Writes a stream header. id/from/to may be NULL. internal=1 adds version='1.0'
 * and the w: prefix declaration. */
void comp_proto_header(strbuf_t *out, const char *from, const char *to, const char *id,
                       int internal);
/* Writes <stream:error> with condition (and optional text) followed by the
 * closing </stream:stream>. */
void comp_proto_stream_error(strbuf_t *out, const char *condition, const char *text);

/* 1 if a stanza with this element name and type may be answered with an error
 * (never for errors, never for iq results). */
int comp_proto_bounceable(const char *name, const char *type);
/* Turns the raw bytes of a top-level element into its bounce: to/from swapped,
 * type='error', an <error type=etype><condition/></error> child added. Returns
 * NULL if the element must not be answered (comp_proto_bounceable) or does not parse. */
xml_node_t *comp_proto_bounce(const char *bytes, size_t len, const char *condition,
                              const char *etype);

/* Parses the raw bytes of one top-level element of a component stream (in
 * jabber:component:accept unless it declares otherwise); NULL if they do
 * not parse. Caller frees. */
xml_node_t *comp_proto_parse(const char *bytes, size_t len);

/* Rendezvous (highest random weight) score of a partition key for an instance:
 * stable across processes and runs, so a key always maps to the same instance
 * while the set of instances is unchanged, and only the keys of a removed
 * instance move. */
uint64_t comp_proto_partition_score(const char *key, size_t key_len, const char *instance);

/* Random hex string of 2*nbytes chars into buf (cap >= 2*nbytes+1). */
void comp_proto_random_hex(char *buf, size_t nbytes);

/* Decimal text to uint64 (digits only, no overflow); 0, or -1 when it is not one. */
int comp_proto_parse_u64(const char *s, uint64_t *out);

#endif
