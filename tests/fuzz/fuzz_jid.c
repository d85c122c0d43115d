/* fuzz_jid: libFuzzer target for jid_parse. Checks that parsing never crashes
 * and that a parsed jid is a fixed point: its full form parses to the same
 * parts, its bare form is a prefix of the full form, and every part respects
 * the 1023-byte limit. Any violation aborts so the fuzzer keeps the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_jid_streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0'; /* an embedded NUL just shortens the string */

    jid_t j, again;
    if (jid_parse(s, &j) == JID_OK) {
        if (!j.domain || !j.bare || !j.full)
            abort();
        if (strlen(j.domain) > JID_PART_MAX || (j.node && strlen(j.node) > JID_PART_MAX) ||
            (j.resource && strlen(j.resource) > JID_PART_MAX))
            abort();
        size_t bl = strlen(j.bare);
        if (strncmp(j.bare, j.full, bl) != 0 || (j.full[bl] != '\0' && j.full[bl] != '/'))
            abort();
        if (jid_parse(j.full, &again) != JID_OK)
            abort();
        if (!fuzz_jid_streq(j.node, again.node) || !fuzz_jid_streq(j.domain, again.domain) ||
            !fuzz_jid_streq(j.resource, again.resource) || !jid_equal(&j, &again))
            abort();
        jid_clear(&again);

        size_t dlen;
        const char *d = jid_domain_span(j.full, &dlen);
        if (!d || dlen != strlen(j.domain) || memcmp(d, j.domain, dlen) != 0)
            abort();
        jid_clear(&j);
    }
    free(s);
    return 0;
}
