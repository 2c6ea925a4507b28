/*
 * Unit tests of the fake runtime itself (tests/support/fake_rt.h), with a toy product whose every
 * move a line of input dictates, so that what the fake reports about a real product (mc_server)
 * can be trusted: it honours each on_data() result as the runtime does, and each of its checks
 * fires when, and only when, its rule is broken.
 *
 * The toy's lines: "e<text>" echoes text; "f<text>" sends text to the next worker, which sends
 * it back ("F<text>" also touches the connection from there: a contract failure); "q" asks to
 * close, "x" to abort; "h<n>" holds n bytes of output; "w<n>" asks for n bytes of read buffer
 * and answers "ok" or "refused"; "b<n>" writes n bytes whatever the output limit; "c" stops with
 * RT_CONTINUE once, whatever the output, and is consumed at the next call; "C" does that for
 * ever; "p" answers RT_PAUSED, whatever is in flight.
 */
#include "fake_rt.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How the toy stops for backpressure: as the contract says (RT_CONTINUE), or wrongly. */
static bool toy_continues = true;
static unsigned toy_max_inflight = 1000; /* forwarded lines per connection before RT_PAUSED */

struct toy_msg {
    struct rt_msg hdr;
    struct conn *c; /* only for the contract test: the destination must not use it */
    bool touch;
    size_t len;
    char text[64];
};

struct toy_conn {
    unsigned inflight;
    bool continued; /* "c" stopped once already */
};

static int
toy_setup(unsigned w, unsigned n, const struct config *cfg, void **ctx)
{
    unsigned *id = malloc(2 * sizeof(*id));
    if (id == NULL) {
        return -ENOMEM;
    }
    id[0] = w;
    id[1] = n;
    *ctx = id;
    return 0;
}

static void
toy_teardown(void *ctx)
{
    free(ctx);
}

/* Forward one line's text to the next worker. */
static enum rt_result
toy_forward(struct conn *c, const unsigned *id, const char *text, size_t len, bool touch)
{
    struct toy_conn *st = conn_state(c);
    if (st->inflight >= toy_max_inflight) {
        return RT_PAUSED;
    }
    struct toy_msg *m = calloc(1, sizeof(*m));
    cr_assert_not_null(m);
    m->c = c;
    m->touch = touch;
    m->len = len < sizeof(m->text) ? len : sizeof(m->text);
    memcpy(m->text, text, m->len);
    if (conn_forward(c, (conn_worker(c) + 1) % id[1], &m->hdr) < 0) {
        free(m);
        return RT_ABORT;
    }
    st->inflight++;
    return RT_NEED_MORE;
}

/* One line (its bytes up to and including '\n'). Returns RT_NEED_MORE to go on. */
static enum rt_result
toy_line(struct conn *c, const unsigned *id, const char *p, size_t len)
{
    struct buf *out = conn_wbuf(c);
    long n = strtol(p + 1, NULL, 10);
    switch (p[0]) {
    case 'e':
        buf_append(out, p + 1, len - 1);
        return RT_NEED_MORE;
    case 'f':
    case 'F':
        return toy_forward(c, id, p + 1, len - 1, p[0] == 'F');
    case 'q':
        return RT_CLOSE;
    case 'x':
        return RT_ABORT;
    case 'h':
        conn_output_hold(c, n);
        return RT_NEED_MORE;
    case 'w':
        buf_puts(out, conn_rbuf_want(c, (size_t)n) == 0 ? "ok\n" : "refused\n");
        return RT_NEED_MORE;
    case 'b':
        for (long i = 0; i < n; i++) {
            buf_puts(out, "b");
        }
        return RT_NEED_MORE;
    default:
        return RT_NEED_MORE;
    }
}

static enum rt_result
toy_on_data(void *ctx, struct conn *c)
{
    struct buf *in = conn_rbuf(c);
    while (buf_len(in) > 0) {
        const char *p = buf_rptr(in);
        const char *nl = memchr(p, '\n', buf_len(in));
        if (nl == NULL) {
            return RT_NEED_MORE;
        }
        if (conn_output_full(c)) {
            return toy_continues ? RT_CONTINUE : RT_NEED_MORE;
        }
        struct toy_conn *st = conn_state(c);
        if (p[0] == 'C' || (p[0] == 'c' && !st->continued)) {
            st->continued = true;
            return RT_CONTINUE; /* not consumed */
        }
        st->continued = false;
        if (p[0] == 'p') {
            return RT_PAUSED; /* not consumed */
        }
        size_t len = (size_t)(nl - p) + 1;
        enum rt_result r = toy_line(c, ctx, p, len);
        if (r == RT_PAUSED) {
            return r; /* the line is parsed again when a reply comes back */
        }
        buf_consume(in, len);
        if (r != RT_NEED_MORE) {
            return r;
        }
    }
    return RT_NEED_MORE;
}

static void
toy_on_requests(void *ctx, struct rt_msg *const *m, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct toy_msg *t = (struct toy_msg *)m[i];
        if (t->touch) {
            (void)conn_wbuf(t->c);
        }
        rt_msg_return(m[i]);
    }
}

static void
toy_on_reply(void *ctx, struct conn *c, struct rt_msg *m)
{
    struct toy_msg *t = (struct toy_msg *)m;
    if (c != NULL) {
        struct toy_conn *st = conn_state(c);
        st->inflight--;
        buf_append(conn_wbuf(c), t->text, t->len);
    }
    free(t);
}

static void
toy_msg_free(struct rt_msg *m)
{
    free(m);
}

static const struct metric_def toy_metric_defs[] = {{"toy_lines", METRIC_COUNTER, "lines"}};
static const struct metric_table toy_tables[] = {{"toy", toy_metric_defs, 1}};

static const struct rt_product toy = {
    .name = "toy",
    .conn_state_size = sizeof(struct toy_conn),
    .request_max = 1 << 16,
    .reply_max = 1 << 16,
    .worker_setup = toy_setup,
    .worker_teardown = toy_teardown,
    .on_data = toy_on_data,
    .on_requests = toy_on_requests,
    .on_reply = toy_on_reply,
    .msg_free = toy_msg_free,
    .metrics = toy_tables,
    .nmetrics = 1,
};

static struct fake_rt *rt;

static struct fake_rt *
start(struct fake_rt_opts o)
{
    if (o.reply_part_max == 0) {
        o.reply_part_max = 64;
    }
    rt = fake_rt_create(&toy, &o);
    cr_assert_not_null(rt);
    return rt;
}

static void
cleanup(void)
{
    fake_rt_destroy(&rt);
}

TestSuite(fake_rt, .fini = cleanup);

Test(fake_rt, output_split_reads_and_drains_reach_the_client_whole)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "ehello\nfworld\n");
    while (fake_conn_read(fc, 3) > 0) {
        fake_rt_deliver_all(rt);
    }
    cr_assert_str_eq(fake_conn_text(fc), "", "nothing reaches the client before it reads");
    while (fake_conn_drain(fc, 2) > 0) {
    }
    cr_assert_str_eq(fake_conn_text(fc), "hello\nworld\n");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, rt_continue_is_called_again_once_the_output_drains)
{
    start((struct fake_rt_opts){.nworkers = 1, .output_limit = 8});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "e12345\ne67890\neabc\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CONTINUE);
    cr_assert(fake_conn_resume_pending(fc));
    unsigned calls = fake_conn_data_calls(fc);
    fake_conn_drain(fc, 3);
    cr_assert_eq(fake_conn_data_calls(fc), calls, "still full: not called");
    fake_conn_drain(fc, SIZE_MAX);
    cr_assert_gt(fake_conn_data_calls(fc), calls, "called again once drained");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "12345\n67890\nabc\n");
    cr_assert_eq(fake_rt_check_quiescent(rt), 0);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, rt_need_more_with_requests_left_is_reported_as_a_stall)
{
    toy_continues = false;
    start((struct fake_rt_opts){.nworkers = 1, .output_limit = 8});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "e12345\ne67890\neabc\n");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "12345\n67890\n", "nothing calls on_data again");
    cr_assert_eq(fake_rt_check_quiescent(rt), 1);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_STALL), 1);
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "12345\n67890\nabc\n");
}

Test(fake_rt, rt_paused_is_called_again_when_a_reply_comes_back)
{
    toy_max_inflight = 1;
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "fa\nfb\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_PAUSED);
    fake_conn_send_str(fc, "ec\n");
    cr_assert_eq(fake_conn_read(fc, SIZE_MAX), 0, "a paused connection is not read");
    fake_rt_deliver(rt, 0, 1, 1);
    fake_rt_deliver(rt, 1, 0, 1);
    cr_assert_not(fake_conn_paused(fc), "the reply lifted the pause");
    cr_assert_eq(fake_rt_queued(rt, 0, 1), 1, "and on_data forwarded the next line");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "a\nb\nc\n");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, rt_close_waits_for_replies_in_flight_and_output)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "fa\nq\neb\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_not(fake_conn_closed(fc));
    fake_rt_deliver_all(rt);
    cr_assert_not(fake_conn_closed(fc), "the reply is not sent yet");
    fake_conn_drain(fc, SIZE_MAX);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_close_reason(fc), "RT_CLOSE");
    cr_assert_str_eq(fake_conn_text(fc), "a\n");
}

Test(fake_rt, rt_abort_closes_at_once_and_late_replies_find_no_connection)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "fa\nea\nx\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_close_reason(fc), "RT_ABORT");
    struct fake_conn *again = fake_conn_open(rt, 0); /* takes the same slot */
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "");
    cr_assert_str_eq(fake_conn_text(again), "", "the late reply is not the new connection's");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, output_still_held_at_close_is_reported)
{
    start((struct fake_rt_opts){.nworkers = 1});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "h10\nq\n");
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc));
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_HOLD), 1);
}

Test(fake_rt, held_output_counts_towards_the_limit)
{
    start((struct fake_rt_opts){.nworkers = 1, .output_limit = 100});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "h100\nea\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CONTINUE);
    cr_assert_eq(fake_conn_output(fc), 100);
    cr_assert_eq(fake_conn_held(fc), 100);
    cr_assert_gt(fake_conn_unread(fc), 0, "the echo waits: held bytes fill the output");
}

Test(fake_rt, output_past_the_bound_is_reported_once_per_connection)
{
    start((struct fake_rt_opts){.nworkers = 1, .output_limit = 100, .reply_part_max = 50});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "b300\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_rt_output_bound(rt), 100 + 50 + 5);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_BOUND), 1);
    fake_rt_run(rt);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_BOUND), 1);
}

Test(fake_rt, conn_call_from_another_worker_is_a_contract_failure)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "Fa\n");
    fake_rt_run(rt);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_CONTRACT), 1);
    cr_assert_not_null(strstr(fake_rt_first_failure(rt, FAKE_CHECK_CONTRACT), "from worker 1"));
}

Test(fake_rt, rbuf_want_past_the_budget_is_refused)
{
    start((struct fake_rt_opts){.nworkers = 1, .read_buffer = 1024, .read_budget = 1024});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "w2000\nw3000\n");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "ok\nrefused\n");
    cr_assert_eq(fake_rt_wants_refused(rt), 1);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, eof_closes_once_everything_is_answered)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 1);
    fake_conn_send_str(fc, "fa\n");
    fake_conn_shutdown(fc);
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_not(fake_conn_closed(fc));
    fake_rt_run(rt);
    cr_assert(fake_conn_closed(fc));
    cr_assert_str_eq(fake_conn_close_reason(fc), "eof");
    cr_assert_str_eq(fake_conn_text(fc), "a\n");
}

Test(fake_rt, rt_continue_with_nothing_to_send_is_called_again_at_the_next_turn)
{
    start((struct fake_rt_opts){.nworkers = 1});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "c\neb\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CONTINUE);
    cr_assert_eq(fake_conn_output(fc), 0, "nothing to send, nothing in flight");
    cr_assert(fake_conn_resume_pending(fc));
    unsigned calls = fake_conn_data_calls(fc);
    fake_conn_read(fc, 0);
    cr_assert_eq(fake_conn_data_calls(fc), calls + 1, "called again without new bytes");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "b\n");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0, "%s",
                 fake_rt_first_failure(rt, FAKE_CHECK_COUNT));
}

Test(fake_rt, rt_continue_with_room_left_is_called_again_once_some_output_is_sent)
{
    start((struct fake_rt_opts){.nworkers = 1});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "ea\nc\neb\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_CONTINUE);
    unsigned calls = fake_conn_data_calls(fc);
    fake_conn_read(fc, 0);
    cr_assert_eq(fake_conn_data_calls(fc), calls, "not before some output is sent");
    fake_conn_drain(fc, 1);
    cr_assert_eq(fake_conn_data_calls(fc), calls + 1, "called again once a byte was sent");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "a\nb\n");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0, "%s",
                 fake_rt_first_failure(rt, FAKE_CHECK_COUNT));
}

Test(fake_rt, rt_continue_for_ever_without_progress_is_reported_as_a_stall)
{
    start((struct fake_rt_opts){.nworkers = 1});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "ea\nC\n");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "a\n");
    cr_assert_geq(fake_conn_data_calls(fc), 3, "called again while nothing waits");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_STALL), 1);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_CONTRACT), 0);
    cr_assert_not_null(strstr(fake_rt_first_failure(rt, FAKE_CHECK_STALL), "RT_CONTINUE"));
}

Test(fake_rt, every_reply_calls_on_data_again_even_with_nothing_to_read)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "fa\n");
    fake_conn_read(fc, SIZE_MAX);
    cr_assert_eq(fake_conn_last_result(fc), RT_NEED_MORE, "not paused");
    unsigned calls = fake_conn_data_calls(fc);
    fake_rt_deliver(rt, 0, 1, 1);
    fake_rt_deliver(rt, 1, 0, 1);
    cr_assert_eq(fake_conn_data_calls(fc), calls + 1);
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "a\n");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, reply_for_a_connection_whose_full_output_is_unsent_waits_for_a_send)
{
    start((struct fake_rt_opts){.nworkers = 2, .output_limit = 8, .reply_part_max = 16});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "fa\nb10\n");
    fake_conn_read(fc, SIZE_MAX);
    unsigned calls = fake_conn_data_calls(fc);
    fake_rt_deliver(rt, 0, 1, 1);
    fake_rt_deliver(rt, 1, 0, 1);
    cr_assert_eq(fake_conn_data_calls(fc), calls, "the output is full and waits to be sent");
    cr_assert(fake_conn_resume_pending(fc));
    fake_conn_drain(fc, 6);
    cr_assert_eq(fake_conn_data_calls(fc), calls + 1, "called once some output left");
    fake_rt_run(rt);
    cr_assert_str_eq(fake_conn_text(fc), "bbbbbbbbbba\n");
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_COUNT), 0);
}

Test(fake_rt, rt_paused_with_nothing_in_flight_is_a_contract_failure)
{
    start((struct fake_rt_opts){.nworkers = 2});
    struct fake_conn *fc = fake_conn_open(rt, 0);
    fake_conn_send_str(fc, "p\n");
    fake_rt_run(rt);
    cr_assert_eq(fake_conn_last_result(fc), RT_PAUSED);
    cr_assert_eq(fake_rt_failures(rt, FAKE_CHECK_CONTRACT), 1);
    cr_assert_not_null(strstr(fake_rt_first_failure(rt, FAKE_CHECK_CONTRACT), "RT_PAUSED"));
}
