#include "base/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/err.h"

int sl_fs_mkdirs(const char *path) {
    char tmp[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp))
        return SL_EINVAL;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return SL_EIO;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return SL_EIO;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int sl_fs_remove_tree(const char *path) {
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return SL_EIO;
    return 0;
}

int sl_fs_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return SL_EIO;
    int rc = fsync(fd) == 0 ? 0 : SL_EIO;
    close(fd);
    return rc;
}

int sl_fs_write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return SL_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int sl_fs_pread_all(int fd, void *data, size_t len, long long off) {
    char *p = data;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return SL_EIO;
        }
        if (n == 0)
            return SL_ECORRUPT; /* the file is shorter than its index says */
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int sl_fs_write_atomic(const char *path, const void *data, size_t len) {
    char tmp[4200], dir[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return SL_EIO;
    int rc = sl_fs_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = SL_EIO;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = SL_EIO;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        return sl_fs_sync_dir(dir[0] ? dir : "/");
    }
    return sl_fs_sync_dir(".");
}
