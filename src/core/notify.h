/*
 * notify: systemd's notification protocol (notify.c). Private to src/core.
 */
#ifndef PETREL_NOTIFY_H
#define PETREL_NOTIFY_H

#include <stdint.h>

/* Send "READY=1" and friends to systemd if $NOTIFY_SOCKET is set; 0 or -errno. */
int notify_send(const char *msg);
/* The watchdog period systemd set (WatchdogSec=, as $WATCHDOG_USEC) in microseconds; 0 when there
 * is none, or when $WATCHDOG_PID names another process. */
uint64_t notify_watchdog_usec(void);

#endif /* PETREL_NOTIFY_H */
