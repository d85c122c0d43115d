/* mod_vcard's API for other modules (the user directory reads vCards). */
#ifndef WEFT_SM_MOD_VCARD_H
#define WEFT_SM_MOD_VCARD_H
#include "xml.h"

/* Reads the stored <vCard xmlns='vcard-temp'/> of bare and calls fn with
 * rc 0 and the vCard (fn frees it), or NULL when none (or unreadable); rc -1
 * on a storage error. fn runs from storage's callback: before the call
 * returns on SQLite, later on PostgreSQL. */
typedef void (*sm_vcard_fn)(int rc, xml_node_t *vc, void *arg);
void sm_vcard_load(const char *bare, sm_vcard_fn fn, void *arg);

#endif
