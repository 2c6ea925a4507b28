/*
 * A libmemcached client exercising petrel: every storage command, counters, cas, touch,
 * delete, a binary value and a multi-get of many keys. Usage: mc_client HOST PORT.
 * Prints one line per check and exits non-zero if any failed.
 */
#include <libmemcached/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        int ok_ = (cond);                                                                          \
        printf("%s %s\n", ok_ ? "ok  " : "FAIL", what);                                            \
        failures += !ok_;                                                                          \
    } while (0)

static int
value_is(memcached_st *mc, const char *key, const char *want, size_t wlen)
{
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(mc, key, strlen(key), &len, &flags, &rc);
    int ok = v != NULL && len == wlen && memcmp(v, want, wlen) == 0;
    free(v);
    return ok;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    memcached_st *mc = memcached_create(NULL);
    memcached_server_add(mc, argv[1], (in_port_t)atoi(argv[2]));
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);

    CHECK(memcached_set(mc, "a", 1, "one", 3, 0, 0) == MEMCACHED_SUCCESS, "set");
    CHECK(value_is(mc, "a", "one", 3), "get");
    CHECK(memcached_add(mc, "a", 1, "two", 3, 0, 0) == MEMCACHED_NOTSTORED, "add existing");
    CHECK(memcached_replace(mc, "a", 1, "two", 3, 0, 0) == MEMCACHED_SUCCESS, "replace");
    CHECK(memcached_append(mc, "a", 1, "-z", 2, 0, 0) == MEMCACHED_SUCCESS, "append");
    CHECK(memcached_prepend(mc, "a", 1, "y-", 2, 0, 0) == MEMCACHED_SUCCESS, "prepend");
    CHECK(value_is(mc, "a", "y-two-z", 7), "append and prepend result");

    char bin[512];
    for (size_t i = 0; i < sizeof(bin); i++) {
        bin[i] = (char)(i * 7);
    }
    CHECK(memcached_set(mc, "bin", 3, bin, sizeof(bin), 0, 0) == MEMCACHED_SUCCESS, "set binary");
    CHECK(value_is(mc, "bin", bin, sizeof(bin)), "binary value round trip");

    uint64_t n = 0;
    memcached_set(mc, "n", 1, "41", 2, 0, 0);
    CHECK(memcached_increment(mc, "n", 1, 1, &n) == MEMCACHED_SUCCESS && n == 42, "incr");
    CHECK(memcached_decrement(mc, "n", 1, 50, &n) == MEMCACHED_SUCCESS && n == 0, "decr floors");

    const char *keys[] = {"a"};
    size_t klens[] = {1};
    memcached_mget(mc, keys, klens, 1);
    memcached_result_st *res = memcached_fetch_result(mc, NULL, NULL);
    uint64_t cas = res ? memcached_result_cas(res) : 0;
    memcached_result_free(res);
    while ((res = memcached_fetch_result(mc, NULL, NULL)) != NULL) {
        memcached_result_free(res);
    }
    CHECK(cas != 0, "gets returns a cas");
    CHECK(memcached_cas(mc, "a", 1, "c1", 2, 0, 0, cas) == MEMCACHED_SUCCESS, "cas");
    CHECK(memcached_cas(mc, "a", 1, "c2", 2, 0, 0, cas) == MEMCACHED_DATA_EXISTS, "stale cas");

    CHECK(memcached_touch(mc, "a", 1, 100) == MEMCACHED_SUCCESS, "touch");
    CHECK(memcached_delete(mc, "a", 1, 0) == MEMCACHED_SUCCESS, "delete");
    CHECK(memcached_delete(mc, "a", 1, 0) == MEMCACHED_NOTFOUND, "delete missing");

    enum { NKEYS = 200 };
    char names[NKEYS][16];
    const char *mkeys[NKEYS];
    size_t mlens[NKEYS];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(names[i], sizeof(names[i]), "mk%d", i);
        mkeys[i] = names[i];
        mlens[i] = strlen(names[i]);
        if (i % 2 == 0) {
            memcached_set(mc, names[i], mlens[i], names[i], mlens[i], 0, 0);
        }
    }
    memcached_mget(mc, mkeys, mlens, NKEYS);
    int hits = 0, right = 0;
    while ((res = memcached_fetch_result(mc, NULL, NULL)) != NULL) {
        hits++;
        right += memcached_result_length(res) == memcached_result_key_length(res) &&
                 memcmp(memcached_result_value(res), memcached_result_key_value(res),
                        memcached_result_length(res)) == 0;
        memcached_result_free(res);
    }
    CHECK(hits == NKEYS / 2 && right == hits, "multi-get of 200 keys, half present");

    memcached_free(mc);
    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
