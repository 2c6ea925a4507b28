/* The order in which a worker reads its peers' rings (src/core/mail.h). */
#include "mail.h"

#include <criterion/criterion.h>
#include <stdint.h>

#define MAX 256

struct seen {
    unsigned n;
    int at[MAX];
};

static void
record(void *arg, unsigned i)
{
    struct seen *s = arg;
    cr_assert_lt(s->n, MAX, "more visits than bits");
    s->at[s->n++] = (int)i;
}

/* The indices visited, in order; returns how many. */
static unsigned
walk(const uint64_t *bits, unsigned words, unsigned from, int *out)
{
    struct seen s = {0};
    mail_visit(bits, words, from, record, &s);
    for (unsigned j = 0; j < s.n; j++) {
        out[j] = s.at[j];
    }
    return s.n;
}

static void
set(uint64_t *bits, unsigned i)
{
    bits[i / 64] |= UINT64_C(1) << (i % 64);
}

Test(mail, nothing_set_gives_nothing)
{
    uint64_t bits[4] = {0};
    int out[MAX];
    cr_assert_eq(walk(bits, 4, 0, out), 0);
    cr_assert_eq(walk(bits, 4, 130, out), 0);
}

Test(mail, one_word_from_zero_is_peer_order)
{
    uint64_t bits[1] = {0};
    set(bits, 1);
    set(bits, 5);
    set(bits, 63);
    int out[MAX];
    cr_assert_eq(walk(bits, 1, 0, out), 3);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 5);
    cr_assert_eq(out[2], 63);
}

Test(mail, one_word_starts_at_from_and_goes_round)
{
    uint64_t bits[1] = {0};
    set(bits, 0);
    set(bits, 3);
    set(bits, 4);
    set(bits, 9);
    int out[MAX];
    cr_assert_eq(walk(bits, 1, 4, out), 4);
    cr_assert_eq(out[0], 4);
    cr_assert_eq(out[1], 9);
    cr_assert_eq(out[2], 0);
    cr_assert_eq(out[3], 3);
}

/* 65 workers: the peer the budget ran out at (0) comes after every other peer, the one in
 * the second word included, so a peer that keeps its ring full cannot starve peer 64. */
Test(mail, the_peer_before_from_comes_after_the_other_words)
{
    uint64_t bits[2] = {0};
    set(bits, 0);
    set(bits, 64);
    set(bits, 7);
    int out[MAX];
    cr_assert_eq(walk(bits, 2, 1, out), 3);
    cr_assert_eq(out[0], 7);
    cr_assert_eq(out[1], 64);
    cr_assert_eq(out[2], 0);
}

Test(mail, from_in_a_later_word_wraps_to_the_first)
{
    uint64_t bits[3] = {0};
    set(bits, 2);
    set(bits, 70);
    set(bits, 140);
    set(bits, 129);
    int out[MAX];
    cr_assert_eq(walk(bits, 3, 130, out), 4);
    cr_assert_eq(out[0], 140);
    cr_assert_eq(out[1], 2);
    cr_assert_eq(out[2], 70);
    cr_assert_eq(out[3], 129);
}

Test(mail, every_bit_of_a_full_map_once_in_rotated_order)
{
    uint64_t bits[4];
    for (unsigned k = 0; k < 4; k++) {
        bits[k] = ~UINT64_C(0);
    }
    int out[MAX];
    const unsigned starts[] = {0, 1, 37, 63, 64, 100, 128, 191, 192, 255};
    for (unsigned s = 0; s < sizeof(starts) / sizeof(starts[0]); s++) {
        unsigned from = starts[s];
        cr_assert_eq(walk(bits, 4, from, out), 256);
        for (unsigned j = 0; j < 256; j++) {
            cr_assert_eq(out[j], (int)((from + j) % 256), "from %u, step %u", from, j);
        }
    }
}
