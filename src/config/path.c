/* config: whether a file an option names could be written (config_path_writable). */
#include "petrel/config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
config_path_writable(const char *path, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(why, whylen, "%s", strerror(EISDIR));
            return -EISDIR;
        }
        if (access(path, W_OK) < 0) {
            int rc = -errno;
            snprintf(why, whylen, "%s", strerror(-rc));
            return rc;
        }
        return 0;
    }
    if (errno != ENOENT) {
        int rc = -errno;
        snprintf(why, whylen, "%s", strerror(-rc));
        return rc;
    }
    /* Absent: opening it creates it in its directory. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    int rc = 0;
    if (stat(dir, &st) < 0) {
        rc = -errno;
    } else if (!S_ISDIR(st.st_mode)) {
        rc = -ENOTDIR;
    } else if (access(dir, W_OK | X_OK) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        snprintf(why, whylen, "%s: %s", strerror(-rc), dir);
    }
    return rc;
}
