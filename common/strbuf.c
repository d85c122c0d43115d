/* strbuf: growable NUL-terminated byte buffer and aborting allocators.
 * Invariant: when cap > 0, data[len] == '\0'. */
#include "strbuf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fputs("fatal: out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void strbuf_init(strbuf_t *sb)
{
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
}

void strbuf_free(strbuf_t *sb)
{
    free(sb->data);
    strbuf_init(sb);
}

void strbuf_reset(strbuf_t *sb)
{
    sb->len = 0;
    if (sb->cap)
        sb->data[0] = '\0';
}

void strbuf_reserve(strbuf_t *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need)
        cap *= 2;
    sb->data = xrealloc(sb->data, cap);
    sb->cap = cap;
}

void strbuf_vprintf(strbuf_t *sb, const char *fmt, va_list ap)
{
    /* Try in the free space first; grow and retry only when it did not fit. */
    strbuf_reserve(sb, 64);
    va_list ap2;
    va_copy(ap2, ap);
    size_t avail = sb->cap - sb->len;
    int n = vsnprintf(sb->data + sb->len, avail, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        sb->data[sb->len] = '\0';
        return;
    }
    if ((size_t)n >= avail) {
        strbuf_reserve(sb, (size_t)n);
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    }
    sb->len += (size_t)n;
}

void strbuf_printf(strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(sb, fmt, ap);
    va_end(ap);
}

void strbuf_consume(strbuf_t *sb, size_t n)
{
    if (n >= sb->len) {
        strbuf_reset(sb);
        return;
    }
    memmove(sb->data, sb->data + n, sb->len - n);
    sb->len -= n;
    sb->data[sb->len] = '\0';
}

char *strbuf_steal(strbuf_t *sb)
{
    char *p = sb->data ? sb->data : xstrdup("");
    strbuf_init(sb);
    return p;
}
