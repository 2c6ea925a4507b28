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

/* The indices visited, in order. */
static struct seen
walk(const uint64_t *bits, unsigned words, unsigned from)
{
    struct seen s = {0};
    mail_visit(bits, words, from, record, &s);
    return s;
}

/* With exactly the bits of want set in a map of `words`, the walk from `from` visits them in
 * want's order. */
static void
assert_order(unsigned words, unsigned from, const int *want, unsigned n)
{
    uint64_t bits[4] = {0};
    for (unsigned j = 0; j < n; j++) {
        bits[want[j] / 64] |= UINT64_C(1) << (want[j] % 64);
    }
    struct seen s = walk(bits, words, from);
    cr_assert_eq(s.n, n, "from %u: %u visits", from, s.n);
    for (unsigned j = 0; j < n; j++) {
        cr_assert_eq(s.at[j], want[j], "from %u, visit %u", from, j);
    }
}

Test(mail, nothing_set_gives_nothing)
{
    uint64_t bits[4] = {0};
    cr_assert_eq(walk(bits, 4, 0).n, 0);
    cr_assert_eq(walk(bits, 4, 130).n, 0);
}

Test(mail, one_word_from_zero_is_peer_order)
{
    assert_order(1, 0, (const int[]){1, 5, 63}, 3);
}

Test(mail, one_word_starts_at_from_and_goes_round)
{
    assert_order(1, 4, (const int[]){4, 9, 0, 3}, 4);
}

/* 65 workers: the peer the budget ran out at (0) comes after every other peer, the one in
 * the second word included, so a peer that keeps its ring full cannot starve peer 64. */
Test(mail, the_peer_before_from_comes_after_the_other_words)
{
    assert_order(2, 1, (const int[]){7, 64, 0}, 3);
}

Test(mail, from_in_a_later_word_wraps_to_the_first)
{
    assert_order(3, 130, (const int[]){140, 2, 70, 129}, 4);
}

Test(mail, every_bit_of_a_full_map_once_in_rotated_order)
{
    uint64_t bits[4];
    for (unsigned k = 0; k < 4; k++) {
        bits[k] = ~UINT64_C(0);
    }
    const unsigned starts[] = {0, 1, 37, 63, 64, 100, 128, 191, 192, 255};
    for (unsigned i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        unsigned from = starts[i];
        struct seen s = walk(bits, 4, from);
        cr_assert_eq(s.n, 256);
        for (unsigned j = 0; j < 256; j++) {
            cr_assert_eq(s.at[j], (int)((from + j) % 256), "from %u, step %u", from, j);
        }
    }
}
