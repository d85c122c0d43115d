/* dns_wire: DNS messages on the wire (RFC 1035, RFC 2782) for the s2s's SRV
 * lookups: building a query, and parsing the response to it.
 *
 * Pure functions: no I/O, no allocation, no global state. The parser treats
 * its input as hostile: every read is bounds-checked, a name is at most 255
 * octets on the wire and follows at most DNS_MAX_JUMPS compression pointers,
 * a CNAME chain at most DNS_MAX_CNAME links. Names come out in text form,
 * lowercase, without the trailing dot ("." for the root). */
#ifndef WEFT_DNS_WIRE_H
#define WEFT_DNS_WIRE_H
#include <stddef.h>
#include <stdint.h>

#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SRV 33
#define DNS_CLASS_IN 1

#define DNS_HEADER_LEN 12
#define DNS_NAME_MAX 256                             /* text form with its NUL */
#define DNS_QUERY_MAX (DNS_HEADER_LEN + 255 + 4)     /* the largest query we build */
#define DNS_MAX_JUMPS 32
#define DNS_MAX_CNAME 8

typedef struct dns_srv {
    uint16_t priority;
    uint16_t weight;
    uint16_t port;
    char target[DNS_NAME_MAX];   /* "." when the service is decidedly unavailable */
} dns_srv_t;

typedef enum dns_status {
    DNS_OK = 0,       /* NOERROR with at least one SRV record for the name */
    DNS_NODATA,       /* NOERROR, but no SRV record for the name */
    DNS_NXDOMAIN,     /* RCODE 3: the name does not exist */
    DNS_SERVFAIL,     /* RCODE 2, or any other error RCODE (FORMERR, REFUSED, ...) */
    DNS_TRUNCATED,    /* TC set: ask again over TCP */
    DNS_MISMATCH,     /* not a response to this query (id, QR, opcode, question) */
    DNS_MALFORMED,    /* not a well-formed DNS message */
} dns_status_t;

/* Writes a query for (name, qtype) with the given id and RD set into buf.
 * name is in text form, with or without the trailing dot. Returns the
 * packet's length, or -1 when name is not a valid DNS name (empty, an empty
 * label, a label over 63 octets, over 255 octets in all) or cap is too small. */
int dns_query_build(uint8_t *buf, size_t cap, uint16_t id, const char *name, uint16_t qtype);

/* Parses pkt (len bytes) as the response to the SRV query (id, name). On
 * DNS_OK, out[0..*n) holds the SRV records whose owner is name, or an alias
 * of name reached through CNAME records of the answer section, in packet
 * order; records past max are dropped, as are records whose target holds
 * bytes other than letters, digits, '-' and '_'. *n is 0 for any other status
 * (what out holds then is undefined). */
dns_status_t dns_parse_srv(const uint8_t *pkt, size_t len, uint16_t id, const char *name,
                           dns_srv_t *out, size_t max, size_t *n);

/* "ok", "nodata", "nxdomain", ... for logs. */
const char *dns_status_name(dns_status_t s);

#endif
