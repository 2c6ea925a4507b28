/* libFuzzer target: the ping parser on arbitrary bytes, fed as a stream. */
#include "petrel/ping.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0;
    while (off < size) {
        size_t used;
        enum ping_req r = ping_parse(p + off, size - off, &used);
        if (r == PING_NEED_MORE || r == PING_TOO_LONG) {
            if (used != 0) {
                abort();
            }
            break;
        }
        /* A parsed line always makes progress and never reaches past the input. */
        if (used == 0 || used > size - off || used > PING_LINE_MAX) {
            abort();
        }
        off += used;
    }
    return 0;
}
