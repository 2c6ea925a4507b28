/* proto_ping: PING\r\n -> PONG\r\n, the pingserver protocol. */
#include <errno.h>
#include <string.h>

#include "proto.h"

static int
ping_compose(struct buf *out, const struct workload *w, const struct request *req)
{
    if (req->op != OP_PING) {
        return -ENOTSUP;
    }
    return buf_append(out, "PING\r\n", 6);
}

static ssize_t
ping_parse(const char *p, size_t n, enum op_type op, uint32_t nkeys, struct proto_result *res)
{
    const char *nl = memchr(p, '\n', n);

    memset(res, 0, sizeof(*res));
    if (nl == NULL) {
        /* A reply line longer than any this protocol has is not one of its replies. */
        return n > 1024 ? -EPROTO : 0;
    }
    size_t len = (size_t)(nl - p) + 1;
    if (len == 6 && memcmp(p, "PONG\r\n", 6) == 0) {
        return (ssize_t)len;
    }
    if (proto_error_line(p, len)) {
        res->error = true;
        return (ssize_t)len;
    }
    return -EPROTO;
}

const struct proto proto_ping = {
    .name = "ping",
    .keyed = false,
    .ops = 1u << OP_PING,
    .compose = ping_compose,
    .parse = ping_parse,
};
