/* jid: parsing and preparation of XMPP addresses (RFC 7622 syntax, prepared with
 * the RFC 3920/6122 stringprep profiles from libidn: nodeprep, nameprep,
 * resourceprep). IDN domains are accepted in Unicode or A-label form and kept in
 * Unicode (nameprep'd) form. Each part is at most 1023 bytes after preparation.
 *
 * A jid_t owns its strings; jid_clear frees them. */
#ifndef WEFT_JID_H
#define WEFT_JID_H
#include <stddef.h>

#define JID_PART_MAX 1023

typedef enum jid_err {
    JID_OK = 0,
    JID_ERR_EMPTY = -1,        /* empty input or empty domain */
    JID_ERR_NODE = -2,         /* node fails nodeprep or is empty before '@' */
    JID_ERR_DOMAIN = -3,       /* domain fails nameprep / IDNA / label rules */
    JID_ERR_RESOURCE = -4,     /* resource fails resourceprep or is empty after '/' */
    JID_ERR_TOO_LONG = -5,     /* a part exceeds 1023 bytes */
    JID_ERR_UTF8 = -6,         /* input is not valid UTF-8 */
} jid_err_t;

typedef struct jid {
    char *node;      /* NULL if absent */
    char *domain;    /* never NULL in a parsed jid */
    char *resource;  /* NULL if absent */
    char *bare;      /* "node@domain" or "domain" */
    char *full;      /* bare plus "/resource" when there is one */
} jid_t;

/* Parses and prepares s. On error out is left empty (all NULL). */
jid_err_t jid_parse(const char *s, jid_t *out);
/* Builds a jid from parts (each prepared); node/resource may be NULL. */
jid_err_t jid_build(const char *node, const char *domain, const char *resource, jid_t *out);
void jid_clear(jid_t *j);
jid_err_t jid_copy(const jid_t *src, jid_t *dst);
int jid_equal(const jid_t *a, const jid_t *b);       /* full JIDs equal */
int jid_bare_equal(const jid_t *a, const jid_t *b);  /* bare JIDs equal */
/* Prepares one part into a new malloc'd string (caller frees) or returns NULL. */
char *jid_prep_node(const char *s);
char *jid_prep_domain(const char *s);
char *jid_prep_resource(const char *s);
/* Writes the bare JID of s (prepared) into a new string, or NULL if invalid. */
char *jid_bare_of(const char *s);
/* Domain part of a JID string without preparation (router fast path): points
 * into s, length in *len. Returns NULL if s is empty. */
const char *jid_domain_span(const char *s, size_t *len);
const char *jid_strerror(jid_err_t e);

#endif
