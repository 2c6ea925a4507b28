/* Unit tests for perf/bench protocols: memcache text, RESP and ping, composed and parsed as bytes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto.h"

static struct workload w;
static struct buf out;

static void
setup(void)
{
    struct workload_cfg c = {
        .keys = 100,
        .key_size = 4,
        .value_min = 5,
        .value_max = 5,
        .weight = {[OP_GET] = 1},
        .multiget = 1,
    };
    cr_assert_eq(workload_init(&w, &c), 0);
    buf_init(&out, 64, 1 << 20);
}

static void
teardown(void)
{
    buf_free(&out);
    workload_free(&w);
}

static void
assert_out(const char *want)
{
    cr_assert_eq(buf_len(&out), strlen(want), "composed %zu bytes, want %zu", buf_len(&out),
                 strlen(want));
    cr_assert_arr_eq(buf_rptr(&out), want, strlen(want));
}

static ssize_t
mc_parse(const char *s, enum op_type op, uint32_t nkeys, struct proto_result *res)
{
    return proto_memcache.parse(s, strlen(s), op, nkeys, res);
}

TestSuite(bench_proto, .init = setup, .fini = teardown);

Test(bench_proto, memcache_composes_a_multi_key_get)
{
    struct request req = {.op = OP_GET, .nkeys = 3, .key = {1, 22, 99}};
    cr_assert_eq(proto_memcache.compose(&out, &w, &req), 0);
    assert_out("get k001 k022 k099\r\n");
}

Test(bench_proto, memcache_composes_a_set_with_its_value)
{
    struct request req = {.op = OP_SET, .nkeys = 1, .key = {7}, .value_len = 5};
    cr_assert_eq(proto_memcache.compose(&out, &w, &req), 0);
    assert_out("set k007 0 0 5\r\nabcde\r\n");
}

Test(bench_proto, memcache_composes_delete_and_incr_on_counters)
{
    struct request del = {.op = OP_DELETE, .nkeys = 1, .key = {3}};
    struct request inc = {.op = OP_INCR, .ns = KEY_NS_COUNTER, .nkeys = 1, .key = {4}};
    cr_assert_eq(proto_memcache.compose(&out, &w, &del), 0);
    cr_assert_eq(proto_memcache.compose(&out, &w, &inc), 0);
    assert_out("delete k003\r\nincr n004 1\r\n");
}

Test(bench_proto, memcache_cannot_send_a_ping)
{
    struct request req = {.op = OP_PING};
    cr_assert_eq(proto_memcache.compose(&out, &w, &req), -ENOTSUP);
}

Test(bench_proto, a_get_hit_is_one_whole_reply)
{
    struct proto_result res;
    const char *r = "VALUE k001 0 5\r\nabcde\r\nEND\r\n";
    cr_assert_eq(mc_parse(r, OP_GET, 1, &res), (ssize_t)strlen(r));
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(res.misses, 0);
    cr_assert_not(res.error);
}

Test(bench_proto, a_get_miss_is_counted_per_key)
{
    struct proto_result res;
    const char *r = "VALUE k001 0 1 77\r\nx\r\nEND\r\nSTORED\r\n";
    /* A multi-get of 3 keys, one found (with a CAS field); the next reply is left alone. */
    cr_assert_eq(mc_parse(r, OP_GET, 3, &res), (ssize_t)strlen(r) - 8);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(res.misses, 2);
}

Test(bench_proto, a_value_that_looks_like_end_is_data)
{
    struct proto_result res;
    const char *r = "VALUE k001 0 5\r\nEND\r\n\r\nEND\r\n";
    cr_assert_eq(mc_parse(r, OP_GET, 1, &res), (ssize_t)strlen(r));
    cr_assert_eq(res.hits, 1);
}

Test(bench_proto, an_incomplete_reply_asks_for_more_at_every_cut)
{
    struct proto_result res;
    const char *r = "VALUE k001 0 5\r\nabcde\r\nVALUE k002 0 2\r\nxy\r\nEND\r\n";
    size_t n = strlen(r);
    for (size_t cut = 0; cut < n; cut++) {
        cr_assert_eq(proto_memcache.parse(r, cut, OP_GET, 2, &res), 0, "cut at %zu", cut);
    }
    cr_assert_eq(proto_memcache.parse(r, n, OP_GET, 2, &res), (ssize_t)n);
    cr_assert_eq(res.hits, 2);
}

Test(bench_proto, storage_replies_are_hits_or_misses)
{
    struct proto_result res;
    cr_assert_eq(mc_parse("STORED\r\n", OP_SET, 1, &res), 8);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(mc_parse("NOT_STORED\r\n", OP_SET, 1, &res), 12);
    cr_assert_eq(res.misses, 1);
    cr_assert_eq(mc_parse("DELETED\r\n", OP_DELETE, 1, &res), 9);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(mc_parse("NOT_FOUND\r\n", OP_DELETE, 1, &res), 11);
    cr_assert_eq(res.misses, 1);
    cr_assert_eq(mc_parse("12345\r\n", OP_INCR, 1, &res), 7);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(mc_parse("NOT_FOUND\r\n", OP_INCR, 1, &res), 11);
    cr_assert_eq(res.misses, 1);
}

Test(bench_proto, error_replies_are_errors_not_framing_loss)
{
    struct proto_result res;
    cr_assert_eq(mc_parse("SERVER_ERROR out of memory storing object\r\n", OP_SET, 1, &res), 43);
    cr_assert(res.error);
    cr_assert_eq(mc_parse("CLIENT_ERROR bad data chunk\r\n", OP_GET, 1, &res), 29);
    cr_assert(res.error);
    cr_assert_eq(mc_parse("ERROR\r\n", OP_DELETE, 1, &res), 7);
    cr_assert(res.error);
}

Test(bench_proto, a_reply_that_fits_no_request_is_a_framing_error)
{
    struct proto_result res;
    cr_assert_eq(mc_parse("STORED\r\n", OP_GET, 1, &res), -EPROTO);
    cr_assert_eq(mc_parse("END\r\n", OP_SET, 1, &res), -EPROTO);
    cr_assert_eq(mc_parse("VALUE k001 0 x\r\n", OP_GET, 1, &res), -EPROTO);
    cr_assert_eq(mc_parse("VALUE k001 0 2\r\nabcd\r\n", OP_GET, 1, &res), -EPROTO);
    cr_assert_eq(mc_parse("12a\r\n", OP_INCR, 1, &res), -EPROTO);

    char junk[2048];
    memset(junk, 'z', sizeof(junk));
    cr_assert_eq(proto_memcache.parse(junk, sizeof(junk), OP_SET, 1, &res), -EPROTO);
}

Test(bench_proto, ping_sends_ping_and_expects_pong)
{
    struct proto_result res;
    struct request req = {.op = OP_PING};
    cr_assert_eq(proto_ping.compose(&out, &w, &req), 0);
    assert_out("PING\r\n");
    cr_assert_eq(proto_ping.parse("PONG\r\nPONG\r\n", 12, OP_PING, 0, &res), 6);
    cr_assert_not(res.error);
    cr_assert_eq(proto_ping.parse("PON", 3, OP_PING, 0, &res), 0);
    cr_assert_eq(proto_ping.parse("ERROR\r\n", 7, OP_PING, 0, &res), 7);
    cr_assert(res.error);
    cr_assert_eq(proto_ping.parse("PANG\r\n", 6, OP_PING, 0, &res), -EPROTO);
}

Test(bench_proto, ping_cannot_send_keyed_commands)
{
    struct request req = {.op = OP_GET, .nkeys = 1};
    cr_assert_eq(proto_ping.compose(&out, &w, &req), -ENOTSUP);
}

Test(bench_proto, protocols_are_found_by_name)
{
    cr_assert_eq(proto_find("memcache"), &proto_memcache);
    cr_assert_eq(proto_find("ping"), &proto_ping);
    cr_assert_eq(proto_find("resp"), &proto_resp);
    cr_assert_null(proto_find("redis"));
}

static ssize_t
resp_parse(const char *s, enum op_type op, uint32_t nkeys, struct proto_result *res)
{
    return proto_resp.parse(s, strlen(s), op, nkeys, res);
}

Test(bench_proto, resp_composes_multibulk_requests)
{
    struct request get = {.op = OP_GET, .nkeys = 1, .key = {1}};
    struct request mget = {.op = OP_GET, .nkeys = 2, .key = {1, 22}};
    struct request set = {.op = OP_SET, .nkeys = 1, .key = {7}, .value_len = 5};
    struct request del = {.op = OP_DELETE, .nkeys = 1, .key = {3}};
    struct request inc = {.op = OP_INCR, .ns = KEY_NS_COUNTER, .nkeys = 1, .key = {4}};
    cr_assert_eq(proto_resp.compose(&out, &w, &get), 0);
    cr_assert_eq(proto_resp.compose(&out, &w, &mget), 0);
    cr_assert_eq(proto_resp.compose(&out, &w, &set), 0);
    cr_assert_eq(proto_resp.compose(&out, &w, &del), 0);
    cr_assert_eq(proto_resp.compose(&out, &w, &inc), 0);
    assert_out("*2\r\n$3\r\nGET\r\n$4\r\nk001\r\n"
               "*3\r\n$4\r\nMGET\r\n$4\r\nk001\r\n$4\r\nk022\r\n"
               "*3\r\n$3\r\nSET\r\n$4\r\nk007\r\n$5\r\nabcde\r\n"
               "*2\r\n$3\r\nDEL\r\n$4\r\nk003\r\n"
               "*2\r\n$4\r\nINCR\r\n$4\r\nn004\r\n");
}

Test(bench_proto, resp_gets_hit_on_a_bulk_and_miss_on_a_null)
{
    struct proto_result res;
    cr_assert_eq(resp_parse("$5\r\nab\r\nd\r\n", OP_GET, 1, &res), 11);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(resp_parse("$-1\r\n", OP_GET, 1, &res), 5);
    cr_assert_eq(res.misses, 1);
    cr_assert_eq(resp_parse("_\r\n", OP_GET, 1, &res), 3);
    cr_assert_eq(res.misses, 1);
    cr_assert_eq(resp_parse("*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n", OP_GET, 3, &res), 22);
    cr_assert_eq(res.hits, 2);
    cr_assert_eq(res.misses, 1);
}

Test(bench_proto, resp_an_incomplete_reply_asks_for_more_at_every_cut)
{
    struct proto_result res;
    const char *r = "*2\r\n$5\r\nabcde\r\n$-1\r\n";
    size_t n = strlen(r);
    for (size_t cut = 0; cut < n; cut++) {
        cr_assert_eq(proto_resp.parse(r, cut, OP_GET, 2, &res), 0, "cut at %zu", cut);
    }
    cr_assert_eq(proto_resp.parse(r, n, OP_GET, 2, &res), (ssize_t)n);
    cr_assert_eq(res.hits, 1);
}

Test(bench_proto, resp_other_replies_are_hits_misses_or_errors)
{
    struct proto_result res;
    cr_assert_eq(resp_parse("+OK\r\n", OP_SET, 1, &res), 5);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(resp_parse("$-1\r\n", OP_SET, 1, &res), 5);
    cr_assert_eq(res.misses, 1);
    cr_assert_eq(resp_parse(":1\r\n", OP_DELETE, 1, &res), 4);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(resp_parse(":0\r\n", OP_DELETE, 1, &res), 4);
    cr_assert_eq(res.misses, 1);
    cr_assert_eq(resp_parse(":-7\r\n", OP_INCR, 1, &res), 5);
    cr_assert_eq(res.hits, 1);
    cr_assert_eq(resp_parse("-OOM command not allowed\r\n", OP_SET, 1, &res), 26);
    cr_assert(res.error);
}

Test(bench_proto, resp_a_reply_that_fits_no_request_is_a_framing_error)
{
    struct proto_result res;
    cr_assert_eq(resp_parse("+OK\r\n", OP_GET, 1, &res), -EPROTO);
    cr_assert_eq(resp_parse(":1\r\n", OP_SET, 1, &res), -EPROTO);
    cr_assert_eq(resp_parse("$2\r\nabcd\r\n", OP_GET, 1, &res), -EPROTO);
    cr_assert_eq(resp_parse("*1\r\n$1\r\na\r\n", OP_GET, 2, &res), -EPROTO);
    cr_assert_eq(resp_parse(":1x\r\n", OP_DELETE, 1, &res), -EPROTO);
    cr_assert_eq(resp_parse("+OK\n", OP_SET, 1, &res), -EPROTO);
}
