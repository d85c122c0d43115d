/* caps_hash: the XEP-0115 verification string of a disco#info answer.
 *
 * One implementation for every process: the sm verifies the hashes clients
 * announce in presence (sm/caps.c) and answers disco#info for its own
 * node#ver (sm/mod_disco.c); c2s hashes the sm's disco#info of the domain to
 * put the server's caps in its stream features (c2s/server_caps.c).
 *
 * The input is a parsed <query xmlns='http://jabber.org/protocol/disco#info'/>
 * from the network: anything may be missing or repeated. An answer that
 * section 5.4 calls ill-formed has no verification string (NULL / -1), so a
 * caller never announces or trusts a hash for it. Work and memory are
 * O(n log n) in the number of children; nothing is kept between calls. */
#ifndef WEFT_CAPS_HASH_H
#define WEFT_CAPS_HASH_H
#include "strbuf.h"
#include "xml.h"

#define CAPS_NS "http://jabber.org/protocol/caps"
#define CAPS_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define CAPS_NS_DATA "jabber:x:data"

/* Appends the string S of section 5.1 (before hashing) to out: identities
 * sorted by category, type, xml:lang, each "cat/type/lang/name<"; features
 * sorted, each "var<"; then the XEP-0128 forms sorted by FORM_TYPE, each
 * "FORM_TYPE<" and its fields sorted by var, "var<" and the sorted values
 * "value<". Forms without a FORM_TYPE field of type 'hidden' with a value
 * are left out (5.4 step 3.6); features without a var too. Returns 0, or -1
 * (out then holds a partial string) when the answer is ill-formed (5.4
 * steps 3.3-3.5): two identities alike, one feature twice, two forms with
 * one FORM_TYPE, or a FORM_TYPE field with differing values. */
int caps_hash_input(const xml_node_t *query, strbuf_t *out);

/* The 'ver' of query for hash='sha-1': base64 of the SHA-1 of S. The caller
 * frees it. NULL when the answer is ill-formed. */
char *caps_hash_ver(const xml_node_t *query);

#endif
