/*
 * acceptor: the acceptor thread (acceptor.c). Private to src/core.
 */
#ifndef PETREL_ACCEPTOR_H
#define PETREL_ACCEPTOR_H

#include "core.h"

/* The thread's body (arg: the runtime). */
void *acceptor_main(void *arg);

#endif /* PETREL_ACCEPTOR_H */
