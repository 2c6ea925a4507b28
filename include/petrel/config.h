/*
 * config: options declared once, in tables, from which the command line parser, the config
 * file parser (INI), --help and --print-config are all generated.
 *
 * Each module declares a table of struct opt_def; a product passes the list of tables it is made
 * of to config_load(). Values come, in increasing precedence, from the defaults, the config file
 * (-C/--config FILE) and the command line, and are validated the same way wherever they come from.
 *
 * Threads: a struct config is built and read by the main thread before other threads start; after
 * that it is read-only and may be read from any thread.
 */
#ifndef PETREL_CONFIG_H
#define PETREL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit statuses from sysexits.h: a usage error on the command line, or a bad config file. */
#define CONFIG_EX_USAGE  64
#define CONFIG_EX_CONFIG 78

enum opt_type {
    OPT_BOOL,  /* yes/no/true/false/1/0/on/off; a flag without argument on the command line */
    OPT_UINT,  /* unsigned integer within [min, max] */
    OPT_SIZE,  /* byte count with optional k/m/g suffix (1024-based); bare numbers times unit */
    OPT_STR,   /* free text, e.g. a path or an address list */
    OPT_ENUM,  /* one of choices[], stored as its index */
    OPT_COUNT, /* a repeatable flag without argument: -v -vv; in a file, a number */
};

#define OPT_RELOADABLE 0x1u /* may change on reload (used by the admin plane) */

struct opt_def {
    const char *name;    /* long option and INI key: "threads" -> --threads, threads= */
    char short_name;     /* memcached-compatible short flag, or 0 */
    const char *section; /* INI section: "server", "storage", "admin", "tls" or "log" */
    enum opt_type type;
    const char *dflt;           /* default, written as a user would write it */
    const char *help;           /* one line for --help */
    uint64_t min, max;          /* bounds for OPT_UINT, OPT_SIZE (bytes) and OPT_COUNT */
    uint64_t unit;              /* OPT_SIZE: multiplier for a bare number (-m 64 = 64 MiB) */
    const char *const *choices; /* OPT_ENUM: NULL-terminated list */
    unsigned flags;             /* OPT_RELOADABLE */
};

/** A table of options, e.g. the runtime's or a storage engine's. */
struct opt_table {
    const char *name; /* for --help grouping, e.g. "runtime" */
    const struct opt_def *defs;
    size_t n;
};

struct config;

/** What the product tells --help and --version. */
struct config_product {
    const char *name;    /* "petrel-ping" */
    const char *version; /* PETREL_VERSION */
    const char *summary; /* one line for --help */
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
 * an error on the command line, CONFIG_EX_CONFIG (78) after an error in the file. Errors are
 * printed to stderr, naming the option ("--threads: 'abc' is not a number") or the file and line
 * ("petrel.conf:12: unknown option 'treads' in [server]"). *out is NULL unless CONFIG_RUN.
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

#endif /* PETREL_CONFIG_H */
