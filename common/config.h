/* config: declarative configuration tables and the XML config file loader.
 *
 * Each process declares one table of options. An option's name is a path of
 * element names below the root, joined by '.', e.g. "limits.stanza-bytes" is
 * <limits><stanza-bytes>262144</stanza-bytes></limits>. The loader fills a
 * struct through each option's offset, applies defaults, checks bounds, and
 * reports an unknown element or bad value as "file:line: option: reason".
 * Repeated structured sections (e.g. <component> entries) are options of type
 * CFG_SECTION whose callback parses each occurrence. */
#ifndef WEFT_CONFIG_H
#define WEFT_CONFIG_H
#include <stddef.h>
#include "xml.h"

typedef enum cfg_type {
    CFG_STRING,   /* char* (malloc'd, freed by cfg_free) */
    CFG_INT,      /* long, within [min, max] */
    CFG_BOOL,     /* int: true/false/yes/no/1/0 */
    CFG_SIZE,     /* size_t: bytes, with optional K/M/G suffix, within [min, max] */
    CFG_SECONDS,  /* double: seconds, with optional ms/s/m/h suffix, within [min, max] */
    CFG_SECTION,  /* repeated element handed to parse() */
} cfg_type_t;

typedef struct cfg_error {
    char msg[512];   /* "file:line: option: reason" */
} cfg_error_t;

typedef struct cfg_option cfg_option_t;
/* Parses one occurrence of a CFG_SECTION element into target. Returns 0, or -1
 * after filling err via cfg_errorf. */
typedef int (*cfg_section_fn)(void *target, const xml_node_t *el, const char *file, cfg_error_t *err);

struct cfg_option {
    const char *name;      /* dotted element path */
    cfg_type_t type;
    const char *def;       /* default as text (NULL: none / empty) */
    double min, max;       /* bounds for numeric types (ignored when min == max == 0) */
    int reloadable;        /* 1 if SIGHUP applies a new value */
    size_t offset;         /* where in the target struct */
    cfg_section_fn parse;  /* CFG_SECTION only */
    const char *help;      /* one line, also used for docs/configuration.md */
};

/* Applies defaults, then loads file into target. Returns 0 or -1 with err. */
int cfg_load(const cfg_option_t *table, void *target, const char *file, cfg_error_t *err);
/* Same from an in-memory document (tests); file names it in errors. */
int cfg_load_buffer(const cfg_option_t *table, void *target, const char *file,
                    const char *data, size_t len, cfg_error_t *err);
/* Reads and parses a config file as cfg_load does, without a table (tools
 * that look at another process's config). NULL with err filled. */
xml_node_t *cfg_read_document(const char *file, cfg_error_t *err);
/* Exchanges two CFG_STRING values: a SIGHUP handler keeps a setting that
 * only applies at start by swapping it into the fresh config (the skeleton
 * frees the old one). */
void cfg_swap_str(char **a, char **b);
/* Frees CFG_STRING values of target. */
void cfg_free(const cfg_option_t *table, void *target);
/* Writes "name = value" for every option whose value differs from its default. */
void cfg_dump_changed(const cfg_option_t *table, const void *target, strbuf_t *out);
/* Writes the table as a markdown table (name, type, default, bounds, reload, help). */
void cfg_doc_markdown(const cfg_option_t *table, strbuf_t *out);
/* Formats an error message "file:line: what" into err; returns -1. */
int cfg_errorf(cfg_error_t *err, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Value parsers shared with CFG_SECTION callbacks; 0 or -1. */
int cfg_parse_bool(const char *s, int *out);
int cfg_parse_size(const char *s, size_t *out);
int cfg_parse_seconds(const char *s, double *out);

#endif
