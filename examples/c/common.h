/* common.h - small helpers shared by the example programs (header-only, static functions). */
#ifndef HEISEN_EXAMPLES_COMMON_H
#define HEISEN_EXAMPLES_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__)
#define EX_UNUSED __attribute__((unused))
#define EX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EX_UNUSED
#define EX_PRINTF(a, b)
#endif

/* A growable byte buffer. Out of memory is fatal in these examples. */
struct buf {
    char *p;
    size_t len;
    size_t cap;
};

static EX_UNUSED void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    b->p = p;
    b->cap = cap;
}

static EX_UNUSED void buf_add(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static EX_UNUSED void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static EX_UNUSED EX_PRINTF(2, 3) void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Drops the first n bytes. */
static EX_UNUSED void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p)
        b->p[b->len] = '\0';
}

static EX_UNUSED void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Appends data with control characters, quotes, backslashes and non-ASCII bytes escaped as
 * \xHH (\n, \r, \t spelled out), so that untrusted text cannot forge log lines. */
static EX_UNUSED void buf_escaped(struct buf *b, const void *data, size_t n, size_t max)
{
    const unsigned char *s = data;
    for (size_t i = 0; i < n; i++) {
        if (max && b->len >= max) {
            buf_str(b, "...");
            return;
        }
        unsigned char c = s[i];
        if (c == '\n')
            buf_str(b, "\\n");
        else if (c == '\r')
            buf_str(b, "\\r");
        else if (c == '\t')
            buf_str(b, "\\t");
        else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            buf_printf(b, "\\x%02x", c);
        else
            buf_add(b, &c, 1);
    }
}

static EX_UNUSED double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
