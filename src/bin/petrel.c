/*
 * petrel: the memcached-compatible cache server. The runtime, the memcached protocol and one
 * Segcache shard per worker.
 *
 * As a drop-in for memcached 1.6, petrel takes every flag and -o key of memcached's command line:
 * the tables' options use memcached's short flags and long names where the meaning is the same,
 * and the lists below say what each remaining one does here (the map is in
 * docs/configuration.md).
 */
#include "petrel_build.h"

#include "petrel/config.h"
#include "petrel/mc_server.h"
#include "petrel/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_SLABS    "petrel has no slab classes: items are packed into segments"
#define NO_LRU      "petrel has no LRU lists: it evicts whole segments (--eviction)"
#define NO_EXTSTORE "petrel has no external storage (extstore): items live in memory only"

/* A decimal number, as memcached's safe_strtoul() reads it. */
static int
decimal(const char *in, unsigned long *out)
{
    char *end;
    errno = 0;
    *out = strtoul(in, &end, 10);
    return (in[0] >= '0' && in[0] <= '9' && *end == '\0' && errno == 0) ? 0 : -EINVAL;
}

/* -B/--protocol: only memcached's "ascii" is what petrel speaks. */
static int
protocol_ascii(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    (void)out;
    (void)outlen;
    if (strcmp(in, "ascii") == 0) {
        return 0;
    }
    if (strcmp(in, "binary") == 0 || strcmp(in, "auto") == 0) {
        snprintf(why, whylen,
                 "'%s': petrel speaks the text and meta protocols only, not the "
                 "binary one (use -B ascii, or leave it out)",
                 in);
        return -ENOTSUP;
    }
    snprintf(why, whylen, "'%.40s' is not one of: ascii, binary, auto", in);
    return -EINVAL;
}

/* ssl_verify_mode: memcached's 0 none, 1 SSL_VERIFY_PEER (ask; check a certificate if given),
 * 2 also FAIL_IF_NO_PEER_CERT, 3 also CLIENT_ONCE (no check again on renegotiation, which
 * petrel refuses anyway) -> --tls-verify. */
static int
verify_mode(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    static const char *const modes[] = {"none", "optional", "required", "required"};
    unsigned long v;
    if (decimal(in, &v) < 0 || v > 3) {
        snprintf(why, whylen, "'%.40s' is not 0 (none), 1 (request), 2 (require) or 3 (once)", in);
        return -EINVAL;
    }
    snprintf(out, outlen, "%s", modes[v]);
    return 0;
}

/* ssl_min_version: 0 TLS 1.0, 1 TLS 1.1, 2 TLS 1.2, 3 TLS 1.3; petrel speaks TLS 1.2 only. */
static int
min_version(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    unsigned long v;
    (void)out;
    (void)outlen;
    if (decimal(in, &v) < 0 || v > 3) {
        snprintf(why, whylen, "'%.40s' is not 0 (TLS 1.0), 1 (1.1), 2 (1.2) or 3 (1.3)", in);
        return -EINVAL;
    }
    if (v == 2) {
        return 0;
    }
    snprintf(why, whylen,
             "'%lu': petrel speaks TLS 1.2 only, so it can take 2 (TLS 1.2), the default, but "
             "not a minimum of TLS 1.%lu",
             v, v);
    return -ENOTSUP;
}

/* ssl_keyformat: OpenSSL's 1 (PEM) or 2 (ASN1, i.e. DER); mbedTLS tells them apart by content. */
static int
key_format(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    unsigned long v;
    (void)out;
    (void)outlen;
    if (decimal(in, &v) == 0 && (v == 1 || v == 2)) {
        return 0;
    }
    snprintf(why, whylen,
             "'%.40s': petrel reads a key file in PEM (1) or DER (2), not through an engine", in);
    return -ENOTSUP;
}

/* read_buf_mem_limit: megabytes; 0, memcached's default, is no limit, which petrel has not. */
static int
megabytes(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    unsigned long v;
    if (decimal(in, &v) < 0) {
        snprintf(why, whylen, "'%.40s' is not a number of megabytes", in);
        return -EINVAL;
    }
    if (v == 0) {
        snprintf(why, whylen,
                 "0 (no limit): petrel always bounds connection buffer memory; "
                 "give a number of megabytes");
        return -ENOTSUP;
    }
    snprintf(out, outlen, "%lum", v);
    return 0;
}

/* OpenSSL's names of the TLS 1.2 suites petrel's mbedTLS offers, with mbedTLS's names. */
static const char *const openssl_suites[][2] = {
    {"ECDHE-ECDSA-AES128-GCM-SHA256", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"},
    {"ECDHE-ECDSA-AES256-GCM-SHA384", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384"},
    {"ECDHE-RSA-AES128-GCM-SHA256", "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256"},
    {"ECDHE-RSA-AES256-GCM-SHA384", "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384"},
    {"ECDHE-ECDSA-CHACHA20-POLY1305", "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256"},
    {"ECDHE-RSA-CHACHA20-POLY1305", "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256"},
    {"ECDHE-ECDSA-AES128-SHA256", "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256"},
    {"ECDHE-ECDSA-AES256-SHA384", "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA384"},
    {"ECDHE-RSA-AES128-SHA256", "TLS-ECDHE-RSA-WITH-AES-128-CBC-SHA256"},
    {"ECDHE-RSA-AES256-SHA384", "TLS-ECDHE-RSA-WITH-AES-256-CBC-SHA384"},
    {"DHE-RSA-AES128-GCM-SHA256", "TLS-DHE-RSA-WITH-AES-128-GCM-SHA256"},
    {"DHE-RSA-AES256-GCM-SHA384", "TLS-DHE-RSA-WITH-AES-256-GCM-SHA384"},
    {"DHE-RSA-CHACHA20-POLY1305", "TLS-DHE-RSA-WITH-CHACHA20-POLY1305-SHA256"},
    {"AES128-GCM-SHA256", "TLS-RSA-WITH-AES-128-GCM-SHA256"},
    {"AES256-GCM-SHA384", "TLS-RSA-WITH-AES-256-GCM-SHA384"},
};

/* ssl_ciphers: an OpenSSL list of suite names ("A:B"), each turned into mbedTLS's name; an
 * mbedTLS name (TLS-...) passes as it is. OpenSSL's keywords (HIGH, !aNULL, @STRENGTH) select
 * suites by OpenSSL's own rules, which petrel cannot repeat: they are refused. */
static int
openssl_ciphers(const char *in, char *out, size_t outlen, char *why, size_t whylen)
{
    size_t used = 0;
    const char *p = in;

    out[0] = '\0';
    while (*p != '\0') {
        size_t n = strcspn(p, ": ,");
        const char *name = NULL;
        if (n > 4 && strncmp(p, "TLS-", 4) == 0) {
            name = p;
        }
        for (size_t i = 0; name == NULL && i < sizeof(openssl_suites) / sizeof(*openssl_suites);
             i++) {
            if (strlen(openssl_suites[i][0]) == n && strncmp(p, openssl_suites[i][0], n) == 0) {
                name = openssl_suites[i][1];
                n = strlen(name);
            }
        }
        if (name == NULL && n > 0) {
            snprintf(why, whylen,
                     "'%.*s' is not a TLS 1.2 suite petrel knows by its OpenSSL name (e.g. "
                     "ECDHE-RSA-AES128-GCM-SHA256); OpenSSL's keywords are not taken",
                     (int)(n < 60 ? n : 60), p);
            return -EINVAL;
        }
        if (name != NULL) {
            int w = snprintf(out + used, outlen - used, "%s%.*s", used ? ":" : "", (int)n, name);
            if (w < 0 || (size_t)w >= outlen - used) {
                snprintf(why, whylen, "the list is too long");
                return -EINVAL;
            }
            used += (size_t)w;
        }
        p += strcspn(p, ": ,");
        p += *p != '\0';
    }
    if (used == 0) {
        snprintf(why, whylen, "names no suite");
        return -EINVAL;
    }
    return 0;
}

/* memcached 1.6's flags beyond those the option tables declare with memcached's short flag and
 * long name (-p -U -s -A -l -u -m -c -v -t -b -I -L -P -d -Z and their long forms). */
static const struct opt_compat memcached_flags[] = {
    /* Long forms memcached spells differently, for the same option. */
    {'a', "unix-mask", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "unix-mode"},
    {0, "daemon", COMPAT_SET, COMPAT_ARG_NONE, .option = "daemonize", .value = "yes"},
    {0, "conn-limit", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "max-conns"},
    {0, "pidfile", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "pid-file"},
    {0, "listen-backlog", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "backlog"},
    {0, "enable-largepages", COMPAT_SET, COMPAT_ARG_NONE, .option = "prefault", .value = "yes"},
    {'M', "disable-evictions", COMPAT_SET, COMPAT_ARG_NONE, .option = "eviction", .value = "none"},
    {'B', "protocol", COMPAT_SAME, COMPAT_ARG_REQUIRED, .convert = protocol_ascii,
     .why = "ascii only: petrel speaks the text protocol (and meta), not the binary one"},
    /* Knobs of memcached's own design: accepted, with a notice. */
    {'f', "slab-growth-factor", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {'n', "slab-min-size", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {'R', "max-reqs-per-event", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel bounds a connection's turn by bytes (4 reads of --read-buffer), not by "
            "requests"},
    {'N', "napi-ids", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel's acceptor spreads connections over the workers, not by NAPI id"},
    {'W', "disable-watch", COMPAT_SAME, COMPAT_ARG_NONE, .why = "petrel has no watch command"},
    /* Refused: petrel cannot do what they ask. */
    {'i', "license", COMPAT_REFUSE, COMPAT_ARG_NONE,
     .why = "petrel does not print licences; its licence is the LICENSE file of its source and "
            "the copyright file of its package"},
    {'S', "enable-sasl", COMPAT_REFUSE, COMPAT_ARG_NONE,
     .why = "SASL is not supported: use TLS client certificates (--tls-verify)"},
    {'Y', "auth-file", COMPAT_REFUSE, COMPAT_ARG_REQUIRED,
     .why = "not supported: use TLS client certificates (--tls-verify)"},
    {0},
};

/* memcached 1.6's -o keys, its TLS and proxy builds' and extstore's included. */
static const struct opt_compat memcached_extended[] = {
    /* Mapped to petrel's options. */
    {0, "idle_timeout", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "idle-timeout"},
    {0, "read_buf_mem_limit", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "buffer-memory",
     .convert = megabytes, .why = "megabytes; 0 (no limit) is refused"},
    {0, "ssl_chain_cert", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "tls-cert"},
    {0, "ssl_key", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "tls-key"},
    {0, "ssl_ca_cert", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "tls-ca"},
    {0, "ssl_verify_mode", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "tls-verify",
     .convert = verify_mode, .why = "0 none, 1 optional, 2 and 3 required"},
    {0, "ssl_ciphers", COMPAT_SET, COMPAT_ARG_REQUIRED, .option = "tls-ciphers",
     .convert = openssl_ciphers, .why = "OpenSSL's TLS 1.2 suite names, as mbedTLS names them"},
    /* What petrel always does. */
    {0, "maxconns_fast", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "petrel always refuses a connection over --max-conns at once, with an error"},
    {0, "modern", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "memcached 1.6 changes nothing with it either"},
    {0, "inline_ascii_resp", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "memcached 1.6 changes nothing with it either"},
    {0, "no_inline_ascii_resp", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "memcached 1.6 changes nothing with it either"},
    {0, "no_drop_privileges", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "petrel does not restrict its system calls"},
    {0, "relaxed_privileges", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "petrel does not restrict its system calls"},
    {0, "ssl_session_cache", COMPAT_SAME, COMPAT_ARG_NONE,
     .why = "petrel resumes TLS sessions unless --tls-session-lifetime is 0"},
    {0, "ssl_min_version", COMPAT_SAME, COMPAT_ARG_REQUIRED, .convert = min_version,
     .why = "2 (TLS 1.2) only: petrel speaks TLS 1.2"},
    {0, "ssl_keyformat", COMPAT_SAME, COMPAT_ARG_REQUIRED, .convert = key_format,
     .why = "1 (PEM) or 2 (DER): mbedTLS reads either"},
    /* memcached's own allocator, LRU, hash table and logger: accepted, with a notice. */
    {0, "hashpower", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel sizes its hash table itself"},
    {0, "no_hashexpand", COMPAT_IGNORE, COMPAT_ARG_NONE,
     .why = "petrel sizes its hash table itself"},
    {0, "hash_algorithm", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel's hash function is its own"},
    {0, "slab_reassign", COMPAT_IGNORE, COMPAT_ARG_NONE, .why = NO_SLABS},
    {0, "no_slab_reassign", COMPAT_IGNORE, COMPAT_ARG_NONE, .why = NO_SLABS},
    {0, "slab_automove", COMPAT_IGNORE, COMPAT_ARG_OPTIONAL, .why = NO_SLABS},
    {0, "no_slab_automove", COMPAT_IGNORE, COMPAT_ARG_NONE, .why = NO_SLABS},
    {0, "slab_automove_ratio", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {0, "slab_automove_window", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {0, "slab_automove_freeratio", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {0, "slab_sizes", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {0, "slab_chunk_max", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_SLABS},
    {0, "no_chunked_items", COMPAT_IGNORE, COMPAT_ARG_NONE, .why = NO_SLABS},
    {0, "lru_maintainer", COMPAT_IGNORE, COMPAT_ARG_NONE, .why = NO_LRU},
    {0, "no_lru_maintainer", COMPAT_IGNORE, COMPAT_ARG_NONE, .why = NO_LRU},
    {0, "hot_lru_pct", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_LRU},
    {0, "warm_lru_pct", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_LRU},
    {0, "hot_max_factor", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_LRU},
    {0, "warm_max_factor", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_LRU},
    {0, "tail_repair_time", COMPAT_IGNORE, COMPAT_ARG_REQUIRED, .why = NO_LRU},
    {0, "lru_crawler", COMPAT_IGNORE, COMPAT_ARG_NONE,
     .why = "petrel has no LRU crawler: expired items go with their segments"},
    {0, "no_lru_crawler", COMPAT_IGNORE, COMPAT_ARG_NONE,
     .why = "petrel has no LRU crawler: expired items go with their segments"},
    {0, "lru_crawler_sleep", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel has no LRU crawler: expired items go with their segments"},
    {0, "lru_crawler_tocrawl", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel has no LRU crawler: expired items go with their segments"},
    {0, "watcher_logbuf_size", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel has no watch command, whose buffers this sizes"},
    {0, "worker_logbuf_size", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel has no watch command, whose buffers this sizes"},
    {0, "resp_obj_mem_limit", COMPAT_IGNORE, COMPAT_ARG_OPTIONAL,
     .why = "memcached 1.6 no longer uses it either (see read_buf_mem_limit)"},
    {0, "ssl_wbuf_size", COMPAT_IGNORE, COMPAT_ARG_REQUIRED,
     .why = "petrel writes TLS records from the connection's own buffers (--read-buffer)"},
    {0, "ssl_kernel_tls", COMPAT_IGNORE, COMPAT_ARG_NONE,
     .why = "petrel does TLS in the process (mbedTLS), without kernel offload"},
    /* Refused. */
    {0, "no_maxconns_fast", COMPAT_REFUSE, COMPAT_ARG_NONE,
     .why = "petrel always refuses a connection over --max-conns at once, with an error"},
    {0, "no_modern", COMPAT_REFUSE, COMPAT_ARG_NONE,
     .why = "it turns maxconns_fast off, and petrel always refuses a connection over --max-conns "
            "at once"},
    {0, "temporary_ttl", COMPAT_REFUSE, COMPAT_ARG_REQUIRED,
     .why = "petrel has no class of short-lived items kept from eviction"},
    {0, "track_sizes", COMPAT_REFUSE, COMPAT_ARG_NONE,
     .why = "petrel keeps no item size histogram (stats sizes)"},
    {0, "drop_privileges", COMPAT_REFUSE, COMPAT_ARG_NONE,
     .why = "petrel does not restrict its system calls (seccomp)"},
    {0, "sock_cookie_id", COMPAT_REFUSE, COMPAT_ARG_REQUIRED,
     .why = "petrel does not mark its sockets (SO_MARK)"},
    {0, "proxy_config", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = "petrel has no proxy mode"},
    {0, "proxy_arg", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = "petrel has no proxy mode"},
    {0, "proxy_uring", COMPAT_REFUSE, COMPAT_ARG_NONE, .why = "petrel has no proxy mode"},
    {0, "proxy_memprofile", COMPAT_REFUSE, COMPAT_ARG_NONE, .why = "petrel has no proxy mode"},
    {0, "ext_path", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_page_size", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_wbuf_size", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_threads", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_io_depth", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_item_size", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_item_age", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_low_ttl", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_recache_rate", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_compact_under", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_drop_under", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_max_sleep", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_max_frag", COMPAT_REFUSE, COMPAT_ARG_REQUIRED, .why = NO_EXTSTORE},
    {0, "ext_drop_unread", COMPAT_REFUSE, COMPAT_ARG_NONE, .why = NO_EXTSTORE},
    {0},
};

/* --check-config: what start-up checks before it runs (the runtime's checks and the server's,
 * mc_product.check, the functions start-up runs). */
static int
validate(const struct config *cfg)
{
    return rt_validate(&mc_product, cfg);
}

int
main(int argc, char **argv)
{
    const struct opt_table tables[] = {mc_option_table, rt_option_table};
    const struct config_product info = {
        .name = "petrel",
        .version = PETREL_VERSION,
        .validate = validate,
        .compat_flags = memcached_flags,
        .extended = memcached_extended,
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
