/* config compat: the flags and -o keys of the server a product stands in for (memcached), each
 * mapped to one of the product's options, accepted, or refused with a reason. The lists are the
 * product's (struct config_product); this file only acts on them. */
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX 96

void
compat_check(const struct config *cfg, const struct opt_compat *e, bool extended)
{
    char why[256];
    const char *what = e->name != NULL ? e->name : (char[]){e->short_name, '\0'};

    if (extended && (e->short_name != 0 || e->name == NULL || e->name[0] == '\0')) {
        config_table_bug("an -o key has a short flag or no name");
    }
    if (!extended && e->short_name != 0 && !isalnum((unsigned char)e->short_name)) {
        config_table_bug("compat flag '%s': short flag is not a letter or digit", what);
    }
    if ((unsigned)e->arg > COMPAT_ARG_OPTIONAL || (unsigned)e->action > COMPAT_REFUSE) {
        config_table_bug("compat '%s': unknown argument kind or action", what);
    }
    if ((e->action == COMPAT_IGNORE || e->action == COMPAT_REFUSE) && e->why == NULL) {
        config_table_bug("compat '%s': accepted without effect or refused, but no reason", what);
    }
    if (e->action != COMPAT_SET) {
        return;
    }
    struct slot *s = e->option != NULL ? config_find_slot(cfg, e->option) : NULL;
    if (s == NULL) {
        config_table_bug("compat '%s' sets '%s', which no table declares", what,
                         e->option ? e->option : "(none)");
    }
    if (e->arg != COMPAT_ARG_REQUIRED) {
        struct value v = {0};
        if (e->value == NULL || value_parse(s->def, e->value, &v, why, sizeof(why)) < 0) {
            config_table_bug("compat '%s': value for '%s' missing or bad", what, e->option);
        }
        free(v.s);
    }
}

void
compat_label(const struct opt_compat *e, bool extended, char *out, size_t len)
{
    if (extended) {
        snprintf(out, len, "-o %s", e->name);
    } else if (e->short_name != 0 && e->name != NULL) {
        snprintf(out, len, "-%c/--%s", e->short_name, e->name);
    } else if (e->short_name != 0) {
        snprintf(out, len, "-%c", e->short_name);
    } else {
        snprintf(out, len, "--%s", e->name);
    }
}

/* Append one line to cfg's notices. Returns 0 or -ENOMEM. */
static int
add_notice(struct config *cfg, const char *label, const char *why)
{
    size_t old = cfg->notices != NULL ? strlen(cfg->notices) : 0;
    size_t add = strlen(label) + strlen(why) + 32;
    char *p = realloc(cfg->notices, old + add);
    if (p == NULL) {
        return -ENOMEM;
    }
    snprintf(p + old, add, "%s: accepted, no effect: %s\n", label, why);
    cfg->notices = p;
    return 0;
}

int
compat_apply(struct config *cfg, const struct opt_compat *e, const char *label, const char *arg,
             char *err, size_t errlen)
{
    char own[LABEL_MAX], text[CONFIG_STR_MAX + 1], why[512];

    if (label == NULL) {
        compat_label(e, false, own, sizeof(own));
        label = own;
    }
    if (e->action == COMPAT_REFUSE) {
        config_errf(err, errlen, "%s: %s", label, e->why);
        return -ENOTSUP;
    }
    if (e->action == COMPAT_IGNORE) {
        return add_notice(cfg, label, e->why) < 0 ? -ENOMEM : 0;
    }
    if (arg != NULL && e->convert != NULL) {
        why[0] = '\0';
        int rc = e->convert(arg, text, sizeof(text), why, sizeof(why));
        if (rc < 0) {
            config_errf(err, errlen, "%s: %s", label, why);
            return rc == -ENOTSUP ? -ENOTSUP : -EINVAL;
        }
        arg = text;
    }
    if (e->action == COMPAT_SAME) {
        return 0;
    }
    struct slot *s = config_find_slot(cfg, e->option);
    return cli_set(s, arg != NULL ? arg : e->value, label, err, errlen);
}

static const struct opt_compat *
find_key(const struct opt_compat *keys, const char *name)
{
    for (const struct opt_compat *e = keys; e->name != NULL; e++) {
        if (strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

/* One "KEY[=VALUE]" of an -o list; item is a writable copy. */
static int
extended_item(struct config *cfg, const struct opt_compat *keys, char *item, char *err,
              size_t errlen)
{
    char label[LABEL_MAX], q[QUOTE_MAX + 4];
    char *value = strchr(item, '=');

    if (value != NULL) {
        *value++ = '\0';
    }
    const struct opt_compat *e = find_key(keys, item);
    if (e == NULL) {
        config_errf(err, errlen, "-o: unknown extended option '%s'",
                    config_quote(item, q, sizeof(q)));
        return -EINVAL;
    }
    compat_label(e, true, label, sizeof(label));
    if (e->arg == COMPAT_ARG_REQUIRED && value == NULL && e->action != COMPAT_REFUSE) {
        config_errf(err, errlen, "%s: needs a value (%s=VALUE)", label, e->name);
        return -EINVAL;
    }
    if (e->arg == COMPAT_ARG_NONE) {
        value = NULL; /* memcached takes "maxconns_fast=1" as "maxconns_fast" */
    }
    return compat_apply(cfg, e, label, value, err, errlen);
}

int
compat_extended(struct config *cfg, const struct opt_compat *keys, const char *list, char *err,
                size_t errlen)
{
    char q[QUOTE_MAX + 4];
    char *copy = strdup(list);
    int rc = 0;

    if (copy == NULL) {
        return -ENOMEM;
    }
    char *item = copy;
    while (rc == 0) {
        char *comma = strchr(item, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (item[0] == '\0' || item[0] == '=') {
            config_errf(err, errlen, "-o: an empty option in '%s'",
                        config_quote(list, q, sizeof(q)));
            rc = -EINVAL;
            break;
        }
        rc = extended_item(cfg, keys, item, err, errlen);
        if (comma == NULL) {
            break;
        }
        item = comma + 1;
    }
    free(copy);
    return rc;
}
