/* store: slots and uploaded files on disk (see store.h for the layout and
 * its invariants). The index is an array scanned linearly: a slot request,
 * a PUT or a GET looks at every entry, which stays cheap for the tens of
 * thousands of files a service of one host keeps for a week.
 *
 * Disk work runs on the loop (small metadata writes, renames, unlinks):
 * local-file operations of a few microseconds, like the body writes of
 * http_conn.c. */
#include "store.h"
#include "comp_proto.h"
#include "log.h"
#include "strbuf.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_SECRET_BYTES 32

static char *dir_;
static unsigned char secret_[STORE_SECRET_BYTES];
static store_file_t **files;
static size_t nfiles, capfiles;

static void path_of(strbuf_t *sb, const char *id, const char *ext)
{
    strbuf_reset(sb);
    strbuf_printf(sb, "%s/%s.%s", dir_, id, ext);
}

static int is_id(const char *s, size_t n)
{
    if (n != STORE_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void file_free(store_file_t *f)
{
    free(f->owner);
    free(f->name);
    free(f->ctype);
    free(f);
}

static void index_add(store_file_t *f)
{
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 64;
        files = xrealloc(files, capfiles * sizeof *files);
    }
    files[nfiles++] = f;
}

/* Percent-encodes what could break a metadata line (and '%' itself). */
static void meta_escape(strbuf_t *sb, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == '%')
            strbuf_printf(sb, "%%%02X", c);
        else
            strbuf_putc(sb, (char)c);
    }
}

static char *meta_unescape(const char *s)
{
    strbuf_t sb;
    strbuf_init(&sb);
    for (; *s; s++) {
        unsigned int c;
        if (*s == '%' && sscanf(s + 1, "%2X", &c) == 1 && c) {
            strbuf_putc(&sb, (char)c);
            s += 2;
        } else {
            strbuf_putc(&sb, *s);
        }
    }
    return strbuf_steal(&sb);
}

/* Writes ID.meta atomically. 0 / -1 (logged). */
static int meta_write(const store_file_t *f)
{
    strbuf_t body, tmp, path;
    strbuf_init(&body);
    strbuf_init(&tmp);
    strbuf_init(&path);
    strbuf_puts(&body, "owner ");
    meta_escape(&body, f->owner);
    strbuf_puts(&body, "\nname ");
    meta_escape(&body, f->name);
    strbuf_puts(&body, "\ntype ");
    meta_escape(&body, f->ctype);
    strbuf_printf(&body, "\nsize %lld\ncreated %lld\nstate %s\n", f->size, f->created,
                  f->complete ? "complete" : "slot");
    path_of(&tmp, f->id, "meta.tmp");
    path_of(&path, f->id, "meta");
    int rc = -1;
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd >= 0) {
        ssize_t w = write(fd, body.data, body.len);
        if (close(fd) == 0 && w == (ssize_t)body.len && rename(tmp.data, path.data) == 0)
            rc = 0;
    }
    if (rc < 0) {
        log_error("event=store-write id=%s path=%s error=\"%s\"", f->id, path.data, strerror(errno));
        unlink(tmp.data);
    }
    strbuf_free(&body);
    strbuf_free(&tmp);
    strbuf_free(&path);
    return rc;
}

/* Reads ID.meta; NULL if it is unreadable or incomplete (logged). */
static store_file_t *meta_read(const char *id)
{
    strbuf_t path;
    strbuf_init(&path);
    path_of(&path, id, "meta");
    FILE *fp = fopen(path.data, "re");
    store_file_t *f = xcalloc(1, sizeof *f);
    memcpy(f->id, id, STORE_ID_LEN);
    f->size = -1;
    f->created = -1;
    int state = -1;
    char line[4096];
    while (fp && fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        char *v = strchr(line, ' ');
        if (!v)
            continue;
        *v++ = '\0';
        if (!strcmp(line, "owner") && !f->owner)
            f->owner = meta_unescape(v);
        else if (!strcmp(line, "name") && !f->name)
            f->name = meta_unescape(v);
        else if (!strcmp(line, "type") && !f->ctype)
            f->ctype = meta_unescape(v);
        else if (!strcmp(line, "size"))
            f->size = strtoll(v, NULL, 10);
        else if (!strcmp(line, "created"))
            f->created = strtoll(v, NULL, 10);
        else if (!strcmp(line, "state"))
            state = !strcmp(v, "complete");
    }
    if (fp)
        fclose(fp);
    if (!f->owner || !f->name || !f->ctype || f->size < 0 || f->created < 0 || state < 0) {
        log_warn("event=store-load id=%s reason=bad-metadata path=%s", id, path.data);
        file_free(f);
        f = NULL;
    } else {
        f->complete = state;
    }
    strbuf_free(&path);
    return f;
}

static int secret_load(char *err, size_t errlen)
{
    strbuf_t path;
    strbuf_init(&path);
    strbuf_printf(&path, "%s/secret", dir_);
    int rc = -1;
    int fd = open(path.data, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        rc = read(fd, secret_, sizeof secret_) == (ssize_t)sizeof secret_ ? 0 : -1;
        close(fd);
        if (rc < 0)
            snprintf(err, errlen, "secret %s: shorter than %d bytes", path.data, STORE_SECRET_BYTES);
    } else if (errno == ENOENT) {
        char hex[2 * STORE_SECRET_BYTES + 1];
        comp_proto_random_hex(hex, STORE_SECRET_BYTES);
        for (int i = 0; i < STORE_SECRET_BYTES; i++) {
            unsigned int b;
            sscanf(hex + 2 * i, "%2x", &b);
            secret_[i] = (unsigned char)b;
        }
        fd = open(path.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 && write(fd, secret_, sizeof secret_) == (ssize_t)sizeof secret_ && close(fd) == 0)
            rc = 0;
        else
            snprintf(err, errlen, "secret %s: %s", path.data, strerror(errno));
    } else {
        snprintf(err, errlen, "secret %s: %s", path.data, strerror(errno));
    }
    strbuf_free(&path);
    return rc;
}

int store_open(const char *dir, char *err, size_t errlen)
{
    dir_ = xstrdup(dir);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (secret_load(err, errlen) < 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "directory %s: %s", dir, strerror(errno));
        return -1;
    }
    strbuf_t p;
    strbuf_init(&p);
    struct dirent *e;
    size_t parts = 0;
    while ((e = readdir(d))) {
        const char *dot = strchr(e->d_name, '.');
        if (!dot || !is_id(e->d_name, (size_t)(dot - e->d_name)))
            continue;
        char id[STORE_ID_LEN + 1];
        memcpy(id, e->d_name, STORE_ID_LEN);
        id[STORE_ID_LEN] = '\0';
        if (!strcmp(dot, ".part") || !strcmp(dot, ".meta.tmp")) {
            /* An upload (or a metadata write) cut by the stop. */
            path_of(&p, id, dot + 1);
            unlink(p.data);
            parts++;
        } else if (!strcmp(dot, ".meta")) {
            store_file_t *f = meta_read(id);
            if (!f)
                continue;
            struct stat st;
            path_of(&p, id, "data");
            if (f->complete && (stat(p.data, &st) < 0 || st.st_size != f->size)) {
                log_warn("event=store-load id=%s reason=data-missing", id);
                file_free(f);
                continue;
            }
            index_add(f);
        }
    }
    closedir(d);
    strbuf_free(&p);
    log_notice("event=store-open directory=%s files=%zu cut-uploads=%zu", dir, nfiles, parts);
    return 0;
}

void store_close(void)
{
    for (size_t i = 0; i < nfiles; i++)
        file_free(files[i]);
    free(files);
    files = NULL;
    nfiles = capfiles = 0;
    free(dir_);
    dir_ = NULL;
    OPENSSL_cleanse(secret_, sizeof secret_);
}

store_file_t *store_slot_new(const char *owner, const char *name, const char *ctype, long long size)
{
    store_file_t *f = xcalloc(1, sizeof *f);
    comp_proto_random_hex(f->id, STORE_ID_LEN / 2);
    f->owner = xstrdup(owner);
    f->name = xstrdup(name);
    f->ctype = xstrdup(ctype);
    f->size = size;
    f->created = (long long)time(NULL);
    if (meta_write(f) < 0) {
        file_free(f);
        return NULL;
    }
    index_add(f);
    return f;
}

store_file_t *store_find(const char *id)
{
    if (!is_id(id, strlen(id)))
        return NULL;
    for (size_t i = 0; i < nfiles; i++)
        if (!memcmp(files[i]->id, id, STORE_ID_LEN))
            return files[i];
    return NULL;
}

long long store_usage(const char *owner)
{
    long long sum = 0;
    for (size_t i = 0; i < nfiles; i++)
        if (!strcmp(files[i]->owner, owner))
            sum += files[i]->size;
    return sum;
}

static long long expiry_of(const store_file_t *f, double expire_after, double slot_timeout)
{
    return f->created + (long long)(f->complete || f->uploading ? expire_after : slot_timeout);
}

long long store_first_expiry(const char *owner, double expire_after, double slot_timeout)
{
    long long first = 0;
    for (size_t i = 0; i < nfiles; i++) {
        if (strcmp(files[i]->owner, owner))
            continue;
        long long t = expiry_of(files[i], expire_after, slot_timeout);
        if (!first || t < first)
            first = t;
    }
    return first;
}

void store_token(const char *id, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret_, sizeof secret_, (const unsigned char *)id, STORE_ID_LEN, mac, &len);
    for (unsigned int i = 0; i < len && i < STORE_TOKEN_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    out[STORE_TOKEN_LEN] = '\0';
}

int store_token_ok(const char *id, const char *token)
{
    char want[STORE_TOKEN_LEN + 1];
    store_token(id, want);
    if (strlen(token) != STORE_TOKEN_LEN)
        return 0;
    return CRYPTO_memcmp(want, token, STORE_TOKEN_LEN) == 0;
}

int store_put_begin(store_file_t *f)
{
    strbuf_t p;
    strbuf_init(&p);
    path_of(&p, f->id, "part");
    int fd = open(p.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        log_error("event=store-write id=%s path=%s error=\"%s\"", f->id, p.data, strerror(errno));
    else
        f->uploading = 1;
    strbuf_free(&p);
    return fd;
}

int store_put_commit(store_file_t *f, int fd)
{
    strbuf_t part, data;
    strbuf_init(&part);
    strbuf_init(&data);
    path_of(&part, f->id, "part");
    path_of(&data, f->id, "data");
    int rc = close(fd) == 0 && rename(part.data, data.data) == 0 ? 0 : -1;
    f->uploading = 0;
    if (rc == 0) {
        f->complete = 1;
        if (meta_write(f) < 0) {
            f->complete = 0;
            unlink(data.data);
            rc = -1;
        }
    } else {
        log_error("event=store-write id=%s path=%s error=\"%s\"", f->id, data.data, strerror(errno));
        unlink(part.data);
    }
    strbuf_free(&part);
    strbuf_free(&data);
    return rc;
}

void store_put_abort(store_file_t *f, int fd)
{
    strbuf_t p;
    strbuf_init(&p);
    path_of(&p, f->id, "part");
    close(fd);
    unlink(p.data);
    f->uploading = 0;
    strbuf_free(&p);
}

int store_open_data(const store_file_t *f)
{
    strbuf_t p;
    strbuf_init(&p);
    path_of(&p, f->id, "data");
    int fd = open(p.data, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    strbuf_free(&p);
    return fd;
}

int store_expire(long long now, double expire_after, double slot_timeout)
{
    int gone = 0;
    strbuf_t p;
    strbuf_init(&p);
    for (size_t i = 0; i < nfiles;) {
        store_file_t *f = files[i];
        /* An upload in progress keeps its slot until it ends (its own
         * deadline bounds it). */
        if (f->uploading || expiry_of(f, expire_after, slot_timeout) > now) {
            i++;
            continue;
        }
        path_of(&p, f->id, "data");
        unlink(p.data);
        path_of(&p, f->id, "meta");
        unlink(p.data);
        log_info("event=expired id=%s owner=%s size=%lld state=%s", f->id, f->owner, f->size,
                 f->complete ? "complete" : "slot");
        file_free(f);
        files[i] = files[--nfiles];
        gone++;
    }
    strbuf_free(&p);
    return gone;
}

size_t store_count(void)
{
    return nfiles;
}

void store_totals(size_t *complete, size_t *slots, long long *bytes)
{
    for (size_t i = 0; i < nfiles; i++) {
        if (files[i]->complete) {
            (*complete)++;
            *bytes += files[i]->size;
        } else {
            (*slots)++;
        }
    }
}
