/*
 * Unit tests of the RESP side of the petrel product (src/server/resp_server.c), driven through
 * the fake runtime of tests/support/fake_rt.h like test_mc_server.c: connections of the RESP
 * port (fake_conn_open_proto), several simulated workers, every read split and every message
 * delivery chosen here. Each test ends by asserting that the fake saw no broken rule (output
 * bound, held bytes, reply order).
 */
#include "fake_rt.h"

#include "petrel/mc_exec.h"
#include "petrel/mc_server.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESP_PROTO 1 /* conn_protocol() of the RESP port (resp_server.h's RESP_PROTO_ID) */

static const char *const argv_resp[] = {"--memory-limit=4", "--max-item-size=8k",
                                        "--segment-size=64k", "--resp-port=6379", NULL};

static struct fake_rt *rt;

static void
cleanup(void)
{
    fake_rt_destroy(&rt);
}

TestSuite(resp_server, .fini = cleanup);

static void
start(unsigned nworkers, size_t output_limit)
{
    struct fake_rt_opts o = {.nworkers = nworkers,
                             .output_limit = output_limit,
                             .reply_part_max = 8192 + 512,
                             .tables = &mc_option_table,
                             .ntables = 1,
                             .argv = argv_resp};
    rt = fake_rt_create(&mc_product, &o);
    cr_assert_not_null(rt);
}

static void
finish(void)
{
    const char *first = fake_rt_first_failure(rt, FAKE_CHECK_COUNT);
    cr_expect_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0, "the fake runtime saw: %s",
                 first != NULL ? first : "");
    fake_rt_destroy(&rt);
}

/* A key worker w of n owns, into k. */
static void
key_on(unsigned n, unsigned w, const char *prefix, char *k, size_t size)
{
    for (unsigned i = 0;; i++) {
        snprintf(k, size, "%s%u", prefix, i);
        if (mc_shard_of(mc_key_hash(k, strlen(k)), n) == w) {
            return;
        }
    }
}

/* A multibulk of the given words (at most 8, each shorter than 9000 bytes), into out. */
static size_t
mb(char *out, size_t size, unsigned n, const char *const *words)
{
    size_t len = (size_t)snprintf(out, size, "*%u\r\n", n);
    for (unsigned i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(out + len, size - len, "$%zu\r\n%s\r\n", strlen(words[i]), words[i]);
    }
    return len;
}

static const char *
call(struct fake_conn *fc, unsigned n, const char *const *words)
{
    static char req[20000];
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send(fc, req, mb(req, sizeof(req), n, words));
    fake_rt_run(rt);
    return fake_conn_text(fc) + before;
}

Test(resp_server, a_key_of_another_worker_is_set_and_read_back)
{
    start(3, 0);
    char k[32];
    key_on(3, 2, "k", k, sizeof(k));
    struct fake_conn *fc = fake_conn_open_proto(rt, 0, RESP_PROTO);
    cr_assert_str_eq(call(fc, 3, (const char *[]){"SET", k, "value"}), "+OK\r\n");
    cr_assert_str_eq(call(fc, 2, (const char *[]){"GET", k}), "$5\r\nvalue\r\n");
    finish();
}

Test(resp_server, a_value_set_through_memcached_reads_back_through_resp)
{
    start(2, 0);
    char k[32];
    key_on(2, 1, "m", k, sizeof(k));
    struct fake_conn *mc = fake_conn_open(rt, 0);
    char line[128];
    snprintf(line, sizeof(line), "set %s 9 0 3\r\nabc\r\n", k);
    fake_conn_send_str(mc, line);
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(mc), "STORED\r\n");
    struct fake_conn *fc = fake_conn_open_proto(rt, 0, RESP_PROTO);
    cr_assert_str_eq(call(fc, 2, (const char *[]){"GET", k}), "$3\r\nabc\r\n");
    finish();
}

Test(resp_server, replies_keep_request_order_when_peers_answer_out_of_order)
{
    start(3, 0);
    char k1[32], k2[32], req[512];
    key_on(3, 1, "a", k1, sizeof(k1));
    key_on(3, 2, "b", k2, sizeof(k2));
    struct fake_conn *fc = fake_conn_open_proto(rt, 0, RESP_PROTO);
    call(fc, 3, (const char *[]){"SET", k1, "one"});
    call(fc, 3, (const char *[]){"SET", k2, "two"});
    size_t before = fake_conn_received(fc)->wpos;
    size_t n = mb(req, sizeof(req), 2, (const char *[]){"GET", k1});
    n += mb(req + n, sizeof(req) - n, 1, (const char *[]){"PING"});
    n += mb(req + n, sizeof(req) - n, 2, (const char *[]){"GET", k2});
    fake_conn_send(fc, req, n);
    fake_conn_read(fc, SIZE_MAX);
    /* Worker 2 answers before worker 1. */
    fake_rt_deliver(rt, 0, 2, SIZE_MAX);
    fake_rt_deliver(rt, 2, 0, SIZE_MAX);
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc) + before, "$3\r\none\r\n+PONG\r\n$3\r\ntwo\r\n");
    finish();
}

Test(resp_server, mget_of_many_large_values_stays_within_the_output_bound)
{
    start(3, 64 * 1024);
    struct fake_conn *fc = fake_conn_open_proto(rt, 0, RESP_PROTO);
    char *value = malloc(6000);
    cr_assert_not_null(value);
    memset(value, 'v', 5999);
    value[5999] = '\0';
    char keys[40][16];
    const char *words[41] = {"MGET"};
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof(keys[i]), "big%d", i);
        words[i + 1] = keys[i];
        cr_assert_str_eq(call(fc, 3, (const char *[]){"SET", keys[i], value}), "+OK\r\n");
    }
    static char req[4096];
    size_t n = (size_t)snprintf(req, sizeof(req), "*41\r\n");
    for (int i = 0; i < 41; i++) {
        n += (size_t)snprintf(req + n, sizeof(req) - n, "$%zu\r\n%s\r\n", strlen(words[i]),
                              words[i]);
    }
    size_t before = fake_conn_received(fc)->wpos;
    fake_conn_send(fc, req, n);
    /* The client reads 4 KiB at a time while the workers answer: the fake checks the output
     * bound after every product call. */
    for (int i = 0; i < 5000 && fake_conn_received(fc)->wpos - before < 40 * 6008; i++) {
        fake_conn_read(fc, 16384);
        fake_rt_deliver_all(rt);
        fake_conn_drain(fc, 4096);
    }
    fake_rt_run(rt);
    cr_assert_leq(fake_conn_output_peak(fc), 64 * 1024 + 8192 + 8192,
                  "held at most the limit, one value and slack");
    const char *got = fake_conn_text(fc) + before;
    cr_assert(strncmp(got, "*40\r\n", 5) == 0);
    const char *p = got + 5;
    for (int i = 0; i < 40; i++) {
        cr_assert(strncmp(p, "$5999\r\n", 7) == 0, "key %d", i);
        cr_assert(memcmp(p + 7, value, 5999) == 0, "key %d", i);
        p += 7 + 5999 + 2;
    }
    free(value);
    finish();
}

/* MSETNX's parts go out, the own shard's stores, the other's finds its key taken; the client
 * resets before the replies are back. What the own shard stored must still be undone. */
Test(resp_server, a_failed_msetnx_of_a_reset_connection_is_undone)
{
    start(2, 0);
    char mine[32], theirs[32];
    key_on(2, 0, "a", mine, sizeof(mine));
    key_on(2, 1, "b", theirs, sizeof(theirs));
    struct fake_conn *other = fake_conn_open_proto(rt, 0, RESP_PROTO);
    cr_assert_str_eq(call(other, 3, (const char *[]){"SET", theirs, "old"}), "+OK\r\n");
    struct fake_conn *fc = fake_conn_open_proto(rt, 0, RESP_PROTO);
    char req[256];
    size_t n = mb(req, sizeof(req), 5, (const char *[]){"MSETNX", mine, "new", theirs, "new"});
    fake_conn_send(fc, req, n);
    fake_conn_read(fc, SIZE_MAX); /* parsed and sent: worker 0's part stored at once */
    cr_assert_eq(fake_rt_queued(rt, 0, 1), 1, "worker 1's part is out");
    fake_conn_reset(fc);
    cr_assert(fake_conn_closed(fc));
    fake_rt_run(rt); /* worker 1's part runs and comes back to a closed connection */
    size_t before = fake_conn_received(other)->wpos;
    cr_assert_str_eq(call(other, 2, (const char *[]){"GET", mine}), "$-1\r\n");
    cr_assert_str_eq(fake_conn_text(other) + before, "$-1\r\n");
    cr_assert_str_eq(call(other, 2, (const char *[]){"GET", theirs}), "$3\r\nold\r\n");
    finish();
}

/* The other way round: the own shard's key is taken, the other worker's part stores, and its
 * reply comes back to a closed connection: the undo is sent to that worker with no connection. */
Test(resp_server, a_failed_msetnx_whose_stored_part_returns_after_the_reset_is_undone)
{
    start(2, 0);
    char mine[32], theirs[32];
    key_on(2, 0, "c", mine, sizeof(mine));
    key_on(2, 1, "d", theirs, sizeof(theirs));
    struct fake_conn *other = fake_conn_open_proto(rt, 0, RESP_PROTO);
    cr_assert_str_eq(call(other, 3, (const char *[]){"SET", mine, "old"}), "+OK\r\n");
    struct fake_conn *fc = fake_conn_open_proto(rt, 0, RESP_PROTO);
    char req[256];
    size_t n = mb(req, sizeof(req), 5, (const char *[]){"MSETNX", mine, "new", theirs, "new"});
    fake_conn_send(fc, req, n);
    fake_conn_read(fc, SIZE_MAX);
    fake_rt_deliver(rt, 0, 1, SIZE_MAX); /* worker 1 stores its part ... */
    cr_assert_eq(fake_rt_queued(rt, 1, 0), 1, "... and its reply waits to be delivered");
    fake_conn_reset(fc);
    fake_rt_run(rt); /* the reply finds no connection; the undo goes to worker 1 and back */
    cr_assert_eq(fake_rt_queued_total(rt), 0);
    cr_assert_str_eq(call(other, 2, (const char *[]){"GET", theirs}), "$-1\r\n");
    cr_assert_str_eq(call(other, 2, (const char *[]){"GET", mine}), "$3\r\nold\r\n");
    finish();
}
