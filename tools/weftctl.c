/* weftctl: the admin command line (docs/weftctl.md).
 *
 *   weftctl [-s SOCKET] stats             link counters and name instances (router)
 *   weftctl [-S SOCKET] sessions          online sessions (sm)
 *   weftctl [STORAGE] adduser JID [PASSWORD]
 *   weftctl [STORAGE] passwd JID [PASSWORD]
 *   weftctl [STORAGE] deluser JID
 *   weftctl [STORAGE] listusers
 *   weftctl migrate FROM-URL TO-URL
 *   weftctl [STORAGE] import [-n] FILE... | export [FILE]   (weftctl_xep0227.c)
 *   weftctl [STORAGE] [--json] user list|add|del|passwd ...  (weftctl_admin.c)
 *   weftctl [-e ETC] [--json] check | status | reload        (weftctl_admin.c)
 * where STORAGE is --storage URL, -d SQLITE-FILE or -c SM-XML (default:
 * etc/sm.xml when it exists, its <storage> or else <database>; else
 * var/weft.db).
 *
 * stats asks the router over its control socket (router.xml <control>,
 * default var/router.ctl); sessions asks the sm over its admin socket
 * (sm.xml <control>, default var/sm.ctl). The user commands go through the
 * storage driver the sm uses (common/storage.h), never around it: with SQLite
 * they run on the sm's host as the user the sm runs as, with PostgreSQL
 * anywhere the database accepts them; they work whether or not the sm is
 * running. migrate copies every account and record from one storage into an
 * empty other, keeping sequence numbers and stamps.
 * Passwords become SCRAM-SHA-256 and SCRAM-SHA-1 keys (4096
 * iterations) after the SASLprep the SASL layer applies; a password is never
 * stored, printed or logged, and is wiped from memory after use.
 *
 * Exit status of the older commands (the newer ones have their own, XIT_* in
 * weftctl.h, docs/weftctl.md): 0 success; 1 failure (router or sm unreachable, database
 * error); 2 usage error (bad arguments or JID, unusable password); 3 the account already exists (adduser) or does not (passwd,
 * deluser). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "jid.h"
#include "log.h"
#include "sasl.h"
#include "storage.h"
#include "config.h"
#include "strbuf.h"
#include "weftctl.h"
#include "xml.h"
#include "xml_stream.h"

#define SCRAM_ITERATIONS 4096
#define PASSWORD_MAX 1024

static int usage(void)
{
    fprintf(stderr,
            "usage: weftctl [-s router-control-socket] [-S sm-control-socket] [-e etc-dir]\n"
            "               [--storage URL | -d sqlite-file | -c sm.xml] [--json] command\n"
            "commands:\n"
            "  user list                  list accounts\n"
            "  user add JID [PASSWORD]    create an account\n"
            "  user del JID               remove an account and all its data\n"
            "  user passwd JID [PASSWORD] set an account's password\n"
            "  check                      configs, certificates, DNS SRV records, ports\n"
            "  status                     which processes run, links, sessions\n"
            "  reload                     SIGHUP to the running processes\n"
            "  stats                      router link counters and names\n"
            "  adduser JID [PASSWORD]     create an account\n"
            "  passwd JID [PASSWORD]      set an account's password\n"
            "  deluser JID                remove an account and all its data\n"
            "  listusers                  list accounts\n"
            "  sessions                   online sessions (sm)\n"
            "  migrate FROM-URL TO-URL    copy every account and record into an empty storage\n"
            "  import [-n] FILE...        load accounts and their data from XEP-0227 XML\n"
            "                             (-n: check everything, write nothing)\n"
            "  export [FILE]              write every account and its data as XEP-0227 XML\n"
            "Without PASSWORD it is asked for on the terminal, or read as one line\n"
            "from standard input.\n");
    return EXIT_USAGE;
}

/* ------------------------------------------------------------ control sockets */

/* Sends one command line to a control socket (the router's or the sm's,
 * named by who for messages) and copies the answer to stdout. */
static int ask_socket(const char *who, const char *path, const char *cmd)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path)
        return usage();
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        fprintf(stderr, "weftctl: cannot reach the %s at %s: %s\n", who, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXIT_FAIL;
    }
    char line[256];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    if (write(fd, line, (size_t)n) != n) {
        close(fd);
        return EXIT_FAIL;
    }
    char buf[65536];
    ssize_t r;
    int rc = 0;
    while ((r = read(fd, buf, sizeof buf)) > 0) {
        if (!strncmp(buf, "error ", 6))
            rc = EXIT_FAIL;
        fwrite(buf, 1, (size_t)r, stdout);
    }
    close(fd);
    return rc;
}

/* ------------------------------------------------------------ passwords */

static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

/* Interrupted while echo is off: put the terminal back before dying. */
static void tty_restore_and_exit(int sig)
{
    if (tty_echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads one line from stdin into a new string without its line end; NULL on
 * end of input or a line over PASSWORD_MAX bytes. */
static char *read_line(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0 || n > PASSWORD_MAX) {
        if (line)
            OPENSSL_cleanse(line, cap);
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    return line;
}

void weftctl_wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static char *prompt_hidden(const char *prompt)
{
    struct termios t = tty_saved;
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_lflag |= ECHONL;
    fputs(prompt, stderr);
    fflush(stderr);
    tty_echo_off = 1;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
    char *pw = read_line();
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
    tty_echo_off = 0;
    return pw;
}

/* The password from the argument, the terminal (asked twice) or a line of
 * stdin; NULL after saying why. */
char *weftctl_get_password(const char *arg)
{
    if (arg)
        return xstrdup(arg);
    if (!isatty(STDIN_FILENO)) {
        char *pw = read_line();
        if (!pw)
            fprintf(stderr, "weftctl: no password on standard input\n");
        return pw;
    }
    if (tcgetattr(STDIN_FILENO, &tty_saved) < 0) {
        fprintf(stderr, "weftctl: cannot read the terminal: %s\n", strerror(errno));
        return NULL;
    }
    struct sigaction sa = {.sa_handler = tty_restore_and_exit};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    char *pw = prompt_hidden("Password: ");
    char *again = pw ? prompt_hidden("Password (again): ") : NULL;
    if (pw && (!again || strcmp(pw, again) != 0)) {
        fprintf(stderr, "weftctl: the passwords do not match\n");
        weftctl_wipe_free(pw);
        pw = NULL;
    }
    weftctl_wipe_free(again);
    return pw;
}

/* Derives the stored key texts from a password, prepared as the SASL layer
 * prepares it. 0, or -1 after saying why (keys then empty). */
int weftctl_make_keys(const char *password, strbuf_t *sha256, strbuf_t *sha1)
{
    if (!*password) {
        fprintf(stderr, "weftctl: empty password\n");
        return -1;
    }
    char *prepped = sasl_saslprep(password, 0);
    if (!prepped || !*prepped) {
        fprintf(stderr, "weftctl: the password is not valid UTF-8 or has characters "
                        "SASLprep (RFC 4013) forbids\n");
        weftctl_wipe_free(prepped);
        return -1;
    }
    scram_keys_t k;
    int rc = 0;
    if (scram_keys_new(SCRAM_SHA256, prepped, SCRAM_ITERATIONS, &k) == 0)
        scram_keys_format(&k, sha256);
    else
        rc = -1;
    if (rc == 0 && scram_keys_new(SCRAM_SHA1, prepped, SCRAM_ITERATIONS, &k) == 0)
        scram_keys_format(&k, sha1);
    else
        rc = -1;
    OPENSSL_cleanse(&k, sizeof k);
    weftctl_wipe_free(prepped);
    if (rc < 0)
        fprintf(stderr, "weftctl: cannot derive keys (no randomness?)\n");
    return rc;
}

/* ------------------------------------------------------------ accounts */

/* Prepares a user's JID (bare, with a node) into *out; 0 or -1 after saying why. */
int weftctl_parse_user(const char *s, jid_t *out)
{
    jid_err_t e = jid_parse(s, out);
    if (e != JID_OK) {
        fprintf(stderr, "weftctl: %s: %s\n", s, jid_strerror(e));
        return -1;
    }
    if (!out->node || out->resource) {
        fprintf(stderr, "weftctl: %s: an account is a bare JID user@domain\n", s);
        jid_clear(out);
        return -1;
    }
    return 0;
}

/* The SQLite file a storage URL names, or NULL for another driver (the
 * schemes storage.c knows: "sqlite:" or no scheme is a file). */
static const char *sqlite_path(const char *url)
{
    if (!strncmp(url, "sqlite:", 7)) {
        url += 7;
        return strncmp(url, "//", 2) ? url : url + 2;
    }
    const char *colon = strchr(url, ':');
    const char *slash = strchr(url, '/');
    return colon && (!slash || colon < slash) ? NULL : url;
}

/* Opens the storage; only adduser and migrate's target may create an SQLite
 * file (first setup before the sm ever ran): elsewhere a missing file is a
 * wrong path, not an empty server. */
storage_t *weftctl_open_db(const char *url, int may_create)
{
    const char *path = sqlite_path(url);
    if (!may_create && path && access(path, F_OK) < 0) {
        fprintf(stderr, "weftctl: no database at %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char err[512];
    storage_t *st = storage_open(url, NULL, err, sizeof err);
    if (!st)
        fprintf(stderr, "weftctl: cannot open the storage: %s\n", err);
    return st;
}

/* adduser (create = 1) and passwd (create = 0). */
static int cmd_set_password(const char *db, const char *user, const char *pw_arg, int create)
{
    jid_t j;
    if (weftctl_parse_user(user, &j) < 0)
        return EXIT_USAGE;
    storage_t *st = weftctl_open_db(db, create);
    if (!st) {
        jid_clear(&j);
        return EXIT_FAIL;
    }
    int rc = EXIT_FAIL;
    char *pw = NULL;
    strbuf_t k256, k1;
    strbuf_init(&k256);
    strbuf_init(&k1);
    /* Checked before asking for a password, so nobody types one for nothing;
     * checked again by the write itself. */
    int exists = storage_user_exists(st, j.bare);
    if (exists < 0)
        goto out;
    if (exists == create) {
        fprintf(stderr, "weftctl: %s %s\n", j.bare, create ? "already exists" : "does not exist");
        rc = EXIT_ACCOUNT;
        goto out;
    }
    pw = weftctl_get_password(pw_arg);
    if (!pw || weftctl_make_keys(pw, &k256, &k1) < 0) {
        rc = EXIT_USAGE;
        goto out;
    }
    int r = create ? storage_user_create(st, j.bare, k256.data, k1.data)
                   : storage_user_set_keys(st, j.bare, k256.data, k1.data);
    if (r == 0) {
        printf("%s %s\n", create ? "created" : "password changed for", j.bare);
        rc = 0;
    } else if (r > 0) {
        fprintf(stderr, "weftctl: %s %s\n", j.bare, create ? "already exists" : "does not exist");
        rc = EXIT_ACCOUNT;
    }
out:
    weftctl_wipe_free(pw);
    if (k256.data)
        OPENSSL_cleanse(k256.data, k256.cap);
    if (k1.data)
        OPENSSL_cleanse(k1.data, k1.cap);
    strbuf_free(&k256);
    strbuf_free(&k1);
    storage_close(st);
    jid_clear(&j);
    return rc;
}

static int cmd_deluser(const char *db, const char *user)
{
    jid_t j;
    if (weftctl_parse_user(user, &j) < 0)
        return EXIT_USAGE;
    storage_t *st = weftctl_open_db(db, 0);
    if (!st) {
        jid_clear(&j);
        return EXIT_FAIL;
    }
    int rc = storage_user_delete(st, j.bare);
    if (rc == 0)
        printf("removed %s\n", j.bare);
    else if (rc > 0)
        fprintf(stderr, "weftctl: %s does not exist\n", j.bare);
    storage_close(st);
    jid_clear(&j);
    return rc == 0 ? 0 : rc > 0 ? EXIT_ACCOUNT : EXIT_FAIL;
}

static int print_user(const char *bare, void *arg)
{
    (void)arg;
    return puts(bare) < 0 ? 1 : 0;
}

static int cmd_listusers(const char *db)
{
    storage_t *st = weftctl_open_db(db, 0);
    if (!st)
        return EXIT_FAIL;
    int rc = storage_user_list(st, print_user, NULL);
    storage_close(st);
    if (fflush(stdout) != 0)
        rc = -1;
    return rc == 0 ? 0 : EXIT_FAIL;
}

/* ------------------------------------------------------------ migrate */

typedef struct user_got {
    storage_res_t res;
    int done;
} user_got_t;

static void user_got(storage_res_t *res, void *arg)
{
    user_got_t *g = arg;
    g->res = *res;
    memset(res, 0, sizeof *res);
    g->done = 1;
}

typedef struct migrate {
    storage_t *from, *to;
    long users;
} migrate_t;

/* Copies one account, keys and creation time as they are. */
static int copy_user(const char *bare, void *arg)
{
    migrate_t *m = arg;
    user_got_t g = {0};
    storage_user_get_async(m->from, bare, user_got, &g);
    storage_drain(m->from);
    int rc = g.res.status;
    if (rc == 0)
        rc = storage_user_import(m->to, bare, g.res.sha256, g.res.sha1, g.res.created);
    storage_res_clear(&g.res);
    if (rc != 0) {
        fprintf(stderr, "weftctl: cannot copy the account %s\n", bare);
        return -1;
    }
    m->users++;
    return 0;
}

/* Counts every record by paging through them. -1 on error. */
static long count_records(storage_t *st)
{
    long n = 0;
    int64_t after = 0;
    for (;;) {
        storage_res_t res;
        if (storage_scan(st, after, 1000, &res) < 0) {
            storage_res_clear(&res);
            return -1;
        }
        size_t got = res.nrecs;
        n += (long)got;
        if (got)
            after = res.recs[got - 1].seq;
        storage_res_clear(&res);
        if (got < 1000)
            return n;
    }
}

/* Copies pages of 1,000 records in seq order; -1 on error. */
static long copy_records(storage_t *from, storage_t *to)
{
    long n = 0;
    int64_t after = 0;
    for (;;) {
        storage_res_t res;
        if (storage_scan(from, after, 1000, &res) < 0) {
            storage_res_clear(&res);
            return -1;
        }
        size_t got = res.nrecs;
        for (size_t i = 0; i < got; i++) {
            storage_rec_t *r = &res.recs[i];
            if (storage_import(to, r->owner, r->coll, r) != 0) {
                storage_res_clear(&res);
                return -1;
            }
        }
        n += (long)got;
        if (got)
            after = res.recs[got - 1].seq;
        storage_res_clear(&res);
        if (got < 1000)
            return n;
    }
}

/* The whole copy is one transaction on the target: it has all or nothing. */
static int cmd_migrate(const char *from_url, const char *to_url)
{
    storage_t *from = weftctl_open_db(from_url, 0);
    if (!from)
        return EXIT_FAIL;
    storage_t *to = weftctl_open_db(to_url, 1);
    if (!to) {
        storage_close(from);
        return EXIT_FAIL;
    }
    int rc = EXIT_FAIL;
    int in_txn = 0;
    migrate_t m = {from, to, 0};
    int to_users = storage_user_count(to);
    long to_recs = count_records(to);
    if (to_users < 0 || to_recs < 0)
        goto out;
    if (to_users > 0 || to_recs > 0) {
        fprintf(stderr, "weftctl: the target storage is not empty (%d accounts, %ld records); "
                        "migrate only fills an empty one\n", to_users, to_recs);
        goto out;
    }
    if (storage_begin(to) < 0)
        goto out;
    in_txn = 1;
    if (storage_user_list(from, copy_user, &m) != 0)
        goto out;
    long recs = copy_records(from, to);
    if (recs < 0 || storage_import_done(to) < 0 || storage_commit(to) < 0)
        goto out;
    in_txn = 0;
    /* What the target now holds must be what was read. */
    long check_users = storage_user_count(to), check_recs = count_records(to);
    if (check_users != m.users || check_recs != recs) {
        fprintf(stderr, "weftctl: the target holds %ld accounts and %ld records after the copy, "
                        "not %ld and %ld\n", check_users, check_recs, m.users, recs);
        goto out;
    }
    printf("migrated accounts=%ld records=%ld from=%s to=%s\n", m.users, recs,
           storage_driver_name(from), storage_driver_name(to));
    rc = fflush(stdout) == 0 ? 0 : EXIT_FAIL;
out:
    if (in_txn)
        storage_rollback(to);
    storage_close(from);
    storage_close(to);
    return rc;
}

/* ------------------------------------------------------------ sm.xml */

/* The storage URL an sm config names: <storage>, else <database> (an SQLite
 * file), else the sm's default. NULL (said why) when the file cannot be read
 * or parsed; malloc'd otherwise. */
static char *config_storage(const char *file)
{
    cfg_error_t err;
    xml_node_t *root = cfg_read_document(file, &err);
    if (!root) {
        fprintf(stderr, "weftctl: %s\n", err.msg);
        return NULL;
    }
    char *url = NULL;
    const char *names[] = {"storage", "database"};
    for (size_t i = 0; i < 2 && !url; i++) {
        xml_node_t *el = xml_child(root, NULL, names[i]);
        char *t = el ? xml_text(el) : NULL;
        if (t && *t)
            url = t;
        else
            free(t);
    }
    xml_free(root);
    return url ? url : xstrdup("var/weft.db");
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *sock = "var/router.ctl";
    const char *sm_sock = "var/sm.ctl";
    const char *db = NULL;         /* --storage URL or -d file */
    const char *config = NULL;     /* -c sm.xml */
    const char *etc = "etc";       /* -e DIR: check, status, reload */
    int json = 0;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            json = 1;
            i++;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "-s"))
            sock = argv[i + 1];
        else if (!strcmp(argv[i], "-S"))
            sm_sock = argv[i + 1];
        else if (!strcmp(argv[i], "-d") || !strcmp(argv[i], "--storage"))
            db = argv[i + 1];
        else if (!strcmp(argv[i], "-c"))
            config = argv[i + 1];
        else if (!strcmp(argv[i], "-e"))
            etc = argv[i + 1];
        else
            return usage();
        i += 2;
    }
    if (i >= argc)
        return usage();
    const char *cmd = argv[i];
    int nargs = argc - i - 1;
    char **args = argv + i + 1;

    /* Storage logs its errors; here they go to stderr, without the chatter. */
    log_open("weftctl", "stderr", LOG_LVL_WARN);
    char *from_config = NULL;
    int no_storage = !strcmp(cmd, "migrate") || !strcmp(cmd, "stats") || !strcmp(cmd, "sessions") ||
                     !strcmp(cmd, "check") || !strcmp(cmd, "status") || !strcmp(cmd, "reload");
    char etc_sm[4096];
    snprintf(etc_sm, sizeof etc_sm, "%s/sm.xml", etc);
    if (!db && !no_storage) {
        if (!config && access(etc_sm, F_OK) == 0)
            config = etc_sm;
        if (config && !(from_config = config_storage(config))) {
            log_close();
            return EXIT_FAIL;
        }
        db = from_config ? from_config : "var/weft.db";
    }
    int rc;
    if (!strcmp(cmd, "stats") && nargs == 0)
        rc = ask_socket("router", sock, "stats");
    else if (!strcmp(cmd, "adduser") && (nargs == 1 || nargs == 2))
        rc = cmd_set_password(db, args[0], nargs == 2 ? args[1] : NULL, 1);
    else if (!strcmp(cmd, "passwd") && (nargs == 1 || nargs == 2))
        rc = cmd_set_password(db, args[0], nargs == 2 ? args[1] : NULL, 0);
    else if (!strcmp(cmd, "deluser") && nargs == 1)
        rc = cmd_deluser(db, args[0]);
    else if (!strcmp(cmd, "listusers") && nargs == 0)
        rc = cmd_listusers(db);
    else if (!strcmp(cmd, "sessions") && nargs == 0)
        rc = ask_socket("sm", sm_sock, "sessions");
    else if (!strcmp(cmd, "user") && nargs >= 1) {
        rc = weftctl_user(db, json, nargs, args);
        if (rc == XIT_USAGE && !json)
            usage();
    } else if (!strcmp(cmd, "archive") && nargs >= 1) {
        rc = weftctl_archive(db, nargs, args);
        if (rc == XIT_USAGE)
            usage();
    } else if (!strcmp(cmd, "check") && nargs == 0)
        rc = weftctl_check(etc, json);
    else if (!strcmp(cmd, "status") && nargs == 0)
        rc = weftctl_status(etc, json);
    else if (!strcmp(cmd, "reload") && nargs == 0)
        rc = weftctl_reload(etc, json);
    else if (!strcmp(cmd, "import") && nargs >= 1 && strcmp(args[0], "-n") != 0)
        rc = weftctl_import(db, args, nargs, 0);
    else if (!strcmp(cmd, "import") && nargs >= 2)
        rc = weftctl_import(db, args + 1, nargs - 1, 1);
    else if (!strcmp(cmd, "export") && nargs <= 1)
        rc = weftctl_export(db, nargs ? args[0] : NULL);
    else if (!strcmp(cmd, "migrate") && nargs == 2)
        rc = cmd_migrate(args[0], args[1]);
    else
        rc = usage();
    free(from_config);
    log_close();
    return rc;
}
