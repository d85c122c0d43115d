/* strbuf: a growable byte buffer, always NUL-terminated.
 * Owns its storage; strbuf_free releases it. Allocation failure aborts. */
#ifndef WEFT_STRBUF_H
#define WEFT_STRBUF_H
#include <stddef.h>
#include <stdarg.h>

typedef struct strbuf {
    char *data;   /* always NUL-terminated when cap > 0 */
    size_t len;
    size_t cap;
} strbuf_t;

void strbuf_init(strbuf_t *sb);
void strbuf_free(strbuf_t *sb);
void strbuf_reset(strbuf_t *sb);                 /* len = 0, keeps storage */
void strbuf_reserve(strbuf_t *sb, size_t extra);
/* Appending is inline: the serializers append a few bytes at a time (an
 * element's '<', its name, each attribute's pieces), and a call per piece
 * was a measurable part of serializing a stanza. Growing is the call. */
static inline void strbuf_append(strbuf_t *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap)
        strbuf_reserve(sb, n);
    if (n)
        __builtin_memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static inline void strbuf_puts(strbuf_t *sb, const char *s)
{
    strbuf_append(sb, s, __builtin_strlen(s));
}

static inline void strbuf_putc(strbuf_t *sb, char c)
{
    if (sb->len + 2 > sb->cap)
        strbuf_reserve(sb, 1);
    sb->data[sb->len++] = c;
    sb->data[sb->len] = '\0';
}
void strbuf_printf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(strbuf_t *sb, const char *fmt, va_list ap);
/* Drops the first n bytes. */
void strbuf_consume(strbuf_t *sb, size_t n);
/* Hands the storage to the caller (who frees it) and re-initialises sb. */
char *strbuf_steal(strbuf_t *sb);

/* malloc wrappers that abort on failure (STYLE: allocation failure aborts). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
