/* libFuzzer target for weft-muc's handling of network input: the stanzas
 * the router delivers (joins with muc, muc#user, muc#admin and muc#owner
 * payloads, configuration forms, history requests, invitations, MAM, private
 * messages, IQs to occupants) fed into muc_dispatch, the service's one
 * entry point, with its output captured instead of a router link.
 *
 * The input is a sequence of stanzas split at each 0xff byte (never valid in
 * UTF-8, so it hides nothing a real stanza could hold); each piece is parsed
 * as a standalone document with the stream's limits, put into jabber:client
 * when it has no namespace, and dispatched, so one input can create a room,
 * configure it, let others join and act in it. Storage is a SQLite file in a
 * private directory (removed at exit); every room (and with it its records) is destroyed after
 * each input, so nothing grows from one input to the next.
 * Checked: no crash, leak or UB; every stanza written is a message, presence
 * or iq with a 'to'. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "log.h"
#include "muc.h"
#include "xml_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What main.c (not linked here) tells the metrics collector: no link. */
int muc_link_ready(void)
{
    return 0;
}

size_t muc_link_unacked(void)
{
    return 0;
}

size_t muc_deferred_count(void)
{
    return 0;
}

size_t muc_outq_held(void)
{
    return 0;
}

static struct event_base *fz_base;
static size_t fz_out_count;
static char fz_dir[64];

/* The SQLite files go with the process (libFuzzer ends with exit()). */
static void fz_cleanup(void)
{
    static const char *const files[] = {"muc.db", "muc.db-wal", "muc.db-shm"};
    char path[96];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", fz_dir, files[i]);
        unlink(path);
    }
    rmdir(fz_dir);
}

static int fz_output(const xml_node_t *st)
{
    if (!st->name || (strcmp(st->name, "message") && strcmp(st->name, "presence") && strcmp(st->name, "iq")))
        abort();
    if (!xml_attr_get(st, "to"))
        abort();
    strbuf_t sb;
    strbuf_init(&sb);
    xml_serialize(st, NS_CLIENT, &sb);   /* what the link would write */
    strbuf_free(&sb);
    fz_out_count++;
    return 0;
}

static void fz_init(void)
{
    log_current_level = LOG_LVL_ERROR;
    fz_base = event_base_new();
    size_t size;
    const cfg_option_t *table = muc_config_table(&size);
    muc_config = xcalloc(1, size);
    static const char doc[] = "<muc><limits><messages-per-second>0</messages-per-second>"
                              "<history>5</history><mam-page>5</mam-page></limits></muc>";
    cfg_error_t err;
    if (cfg_load_buffer(table, muc_config, "fuzz.xml", doc, sizeof doc - 1, &err) < 0)
        abort();
    /* mkdtemp's template: it replaces the six X with a unique suffix. In
     * memory where the machine has it: the storage writes every run. */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz_dir, sizeof fz_dir, "%s/weft-fuzz-muc-XXXXXX", base);
    if (!mkdtemp(fz_dir))
        abort();
    atexit(fz_cleanup);
    char url[256];
    snprintf(url, sizeof url, "sqlite:%s/muc.db", fz_dir);
    char e[256];
    muc_storage = storage_open(url, fz_base, e, sizeof e);
    if (!muc_storage) {
        fprintf(stderr, "fuzz_muc_stanza: %s\n", e);
        abort();
    }
    muc_set_output(fz_output, NULL);
}

static void fz_one(const uint8_t *p, size_t n)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = 65536;
    lim.max_depth = 32;
    char err[128];
    unsigned line = 0;
    xml_node_t *st = xml_parse_document((const char *)p, n, &lim, err, sizeof err, &line);
    if (!st)
        return;
    xml_rename_ns(st, "", NS_CLIENT);
    if (!strcmp(st->ns, NS_CLIENT) &&
        (!strcmp(st->name, "message") || !strcmp(st->name, "presence") || !strcmp(st->name, "iq")))
        muc_dispatch(st, NULL);
    xml_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_base)
        fz_init();
    muc_set_salt("fuzz-salt");
    size_t start = 0;
    for (size_t i = 0; i <= size; i++)
        if (i == size || data[i] == 0xff) {
            if (i > start)
                fz_one(data + start, i - start);
            start = i + 1;
        }
    /* Every room goes, records and all: the next input starts empty. */
    muc_room_t *r;
    while ((r = muc_room_each(NULL)))
        muc_room_destroy(r);
    muc_iq_relay_free();
    muc_room_free_all();           /* the salt */
    return 0;
}
