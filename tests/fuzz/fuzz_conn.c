/*
 * libFuzzer target for the petrel product's whole connection path (mc_server, and resp_server for
 * RESP input: parse, execute on the workers' real shards, forward, keep reply order, obey
 * backpressure), driven through the fake runtime of tests/support/fake_rt.h: one client
 * connection, 2 simulated workers (3 when the input asks, so that replies from two peers can
 * overtake each other).
 *
 * Input:  byte 0     the set-up: bit 0: 3 workers instead of 2; bits 1-2: the connection's
 *                    worker (modulo the workers); bits 3-4: the output limit (1 MiB, 4 KiB, 16 KiB,
 *                    64 KiB); bit 5: read buffers of 1 KiB that may grow by 2 KiB only, so that
 *                    conn_rbuf_want() refuses large values; bit 6: klog sampling; bit 7: read
 *                    buffers of 1 KiB.
 *         byte 1     K, the number of control bytes that follow.
 *         K bytes    the control stream: what happens, step by step (see step()): the client
 *                    sends the next bytes of the requests in pieces of chosen sizes and the
 *                    server reads them, the client drains chosen amounts of output, messages of
 *                    a chosen pair of workers are delivered, a forward fails, the client shuts
 *                    down or resets.
 *         the rest   the request bytes, as the client sends them. Bytes that start with '*' go to
 *                    a connection of the RESP port (--resp-port), any others to the memcached
 *                    port's.
 * After the control stream, whatever is left is sent, and everything runs until nothing moves.
 *
 * Checks, for every input:
 *   - the fake runtime's checks (fake_rt.h): contract, output hold (never below 0, back to 0 at
 *     close), the output bound, stalls (complete requests left unread with nothing to call
 *     on_data again, or RT_CONTINUE for ever without progress);
 *   - AddressSanitizer, UBSan and LeakSanitizer (the fuzz build): no memory error, nothing leaked
 *     once the fake runtime is torn down;
 *   - the output does not depend on the schedule: the client receives the same bytes as in a
 *     canonical run (the same requests sent whole, every message delivered and all output drained
 *     at once), or a prefix of them if it reset the connection. Not compared: STAT lines (a
 *     "stats" reply reads counters when it completes, which depends on the schedule), runs with an
 *     injected forward failure or a tick (a tick publishes counters), runs where conn_rbuf_want()
 *     refused (whether a request asks depends on how it arrived), runs during which the clock
 *     passed a second (TTLs), and inputs with a metadump or "stats detail" (schedule_dependent).
 *
 * The product's log goes to a memory file; an error line logged while an input runs is reported
 * (e.g. "forwarded request does not parse").
 *
 * What fails: every check aborts (a crash, with the input saved by libFuzzer): a memory error, a
 * leak, and each of the fake runtime's checks, an error line in the log and a differing output.
 * For triage, FUZZ_CONN_REPORT=1 makes the contract, bound, stall, log and output checks only
 * report instead (the first input of each kind is printed, and a count at exit; a differing
 * output in a run where another of them failed is then not fatal either, as a stall also loses
 * requests); the hold check and the sanitizers always abort. FUZZ_CONN_SHOW=1 prints what each
 * run received, FUZZ_CONN_SAVE_DIR=dir saves the first input of each reported kind there.
 */
#include "fake_rt.h"

#include "petrel/log.h"
#include "petrel/mc_server.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define ITEM_MAX    8192
#define PART_MAX    (ITEM_MAX + 512) /* the VALUE block of the largest item */
#define SMALL_BUF   1024
#define SMALL_GROW  2048
#define KLOG_EVERY  3
#define QUIET_LOOPS 8 /* stall checks and runs after the input ends */

/*
 * 9 MiB split into 2 or 3 shards gives each a multiple of 3 segments of 16 KiB, and so a hash
 * table whose size is a whole number of pages: seg's map_region() cannot unmap the alignment
 * tail past a table of any other size (munmap fails on an address inside a page) and would leak
 * 2 MiB of address space per shard, until after some 30,000 inputs mmap fails.
 */
static const char *const product_argv[] = {"--memory-limit=9", "--max-item-size=8k",
                                           "--segment-size=16k", "--resp-port=6379", NULL};
static const size_t output_limits[4] = {1u << 20, 4096, 16384, 65536};

/* What an input asks for. */
struct plan {
    unsigned nworkers;
    unsigned worker;
    unsigned proto; /* the connection's: RESP (1) when the request bytes start with '*' */
    struct fake_rt_opts opts;
    const uint8_t *ctl;
    size_t nctl;
    const uint8_t *data;
    size_t ndata;
};

/* What a run gave. */
struct outcome {
    struct buf out; /* what the client received */
    size_t sent;    /* request bytes the client sent */
    bool reset;     /* the client reset the connection */
    bool shut;      /* the client shut its side down before sending everything */
    bool skip_diff; /* something made the output depend on the schedule */
    bool gaps;      /* a check that only reports failed: the output may differ for that reason */
};

/* Which checks abort; the others only report (see the top of the file). */
enum { KIND_DIFF = FAKE_CHECK_COUNT, KIND_LOG, KIND_COUNT };
static bool fatal[KIND_COUNT] = {
    [FAKE_CHECK_CONTRACT] = true, [FAKE_CHECK_HOLD] = true, [FAKE_CHECK_BOUND] = true,
    [FAKE_CHECK_STALL] = true,    [KIND_DIFF] = true,       [KIND_LOG] = true,
};
static unsigned long reported[KIND_COUNT];

static const uint8_t *cur_input;
static size_t cur_size;
static int log_fd = -1; /* the product's log, read back after each input */
static bool show;       /* FUZZ_CONN_SHOW: print what each run received, for triage */

static const char *
kind_name(unsigned kind)
{
    return kind == KIND_DIFF  ? "output"
           : kind == KIND_LOG ? "log"
                              : fake_check_name((enum fake_check)kind);
}

/* The input of a reported failure: in hex on stderr, and into FUZZ_CONN_SAVE_DIR if set. */
static void
print_input(unsigned kind)
{
    fprintf(stderr, "fuzz_conn: input (%zu bytes):", cur_size);
    for (size_t i = 0; i < cur_size; i++) {
        fprintf(stderr, "%s%02x", i % 32 == 0 ? "\n  " : " ", cur_input[i]);
    }
    fputc('\n', stderr);
    const char *dir = getenv("FUZZ_CONN_SAVE_DIR");
    if (dir != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s-input", dir, kind_name(kind));
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(cur_input, 1, cur_size, f) != cur_size) {
            fprintf(stderr, "fuzz_conn: cannot write %s\n", path);
        }
        if (f != NULL) {
            fclose(f);
        }
    }
}

/* A broken check: abort if it is fatal, else report its first occurrence and count it. */
static void
broken(unsigned kind, bool abort_now, const char *what)
{
    if (abort_now) {
        fprintf(stderr, "fuzz_conn: %s check failed: %s\n", kind_name(kind), what);
        abort();
    }
    if (reported[kind]++ == 0) {
        fprintf(stderr, "fuzz_conn: %s check failed (reported, not fatal): %s\n", kind_name(kind),
                what);
        print_input(kind);
    }
}

static void
summary(void)
{
    for (unsigned k = 0; k < KIND_COUNT; k++) {
        if (reported[k] > 0) {
            fprintf(stderr, "fuzz_conn: %lu inputs broke the %s check (not fatal)\n", reported[k],
                    kind_name(k));
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *report = getenv("FUZZ_CONN_REPORT");
    if (report != NULL && strcmp(report, "0") != 0) {
        for (unsigned k = 0; k < KIND_COUNT; k++) {
            fatal[k] = k == FAKE_CHECK_HOLD;
        }
    }
    const char *sh = getenv("FUZZ_CONN_SHOW");
    show = sh != NULL && strcmp(sh, "0") != 0;
    atexit(summary);
    /* The product's log goes to a memory file, read after each input: a "verbosity 2" request
     * would otherwise log every later request to stderr, and an error line is worth a report. */
    log_fd = memfd_create("fuzz_conn-log", MFD_CLOEXEC);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", log_fd);
    if (log_fd < 0 || log_setup(LOG_WARN, path) < 0) {
        fprintf(stderr, "fuzz_conn: the log stays on stderr\n");
        log_fd = -1;
    }
    return 0;
}

/* An error line the product logged while the input ran is reported; the log is emptied. Lines
 * read "<time> <thread> <level>: <text>"; only the level field counts (a debug line may quote a
 * request that says "error: "). */
static void
check_log(void)
{
    if (log_fd < 0) {
        return;
    }
    char text[8192];
    ssize_t n = pread(log_fd, text, sizeof(text) - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    for (char *line = text, *next; *line != '\0'; line = next) {
        char *nl = strchr(line, '\n');
        next = nl != NULL ? nl + 1 : line + strlen(line);
        if (nl != NULL) {
            *nl = '\0';
        }
        char *sp1 = strchr(line, ' ');
        char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
        if (sp2 != NULL && strncmp(sp2 + 1, "error: ", 7) == 0) {
            broken(KIND_LOG, fatal[KIND_LOG], sp2 + 1);
            break;
        }
    }
    if (ftruncate(log_fd, 0) < 0) {
        fprintf(stderr, "fuzz_conn: cannot empty the log\n");
    }
}

static bool
parse_plan(const uint8_t *data, size_t size, struct plan *pl)
{
    if (size < 2) {
        return false;
    }
    uint8_t cfg = data[0];
    size_t k = data[1];
    if (k > size - 2) {
        k = size - 2;
    }
    *pl = (struct plan){
        .nworkers = cfg & 1 ? 3 : 2,
        .ctl = data + 2,
        .nctl = k,
        .data = data + 2 + k,
        .ndata = size - 2 - k,
    };
    pl->worker = ((cfg >> 1) & 3) % pl->nworkers;
    pl->proto = pl->ndata > 0 && pl->data[0] == '*' ? 1 : 0;
    pl->opts = (struct fake_rt_opts){
        .nworkers = pl->nworkers,
        .output_limit = output_limits[(cfg >> 3) & 3],
        .read_buffer = cfg & 0xa0 ? SMALL_BUF : 0,
        .read_budget = cfg & 0x20 ? SMALL_GROW : 0,
        .klog_every = cfg & 0x40 ? KLOG_EVERY : 0,
        .reply_part_max = PART_MAX,
        .tables = &mc_option_table,
        .ntables = 1,
        .argv = product_argv,
    };
    return true;
}

static struct fake_rt *
start(const struct fake_rt_opts *o)
{
    /* "verbosity" in an earlier input must not leave every later run logging each request. */
    log_set_level(LOG_WARN);
    struct fake_rt *rt = fake_rt_create(&mc_product, o);
    if (rt == NULL) {
        abort(); /* the options are fixed: a set-up failure is a bug of the target */
    }
    return rt;
}

/* The worker pair with index i (0 .. n(n-1)-1): from, and to != from. */
static void
pair_of(unsigned n, unsigned i, unsigned *from, unsigned *to)
{
    *from = i / (n - 1);
    unsigned t = i % (n - 1);
    *to = t >= *from ? t + 1 : t;
}

/* The client sends up to len more request bytes (none once it shut down). */
static size_t
send_more(struct fake_conn *fc, const struct plan *pl, struct outcome *oc, size_t len)
{
    if (oc->shut || fake_conn_closed(fc)) {
        return 0;
    }
    if (len > pl->ndata - oc->sent) {
        len = pl->ndata - oc->sent;
    }
    fake_conn_send(fc, pl->data + oc->sent, len);
    oc->sent += len;
    return len;
}

/*
 * One control byte: op in the top 3 bits, arg (0..31) in the rest.
 *   0  send arg+1 bytes, and the server reads that much
 *   1  send (arg+1)*64 bytes, and the server reads that much
 *   2  the client drains (arg+1)^2 bytes of output (all for arg 31)
 *   3  deliver 1..4 messages of one worker pair
 *   4  deliver every message
 *   5  the server reads up to arg+1 bytes, without new ones sent
 *   6  arg 0-7: tick; 8-15: the next forward fails; 16-23: a turn without reading;
 *      24-30: the client shuts down; 31: the client resets the connection
 *   7  send (arg+1)*8 bytes that the server does not read yet
 */
static void
step(struct fake_rt *rt, struct fake_conn *fc, const struct plan *pl, struct outcome *oc, uint8_t b)
{
    unsigned op = b >> 5, arg = b & 31, n = pl->nworkers, from, to;
    size_t len;
    switch (op) {
    case 0:
    case 1:
        len = send_more(fc, pl, oc, op == 0 ? arg + 1 : (arg + 1) * 64);
        fake_conn_read(fc, len > 0 ? len : 1);
        break;
    case 2:
        fake_conn_drain(fc, arg == 31 ? SIZE_MAX : (size_t)(arg + 1) * (arg + 1));
        break;
    case 3:
        pair_of(n, arg % (n * (n - 1)), &from, &to);
        fake_rt_deliver(rt, from, to, 1 + (arg / (n * (n - 1))) % 4);
        break;
    case 4:
        fake_rt_deliver_all(rt);
        break;
    case 5:
        fake_conn_read(fc, arg + 1);
        break;
    case 6:
        if (arg < 8) {
            fake_rt_tick(rt);
            oc->skip_diff = true;
        } else if (arg < 16) {
            fake_rt_fail_forwards(rt, 1);
            oc->skip_diff = true;
        } else if (arg < 24) {
            fake_conn_read(fc, 0);
        } else if (arg < 31) {
            fake_conn_shutdown(fc);
            oc->shut = true;
        } else {
            fake_conn_reset(fc);
            oc->reset = true;
        }
        break;
    default:
        send_more(fc, pl, oc, (size_t)(arg + 1) * 8);
        break;
    }
}

/* Run until nothing moves, calling on_data once more wherever requests may be stuck. */
static void
settle(struct fake_rt *rt)
{
    fake_rt_run(rt);
    for (int i = 0; i < QUIET_LOOPS && fake_rt_check_quiescent(rt) > 0; i++) {
        fake_rt_run(rt);
    }
}

/* What a run received, escaped, on stderr. */
static void
print_output(const char *what, const struct buf *b)
{
    fprintf(stderr, "fuzz_conn: %s (%zu bytes): \"", what, buf_len(b));
    for (size_t i = 0; i < buf_len(b); i++) {
        unsigned char ch = (unsigned char)buf_rptr(b)[i];
        if (ch == '\n') {
            fputs("\\n\n  ", stderr);
        } else if (ch == '\r') {
            fputs("\\r", stderr);
        } else if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            fprintf(stderr, "\\x%02x", ch);
        } else {
            fputc(ch, stderr);
        }
    }
    fputs("\"\n", stderr);
}

/* Collect the fake's verdicts and the client's bytes, then free everything. */
static void
finish(struct fake_rt **rt, struct fake_conn *fc, struct outcome *oc)
{
    if (!fake_conn_closed(fc)) {
        fake_conn_shutdown(fc);
        settle(*rt);
    }
    fake_conn_reset(fc); /* closes it now if it is still open: the hold must be back to 0 */
    fake_rt_run(*rt);    /* late replies find no connection */
    if (fake_rt_wants_refused(*rt) > 0) {
        oc->skip_diff = true;
    }
    const struct buf *got = fake_conn_received(fc);
    if (buf_len(got) > 0) {
        buf_append(&oc->out, buf_rptr(got), buf_len(got));
    }
    for (unsigned k = 0; k < FAKE_CHECK_COUNT; k++) {
        if (fake_rt_failures(*rt, k) > 0) {
            if (fatal[k]) {
                fake_rt_print_failures(*rt, stderr);
            }
            oc->gaps |= !fatal[k];
            broken(k, fatal[k], fake_rt_first_failure(*rt, k));
        }
    }
    fake_rt_destroy(rt);
}

/* The fuzzed schedule. */
static void
run_fuzzed(const struct plan *pl, struct outcome *oc)
{
    struct fake_rt *rt = start(&pl->opts);
    struct fake_conn *fc = fake_conn_open_proto(rt, pl->worker, pl->proto);
    for (size_t i = 0; i < pl->nctl && !fake_conn_closed(fc); i++) {
        step(rt, fc, pl, oc, pl->ctl[i]);
    }
    send_more(fc, pl, oc, SIZE_MAX);
    settle(rt);
    finish(&rt, fc, oc);
}

/* The canonical schedule for the first `sent` request bytes: sent whole, everything at once. */
static void
run_canonical(const struct plan *pl, size_t sent, struct outcome *oc)
{
    struct fake_rt_opts o = pl->opts;
    o.read_budget = 0; /* refusals depend on the schedule; such runs are not compared */
    struct fake_rt *rt = start(&o);
    struct fake_conn *fc = fake_conn_open_proto(rt, pl->worker, pl->proto);
    fake_conn_send(fc, pl->data, sent);
    oc->sent = sent;
    settle(rt);
    finish(&rt, fc, oc);
}

/* b without its "STAT ..." lines (and, for a cut output, without its last partial line). */
static void
strip_stats(const struct buf *b, bool cut, struct buf *out)
{
    if (buf_len(b) == 0) {
        return; /* an empty buf may have no memory: no pointer into it */
    }
    const char *p = buf_rptr(b), *end = p + buf_len(b);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL && cut) {
            break;
        }
        const char *e = nl != NULL ? nl + 1 : end;
        if ((size_t)(e - p) < 5 || memcmp(p, "STAT ", 5) != 0) {
            buf_append(out, p, (size_t)(e - p));
        }
        p = e;
    }
}

/* Up to 100 bytes of b from byte `from`, for a message. */
static int
excerpt_len(const struct buf *b, size_t from)
{
    size_t n = buf_len(b) > from ? buf_len(b) - from : 0;
    return (int)(n < 100 ? n : 100);
}

static const char *
excerpt(const struct buf *b, size_t from)
{
    return excerpt_len(b, from) > 0 ? buf_rptr(b) + from : "";
}

static int64_t
second_now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec;
}

/*
 * Requests whose replies depend on the schedule by design, as in memcached: a metadump walks
 * the shards while the connection's later requests run (an item written meanwhile may or may
 * not be listed), and it is refused behind replies not yet sent; "stats detail on|off" switches
 * at once, while requests sent before it may still be on their way to their shard.
 */
static bool
schedule_dependent(const struct plan *pl)
{
    return memmem(pl->data, pl->ndata, "lru_crawler", 11) != NULL ||
           memmem(pl->data, pl->ndata, "stats detail", 12) != NULL;
}

/* A differing output is fatal unless a check that only reports failed in either run: a product
 * that leaves requests unread (a stall) also loses them when the client shuts down. */
static void
compare(const struct outcome *fuzzed, const struct outcome *canon)
{
    struct buf a, b;
    buf_init(&a, 4096, SIZE_MAX / 2);
    buf_init(&b, 4096, SIZE_MAX / 2);
    strip_stats(&fuzzed->out, fuzzed->reset, &a);
    strip_stats(&canon->out, false, &b);
    /* Where they first differ (an empty buf may have no memory: no pointer into it). */
    size_t i = 0;
    while (i < buf_len(&a) && i < buf_len(&b) && buf_rptr(&a)[i] == buf_rptr(&b)[i]) {
        i++;
    }
    bool ok = i == buf_len(&a) && (fuzzed->reset || i == buf_len(&b));
    if (!ok) {
        size_t from = i > 40 ? i - 40 : 0;
        char what[512];
        snprintf(what, sizeof(what),
                 "the client got %zu bytes, the canonical run %zu%s; they differ at byte %zu:\n"
                 "  fuzzed:    \"%.*s\"\n  canonical: \"%.*s\"",
                 buf_len(&a), buf_len(&b), fuzzed->reset ? " (reset: a prefix is enough)" : "", i,
                 excerpt_len(&a, from), excerpt(&a, from), excerpt_len(&b, from),
                 excerpt(&b, from));
        buf_free(&a);
        buf_free(&b);
        broken(KIND_DIFF, fatal[KIND_DIFF] && !fuzzed->gaps && !canon->gaps, what);
        return;
    }
    buf_free(&a);
    buf_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct plan pl;
    if (!parse_plan(data, size, &pl)) {
        return 0;
    }
    cur_input = data;
    cur_size = size;
    int64_t t0 = second_now(CLOCK_REALTIME_COARSE), u0 = (int64_t)time(NULL);
    struct outcome fuzzed = {0}, canon = {0};
    buf_init(&fuzzed.out, 4096, SIZE_MAX / 2);
    buf_init(&canon.out, 4096, SIZE_MAX / 2);
    run_fuzzed(&pl, &fuzzed);
    if (show) {
        print_output("fuzzed run", &fuzzed.out);
    }
    if (!fuzzed.skip_diff && !schedule_dependent(&pl)) {
        run_canonical(&pl, fuzzed.sent, &canon);
        if (show) {
            print_output("canonical run", &canon.out);
        }
        bool same_second = second_now(CLOCK_REALTIME_COARSE) == t0 && (int64_t)time(NULL) == u0;
        if (!canon.skip_diff && same_second) {
            compare(&fuzzed, &canon);
        }
    }
    buf_free(&fuzzed.out);
    buf_free(&canon.out);
    check_log();
    return 0;
}
