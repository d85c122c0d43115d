/* weftctl.h: what weftctl.c shares with the files of its other commands
 * (weftctl_xep0227.c: import/export, with weftctl_pie_pep.c and
 * weftctl_pie_mam.c behind weftctl_pie.h; weftctl_admin.c: user, check,
 * status, reload; weftctl_archive.c: archive). */
#ifndef WEFT_WEFTCTL_H
#define WEFT_WEFTCTL_H
#include "storage.h"
#include "strbuf.h"

/* Exit statuses of the historical commands (adduser, passwd, ...). */
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_ACCOUNT 3

/* Exit statuses of `user ...`, `import`, `export`, `check` (docs/weftctl.md). */
#define XIT_OK 0
#define XIT_EXISTS 1      /* the account (or data) exists / does not exist */
#define XIT_USAGE 2
#define XIT_STORAGE 3     /* storage or system error; a failed check */

/* Opens the storage at url; may_create lets SQLite make a missing file.
 * NULL after saying why on stderr. */
storage_t *weftctl_open_db(const char *url, int may_create);
/* SCRAM-SHA-256 and SCRAM-SHA-1 key texts from a password, SASLprep'd as the
 * SASL layer does. 0, or -1 after saying why. */
int weftctl_make_keys(const char *password, strbuf_t *sha256, strbuf_t *sha1);

/* A password from arg, the terminal or a line of stdin; NULL after saying why. */
char *weftctl_get_password(const char *arg);
void weftctl_wipe_free(char *s);
struct jid;
/* An account's bare JID, prepared; 0, or -1 after saying why. */
int weftctl_parse_user(const char *s, struct jid *out);

/* weftctl_admin.c: `user`, `check`, `status`, `reload` (etc: the config
 * directory; json: machine-readable output). */
int weftctl_user(const char *url, int json, int argc, char **argv);
int weftctl_check(const char *etc, int json);
int weftctl_status(const char *etc, int json);
int weftctl_reload(const char *etc, int json);

/* weftctl_xep0227.c */
/* dry_run: everything is checked and written, then rolled back. */
int weftctl_import(const char *url, char **files, int nfiles, int dry_run);
int weftctl_export(const char *url, const char *file);

/* weftctl_archive.c: `archive delete JID` (docs/mam.md). */
int weftctl_archive(const char *url, int argc, char **argv);
#endif
