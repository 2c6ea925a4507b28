/*
 * resp_admin: the RESP commands about the connection and the server rather than keys: HELLO,
 * AUTH, CLIENT, CONFIG and INFO. Contract in resp_cmd.h; docs/resp.md lists what each answers.
 */
#include "resp_cmd.h"

#include "petrel_build.h"

#include "petrel/log.h"
#include "petrel/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOAUTH_HELLO                                                                               \
    "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "     \
    "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "        \
    "protocol version at the same time"
#define WRONGPASS "-WRONGPASS invalid username-password pair or user is disabled."

static int
reply_fmt(struct buf *b, const char *fmt, const struct resp_arg *a)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg), fmt, (int)(a->len > 128 ? 128 : a->len), a->p);
    return resp_compose_error(b, msg, (size_t)n);
}

/* ---- authentication ---- */

/* Compare without an early exit on the first different byte. */
static bool
same_secret(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen && i < blen; i++) {
        d |= (unsigned char)(a[i] ^ b[i]);
    }
    return d == 0;
}

/* Redis's check of a user and password: only "default", which needs the password when one is
 * set and takes any without one. */
static bool
auth_ok(const struct resp_worker *w, const struct resp_arg *user, const struct resp_arg *pass)
{
    if (user != NULL && !(user->len == 7 && memcmp(user->p, "default", 7) == 0)) {
        return false;
    }
    return w->password == NULL || same_secret(pass->p, pass->len, w->password, strlen(w->password));
}

static void
set_authed(struct resp_conn *st, bool on)
{
    st->authed = on;
    st->parser.auth_required = !on;
}

void
resp_auth_reset(struct resp_worker *w, struct resp_conn *st)
{
    set_authed(st, w->password == NULL);
}

int
resp_auth(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req, struct buf *b)
{
    if (req->argc > 3) {
        return reply_err(b, "syntax error");
    }
    if (req->argc == 2 && w->password == NULL) {
        return reply_err(b, "AUTH <password> called without any password configured for the "
                            "default user. Are you sure your configuration is correct?");
    }
    if (!auth_ok(w, req->argc == 3 ? &req->argv[1] : NULL, &req->argv[req->argc - 1])) {
        return reply_err(b, WRONGPASS); /* a client already in stays in, as in Redis */
    }
    set_authed(st, true);
    return reply_ok(b);
}

/* A client name as Redis takes it: printable ASCII without spaces. */
static bool
name_ok(const struct resp_arg *n)
{
    for (size_t k = 0; k < n->len; k++) {
        if (n->p[k] < '!' || n->p[k] > '~') {
            return false;
        }
    }
    return true;
}

static void
set_name(struct resp_conn *st, const struct resp_arg *n)
{
    size_t len = n->len < sizeof(st->name) - 1 ? n->len : sizeof(st->name) - 1;
    memcpy(st->name, n->p, len);
    st->name[len] = '\0';
}

#define BAD_NAME "Client names cannot contain spaces, newlines or special characters."

/* HELLO [protover [AUTH user pass] [SETNAME name]]: Redis 7.0's checks in its order, and its
 * reply, as a map. */
int
resp_hello(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req, struct buf *b)
{
    long long v = 0;
    if (req->argc >= 2) {
        if (!arg_ll(&req->argv[1], &v)) {
            return reply_err(b, "Protocol version is not an integer or out of range");
        }
        if (v != 2 && v != 3) {
            return reply_err(b, "-NOPROTO unsupported protocol version");
        }
    }
    const struct resp_arg *user = NULL, *pass = NULL, *name = NULL;
    for (uint32_t i = 2; i < req->argc; i++) {
        uint32_t more = req->argc - 1 - i;
        if (arg_is(&req->argv[i], "auth") && more >= 2) {
            user = &req->argv[i + 1];
            pass = &req->argv[i + 2];
            i += 2;
        } else if (arg_is(&req->argv[i], "setname") && more >= 1) {
            name = &req->argv[++i];
        } else {
            return reply_fmt(b, "Syntax error in HELLO option '%.*s'", &req->argv[i]);
        }
    }
    if (user != NULL) {
        if (!auth_ok(w, user, pass)) {
            return reply_err(b, WRONGPASS);
        }
        set_authed(st, true);
    }
    if (!st->authed) {
        return reply_err(b, NOAUTH_HELLO);
    }
    if (name != NULL) {
        if (!name_ok(name)) {
            return reply_err(b, BAD_NAME);
        }
        set_name(st, name);
    }
    if (v != 0) {
        st->proto = v == 3 ? RESP_3 : RESP_2;
    }
    static const char *const kv[] = {"server", "redis", "version", REDIS_VERSION};
    int rc = resp_compose_map(b, st->proto, 7);
    for (size_t k = 0; rc == 0 && k < 4; k++) {
        rc = resp_compose_bulk(b, kv[k], strlen(kv[k]));
    }
    rc = rc < 0 ? rc : resp_compose_bulk(b, "proto", 5);
    rc = rc < 0 ? rc : resp_compose_int(b, st->proto);
    rc = rc < 0 ? rc : resp_compose_bulk(b, "id", 2);
    rc = rc < 0 ? rc : resp_compose_int(b, (int64_t)st->id);
    rc = rc < 0 ? rc : resp_compose_bulk(b, "mode", 4);
    rc = rc < 0 ? rc : resp_compose_bulk(b, "standalone", 10);
    rc = rc < 0 ? rc : resp_compose_bulk(b, "role", 4);
    rc = rc < 0 ? rc : resp_compose_bulk(b, "master", 6);
    rc = rc < 0 ? rc : resp_compose_bulk(b, "modules", 7);
    return rc < 0 ? rc : resp_compose_array(b, 0);
}

/* ---- CLIENT ---- */

static uint64_t
mono_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

void
resp_conn_born(struct resp_conn *st)
{
    st->born = mono_secs();
}

/*
 * One CLIENT LIST line of a RESP connection, in Redis's order, with what Petrel knows of it:
 * qbuf/qbuf-free its read buffer, argv-mem the arguments of the request being run (only the
 * connection asking has one), obl its write buffer's unsent bytes, oll its replies queued behind
 * one being answered elsewhere and omem what they hold, rbs the read buffer's allocation, tot-mem
 * its buffers and that. rbp (a peak) and events are left out, as Petrel does not keep them;
 * clients that read CLIENT INFO as integers need the rest.
 */
static int
client_line(struct buf *b, const struct rt_conn_info *ci, const struct resp_conn *st,
            size_t argv_mem)
{
    uint64_t now = mono_secs();
    return buf_printf(
        b,
        "id=%" PRIu64 " addr=%s laddr=%s fd=%d name=%s age=%" PRIu64 " idle=%" PRIu64
        " flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=%zu qbuf-free=%zu argv-mem=%zu "
        "multi-mem=0 rbs=%zu obl=%zu oll=%u omem=%zu tot-mem=%zu cmd=%s%s%s "
        "user=default redir=-1 resp=%d\n",
        st->id, ci->peer, ci->listener, ci->fd, st->name, now > st->born ? now - st->born : 0,
        ci->idle_secs, ci->rbuf_len, ci->rbuf_cap - ci->rbuf_len, argv_mem, ci->rbuf_cap,
        ci->wbuf_len, st->rc.qlen, st->rc.held,
        ci->rbuf_cap + ci->wbuf_cap + st->rc.held + argv_mem,
        st->last_cmd != NULL ? st->last_cmd : "NULL", st->last_sub[0] != '\0' ? "|" : "",
        st->last_sub, st->proto == RESP_3 ? 3 : 2);
}

struct client_walk {
    const struct resp_conn *only; /* CLIENT INFO: this connection */
    const struct resp_conn *self; /* the connection asking, and its request's arguments */
    size_t argv_mem;
    struct buf *out;
    int rc;
};

static void
client_each(void *arg, const struct rt_conn_info *ci)
{
    struct client_walk *cw = arg;
    const struct resp_conn *st = ci->product;
    if (cw->rc < 0 || st == NULL || st->kind != CONN_RESP || (cw->only && st != cw->only)) {
        return;
    }
    cw->rc = client_line(cw->out, ci, st, st == cw->self ? cw->argv_mem : 0);
}

void
resp_clients_part(struct buf *out)
{
    struct client_walk cw = {.out = out};
    rt_conns_each(false, client_each, &cw);
    if (cw.rc < 0) {
        log_error("out of memory for this worker's part of CLIENT LIST; left out");
        buf_consume(out, buf_len(out));
    }
}

int
resp_clients_emit(struct conn *c, struct route_conn *rc, struct route_slot *s)
{
    /* route_conn is the first member of resp_conn. */
    const struct resp_conn *st = (const struct resp_conn *)rc;
    struct buf *wb = conn_wbuf(c);
    size_t len = 0;
    for (uint32_t i = 0; i < s->nparts; i++) {
        len += s->parts[i] != NULL ? buf_len(&s->parts[i]->reply.b) : 0;
    }
    int r = st->proto == RESP_3 ? buf_printf(wb, "=%zu\r\ntxt:", len + 4)
                                : buf_printf(wb, "$%zu\r\n", len);
    for (uint32_t i = 0; r == 0 && i < s->nparts; i++) {
        const struct route_msg *m = s->parts[i];
        r = m != NULL ? buf_append(wb, buf_rptr(&m->reply.b), buf_len(&m->reply.b)) : 0;
    }
    r = r < 0 ? r : buf_append(wb, "\r\n", 2);
    return r < 0 ? r : 1;
}

static size_t
argv_bytes(const struct resp_req *req)
{
    size_t n = 0;
    for (uint32_t i = 0; i < req->argc; i++) {
        n += req->argv[i].len;
    }
    return n;
}

int
resp_client(struct resp_worker *w, struct conn *c, struct resp_conn *st, const struct resp_req *req,
            struct buf *b)
{
    const struct resp_arg *sub = &req->argv[1];
    static const struct {
        const char *name;
        uint32_t argc;
    } subs[] = {{"id", 2}, {"getname", 2}, {"setname", 3}, {"info", 2}, {"list", 2}};
    size_t i = 0;
    while (i < sizeof(subs) / sizeof(subs[0]) && !arg_is(sub, subs[i].name)) {
        i++;
    }
    if (i == sizeof(subs) / sizeof(subs[0])) {
        return reply_fmt(b, "unknown subcommand '%.*s'. Try CLIENT HELP.", sub);
    }
    if (i == 4 && req->argc > 2) {
        return reply_err(b, "syntax error"); /* CLIENT LIST's TYPE and ID filters */
    }
    if (req->argc != subs[i].argc) {
        char msg[96];
        snprintf(msg, sizeof(msg), "wrong number of arguments for 'client|%s' command",
                 subs[i].name);
        return reply_err(b, msg);
    }
    switch (i) {
    case 0:
        return resp_compose_int(b, (int64_t)st->id);
    case 1:
        return st->name[0] != '\0' ? resp_compose_bulk(b, st->name, strlen(st->name))
                                   : resp_compose_null(b, st->proto);
    case 2:
        if (!name_ok(&req->argv[2])) {
            return reply_err(b, BAD_NAME);
        }
        set_name(st, &req->argv[2]);
        return reply_ok(b);
    case 3: {
        struct buf line;
        buf_init(&line, 512, 4096);
        struct client_walk cw = {.only = st, .self = st, .argv_mem = argv_bytes(req), .out = &line};
        rt_conns_each(false, client_each, &cw);
        int rc = cw.rc < 0
                     ? cw.rc
                     : resp_compose_verbatim(b, st->proto, "txt", buf_rptr(&line), buf_len(&line));
        buf_free(&line);
        return rc;
    }
    default:
        return -EINVAL; /* CLIENT LIST goes to every worker: the caller broadcasts it */
    }
}

/* ---- INFO ---- */

/* The runtime's figures an INFO reply shows, from the registry's "stats" walk. */
struct figures {
    uint64_t v[12];
};
static const char *const fig_names[] = {
    "uptime",
    "curr_connections",
    "max_connections",
    "total_connections",
    "rejected_connections",
    "bytes_read",
    "bytes_written",
    "mem_allocated",
    "mem_resident",
    "limit_maxbytes",
    "curr_items",
    "evictions",
};
enum {
    F_UPTIME,
    F_CONNS,
    F_MAXCONNS,
    F_TOTAL,
    F_REJECTED,
    F_READ,
    F_WRITTEN,
    F_ALLOC,
    F_RSS,
    F_LIMIT,
    F_ITEMS,
    F_EVICTIONS
};

static int
figure(void *arg, const char *name, const char *value)
{
    struct figures *f = arg;
    for (size_t i = 0; i < sizeof(fig_names) / sizeof(fig_names[0]); i++) {
        if (strcmp(name, fig_names[i]) == 0) {
            f->v[i] = strtoull(value, NULL, 10);
        }
    }
    return 0;
}

/* Redis's bytesToHuman: "123B", "1.50K", "2.00M", ... */
static void
human(char *dst, size_t n, uint64_t bytes)
{
    static const char units[] = "KMGTPE";
    if (bytes < 1024) {
        snprintf(dst, n, "%" PRIu64 "B", bytes);
        return;
    }
    double d = (double)bytes / 1024;
    size_t u = 0;
    while (d >= 1024 && u + 1 < sizeof(units) - 1) {
        d /= 1024;
        u++;
    }
    snprintf(dst, n, "%.2f%c", d, units[u]);
}

enum { S_SERVER = 1, S_CLIENTS = 2, S_MEMORY = 4, S_STATS = 8, S_KEYSPACE = 16, S_ALL = 31 };

static int
info_text(struct resp_worker *w, unsigned sections, struct buf *t)
{
    struct figures f = {0};
    int rc = rt_stats_each(REDIS_VERSION, figure, &f);
    if (rc < 0) {
        return rc;
    }
    bool first = true;
    if (sections & S_SERVER) {
        rc = buf_printf(t,
                        "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\n"
                        "petrel_version:%s\r\narch_bits:%zu\r\nprocess_id:%ld\r\ntcp_port:%u\r\n"
                        "uptime_in_seconds:%" PRIu64 "\r\nuptime_in_days:%" PRIu64 "\r\n",
                        REDIS_VERSION, PETREL_VERSION, sizeof(void *) * 8, (long)getpid(), w->port,
                        f.v[F_UPTIME], f.v[F_UPTIME] / 86400);
        first = false;
    }
    if (rc == 0 && (sections & S_CLIENTS)) {
        rc = buf_printf(t,
                        "%s# Clients\r\nconnected_clients:%" PRIu64 "\r\nmaxclients:%" PRIu64
                        "\r\nblocked_clients:0\r\n",
                        first ? "" : "\r\n", f.v[F_CONNS], f.v[F_MAXCONNS]);
        first = false;
    }
    if (rc == 0 && (sections & S_MEMORY)) {
        char h1[32], h2[32], h3[32];
        human(h1, sizeof(h1), f.v[F_ALLOC]);
        human(h2, sizeof(h2), f.v[F_RSS]);
        human(h3, sizeof(h3), f.v[F_LIMIT]);
        rc = buf_printf(t,
                        "%s# Memory\r\nused_memory:%" PRIu64 "\r\nused_memory_human:%s\r\n"
                        "used_memory_rss:%" PRIu64 "\r\nused_memory_rss_human:%s\r\n"
                        "maxmemory:%" PRIu64 "\r\nmaxmemory_human:%s\r\n",
                        first ? "" : "\r\n", f.v[F_ALLOC], h1, f.v[F_RSS], h2, f.v[F_LIMIT], h3);
        first = false;
    }
    if (rc == 0 && (sections & S_STATS)) {
        rc = buf_printf(t,
                        "%s# Stats\r\ntotal_connections_received:%" PRIu64
                        "\r\ntotal_net_input_bytes:%" PRIu64 "\r\ntotal_net_output_bytes:%" PRIu64
                        "\r\nrejected_connections:%" PRIu64 "\r\nevicted_keys:%" PRIu64 "\r\n",
                        first ? "" : "\r\n", f.v[F_TOTAL], f.v[F_READ], f.v[F_WRITTEN],
                        f.v[F_REJECTED], f.v[F_EVICTIONS]);
        first = false;
    }
    if (rc == 0 && (sections & S_KEYSPACE)) {
        rc = buf_printf(t, "%s# Keyspace\r\n", first ? "" : "\r\n");
        if (rc == 0 && f.v[F_ITEMS] > 0) {
            rc = buf_printf(t, "db0:keys=%" PRIu64 "\r\n", f.v[F_ITEMS]);
        }
    }
    return rc;
}

int
resp_info(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req, struct buf *b)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"server", S_SERVER}, {"clients", S_CLIENTS},   {"memory", S_MEMORY},
                 {"stats", S_STATS},   {"keyspace", S_KEYSPACE}, {"default", S_ALL},
                 {"all", S_ALL},       {"everything", S_ALL}};
    unsigned sections = req->argc == 1 ? S_ALL : 0;
    for (uint32_t i = 1; i < req->argc; i++) {
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            if (arg_is(&req->argv[i], names[k].name)) {
                sections |= names[k].bits;
            }
        }
    }
    struct buf t;
    buf_init(&t, 2048, 64 << 10);
    int rc = sections != 0 ? info_text(w, sections, &t) : 0;
    rc = rc < 0 ? rc : resp_compose_verbatim(b, st->proto, "txt", buf_rptr(&t), buf_len(&t));
    buf_free(&t);
    return rc;
}

/* ---- CONFIG ---- */

/* The Redis parameters that mean something here, and what they are. */
enum param {
    P_MAXMEMORY,
    P_MAXCLIENTS,
    P_TIMEOUT,
    P_REQUIREPASS,
    P_SAVE,
    P_APPENDONLY,
    P_DATABASES,
    P_PROTO_MAX_BULK_LEN,
    P_PORT,
    P_COUNT
};
static const char *const param_names[P_COUNT] = {
    "maxmemory", "maxclients",         "timeout", "requirepass", "save", "appendonly",
    "databases", "proto-max-bulk-len", "port"};

static int
param_value(const struct resp_worker *w, enum param p, char *dst, size_t n)
{
    struct rt_stats rs;
    rt_stats_get(&rs);
    switch (p) {
    case P_MAXMEMORY:
        return snprintf(dst, n, "%" PRIu64, w->mem_limit);
    case P_MAXCLIENTS:
        return snprintf(dst, n, "%u", rs.max_connections);
    case P_TIMEOUT:
        return snprintf(dst, n, "%u", rs.idle_timeout);
    case P_REQUIREPASS:
        return snprintf(dst, n, "%s", w->password != NULL ? w->password : "");
    case P_SAVE:
        return snprintf(dst, n, "%s", "");
    case P_APPENDONLY:
        return snprintf(dst, n, "%s", "no");
    case P_DATABASES:
        return snprintf(dst, n, "%s", "1");
    case P_PROTO_MAX_BULK_LEN:
        return snprintf(dst, n, "%zu", w->max_value);
    default:
        return snprintf(dst, n, "%u", w->port);
    }
}

static int
param_find(const struct resp_arg *a)
{
    for (int p = 0; p < P_COUNT; p++) {
        if (arg_is(a, param_names[p])) {
            return p;
        }
    }
    return -1;
}

static bool
is_glob(const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->p[i] == '*' || a->p[i] == '?' || a->p[i] == '[') {
            return true;
        }
    }
    return false;
}

/* CONFIG GET pattern [pattern ...]: each parameter once, named as asked when asked by name. */
static int
config_get(const struct resp_worker *w, const struct resp_conn *st, const struct resp_req *req,
           struct buf *b)
{
    const struct resp_arg *as[P_COUNT] = {0}; /* the name to reply with: as asked, or canonical */
    bool hit[P_COUNT] = {0};
    size_t n = 0;
    for (uint32_t i = 2; i < req->argc; i++) {
        const struct resp_arg *a = &req->argv[i];
        for (int p = 0; p < P_COUNT; p++) {
            bool match = is_glob(a) ? resp_glob_match(a->p, a->len, param_names[p],
                                                      strlen(param_names[p]), true)
                                    : arg_is(a, param_names[p]);
            if (match && !hit[p]) {
                hit[p] = true;
                as[p] = is_glob(a) ? NULL : a;
                n++;
            }
        }
    }
    int rc = resp_compose_map(b, st->proto, n);
    for (int p = 0; rc == 0 && p < P_COUNT; p++) {
        if (!hit[p]) {
            continue;
        }
        char v[256];
        int vl = param_value(w, (enum param)p, v, sizeof(v));
        rc = as[p] != NULL ? resp_compose_bulk(b, as[p]->p, as[p]->len)
                           : resp_compose_bulk(b, param_names[p], strlen(param_names[p]));
        rc = rc < 0 ? rc : resp_compose_bulk(b, v, (size_t)(vl < 0 ? 0 : vl));
    }
    return rc;
}

static int
set_failed(struct buf *b, enum param p, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "CONFIG SET failed (possibly related to argument '%s') - %s",
             param_names[p], why);
    return reply_err(b, msg);
}

/*
 * CONFIG SET name value [name value ...]: Redis's checks in its order (unknown, immutable,
 * duplicate, then each value). Petrel's settings are fixed while it runs (a reload through the
 * admin port changes those that may change), so only what changes nothing is accepted: no save
 * points, no append-only file.
 */
static int
config_set(struct resp_worker *w, const struct resp_req *req, struct buf *b)
{
    if (req->argc % 2 != 0) {
        return reply_err(b, "syntax error");
    }
    bool seen[P_COUNT] = {0};
    for (uint32_t i = 2; i < req->argc; i += 2) {
        int p = param_find(&req->argv[i]);
        if (p < 0) {
            return reply_fmt(b, "Unknown option or number of arguments for CONFIG SET - '%.*s'",
                             &req->argv[i]);
        }
        if (p != P_SAVE && p != P_APPENDONLY) {
            return set_failed(b, (enum param)p, "can't set immutable config");
        }
        if (seen[p]) {
            return set_failed(b, (enum param)p, "duplicate parameter");
        }
        seen[p] = true;
    }
    for (uint32_t i = 2; i < req->argc; i += 2) {
        const struct resp_arg *v = &req->argv[i + 1];
        if (param_find(&req->argv[i]) == P_SAVE) {
            if (v->len != 0) {
                return set_failed(b, P_SAVE, "Petrel keeps no snapshots: only \"\" is taken");
            }
        } else if (!arg_is(v, "yes") && !arg_is(v, "no")) {
            return set_failed(b, P_APPENDONLY, "argument must be 'yes' or 'no'");
        } else if (arg_is(v, "yes")) {
            return set_failed(b, P_APPENDONLY, "Petrel keeps no append-only file");
        }
    }
    return reply_ok(b);
}

int
resp_config(struct resp_worker *w, struct resp_conn *st, const struct resp_req *req, struct buf *b)
{
    const struct resp_arg *sub = &req->argv[1];
    if (arg_is(sub, "get")) {
        return req->argc < 3 ? reply_err(b, "wrong number of arguments for 'config|get' command")
                             : config_get(w, st, req, b);
    }
    if (arg_is(sub, "set")) {
        return req->argc < 4 ? reply_err(b, "wrong number of arguments for 'config|set' command")
                             : config_set(w, req, b);
    }
    return reply_fmt(b, "unknown subcommand '%.*s'. Try CONFIG HELP.", sub);
}
