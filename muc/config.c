/* muc config: the option table of weft-muc (docs/configuration.md is
 * generated from it by `weft-muc --doc`). Strings are owned by the loaded
 * config and freed by cfg_free; main.c keeps the running one in muc_config. */
#include "muc.h"
#include <stddef.h>

#define OPT(n, t, d, lo, hi, r, f, h) {n, t, d, lo, hi, r, offsetof(muc_cfg_t, f), NULL, h}
static const cfg_option_t muc_options[] = {
    DAEMON_COMMON_OPTIONS(muc_cfg_t),
    COMP_LINK_OPTIONS(muc_cfg_t, "muc", "weft-muc-secret", "16M"),
    OPT("domain", CFG_STRING, "conference.localhost", 0, 0, 0, domain,
        "The group chat service domain (bound on the router; a <partition> there when several instances share it)."),
    OPT("database", CFG_STRING, "var/muc.db", 0, 0, 0, database,
        "SQLite file holding rooms, affiliations, occupants and the archive; used when storage is empty."),
    OPT("storage", CFG_STRING, "", 0, 0, 0, storage,
        "Storage URL (docs/storage.md): sqlite:PATH, a bare path or postgresql://...; empty: the database file."),
    OPT("limits.rooms-per-user", CFG_INT, "100", 0, 1000000, 1, rooms_per_user,
        "Rooms one bare JID may own (create); 0: no limit."),
    OPT("limits.occupants", CFG_INT, "1000", 1, 1000000, 1, occupants_max,
        "Most occupants of one room (a room's max-users can only lower it)."),
    OPT("limits.history", CFG_INT, "50", 0, 10000, 1, history_max,
        "Messages a room keeps in memory for the discussion history sent on join (the archive keeps all)."),
    OPT("limits.history-default", CFG_INT, "20", 0, 10000, 1, history_default,
        "Messages of history sent on join when the client does not ask for a number."),
    OPT("limits.messages-per-second", CFG_INT, "10", 0, 100000, 1, msg_rate,
        "Groupchat messages per second per occupant (bursts of twice that); more get resource-constraint. 0: no limit."),
    OPT("limits.stanza-bytes", CFG_SIZE, "64K", 1024, 16777216, 1, stanza_max,
        "Largest message or presence the service takes (serialized); larger ones get policy-violation."),
    OPT("limits.nick-bytes", CFG_INT, "128", 1, 1023, 1, nick_max,
        "Longest nickname in bytes; longer ones get not-acceptable."),
    OPT("limits.mam-page", CFG_INT, "100", 1, 10000, 1, mam_max,
        "Most archived messages returned by one MAM query page."),
    OPT("limits.sessions-per-nick", CFG_INT, "10", 1, 1000, 1, sessions_max,
        "Sessions (devices) of one bare JID that may share a nick in a room as one occupant; 1: a second one gets conflict."),
    OPT("limits.held-stanzas", CFG_INT, "1000", 1, 1000000, 1, held_max,
        "With PostgreSQL: stanzas whose output (broadcast, replies) waits for their writes to commit; at this many (or a quarter of router.buffer in bytes), input from the router waits."),
    OPT("create-rooms", CFG_BOOL, "true", 0, 0, 1, create_any,
        "Anyone may create a room by joining it; false: joining an unknown room gets not-allowed."),
    OPT("lock-timeout", CFG_SECONDS, "300", 0, 86400, 1, lock_timeout,
        "How long a room created by a join with the MUC extension stays locked (XEP-0045 10.1.2: not there for others) while its owner sends no configuration, as Dino does; then it opens with the default configuration. 0: until configured."),
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

const cfg_option_t *muc_config_table(size_t *size)
{
    *size = sizeof(muc_cfg_t);
    return muc_options;
}
