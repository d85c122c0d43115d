/* sasl_mech: what the two mechanism files share and nothing else does.
 * sasl_scram.c holds the generic sasl_server_* / sasl_client_* objects, the
 * SCRAM exchange and the helpers below; sasl_plain.c holds PLAIN and uses
 * those helpers. Both include this header, so a change of signature on one
 * side is a compile error, not a silent mismatch. Outside common/sasl_*.c
 * only sasl.h is used. */
#ifndef WEFT_SASL_MECH_H
#define WEFT_SASL_MECH_H
#include <stddef.h>
#include "sasl.h"

/* 1 if s[0..n) is valid UTF-8 (shortest forms) with no NUL. */
int sasl_utf8_valid(const char *s, size_t n);
/* 1 if the requested authzid may be used by authcid (none, or the user's own
 * bare JID or name: there is no proxy authorization). */
int sasl_authzid_ok(const char *authzid, const char *authcid);
/* Stable fake keys for an unknown user, so that a login attempt for a name
 * that does not exist costs and looks the same as one for a real user. */
void sasl_fake_keys(scram_hash_t h, const char *authcid, scram_keys_t *out);

/* PLAIN (sasl_plain.c): checks one client message. 0 with *authcid and
 * *authzid (caller frees; authzid may be NULL) set, or -1 with *condition set
 * to an RFC 6120 section 6.5 condition. */
int sasl_plain_server_check(const char *in, size_t inlen, sasl_lookup_fn lookup, void *ctx,
                            char **authcid, char **authzid, const char **condition);
/* PLAIN client message "authzid NUL authcid NUL password" appended to out. */
void sasl_plain_client_message(const char *authzid, const char *authcid, const char *password,
                               strbuf_t *out);

#endif
