/* proto: the protocol registry and what protocols share. */
#include <string.h>

#include "proto.h"

const struct proto *
proto_find(const char *name)
{
    static const struct proto *const all[] = {&proto_memcache, &proto_resp, &proto_ping};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(all[i]->name, name) == 0) {
            return all[i];
        }
    }
    return NULL;
}

static bool
starts_with(const char *line, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(line, prefix, n) == 0;
}

bool
proto_error_line(const char *line, size_t len)
{
    return starts_with(line, len, "ERROR\r\n") || starts_with(line, len, "ERROR ") ||
           starts_with(line, len, "CLIENT_ERROR ") || starts_with(line, len, "SERVER_ERROR ");
}
