/*
 * notify: systemd's readiness protocol without libsystemd. One datagram of KEY=VALUE lines to
 * the unix socket named by $NOTIFY_SOCKET; nothing at all when the variable is unset, so the
 * same binary runs under systemd (Type=notify) and without it. The main thread sends READY=1 and
 * STOPPING=1, the admin thread the watchdog's WATCHDOG=1; both only read the environment.
 */
#include "notify.h"

#include "petrel/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* A decimal number that is the whole of text; false for anything else. */
static bool
parse_u64(const char *text, uint64_t *out)
{
    if (text[0] < '0' || text[0] > '9') {
        return false; /* strtoumax() would take a sign or leading blanks */
    }
    char *end;
    errno = 0;
    uintmax_t v = strtoumax(text, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

uint64_t
notify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    uint64_t v, p;
    if (usec == NULL || usec[0] == '\0') {
        return 0;
    }
    if (!parse_u64(usec, &v) || v == 0) {
        log_warn("WATCHDOG_USEC '%s' is not a number of microseconds: no watchdog", usec);
        return 0;
    }
    if (pid != NULL && pid[0] != '\0') {
        if (!parse_u64(pid, &p)) {
            log_warn("WATCHDOG_PID '%s' is not a process id: no watchdog", pid);
            return 0;
        }
        if (p != (uint64_t)getpid()) {
            return 0; /* meant for another process */
        }
    }
    return v;
}
