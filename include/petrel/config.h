/*
 * config: options declared once, in tables, from which the command line parser, the config
 * file parser (INI), --help and --print-config are all generated.
 *
 * Each module declares a table of struct opt_def; a product passes the list of tables it is made
 * of to config_load(). Values come, in increasing precedence, from the defaults, the config file
 * (--config FILE) and the command line, and are validated the same way wherever they come from.
 *
 * Threads: a struct config is built and read by the main thread before other threads start; after
 * that it is read-only and may be read from any thread.
 */
#ifndef PETREL_CONFIG_H
#define PETREL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* Exit statuses from sysexits.h: a usage error on the command line, or a bad config file. */
#define CONFIG_EX_USAGE  64
#define CONFIG_EX_CONFIG 78
#define CONFIG_EX_OSERR  71 /* out of memory while building the configuration */

/* Longest accepted OPT_STR value, in bytes, from any source. */
#define CONFIG_STR_MAX 4095

enum opt_type {
    OPT_BOOL,  /* yes/no/true/false/1/0/on/off; a flag without argument on the command line */
    OPT_UINT,  /* unsigned integer within [min, max] */
    OPT_SIZE,  /* byte count with optional k/m/g suffix (1024-based); bare numbers times unit */
    OPT_STR,   /* free text, e.g. a path or an address list */
    OPT_ENUM,  /* one of choices[], stored as its index */
    OPT_COUNT, /* a repeatable flag without argument: -v -vv; in a file, a number */
};

#define OPT_RELOADABLE 0x1u /* may change on reload (used by the admin plane) */
/* OPT_STR only: a comma-separated list that each use on the command line adds to (as memcached's
 * -l: "-l a -l b" is "a,b"), rather than replacing it. */
#define OPT_LIST 0x2u

struct opt_def {
    const char *name;    /* long option and INI key: "threads" -> --threads, threads= */
    char short_name;     /* memcached-compatible short flag, or 0 */
    const char *section; /* INI section: "server", "storage", "admin", "tls" or "log" */
    enum opt_type type;
    const char *dflt;           /* default, written as a user would write it */
    const char *help;           /* one line for --help */
    uint64_t min, max;          /* bounds for OPT_UINT, OPT_SIZE (bytes), OPT_COUNT; max 0: none */
    uint64_t unit;              /* OPT_SIZE: multiplier for a bare number (-m 64 = 64 MiB):
                                   0 or 1 (bytes), 1 << 10, 1 << 20 or 1 << 30 */
    const char *const *choices; /* OPT_ENUM: NULL-terminated list */
    unsigned flags;             /* OPT_RELOADABLE, OPT_LIST */
};

/**
 * A table of options, e.g. the runtime's or a storage engine's. A configuration keeps pointers to
 * the definitions (not to the opt_table array itself): they must outlive it, which static const
 * tables do. Names and short flags must be unique across the tables of one product; a table that
 * breaks a rule (duplicate, bad default, unknown section...) aborts the process at load.
 */
struct opt_table {
    const char *name; /* for --help grouping, e.g. "runtime" */
    const struct opt_def *defs;
    size_t n;
};

struct config;

/* What a flag, or an -o key, of the server this product stands in for (memcached) does here. */
enum compat_action {
    COMPAT_SET,    /* sets option: to value, or to its argument (through convert, if any) */
    COMPAT_SAME,   /* accepted, sets nothing: the product always behaves as it asks; convert,
                      if any, checks the argument and refuses the values it cannot honour */
    COMPAT_IGNORE, /* accepted, sets nothing, with a notice: a knob of the other server's own
                      design (its allocator, its LRU) that means nothing here and changes
                      nothing a client sees; why says so */
    COMPAT_REFUSE, /* refused with why: the product cannot give what it asks */
};

enum compat_arg {
    COMPAT_ARG_NONE,     /* a flag: -M; an -o key without '=': maxconns_fast */
    COMPAT_ARG_REQUIRED, /* -c 100, --conn-limit=100; idle_timeout=30 */
    COMPAT_ARG_OPTIONAL, /* --name=value, or an -o key with or without '=': slab_automove[=1] */
};

/**
 * Turn the other server's value into text the option accepts (memcached's 0-3 verify modes into
 * none/optional/required, megabytes into "64m"). Returns 0 with the text in out; -EINVAL with
 * why for a value that is wrong, -ENOTSUP for one the product cannot honour (why without the
 * flag's name: the caller adds it).
 */
typedef int (*compat_convert_fn)(const char *in, char *out, size_t outlen, char *why,
                                 size_t whylen);

/**
 * One flag (or -o key) of the server this product stands in for. Lists of them end with {0}. Flags
 * are part of the command line: a short or long form that a table also declares is a programming
 * error (the process aborts at load), except for COMPAT_REFUSE entries, which a table's option
 * overrides (the product has come to support it).
 */
struct opt_compat {
    char short_name;           /* flags: the short form, or 0; -o keys: 0 */
    const char *name;          /* flags: the long form without "--", or NULL; -o keys: the key */
    enum compat_action action; /* what it does */
    enum compat_arg arg;       /* whether it takes a value */
    const char *option;        /* COMPAT_SET: the option it sets */
    const char *value;         /* COMPAT_SET given without a value: the text it sets ("none") */
    compat_convert_fn convert; /* see compat_convert_fn; NULL: the argument as given */
    const char *why;           /* one line: the reason for COMPAT_IGNORE (printed as a notice)
                                  and COMPAT_REFUSE (the error), required; for COMPAT_SAME and
                                  COMPAT_SET, what it means here, for --help; optional */
};

/** What the product tells --help and --version. */
struct config_product {
    const char *name;    /* "petrel-ping" */
    const char *version; /* PETREL_VERSION */
    const char *summary; /* one line for --help */
    /* --check-config runs this after the options parsed: the checks start-up makes that no
     * single option's type can (files to load, options that exclude each other). Returns 0,
     * or prints the error to stderr and returns the exit status. Optional. */
    int (*validate)(const struct config *cfg);
    /* The other server's flags this product maps, accepts or refuses (see opt_compat); optional.
     * A flag in neither a table nor this list is an unknown option. */
    const struct opt_compat *compat_flags;
    /* Keys of -o/--extended KEY[=VALUE][,KEY[=VALUE]...], memcached's extended options, which
     * may be repeated; NULL: the product has no -o. */
    const struct opt_compat *extended;
};

/* config_load() returns this when the program should go on and run. */
#define CONFIG_RUN (-1)

/**
 * Build the configuration from the tables, the optional config file and argv.
 *
 * Handles --help, --version, --print-config (the effective configuration as a loadable INI file)
 * and --check-config (validate, report, exit) itself, printing to stdout. On success *out is set
 * and CONFIG_RUN is returned. Otherwise the return value is the exit status the program should
 * end with: 0 after --help/--version/--print-config/--check-config, CONFIG_EX_USAGE (64) after
 * an error on the command line or a refused flag, CONFIG_EX_CONFIG (78) after an error in the
 * file. Errors are printed to stderr, naming the option ("--threads: 'abc' is not a number") or
 * the file and line ("petrel.conf:12: unknown option 'treads' in [server]"); so are the notices
 * (config_notices()) before running, printing or checking. *out is NULL unless CONFIG_RUN.
 */
int config_load(struct config **out, const struct config_product *product,
                const struct opt_table *tables, size_t ntables, int argc, char **argv);

/** Free a configuration and set *cfg to NULL. */
void config_free(struct config **cfg);

/* Typed getters. Asking for an option that no table declares, or with the wrong type, is a
 * programming error: the process aborts with a message. */
bool config_bool(const struct config *cfg, const char *name);
uint64_t config_uint(const struct config *cfg,
                     const char *name); /* OPT_UINT, OPT_SIZE, OPT_COUNT */
const char *config_str(const struct config *cfg, const char *name); /* never NULL; "" if empty */
unsigned config_enum(const struct config *cfg, const char *name);   /* index into choices */

/** Path of the config file that was loaded, or NULL. */
const char *config_file(const struct config *cfg);

/* ---- Below: parsing without printing, output helpers, reload. Main thread only unless noted. */

/** What the command line asks for besides running. */
enum config_action {
    CONFIG_ACTION_RUN,     /* no built-in action: run with the configuration */
    CONFIG_ACTION_HELP,    /* -h/--help */
    CONFIG_ACTION_VERSION, /* -V/--version */
    CONFIG_ACTION_PRINT,   /* --print-config */
    CONFIG_ACTION_CHECK,   /* --check-config */
};

/**
 * The work of config_load() without any printing: build a configuration from the defaults, the
 * file named by --config (read first, wherever --config is on the line) and then the rest of argv.
 *
 * On success returns 0, sets *action and, unless the action is HELP or VERSION (which need no
 * configuration and load no file), sets *out to a configuration the caller frees with
 * config_free(). On failure *out is NULL, err holds one line without a trailing newline and
 * without the program name ("--threads: '0' is out of range (1..256)", "petrel.conf:4: ...") and
 * the return value says whose fault it was: -EINVAL for the command line; -ENOTSUP for a flag or
 * -o key the product refuses (config_parse_product(): "-D: per-prefix statistics (stats detail)
 * are not supported"); -EBADMSG for the
 * contents of the file; the errno of open/read (-ENOENT, -EACCES, -EISDIR, -EFBIG...) when the
 * file cannot be read; -ENOMEM. config_exit_status() maps these to exit statuses.
 *
 * Uses getopt_long(), whose state is global: call from one thread at a time. argv is not
 * modified (no permutation: the first non-option argument is an error).
 */
int config_parse(struct config **out, enum config_action *action, const struct opt_table *tables,
                 size_t ntables, int argc, char **argv, char *err, size_t errlen);

/** config_parse() for a product: its compat_flags and -o keys (see opt_compat) join the command
 * line. product may be NULL, which is config_parse(). */
int config_parse_product(struct config **out, enum config_action *action,
                         const struct config_product *product, const struct opt_table *tables,
                         size_t ntables, int argc, char **argv, char *err, size_t errlen);

/** Exit status for a config_parse()/config_reload() result: 0, 64, 78 or 71 (-ENOMEM). */
int config_exit_status(int rc);

/**
 * The notices of the command line that built cfg, one line each ending in '\n', or "": the flags
 * and -o keys accepted without effect (COMPAT_IGNORE), e.g. "-o hashpower: accepted, no effect:
 * ...". config_load() prints them to stderr. A configuration from config_reload() has none.
 */
const char *config_notices(const struct config *cfg);

/**
 * Re-read the file old was loaded from into a new configuration and apply old's command-line
 * options on top again, so the result is what a fresh start with the same argv would give. old
 * is not touched, so a file that fails to parse leaves the running configuration as it was.
 * Returns 0 and sets *out, or a negative errno as config_parse() does, with err naming file:line.
 * Without a file (no --config at start) the result equals old. Main thread; old may be read by
 * other threads meanwhile.
 */
int config_reload(const struct config *old, struct config **out, char *err, size_t errlen);

/** Called by config_foreach(): value is the option's text as --print-config writes it. */
typedef int (*config_visit_fn)(void *arg, const struct opt_def *def, const char *value);

/**
 * Call fn for every option, in table order, with its value formatted as config_format_value()
 * does. Stops at, and returns, the first non-zero return of fn; returns 0 after the last option.
 * Any thread may call it on a configuration that is no longer changed.
 */
int config_foreach(const struct config *cfg, config_visit_fn fn, void *arg);

/**
 * Write option name's value as text a config file accepts ("yes", "64m", "info", "4") into
 * out[len], NUL-terminated. Returns the length, -ENOENT if no table declares name (the admin plane
 * may pass user input, so this does not abort) or -ENOSPC if len is too small (CONFIG_STR_MAX + 1
 * is always enough).
 */
int config_format_value(const struct config *cfg, const char *name, char *out, size_t len);

/**
 * Write a size as a size option is written, with the largest suffix that is exact ("64m",
 * "1536k", "1000b", "0"), so that it reads back as itself. Returns out. Any thread.
 */
const char *config_format_size(uint64_t v, char *out, size_t len);

/** Called by config_diff() and config_keep_fixed() for an option whose values differ. */
typedef void (*config_diff_fn)(void *arg, const struct opt_def *def, const char *old_value,
                               const char *new_value);

/**
 * Call fn for every option whose value differs between old and new (built from the same tables,
 * e.g. by config_reload(); otherwise the process aborts). Returns the number of differences.
 */
int config_diff(const struct config *old, const struct config *new, config_diff_fn fn, void *arg);

/**
 * Put back into next the value old has for every option without OPT_RELOADABLE that differs,
 * calling fn (may be NULL) for each so the caller can log "changing X needs a restart". Use on a
 * config_reload() result before publishing it. Returns the number of options put back or -ENOMEM.
 */
int config_keep_fixed(struct config *next, const struct config *old, config_diff_fn fn, void *arg);

/**
 * Append the --help text to b: usage line, the product's summary, every option of every table
 * grouped by table, then the built-in options. Returns 0 or the buf error (-ENOBUFS, -ENOMEM).
 */
int config_help(struct buf *b, const struct config_product *product, const struct opt_table *tables,
                size_t ntables);

/**
 * Append the configuration to b as an INI file that --config accepts back (the --print-config
 * output): every option, grouped by section, each under its help line as a comment. Returns 0 or
 * the buf error.
 */
int config_print(struct buf *b, const struct config *cfg);

/**
 * Whether the file an option names (path) could be opened for writing, created if absent, found
 * without creating anything: a file there that this process may write, or else a directory of it
 * where this process may create one. Returns 0 or a negative errno with why ("Is a directory",
 * "No such file or directory: /var/log/petrel"). Any thread.
 */
int config_path_writable(const char *path, char *why, size_t whylen);

#endif /* PETREL_CONFIG_H */
