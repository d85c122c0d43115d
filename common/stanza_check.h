/* stanza_check: the syntax rules of RFC 6120 section 8 and RFC 6121 that an
 * entry point applies to a stanza before acting on it. c2s checks what its
 * clients send (a bad client never reaches the sm); the sm checks again what
 * reaches it from s2s, components and other sm instances. Pure functions of
 * the element, no state. */
#ifndef WEFT_STANZA_CHECK_H
#define WEFT_STANZA_CHECK_H
#include "xml.h"

/* NULL when st (a message, presence or iq in its stream's namespace) follows
 * the rules, else the stanza error condition to answer with ("bad-request"):
 * - iq: 'type' must be get, set, result or error (RFC 6120 8.2.3 rule 2); a
 *   get or set needs an 'id' (rule 1) and exactly one child element (rule 6);
 * - presence: no 'type', or one of RFC 6121 4.7.1's seven values;
 * - message: any 'type' is accepted (RFC 6121 5.2.2: an unknown one is
 *   handled as normal).
 * Results and errors are never judged beyond their type: nobody may answer
 * them (stanza_error_allowed). */
const char *stanza_check(const xml_node_t *st);

/* 1 if an error may be sent in reply to st: never to a stanza of type error
 * (RFC 6120 8.3.1), never to an iq result (8.2.3 rule 5). Unlike
 * comp_proto_bounceable this says yes to an iq with a missing or unknown
 * type, which must get bad-request. */
int stanza_error_allowed(const xml_node_t *st);

#endif
