/* mod_version's API for other modules: the software name the server gives
 * (XEP-0092 answers, the server's disco identity). */
#ifndef WEFT_SM_MOD_VERSION_H
#define WEFT_SM_MOD_VERSION_H

/* The configured version.name, "weft" when empty; static or config-owned. */
const char *sm_version_name(void);

#endif
