/*
 * admin: the admin thread (admin.c). Private to src/core.
 */
#ifndef PETREL_ADMIN_H
#define PETREL_ADMIN_H

#include "core.h"

/* Open the admin port's listener. Main, at start-up. 0, or -errno with a message in err. */
int admin_listen(struct runtime *rt, char *err, size_t errlen);
/* The thread's body (arg: the runtime). */
void *admin_main(void *arg);
/* The process-wide values rendered with the registry: fills out[], returns how many. Any
 * RCU-registered thread. */
size_t admin_globals(struct runtime *rt, struct metric_value *out, size_t cap);

#endif /* PETREL_ADMIN_H */
