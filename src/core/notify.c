/*
 * notify: systemd's readiness protocol without libsystemd. One datagram of KEY=VALUE lines to
 * the unix socket named by $NOTIFY_SOCKET; nothing at all when the variable is unset, so the
 * same binary runs under systemd (Type=notify) and without it. Main thread.
 */
#include "core.h"

#include "petrel/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
        log_warn("NOTIFY_SOCKET '%s' is not a unix socket path", path);
        return -EINVAL;
    }
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0'; /* abstract socket: the exact length matters, not a NUL */
    }
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int rc = n < 0 ? -errno : 0;
    close(fd);
    if (rc < 0) {
        log_warn("cannot notify the service manager: %s", strerror(-rc));
    }
    return rc;
}
