/* ping: pingserver protocol. Contract in include/petrel/ping.h */
#include "petrel/ping.h"

#include <string.h>

enum ping_req
ping_parse(const char *p, size_t n, size_t *consumed)
{
    *consumed = 0;
    const char *nl = memchr(p, '\n', n < PING_LINE_MAX ? n : PING_LINE_MAX);
    if (nl == NULL) {
        return n >= PING_LINE_MAX ? PING_TOO_LONG : PING_NEED_MORE;
    }
    size_t len = (size_t)(nl - p);
    *consumed = len + 1;
    if (len > 0 && p[len - 1] == '\r') {
        len--;
    }
    if (len == 4 && memcmp(p, "PING", 4) == 0) {
        return PING_PING;
    }
    if (len == 4 && memcmp(p, "QUIT", 4) == 0) {
        return PING_QUIT;
    }
    return PING_UNKNOWN;
}

int
ping_compose_pong(struct buf *out)
{
    return buf_append(out, "PONG\r\n", 6);
}

int
ping_compose_error(struct buf *out)
{
    return buf_append(out, "ERROR\r\n", 7);
}
