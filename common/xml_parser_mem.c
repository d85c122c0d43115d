/* xml_parser_mem: see xml_parser_mem.h. */
#include "xml_parser_mem.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#define XPM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XPM_ASAN 1
#endif
#endif
#ifdef XPM_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* 16 KB holds a client stream's parser whole (about 10 KB) with room for a
 * restart; larger requests (a big stanza's input buffer) get their own. */
#define BLOCK_SIZE 16384
#define CACHE_MAX 4

struct xpm_block {
    size_t map_len;        /* bytes mapped, this header included */
    size_t used;           /* bump offset from the block's start */
    size_t live;           /* allocations not yet freed */
    xpm_t *owner;          /* arena whose current block this is, or NULL */
    xpm_block_t *next;     /* in the cache */
    size_t pad_;           /* keeps the header 16-byte aligned in size */
};

/* In front of every allocation; blk is NULL for a malloc fallback. */
typedef struct xpm_hdr {
    xpm_block_t *blk;
    size_t size;
} xpm_hdr_t;

_Static_assert(sizeof(xpm_block_t) % 16 == 0, "block header alignment");
_Static_assert(sizeof(xpm_hdr_t) == 16, "allocation header size");

static _Thread_local xpm_t *current;
static _Thread_local xpm_block_t *cache;
static _Thread_local size_t ncache, nmapped;

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static xpm_block_t *block_map(size_t len)
{
    xpm_block_t *b;
    if (len == BLOCK_SIZE && cache) {
        b = cache;
        cache = b->next;
        ncache--;
    } else {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        b = p;
        nmapped++;
        POISON((char *)b + sizeof *b, len - sizeof *b);
    }
    b->map_len = len;
    b->used = sizeof *b;
    b->live = 0;
    b->owner = NULL;
    b->next = NULL;
    return b;
}

static void block_unmap(xpm_block_t *b)
{
    if (b->map_len == BLOCK_SIZE && ncache < CACHE_MAX) {
        POISON((char *)b + sizeof *b, b->map_len - sizeof *b);
        b->next = cache;
        cache = b;
        ncache++;
        return;
    }
    /* ASan keeps shadow state across munmap; a later mapping at the same
     * address must not start poisoned. */
    UNPOISON(b, b->map_len);
    munmap(b, b->map_len);
    nmapped--;
}

static void *fallback_malloc(size_t n)
{
    xpm_hdr_t *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->blk = NULL;
    h->size = n;
    return h + 1;
}

static void *xpm_malloc(size_t n)
{
    xpm_t *m = current;
    if (!m || n > SIZE_MAX / 2)
        return fallback_malloc(n);
    size_t need = round_up(sizeof(xpm_hdr_t) + (n ? n : 1), 16);
    xpm_block_t *b = m->cur;
    if (sizeof(xpm_block_t) + need > BLOCK_SIZE) {
        /* Its own block, never the arena's current one. */
        b = block_map(round_up(sizeof(xpm_block_t) + need, 4096));
        if (!b)
            return NULL;
    } else if (!b || b->used + need > b->map_len) {
        xpm_block_t *fresh = block_map(BLOCK_SIZE);
        if (!fresh)
            return NULL;
        if (b) {
            b->owner = NULL;
            if (b->live == 0)
                block_unmap(b);
        }
        fresh->owner = m;
        m->cur = b = fresh;
    }
    xpm_hdr_t *h = (xpm_hdr_t *)((char *)b + b->used);
    b->used += need;
    b->live++;
    UNPOISON(h, sizeof *h + n);
    h->blk = b;
    h->size = n;
    return h + 1;
}

static void xpm_free(void *p)
{
    if (!p)
        return;
    xpm_hdr_t *h = (xpm_hdr_t *)p - 1;
    xpm_block_t *b = h->blk;
    if (!b) {
        free(h);
        return;
    }
    POISON(h, sizeof *h + h->size);
    if (--b->live)
        return;
    if (b->owner)
        b->used = sizeof *b;   /* the current block, empty again: start over */
    else
        block_unmap(b);
}

static void *xpm_realloc(void *p, size_t n)
{
    if (!p)
        return xpm_malloc(n);
    xpm_hdr_t *h = (xpm_hdr_t *)p - 1;
    if (n <= h->size)
        return p;
    void *q = xpm_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, h->size);
    xpm_free(p);
    return q;
}

const XML_Memory_Handling_Suite xpm_suite = { xpm_malloc, xpm_realloc, xpm_free };

xpm_t *xpm_enter(xpm_t *m)
{
    xpm_t *prev = current;
    current = m;
    return prev;
}

void xpm_leave(xpm_t *prev)
{
    current = prev;
}

void xpm_release(xpm_t *m)
{
    xpm_block_t *b = m->cur;
    m->cur = NULL;
    if (!b)
        return;
    b->owner = NULL;
    if (b->live == 0)
        block_unmap(b);
}

size_t xpm_blocks_mapped(void)
{
    return nmapped;
}
