/* storage_sqlite_vfs: the SQLite driver's VFS, the default one with the
 * WAL's writes gathered (storage_sqlite_vfs.c says how and why). */
#ifndef WEFT_STORAGE_SQLITE_VFS_H
#define WEFT_STORAGE_SQLITE_VFS_H

#include <sqlite3.h>

/* Registers the VFS the first time (thread-safe) and returns its name for
 * sqlite3_open_v2, or NULL when it cannot be made (then the default VFS). */
const char *sql_vfs_name(void);

#endif
