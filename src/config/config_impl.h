/*
 * config's private header: what its parts (config.c, values.c, file.c, cli.c, help.c) share.
 * Nothing outside src/config includes it, except the module's unit tests.
 *
 *   values.c  parse, check and format one typed value; messages (config_errf, config_quote)
 *   file.c    the INI reader (inih) that sets slots from a config file
 *   cli.c     getopt_long tables built from the slots, and the walk over argv
 *   help.c    --help and --print-config text
 *   config.c  tables -> slots, config_parse/load/reload, getters, differences
 *
 * Threads: as config.h says; everything here runs on the thread that builds a configuration.
 */
#ifndef PETREL_CONFIG_IMPL_H
#define PETREL_CONFIG_IMPL_H

#include "petrel/config.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NAME_LEN_MAX 48 /* inih keeps section and key names in 50-byte arrays */
#define QUOTE_MAX    60 /* longest excerpt of a bad value quoted in a message */

/* The INI sections, NULL-terminated, in --print-config order. */
extern const char *const config_sections[];
/* Long options every product has, which no table may declare; NULL-terminated. */
extern const char *const config_builtin_names[];

enum src { SRC_DEFAULT, SRC_FILE, SRC_CLI };

struct value {
    uint64_t u; /* OPT_BOOL 0/1, OPT_ENUM index, or the number */
    char *s;    /* OPT_STR: heap copy, never NULL in a finished config */
};

/* One option of one configuration. */
struct slot {
    const struct opt_def *def;
    struct value val; /* the effective value */
    struct value cli; /* what argv said, if cli_set: applied again by config_reload() */
    bool cli_set;
    unsigned char src;  /* enum src of val */
    unsigned file_line; /* line of the file that set val, 0 if the file did not */
};

struct config {
    size_t n;
    struct slot *slots; /* in table order */
    char *file;         /* --config argument as given, or NULL */
    char *notices;      /* config_notices(): lines, or NULL for none */
};

/* ---- config.c */

/** True if name is one of config_sections. */
bool config_known_section(const char *name);

/** The slot of option name, or NULL if no table declares it. */
struct slot *config_find_slot(const struct config *cfg, const char *name);

/** Report a mistake in an option table (a programming error) on stderr and abort. */
void config_table_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- values.c */

/** snprintf into err[errlen] (nothing if errlen is 0): every error message goes through here. */
void config_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Copy at most QUOTE_MAX bytes of text into out for a message, unprintable bytes as '?' and
 * "..." where it was cut. Returns out. */
const char *config_quote(const char *text, char *out, size_t outlen);

/** d's upper bound (UINT64_MAX when max is 0), the multiplier of a bare size, its default. */
uint64_t opt_max(const struct opt_def *d);
uint64_t opt_unit(const struct opt_def *d);
const char *opt_default(const struct opt_def *d);

/**
 * Parse text for option d into v. On -EINVAL, why says what is wrong with the value (without
 * naming the option: the caller knows whether that is "--threads" or "petrel.conf:4: threads").
 * For OPT_STR, v->s is a new heap copy the caller owns. Returns 0, -EINVAL or -ENOMEM.
 */
int value_parse(const struct opt_def *d, const char *text, struct value *v, char *why, size_t len);

/** The text --print-config writes for v, which value_parse() reads back as v. Returns its
 * length, or -ENOSPC if out[len] is too small. */
int value_format(const struct opt_def *d, const struct value *v, char *out, size_t len);

/** True if a and b are the same value of option d. */
bool value_equal(const struct opt_def *d, const struct value *a, const struct value *b);

/** Replace dst with a copy of src (strings are duplicated). Returns 0 or -ENOMEM. */
int value_copy(const struct opt_def *d, struct value *dst, const struct value *src);

/* ---- file.c */

/**
 * Parse the INI file at path into cfg's values (src SRC_FILE, file_line set). Returns 0, -EBADMSG
 * (err: "path:line: ..."), -ENOMEM or the errno of reading it (err: "path: cannot open: ...").
 */
int file_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* ---- cli.c */

/* getopt_long()'s tables, generated from a configuration's slots. */
struct cli {
    struct option *longopts;
    char **no_names; /* "no-NAME" strings, one per slot (NULL unless OPT_BOOL) */
    char *optstring;
    int short_slot[256]; /* short flag -> slot index, or -1 */
    size_t nlong;
    const struct opt_compat *flags;    /* the product's compat flags, or NULL */
    size_t nflags;                     /* how many */
    int short_compat[256];             /* short flag -> index in flags, or -1 */
    const struct opt_compat *extended; /* the product's -o keys, or NULL: no -o */
};

/* What argv asks for besides option values. */
struct cli_result {
    enum config_action action;
    const char *file; /* --config's argument; points into argv */
};

/** Generate c from cfg's slots and product's compat flags (product may be NULL). Returns 0 or
 * -ENOMEM; cli_free() c either way. A compat entry that breaks a rule aborts the process. */
int cli_build(struct cli *c, const struct config *cfg, const struct config_product *product);

/** Free what cli_build() allocated; n is the number of slots it was built from. */
void cli_free(struct cli *c, size_t n);

/**
 * Walk argv once: option values go into the slots' cli values (not yet into val), built-ins into
 * res. Returns 0, -EINVAL with err naming the option, or -ENOMEM. Uses getopt's global state.
 */
int cli_parse(struct config *cfg, const struct cli *c, int argc, char **argv,
              struct cli_result *res, char *err, size_t errlen);

/**
 * Set s's command-line value from text, as if given as --NAME=text; a message names label
 * ("--threads", "-o idle_timeout"). Returns 0, -EINVAL or -ENOMEM.
 */
int cli_set(struct slot *s, const char *text, const char *label, char *err, size_t errlen);

/* ---- compat.c: the flags and -o keys of the server the product stands in for */

/** Check one compat entry against cfg's options (an -o key if extended); aborts on a bug. */
void compat_check(const struct config *cfg, const struct opt_compat *e, bool extended);

/** "-c/--conn-limit", "--daemon", "-D" for a flag; "-o KEY" for an -o key (extended). */
void compat_label(const struct opt_compat *e, bool extended, char *out, size_t len);

/**
 * Act on compat entry e given with arg (NULL: none), named label in messages (NULL: the flag's
 * compat_label()). Returns 0; -ENOTSUP for a refusal, -EINVAL for a value it cannot take, with
 * err "LABEL: why"; or -ENOMEM. A COMPAT_IGNORE entry adds a line to cfg->notices.
 */
int compat_apply(struct config *cfg, const struct opt_compat *e, const char *label, const char *arg,
                 char *err, size_t errlen);

/** One -o argument, "KEY[=VALUE][,KEY[=VALUE]...]", each key looked up in keys and applied in
 * order. Returns as compat_apply() does; an unknown key is -EINVAL. */
int compat_extended(struct config *cfg, const struct opt_compat *keys, const char *list, char *err,
                    size_t errlen);

#endif /* PETREL_CONFIG_IMPL_H */
