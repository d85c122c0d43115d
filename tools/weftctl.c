/* weftctl: the admin command line (docs/weftctl.md).
 *
 *   weftctl [-s SOCKET] stats             link counters and name instances (router)
 *   weftctl [-S SOCKET] sessions          online sessions (sm)
 *   weftctl [-d DB] adduser JID [PASSWORD]
 *   weftctl [-d DB] passwd JID [PASSWORD]
 *   weftctl [-d DB] deluser JID
 *   weftctl [-d DB] listusers
 *
 * stats asks the router over its control socket (router.xml <control>,
 * default var/router.ctl); sessions asks the sm over its admin socket
 * (sm.xml <control>, default var/sm.ctl). The user commands open the sm's SQLite database
 * directly (sm.xml <database>, default var/weft.db), so they run on the sm's
 * host, as the user the sm runs as; they work whether or not the sm is
 * running. Passwords become SCRAM-SHA-256 and SCRAM-SHA-1 keys (4096
 * iterations) after the SASLprep the SASL layer applies; a password is never
 * stored, printed or logged, and is wiped from memory after use.
 *
 * Exit status: 0 success; 1 failure (router or sm unreachable, database
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
#include "strbuf.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_ACCOUNT 3

#define SCRAM_ITERATIONS 4096
#define PASSWORD_MAX 1024

static int usage(void)
{
    fprintf(stderr,
            "usage: weftctl [-s router-control-socket] [-S sm-control-socket] [-d database] command\n"
            "commands:\n"
            "  stats                      router link counters and names\n"
            "  adduser JID [PASSWORD]     create an account\n"
            "  passwd JID [PASSWORD]      set an account's password\n"
            "  deluser JID                remove an account and all its data\n"
            "  listusers                  list accounts\n"
            "  sessions                   online sessions (sm)\n"
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

static void wipe_free(char *s)
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
static char *get_password(const char *arg)
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
        wipe_free(pw);
        pw = NULL;
    }
    wipe_free(again);
    return pw;
}

/* Derives the stored key texts from a password, prepared as the SASL layer
 * prepares it. 0, or -1 after saying why (keys then empty). */
static int make_keys(const char *password, strbuf_t *sha256, strbuf_t *sha1)
{
    if (!*password) {
        fprintf(stderr, "weftctl: empty password\n");
        return -1;
    }
    char *prepped = sasl_saslprep(password, 0);
    if (!prepped || !*prepped) {
        fprintf(stderr, "weftctl: the password is not valid UTF-8 or has characters "
                        "SASLprep (RFC 4013) forbids\n");
        wipe_free(prepped);
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
    wipe_free(prepped);
    if (rc < 0)
        fprintf(stderr, "weftctl: cannot derive keys (no randomness?)\n");
    return rc;
}

/* ------------------------------------------------------------ accounts */

/* Prepares a user's JID (bare, with a node) into *out; 0 or -1 after saying why. */
static int parse_user(const char *s, jid_t *out)
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

/* Opens the database; only adduser may create it (first setup before the sm
 * ever ran): elsewhere a missing file is a wrong path, not an empty server. */
static storage_t *open_db(const char *path, int may_create)
{
    if (!may_create && access(path, F_OK) < 0) {
        fprintf(stderr, "weftctl: no database at %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char err[512];
    storage_t *st = storage_open(path, err, sizeof err);
    if (!st)
        fprintf(stderr, "weftctl: cannot open the database: %s\n", err);
    return st;
}

/* adduser (create = 1) and passwd (create = 0). */
static int cmd_set_password(const char *db, const char *user, const char *pw_arg, int create)
{
    jid_t j;
    if (parse_user(user, &j) < 0)
        return EXIT_USAGE;
    storage_t *st = open_db(db, create);
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
    pw = get_password(pw_arg);
    if (!pw || make_keys(pw, &k256, &k1) < 0) {
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
    wipe_free(pw);
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
    if (parse_user(user, &j) < 0)
        return EXIT_USAGE;
    storage_t *st = open_db(db, 0);
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
    storage_t *st = open_db(db, 0);
    if (!st)
        return EXIT_FAIL;
    int rc = storage_user_list(st, print_user, NULL);
    storage_close(st);
    if (fflush(stdout) != 0)
        rc = -1;
    return rc == 0 ? 0 : EXIT_FAIL;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *sock = "var/router.ctl";
    const char *sm_sock = "var/sm.ctl";
    const char *db = "var/weft.db";
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "-s"))
            sock = argv[i + 1];
        else if (!strcmp(argv[i], "-S"))
            sm_sock = argv[i + 1];
        else if (!strcmp(argv[i], "-d"))
            db = argv[i + 1];
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
    else
        rc = usage();
    log_close();
    return rc;
}
