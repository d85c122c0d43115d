/* dns_wire: builds SRV queries and parses their responses (see dns_wire.h).
 *
 * Parsing never trusts a count or a length from the packet: every read checks
 * it against the packet's end first, and a broken structure anywhere in the
 * part we walk (header, question, answer section) makes the whole packet
 * DNS_MALFORMED. Authority and additional sections are not read. */
#include "dns_wire.h"
#include <string.h>
#include <strings.h>

/* One resource record's fixed part, as read by rr_read. */
typedef struct dns_rr {
    char owner[DNS_NAME_MAX];
    int owner_ok;             /* 0: the owner name holds bytes we never match */
    uint16_t type;
    uint16_t rclass;
    size_t rdata;             /* offset of the RDATA */
    size_t rdlen;
} dns_rr_t;

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static int host_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Reads the name at *off into out (text form, lowercase). *off moves past
 * the name's bytes at that place (a pointer ends them). Returns 0, 1 when the
 * name is well formed but holds bytes outside host_char (out is then ""), or
 * -1 when it is malformed: out of bounds, too long, a pointer loop (more
 * than DNS_MAX_JUMPS jumps) or a reserved label type. */
static int name_read(const uint8_t *pkt, size_t len, size_t *off, char *out)
{
    size_t pos = *off, after = 0, o = 0, wire = 1;   /* wire: octets so far, with the final zero */
    unsigned jumps = 0;
    int odd = 0;
    for (;;) {
        if (pos >= len)
            return -1;
        uint8_t c = pkt[pos];
        if ((c & 0xC0) == 0xC0) {
            if (pos + 1 >= len || ++jumps > DNS_MAX_JUMPS)
                return -1;
            if (jumps == 1)
                after = pos + 2;
            pos = ((size_t)(c & 0x3F) << 8) | pkt[pos + 1];
            continue;
        }
        if (c & 0xC0)                /* 0x40 and 0x80: extended label types (RFC 6891) */
            return -1;
        if (c == 0) {
            pos++;
            break;
        }
        wire += (size_t)c + 1;
        if (wire > 255 || pos + 1 + c > len)
            return -1;
        for (size_t i = 0; i < c; i++) {
            uint8_t b = pkt[pos + 1 + i];
            if (!host_char(b))
                odd = 1;
            out[o++] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
        }
        out[o++] = '.';
        pos += 1 + (size_t)c;
    }
    *off = jumps ? after : pos;
    if (odd) {
        out[0] = '\0';
        return 1;
    }
    if (o == 0)
        strcpy(out, ".");
    else
        out[o - 1] = '\0';
    return 0;
}

/* Compares a name read from a packet with one of ours (which may end in a dot). */
static int name_eq(const char *wire_name, const char *ours)
{
    size_t n = strlen(ours);
    if (n > 1 && ours[n - 1] == '.')
        n--;
    return strlen(wire_name) == n && strncasecmp(wire_name, ours, n) == 0;
}

/* Reads one resource record at *off and moves *off past it. -1: malformed. */
static int rr_read(const uint8_t *pkt, size_t len, size_t *off, dns_rr_t *rr)
{
    int r = name_read(pkt, len, off, rr->owner);
    if (r < 0 || len - *off < 10)
        return -1;
    rr->owner_ok = r == 0;
    const uint8_t *p = pkt + *off;
    rr->type = get16(p);
    rr->rclass = get16(p + 2);
    rr->rdlen = get16(p + 8);
    rr->rdata = *off + 10;
    if (rr->rdlen > len - rr->rdata)
        return -1;
    *off = rr->rdata + rr->rdlen;
    return 0;
}

/* Reads a name that must fill the rest of an RDATA exactly. Same returns as name_read. */
static int rdata_name(const uint8_t *pkt, size_t len, const dns_rr_t *rr, size_t at, char *out)
{
    size_t off = at;
    int r = name_read(pkt, len, &off, out);
    if (r < 0 || off != rr->rdata + rr->rdlen)
        return -1;
    return r;
}

int dns_query_build(uint8_t *buf, size_t cap, uint16_t id, const char *name, uint16_t qtype)
{
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        n--;
    if (n == 0 || n > 253 || cap < DNS_HEADER_LEN + n + 2 + 4)
        return -1;
    memset(buf, 0, DNS_HEADER_LEN);
    buf[0] = (uint8_t)(id >> 8);
    buf[1] = (uint8_t)id;
    buf[2] = 0x01;                      /* RD */
    buf[5] = 1;                         /* QDCOUNT */
    size_t o = DNS_HEADER_LEN, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && name[i] != '.')
            continue;
        size_t l = i - start;
        if (l == 0 || l > 63)
            return -1;
        buf[o++] = (uint8_t)l;
        memcpy(buf + o, name + start, l);
        o += l;
        start = i + 1;
    }
    buf[o++] = 0;
    buf[o++] = (uint8_t)(qtype >> 8);
    buf[o++] = (uint8_t)qtype;
    buf[o++] = 0;
    buf[o++] = DNS_CLASS_IN;
    return (int)o;
}

dns_status_t dns_parse_srv(const uint8_t *pkt, size_t len, uint16_t id, const char *name,
                           dns_srv_t *out, size_t max, size_t *n)
{
    *n = 0;
    if (len < DNS_HEADER_LEN)
        return DNS_MALFORMED;
    if (get16(pkt) != id || !(pkt[2] & 0x80) || (pkt[2] & 0x78) != 0 || get16(pkt + 4) != 1)
        return DNS_MISMATCH;

    char qname[DNS_NAME_MAX];
    size_t off = DNS_HEADER_LEN;
    int r = name_read(pkt, len, &off, qname);
    if (r < 0 || len - off < 4)
        return DNS_MALFORMED;
    if (r != 0 || !name_eq(qname, name) || get16(pkt + off) != DNS_TYPE_SRV || get16(pkt + off + 2) != DNS_CLASS_IN)
        return DNS_MISMATCH;
    off += 4;

    if (pkt[2] & 0x02)
        return DNS_TRUNCATED;
    unsigned rcode = pkt[3] & 0x0F;
    if (rcode == 3)
        return DNS_NXDOMAIN;
    if (rcode != 0)
        return DNS_SERVFAIL;

    /* Follow the CNAME chain from the queried name: owner is the name the SRV
     * records must have. One pass per link; a chain that loops simply stops
     * after DNS_MAX_CNAME links and matches nothing more. */
    size_t an_start = off, ancount = get16(pkt + 6);
    char owner[DNS_NAME_MAX];
    dns_rr_t rr;
    strcpy(owner, qname);
    for (unsigned hop = 0; hop < DNS_MAX_CNAME; hop++) {
        int moved = 0;
        off = an_start;
        for (size_t i = 0; i < ancount && !moved; i++) {
            if (rr_read(pkt, len, &off, &rr) < 0)
                return DNS_MALFORMED;
            if (rr.type != DNS_TYPE_CNAME || rr.rclass != DNS_CLASS_IN || !rr.owner_ok || strcmp(rr.owner, owner))
                continue;
            char alias[DNS_NAME_MAX];
            r = rdata_name(pkt, len, &rr, rr.rdata, alias);
            if (r < 0)
                return DNS_MALFORMED;
            if (r == 0 && strcmp(alias, owner)) {
                strcpy(owner, alias);
                moved = 1;
            }
        }
        if (!moved)
            break;
    }

    /* Records go to out as they are read; a broken one further on makes the
     * whole packet malformed, and *n goes back to 0 (found by fuzz_dns_wire:
     * a bad target in the second record left *n = 1). */
    off = an_start;
    for (size_t i = 0; i < ancount; i++) {
        if (rr_read(pkt, len, &off, &rr) < 0)
            goto malformed;
        if (rr.type != DNS_TYPE_SRV || rr.rclass != DNS_CLASS_IN || !rr.owner_ok || strcmp(rr.owner, owner))
            continue;
        if (rr.rdlen < 7)
            goto malformed;
        dns_srv_t rec;
        r = rdata_name(pkt, len, &rr, rr.rdata + 6, rec.target);
        if (r < 0)
            goto malformed;
        if (r > 0 || *n >= max)
            continue;
        rec.priority = get16(pkt + rr.rdata);
        rec.weight = get16(pkt + rr.rdata + 2);
        rec.port = get16(pkt + rr.rdata + 4);
        out[(*n)++] = rec;
    }
    return *n ? DNS_OK : DNS_NODATA;
malformed:
    *n = 0;
    return DNS_MALFORMED;
}

const char *dns_status_name(dns_status_t s)
{
    switch (s) {
    case DNS_OK: return "ok";
    case DNS_NODATA: return "nodata";
    case DNS_NXDOMAIN: return "nxdomain";
    case DNS_SERVFAIL: return "servfail";
    case DNS_TRUNCATED: return "truncated";
    case DNS_MISMATCH: return "mismatch";
    case DNS_MALFORMED: return "malformed";
    }
    return "?";
}
