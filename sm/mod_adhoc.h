/* mod_adhoc: XEP-0050 ad-hoc commands at the domain, with a registry other
 * modules add their commands to (mod_admin: the XEP-0133 set), and the
 * XEP-0004 form helpers they build their stages with.
 *
 * A command is a function called once per stage: with submitted == NULL
 * for the first (execute) and with the submitted <x type='submit'/> for
 * the next. It fills adhoc_out_t: a form to show (the command goes on,
 * status 'executing'), or done with an optional result form and note
 * (status 'completed'), or an error condition. Commands are run only for
 * requesters the registry allows (admin-only ones: the JIDs of the adhoc
 * module's `admins` option; others get forbidden). */
#ifndef WEFT_SM_MOD_ADHOC_H
#define WEFT_SM_MOD_ADHOC_H
#include "xml.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define NS_XDATA "jabber:x:data"

typedef struct adhoc_later adhoc_later_t;
typedef struct adhoc_out {
    xml_node_t *form;          /* owned by the call once set */
    int done;                  /* completed (else: executing, form shown) */
    const char *note;          /* info note of a completed command, or NULL */
    const char *error;         /* stanza error condition (type modify), or NULL */
    const char *error_text;    /* why, for the log line (static), or NULL */
    adhoc_later_t *later;      /* set by adhoc_defer */
} adhoc_out_t;

typedef void (*adhoc_fn)(const char *from_bare, const xml_node_t *submitted, adhoc_out_t *out);

/* A stage that must wait (asynchronous storage) calls adhoc_defer(out)
 * before it returns, and later fills adhoc_later_out(l) and calls
 * adhoc_finish(l), which answers the request (the registry defers it with
 * sm_iq_defer). finish may come before the stage returns (SQLite). The note
 * must then stay valid until finish returns. */
adhoc_later_t *adhoc_defer(adhoc_out_t *out);
adhoc_out_t *adhoc_later_out(adhoc_later_t *l);
void adhoc_finish(adhoc_later_t *l);

/* Adds a command (node and name are static strings). Call from init. */
void adhoc_register(const char *node, const char *name, int admin_only, adhoc_fn fn);
/* 1 if bare is one of the configured admins. */
int adhoc_is_admin(const char *bare);

/* --- XEP-0004 forms ---------------------------------------------------------- */
/* A new <x/> of type form or result, with title, instructions (or NULL) and
 * the hidden FORM_TYPE field. */
xml_node_t *adhoc_form(const char *type, const char *form_type, const char *title, const char *instructions);
/* Adds a field (label, value may be NULL) and returns it. */
xml_node_t *adhoc_field(xml_node_t *x, const char *type, const char *var, const char *label, const char *value);
/* Adds one more <value/> to a field. */
void adhoc_field_value(xml_node_t *field, const char *value);
/* The first value of field var of a submitted form (caller frees), or NULL. */
char *adhoc_value(const xml_node_t *x, const char *var);
/* Every value of field var, joined by '\n' (caller frees), or NULL if none. */
char *adhoc_values(const xml_node_t *x, const char *var);

#endif
