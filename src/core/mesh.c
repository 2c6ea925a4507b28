/*
 * mesh: the forwarding mesh between workers. One SPSC ring per ordered pair of workers carries
 * requests one way and their replies back (struct rt_msg); a worker publishes what it staged for
 * each peer once per loop iteration and wakes only the peers that sleep (ring.h's protocol). A
 * full ring never blocks: the outbox keeps the rest for the next iteration.
 *
 * Threads: a worker's outboxes and the consuming side of its inbound rings are its own; shared
 * are the rings, one writer and one reader each, and each worker's mail, a bit per peer that
 * its peers set when they publish and it clears when it looks (struct worker).
 */
#include "conn.h"
#include "mail.h"
#include "mesh.h"
#include "worker.h"

#define PEER_BUDGET 1024 /* messages taken from each peer's ring per iteration */
/* Bytes of messages' costs (struct rt_msg) taken in ring order per iteration, and again for
 * those set aside: with a connection's turn (conn.c), what one iteration may spend on other
 * clients' large values before a cheap request is answered. */
#define MESH_BYTES (256u * 1024)
#define MSG_COSTLY (64u * 1024) /* a message costing this much may be set aside */
#define PEER_RING  1024         /* slots of each ring of the forwarding mesh */

/* Queue m for worker dest; it leaves at the end of this loop iteration (mesh_flush). */
static int
outbox_push(struct worker *w, unsigned dest, struct rt_msg *m)
{
    int rc = ring_outbox_push(&w->peer_out[dest], m);
    if (rc == 0) {
        if (!w->peer_dirty[dest]) {
            w->peer_dirty[dest] = true;
            w->dirty[w->ndirty++] = (uint16_t)dest;
        }
        metrics_incr(&w->m[RTM_MESSAGES_SENT]);
    }
    return rc;
}

/* A request from this worker to dest, whose reply goes to connection slot (generation gen). */
static int
request_push(struct worker *w, unsigned dest, struct rt_msg *m, uint32_t slot, uint32_t gen)
{
    m->conn_slot = slot;
    m->conn_gen = gen;
    m->origin = (uint16_t)w->id;
    m->dest = (uint16_t)dest;
    m->is_reply = false;
    return outbox_push(w, dest, m);
}

int
conn_forward(struct conn *c, unsigned dest, struct rt_msg *m)
{
    struct worker *w = c->w;
    int rc = request_push(w, dest, m, c->slot, w->conns->gen[c->slot]);
    if (rc == 0) {
        c->inflight++;
    }
    return rc;
}

int
rt_forward_detached(unsigned dest, struct rt_msg *m)
{
    /* No slot: the reply finds no connection. */
    return request_push(self_worker, dest, m, UINT32_MAX, 0);
}

int
rt_msg_return(struct rt_msg *m)
{
    struct worker *w = self_worker;
    m->is_reply = true;
    w->mesh_spent += m->cost; /* what running it copied, as the product says */
    return outbox_push(w, m->origin, m);
}

int
workers_connect(struct runtime *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        for (unsigned j = 0; j < rt->nworkers; j++) {
            if (i == j) {
                continue;
            }
            struct ring **r = &rt->workers[j].peer_in[i];
            int rc = ring_create(r, PEER_RING);
            if (rc < 0) {
                return rc;
            }
            ring_outbox_init(&rt->workers[i].peer_out[j], *r);
        }
    }
    return 0;
}

void
workers_free_mesh(struct runtime *rt)
{
    void (*msg_free)(struct rt_msg *) = rt->p->msg_free;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = &rt->workers[i];
        while (w->later != NULL) {
            struct rt_msg *m = w->later;
            w->later = m->next;
            if (msg_free != NULL) {
                msg_free(m);
            }
        }
        w->later_tail = NULL;
        for (unsigned j = 0; j < rt->nworkers && w->peer_out != NULL; j++) {
            struct ring_outbox *o = &w->peer_out[j];
            void *m;
            while ((m = ring_outbox_take(o)) != NULL) {
                if (msg_free != NULL) {
                    msg_free(m);
                }
            }
            ring_outbox_fini(o);
        }
        for (unsigned j = 0; j < rt->nworkers && w->peer_in != NULL; j++) {
            if (w->peer_in[j] == NULL) {
                continue;
            }
            /* Staged but unpublished items are lost with the producer; publish them first. */
            ring_publish(w->peer_in[j]);
            void *m;
            while ((m = ring_pop(w->peer_in[j])) != NULL) {
                if (msg_free != NULL) {
                    msg_free(m);
                }
            }
            ring_destroy(&w->peer_in[j]);
        }
    }
}

/* A reply back from a peer: to its connection, if that is still the one that sent it. */
static void
take_reply(struct worker *w, struct rt_msg *m)
{
    struct conn_table *t = w->conns;
    struct conn *c = m->conn_slot < t->cap ? t->slot[m->conn_slot] : NULL;
    if (c != NULL && t->gen[m->conn_slot] != m->conn_gen) {
        c = NULL; /* the slot holds a newer connection */
    }
    if (c != NULL) {
        conn_reply_arriving(w, c);
    }
    w->rt->p->on_reply(w->pctx, c, m);
    if (c != NULL) {
        conn_reply_arrived(w, c);
    }
}

/* Whether m may wait for a later iteration while the messages behind it go on. */
static bool
set_aside(const struct rt_msg *m)
{
    return m->cost >= MSG_COSTLY && (m->is_reply || m->any_order);
}

/* Peer i's ring, within the iteration's budgets (mesh_drain); when a budget stops it before
 * the ring is empty, the ring is read again next turn. */
static void
drain_peer(struct worker *w, const struct rt_product *p, unsigned i)
{
    struct ring *r = w->peer_in[i];
    struct rt_msg *m;
    unsigned n = 0;
    struct rt_msg *batch[RT_REQUEST_BATCH];
    unsigned nb = 0;
    size_t est = 0; /* the senders' estimates for the batch */
    bool budget;
    while (!(budget = n == PEER_BUDGET || w->mesh_spent >= MESH_BYTES) &&
           (m = ring_pop(r)) != NULL) {
        n++;
        if (set_aside(m)) {
            m->next = NULL;
            if (w->later_tail != NULL) {
                w->later_tail->next = m;
            } else {
                w->later = m;
            }
            w->later_tail = m;
            continue;
        }
        if (!m->is_reply) {
            /* Requests go in batches (order kept); replies concern other connections. */
            batch[nb++] = m;
            est += m->cost;
            if (nb == RT_REQUEST_BATCH || w->mesh_spent + est >= MESH_BYTES) {
                p->on_requests(w->pctx, batch, nb);
                nb = 0;
                est = 0;
            }
            continue;
        }
        w->mesh_spent += m->cost;
        take_reply(w, m);
    }
    if (nb > 0) {
        p->on_requests(w->pctx, batch, nb);
    }
    if (n > 0) {
        ring_release(r);
        metrics_add(&w->m[RTM_MESSAGES_RECEIVED], n);
    }
    if (budget) {
        w->mail_left[i / 64] |= UINT64_C(1) << (i % 64);
        w->mail_held = true;
    }
    if (budget && n > 0) {
        /* The budget ran out here: the peers after this one go first next turn, so that a peer
         * that keeps its ring full does not keep them waiting. */
        w->drain_from = i + 1 < w->rt->nworkers ? i + 1 : 0;
    }
}

/* mail_visit's visit: peer i's ring. */
static void
drain_mail(void *arg, unsigned i)
{
    struct worker *w = arg;
    drain_peer(w, w->rt->p, i);
}

/*
 * Messages from other workers: requests to execute here, replies for our connections. In ring
 * order while the costs taken this iteration stay under MESH_BYTES (a request's cost is known
 * once it ran, so a batch runs early when the senders' estimates would pass the budget);
 * costly messages that may wait are set aside instead, and those set aside run in order within
 * a MESH_BYTES budget of their own. Either way at least one message goes per iteration.
 */
void
mesh_drain(struct worker *w)
{
    const struct rt_product *p = w->rt->p;
    w->mesh_spent = 0;
    /* The peers that published since the last look, and the rings the budget left unread:
     * only those rings are read, so a turn's cost does not grow with the worker count. The
     * exchange (acquire) pairs with the fetch_or (release) each peer makes after publishing
     * (mesh_flush): a ring whose bit is taken shows at least what that bit announced. */
    unsigned words = w->mail_words;
    uint64_t todo[RT_MAIL_WORDS], any = 0;
    w->mail_held = false;
    for (unsigned k = 0; k < words; k++) {
        todo[k] = w->mail_left[k];
        w->mail_left[k] = 0;
        if (atomic_load_explicit(&w->mail[k], memory_order_relaxed) != 0) {
            todo[k] |= atomic_exchange_explicit(&w->mail[k], 0, memory_order_acquire);
        }
        any |= todo[k];
    }
    if (any != 0) {
        mail_visit(todo, words, w->drain_from, drain_mail, w);
    }
    w->mesh_spent = 0;
    struct rt_msg *m;
    while (w->mesh_spent < MESH_BYTES && (m = w->later) != NULL) {
        w->later = m->next;
        if (w->later == NULL) {
            w->later_tail = NULL;
        }
        if (m->is_reply) {
            w->mesh_spent += m->cost;
            take_reply(w, m);
        } else {
            p->on_requests(w->pctx, &m, 1);
        }
    }
}

/* Publish what this iteration staged for each peer, and wake the peers that sleep. Only the
 * peers staged for are visited: a loop turn's cost does not grow with the worker count. */
void
mesh_flush(struct worker *w)
{
    unsigned left = 0;
    for (unsigned i = 0; i < w->ndirty; i++) {
        unsigned j = w->dirty[i];
        if (ring_outbox_flush(&w->peer_out[j])) {
            /* Announce it (mesh_drain), then wake the peer if it sleeps: the bit is set before
             * waker_notify's fence, as the sleep protocol needs (mesh_inbound_pending). */
            struct worker *peer = &w->rt->workers[j];
            atomic_fetch_or_explicit(&peer->mail[w->id / 64], UINT64_C(1) << (w->id % 64),
                                     memory_order_release);
            waker_notify(&peer->waker);
        }
        if (ring_outbox_backlog(&w->peer_out[j]) > 0) {
            w->dirty[left++] = (uint16_t)j; /* the ring was full: the rest goes next turn */
        } else {
            w->peer_dirty[j] = false;
        }
    }
    w->ndirty = left;
}

/* Whether a peer announced messages not looked at yet (relaxed: after the sleep protocol's
 * fence, or a hint that the next turn makes sure of). */
static bool
mail_waiting(const struct worker *w)
{
    for (unsigned k = 0; k < w->mail_words; k++) {
        if (atomic_load_explicit(&w->mail[k], memory_order_relaxed) != 0) {
            return true;
        }
    }
    return false;
}

bool
mesh_inbound_pending(struct worker *w)
{
    return ring_pending(w->inbox) || mail_waiting(w);
}

bool
mesh_backlog(struct worker *w)
{
    /* An outbox's backlog (the peer is busy draining its ring), messages set aside, rings a
     * budget left unread, or mail announced since this turn's drain. */
    return w->later != NULL || w->ndirty > 0 || w->mail_held || mail_waiting(w);
}
