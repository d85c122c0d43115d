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
void strbuf_append(strbuf_t *sb, const char *s, size_t n);
void strbuf_puts(strbuf_t *sb, const char *s);
void strbuf_putc(strbuf_t *sb, char c);
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
