/*
 * runtime: options, start-up, the signal loop and an orderly stop. Main thread only.
 *
 * Start-up order: log, listeners (so a bad address fails before any thread exists), workers
 * (each builds its product context on its own thread), acceptor, admin. Stop order is the
 * reverse of what produces work: the acceptor first (no new connections), then the workers
 * (answer what was read, send it, close), then the admin thread (last log flush).
 */
#include "acceptor.h"
#include "admin.h"
#include "handshake.h"
#include "live.h"
#include "mesh.h"
#include "notify.h"
#include "worker.h"

#include "petrel_build.h"

#include "petrel/prcu.h"
#include "petrel/log.h"
#include "petrel/sock.h"

#include <urcu/pointer.h>

#include <errno.h>
#include <pwd.h>
#include <grp.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EX_SOFTWARE_FAIL 1 /* start-up failed (address in use, out of memory, ...) */

static const char *const io_uring_names[] = {
    [RT_URING_OFF] = "off", [RT_URING_AUTO] = "auto", [RT_URING_ON] = "on", NULL};

static const struct opt_def rt_options[] = {
    {.name = "listen",
     .short_name = 'l',
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .flags = OPT_LIST,
     .help = "addresses to listen on, separated by ',' (none: every interface, IPv4 and IPv6), "
             "as memcached's -l: HOST, HOST:PORT, [IPV6], [IPV6]:PORT, *:PORT (every "
             "interface); an address's PORT replaces --port for it; given again, adds to the "
             "list"},
    {.name = "unix-socket",
     .short_name = 's',
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .help = "listen on this unix socket path instead of the TCP port (as memcached's -s; "
             "a TLS port still opens if given)"},
    {.name = "unix-mode",
     .section = "server",
     .type = OPT_STR,
     .dflt = "0700",
     .help = "permissions of the unix socket, in octal"},
    {.name = "udp-port",
     .short_name = 'U',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "0",
     .min = 0,
     .max = 65535,
     .help = "UDP port: not supported, must be 0 (as memcached's default)"},
    {.name = "daemonize",
     .short_name = 'd',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "run in the background, as memcached's -d: detach from the terminal once ready "
             "(the command returns 0 then, or 1 if start-up failed); logs go to --log-file only"},
    {.name = "enable-coredumps",
     .short_name = 'r',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "raise the core file size limit as far as allowed, as memcached's -r (start-up "
             "fails if no core file could be written)"},
    {.name = "lock-memory",
     .short_name = 'k',
     .section = "server",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "lock all memory, present and future, into RAM (mlockall, as memcached's -k); needs "
             "CAP_IPC_LOCK or a memlock limit (ulimit -l) above what the process maps, else a "
             "warning and no lock"},
    {.name = "user",
     .short_name = 'u',
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .help = "when started as root, become this user (and its groups) once the listeners are "
             "open, as memcached's -u; ignored otherwise"},
    {.name = "pid-file",
     .short_name = 'P',
     .section = "server",
     .type = OPT_STR,
     .dflt = "",
     .help = "write the process id to this file once started (removed at exit), as "
             "memcached's -P"},
    {.name = "threads",
     .short_name = 't',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "0",
     .min = 0,
     .max = RT_MAX_WORKERS,
     .help = "worker threads (0: one per online CPU, but no more than the memory limit "
             "gives 8 segments each)"},
    {.name = "max-conns",
     .short_name = 'c',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "1024",
     .min = 1,
     .max = 1000000,
     .flags = OPT_RELOADABLE,
     .help = "simultaneous client connections; more are refused with an error"},
    {.name = "backlog",
     .short_name = 'b',
     .section = "server",
     .type = OPT_UINT,
     .dflt = "1024",
     .min = 1,
     .max = 65535,
     .help = "listen backlog"},
    {.name = "idle-timeout",
     .section = "server",
     .type = OPT_UINT,
     .dflt = "0",
     .min = 0,
     .max = 31536000,
     .flags = OPT_RELOADABLE,
     .help = "close connections idle for this many seconds (0: never)"},
    {.name = "request-timeout",
     .section = "server",
     .type = OPT_UINT,
     .dflt = "30",
     .min = 0,
     .max = 86400,
     .flags = OPT_RELOADABLE,
     .help = "close a connection whose request has begun to arrive and is not complete after "
             "this many seconds (0: never); a client that stalls or trickles mid-request holds "
             "buffer memory"},
    {.name = "read-buffer",
     .section = "server",
     .type = OPT_SIZE,
     .dflt = "16k",
     .unit = 1,
     .min = 1024,
     .max = 1 << 30,
     .help = "read and write buffer a connection takes when it has bytes to hold (an idle "
             "connection holds none), and the size of one read"},
    {.name = "output-limit",
     .section = "server",
     .type = OPT_SIZE,
     .dflt = "1m",
     .unit = 1,
     .min = 4096,
     .max = 1 << 30,
     .help = "reply bytes held for one connection (unsent, or waiting their turn) after which "
             "its requests wait until the client reads (backpressure)"},
    {.name = "buffer-memory",
     .section = "server",
     .type = OPT_SIZE,
     .dflt = "64m",
     .unit = 1,
     .min = 1 << 20,
     .max = (uint64_t)1 << 40,
     .help = "memory for connection buffers grown past read-buffer and for held replies, all "
             "connections together; past it the connections holding the most wait, and a request "
             "that waits 200 ms for read memory is refused with SERVER_ERROR"},
    {.name = "io-uring",
     .section = "server",
     .type = OPT_ENUM,
     .dflt = "auto",
     .choices = io_uring_names,
     .help = "send each worker's replies of a loop turn with one io_uring call instead of one "
             "send per connection (plain TCP and unix sockets): auto (when the kernel allows "
             "io_uring, else as off), on (start-up fails without it), off"},
    {.name = "admin-address",
     .section = "admin",
     .type = OPT_STR,
     .dflt = "127.0.0.1",
     .help = "address of the admin port"},
    {.name = "admin-port",
     .section = "admin",
     .type = OPT_UINT,
     .dflt = "9999",
     .min = 0,
     .max = 65535,
     .help = "admin port (0: an ephemeral port, logged at start-up)"},
    {.name = "log-level",
     .section = "log",
     .type = OPT_ENUM,
     .dflt = "info",
     .choices = log_level_names,
     .flags = OPT_RELOADABLE,
     .help = "least severe level logged"},
    {.name = "log-file",
     .section = "log",
     .type = OPT_STR,
     .dflt = "",
     .help = "append the log to this file (none: stderr); SIGHUP reopens it"},
    {.name = "verbose",
     .short_name = 'v',
     .section = "log",
     .type = OPT_COUNT,
     .dflt = "0",
     .min = 0,
     .max = 3,
     .flags = OPT_RELOADABLE,
     .help = "more detail: -v connection events, -vv requests (raises log-level); -vvv, "
             "memcached's most, is -vv"},
    {.name = "klog-file",
     .section = "log",
     .type = OPT_STR,
     .dflt = "",
     .help = "command log: append sampled requests to this file (none: off); SIGHUP reopens it"},
    {.name = "klog-sample",
     .section = "log",
     .type = OPT_UINT,
     .dflt = "100",
     .min = 0,
     .max = 1000000000,
     .flags = OPT_RELOADABLE,
     .help = "command log: log 1 request in this many, per worker (0: none)"},
    {.name = "health-timeout",
     .section = "admin",
     .type = OPT_UINT,
     .dflt = "10",
     .min = 1,
     .max = 3600,
     .flags = OPT_RELOADABLE,
     .help =
         "seconds a worker's event loop may go without turning before /health reports it stuck"},
    {.name = "enable-ssl",
     .short_name = 'Z',
     .section = "tls",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "TLS on the main port (--port, every --listen address; the unix socket stays "
             "plain); needs --tls-cert and --tls-key"},
    {.name = "tls-port",
     .section = "tls",
     .type = OPT_UINT,
     .dflt = "0",
     .min = 0,
     .max = 65535,
     .help = "also listen for TLS on this port, on the --listen addresses, beside the plain "
             "port (0: none)"},
    {.name = "tls-cert",
     .section = "tls",
     .type = OPT_STR,
     .dflt = "",
     .flags = OPT_RELOADABLE,
     .help = "the server's certificate chain, PEM (re-read on SIGHUP)"},
    {.name = "tls-key",
     .section = "tls",
     .type = OPT_STR,
     .dflt = "",
     .flags = OPT_RELOADABLE,
     .help = "the private key of --tls-cert, PEM (re-read on SIGHUP)"},
    {.name = "tls-ca",
     .section = "tls",
     .type = OPT_STR,
     .dflt = "",
     .flags = OPT_RELOADABLE,
     .help = "CA certificates that sign client certificates, PEM (re-read on SIGHUP)"},
    {.name = "tls-verify",
     .section = "tls",
     .type = OPT_ENUM,
     .dflt = "none",
     .choices = tls_verify_names,
     .flags = OPT_RELOADABLE,
     .help = "client certificates: none (not asked for), optional (checked when given), "
             "required (mutual TLS: refused without one --tls-ca accepts)"},
    {.name = "tls-ciphers",
     .section = "tls",
     .type = OPT_STR,
     .dflt = "",
     .flags = OPT_RELOADABLE,
     .help = "cipher suites, mbedTLS names separated by ':' (none: ECDHE with AES-GCM or "
             "ChaCha20-Poly1305)"},
    {.name = "tls-handshake-timeout",
     .section = "tls",
     .type = OPT_UINT,
     .dflt = "5",
     .min = 1,
     .max = 3600,
     .flags = OPT_RELOADABLE,
     .help = "close a TLS connection whose handshake is not done this many seconds after it "
             "was accepted"},
    {.name = "tls-session-lifetime",
     .section = "tls",
     .type = OPT_UINT,
     .dflt = "7200",
     .min = 0,
     .max = 604800,
     .flags = OPT_RELOADABLE,
     .help = "seconds a TLS session may be resumed (session tickets, session ids); 0: no "
             "resumption"},
    {.name = "debug-commands",
     .section = "admin",
     .type = OPT_BOOL,
     .dflt = "no",
     .help = "accept the admin port's debug commands (for tests only: one stalls a worker)"},
};

const struct metric_def rt_worker_metric_defs[RTM_COUNT] = {
    [RTM_CURR_CONNECTIONS] = {"curr_connections", METRIC_GAUGE, "open client connections"},
    [RTM_CONNECTIONS_CLOSED] = {"closed_connections", METRIC_COUNTER, "client connections closed"},
    [RTM_BYTES_READ] = {"bytes_read", METRIC_COUNTER, "bytes read from clients"},
    [RTM_BYTES_WRITTEN] = {"bytes_written", METRIC_COUNTER, "bytes sent to clients"},
    [RTM_EVENT_LOOPS] = {"event_loops", METRIC_COUNTER, "event loop iterations"},
    [RTM_CONN_BUFFER_BYTES] = {"conn_buffer_bytes", METRIC_GAUGE,
                               "bytes allocated for connections' read and write buffers"},
    [RTM_MESSAGES_SENT] = {"messages_sent", METRIC_COUNTER,
                           "messages sent to other workers (forwarded requests and replies)"},
    [RTM_MESSAGES_RECEIVED] = {"messages_received", METRIC_COUNTER,
                               "messages received from other workers"},
    [RTM_INPUT_WAITS] = {"input_waits", METRIC_COUNTER,
                         "reads put off because connections' buffers held buffer-memory"},
    [RTM_BUFFER_REFUSALS] = {"buffer_refusals", METRIC_COUNTER,
                             "requests refused because buffer-memory stayed full for 200 ms"},
    [RTM_REQUEST_TIMEOUTS] = {"request_timeouts", METRIC_COUNTER,
                              "connections closed with a request unfinished after "
                              "request-timeout"},
    [RTM_IDLE_KICKS] = {"idle_kicks", METRIC_COUNTER,
                        "connections closed for being idle past idle-timeout"},
    [RTM_TLS_CONNECTIONS] = {"tls_connections", METRIC_GAUGE, "open TLS client connections"},
    [RTM_TLS_ERRORS] = {"tls_errors", METRIC_COUNTER,
                        "TLS connections closed for a bad record or a renegotiation attempt"},
    [RTM_URING_CALLS] = {"io_uring_calls", METRIC_COUNTER,
                         "io_uring system calls, each making the reads or the sends of one "
                         "phase of a loop turn"},
    [RTM_URING_READS] = {"io_uring_reads", METRIC_COUNTER, "reads made through io_uring"},
    [RTM_URING_SENDS] = {"io_uring_sends", METRIC_COUNTER, "sends made through io_uring"},
};

const struct metric_table rt_worker_metrics = {"runtime", rt_worker_metric_defs, RTM_COUNT};

const struct opt_table rt_option_table = {
    .name = "runtime",
    .defs = rt_options,
    .n = sizeof(rt_options) / sizeof(rt_options[0]),
};

/* A port that opens on every host of the listen list beside an address's own port: --tls-port
 * and the product's other protocols (e.g. --resp-port). Returns its option's name, or NULL. */
static const char *
port_taken_by(const struct rt_product *p, const struct config *cfg, int port)
{
    if (config_uint(cfg, "tls-port") != 0 && (int)config_uint(cfg, "tls-port") == port) {
        return "tls-port";
    }
    for (size_t k = 0; p != NULL && k < p->nports; k++) {
        if (config_uint(cfg, p->ports[k].option) != 0 &&
            (int)config_uint(cfg, p->ports[k].option) == port) {
            return p->ports[k].option;
        }
    }
    return NULL;
}

/* Settings that config's types cannot check alone. Returns 0, or -EINVAL with err. */
static int
check_options(const struct rt_product *p, const struct config *cfg, unsigned *unix_mode, char *err,
              size_t errlen)
{
    if (config_uint(cfg, "udp-port") != 0) {
        snprintf(err, errlen, "-U/--udp-port: UDP is not supported; only 0 is accepted");
        return -EINVAL;
    }
    const char *mode = config_str(cfg, "unix-mode");
    char *end;
    errno = 0;
    unsigned long m = strtoul(mode, &end, 8);
    if (errno != 0 || end == mode || *end != '\0' || m > 0777) {
        snprintf(err, errlen, "--unix-mode: '%.40s' is not an octal mode (e.g. 0700, 0770)", mode);
        return -EINVAL;
    }
    *unix_mode = (unsigned)m;
    int port = (int)config_uint(cfg, p->port_option);
    const char *other = port != 0 ? port_taken_by(p, cfg, port) : NULL;
    if (other != NULL) {
        snprintf(err, errlen, "--%s: %d is also --%s%s", other, port, p->port_option,
                 strcmp(other, "tls-port") == 0 ? "; use -Z for TLS on the main port" : "");
        return -EINVAL;
    }
    return 0;
}

/* The workers rt_main() starts: --threads, or one per online CPU up to what the product's
 * settings serve (a packaged -m of 64 MiB on a 96-CPU host must not start 96 tiny shards). */
static unsigned
worker_count(const struct rt_product *p, const struct config *cfg)
{
    unsigned threads = (unsigned)config_uint(cfg, "threads");
    if (threads > 0) {
        return threads;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cpus > 0 ? (unsigned)cpus : 1;
    if (p->workers_max != NULL && p->workers_max(cfg) < n) {
        n = p->workers_max(cfg) > 0 ? p->workers_max(cfg) : 1;
    }
    return n;
}

static bool
tls_wanted(const struct config *cfg)
{
    return config_bool(cfg, "enable-ssl") || config_uint(cfg, "tls-port") != 0;
}

/* memcached's -s disables networking, whatever -p and -l say (Debian's memcached.conf sets both):
 * an operator who moves a unix-socket-only memcached to Petrel must not find port 11211 open on
 * every interface. */
static bool
tcp_wanted(const struct config *cfg)
{
    return config_str(cfg, "unix-socket")[0] == '\0';
}

/* Every address of list parses (label names the option in err), there is one if the list is
 * not empty, with no port if !ports and none that another listener of p takes (those open on
 * every host of the list: port_taken_by). Returns 0 or -EINVAL. */
static int
check_list(const char *list, const char *label, bool ports, const struct rt_product *p,
           const struct config *cfg, char *err, size_t errlen)
{
    const char *c = list;
    struct sock_endpoint ep;
    char why[256];
    int rc;
    size_t n = 0;
    while ((rc = sock_endpoint_next(&c, &ep, why, sizeof(why))) == 1) {
        n++;
        if (!ports && ep.port >= 0) {
            snprintf(err, errlen, "%s: '%.80s' has a port: give it with --admin-port", label, list);
            return -EINVAL;
        }
        const char *other = ep.port >= 0 ? port_taken_by(p, cfg, ep.port) : NULL;
        if (other != NULL) {
            bool v6 = strchr(ep.host, ':') != NULL;
            snprintf(err, errlen, "--%s: %d is also the port of %s '%s%.80s%s:%d'%s", other,
                     ep.port, label, v6 ? "[" : "", ep.host[0] != '\0' ? ep.host : "*",
                     v6 ? "]" : "", ep.port,
                     strcmp(other, "tls-port") == 0 ? "; use -Z for TLS on the main port" : "");
            return -EINVAL;
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", label, why);
        return rc;
    }
    if (n == 0 && list[0] != '\0') {
        snprintf(err, errlen, "%s: '%.80s' names no address", label, list);
        return -EINVAL;
    }
    return 0;
}

/*
 * What open_listeners() will refuse before it binds: a listen address of a form memcached's -l
 * does not take (always, used or not), a host that does not resolve, more sockets than
 * RT_MAX_LISTEN, an admin address that names more than one, a unix socket path that cannot be
 * bound. Returns 0, -EINVAL for a form (64) or another negative errno (78), with err. Start-up
 * resolves the hosts again when it binds: a name is looked up twice, the price of one check.
 */
static int
check_addresses(const struct rt_product *p, const struct config *cfg, char *err, size_t errlen)
{
    const char *listen = config_str(cfg, "listen");
    const char *admin = config_str(cfg, "admin-address");
    char why[384];
    unsigned tls_port = (unsigned)config_uint(cfg, "tls-port");
    int rc = check_list(listen, "-l/--listen", true, p, cfg, err, errlen);
    if (rc == 0) {
        rc = check_list(admin, "--admin-address", false, NULL, cfg, err, errlen);
    }
    if (rc < 0) {
        return rc;
    }
    size_t n = 0;
    if (tcp_wanted(cfg)) {
        rc = sock_listen_count(listen, (uint16_t)config_uint(cfg, p->port_option), SOCK_PORT_OWN,
                               &n, why, sizeof(why));
        for (size_t k = 0; rc == 0 && k < p->nports; k++) {
            uint16_t extra = (uint16_t)config_uint(cfg, p->ports[k].option);
            if (extra != 0) {
                rc = sock_listen_count(listen, extra, SOCK_PORT_HOST, &n, why, sizeof(why));
            }
        }
    }
    if (rc == 0 && tls_port != 0) {
        rc = sock_listen_count(listen, (uint16_t)tls_port, SOCK_PORT_HOST, &n, why, sizeof(why));
    }
    if (rc < 0) {
        snprintf(err, errlen, "-l/--listen: %s", why);
        return -ENOENT;
    }
    const char *unix_path = config_str(cfg, "unix-socket");
    if (unix_path[0] != '\0') {
        rc = sock_unix_check(unix_path, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "-s/--unix-socket: %s", why);
            return rc;
        }
        n++;
    }
    if (n > RT_MAX_LISTEN) {
        snprintf(err, errlen, "-l/--listen: %zu sockets to listen on, at most %d", n,
                 RT_MAX_LISTEN);
        return -EINVAL;
    }
    size_t na = 0;
    rc = sock_listen_count(admin, (uint16_t)config_uint(cfg, "admin-port"), SOCK_PORT_HOST, &na,
                           why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "--admin-address: %s", why);
        return -ENOENT;
    }
    if (na != 1) {
        snprintf(err, errlen,
                 "--admin-address: '%.80s' is %zu addresses; the admin port listens on one (give "
                 "one numeric address)",
                 admin, na);
        return -EINVAL;
    }
    return 0;
}

/* The files start-up opens for writing (as root, before -u). Returns 0 or a negative errno. */
static int
check_files(const struct config *cfg, char *err, size_t errlen)
{
    static const char *const names[] = {"log-file", "klog-file", "pid-file"};
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        const char *path = config_str(cfg, names[i]);
        char why[PATH_MAX + 64];
        if (path[0] == '\0' || (i == 0 && strcmp(path, "stderr") == 0)) {
            continue; /* log-file stderr: the log's own stream (log_setup), no file */
        }
        int rc = config_path_writable(path, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "--%s: cannot open '%.200s': %.300s", names[i], path, why);
            return rc;
        }
    }
    return 0;
}

/* -r: no limit on core files, else the hard limit; a soft limit of 0 would mean none at all.
 * Raising its own limit is the whole of -r, so --check-config may do it too. */
static int
raise_core_limit(void)
{
    struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_CORE, &rl) < 0 && getrlimit(RLIMIT_CORE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_CORE, &rl);
    }
    return getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur > 0 ? 0 : -EPERM;
}

/* -u applies when started as root: the user must exist. */
static int
check_user(const char *user, char *err, size_t errlen)
{
    if (user[0] != '\0' && geteuid() == 0 && getpwnam(user) == NULL) {
        snprintf(err, errlen, "-u/--user: no user '%.80s'", user);
        return -ENOENT;
    }
    return 0;
}

/*
 * Everything start-up refuses that can be known before it starts anything (rt_validate says
 * what); rt_main() and rt_validate() both run this. Returns 0, or prints the error and returns
 * the exit status: 64 for values that do not go together, 78 for what the system says of them.
 */
static int
check_startup(const struct rt_product *p, const struct config *cfg, unsigned *unix_mode)
{
    char err[1024] = "";
    int rc = check_options(p, cfg, unix_mode, err, sizeof(err));
    if (rc == 0) {
        rc = check_addresses(p, cfg, err, sizeof(err));
    }
    if (rc == 0) {
        rc = check_files(cfg, err, sizeof(err));
    }
    if (rc == 0) {
        rc = check_user(config_str(cfg, "user"), err, sizeof(err));
    }
    if (rc == 0 && config_bool(cfg, "enable-coredumps") && (rc = raise_core_limit()) < 0) {
        snprintf(err, sizeof(err),
                 "-r/--enable-coredumps: the core file size limit is 0 and cannot be raised");
    }
    if (rc == 0 && p->check != NULL) {
        rc = p->check(cfg, worker_count(p, cfg), err, sizeof(err));
    }
    if (rc == 0) {
        return 0;
    }
    fprintf(stderr, "%s: %s\n", p->name, err);
    return rc == -EINVAL ? CONFIG_EX_USAGE : rc == -ENOMEM ? CONFIG_EX_OSERR : CONFIG_EX_CONFIG;
}

/* Load the certificates cfg names. Returns 0, or an exit status with the error in err. */
static int
tls_load(const struct config *cfg, struct tls_server *prev, struct tls_server **out, char *err,
         size_t errlen)
{
    const struct tls_settings ts = {
        .cert = config_str(cfg, "tls-cert"),
        .key = config_str(cfg, "tls-key"),
        .ca = config_str(cfg, "tls-ca"),
        .ciphers = config_str(cfg, "tls-ciphers"),
        .verify = (enum tls_verify)config_enum(cfg, "tls-verify"),
        .session_lifetime = (unsigned)config_uint(cfg, "tls-session-lifetime"),
    };
    const char *missing = ts.cert[0] == '\0' ? "tls-cert" : ts.key[0] == '\0' ? "tls-key" : NULL;
    if (missing != NULL) {
        snprintf(err, errlen, "--%s: needed when TLS is on (-Z/--enable-ssl or --tls-port)",
                 missing);
        return CONFIG_EX_USAGE;
    }
    int rc = tls_server_new(&ts, prev, out, err, errlen);
    return rc == 0 ? 0 : rc == -ENOMEM ? CONFIG_EX_OSERR : CONFIG_EX_CONFIG;
}

int
rt_validate(const struct rt_product *p, const struct config *cfg)
{
    unsigned unix_mode;
    int status = check_startup(p, cfg, &unix_mode);
    if (status == 0 && tls_wanted(cfg)) {
        char err[512];
        struct tls_server *srv = NULL;
        status = tls_load(cfg, NULL, &srv, err, sizeof(err));
        if (status != 0) {
            fprintf(stderr, "%s: %s\n", p->name, err);
        }
        tls_server_put(srv);
    }
    return status;
}

static int
open_listeners(struct runtime *rt, unsigned unix_mode)
{
    char err[256] = "";
    uint16_t port = (uint16_t)config_uint(rt->cfg, rt->p->port_option);
    int backlog = (int)config_uint(rt->cfg, "backlog");
    int rc = 0;
    if (tcp_wanted(rt->cfg)) {
        rc = sock_listen_tcp(config_str(rt->cfg, "listen"), port, SOCK_PORT_OWN, backlog,
                             rt->listen_fds, RT_MAX_LISTEN, &rt->nlisten, err, sizeof(err));
    }
    for (size_t i = 0; i < rt->nlisten; i++) {
        rt->listen_tls[i] = config_bool(rt->cfg, "enable-ssl");
    }
    uint16_t tls_port = (uint16_t)config_uint(rt->cfg, "tls-port");
    if (rc == 0 && tls_port != 0) {
        size_t n = 0;
        rc = sock_listen_tcp(config_str(rt->cfg, "listen"), tls_port, SOCK_PORT_HOST, backlog,
                             rt->listen_fds + rt->nlisten, RT_MAX_LISTEN - rt->nlisten, &n, err,
                             sizeof(err));
        for (size_t i = rt->nlisten; i < rt->nlisten + n; i++) {
            rt->listen_tls[i] = true;
        }
        rt->nlisten += n;
    }
    for (size_t k = 0; rc == 0 && tcp_wanted(rt->cfg) && k < rt->p->nports; k++) {
        /* The product's other protocols, each on its own plain TCP port (0: off). */
        uint16_t extra = (uint16_t)config_uint(rt->cfg, rt->p->ports[k].option);
        size_t n = 0;
        if (extra == 0) {
            continue;
        }
        rc = sock_listen_tcp(config_str(rt->cfg, "listen"), extra, SOCK_PORT_HOST, backlog,
                             rt->listen_fds + rt->nlisten, RT_MAX_LISTEN - rt->nlisten, &n, err,
                             sizeof(err));
        for (size_t i = rt->nlisten; i < rt->nlisten + n; i++) {
            rt->listen_proto[i] = rt->p->ports[k].proto;
        }
        rt->nlisten += n;
    }
    if (rc == 0 && config_str(rt->cfg, "unix-socket")[0] != '\0') {
        const char *path = config_str(rt->cfg, "unix-socket");
        /* check_addresses counted it among RT_MAX_LISTEN, but a name may resolve to more
         * addresses at bind time than it did then. */
        if (rt->nlisten == RT_MAX_LISTEN) {
            snprintf(err, sizeof(err), "more than %d listening sockets", RT_MAX_LISTEN);
            rc = -EINVAL;
        } else {
            rc = sock_listen_unix(path, unix_mode, backlog, err, sizeof(err));
        }
        if (rc >= 0) {
            rt->listen_fds[rt->nlisten++] = rc;
            rt->unix_path = strdup(path);
            rc = 0;
        }
    }
    if (rc == 0) {
        rc = admin_listen(rt, err, sizeof(err));
    }
    if (rc < 0) {
        log_error("%s", err);
        return rc;
    }
    for (size_t i = 0; i < rt->nlisten; i++) {
        struct rt_listener *l = &rt->listeners[i];
        l->fd = rt->listen_fds[i];
        l->family = sock_name(l->fd, l->name, sizeof(l->name));
        const char *proto = "";
        for (size_t k = 0; k < rt->p->nports; k++) {
            if (rt->p->ports[k].proto == rt->listen_proto[i]) {
                proto = rt->p->ports[k].name;
            }
        }
        log_info("listening on %s%s%s%s", l->name, rt->listen_tls[i] ? " (tls)" : "",
                 proto[0] != '\0' ? " " : "", proto);
    }
    char name[128];
    sock_name(rt->admin_fd, name, sizeof(name));
    log_info("admin port on %s", name);
    return 0;
}

/* Start the workers; *started counts the threads created, which must all be joined. */
static int
start_workers(struct runtime *rt, unsigned *started)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        int rc = worker_init(&rt->workers[i], rt, i);
        if (rc < 0) {
            log_error("worker %u: %s", i, strerror(-rc));
            return rc;
        }
    }
    int rc = workers_connect(rt);
    if (rc < 0) {
        log_error("forwarding rings: %s", strerror(-rc));
        return rc;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rc = pthread_create(&rt->workers[i].thread, NULL, worker_main, &rt->workers[i]);
        if (rc != 0) {
            log_error("worker %u: pthread_create: %s", i, strerror(rc));
            return -rc;
        }
        (*started)++;
    }
    /* Wait until every worker built its product context (a shard can take a while to map). */
    int failed = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = &rt->workers[i];
        while (!atomic_load_explicit(&w->started, memory_order_acquire)) {
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
        rc = atomic_load(&w->setup_rc);
        if (rc < 0) {
            log_error("worker %u: setup failed: %s", i, strerror(-rc));
            failed = rc;
        }
    }
    return failed;
}

/* Each connection is a descriptor: make sure max-conns of them can be open. */
static void
raise_fd_limit(const struct runtime *rt, unsigned max_conns)
{
    rlim_t want = (rlim_t)max_conns + 64 + 4 * rt->nworkers;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
        log_warn("descriptor limit %llu is below what %u connections need (%llu): raise "
                 "LimitNOFILE / ulimit -n or lower --max-conns",
                 (unsigned long long)rl.rlim_cur, max_conns, (unsigned long long)want);
    }
}

/* -k: as memcached, a lock that fails is a warning, not a reason to stay down. Done once the
 * privileges are dropped (the memlock limit that will apply is the one checked) and the shards'
 * heaps are mapped: locked then, a failure is this warning, where MCL_FUTURE set before would
 * make the heap's own mapping fail and stop start-up. */
static void
lock_memory(void)
{
    if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
        log_warn("--lock-memory: mlockall failed (%s): memory is not locked", strerror(errno));
    }
}

/* Block the signals the main thread takes through signalfd; threads inherit the mask. */
static int
signals_setup(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_sigmask(SIG_BLOCK, set, NULL) != 0) {
        return -errno;
    }
    int fd = signalfd(-1, set, SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static void
report_fixed(void *arg, const struct opt_def *def, const char *old_value, const char *new_value)
{
    log_warn("reload: %s changed from '%s' to '%s' but cannot change while running: keeping '%s' "
             "(restart to apply)",
             def->name, old_value, new_value, old_value);
}

static void
report_change(void *arg, const struct opt_def *def, const char *old_value, const char *new_value)
{
    log_info("reload: %s: '%s' -> '%s'", def->name, old_value, new_value);
}

/* Give the handshake thread certificates to use from now on (it drops those it had). */
static void
tls_publish(struct runtime *rt, struct tls_server *srv)
{
    tls_server_put(atomic_exchange(&rt->tls_next, tls_server_get(srv)));
    eventfd_write(rt->hs_waker.efd, 1);
}

/* SIGHUP: read the certificate files again, changed or not (renewals keep their names). A set
 * that does not load leaves the one in force; open connections keep theirs either way. */
static void
tls_reload(struct runtime *rt, const struct config *cfg)
{
    char err[512];
    struct tls_server *srv = NULL;
    if (tls_load(cfg, rt->tls, &srv, err, sizeof(err)) != 0) {
        log_error("tls: reload: %s; keeping the certificates in use", err);
        atomic_fetch_add(&rt->tls_stats.reload_errors, 1);
        return;
    }
    tls_publish(rt, srv);
    tls_server_put(rt->tls);
    rt->tls = srv;
    char what[256];
    tls_server_describe(srv, what, sizeof(what));
    log_info("tls: reloaded: %s", what);
}

/*
 * Re-read the config file. A file that does not load leaves everything as it was; settings
 * that cannot change while running are named and kept; the rest is published as a new struct
 * rt_live (rcu_xchg_pointer), and the old one is freed after every reader is done with it.
 * Main thread, the only writer of rt->live.
 */
static void
reload(struct runtime *rt)
{
    struct rt_live *cur = rt->live;
    char err[512];
    struct config *next = NULL;
    int rc = config_reload(cur->cfg, &next, err, sizeof(err));
    if (rc < 0) {
        log_error("reload: %s; the running configuration is unchanged", err);
        atomic_fetch_add(&rt->reload_errors, 1);
        return;
    }
    struct rt_live *l = NULL;
    if (config_keep_fixed(next, cur->cfg, report_fixed, NULL) < 0 ||
        (l = live_new(next, true)) == NULL) {
        log_error("reload: out of memory; the running configuration is unchanged");
        config_free(&next);
        atomic_fetch_add(&rt->reload_errors, 1);
        return;
    }
    prcu_publish();
    struct rt_live *old = rcu_xchg_pointer(&rt->live, l);
    log_set_level(l->level);
    if (l->max_conns > old->max_conns) {
        raise_fd_limit(rt, l->max_conns);
    }
    atomic_fetch_add(&rt->reloads, 1);
    if (rt->tls_on) {
        tls_reload(rt, next);
    }
    /* Log the changes once they are in force and counted: whoever reads the log line and then
     * the figures sees them agree. old stays valid here: only main frees it. */
    if (config_diff(old->cfg, next, report_change, NULL) == 0) {
        log_info("reload: %s: no reloadable setting changed",
                 config_file(next) ? config_file(next) : "no config file");
    }
    if (prcu_defer_free(old, live_free) < 0) {
        prcu_synchronize(); /* no memory for a deferred free: wait for the readers here */
        live_free(old);
    }
}

/* Serve until SIGTERM or SIGINT; SIGHUP reopens the log files and reloads the configuration. */
static void
signal_loop(struct runtime *rt, int sfd)
{
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si)) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            log_error("signalfd: %s", strerror(errno));
            return;
        }
        if (si.ssi_signo == SIGHUP) {
            log_info("SIGHUP: reopening the log files and reloading the configuration");
            log_request_reopen();
            reload(rt);
            continue;
        }
        log_info("%s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        return;
    }
}

static void
stop_threads(struct runtime *rt, bool acceptor, bool handshake, bool admin, unsigned workers)
{
    atomic_store(&rt->stop, true);
    if (acceptor) {
        eventfd_write(rt->acceptor_waker.efd, 1);
        pthread_join(rt->acceptor, NULL);
    }
    /* After the acceptor, its only source; its handshakes in progress are dropped. */
    if (handshake) {
        eventfd_write(rt->hs_waker.efd, 1);
        pthread_join(rt->handshaker, NULL);
    }
    /* Before the workers free the memory it may be faulting in. */
    populate_stop(&rt->populate);
    for (unsigned i = 0; i < workers; i++) {
        atomic_store(&rt->workers[i].stop, true);
        eventfd_write(rt->workers[i].waker.efd, 1);
    }
    for (unsigned i = 0; i < workers; i++) {
        pthread_join(rt->workers[i].thread, NULL);
    }
    if (admin) {
        eventfd_write(rt->admin_waker.efd, 1);
        pthread_join(rt->admin, NULL);
    }
}

static void
runtime_free(struct runtime *rt)
{
    if (rt->workers != NULL) {
        workers_free_mesh(rt);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        worker_fini(&rt->workers[i]);
    }
    free(rt->workers);
    for (size_t i = 0; i < rt->nlisten; i++) {
        if (rt->listen_fds[i] >= 0) {
            close(rt->listen_fds[i]);
        }
    }
    if (rt->admin_fd >= 0) {
        close(rt->admin_fd);
    }
    if (rt->unix_path != NULL) {
        unlink(rt->unix_path);
        free(rt->unix_path);
    }
    populate_fini(&rt->populate);
    waker_fini(&rt->acceptor_waker);
    waker_fini(&rt->admin_waker);
    waker_fini(&rt->hs_waker);
    /* Every thread has stopped: sockets and sessions still between them are closed here. */
    void *item;
    while (rt->hs_in != NULL && (item = ring_pop(rt->hs_in)) != NULL) {
        handoff_discard(item);
    }
    while (rt->hs_out != NULL && (item = ring_pop(rt->hs_out)) != NULL) {
        handoff_discard(item);
    }
    ring_destroy(&rt->hs_in);
    ring_destroy(&rt->hs_out);
    tls_server_put(atomic_exchange(&rt->tls_next, NULL));
    tls_server_put(rt->tls);
    rt->tls = NULL;
}

/* The handshake thread's rings and waker, and the certificates it starts with. */
static int
tls_setup(struct runtime *rt)
{
    int rc = waker_init(&rt->hs_waker);
    if (rc == 0) {
        rc = ring_create(&rt->hs_in, 4096);
    }
    if (rc == 0) {
        rc = ring_create(&rt->hs_out, 4096);
    }
    if (rc < 0) {
        return rc;
    }
    /* Handshakes in progress may hold a quarter of buffer-memory (and at least a few). */
    rt->hs_max = (size_t)config_uint(rt->cfg, "buffer-memory") / 4 / TLS_SESSION_BYTES;
    if (rt->hs_max < 4) {
        rt->hs_max = 4;
    }
    atomic_store(&rt->tls_next, tls_server_get(rt->tls));
    char what[256];
    tls_server_describe(rt->tls, what, sizeof(what));
    log_info("tls: %s; verify clients: %s", what,
             tls_verify_names[config_enum(rt->cfg, "tls-verify")]);
    return 0;
}

/* The registry: the runtime's per-worker table, then the product's. */
static int
metrics_tables_create(struct runtime *rt)
{
    size_t n = 1 + rt->p->nmetrics;
    struct metric_table *t = calloc(n, sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    t[0] = rt_worker_metrics;
    for (size_t i = 0; i < rt->p->nmetrics; i++) {
        t[i + 1] = rt->p->metrics[i];
    }
    int rc = metrics_create(&rt->metrics, t, n);
    free(t);
    if (rc < 0) {
        log_error("metrics: the product's tables repeat a name");
    }
    return rc;
}

/*
 * -d: fork; the parent waits until the child says it is ready (or fails) and exits with 0 or 1,
 * so an init script learns whether the start worked. Called before any thread exists. Returns
 * the descriptor the child writes its verdict to, or -1 with errno.
 */
static int
daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        char ok = 0;
        ssize_t n;
        while ((n = read(p[0], &ok, 1)) < 0 && errno == EINTR) {
        }
        _exit(n == 1 && ok == 1 ? 0 : 1);
    }
    close(p[0]);
    (void)setsid();
    /* Unlike memcached, no chdir("/"): the configuration's relative paths (pid file, log file,
     * certificates re-read on SIGHUP, the config file itself) keep meaning what they meant. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        close(null); /* stderr stays until ready: a start-up error still reaches the terminal */
    }
    return p[1];
}

/* Tell the waiting parent how the start went; once ready, let go of the terminal's stderr (as
 * memcached -d, nobody reads it any more: the log then needs --log-file). */
static void
daemon_verdict(int *fd, bool ok)
{
    if (*fd < 0) {
        return;
    }
    if (ok && log_to_stderr()) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    char c = ok ? 1 : 0;
    (void)!write(*fd, &c, 1);
    close(*fd);
    *fd = -1;
}

static int
write_pid_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    char line[32];
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    int rc = write(fd, line, (size_t)n) == n ? 0 : -EIO;
    return close(fd) < 0 && rc == 0 ? -errno : rc;
}

/* -u: as root, become user (its uid, gid and groups). */
static int
drop_privileges(const char *user)
{
    if (user[0] == '\0' || geteuid() != 0) {
        return 0;
    }
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        log_error("--user: no user '%s'", user);
        return -ENOENT;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0) {
        int e = errno;
        log_error("--user: cannot become '%s': %s", user, strerror(e));
        return -e;
    }
    log_info("running as user %s (uid %u)", user, (unsigned)pw->pw_uid);
    return 0;
}

void
rt_request_stop(void)
{
    kill(getpid(), SIGTERM); /* taken by the main thread's signalfd like an operator's */
}

int
rt_main(const struct rt_product *p, const struct config *cfg)
{
    unsigned unix_mode = 0;
    int status = check_startup(p, cfg, &unix_mode);
    if (status != 0) {
        return status;
    }
    struct runtime rt_storage = {.p = p, .cfg = cfg, .admin_fd = -1}, *rt = &rt_storage;
    rt->acceptor_waker.efd = rt->admin_waker.efd = rt->hs_waker.efd = -1;
    rt->tls_on = tls_wanted(cfg);
    if (rt->tls_on) {
        char err[512];
        status = tls_load(cfg, NULL, &rt->tls, err, sizeof(err));
        if (status != 0) {
            fprintf(stderr, "%s: %s\n", p->name, err);
            return status;
        }
    }
    int rc = log_setup(effective_level(cfg), config_str(cfg, "log-file"));
    if (rc < 0) {
        fprintf(stderr, "--log-file: cannot open '%s': %s\n", config_str(cfg, "log-file"),
                strerror(-rc));
        tls_server_put(rt->tls);
        return CONFIG_EX_CONFIG;
    }
    rc = log_klog_setup(config_str(cfg, "klog-file"));
    if (rc < 0) {
        fprintf(stderr, "--klog-file: cannot open '%s': %s\n", config_str(cfg, "klog-file"),
                strerror(-rc));
        log_teardown();
        tls_server_put(rt->tls);
        return CONFIG_EX_CONFIG;
    }
    /* From here main's lines go through its ring too, so it never races the flusher's reopen. */
    log_thread_register("main");

    /* main takes part in RCU: it publishes reloaded settings and frees the old ones. */
    prcu_thread_register();
    rt->nworkers = worker_count(p, cfg);
    rt->debug_commands = config_bool(cfg, "debug-commands");
    rt->io_uring = config_enum(cfg, "io-uring");
    rt->rbuf_init = config_uint(cfg, "read-buffer");
    /* The read buffer must hold the largest request whole, plus one read's worth. */
    size_t request_max = p->request_max;
    if (p->request_limit != NULL && p->request_limit(cfg) < request_max) {
        request_max = p->request_limit(cfg);
    }
    rt->rbuf_max = request_max + rt->rbuf_init;
    rt->wbuf_limit = config_uint(cfg, "output-limit");
    /* Past the limit no new request is parsed, so one reply beyond it is all that may arrive. */
    rt->wbuf_max = rt->wbuf_limit + (p->reply_max ? p->reply_max : p->request_max) + rt->rbuf_init;
    /* Each worker gets its share, and never less than one largest request's growth. */
    rt->buf_budget = (size_t)config_uint(cfg, "buffer-memory") / rt->nworkers;
    if (rt->buf_budget < rt->rbuf_max - rt->rbuf_init) {
        rt->buf_budget = rt->rbuf_max - rt->rbuf_init;
    }
    rt->started_at = time(NULL);
    rt_current = rt;

    sigset_t set;
    int sfd = signals_setup(&set);
    unsigned started = 0;
    int daemon_fd = -1;
    const char *pid_file = "";
    status = EX_SOFTWARE_FAIL;
    rt->live = live_new((struct config *)cfg, false);
    /* Aligned as struct worker asks (its lines written by other threads: the waker, the
     * mail), which calloc does not promise. */
    rt->workers = aligned_alloc(_Alignof(struct worker), rt->nworkers * sizeof(*rt->workers));
    if (rt->workers != NULL) {
        memset(rt->workers, 0, rt->nworkers * sizeof(*rt->workers));
    }
    if (sfd < 0 || rt->live == NULL || rt->workers == NULL || waker_init(&rt->acceptor_waker) < 0 ||
        waker_init(&rt->admin_waker) < 0 || metrics_tables_create(rt) < 0) {
        log_error("start-up: %s", strerror(sfd < 0 ? -sfd : ENOMEM));
        goto out;
    }
    raise_fd_limit(rt, rt->live->max_conns);
    if (open_listeners(rt, unix_mode) < 0) {
        goto out;
    }
    /* No thread exists yet: the place to fork. Listeners are open and certificates loaded while
     * still root; the pid file is written as root too (its directory may be root's). */
    if (config_bool(cfg, "daemonize") && (daemon_fd = daemonize()) < 0) {
        log_error("--daemonize: %s", strerror(errno));
        goto out;
    }
    pid_file = config_str(cfg, "pid-file");
    if (pid_file[0] != '\0' && (rc = write_pid_file(pid_file)) < 0) {
        log_error("--pid-file: cannot write '%s': %s", pid_file, strerror(-rc));
        pid_file = "";
        goto out;
    }
    if (drop_privileges(config_str(cfg, "user")) < 0) {
        goto out;
    }
    if (rt->tls_on && (rc = tls_setup(rt)) < 0) {
        log_error("tls: %s", strerror(-rc));
        goto out;
    }
    if ((rc = populate_start(&rt->populate, rt->nworkers)) < 0) {
        log_warn("populate: no thread (%s): the workers fault their memory in themselves",
                 strerror(-rc));
    }
    if (start_workers(rt, &started) < 0) {
        stop_threads(rt, false, false, false, started);
        goto out;
    }
    if (config_bool(cfg, "lock-memory")) {
        lock_memory();
    }
    if (pthread_create(&rt->admin, NULL, admin_main, rt) != 0) {
        stop_threads(rt, false, false, false, started);
        goto out;
    }
    if (rt->tls_on && pthread_create(&rt->handshaker, NULL, handshake_main, rt) != 0) {
        stop_threads(rt, false, false, true, started);
        goto out;
    }
    if (pthread_create(&rt->acceptor, NULL, acceptor_main, rt) != 0) {
        stop_threads(rt, false, rt->tls_on, true, started);
        goto out;
    }
    log_info("%s %s ready: %u worker%s, up to %u connections", p->name, PETREL_VERSION,
             rt->nworkers, rt->nworkers == 1 ? "" : "s", rt->live->max_conns);

    char status_msg[128];
    snprintf(status_msg, sizeof(status_msg), "READY=1\nSTATUS=serving with %u workers\nMAINPID=%ld",
             rt->nworkers, (long)getpid());
    notify_send(status_msg);
    daemon_verdict(&daemon_fd, true);

    signal_loop(rt, sfd);
    notify_send("STOPPING=1");
    stop_threads(rt, true, rt->tls_on, true, started);
    log_info("stopped");
    status = 0;
out:
    if (sfd >= 0) {
        close(sfd);
    }
    if (pid_file[0] != '\0') {
        (void)unlink(pid_file); /* best effort: the user may not own its directory */
    }
    runtime_free(rt);
    rt_current = NULL;
    if (rt->live != NULL) {
        live_free(rt->live);
    }
    metrics_destroy(&rt->metrics); /* after rcu_barrier: every deferred free has run */
    prcu_thread_unregister();
    log_teardown();
    daemon_verdict(&daemon_fd, false); /* start-up failed (a no-op after the ready verdict) */
    return status;
}
