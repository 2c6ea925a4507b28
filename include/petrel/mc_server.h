/*
 * mc_server: the memcached-compatible product. Glues the memcache codec and the per-shard
 * executor (mc_exec) to the runtime: parses requests from a connection, runs each on the worker
 * owning its key (forwarding it over the runtime's mesh when that is another worker), and sends
 * the replies back in the order the requests came.
 */
#ifndef PETREL_MC_SERVER_H
#define PETREL_MC_SERVER_H

#include "petrel/config.h"
#include "petrel/runtime.h"

/** The server's own options: port, memory, item size, eviction, shutdown. */
extern const struct opt_table mc_option_table;

/** The product: hand it to rt_main(). */
extern const struct rt_product mc_product;

#endif /* PETREL_MC_SERVER_H */
