/*
 * petrel: the memcached-compatible cache server. The runtime, the memcached protocol and one
 * Segcache shard per worker.
 */
#include "petrel_build.h"

#include "petrel/config.h"
#include "petrel/mc_server.h"
#include "petrel/runtime.h"

int
main(int argc, char **argv)
{
    const struct opt_table tables[] = {mc_option_table, rt_option_table};
    const struct config_product info = {
        .name = "petrel",
        .version = PETREL_VERSION,
        .validate = rt_validate,
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
