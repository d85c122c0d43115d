/* comp_fanout: the fan-out element of the internal component protocol
 * (docs/component-protocol.md, section 9.7): one element from a component
 * that carries one stanza, the full JIDs it goes to, and optionally the
 * component's acknowledgement of what it received. The router reads whole
 * elements, so it gets either all of it (every delivery and the ack) or
 * nothing: a broadcast and the ack of the stanza that caused it are one
 * atomic step.
 *
 *   <w:fanout h='12'><w:r to='a@x/1'/><w:r to='b@y/2'/><message from='room@muc/n'
 *       type='groupchat'>...</message></w:fanout>
 *
 * Both ends use this file: the component writes the element
 * (comp_fanout_write_body), the router reads it (comp_fanout_parse) and
 * makes each delivery (comp_fanout_delivery: the stanza with to='...'
 * added). Nothing here keeps state. */
#ifndef WEFT_COMP_FANOUT_H
#define WEFT_COMP_FANOUT_H
#include <stddef.h>
#include <stdint.h>
#include "strbuf.h"
#include "xml.h"

/* The router's defaults (router.xml limits.stanza-bytes, limits.fanout-bytes,
 * limits.fanout-recipients), which a component assumes until the router's
 * <w:session/> gives the real ones. */
#define COMP_FANOUT_DEFAULT_STANZA 262144u
#define COMP_FANOUT_DEFAULT_BYTES (32u << 20)
#define COMP_FANOUT_DEFAULT_RECIPIENTS 4096u

typedef struct comp_fanout {
    int has_h;
    uint64_t h;                /* the ack it carries (as <w:a h/>), if has_h */
    uint64_t skip;             /* recipients already done (a resend): deliver from to[skip] */
    const char **to;           /* the recipients' JIDs, in order (point into the tree) */
    size_t nto;
    strbuf_t tmpl;             /* the stanza serialized without 'to' */
    size_t name_end;           /* offset in tmpl right after "<name" */
    const char *ns, *name;     /* of the stanza */
    const char *type, *from, *user;   /* its attributes, NULL when absent */
} comp_fanout_t;

/* Reads a <w:fanout/> tree (el stays the caller's and must outlive f).
 * 0, or -1 with *why set (a malformed element: the stream error bad-format):
 * no stanza, more than one, a <w:r/> without 'to', an unknown child, an h or
 * skip that is not decimal, skip larger than the recipients. A 'to' on the
 * stanza is dropped (each delivery gets its own). */
int comp_fanout_parse(xml_node_t *el, comp_fanout_t *f, const char **why);
void comp_fanout_clear(comp_fanout_t *f);
/* Appends the stanza for one recipient: the template with to='TO' as its
 * first attribute. */
void comp_fanout_delivery(const comp_fanout_t *f, const char *to, strbuf_t *out);
/* Length of that delivery, without building it. */
size_t comp_fanout_delivery_len(const comp_fanout_t *f, const char *to);

/* Component side: appends what follows "<w:fanout" (and its optional h and
 * skip attributes) for a stanza serialized without 'to' (stanza, len) and
 * its n recipients: ">", one <w:r/> each, the stanza, "</w:fanout>". */
void comp_fanout_write_body(strbuf_t *out, const char *stanza, size_t len, const char *const *to,
                            size_t n);
/* Bytes one recipient adds to that body. */
size_t comp_fanout_recipient_len(const char *to);

/* --- router to component: several deliveries of one fan-out as one element.
 *
 *   <w:fan e='EPOCH' n='7'><w:r to='a@x/1'/><w:r to='b@x/2' n='9'/><message
 *       from='room@muc/n' type='groupchat'>...</message></w:fan>
 *
 * (docs/component-protocol.md 9.8.) Each <w:r/> is one delivery with its own
 * origin seq: the element's n for the first, one more than the previous
 * for the next, unless the <w:r/> names its own n (always larger). e and p
 * are those of the origin marker (9.1). Only a component that asked for it
 * at session time (<w:session fan='1'/>) gets it. The router writes it
 * (comp_fanin_write), comp_client reads it (comp_fanin_parse). */
typedef struct comp_fanin {
    const char *epoch;         /* e, or NULL: the previous marker's */
    const char *via;           /* p, or NULL */
    const char **to;           /* per delivery, in order (point into the tree) */
    uint64_t *n;               /* its origin seq */
    size_t nto;
    xml_node_t *stanza;        /* the stanza child, still in the tree */
} comp_fanin_t;

/* Reads a <w:fan/> tree (el must outlive f). 0, or -1 with *why set: no
 * recipient, no stanza or more than one, an unknown child, a <w:r/>
 * without 'to', an n missing on the element, not decimal, 0, or not larger
 * than the one before. */
int comp_fanin_parse(xml_node_t *el, comp_fanin_t *f, const char **why);
void comp_fanin_clear(comp_fanin_t *f);
/* Appends one <w:fan/> element: e when epoch is not NULL, p when via is
 * not NULL, the k recipients to[] with their seqs n[] (increasing), then
 * tmpl (a stanza serialized without 'to', tlen bytes). */
void comp_fanin_write(strbuf_t *out, const char *epoch, const char *via, const char *const *to,
                      const uint64_t *n, size_t k, const char *tmpl, size_t tlen);
/* Bytes one more recipient adds to that element (at most: with its own n). */
size_t comp_fanin_recipient_len(const char *to, uint64_t n);

#endif
