/* xml_parser_mem: the memory expat uses for one parser, kept in page blocks
 * of its own.
 *
 * Why: a parser is about 10 KB in a few dozen small pieces. c2s creates one
 * for every stream (and every restart) and frees it when the stream goes
 * idle, by which time the session's long-lived objects sit between those
 * pieces. With malloc, the freed pieces became thousands of small holes that
 * kept most heap pages resident: after 1,000 logins, c2s held ~10 MB of them.
 * In blocks of its own, a freed parser hands whole pages back.
 *
 * How: expat's allocation functions (xpm_suite) take no context, so the
 * owner of a parser names its arena as the current one around every expat
 * call that may allocate (xpm_enter / xpm_leave, nestable). Allocations are
 * bumped from the arena's current block; each carries a 16-byte header
 * naming its block, so free and realloc need no current arena. A block is
 * unmapped (or kept in a small per-thread cache) once nothing in it is live;
 * an allocation larger than a block gets a block of its own. With no current
 * arena, the functions fall back to malloc. Not shared between threads. */
#ifndef WEFT_XML_PARSER_MEM_H
#define WEFT_XML_PARSER_MEM_H

#include <expat.h>
#include <stddef.h>

typedef struct xpm_block xpm_block_t;

typedef struct xpm {
    xpm_block_t *cur;      /* block allocations are bumped from, or NULL */
} xpm_t;

extern const XML_Memory_Handling_Suite xpm_suite;

/* Makes m the current arena of this thread; returns the previous one, to be
 * given back to xpm_leave. */
xpm_t *xpm_enter(xpm_t *m);
void xpm_leave(xpm_t *prev);

/* After the parser using m is freed: gives back m's last block. */
void xpm_release(xpm_t *m);

/* Blocks mapped by this thread right now, cached ones included (for tests). */
size_t xpm_blocks_mapped(void);

#endif
