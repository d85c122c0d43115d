/* mod_mam: the user's message archive (XEP-0313 v2) and the stanza ids that
 * name its messages (XEP-0359); preferences (XEP-0441); retention.
 *
 * Archiving happens in this module's message hooks, which run before
 * mod_carbons and mod_offline (the module order of sm/meson.build), so the
 * one <stanza-id by='user@domain' id=.../> given to a message reaches every
 * copy of it: the live delivery, the <received/> carbons and the offline
 * store; the archive keeps the message as it arrived, under that id as its
 * key (a query's <result id=.../>). What a session sends is archived in its
 * user's archive without a stanza-id on the outgoing stanza (the id is the
 * sender's archive's own business); its <sent/> carbons carry it
 * (mam_mark_sent_copy, called by mod_carbons). A <stanza-id/> claiming to
 * be by the user's own JID that comes from outside is removed before anyone
 * sees it (XEP-0359 section 4).
 *
 * What is archived (XEP-0313 section 5, XEP-0334): type chat or normal (or
 * none) with a <body/> or an end-to-end encrypted payload (OMEMO, OpenPGP
 * for XMPP: archived as received, still encrypted), or with a <store/> hint;
 * a bare chat state or receipt is not. Never: groupchat (the room archives it),
 * headline, error, a message with <no-store/> or <no-permanent-store/>, a MAM
 * result, a carbon. The user's preferences then decide per contact.
 *
 * Each archived message is one storage record in the user's "mam"
 * collection, tagged with the contact's bare JID. Writes use storage's
 * asynchronous API without waiting (nothing is acknowledged to a client by
 * them), batched (mam.write-delay, mam.write-batch) in one transaction; a
 * query flushes the batch first and is submitted after it on the same
 * connection, so it sees every message archived before it. A received
 * record whose stanza a sent record of the batch holds too (a chat between
 * two users of this sm) is handed over with a share of it: SQLite stores
 * the stanza once (docs/mam.md, "One stanza, two archives"). Preferences are
 * read when the user is loaded, holding the user until they are there.
 *
 * Retention (max-age, max-messages) is applied by the cron hook, a few
 * storage steps per second, over the users listed in the domain's
 * "mam-users" collection. Records layout: mod_mam.h. Queries: mam_query.c. */
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "log.h"
#include "mam_id.h"
#include "mod_mam.h"
#include "mod_roster.h"
#include "siphash.h"
#include "strbuf.h"
#include "xml_stream.h"

#define NS_HINTS "urn:xmpp:hints"
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_OMEMO_OLD "eu.siacs.conversations.axolotl"
#define NS_OMEMO "urn:xmpp:omemo:2"
#define NS_OX "urn:xmpp:openpgp:0"
#define PREFS_MAX_JIDS 1000       /* JIDs in <always/> plus <never/> */
#define SWEEP_PAGE 500            /* records deleted per storage step */
#define SWEEP_BUDGET 40           /* storage steps per cron tick */

enum { MAM_ALWAYS, MAM_NEVER, MAM_ROSTER };

/* Per-user state: the preferences, and whether the user was put in the
 * domain's "mam-users" list since it was loaded. */
typedef struct mam_user {
    int loaded;               /* preferences read (or none stored) */
    int mode;                 /* -1: the server's default */
    char **always, **never;   /* prepared JIDs, bare or full */
    size_t nalways, nnever;
    int listed;
} mam_user_t;

/* The last message a session sent and its archive id, for its <sent/>
 * carbons: set by message_out, which runs just before mod_carbons' hook for
 * the same stanza, and cleared at every message_out. */
static const xml_node_t *sent_msg;
static char sent_id[40];

/* ------------------------------------------------------------ helpers */

static const mam_cfg_t *cfg(void)
{
    return sm_module_config(&sm_module_mam);
}

static int mode_of(const char *s)
{
    if (sm_streq(s, "always"))
        return MAM_ALWAYS;
    if (sm_streq(s, "never"))
        return MAM_NEVER;
    if (sm_streq(s, "roster"))
        return MAM_ROSTER;
    return -1;
}

static const char *mode_name(int m)
{
    return m == MAM_NEVER ? "never" : m == MAM_ROSTER ? "roster" : "always";
}

void mam_stamp_format(int64_t us, char *buf, size_t len)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)(us % 1000000 / 1000));
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* XEP-0082: CCYY-MM-DDThh:mm:ss[.sss][Z|(+|-)hh:mm]. */
int64_t mam_stamp_parse(const char *s)
{
    int y, mo, d, h, mi, sec;
    if (!s || strlen(s) < 19 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    int64_t frac = 0, scale = 1000000;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    }
    long off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    return ((int64_t)t - off) * 1000000 + frac;
}

int mam_rec_parse(const char *key, const char *val, size_t len, mam_rec_t *out)
{
    const char *nl = memchr(val, '\n', len);
    if (!nl)
        return -1;
    char *end;
    out->id = key;
    out->stamp = strtoll(val, &end, 10);
    if (end == val || *end != ' ' || (end[1] != 'i' && end[1] != 'o') || end[2] != ' ')
        return -1;
    out->dir = end[1];
    out->with = end + 3;
    if (out->with > nl)
        return -1;
    out->with_len = (size_t)(nl - out->with);
    out->xml = nl + 1;
    out->xml_len = len - (size_t)(out->xml - val);
    return 0;
}

static int own_jid(const sm_user_t *u, const char *jid)
{
    if (!jid)
        return 0;
    size_t n = strlen(u->bare);
    return !strncasecmp(jid, u->bare, n) && (jid[n] == '\0' || jid[n] == '/');
}

/* Archive ids (mam_id.c), keyed with the sm's secret. */
static const char *id_key(void)
{
    return sm_config->link.secret ? sm_config->link.secret : "";
}

/* Returns the time the id begins with: its record's stamp. */
static int64_t new_id(const char *bare, char *buf)
{
    return mam_id_new(id_key(), bare, storage_now_us(), buf);
}

static int id_genuine(const char *bare, const char *id)
{
    return mam_id_genuine(id_key(), bare, id);
}

/* Removes every <stanza-id/> whose by names the user's account: only this
 * server may say that (XEP-0359 section 4). With keep_own, the first one
 * whose id this server made stays, and 1 is returned. */
static int strip_forged(const sm_user_t *u, xml_node_t *msg, int keep_own)
{
    int kept = 0;
    xml_node_t *c = msg->first_child;
    while (c) {
        xml_node_t *next = c->next;
        if (c->name && !strcmp(c->name, "stanza-id") && !strcmp(c->ns, MAM_NS_SID)) {
            const char *by = xml_attr_get(c, "by");
            if (by && !strcasecmp(by, u->bare)) {
                if (keep_own && !kept && id_genuine(u->bare, xml_attr_get(c, "id"))) {
                    kept = 1;
                } else {
                    xml_detach(c);
                    xml_free(c);
                }
            }
        }
        c = next;
    }
    return kept;
}

/* The kinds XEP-0313 and XEP-0334 want archived (see the file comment),
 * from one pass over the children (once a message each way). */
static int archivable(const xml_node_t *m)
{
    const char *type = xml_attr_get(m, "type");
    int chat = sm_streq(type, "chat"), normal = !type || sm_streq(type, "normal");
    if (!chat && !normal)
        return 0;
    int keep = 0;
    for (const xml_node_t *c = m->first_child; c; c = c->next) {
        if (!c->name)
            continue;
        const char *ns = c->ns, *name = c->name;
        if (!strcmp(ns, NS_HINTS)) {
            if (!strcmp(name, "no-store") || !strcmp(name, "no-permanent-store"))
                return 0;
            keep |= !strcmp(name, "store");
        } else if (!strcmp(ns, MAM_NS)) {
            if (!strcmp(name, "result"))
                return 0;
        } else if (!strcmp(ns, NS_CARBONS)) {
            if (!strcmp(name, "received") || !strcmp(name, "sent"))
                return 0;
        } else if (!strcmp(name, "body")) {
            keep = 1;   /* without one, a chat message is a chat state or a receipt */
        } else if (!strcmp(name, "encrypted")) {
            keep |= !strcmp(ns, NS_OMEMO_OLD) || !strcmp(ns, NS_OMEMO);
        } else if (!strcmp(name, "openpgp")) {
            keep |= !strcmp(ns, NS_OX);
        }
    }
    return keep;
}

/* The JID cache's slots are chosen by SipHash under a random key (made by
 * mam_init): a JID chosen to collide only takes a slot from another, which
 * is prepared again. */
static unsigned char with_key[16];

/* The contact JIDs of recent messages, prepared, by the text they came as:
 * a chat goes back and forth between the same JIDs, and preparing one each
 * way (jid_parse, five allocations) was 2 % of the archiving sm's CPU.
 * Direct-mapped: two JIDs that share a slot only prepare again. */
#define WITH_SLOTS 1024
typedef struct with_slot {
    char *text;
    jid_t jid;
} with_slot_t;
static with_slot_t *with_slots;

/* text prepared, or NULL when it is not a JID; valid until the next call. */
static const jid_t *with_of(const char *text)
{
    uint64_t h = siphash24(with_key, text, strlen(text));
    if (!with_slots)
        with_slots = xcalloc(WITH_SLOTS, sizeof *with_slots);
    with_slot_t *e = &with_slots[h & (WITH_SLOTS - 1)];
    if (e->text && !strcmp(e->text, text))
        return &e->jid;
    jid_t j;
    if (jid_parse(text, &j) != JID_OK)
        return NULL;
    free(e->text);
    jid_clear(&e->jid);
    e->text = xstrdup(text);
    e->jid = j;
    return &e->jid;
}

static void with_free(void)
{
    for (size_t i = 0; with_slots && i < WITH_SLOTS; i++) {
        free(with_slots[i].text);
        jid_clear(&with_slots[i].jid);
    }
    free(with_slots);
    with_slots = NULL;
}

static mam_user_t *ustate(sm_user_t *u)
{
    mam_user_t *s = sm_user_state(u, &sm_module_mam);
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->mode = -1;
        sm_user_state_set(u, &sm_module_mam, s);
    }
    return s;
}

static int in_jids(char *const *v, size_t n, const char *full, const char *bare)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], bare) || (full && !strcmp(v[i], full)))
            return 1;
    return 0;
}

/* Does u's preference keep messages with the contact jid (full or bare)? */
static int prefs_allow(sm_user_t *u, const jid_t *with)
{
    mam_user_t *s = ustate(u);
    if (in_jids(s->never, s->nnever, with->full, with->bare))
        return 0;
    if (in_jids(s->always, s->nalways, with->full, with->bare))
        return 1;
    int mode = s->mode >= 0 ? s->mode : mode_of(cfg()->default_text);
    if (mode == MAM_NEVER)
        return 0;
    if (mode == MAM_ROSTER)
        return sm_roster_sub(u, with->bare) >= 0;
    return 1;
}

/* --- the write batch ----------------------------------------------------------
 *
 * Archive writes wait in this batch for mam.write-delay or until
 * mam.write-batch records, then go to storage as one transaction. The cost
 * of an SQLite commit is the pages it dirtied, each written whole to the
 * WAL: archives are indexed by user, so a commit dirties about one leaf
 * page per index per user that archived, whether that user archived one
 * message or fifty. Fewer, larger commits write each page once for many
 * messages (docs/performance.md, "What archiving costs the chat
 * benchmark"). A crash loses at most that window of the archive; the
 * messages themselves were delivered or stored offline by then. mam_flush
 * submits the batch early: a query does so first, so it sees every message
 * archived before it. */
typedef struct pend {
    int users;                        /* 1: MAM_COLL_USERS, 0: MAM_COLL */
    size_t owner, key, tag, val;      /* offsets in pend_arena; tag NO_TAG: none */
    size_t len;
    int64_t stamp;     /* when it was archived: a batch commits up to write-delay later */
    size_t head;       /* an archived message: its first line's bytes (the stanza follows) */
    size_t twin;       /* received: the sent record of the batch with the same stanza */
    size_t sharer;     /* sent: the received record that shares its stanza */
    uint64_t version;  /* sent: the stanza's tree version when serialized (xml_version) */
} pend_t;
#define NO_TAG ((size_t)-1)
#define NO_TWIN ((size_t)-1)

/* The batch's strings and values, one after another (each NUL-terminated)
 * in one buffer, which the flush hands to storage whole
 * (storage_put_many_take_async): one request for the batch, nothing copied.
 * Held as separate allocations (five per record, 20,000 records, half a
 * second) they were interleaved with the stanzas' short-lived ones, and
 * every malloc of the sm got slower: on the archiving sm, the work outside
 * mod_mam cost 5.9 µs more per message than with mod_mam off, 2.6 of them
 * in malloc (docs/performance.md, "The batch in one buffer"). */
static strbuf_t pend_arena;

static pend_t *pend;
static size_t npend, pend_cap;
static struct event *flush_ev;

/* A chat between two users of this sm is archived twice, the same stanza
 * after two different first lines: the sender's record when it leaves, the
 * receiver's when the copy sm_send queued for the local recipient comes
 * back to mam_message_in, both usually in one batch. That copy carries the
 * tree version of the stanza it was made from (xml_copy), and when nothing
 * changed it since, its bytes are the sent record's: they are copied from
 * the batch instead of serialized again, and the receiver's record is
 * handed to storage with a share of the sender's (storage_hint_t): the
 * SQLite driver keeps the stanza once (docs/mam.md, "One stanza, two
 * archives"). A copy that something changed on the way (a stripped
 * <private/> or forged stanza-id, a fan-out's new 'to') has a version of
 * its own and is stored whole.
 *
 * The sent records by version: direct-mapped, 4 KiB, never cleared. A slot
 * may name a record of an earlier batch, or one a later version took; it
 * counts only when the record it names is in this batch and carries the
 * version. (Before versions, a hash table of the sent stanzas' bytes found
 * the twin: a hash of every sent stanza, a 128 KiB table, a hash and a
 * comparison of every received one.) */
#define VERSION_SLOTS 1024
static uint32_t version_slot[VERSION_SLOTS];   /* a record's index plus one; 0: none */

static uint32_t *version_at(uint64_t v)
{
    return &version_slot[(v * 0x9e3779b97f4a7c15ull) >> 54];
}

/* The sent record of the batch whose stanza is the tree version v, or
 * NO_TWIN. */
static size_t version_find(uint64_t v)
{
    if (!v)
        return NO_TWIN;
    size_t k = *version_at(v);
    if (k == 0 || k > npend || pend[k - 1].version != v)
        return NO_TWIN;
    return k - 1;
}

static size_t arena_add(const char *s)
{
    size_t at = pend_arena.len;
    strbuf_append(&pend_arena, s, strlen(s) + 1);
    return at;
}

static void batch_done(storage_res_t *res, void *arg)
{
    if (res->status < 0)
        log_error("sm: event=mam-write-failed records=%zu", (size_t)(uintptr_t)arg);
}

void mam_flush(void)
{
    if (npend == 0)
        return;
    size_t n = npend;
    npend = 0;
    if (flush_ev)
        event_del(flush_ev);
    /* A batch touches a few index leaves per user that archived, each many
     * times: in a cache that holds them each is read once per batch, not
     * once per record (plus the dirty pages spilled and read back in the
     * middle of the transaction). Between batches the cache goes back to
     * database-cache, so idle sessions do not pay for it (docs/performance.md,
     * "What archiving costs the chat benchmark"). PostgreSQL ignores it. */
    size_t wcache = cfg()->write_cache;
    int raise = n > 1 && wcache > sm_config->database_cache;
    if (raise)
        storage_set_cache(sm_storage, wcache);
    /* Transactions do not nest: when another module's is open (it submitted
     * begin without commit yet), these writes simply join it. */
    if (n > 1)
        storage_begin_async(sm_storage, NULL, NULL);
    /* The batch goes to storage as one request that takes the buffer its
     * records already sit in: no copy, no allocation per record. */
    size_t coll_at[2] = {arena_add(MAM_COLL), arena_add(MAM_COLL_USERS)};
    storage_put_rec_t *recs = xmalloc(n * sizeof *recs);
    for (size_t i = 0; i < n; i++) {
        pend_t *p = &pend[i];
        storage_put_rec_t *w = &recs[i];
        *w = (storage_put_rec_t){p->owner, coll_at[p->users], p->key,
                                 p->tag == NO_TAG ? STORAGE_NO_TAG : p->tag, p->val, p->len,
                                 p->stamp, {0}};
        /* An archived message is keyed by its id, which begins with its
         * stamp: no index entry on SQLite. Each record is one put: the
         * twin's put is i - twin puts before. */
        w->hint.stamped = !p->users;
        if (p->twin != NO_TWIN) {
            w->hint.back = i - p->twin;
            w->hint.self_at = p->head;
            w->hint.base_at = pend[p->twin].head;
        } else if (p->sharer != NO_TWIN) {
            w->hint.ahead = p->sharer - i;
        }
    }
    size_t size = pend_arena.len;
    storage_put_many_take_async(sm_storage, strbuf_steal(&pend_arena), size, recs, n,
                                n > 1 ? NULL : batch_done, (void *)(uintptr_t)1);
    /* The next batch is likely this one's size: grown there at once, not by
     * doubling (each a copy of everything so far). */
    if (n > 1)
        strbuf_reserve(&pend_arena, size);
    if (n > 1)
        storage_commit_async(sm_storage, batch_done, (void *)(uintptr_t)n);
    /* SQLite has committed by now (its driver finishes inside submit); the
     * smaller size frees the clean pages beyond it. */
    if (raise)
        storage_set_cache(sm_storage, sm_config->database_cache);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    mam_flush();
}

/* The records that make a batch commit at once, and how long they wait. On
 * PostgreSQL each write is a round trip and the batch one transaction on
 * the one connection, so a large batch would hold every other request of
 * the sm behind it, and other sm instances sharing the database (a user
 * handed back after a takeover) should see the archive soon: both capped
 * there until the driver sends a batch as one statement. */
#define MAM_BATCH_PG 512
#define MAM_DELAY_PG 0.01

static double delay_max(void)
{
    double d = cfg()->write_delay;
    return storage_is_async(sm_storage) && d > MAM_DELAY_PG ? MAM_DELAY_PG : d;
}

static size_t batch_max(void)
{
    size_t n = (size_t)cfg()->write_batch;
    return storage_is_async(sm_storage) && n > MAM_BATCH_PG ? MAM_BATCH_PG : n;
}

/* An archived message's place in its record: the first line's length, the
 * sent record of the batch whose stanza it shares (or NO_TWIN), and, sent,
 * its tree's version (findable by the receiver's record). */
typedef struct rec_msg {
    size_t head, twin;
    uint64_t version;   /* sent: the tree's (xml_version), 0: none */
} rec_msg_t;

/* Queues one record write (tag may be NULL) whose value is the len bytes
 * at offset val of pend_arena (and a NUL), into MAM_COLL_USERS when users,
 * else MAM_COLL; m: when it is a message. */
static void pend_put(const char *owner, int users, const char *key, const char *tag,
                     size_t val, size_t len, int64_t stamp, const rec_msg_t *m)
{
    if (npend == pend_cap) {
        pend_cap = pend_cap ? pend_cap * 2 : 64;
        pend = xrealloc(pend, pend_cap * sizeof *pend);
    }
    size_t i = npend;
    pend_t *p = &pend[npend++];
    p->users = users;
    p->head = m ? m->head : 0;
    p->twin = m ? m->twin : NO_TWIN;
    p->sharer = NO_TWIN;
    if (p->twin != NO_TWIN)
        pend[p->twin].sharer = i;
    p->version = m ? m->version : 0;
    if (p->version)
        *version_at(p->version) = (uint32_t)i + 1;
    p->owner = arena_add(owner);
    p->key = arena_add(key);
    p->tag = tag ? arena_add(tag) : NO_TAG;
    p->val = val;
    p->len = len;
    p->stamp = stamp;
    if (npend >= batch_max()) {
        mam_flush();
    } else if (npend == 1) {
        if (!flush_ev)
            flush_ev = event_new(daemon_base(), -1, 0, flush_cb, NULL);
        double d = delay_max();
        struct timeval tv = {(time_t)d, (suseconds_t)((d - (time_t)d) * 1e6)};
        if (d > 0)
            event_add(flush_ev, &tv);
        else
            event_active(flush_ev, EV_TIMEOUT, 1);
    }
}

/* Writes msg into u's archive under id, stamped now (the time id begins
 * with: a stamped key, storage_hint_t); with is the contact's JID. The
 * record is made in place, at the end of the batch's buffer. */
static void archive(sm_user_t *u, char dir, const jid_t *with, const xml_node_t *msg, const char *id,
                    int64_t now)
{
    strbuf_t *sb = &pend_arena;
    size_t at = sb->len;
    /* "%lld %c %s\n" by hand: the printf was 4 % of the archiving sm. */
    char head[32];
    size_t hn = 0;
    uint64_t v = now < 0 ? 0 : (uint64_t)now;
    do
        head[sizeof head - 1 - hn++] = (char)('0' + v % 10);
    while ((v /= 10) && hn < 20);
    strbuf_append(sb, head + sizeof head - hn, hn);
    char mid[3] = {' ', dir, ' '};
    strbuf_append(sb, mid, 3);
    strbuf_puts(sb, with->full);
    strbuf_putc(sb, '\n');
    uint64_t version = xml_version(msg);
    rec_msg_t m = {sb->len - at, NO_TWIN, dir == 'o' ? version : 0};
    size_t same = dir == 'i' ? version_find(version) : NO_TWIN;
    if (same != NO_TWIN) {
        /* An unchanged copy of a stanza sent in this batch: its bytes,
         * shared where the driver keeps a shared stanza once. */
        const pend_t *q = &pend[same];
        size_t n = q->len - q->head;
        strbuf_reserve(sb, n + 1);     /* the source is in sb: no move while copying */
        strbuf_append(sb, sb->data + q->val + q->head, n);
        if (q->sharer == NO_TWIN && storage_shares_tails(sm_storage))
            m.twin = same;
    } else {
        xml_serialize(msg, NULL, sb);  /* declares the stanza's namespace */
    }
    size_t len = sb->len - at;
    strbuf_append(sb, "", 1);          /* its NUL */
    /* One record, tagged with the contact's bare JID: the tag's index
     * answers "with X", the collection's "everything". */
    pend_put(u->bare, 0, id, with->bare, at, len, now, &m);
    mam_user_t *s = ustate(u);
    if (!s->listed && (cfg()->max_age > 0 || cfg()->max_messages > 0)) {
        pend_put(sm_config->domain, 1, u->bare, NULL, arena_add(""), 0, now, NULL);
        s->listed = 1;
    }
    log_debug("sm: event=mam-archived user=%s dir=%c with=%s id=%s", u->bare, dir, with->full, id);
}

/* ------------------------------------------------------------ hooks */

static sm_ret_t mam_message_in(sm_user_t *u, sm_sess_t *to, xml_node_t *msg)
{
    (void)to;
    if (strip_forged(u, msg, 1))
        return SM_PASS;                /* archived already: handed back unacknowledged */
    const char *from = xml_attr_get(msg, "from");
    const jid_t *with;
    if (!from || !archivable(msg) || !(with = with_of(from)))
        return SM_PASS;
    if (prefs_allow(u, with)) {
        char id[40];
        int64_t stamp = new_id(u->bare, id);
        /* Archived as it arrived, before its stanza-id: the id is the
         * record's key, which a query's <result id=.../> gives, so a copy
         * inside the record would only be bytes written twice. */
        archive(u, 'i', with, msg, id, stamp);
        xml_node_t *sid = xml_add_child(msg, MAM_NS_SID, "stanza-id");
        xml_attr_set(sid, "by", u->bare);
        xml_attr_set(sid, "id", id);
    }
    return SM_PASS;
}

static sm_ret_t mam_message_out(sm_sess_t *s, xml_node_t *msg)
{
    sm_user_t *u = s->user;
    sent_msg = NULL;
    strip_forged(u, msg, 0);
    const char *to = xml_attr_get(msg, "to");
    const jid_t *with;
    /* To the user's own account: archived once, as it arrives. */
    if (!to || own_jid(u, to) || !archivable(msg) || !(with = with_of(to)))
        return SM_PASS;
    if (prefs_allow(u, with)) {
        archive(u, 'o', with, msg, sent_id, new_id(u->bare, sent_id));
        sent_msg = msg;
    }
    return SM_PASS;
}

void mam_mark_sent_copy(const xml_node_t *orig, xml_node_t *copy)
{
    if (!sent_msg || orig != sent_msg)
        return;
    xml_node_t *sid = xml_add_child(copy, MAM_NS_SID, "stanza-id");
    const char *from = xml_attr_get(orig, "from");
    char *bare = from ? jid_bare_of(from) : NULL;
    xml_attr_set(sid, "by", bare ? bare : "");
    xml_attr_set(sid, "id", sent_id);
    free(bare);
}

/* ------------------------------------------------------------ preferences */

static void prefs_clear(mam_user_t *s)
{
    for (size_t i = 0; i < s->nalways; i++)
        free(s->always[i]);
    for (size_t i = 0; i < s->nnever; i++)
        free(s->never[i]);
    free(s->always);
    free(s->never);
    s->always = s->never = NULL;
    s->nalways = s->nnever = 0;
    s->mode = -1;
}

/* The <jid/> children of list (always or never) into v; -1 on a bad JID. */
static int prefs_jids(const xml_node_t *list, char ***v, size_t *n)
{
    if (!list)
        return 0;
    for (xml_node_t *j = xml_child(list, MAM_NS, "jid"); j; j = xml_next(j, MAM_NS, "jid")) {
        char *text = xml_text(j);
        jid_t parsed;
        int ok = jid_parse(text, &parsed) == JID_OK;
        free(text);
        if (!ok)
            return -1;
        if (*n >= PREFS_MAX_JIDS) {
            jid_clear(&parsed);
            return -2;
        }
        *v = xrealloc(*v, (*n + 1) * sizeof **v);
        (*v)[(*n)++] = xstrdup(parsed.full);
        jid_clear(&parsed);
    }
    return 0;
}

/* Fills s from a <prefs/> element: 0, -1 bad JID, -2 too many, -3 bad default. */
static int prefs_from_xml(mam_user_t *s, const xml_node_t *p)
{
    prefs_clear(s);
    const char *def = xml_attr_get(p, "default");
    if (def && mode_of(def) < 0)
        return -3;
    s->mode = def ? mode_of(def) : -1;
    int r = prefs_jids(xml_child(p, MAM_NS, "always"), &s->always, &s->nalways);
    if (r == 0)
        r = prefs_jids(xml_child(p, MAM_NS, "never"), &s->never, &s->nnever);
    if (r < 0)
        prefs_clear(s);
    return r;
}

static xml_node_t *prefs_to_xml(const mam_user_t *s)
{
    xml_node_t *p = xml_elem_new(MAM_NS, "prefs");
    xml_attr_set(p, "default", mode_name(s->mode >= 0 ? s->mode : mode_of(cfg()->default_text)));
    xml_node_t *a = xml_add_child(p, MAM_NS, "always");
    for (size_t i = 0; i < s->nalways; i++) {
        xml_node_t *j = xml_add_child(a, MAM_NS, "jid");
        xml_add_text(j, s->always[i], strlen(s->always[i]));
    }
    xml_node_t *n = xml_add_child(p, MAM_NS, "never");
    for (size_t i = 0; i < s->nnever; i++) {
        xml_node_t *j = xml_add_child(n, MAM_NS, "jid");
        xml_add_text(j, s->never[i], strlen(s->never[i]));
    }
    return p;
}

static void prefs_loaded(storage_res_t *res, void *arg)
{
    sm_user_t *u = arg;
    mam_user_t *s = ustate(u);
    if (res->status == 0) {
        xml_limits_t lim;
        xml_limits_default(&lim);
        char err[128];
        xml_node_t *p = xml_parse_document(res->val, res->len, &lim, err, sizeof err, NULL);
        if (!p || prefs_from_xml(s, p) != 0)
            log_warn("sm: event=mam-prefs-unreadable user=%s", u->bare);
        xml_free(p);
    } else if (res->status < 0) {
        log_error("sm: event=mam-prefs-read-failed user=%s", u->bare);
    }
    s->loaded = 1;
    sm_user_release(u);
}

static void mam_user_load(sm_user_t *u)
{
    ustate(u);
    sm_user_hold(u);
    storage_get_async(sm_storage, u->bare, MAM_COLL_PREFS, "", prefs_loaded, u);
}

static void mam_user_state_free(sm_user_t *u, void *state)
{
    (void)u;
    mam_user_t *s = state;
    prefs_clear(s);
    free(s);
}

void mam_prefs_get(sm_iq_t *req)
{
    sm_iq_reply(req, prefs_to_xml(ustate(req->user)));
}

typedef struct prefs_write {
    sm_iq_t *req;
    mam_user_t fresh;
} prefs_write_t;

static void prefs_written(storage_res_t *res, void *arg)
{
    prefs_write_t *w = arg;
    if (res->status < 0) {
        prefs_clear(&w->fresh);
        sm_iq_error(w->req, "internal-server-error", "wait");
    } else {
        mam_user_t *s = ustate(w->req->user);
        prefs_clear(s);
        s->mode = w->fresh.mode;
        s->always = w->fresh.always;
        s->nalways = w->fresh.nalways;
        s->never = w->fresh.never;
        s->nnever = w->fresh.nnever;
        log_info("sm: event=mam-prefs user=%s default=%s always=%zu never=%zu", w->req->user->bare,
                 mode_name(s->mode), s->nalways, s->nnever);
        sm_iq_reply(w->req, prefs_to_xml(s));
    }
    free(w);
}

/* XEP-0441: the stored preferences are replaced as a whole; the answer is
 * what is now in force. */
void mam_prefs_set(sm_iq_t *req)
{
    prefs_write_t *w = xcalloc(1, sizeof *w);
    int r = prefs_from_xml(&w->fresh, req->payload);
    if (r < 0 || !xml_attr_get(req->payload, "default")) {
        free(w);
        sm_iq_error(req, r == -1 ? "jid-malformed" : r == -2 ? "not-acceptable" : "bad-request",
                    "modify");
        return;
    }
    xml_node_t *p = prefs_to_xml(&w->fresh);
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(p, NULL, &sb);
    xml_free(p);
    w->req = sm_iq_defer(req);
    storage_put_async(sm_storage, w->req->user->bare, MAM_COLL_PREFS, "", sb.data, sb.len,
                      prefs_written, w);
    strbuf_free(&sb);
}

/* ------------------------------------------------------------ retention */

enum { SW_LIST, SW_AGE, SW_COUNT, SW_TRIM, SW_DONE };

typedef struct sweep {
    int active;
    int phase;
    char **users;
    size_t n, i;
    int inflight, in_step, budget;
    int64_t cutoff;           /* µs: older records go (0: no age limit) */
    int64_t trim;             /* records to trim in SW_TRIM */
    double last;              /* when the last sweep started */
    size_t deleted;
} sweep_t;

static sweep_t sweep;

static void sweep_step(void);

static void sweep_free_users(void)
{
    for (size_t i = 0; i < sweep.n; i++)
        free(sweep.users[i]);
    free(sweep.users);
    sweep.users = NULL;
    sweep.n = sweep.i = 0;
}

/* The next user, or the end of the sweep. */
static void sweep_next_user(void)
{
    sweep.i++;
    sweep.phase = sweep.cutoff ? SW_AGE : SW_COUNT;
}

/* Deletes the records of a range result. */
static void sweep_delete(const char *owner, storage_res_t *res)
{
    for (size_t k = 0; k < res->nrecs; k++) {
        storage_del_async(sm_storage, owner, MAM_COLL, res->recs[k].key, NULL, NULL);
        sweep.deleted++;
    }
}

static void sweep_done(storage_res_t *res, void *arg)
{
    (void)arg;
    const mam_cfg_t *c = cfg();
    const char *user = sweep.i < sweep.n ? sweep.users[sweep.i] : NULL;
    if (res->status < 0) {
        log_error("sm: event=mam-retention-failed user=%s phase=%d", user ? user : "-", sweep.phase);
        sweep.phase = SW_DONE;
    } else {
        switch (sweep.phase) {
        case SW_LIST:
            sweep.users = xcalloc(res->nrecs + 1, sizeof *sweep.users);
            for (size_t k = 0; k < res->nrecs; k++)
                sweep.users[sweep.n++] = xstrdup(res->recs[k].key);
            sweep.i = 0;
            sweep.phase = sweep.cutoff ? SW_AGE : SW_COUNT;
            break;
        case SW_AGE:
            sweep_delete(user, res);
            if (res->nrecs < SWEEP_PAGE)
                sweep.phase = SW_COUNT;
            break;
        case SW_COUNT:
            if (c->max_messages > 0 && res->n > c->max_messages) {
                sweep.trim = res->n - c->max_messages;
                sweep.phase = SW_TRIM;
            } else {
                /* An empty archive leaves the list (unless the user is in
                 * memory: it may archive again without being listed anew). */
                if (res->n == 0 && !sm_user_get(user))
                    storage_del_async(sm_storage, sm_config->domain, MAM_COLL_USERS, user, NULL, NULL);
                sweep_next_user();
            }
            break;
        case SW_TRIM:
            sweep_delete(user, res);
            sweep.phase = SW_COUNT;
            break;
        }
    }
    sweep.inflight = 0;
    if (!sweep.in_step)
        sweep_step();
}

/* Submits storage steps until the budget of this tick is spent; a step's
 * callback (at once on SQLite, later on PostgreSQL) moves the state on. */
static void sweep_step(void)
{
    sweep.in_step = 1;
    while (sweep.active && !sweep.inflight && sweep.budget > 0) {
        if (sweep.phase == SW_DONE || (sweep.phase != SW_LIST && sweep.i >= sweep.n)) {
            log_info("sm: event=mam-retention users=%zu deleted=%zu", sweep.n, sweep.deleted);
            sweep_free_users();
            sweep.active = 0;
            break;
        }
        sweep.budget--;
        sweep.inflight = 1;
        const char *user = sweep.phase == SW_LIST ? NULL : sweep.users[sweep.i];
        storage_range_t q = {0};
        switch (sweep.phase) {
        case SW_LIST:
            storage_list_async(sm_storage, sm_config->domain, MAM_COLL_USERS, sweep_done, NULL);
            break;
        case SW_AGE:
            q.by_stamp = 1;
            q.until = sweep.cutoff;
            q.limit = SWEEP_PAGE;
            storage_range_async(sm_storage, user, MAM_COLL, &q, sweep_done, NULL);
            break;
        case SW_COUNT:
            storage_count_async(sm_storage, user, MAM_COLL, sweep_done, NULL);
            break;
        case SW_TRIM:
            q.by_stamp = 1;   /* the oldest first, in one index scan (docs/storage.md) */
            q.limit = sweep.trim < SWEEP_PAGE ? (size_t)sweep.trim : SWEEP_PAGE;
            storage_range_async(sm_storage, user, MAM_COLL, &q, sweep_done, NULL);
            break;
        }
    }
    sweep.in_step = 0;
}

static void mam_cron(double now)
{
    const mam_cfg_t *c = cfg();
    sweep.budget = SWEEP_BUDGET;
    mam_flush();                       /* the sweep sees what was archived */
    if (!sweep.active) {
        if (c->max_age <= 0 && c->max_messages <= 0)
            return;
        if (sweep.last > 0 && now - sweep.last < c->sweep_period)
            return;
        sweep.last = now;
        sweep.active = 1;
        sweep.deleted = 0;
        sweep.phase = SW_LIST;
        sweep.cutoff = c->max_age > 0 ? storage_now_us() - (int64_t)(c->max_age * 1e6) : 0;
    }
    if (!sweep.inflight)
        sweep_step();
}

/* ------------------------------------------------------------ the module */

static int mam_init(void)
{
    if (mode_of(cfg()->default_text) < 0) {
        log_error("sm: event=config option=mam.default value=%s reason=\"not always, never or roster\"",
                  cfg()->default_text);
        return -1;
    }
    if (RAND_bytes(with_key, sizeof with_key) != 1)
        log_warn("sm: event=mam-jid-cache-key error=\"RAND_bytes failed\"");
    return 0;
}

static void mam_free(void)
{
    mam_flush();                       /* storage_close waits for it */
    free(pend);
    pend = NULL;
    pend_cap = 0;
    memset(version_slot, 0, sizeof version_slot);
    if (flush_ev)
        event_free(flush_ev);
    flush_ev = NULL;
    sweep_free_users();
    memset(&sweep, 0, sizeof sweep);
    sent_msg = NULL;
    mam_id_free();
    strbuf_free(&pend_arena);
    with_free();
}

static const cfg_option_t mam_options[] = {
    {"default", CFG_STRING, "always", 0, 0, 0, offsetof(mam_cfg_t, default_text), NULL,
     "What is archived for a user with no preference of its own (XEP-0441): always, never or roster."},
    {"default-page", CFG_INT, "50", 1, 1000, 1, offsetof(mam_cfg_t, default_page), NULL,
     "Results per page of a query that gives no <max/>."},
    {"max-page", CFG_INT, "250", 1, 10000, 1, offsetof(mam_cfg_t, max_page), NULL,
     "The most results a query gets per page; a larger <max/> is cut to it."},
    {"max-age", CFG_SECONDS, "0", 0, 1e10, 1, offsetof(mam_cfg_t, max_age), NULL,
     "Retention: archived messages older than this are deleted (0: kept forever)."},
    {"max-messages", CFG_INT, "0", 0, 1000000000, 1, offsetof(mam_cfg_t, max_messages), NULL,
     "Retention: each user's archive keeps its newest this many messages (0: no limit)."},
    {"write-delay", CFG_SECONDS, "1s", 0, 10, 1, offsetof(mam_cfg_t, write_delay), NULL,
     "How long archive writes wait to be committed together (0: until the end of the loop turn; at most 10ms on PostgreSQL)."},
    {"write-batch", CFG_INT, "20000", 1, 100000, 1, offsetof(mam_cfg_t, write_batch), NULL,
     "Archive writes that make a batch commit at once, before write-delay is up (bounds the memory they hold; at most 512 on PostgreSQL)."},
    {"write-cache", CFG_SIZE, "16M", 0, 1073741824, 1, offsetof(mam_cfg_t, write_cache), NULL,
     "SQLite's page cache while an archive batch commits, back to database-cache after it (0: database-cache throughout)."},
    {"sweep-period", CFG_SECONDS, "1h", 1, 1e7, 1, offsetof(mam_cfg_t, sweep_period), NULL,
     "How often the retention limits are applied."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_hooks_t mam_hooks = {
    .user_load = mam_user_load,
    .message_out = mam_message_out,
    .message_in = mam_message_in,
    .cron = mam_cron,
};

static const sm_iq_handler_t mam_iqs[] = {
    {MAM_NS, SM_IQ_ACCOUNT, mam_iq_get, mam_iq_set, NULL},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const mam_features[] = {MAM_NS, MAM_NS_EXT, MAM_NS_SID, NULL};

sm_module_t sm_module_mam = {
    .name = "mam",
    .help = "Message archive (XEP-0313) with stanza ids (XEP-0359), preferences and retention.",
    .init = mam_init,
    .free = mam_free,
    .options = mam_options,
    .config_size = sizeof(mam_cfg_t),
    .hooks = &mam_hooks,
    .iqs = mam_iqs,
    .server_features = mam_features,
    .account_features = mam_features,
    .user_state_free = mam_user_state_free,
};
