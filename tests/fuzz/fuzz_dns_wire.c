/* libFuzzer target for dns_wire.c: the s2s parses DNS answers from the
 * network with dns_parse_srv, so every byte of them is hostile.
 *
 * The input is the whole response; the query it answers is fixed
 * (_xmpp-server._tcp.example.com, id taken from the input's own first two
 * bytes, so the id check passes and the rest of the packet is reached).
 * Checked: no crash or UB; the status has a name; on DNS_OK at least one and
 * at most max records come out, each target a NUL-terminated name of
 * letters, digits, '-', '_' and '.', shorter than DNS_NAME_MAX; on any other
 * status none. The input is also tried as a name to build a query from. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dns_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_target_ok(const char *t)
{
    size_t n = strnlen(t, DNS_NAME_MAX);
    if (n == 0 || n >= DNS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t id = size >= 2 ? (uint16_t)(data[0] << 8 | data[1]) : 0;
    dns_srv_t out[4];
    size_t n = 99;
    dns_status_t st = dns_parse_srv(data, size, id, "_xmpp-server._tcp.example.com", out, 4, &n);
    if (!dns_status_name(st))
        abort();
    if (st == DNS_OK) {
        if (n > 4)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!fz_target_ok(out[i].target))
                abort();
    } else if (n != 0) {
        abort();
    }

    /* As a name for a query: never writes past the buffer. */
    char name[300];
    size_t nl = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, nl);
    name[nl] = '\0';
    uint8_t q[DNS_QUERY_MAX];
    int ql = dns_query_build(q, sizeof q, id, name, DNS_TYPE_SRV);
    if (ql > (int)sizeof q)
        abort();
    if (ql > 0) {
        /* Our own query, echoed back as a response without answers, parses. */
        q[2] |= 0x80;
        size_t m = 99;
        dns_status_t qs = dns_parse_srv(q, (size_t)ql, id, name, out, 4, &m);
        if (qs != DNS_NODATA && qs != DNS_MISMATCH)
            abort();
    }
    return 0;
}
