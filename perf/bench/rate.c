/* rate: the open-loop schedule; the formula and its guarantees are in rate.h. */
#include "rate.h"

#include <errno.h>

#define NS_PER_S 1000000000ull

int
rate_init(struct rate *r, uint64_t t0_ns, uint64_t total_per_s, uint32_t nconns, uint32_t index)
{
    if (total_per_s == 0 || total_per_s > NS_PER_S || nconns == 0 || index >= nconns) {
        return -EINVAL;
    }
    r->base = t0_ns + (uint64_t)((unsigned __int128)index * NS_PER_S / total_per_s);
    r->num = (uint64_t)nconns * NS_PER_S;
    r->den = total_per_s;
    r->next_k = 0;
    return 0;
}

uint64_t
rate_time(const struct rate *r, uint64_t k)
{
    return r->base + (uint64_t)((unsigned __int128)k * r->num / r->den);
}

uint64_t
rate_peek(const struct rate *r)
{
    return rate_time(r, r->next_k);
}

uint64_t
rate_take(struct rate *r)
{
    return rate_time(r, r->next_k++);
}

uint64_t
rate_count_by(const struct rate *r, uint64_t t)
{
    if (t < r->base) {
        return 0;
    }
    /*
     * floor(k * num / den) <= x  <=>  k * num < (x + 1) * den, so the requests due by t are
     * k = 0 .. ceil((x + 1) * den / num) - 1 with x = t - base: that many in all.
     */
    unsigned __int128 lim = (unsigned __int128)(t - r->base + 1) * r->den;
    return (uint64_t)((lim + r->num - 1) / r->num);
}

uint64_t
rate_due(const struct rate *r, uint64_t now)
{
    uint64_t n = rate_count_by(r, now);
    return n > r->next_k ? n - r->next_k : 0;
}
