/*
 * memcache: the memcached text and meta protocol as a pure codec (parse and compose, no I/O).
 *
 * Parsing is streaming and zero copy: mc_parse() looks at the bytes a connection has buffered and
 * either asks for more, or returns one request whose keys and value are views into those bytes,
 * or returns an error that carries memcached's exact reply text and what to do next. Composing
 * appends replies to a struct buf. The codec never touches sockets, storage, threads or globals.
 *
 * Threads: every function may be called from any thread; a struct mc_parser and a struct
 * mc_req belong to one connection and are used by its owner thread only (no locking).
 * Memory: the codec allocates nothing; pointers in a struct mc_req point into the caller's input
 * (or into the request itself for a decoded base64 key) and are valid until that input is
 * consumed or moved, or the request is parsed again.
 */
#ifndef PETREL_MEMCACHE_H
#define PETREL_MEMCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "petrel/buf.h"

#define MC_KEY_MAX          250  /* longest key, in bytes */
#define MC_BINKEY_MAX       188  /* longest decoded base64 key (250 / 4 * 3) */
#define MC_LINE_MAX         2048 /* a line this long without '\n' loses framing (unless get/gets) */
#define MC_META_TOKENS_MAX  20   /* tokens on a meta line, command and key included */
#define MC_META_FLAGS_MAX   18   /* flags on a meta line (mg: 20 tokens less command and key) */
#define MC_OPAQUE_MAX       32   /* longest O token, the 'O' included */
#define MC_GET_LINE_DEFAULT (1u << 20) /* default bound on a get/gets line */
#define MC_BINARY_MAGIC     0x80       /* first byte of a binary protocol request */

/** Request commands. MC_CMD_NONE marks "no request" (errors and swallowed bytes). */
enum mc_cmd {
    MC_CMD_NONE = 0,
    MC_CMD_GET,
    MC_CMD_GETS,
    MC_CMD_GAT,
    MC_CMD_GATS,
    MC_CMD_SET,
    MC_CMD_ADD,
    MC_CMD_REPLACE,
    MC_CMD_APPEND,
    MC_CMD_PREPEND,
    MC_CMD_CAS,
    MC_CMD_INCR,
    MC_CMD_DECR,
    MC_CMD_DELETE,
    MC_CMD_TOUCH,
    MC_CMD_FLUSH_ALL,
    MC_CMD_VERSION,
    MC_CMD_VERBOSITY,
    MC_CMD_QUIT,
    MC_CMD_STATS,
    MC_CMD_SHUTDOWN,
    MC_CMD_SLABS,
    MC_CMD_MG,
    MC_CMD_MS,
    MC_CMD_MD,
    MC_CMD_MA,
    MC_CMD_MN,
    MC_CMD_ME,
    MC_CMD_LRU_CRAWLER,
    MC_CMD_COUNT
};

/** lru_crawler subcommands (mc_req.crawler); the parser checks their numbers, not classes. */
enum mc_crawler_op {
    MC_CRAWLER_CRAWL = 1, /* crawl <classes>: args is the class list */
    MC_CRAWLER_METADUMP,  /* metadump <classes|all|hash>: args is the class list */
    MC_CRAWLER_MGDUMP,    /* mgdump <classes|all|hash>: args is the class list */
    MC_CRAWLER_TOCRAWL,   /* tocrawl <n> */
    MC_CRAWLER_SLEEP,     /* sleep <microseconds>, at most one second */
    MC_CRAWLER_ENABLE,
    MC_CRAWLER_DISABLE,
};

/** Result of mc_parse(). */
enum mc_parse_rc {
    MC_PARSE_OK = 0, /* a complete request in *req; drop req->consumed bytes, then execute */
    MC_PARSE_AGAIN,  /* incomplete: nothing consumed; call again when more bytes arrived */
    MC_PARSE_ERROR,  /* bad input: reply req->err (mc_compose_error), then follow err.action */
    MC_PARSE_SKIP,   /* req->consumed bytes of a refused data block dropped; no reply */
};

/** What a connection does after an error reply. */
enum mc_err_action {
    MC_ERR_CONSUME = 0, /* drop req->consumed bytes and go on parsing */
    MC_ERR_SWALLOW,     /* drop req->consumed bytes; the parser then drops err.swallow more */
    MC_ERR_CLOSE,       /* framing is lost: flush pending replies and close the connection */
};

/** An error found by the parser: memcached's reply text and the recovery. */
struct mc_err {
    const char *msg;           /* reply line without "\r\n", NULL when there is nothing to say */
    uint16_t len;              /* strlen(msg) */
    bool quiet;                /* noreply was given: memcached sends nothing, nor do we */
    enum mc_err_action action; /* what to do next */
    size_t swallow;            /* MC_ERR_SWALLOW: bytes of data block to drop (value + "\r\n") */
    const char *why;           /* MC_ERR_CLOSE: why framing is lost, for a log line */
    enum mc_cmd refused;       /* a set or ms refused (value too large, or mc_parse_refuse()),
                                  whose key's old value memcached drops (its key is req->key);
                                  mc_parse_refuse() gives any storage command; else
                                  MC_CMD_NONE */
};

/** Meta flag bit for a flag character 'A'..'Z' or 'a'..'z' (bit 0..51). */
#define MC_MF(c) ((c) >= 'a' ? (UINT64_C(1) << ((c) - 'a' + 26)) : (UINT64_C(1) << ((c) - 'A')))

/**
 * Meta flags of an mg/ms/md/ma/me request. `seen` has MC_MF(c) set for every flag given; the
 * values of token flags are filled only when the flag was given (the defaults below otherwise).
 */
struct mc_meta {
    uint64_t seen;                 /* MC_MF() bits */
    char order[MC_META_FLAGS_MAX]; /* flag characters in request order, for echoing */
    uint8_t nflags;                /* entries in order[] */
    char mode;                     /* M token: ms E A P R S, ma I + D -; 0 when absent */
    bool binary_key;               /* b: key was base64 and is decoded in req->binkey */
    uint8_t opaque_len;            /* bytes of opaque, without the 'O' */
    const char *opaque;            /* O token value (view) */
    int32_t ttl;                   /* T: new TTL, memcached exptime semantics */
    int32_t vivify_ttl;            /* N: TTL of an item created on miss */
    int32_t recache_ttl;           /* R: win the recache token if the TTL left is below this */
    uint32_t client_flags;         /* F (ms) */
    uint64_t compare_cas;          /* C */
    uint64_t new_cas;              /* E */
    uint64_t delta;                /* D (ma), 1 by default */
    uint64_t initial;              /* J (ma), 0 by default */
};

/** The reply to a valid "slabs" command (Segcache has no slab classes to act on). */
enum mc_slabs {
    MC_SLABS_OK,       /* automove settings: accepted, nothing to change */
    MC_SLABS_SAME,     /* reassign with src == dst */
    MC_SLABS_BADCLASS, /* reassign: no such class */
};

/** One parsed request (or error). Fill it with mc_parse(); no initialisation needed. */
struct mc_req {
    enum mc_cmd cmd;
    bool noreply;    /* text commands: "noreply" was given; meta: q */
    bool has_delay;  /* flush_all: a delay was given */
    bool graceful;   /* shutdown graceful */
    size_t consumed; /* bytes to drop from the input (line, plus data block if any) */
    const char *key; /* the key (decoded for meta b); get family: first key */
    uint8_t klen;
    const char *key_raw; /* the key as sent (base64 for meta b), for echoing k */
    uint8_t klen_raw;
    uint32_t nkeys;   /* get family: keys on the line (gat may have 0); others 0 or 1 */
    const char *args; /* get family: the keys; stats: the arguments; lru_crawler: the class
                         list; a view of the line */
    size_t args_len;
    uint32_t nargs;  /* stats: number of arguments */
    uint32_t flags;  /* storage: client flags */
    int32_t exptime; /* storage, touch, gat/gats: exptime; flush_all: delay */
    uint32_t vlen;   /* storage, ms: value length */
    const char *val; /* storage, ms: the value (view, without the "\r\n") */
    uint64_t cas;    /* cas: cas unique */
    uint64_t delta;  /* incr/decr */
    /* The text commands about one key (get .. touch) use no field below: mc_req_pack relies on
     * it. */
    uint32_t verbosity;  /* verbosity level */
    uint8_t crawler;     /* lru_crawler: enum mc_crawler_op */
    enum mc_slabs slabs; /* slabs: the reply */
    struct mc_meta meta; /* meta commands */
    struct mc_err err;   /* MC_PARSE_ERROR */
    char binkey[MC_BINKEY_MAX];
};

/** Per-connection parser options. */
struct mc_parser_opts {
    uint32_t max_value;    /* longest accepted value (bytes); longer: object too large */
    size_t max_get_line;   /* longest get/gets line; 0 = MC_GET_LINE_DEFAULT */
    bool shutdown_enabled; /* accept "shutdown" (memcached's -A) */
};

/**
 * Per-connection parser state: only shortcuts (where to resume scanning, how many bytes a
 * pending request needs) and the remainder of a data block being swallowed. The contract that
 * makes the shortcuts safe: after MC_PARSE_AGAIN the next call passes the same bytes again,
 * possibly followed by more.
 */
struct mc_parser {
    struct mc_parser_opts opts;
    size_t need;    /* bytes the pending request needs in all; 0 when unknown */
    size_t scanned; /* bytes already searched for '\n' without finding one */
    size_t swallow; /* bytes of a refused data block still to drop */
    bool refuse;    /* inside mc_parse_refuse() */
};

/**
 * Forget the scanning shortcuts (need, scanned) so that the next call may start at an earlier
 * byte than the last one did: for a caller that parsed requests ahead and will parse some of
 * them again. last is what the last call parsed if it is among them, else NULL: a data block
 * that its refusal started to swallow is forgotten too (parsing it again starts it again). A
 * block being swallowed since an earlier call is kept.
 */
static inline void
mc_parser_rewind(struct mc_parser *p, const struct mc_req *last)
{
    p->need = 0;
    p->scanned = 0;
    if (last != NULL && last->cmd == MC_CMD_NONE && last->err.action == MC_ERR_SWALLOW) {
        p->swallow = 0;
    }
}

/** Prepare a parser for a new connection. */
void mc_parser_init(struct mc_parser *p, const struct mc_parser_opts *opts);

/**
 * Parse one request from the n bytes at buf. Returns MC_PARSE_OK (req filled, drop
 * req->consumed bytes), MC_PARSE_AGAIN (nothing consumed; p->need, when not 0, is the byte count
 * the request needs, so the caller can reserve room once), MC_PARSE_ERROR (reply with
 * mc_compose_error(), then follow req->err.action; req->consumed bytes are to be dropped unless
 * the action is MC_ERR_CLOSE) or MC_PARSE_SKIP (req->consumed bytes of a refused value dropped,
 * no reply). The result never depends on how the stream was split across calls. A request
 * starting with MC_BINARY_MAGIC (the binary protocol, which Petrel does not speak) closes the
 * connection without a reply, as it would lose framing anyway.
 */
enum mc_parse_rc mc_parse(struct mc_parser *p, const char *buf, size_t n, struct mc_req *req);

/**
 * Refuse the storage request at buf whose data block has not arrived whole (mc_parse() said
 * MC_PARSE_AGAIN with p->need set), because the memory to read it cannot be had: returns
 * MC_PARSE_ERROR with memcached's "SERVER_ERROR out of memory storing object" (silenced by a
 * text command's noreply, never by meta q), err.action MC_ERR_SWALLOW, err.refused the
 * command and req->key its key; req->consumed is the command line, and the parser then drops
 * the value and its "\r\n" as they arrive (MC_PARSE_SKIP), never needing them buffered. Any
 * other input gives what mc_parse() gives.
 */
enum mc_parse_rc mc_parse_refuse(struct mc_parser *p, const char *buf, size_t n,
                                 struct mc_req *req);

/**
 * Make *dst a copy of the request src, parsed from text without error, that carries no
 * address: each view into text becomes its offset there (a key decoded into binkey stays in
 * the copy's own binkey). So a request parsed once can travel with a copy of its text (its
 * consumed bytes) to another thread, which calls mc_req_unpack() rather than parsing it again.
 * Only what the request uses is copied: a text command's fields up to delta, a meta command's
 * up to meta (not err, an error's; of binkey only a decoded key). Any thread.
 */
void mc_req_pack(struct mc_req *dst, const struct mc_req *src, const char *text);

#define MC_REQ_BINKEY ((const char *)UINTPTR_MAX) /* packed: the key is in binkey */

/*
 * Move the views of r (its pointers into its text: key, key_raw, args, val, meta.opaque; err's
 * point at string constants) from text at `from` to text at `to`. On integers: a view the
 * command does not set is garbage, moved as garbage and never read.
 */
static inline void
mc_req_views_move(struct mc_req *r, uintptr_t from, uintptr_t to)
{
    r->key = (const char *)((uintptr_t)r->key - from + to);
    r->key_raw = (const char *)((uintptr_t)r->key_raw - from + to);
    r->args = (const char *)((uintptr_t)r->args - from + to);
    r->val = (const char *)((uintptr_t)r->val - from + to);
    r->meta.opaque = (const char *)((uintptr_t)r->meta.opaque - from + to);
}

/** Turn a packed request's offsets back into views into text, a copy of its text. Inline: it
 * runs for every forwarded request. */
static inline void
mc_req_unpack(struct mc_req *req, const char *text)
{
    bool binkey = req->key == MC_REQ_BINKEY;
    mc_req_views_move(req, 0, (uintptr_t)text);
    if (binkey) {
        req->key = req->binkey;
    }
}

/** Iterator over the keys of a get/gets/gat/gats request (validated by mc_parse). */
struct mc_key_iter {
    const char *p;
    const char *end;
};

/** Start iterating the keys of req (get family) or the arguments of stats. */
static inline void
mc_args_begin(const struct mc_req *req, struct mc_key_iter *it)
{
    it->p = req->args;
    it->end = req->args + req->args_len;
}

/** Next key or argument: true with *tok and *len set, or false at the end. */
static inline bool
mc_args_next(struct mc_key_iter *it, const char **tok, size_t *len)
{
    const char *p = it->p;
    while (p < it->end && *p == ' ') {
        p++;
    }
    if (p == it->end) {
        it->p = p;
        return false;
    }
    const char *s = p;
    while (p < it->end && *p != ' ') {
        p++;
    }
    *tok = s;
    *len = (size_t)(p - s);
    it->p = p;
    return true;
}

/** Name of a command ("get", "mg", ...), for logs and stats. */
const char *mc_cmd_name(enum mc_cmd cmd);

/** True for commands that carry a data block (set family, cas, ms). */
bool mc_cmd_is_storage(enum mc_cmd cmd);

#define MC_EXPTIME_REL_MAX 2592000 /* exptimes up to 30 days are relative, larger absolute */

/**
 * memcached's exptime as an absolute unix time, as the storage engine takes it: 0 stays 0
 * (never expires); 1..30 days is relative to now; larger is already absolute; negative gives
 * -1 (already expired). A result r != 0 with r <= now means "already expired".
 */
int64_t mc_exptime_abs(int64_t exptime, int64_t now);

/**
 * A whole token read as memcached's safe_strtoul reads numbers (client flags, lru_crawler class
 * ids): an optional sign, digits, nothing else; a '-' refused only when the result reads as
 * negative; cut to 32 bits. False for anything else.
 */
bool mc_strtoul32(const char *s, size_t len, uint32_t *out);

/* ---- composing replies: each appends to b and returns 0, -ENOBUFS or -ENOMEM ---- */

/** Fixed reply lines of the text protocol. */
enum mc_reply {
    MC_R_STORED,
    MC_R_NOT_STORED,
    MC_R_EXISTS,
    MC_R_NOT_FOUND,
    MC_R_DELETED,
    MC_R_TOUCHED,
    MC_R_OK,
    MC_R_END,
    MC_R_ERROR,
    MC_R_RESET,
    MC_R_MN,
    MC_R_EN,
    MC_R_SHUTDOWN_DISABLED, /* "SERVER_ERROR: shutdown not enabled" */
    MC_R_SLABS_SAME,        /* "SAME src and dst class are identical" */
    MC_R_SLABS_BADCLASS,    /* "BADCLASS invalid src or dst class id" */
    MC_R_TOO_LARGE,         /* "SERVER_ERROR object too large for cache" */
    MC_R_OUT_OF_MEMORY,     /* "SERVER_ERROR out of memory storing object" */
    MC_R_OOM,               /* "SERVER_ERROR out of memory" (incr/decr) */
    MC_R_NON_NUMERIC,       /* "CLIENT_ERROR cannot increment or decrement non-numeric value" */
    MC_R_BAD_FORMAT,        /* "CLIENT_ERROR bad command line format" */
    MC_R_COUNT
};

/** Append a fixed reply line ("STORED\r\n", ...). */
int mc_compose_reply(struct buf *b, enum mc_reply r);

/** Append the reply for a parse error (nothing when err->quiet or err->msg is NULL). */
int mc_compose_error(struct buf *b, const struct mc_err *err);

/** The longest "VALUE <key> <flags> <vlen>[ <cas>]\r\n" for a key of klen bytes. */
#define MC_VALUE_HDR_MAX(klen) (6 + (size_t)(klen) + 1 + 10 + 1 + 10 + 1 + 20 + 2)

/** Append "VALUE <key> <flags> <vlen>[ <cas>]\r\n" (a header only, for gathered writes). */
int mc_compose_value_hdr(struct buf *b, const char *key, size_t klen, uint32_t flags, uint32_t vlen,
                         uint64_t cas, bool with_cas);

/** Append a whole hit: VALUE header, the value, "\r\n". */
int mc_compose_value(struct buf *b, const char *key, size_t klen, uint32_t flags, const void *val,
                     uint32_t vlen, uint64_t cas, bool with_cas);

/** Append an incr/decr result: "<n>\r\n". */
int mc_compose_u64(struct buf *b, uint64_t n);

/** Append "VERSION <version>\r\n". */
int mc_compose_version(struct buf *b, const char *version);

/** Append "STAT <name> <value>\r\n". */
int mc_compose_stat(struct buf *b, const char *name, const char *value);

/** Append "STAT <name> <n>\r\n" for an unsigned counter. */
int mc_compose_stat_u64(struct buf *b, const char *name, uint64_t n);

/** Append "STAT <name> <n>\r\n" for a signed value. */
int mc_compose_stat_i64(struct buf *b, const char *name, int64_t n);

/** Meta reply codes. */
enum mc_meta_code {
    MC_META_HD, /* success, no value (VA instead when the item carries a value) */
    MC_META_VA, /* success with a value: needs it->value */
    MC_META_EN, /* mg/me miss */
    MC_META_NS, /* not stored */
    MC_META_EX, /* CAS mismatch */
    MC_META_NF, /* not found */
};

/** What the server knows about the item a meta command touched, for the return flags. */
struct mc_meta_item {
    const void *value; /* VA data (mg v: the value; ma v: the number as text) */
    uint32_t vlen;
    uint64_t cas;   /* c */
    uint32_t flags; /* f */
    int32_t ttl;    /* t: seconds left, -1 = never expires */
    uint32_t la;    /* l: seconds since last access */
    uint32_t size;  /* s: value size */
    bool hit;       /* h: fetched before */
    bool won;       /* W: this client won the recache token */
    bool stale;     /* X: item is stale */
    bool win_sent;  /* Z: a win token was already sent */
};

/**
 * Append a meta reply for req (mg, ms, md, ma, mn): the code, then the return flags the request
 * asked for, in request order, the way memcached echoes them: O and k (with b for base64 keys)
 * always; c, f, h, l, s, t (as the command allows) only when it is not NULL; W, X, Z for mg.
 * With code MC_META_VA (or HD and it->value set) the value follows. Appends nothing when q
 * suppresses this code (mg: EN; ms, md, ma: HD/VA success).
 */
int mc_compose_meta(struct buf *b, const struct mc_req *req, enum mc_meta_code code,
                    const struct mc_meta_item *it);

/**
 * The start of an mg hit's reply whose value is appended later: what mc_compose_meta(b, req,
 * MC_META_VA, it) would append, up to and including the end of the "VA <it->vlen> ..." line
 * (it->value is not read). The caller appends the it->vlen value bytes and "\r\n".
 */
int mc_compose_meta_va_hdr(struct buf *b, const struct mc_req *req, const struct mc_meta_item *it);

/** True when q on req suppresses a reply with this code. */
bool mc_meta_quiet(const struct mc_req *req, enum mc_meta_code code);

/**
 * Append the me (meta debug) hit line:
 * "ME <key> exp=<exp> la=<la> cas=<cas> fetch=<yes|no> cls=<cls> size=<size>\r\n".
 */
int mc_compose_me(struct buf *b, const struct mc_req *req, int64_t exp, uint64_t la, uint64_t cas,
                  bool fetched, uint32_t cls, uint64_t size);

/** Write n in decimal at dst (room for 20 bytes); returns the number of bytes written. */
size_t mc_u64toa(uint64_t n, char *dst);

#endif /* PETREL_MEMCACHE_H */
