/* storage_sqlite_ckpt: WAL checkpoints in a thread of their own, beside the
 * connection that writes (storage_sqlite_ckpt.c says why). */
#ifndef WEFT_STORAGE_SQLITE_CKPT_H
#define WEFT_STORAGE_SQLITE_CKPT_H

#include <stddef.h>
#include <sqlite3.h>

typedef struct sql_ckpt sql_ckpt_t;

/* Starts the thread with its own connection to path and takes over
 * writer's automatic checkpoint; NULL with err set when it cannot. */
sql_ckpt_t *sql_ckpt_start(sqlite3 *writer, const char *path, char *err, size_t errlen);
/* Stops and joins the thread and closes its connection; before writer is
 * closed. NULL does nothing. */
void sql_ckpt_stop(sql_ckpt_t *c, sqlite3 *writer);

#endif
