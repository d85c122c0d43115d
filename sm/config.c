/* sm config: the core's option table of weft-sm; module_config.c joins it
 * with the modules' own tables (docs/configuration.md is generated from the
 * result by `weft-sm --doc`). Strings are owned by the loaded config and freed
 * by cfg_free; main.c keeps the running config in sm_config. */
#include "sm.h"
#include <stddef.h>

#define OPT(n, t, d, lo, hi, r, f, h) {n, t, d, lo, hi, r, offsetof(sm_cfg_t, f), NULL, h}
const cfg_option_t sm_options[] = {
    DAEMON_COMMON_OPTIONS(sm_cfg_t),
    COMP_LINK_OPTIONS(sm_cfg_t, "sm", "weft-sm-secret", "16M"),
    OPT("domain", CFG_STRING, "localhost", 0, 0, 0, domain,
        "The XMPP domain this sm serves (bound on the router)."),
    OPT("database", CFG_STRING, "var/weft.db", 0, 0, 0, database,
        "SQLite file holding accounts and users' data (created if missing); used when storage is empty."),
    OPT("storage", CFG_STRING, "", 0, 0, 0, storage,
        "Storage URL (docs/storage.md): sqlite:PATH or a bare path; empty: the database file. postgresql:// URLs are refused until the sm's modules are asynchronous."),
    OPT("database-cache", CFG_SIZE, "512K", 65536, 1073741824, 0, database_cache,
        "Most memory SQLite keeps as its page cache (the OS caches the file too)."),
    OPT("sessions.pending-max", CFG_INT, "200000", 0, 100000000, 1, pending_max,
        "Client stanzas kept for sessions c2s has not re-announced yet after an sm restart (30 s at most)."),
    OPT("sessions.conflict-refuse", CFG_BOOL, "false", 0, 0, 1, conflict_refuse,
        "When a resource is taken: false, the new session wins and the old one gets the conflict stream error; true, the new bind fails with conflict."),
    OPT("sessions.deliver-recipients", CFG_INT, "64", 1, 100000, 1, deliver_recipients,
        "Most sessions one <deliver/> element to a c2s names (docs/session-protocol.md); a longer run of the same stanza goes in several, so c2s starts writing while the sm is still at it."),
    OPT("sessions.resync-wait", CFG_SECONDS, "2s", 0, 60, 1, resync_wait,
        "After the sm starts or takes over users, stanzas for sessions c2s has not re-announced yet wait until this long after the start and after the last re-announcement (docs/sm.md, resync window); 0: they are handled at once, as for an absent resource."),
    OPT("sessions.resync-max", CFG_INT, "200000", 0, 100000000, 1, resync_max,
        "Most stanzas waiting in the resync window; past it a stanza is handled at once."),
    OPT("control", CFG_STRING, "", 0, 0, 0, control,
        "UNIX socket (created mode 0600) where weftctl lists sessions; empty: no socket."),
    {"module", CFG_SECTION, NULL, 0, 0, 0, 0, sm_module_section,
     "<module name=\"X\" enabled=\"true|false\"> with X's options inside: loads (or not) module X; its options are listed below as X.option."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};
