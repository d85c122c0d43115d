/* modules: the list of sm feature modules, initialised in this order. A new
 * feature is a new mod_*.c file plus one line here. Order matters where hooks
 * of several modules see the same stanza: blocking first (it drops), then
 * the modules that consume stanzas, then those that only observe. */
#include "sm.h"

void mod_blocking_init(void);
void mod_roster_init(void);
void mod_presence_init(void);
void mod_carbons_init(void);
void mod_offline_init(void);
void mod_disco_init(void);
void mod_iq_basic_init(void);
void mod_vcard_init(void);
void mod_private_init(void);

void sm_modules_init(void)
{
    mod_blocking_init();
    mod_roster_init();
    mod_presence_init();
    mod_carbons_init();
    mod_offline_init();
    mod_disco_init();
    mod_iq_basic_init();
    mod_vcard_init();
    mod_private_init();
}
