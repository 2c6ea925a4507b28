/*
 * mesh: the forwarding mesh between workers (mesh.c). Private to src/core.
 */
#ifndef PETREL_MESH_H
#define PETREL_MESH_H

#include "core.h"

/* Build the mesh of rings between every ordered pair of workers (all initialised). Main, before
 * the workers start. */
int workers_connect(struct runtime *rt);
/* After every worker stopped: free messages left in the mesh. Main. */
void workers_free_mesh(struct runtime *rt);

/* The rest runs on a worker, for its own side of the mesh. */
/* Take messages from the peers: requests to execute here, replies for our connections; a
 * bounded cost per iteration, costly ones that may wait set aside for later iterations. */
void mesh_drain(struct worker *w);
/* Publish what this iteration staged for each peer, and wake the peers that sleep. */
void mesh_flush(struct worker *w);
/* True if a peer announced messages or the inbox has something: the sleep protocol's
 * re-check. */
bool mesh_inbound_pending(struct worker *w);
/* True while an outbox has a backlog, messages wait set aside, or peers' messages wait unread
 * (left by a turn's budget, or announced since the last turn): another turn is needed soon. */
bool mesh_backlog(struct worker *w);

#endif /* PETREL_MESH_H */
