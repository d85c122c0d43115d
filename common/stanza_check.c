/* stanza_check: RFC 6120 / 6121 syntax rules shared by c2s and the sm
 * (stanza_check.h). */
#include "stanza_check.h"
#include <string.h>

static int is_one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(s, *set))
            return 1;
    return 0;
}

static const char *const iq_types[] = {"get", "set", "result", "error", NULL};
static const char *const presence_types[] = {"unavailable", "subscribe", "subscribed", "unsubscribe",
                                             "unsubscribed", "probe", "error", NULL};

static size_t child_elements(const xml_node_t *st)
{
    size_t n = 0;
    for (const xml_node_t *c = st->first_child; c; c = c->next)
        if (c->name)
            n++;
    return n;
}

const char *stanza_check(const xml_node_t *st)
{
    if (!st->name)
        return NULL;
    const char *type = xml_attr_get(st, "type");
    if (!strcmp(st->name, "iq")) {
        if (!type || !is_one_of(type, iq_types))
            return "bad-request";
        if ((!strcmp(type, "get") || !strcmp(type, "set")) &&
            (!xml_attr_get(st, "id") || child_elements(st) != 1))
            return "bad-request";
    } else if (!strcmp(st->name, "presence")) {
        if (type && !is_one_of(type, presence_types))
            return "bad-request";
    }
    return NULL;
}

int stanza_error_allowed(const xml_node_t *st)
{
    const char *type = xml_attr_get(st, "type");
    if (!st->name || (type && !strcmp(type, "error")))
        return 0;
    return strcmp(st->name, "iq") || !type || strcmp(type, "result");
}
