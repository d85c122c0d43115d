/* xml: the compact stanza tree shared by every process.
 *
 * An element owns its attributes and children; xml_free frees the whole subtree.
 * Names are stored as (namespace URI, local name); prefixes are not kept, the
 * serializer chooses them. Text nodes have name == NULL. Strings are UTF-8,
 * already unescaped. */
#ifndef WEFT_XML_H
#define WEFT_XML_H
#include <stddef.h>
#include <stdint.h>
#include "strbuf.h"

#define XML_NS_XML "http://www.w3.org/XML/1998/namespace"
#define XML_NS_STREAM "http://etherx.jabber.org/streams"

typedef struct xml_attr {
    char *ns;     /* NULL for unqualified attributes (the common case) */
    char *name;
    char *value;
} xml_attr_t;

typedef struct xml_node xml_node_t;
struct xml_node {
    xml_node_t *parent;
    xml_node_t *next;          /* next sibling */
    xml_node_t *first_child;
    xml_node_t *last_child;
    char *ns;                  /* element namespace URI ("" = no namespace); NULL for text */
    char *name;                /* local name; NULL for a text node */
    char *text;                /* text node content (NUL-terminated); NULL for elements */
    size_t text_len;
    xml_attr_t *attrs;
    unsigned nattrs;
    unsigned line;             /* source line when parsed (for config errors), else 0 */
    uint64_t version;          /* a root's: xml_version */
};

/* Construction. ns may be NULL, meaning "no namespace" (stored as ""). */
xml_node_t *xml_elem_new(const char *ns, const char *name);
xml_node_t *xml_add_child(xml_node_t *parent, const char *ns, const char *name);
/* Adds an existing node (taking ownership) as last child. */
void xml_append(xml_node_t *parent, xml_node_t *child);
void xml_add_text(xml_node_t *parent, const char *text, size_t len);
/* Unlinks node from its parent; caller then owns it. */
void xml_detach(xml_node_t *node);
void xml_free(xml_node_t *node);
xml_node_t *xml_copy(const xml_node_t *node);
/* How many changes the functions here have made to any tree so far: a
 * caller that hands a tree to code that should leave it alone can tell
 * whether it did (the sm's fan-out reuses one copy while it does). */
unsigned long xml_mutations(void);
/* The version of the tree whose root is root: a name for its content. A
 * tree gets a version no other had when it is made and each time the
 * functions here change it; xml_copy of a whole tree gives the copy the
 * tree's version. So two trees with the same version serialize to the same
 * bytes: the sm's archive keeps the bytes of a stanza it wrote and, when a
 * copy of it comes back unchanged, reuses them instead of serializing it
 * again (sm/mod_mam.c). 0 for a node that is not a root. */
uint64_t xml_version(const xml_node_t *root);

/* Unqualified attributes. set replaces; value NULL removes. */
const char *xml_attr_get(const xml_node_t *el, const char *name);
void xml_attr_set(xml_node_t *el, const char *name, const char *value);
/* Namespaced attributes (ns NULL = unqualified). */
const char *xml_attr_get_ns(const xml_node_t *el, const char *ns, const char *name);
void xml_attr_set_ns(xml_node_t *el, const char *ns, const char *name, const char *value);

/* First child element with that ns and name; ns NULL matches any namespace,
 * name NULL matches any name. */
xml_node_t *xml_child(const xml_node_t *el, const char *ns, const char *name);
/* Next sibling element after el matching ns/name (same rules). */
xml_node_t *xml_next(const xml_node_t *el, const char *ns, const char *name);
/* Moves el and every descendant in namespace from into namespace to (a stanza
 * changing streams: jabber:client, jabber:server, jabber:component:accept). */
void xml_rename_ns(xml_node_t *el, const char *from, const char *to);
/* Concatenated direct text content of el; caller frees. Never NULL. */
char *xml_text(const xml_node_t *el);

/* Deep structural equality: names, namespaces, attributes (order-insensitive),
 * children and text (adjacent text nodes compared as if merged). 1 if equal. */
int xml_equal(const xml_node_t *a, const xml_node_t *b);

/* Serializes el (and subtree) to out. default_ns is the namespace in scope
 * (e.g. the stream's default "jabber:client"); elements in it get no xmlns.
 * Escapes & < > " ' in attributes and & < > in text. */
void xml_serialize(const xml_node_t *el, const char *default_ns, strbuf_t *out);
/* The same without el's own attribute `omit` (no namespace), e.g. a stanza
 * without its 'to' as a template for several recipients. */
void xml_serialize_omit(const xml_node_t *el, const char *default_ns, const char *omit, strbuf_t *out);
/* Escapes s (len bytes) for text (attr=0) or attribute values (attr=1). */
void xml_escape(strbuf_t *out, const char *s, size_t len, int attr);

/* Helpers for expat-style attribute arrays {name, value, name, value, ..., NULL}
 * where qualified names are "nsURI|local". Returns NULL when absent. */
const char *xml_attrs_find(const char **attrs, const char *name);

#endif
