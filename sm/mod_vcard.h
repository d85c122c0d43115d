/* mod_vcard's API for other modules (the user directory reads vCards). */
#ifndef WEFT_SM_MOD_VCARD_H
#define WEFT_SM_MOD_VCARD_H
#include "xml.h"

/* The stored <vCard xmlns='vcard-temp'/> of bare (the caller frees it), or
 * NULL when none (or unreadable); -1 on a storage error, else 0. */
int sm_vcard_load(const char *bare, xml_node_t **out);

#endif
