/* File-system helpers that the log and the broker share. Each logs nothing: callers know what
 * the path means and say so. */
#ifndef SL_BASE_FS_H
#define SL_BASE_FS_H

#include <stddef.h>

/* mkdir -p. Returns 0 or SL_EIO (errno kept). */
int sl_fs_mkdirs(const char *path);

/* rm -rf of a directory tree. Returns 0 or SL_EIO. */
int sl_fs_remove_tree(const char *path);

/* Writes 'len' bytes to 'path' atomically (temporary file, fsync, rename, fsync of the
 * directory). Returns 0 or SL_EIO. */
int sl_fs_write_atomic(const char *path, const void *data, size_t len);

/* fsync of a directory, so a create, rename or unlink in it is durable. */
int sl_fs_sync_dir(const char *dir);

/* Writes all of 'len' bytes at the current position / at 'off', retrying short writes. */
int sl_fs_write_all(int fd, const void *data, size_t len);
int sl_fs_pread_all(int fd, void *data, size_t len, long long off);

#endif
