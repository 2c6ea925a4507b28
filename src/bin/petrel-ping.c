/*
 * petrel-ping: the pingserver. The runtime plus the ping protocol and nothing else: it measures
 * what the threads, rings and event loops cost on their own.
 */
#include "petrel_build.h"

#include "petrel/config.h"
#include "petrel/ping.h"
#include "petrel/runtime.h"

static const struct opt_def ping_options[] = {
    {.name = "port",
     .short_name = 'p',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "12321",
     .min = 0,
     .max = 65535,
     .help = "TCP port (0: an ephemeral port, logged at start-up)"},
};

/*
 * Answer every complete line in the read buffer, stopping early (RT_CONTINUE) while the client
 * has not read enough of the replies. Worker thread.
 */
static enum rt_result
ping_on_data(void *ctx, struct conn *c)
{
    (void)ctx;
    struct buf *in = conn_rbuf(c), *out = conn_wbuf(c);
    while (buf_len(in) > 0) {
        if (conn_output_full(c)) {
            return RT_CONTINUE;
        }
        size_t used;
        enum ping_req req = ping_parse(buf_rptr(in), buf_len(in), &used);
        int rc = 0;
        switch (req) {
        case PING_NEED_MORE:
            return RT_NEED_MORE;
        case PING_PING:
            rc = ping_compose_pong(out);
            break;
        case PING_QUIT:
            return RT_CLOSE;
        case PING_UNKNOWN:
            rc = ping_compose_error(out);
            break;
        case PING_TOO_LONG:
            /* Framing is lost: say so, then close. */
            return ping_compose_error(out) < 0 ? RT_ABORT : RT_CLOSE;
        }
        if (rc < 0) {
            return RT_ABORT; /* no memory for the reply */
        }
        buf_consume(in, used);
    }
    return RT_NEED_MORE;
}

static const struct rt_product ping_product = {
    .name = "petrel-ping",
    .request_max = PING_LINE_MAX,
    /* The ping protocol has no error reply of its own: refused clients get the line petrel's
     * memcached side sends, which petrel-ping has always sent. */
    .refusal = "ERROR Too many open connections\r\n",
    .port_option = "port",
    .on_data = ping_on_data,
};

/* config_product.validate: the runtime's checks, for this product. */
static int
validate(const struct config *cfg)
{
    return rt_validate(&ping_product, cfg);
}

int
main(int argc, char **argv)
{
    const struct opt_table tables[] = {
        {.name = "petrel-ping", .defs = ping_options, .n = 1},
        rt_option_table,
    };
    const struct config_product info = {
        .name = "petrel-ping",
        .version = PETREL_VERSION,
        .validate = validate,
        .summary = "Petrel's pingserver: answers PING with PONG over the Petrel runtime",
    };
    struct config *cfg;
    int status = config_load(&cfg, &info, tables, 2, argc, argv);
    if (status != CONFIG_RUN) {
        return status;
    }
    status = rt_main(&ping_product, cfg);
    config_free(&cfg);
    return status;
}
