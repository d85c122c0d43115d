/* weftctl_admin: the daily commands in the manner of prosodyctl and
 * ejabberdctl (docs/weftctl.md):
 *   user list | add JID [PW] | del JID | passwd JID [PW]
 *   check     configs parse (each process's own -t), certificates readable,
 *             unexpired, matching the served domains and their keys, DNS SRV
 *             records of the served domains, listen ports free or ours
 *   status    which processes run (by their config file), router links,
 *             sm sessions
 *   reload    SIGHUP to the running processes (common/daemon.c reloads)
 * with --json for scripts. Exit status: 0 ok; 1 the account exists / does
 * not exist; 2 usage; 3 storage or system error, a failed check, a process
 * not running. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <arpa/nameser.h>
#include <resolv.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "jid.h"
#include "net.h"
#include "weftctl.h"
#include "xml.h"
#include "xml_stream.h"

static const char *const PROCS[] = {"router", "sm", "c2s", "s2s", "upload", "muc"};
#define NPROCS ((int)(sizeof PROCS / sizeof *PROCS))

/* ------------------------------------------------------------ output */

static void json_str(strbuf_t *o, const char *s)
{
    strbuf_putc(o, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            strbuf_printf(o, "\\%c", c);
        else if (c < 0x20)
            strbuf_printf(o, "\\u%04x", c);
        else
            strbuf_putc(o, (char)c);
    }
    strbuf_putc(o, '"');
}

/* One result of check/status/reload: text "LEVEL what detail" or a JSON object. */
typedef struct report {
    int json;
    strbuf_t out;
    int items;
    int fails, warns;
} report_t;

static void report_add(report_t *r, const char *level, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report_add(report_t *r, const char *level, const char *what, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (!strcmp(level, "fail"))
        r->fails++;
    else if (!strcmp(level, "warn"))
        r->warns++;
    if (r->json) {
        strbuf_puts(&r->out, r->items ? ",\n  {" : "  {");
        strbuf_puts(&r->out, "\"level\": ");
        json_str(&r->out, level);
        strbuf_puts(&r->out, ", \"check\": ");
        json_str(&r->out, what);
        strbuf_puts(&r->out, ", \"detail\": ");
        json_str(&r->out, detail);
        strbuf_putc(&r->out, '}');
    } else {
        strbuf_printf(&r->out, "%-4s %s: %s\n", level, what, detail);
    }
    r->items++;
}

static int report_end(report_t *r, const char *cmd)
{
    if (r->json) {
        printf("{\"command\": \"%s\", \"ok\": %s, \"failures\": %d, \"warnings\": %d, \"results\": [\n%s\n]}\n",
               cmd, r->fails ? "false" : "true", r->fails, r->warns, r->out.data ? r->out.data : "");
    } else {
        fputs(r->out.data ? r->out.data : "", stdout);
        printf("%s: %d failed, %d warnings\n", cmd, r->fails, r->warns);
    }
    strbuf_free(&r->out);
    return fflush(stdout) != 0 || r->fails ? XIT_STORAGE : XIT_OK;
}

/* ------------------------------------------------------------ user */

static int user_result(int json, const char *sub, int rc, const char *action, const char *bare,
                       const char *err)
{
    if (json) {
        strbuf_t o;
        strbuf_init(&o);
        strbuf_printf(&o, "{\"command\": \"user %s\", \"ok\": %s, \"user\": ", sub, rc ? "false" : "true");
        json_str(&o, bare);
        if (err) {
            strbuf_puts(&o, ", \"error\": ");
            json_str(&o, err);
        }
        strbuf_puts(&o, "}\n");
        fputs(o.data, stdout);
        strbuf_free(&o);
    } else if (rc == 0) {
        printf("%s %s\n", action, bare);
    } else if (err) {
        fprintf(stderr, "weftctl: %s: %s\n", bare, err);
    }
    return rc;
}

static int collect(const char *bare, void *arg)
{
    strbuf_t *o = arg;
    if (o->len > 1)
        strbuf_puts(o, ", ");
    json_str(o, bare);
    return 0;
}

static int print_line(const char *bare, void *arg)
{
    (void)arg;
    return puts(bare) < 0;
}

int weftctl_user(const char *url, int json, int argc, char **argv)
{
    if (argc < 1)
        return XIT_USAGE;
    const char *sub = argv[0];
    if (!strcmp(sub, "list")) {
        if (argc != 1)
            return XIT_USAGE;
        storage_t *st = weftctl_open_db(url, 0);
        if (!st)
            return XIT_STORAGE;
        strbuf_t o;
        strbuf_init(&o);
        strbuf_putc(&o, '[');
        int rc = json ? storage_user_list(st, collect, &o) : storage_user_list(st, print_line, NULL);
        storage_close(st);
        if (json && rc == 0)
            printf("{\"command\": \"user list\", \"ok\": true, \"users\": %s]}\n", o.data);
        strbuf_free(&o);
        return rc == 0 && fflush(stdout) == 0 ? XIT_OK : XIT_STORAGE;
    }
    int add = !strcmp(sub, "add"), del = !strcmp(sub, "del"), pw = !strcmp(sub, "passwd");
    if (!(add || del || pw) || argc < 2 || argc > (del ? 2 : 3))
        return XIT_USAGE;
    jid_t j;
    if (weftctl_parse_user(argv[1], &j) < 0)
        return XIT_USAGE;
    storage_t *st = weftctl_open_db(url, add);
    if (!st) {
        jid_clear(&j);
        return XIT_STORAGE;
    }
    int rc = XIT_STORAGE;
    const char *action = add ? "added" : del ? "deleted" : "password changed";
    int exists = storage_user_exists(st, j.bare);
    if (exists < 0) {
        rc = user_result(json, sub, XIT_STORAGE, action, j.bare, "storage error");
    } else if (exists == add) {
        rc = user_result(json, sub, XIT_EXISTS, action, j.bare, add ? "already exists" : "does not exist");
    } else if (del) {
        int r = storage_user_delete(st, j.bare);
        rc = user_result(json, sub, r == 0 ? XIT_OK : r > 0 ? XIT_EXISTS : XIT_STORAGE, action, j.bare,
                         r == 0 ? NULL : r > 0 ? "does not exist" : "storage error");
    } else {
        char *p = weftctl_get_password(argc == 3 ? argv[2] : NULL);
        strbuf_t k256, k1;
        strbuf_init(&k256);
        strbuf_init(&k1);
        if (!p || weftctl_make_keys(p, &k256, &k1) < 0) {
            rc = user_result(json, sub, XIT_USAGE, action, j.bare, "unusable password");
        } else {
            int r = add ? storage_user_create(st, j.bare, k256.data, k1.data)
                        : storage_user_set_keys(st, j.bare, k256.data, k1.data);
            rc = user_result(json, sub, r == 0 ? XIT_OK : r > 0 ? XIT_EXISTS : XIT_STORAGE, action, j.bare,
                             r == 0 ? NULL : r > 0 ? (add ? "already exists" : "does not exist")
                                               : "storage error");
        }
        weftctl_wipe_free(p);
        if (k256.data)
            OPENSSL_cleanse(k256.data, k256.cap);
        if (k1.data)
            OPENSSL_cleanse(k1.data, k1.cap);
        strbuf_free(&k256);
        strbuf_free(&k1);
    }
    storage_close(st);
    jid_clear(&j);
    return rc;
}

/* ------------------------------------------------------------ configs */

/* The parsed config file, or NULL (a missing or broken file is reported by
 * the check that needs it). */
static xml_node_t *load_config(const char *path)
{
    cfg_error_t err;
    return cfg_read_document(path, &err);
}

/* Text of a dotted option path ("tls.certificate"), or def; malloc'd. */
static char *opt(const xml_node_t *root, const char *path, const char *def)
{
    char *p = xstrdup(path);
    const xml_node_t *el = root;
    for (char *tok = strtok(p, "."); tok && el; tok = strtok(NULL, "."))
        el = xml_child(el, NULL, tok);
    free(p);
    if (!el)
        return def ? xstrdup(def) : NULL;
    return xml_text(el);
}

static void config_path(const char *etc, const char *proc, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.xml", etc, proc);
}

/* The process binary: beside weftctl (installed), in the build tree
 * (../router/weft-router), or on PATH. */
static int find_binary(const char *proc, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        snprintf(out, cap, "%s/weft-%s", self, proc);
        if (access(out, X_OK) == 0)
            return 0;
        snprintf(out, cap, "%s/../%s/weft-%s", self, proc, proc);
        if (access(out, X_OK) == 0)
            return 0;
    }
    snprintf(out, cap, "weft-%s", proc);
    return 0;
}

/* ------------------------------------------------------------ check */

static void check_config(report_t *r, const char *proc, const char *cfg)
{
    char bin[PATH_MAX + 64], cmd[2 * PATH_MAX + 128];
    find_binary(proc, bin, sizeof bin);
    snprintf(cmd, sizeof cmd, "'%s' -t -c '%s' 2>&1", bin, cfg);
    FILE *p = popen(cmd, "r");
    char line[1024] = "";
    strbuf_t all;
    strbuf_init(&all);
    while (p && fgets(line, sizeof line, p))
        strbuf_puts(&all, line);
    int st = p ? pclose(p) : -1;
    while (all.len && all.data[all.len - 1] == '\n')
        all.data[--all.len] = '\0';
    if (st == 0)
        report_add(r, "ok", "config", "%s parses (weft-%s -t)", cfg, proc);
    else
        report_add(r, "fail", "config", "%s: %s", cfg, all.data ? all.data : "weft-%s -t failed");
    strbuf_free(&all);
}

/* Certificate of a process: readable, key matching, dates, names. */
static void check_cert(report_t *r, const char *proc, const char *crt, const char *key,
                       char **domains, size_t ndomains)
{
    FILE *f = fopen(crt, "r");
    if (!f) {
        report_add(r, "fail", "certificate", "%s %s: %s", proc, crt, strerror(errno));
        return;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        report_add(r, "fail", "certificate", "%s %s: no PEM certificate in it", proc, crt);
        return;
    }
    EVP_PKEY *pk = NULL;
    if ((f = fopen(key, "r"))) {
        pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (!pk)
        report_add(r, "fail", "certificate", "%s key %s: %s", proc, key,
                   errno ? strerror(errno) : "no PEM private key in it");
    else if (X509_check_private_key(x, pk) != 1)
        report_add(r, "fail", "certificate", "%s: key %s does not belong to %s", proc, key, crt);
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) && (days < 0 || secs < 0))
        report_add(r, "fail", "certificate", "%s %s expired %d days ago", proc, crt, -days);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        report_add(r, "fail", "certificate", "%s %s is not valid yet", proc, crt);
    else if (days < 14)
        report_add(r, "warn", "certificate", "%s %s expires in %d days", proc, crt, days);
    else
        report_add(r, "ok", "certificate", "%s %s valid for %d more days", proc, crt, days);
    for (size_t i = 0; i < ndomains; i++) {
        if (X509_check_host(x, domains[i], 0, 0, NULL) == 1)
            report_add(r, "ok", "certificate", "%s %s names %s", proc, crt, domains[i]);
        else
            report_add(r, "fail", "certificate", "%s %s does not name the served domain %s", proc, crt,
                       domains[i]);
    }
    EVP_PKEY_free(pk);
    X509_free(x);
}

/* SRV records of a served domain, through the system resolver. */
static void check_srv(report_t *r, const char *domain)
{
    const char *svc[] = {"_xmpp-client._tcp", "_xmpp-server._tcp"};
    for (int i = 0; i < 2; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s.%s", svc[i], domain);
        unsigned char ans[4096];
        int n = res_query(name, ns_c_in, ns_t_srv, ans, sizeof ans);
        ns_msg msg;
        if (n < 0 || ns_initparse(ans, n, &msg) < 0 || ns_msg_count(msg, ns_s_an) == 0) {
            report_add(r, "warn", "dns", "%s: no SRV record (%s): clients and servers fall back to "
                                         "%s:%s", name, hstrerror(h_errno), domain, i ? "5269" : "5222");
            continue;
        }
        strbuf_t sb;
        strbuf_init(&sb);
        for (int k = 0; k < ns_msg_count(msg, ns_s_an); k++) {
            ns_rr rr;
            if (ns_parserr(&msg, ns_s_an, k, &rr) < 0 || ns_rr_type(rr) != ns_t_srv)
                continue;
            const unsigned char *d = ns_rr_rdata(rr);
            char target[NS_MAXDNAME];
            if (ns_rr_rdlen(rr) < 7 ||
                dn_expand(ns_msg_base(msg), ns_msg_end(msg), d + 6, target, sizeof target) < 0)
                continue;
            strbuf_printf(&sb, "%s%s:%u", sb.len ? " " : "", target, (unsigned)ns_get16(d + 4));
        }
        report_add(r, "ok", "dns", "%s: %s", name, sb.data ? sb.data : "");
        strbuf_free(&sb);
    }
}

/* Each listen address: bindable (free), or taken by a weft process running
 * with this config (ours), else taken by something else. */
static void check_ports(report_t *r, const char *proc, const char *addrs, int running)
{
    char *copy = xstrdup(addrs);
    for (char *a = strtok(copy, " \t\n"); a; a = strtok(NULL, " \t\n")) {
        net_addr_t na;
        if (net_addr_parse(a, 0, &na) < 0 || na.is_unix) {
            if (na.is_unix)
                continue;
            report_add(r, "fail", "port", "%s: '%s' is not an address", proc, a);
            continue;
        }
        int fd = socket(na.ss.ss_family, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&na.ss, na.len) == 0)
            report_add(r, running ? "fail" : "ok", "port", "%s %s %s", proc, a,
                       running ? "is not listening though the process runs" : "is free");
        else if (errno == EADDRINUSE)
            report_add(r, running ? "ok" : "fail", "port", "%s %s %s", proc, a,
                       running ? "is listening" : "is taken by another program");
        else if (errno == EADDRNOTAVAIL)
            report_add(r, "fail", "port", "%s %s: no such address on this host", proc, a);
        else
            report_add(r, "warn", "port", "%s %s: %s", proc, a, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    free(copy);
}

/* ------------------------------------------------------------ processes */

/* Pids of weft-PROC processes whose -c names the same file as cfg (taken
 * from each process's own working directory). At most max. */
static int find_pids(const char *proc, const char *cfg, pid_t *pids, int max)
{
    char want[PATH_MAX];
    if (!realpath(cfg, want))
        return 0;
    char exe_name[64];
    snprintf(exe_name, sizeof exe_name, "weft-%s", proc);
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], exe[PATH_MAX];
        snprintf(path, sizeof path, "/proc/%ld/exe", pid);
        ssize_t l = readlink(path, exe, sizeof exe - 1);
        if (l <= 0)
            continue;
        exe[l] = '\0';
        const char *base = strrchr(exe, '/');
        base = base ? base + 1 : exe;
        if (strcmp(base, exe_name) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char args[8192];
        size_t got = fread(args, 1, sizeof args - 1, f);
        fclose(f);
        args[got] = '\0';
        const char *c = NULL;
        for (size_t i = 0; i < got; i += strlen(args + i) + 1)
            if (!strcmp(args + i, "-c") && i + 3 < got)
                c = args + i + 3;
        char full[2 * PATH_MAX + 80], real[PATH_MAX];
        if (!c)
            continue;
        if (c[0] == '/')
            snprintf(full, sizeof full, "%s", c);
        else
            snprintf(full, sizeof full, "/proc/%ld/cwd/%s", pid, c);
        if (realpath(full, real) && !strcmp(real, want))
            pids[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

/* One command line to a control socket; the answer into out. 0 or -1. */
static int ctl_ask(const char *path, const char *cmd, strbuf_t *out)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (!path || !*path || strlen(path) >= sizeof sun.sun_path)
        return -1;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char line[128];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    int rc = write(fd, line, (size_t)n) == n ? 0 : -1;
    char buf[16384];
    ssize_t r;
    while (rc == 0 && (r = read(fd, buf, sizeof buf)) > 0)
        strbuf_append(out, buf, (size_t)r);
    close(fd);
    return rc;
}

static int count_lines(const char *s, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += !strncmp(p, prefix, pl);
    return n;
}

/* ------------------------------------------------------------ commands */

static char **split_domains(const char *s, size_t *n)
{
    char *copy = xstrdup(s ? s : "");
    char **v = NULL;
    *n = 0;
    for (char *t = strtok(copy, " \t\n,"); t; t = strtok(NULL, " \t\n,")) {
        v = xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = xstrdup(t);
    }
    free(copy);
    return v;
}

static void free_domains(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int weftctl_check(const char *etc, int json)
{
    report_t r = {.json = json};
    strbuf_init(&r.out);
    int any = 0;
    for (int i = 0; i < NPROCS; i++) {
        char cfg[PATH_MAX];
        config_path(etc, PROCS[i], cfg, sizeof cfg);
        if (access(cfg, F_OK) < 0)
            continue;
        any = 1;
        check_config(&r, PROCS[i], cfg);
        xml_node_t *root = load_config(cfg);
        if (!root)
            continue;
        pid_t pids[16];
        int running = find_pids(PROCS[i], cfg, pids, 16);
        const char *proc = PROCS[i];
        if (!strcmp(proc, "c2s") || !strcmp(proc, "s2s")) {
            int c2s = !strcmp(proc, "c2s");
            char *doms = opt(root, c2s ? "domain" : "domains", "localhost");
            size_t nd;
            char **dv = split_domains(doms, &nd);
            char *crt = opt(root, "tls.certificate", NULL), *key = opt(root, "tls.key", NULL);
            if (crt && *crt)
                check_cert(&r, proc, crt, key ? key : "", dv, nd);
            if (c2s)
                for (size_t k = 0; k < nd; k++)
                    check_srv(&r, dv[k]);
            const char *l[] = {"listen.starttls", "listen.tls"};
            for (int k = 0; k < 2; k++) {
                char *a = opt(root, l[k], c2s ? (k ? "127.0.0.1:5223 [::1]:5223" : "127.0.0.1:5222 [::1]:5222")
                                              : (k ? "" : "127.0.0.1:5269"));
                check_ports(&r, proc, a, running);
                free(a);
            }
            free(crt);
            free(key);
            free(doms);
            free_domains(dv, nd);
        } else if (!strcmp(proc, "router")) {
            char *a = opt(root, "listen", "127.0.0.1:5347");
            check_ports(&r, proc, a, running);
            free(a);
        } else if (!strcmp(proc, "upload")) {
            char *a = opt(root, "http.listen", "127.0.0.1:5281");
            check_ports(&r, proc, a, running);
            free(a);
        }
        xml_free(root);
    }
    if (!any)
        report_add(&r, "fail", "config", "no router.xml, sm.xml, c2s.xml or s2s.xml in %s", etc);
    return report_end(&r, "check");
}

int weftctl_status(const char *etc, int json)
{
    report_t r = {.json = json};
    strbuf_init(&r.out);
    for (int i = 0; i < NPROCS; i++) {
        char cfg[PATH_MAX];
        config_path(etc, PROCS[i], cfg, sizeof cfg);
        if (access(cfg, F_OK) < 0)
            continue;
        pid_t pids[16];
        int n = find_pids(PROCS[i], cfg, pids, 16);
        strbuf_t pl;
        strbuf_init(&pl);
        for (int k = 0; k < n; k++)
            strbuf_printf(&pl, "%s%d", k ? "," : "", (int)pids[k]);
        if (!n) {
            report_add(&r, "fail", PROCS[i], "not running (%s)", cfg);
        } else {
            /* What the process itself says, where it has a control socket. */
            xml_node_t *root = load_config(cfg);
            char *ctl = root ? opt(root, "control", !strcmp(PROCS[i], "router") ? "var/router.ctl" : "") : NULL;
            strbuf_t ans;
            strbuf_init(&ans);
            if (!strcmp(PROCS[i], "router") && ctl_ask(ctl, "stats", &ans) == 0)
                report_add(&r, "ok", PROCS[i], "running pid=%s links=%d names=%d", pl.data,
                           count_lines(ans.data, "link "), count_lines(ans.data, "name="));
            else if (!strcmp(PROCS[i], "sm") && ctl_ask(ctl, "sessions", &ans) == 0)
                report_add(&r, "ok", PROCS[i], "running pid=%s sessions=%d", pl.data,
                           count_lines(ans.data, "jid="));
            else
                report_add(&r, "ok", PROCS[i], "running pid=%s", pl.data);
            strbuf_free(&ans);
            free(ctl);
            xml_free(root);
        }
        strbuf_free(&pl);
    }
    if (!r.items)
        report_add(&r, "fail", "config", "no router.xml, sm.xml, c2s.xml or s2s.xml in %s", etc);
    return report_end(&r, "status");
}

int weftctl_reload(const char *etc, int json)
{
    report_t r = {.json = json};
    strbuf_init(&r.out);
    int sent = 0;
    for (int i = 0; i < NPROCS; i++) {
        char cfg[PATH_MAX];
        config_path(etc, PROCS[i], cfg, sizeof cfg);
        if (access(cfg, F_OK) < 0)
            continue;
        pid_t pids[16];
        int n = find_pids(PROCS[i], cfg, pids, 16);
        for (int k = 0; k < n; k++) {
            if (kill(pids[k], SIGHUP) == 0) {
                report_add(&r, "ok", PROCS[i], "SIGHUP sent to pid %d", (int)pids[k]);
                sent++;
            } else {
                report_add(&r, "fail", PROCS[i], "pid %d: %s", (int)pids[k], strerror(errno));
            }
        }
        if (!n)
            report_add(&r, "warn", PROCS[i], "not running: nothing to reload");
    }
    if (!sent)
        report_add(&r, "fail", "reload", "no weft process runs with the configs in %s", etc);
    return report_end(&r, "reload");
}
