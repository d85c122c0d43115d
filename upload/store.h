/* store: the uploaded files and their slots, on disk in one directory
 * (upload.directory) and indexed in memory.
 *
 * Each slot is a file ID.meta (owner, size, content type, name, creation
 * time, state) written atomically (temporary file, then rename); its upload
 * is written to ID.part and renamed to ID.data once every byte arrived, so
 * a .data file is always whole. At start the directory is read back: the
 * slots and files survive a restart, .part files (uploads cut by the
 * restart) are removed and their slots wait for a new PUT. The ID is 128
 * random bits in hex and is the only thing of a URL that becomes a file
 * name: no path from a request ever reaches the file system. The directory
 * also holds 'secret', the key of the PUT tokens (HMAC-SHA256 of the ID),
 * made at first start (mode 0600). */
#ifndef WEFT_UPLOAD_STORE_H
#define WEFT_UPLOAD_STORE_H
#include <stddef.h>

#define STORE_ID_LEN 32
#define STORE_TOKEN_LEN 64

typedef struct store_file {
    char id[STORE_ID_LEN + 1];
    char *owner;          /* bare JID of the requester */
    char *name;           /* file name as requested (UTF-8) */
    char *ctype;          /* content type; "" when the request gave none (then the
                           * PUT's, or application/octet-stream, at the upload) */
    long long size;
    long long created;    /* wall-clock seconds (survives restarts) */
    int complete;         /* the .data file holds every byte */
    int uploading;        /* a PUT is writing its .part now */
} store_file_t;

/* Creates the directory if needed, reads or makes the secret, loads every
 * slot. 0, or -1 with err. */
int store_open(const char *dir, char *err, size_t errlen);
void store_close(void);

/* A new slot, its metadata written to disk. NULL (logged) when it could
 * not be written. */
store_file_t *store_slot_new(const char *owner, const char *name, const char *ctype, long long size);
store_file_t *store_find(const char *id);
/* Bytes an owner holds: stored files plus slots not yet expired. */
long long store_usage(const char *owner);
/* Wall-clock time at which the owner's first file or slot expires (0: none). */
long long store_first_expiry(const char *owner, double expire_after, double slot_timeout);

/* HMAC-SHA256(secret, id) in hex into out (STORE_TOKEN_LEN + 1 bytes). */
void store_token(const char *id, char *out);
/* 1 if token (NUL-terminated) is the token of id; constant time. */
int store_token_ok(const char *id, const char *token);

/* An upload of f: opens ID.part for writing (fd), marks f uploading. -1 on error. */
int store_put_begin(store_file_t *f);
/* The upload ended with every byte: ID.part becomes ID.data, f complete. 0/-1. */
int store_put_commit(store_file_t *f, int fd);
/* The upload failed: ID.part removed, the slot waits for another PUT. */
void store_put_abort(store_file_t *f, int fd);
/* Opens ID.data for reading; -1 on error. */
int store_open_data(const store_file_t *f);

/* Deletes files older than expire_after and slots not uploaded within
 * slot_timeout (both from their creation). Returns how many went. */
int store_expire(long long now, double expire_after, double slot_timeout);
size_t store_count(void);
/* Files stored, slots waiting, bytes of the stored files (metrics). */
void store_totals(size_t *complete, size_t *slots, long long *bytes);

#endif
