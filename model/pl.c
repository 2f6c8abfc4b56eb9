#define _GNU_SOURCE
#include "pl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

const char *pl_strerror(int code)
{
    switch (code) {
#define PL_X_CASE(name, value, text)                                                               \
    case PL_##name:                                                                                \
        return text;
        PL_ERRORS(PL_X_CASE)
#undef PL_X_CASE
    }
    return "unknown error";
}

int pl_errf(struct pl_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int pl_oom(struct pl_err *err, const char *what)
{
    return pl_errf(err, PL_ENOMEM, "out of memory: %s", what);
}

static long alloc_fail_at = -1;
static long alloc_count;

void pl_alloc_fail_at(long n)
{
    alloc_fail_at = n;
    alloc_count = 0;
}

long pl_alloc_count(void)
{
    return alloc_count;
}

/* True when the test hook says this allocation must fail. */
static int alloc_should_fail(void)
{
    long i = alloc_count++;
    return alloc_fail_at >= 0 && i == alloc_fail_at;
}

void *pl_malloc(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *pl_calloc(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *pl_realloc(void *p, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void pl_free(void *p)
{
    free(p);
}

void *pl_malloc_hook(size_t n, void *data)
{
    (void)data;
    return pl_malloc(n);
}

void pl_free_hook(void *p, void *data)
{
    (void)data;
    pl_free(p);
}

char *pl_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = pl_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

#define BIG_ALIGN ((size_t)2 << 20)

void *pl_alloc_big(size_t bytes)
{
    if (alloc_should_fail())
        return NULL;
    if (bytes == 0)
        bytes = 1;
    size_t rounded = (bytes + BIG_ALIGN - 1) / BIG_ALIGN * BIG_ALIGN;
    void *p = NULL;
    if (posix_memalign(&p, BIG_ALIGN, rounded) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    /* Touch every page now: a first-touch fault costs ~10 us per 4 KiB here. */
    memset(p, 0, rounded);
    return p;
}

void pl_free_big(void *p, size_t bytes)
{
    (void)bytes;
    free(p);
}

void pl_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "plumb: internal error: %s:%d: assertion '%s' failed\n", file, line, cond);
    abort();
}

/* Room for n more bytes and the terminating NUL; false (and oom) when it cannot be had. */
static bool buf_reserve(struct pl_buf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = pl_realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void pl_buf_add(struct pl_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void pl_buf_str(struct pl_buf *b, const char *s)
{
    pl_buf_add(b, s, strlen(s));
}

void pl_buf_printf(struct pl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Bytes of the valid UTF-8 sequence that starts s[0..n), or minus the length of its maximal
 * invalid subpart (Unicode's "substitution of maximal subparts", which Python's
 * errors="replace" and so HF's decoding follow). */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    int need;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        lo = c == 0xE0 ? 0xA0 : lo; /* no overlong forms */
        hi = c == 0xED ? 0x9F : hi; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        lo = c == 0xF0 ? 0x90 : lo;
        hi = c == 0xF4 ? 0x8F : hi; /* nothing past U+10FFFF */
    } else {
        return -1;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n || s[k] < lo || s[k] > hi)
            return -k;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

void pl_buf_json(struct pl_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    pl_buf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            int len = utf8_seq(u + i, n - i);
            if (len > 0) {
                i += (size_t)len;
                continue;
            }
            pl_buf_add(b, s + run, i - run);
            pl_buf_add(b, "\xef\xbf\xbd", 3); /* U+FFFD */
            i += (size_t)-len;
            run = i;
            continue;
        }
        i++;
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        pl_buf_add(b, s + run, i - 1 - run);
        if (c == '"' || c == '\\')
            pl_buf_printf(b, "\\%c", c);
        else if (c == '\n' || c == '\r' || c == '\t')
            pl_buf_printf(b, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        else
            pl_buf_printf(b, "\\u%04x", c);
        run = i;
    }
    pl_buf_add(b, s + run, n - run);
    pl_buf_add(b, "\"", 1);
}

void pl_buf_release(struct pl_buf *b)
{
    pl_free(b->p);
    memset(b, 0, sizeof *b);
}

/* Whether byte i of text[0, len) belongs to a UTF-8 encoded C1 control (C2 80..C2 9F). */
static int is_c1(const unsigned char *t, size_t len, size_t i)
{
    if (t[i] == 0xC2)
        return i + 1 < len && t[i + 1] >= 0x80 && t[i + 1] <= 0x9F;
    return t[i] >= 0x80 && t[i] <= 0x9F && i > 0 && t[i - 1] == 0xC2;
}

int pl_write_safe(FILE *f, const char *text, size_t len, size_t from, size_t to)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t run = from;
    for (size_t i = from; i < to; i++) {
        int control = (t[i] < 0x20 && t[i] != '\n' && t[i] != '\t') || t[i] == 0x7F;
        if (!control && !is_c1(t, len, i))
            continue;
        fwrite(text + run, 1, i - run, f);
        run = i + 1;
    }
    fwrite(text + run, 1, to - run, f);
    return ferror(f) ? PL_EIO : PL_OK;
}

double pl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pl_rng_seed(struct pl_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t pl_rng_next(struct pl_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double pl_rng_uniform(struct pl_rng *r)
{
    return (double)(pl_rng_next(r) >> 11) * 0x1.0p-53;
}

float pl_rng_normal(struct pl_rng *r)
{
    /* Box-Muller; the second value is discarded so the stream stays a plain function of state. */
    double u1 = pl_rng_uniform(r), u2 = pl_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
