/*
 * mail: the order in which a worker reads the rings of the peers that sent it messages
 * (mesh_drain). Private to src/core.
 *
 * A worker's mail is a bitmap, a bit per peer (struct worker). A loop turn reads the rings of
 * the bits it took in peer order, starting at a peer that moves when a turn's budget runs out
 * (the one after the peer it ran out at), and round to the peer before it: each peer with
 * messages is reached within a bounded number of turns, however full another keeps its ring.
 */
#ifndef PETREL_MAIL_H
#define PETREL_MAIL_H

#include <stdint.h>

/* Call visit(ctx, i) for each set bit i of word k, lowest first. */
static inline void
mail_visit_word(uint64_t b, unsigned k, void (*visit)(void *, unsigned), void *ctx)
{
    for (; b != 0; b &= b - 1) {
        visit(ctx, k * 64 + (unsigned)__builtin_ctzll(b));
    }
}

/*
 * Call visit(ctx, i) for each set bit i of bits[0 .. words), from bit `from` (< 64 * words)
 * round to the bit before it: from's word from it on, the next words, the words before, then
 * the bits of from's word below it. Inlined where a static visit function is given, the call
 * is direct.
 */
static inline void
mail_visit(const uint64_t *bits, unsigned words, unsigned from, void (*visit)(void *, unsigned),
           void *ctx)
{
    unsigned k0 = from / 64, sh = from % 64;
    mail_visit_word(bits[k0] & (~UINT64_C(0) << sh), k0, visit, ctx);
    for (unsigned k = k0 + 1; k < words; k++) {
        mail_visit_word(bits[k], k, visit, ctx);
    }
    for (unsigned k = 0; k < k0; k++) {
        mail_visit_word(bits[k], k, visit, ctx);
    }
    mail_visit_word(bits[k0] & ((UINT64_C(1) << sh) - 1), k0, visit, ctx);
}

#endif /* PETREL_MAIL_H */
