/* siphash: SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed 64-bit
 * pseudorandom function for short inputs: a MAC where a whole HMAC would
 * cost more than the message it tags (sm/mam_id.c's archive ids). */
#ifndef WEFT_SIPHASH_H
#define WEFT_SIPHASH_H
#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of data (len bytes) under the 16-byte key. */
uint64_t siphash24(const unsigned char key[16], const void *data, size_t len);

/* The same over the concatenation of n pieces, without copying them. */
uint64_t siphash24_parts(const unsigned char key[16], const void *const *parts,
                         const size_t *lens, size_t n);

#endif
