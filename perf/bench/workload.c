/* workload: drawing commands, keys and value sizes; key layout in workload.h. */
#include "workload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[OP__COUNT] = {"get", "set", "delete", "incr", "ping"};

static uint32_t
digits(uint64_t v)
{
    uint32_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

uint32_t
workload_min_key_size(uint64_t keys)
{
    return 1 + digits(keys > 0 ? keys - 1 : 0);
}

int
workload_init(struct workload *w, const struct workload_cfg *cfg)
{
    memset(w, 0, sizeof(*w));
    w->cfg = *cfg;
    if (cfg->keys == 0 || cfg->key_size > WORKLOAD_MAX_KEY_SIZE ||
        cfg->key_size < workload_min_key_size(cfg->keys) || cfg->value_min > cfg->value_max ||
        cfg->value_max > WORKLOAD_MAX_VALUE || cfg->multiget < 1 ||
        cfg->multiget > WORKLOAD_MAX_MULTIGET) {
        return -EINVAL;
    }
    uint64_t sum = 0;
    for (int i = 0; i < OP__COUNT; i++) {
        sum += cfg->weight[i];
    }
    if (sum == 0 || sum > UINT32_MAX) {
        return -EINVAL;
    }
    w->wsum = (uint32_t)sum;
    if (cfg->dist == KEY_ZIPF) {
        int rc = zipf_init(&w->zipf, cfg->keys, cfg->theta);
        if (rc < 0) {
            return rc;
        }
    }
    /* One byte more than needed so that malloc(0) never happens for zero-length values. */
    w->value = malloc((size_t)cfg->value_max + 1);
    if (w->value == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i <= cfg->value_max; i++) {
        w->value[i] = (char)('a' + i % 26);
    }
    return 0;
}

void
workload_free(struct workload *w)
{
    free(w->value);
    w->value = NULL;
}

static uint64_t
draw_key(const struct workload *w, struct bench_rng *r)
{
    if (w->cfg.dist == KEY_ZIPF) {
        return zipf_next(&w->zipf, r);
    }
    return bench_rng_below(r, w->cfg.keys);
}

static uint32_t
draw_value_len(const struct workload *w, struct bench_rng *r)
{
    uint32_t span = w->cfg.value_max - w->cfg.value_min;
    if (span == 0) {
        return w->cfg.value_min;
    }
    return w->cfg.value_min + (uint32_t)bench_rng_below(r, (uint64_t)span + 1);
}

void
workload_next(const struct workload *w, struct bench_rng *r, struct request *req)
{
    uint32_t pick = (uint32_t)bench_rng_below(r, w->wsum);
    int op = 0;
    while (pick >= w->cfg.weight[op]) {
        pick -= w->cfg.weight[op];
        op++;
    }
    req->op = (enum op_type)op;
    req->ns = KEY_NS_DATA;
    req->value_len = 0;
    switch (req->op) {
    case OP_PING:
        req->nkeys = 0;
        return;
    case OP_GET:
        req->nkeys = w->cfg.multiget;
        break;
    case OP_INCR:
        req->ns = KEY_NS_COUNTER;
        req->nkeys = 1;
        break;
    case OP_SET:
        req->value_len = draw_value_len(w, r);
        req->nkeys = 1;
        break;
    default:
        req->nkeys = 1;
        break;
    }
    for (uint32_t i = 0; i < req->nkeys; i++) {
        req->key[i] = draw_key(w, r);
    }
}

uint64_t
workload_preload_count(const struct workload *w)
{
    return w->cfg.weight[OP_INCR] ? 2 * w->cfg.keys : w->cfg.keys;
}

void
workload_preload(const struct workload *w, struct bench_rng *r, uint64_t i, struct request *req)
{
    req->op = OP_SET;
    req->nkeys = 1;
    if (i < w->cfg.keys) {
        req->ns = KEY_NS_DATA;
        req->key[0] = i;
        req->value_len = draw_value_len(w, r);
    } else {
        req->ns = KEY_NS_COUNTER;
        req->key[0] = i - w->cfg.keys;
        req->value_len = 1;
    }
}

void
workload_key(const struct workload *w, enum key_ns ns, uint64_t id, char *out)
{
    uint32_t n = w->cfg.key_size;

    out[0] = ns == KEY_NS_COUNTER ? 'n' : 'k';
    /* Fill digits from the right; the rest of the width is zeros. */
    for (uint32_t i = n - 1; i >= 1; i--) {
        out[i] = (char)('0' + id % 10);
        id /= 10;
    }
}

const char *
workload_value(const struct workload *w, const struct request *req, uint32_t *len)
{
    if (req->ns == KEY_NS_COUNTER) {
        *len = 1;
        return "0";
    }
    *len = req->value_len;
    return w->value;
}

const char *
workload_op_name(enum op_type op)
{
    return (unsigned)op < OP__COUNT ? op_names[op] : "?";
}
