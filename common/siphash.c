/* siphash: SipHash-2-4, written from the algorithm's description in the
 * paper "SipHash: a fast short-input PRF" (2012): four 64-bit words of
 * state from the key, two compression rounds per 8-byte little-endian word
 * of input, the last word holding the leftover bytes and the length's low
 * byte, four finalization rounds. tests/unit/test_mam_id.c checks the
 * paper's test vector. */
#include "siphash.h"

#include <string.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

typedef struct sip {
    uint64_t v0, v1, v2, v3;
    unsigned char tail[8];      /* bytes not yet making a whole word */
    size_t ntail;
    uint64_t len;
} sip_t;

static uint64_t load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void round_(sip_t *s)
{
    s->v0 += s->v1;
    s->v1 = ROTL(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = ROTL(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = ROTL(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = ROTL(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = ROTL(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = ROTL(s->v2, 32);
}

static void word(sip_t *s, uint64_t m)
{
    s->v3 ^= m;
    round_(s);
    round_(s);
    s->v0 ^= m;
}

static void sip_init(sip_t *s, const unsigned char key[16])
{
    uint64_t k0 = load64(key), k1 = load64(key + 8);
    s->v0 = k0 ^ 0x736f6d6570736575ull;     /* "somepseudorandomlygeneratedbytes" */
    s->v1 = k1 ^ 0x646f72616e646f6dull;
    s->v2 = k0 ^ 0x6c7967656e657261ull;
    s->v3 = k1 ^ 0x7465646279746573ull;
    s->ntail = 0;
    s->len = 0;
}

static void sip_update(sip_t *s, const unsigned char *p, size_t n)
{
    s->len += n;
    while (n) {
        if (s->ntail == 0 && n >= 8) {
            word(s, load64(p));
            p += 8;
            n -= 8;
            continue;
        }
        size_t take = 8 - s->ntail < n ? 8 - s->ntail : n;
        memcpy(s->tail + s->ntail, p, take);
        s->ntail += take;
        p += take;
        n -= take;
        if (s->ntail == 8) {
            word(s, load64(s->tail));
            s->ntail = 0;
        }
    }
}

static uint64_t sip_final(sip_t *s)
{
    uint64_t b = (uint64_t)(s->len & 0xff) << 56;
    for (size_t i = 0; i < s->ntail; i++)
        b |= (uint64_t)s->tail[i] << (8 * i);
    word(s, b);
    s->v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        round_(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

uint64_t siphash24_parts(const unsigned char key[16], const void *const *parts,
                         const size_t *lens, size_t n)
{
    sip_t s;
    sip_init(&s, key);
    for (size_t i = 0; i < n; i++)
        sip_update(&s, parts[i], lens[i]);
    return sip_final(&s);
}

uint64_t siphash24(const unsigned char key[16], const void *data, size_t len)
{
    const void *parts[1] = {data};
    return siphash24_parts(key, parts, &len, 1);
}
