/*
 * petrel: the memcached-compatible cache server. The runtime, the memcached protocol and one
 * Segcache shard per worker.
 */
#include "petrel_build.h"

#include "petrel/config.h"
#include "petrel/mc_server.h"
#include "petrel/runtime.h"

/* memcached 1.6's flags that petrel does not take, and what to do instead. */
static const struct opt_foreign memcached_flags[] = {
    {'a', "unix-mask", "takes no octal mask here: use --unix-mode"},
    {'r', "enable-coredumps",
     "core dumps follow the process limit: ulimit -c, or LimitCORE= in the systemd unit"},
    {'M', "disable-evictions",
     "use --eviction none (a store that finds no room then gets SERVER_ERROR out of memory)"},
    {'k', "lock-memory",
     "not supported; --prefault (memcached's -L) takes the item memory at start"},
    {'f', "slab-growth-factor", "petrel has no slab classes: items are packed into segments"},
    {'n', "slab-min-size", "petrel has no slab classes: items are packed into segments"},
    {'R', "max-reqs-per-event",
     "petrel bounds a connection's turn by bytes (4 reads of --read-buffer), not by requests"},
    {'B', "protocol", "petrel speaks the text and meta protocols only, not the binary one"},
    {'S', "enable-sasl", "SASL is not supported: use TLS client certificates (--tls-verify)"},
    {'Y', "auth-file", "not supported: use TLS client certificates (--tls-verify)"},
    {'F', "disable-flush-all", "not supported yet"},
    {'X', "disable-dumping", "petrel has no dump commands to disable (no lru_crawler metadump)"},
    {'W', "disable-watch", "petrel has no watch command to disable"},
    {'e', "memory-file", "a memory file (warm restart) is not supported yet"},
    {'N', "napi-ids", "not supported"},
    {'o', "extended",
     "memcached's extended options are not taken; their petrel equivalents are long options "
     "(petrel --help)"},
    {0, NULL, NULL},
};

int
main(int argc, char **argv)
{
    const struct opt_table tables[] = {mc_option_table, rt_option_table};
    const struct config_product info = {
        .name = "petrel",
        .version = PETREL_VERSION,
        .validate = rt_validate,
        .foreign = memcached_flags,
        .summary = "Petrel: a memcached-compatible cache server with Segcache storage",
    };
    struct config *cfg;
    int status = config_load(&cfg, &info, tables, 2, argc, argv);
    if (status != CONFIG_RUN) {
        return status;
    }
    status = rt_main(&mc_product, cfg);
    config_free(&cfg);
    return status;
}
