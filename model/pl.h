/* pl: errors and allocation shared by every plumb module.
 *
 * A fallible function returns PL_OK (0) or a negative PL_E* code and takes a
 * `struct pl_err *err` last; on failure err->msg holds a git-style message
 * ("what failed: why", lower case, no full stop, `path:line:` first for data). */
#ifndef PL_H
#define PL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PL_ERRORS(X)                                                                               \
    X(OK, 0, "success")                                                                            \
    X(ENOMEM, -1, "out of memory")                                                                 \
    X(EIO, -2, "input/output error")                                                               \
    X(EFORMAT, -3, "malformed data")                                                               \
    X(EINVAL, -4, "invalid argument")                                                              \
    X(ESHAPE, -5, "shape mismatch")                                                                \
    X(ENOTFOUND, -6, "not found")                                                                  \
    X(ENUMERIC, -7, "non-finite number")                                                           \
    X(EUSAGE, -8, "usage error")

enum pl_code {
#define PL_X_ENUM(name, value, text) PL_##name = value,
    PL_ERRORS(PL_X_ENUM)
#undef PL_X_ENUM
};

struct pl_err {
    int code;
    char msg[1024];
};

/* Human text for a code; never NULL. */
const char *pl_strerror(int code);

/* Fill err (may be NULL) with code and a printf-style message; returns code. */
int pl_errf(struct pl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill err with PL_ENOMEM and "out of memory: <what>"; returns PL_ENOMEM. */
int pl_oom(struct pl_err *err, const char *what);

/* Allocation. Every plumb allocation goes through these so that tests can make
 * allocation number N fail (pl_alloc_fail_at). pl_free(NULL) is a no-op. */
void *pl_malloc(size_t n);
void *pl_calloc(size_t count, size_t size);
void *pl_realloc(void *p, size_t n);
void pl_free(void *p);
char *pl_strdup(const char *s);
/* The same, as the (size, user data) hooks some libraries take (PCRE2's general context). */
void *pl_malloc_hook(size_t n, void *data);
void pl_free_hook(void *p, void *data);

/* Large float buffers: 64-byte aligned, huge pages requested, zeroed and touched
 * now so that no page fault lands in a hot loop. Release with pl_free_big. */
void *pl_alloc_big(size_t bytes);
void pl_free_big(void *p, size_t bytes);

/* Test hook: the allocation with index n (0-based, counted from this call)
 * fails; n < 0 disables. pl_alloc_count() is the number of allocations made
 * since the last pl_alloc_fail_at call. */
void pl_alloc_fail_at(long n);
long pl_alloc_count(void);

/* Internal invariants only; never for user data. */
#define PL_ASSERT(cond) ((cond) ? (void)0 : pl_assert_fail(#cond, __FILE__, __LINE__))
_Noreturn void pl_assert_fail(const char *cond, const char *file, int line);

/* A growable string, always NUL-terminated once anything (even "") was
 * added. Zero-initialise it. A failed growth sets `oom` and makes every later
 * call a no-op, so a writer checks once at the end. Release with pl_buf_release. */
struct pl_buf {
    char *p;
    size_t len, cap;
    bool oom;
};
void pl_buf_add(struct pl_buf *b, const char *s, size_t n);
void pl_buf_str(struct pl_buf *b, const char *s);
void pl_buf_printf(struct pl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0, n) as a quoted JSON string that strict readers accept: quote, backslash and bytes below
 * 0x20 escaped (newline, return and tab as \n, \r, \t), valid UTF-8 kept as it is, and each
 * maximal invalid subpart (a stray byte, a cut-short or overlong sequence, a surrogate) replaced
 * by U+FFFD, as HF's decoding with errors="replace" does. Model text may hold any bytes: keep
 * its exact token ids beside it. */
void pl_buf_json(struct pl_buf *b, const char *s, size_t n);
void pl_buf_release(struct pl_buf *b);

/* Write text[from, to) to f for a terminal. Model output is untrusted: it
 * loses its control characters (C0 but newline and tab, DEL, and the C1
 * controls U+0080..U+009F as UTF-8), so it cannot move the cursor or start an
 * escape sequence. text[0, len) is the whole text (len >= to), so a range
 * boundary inside a C1 sequence is judged by its neighbours; streaming a text
 * range by range writes exactly what writing it at once would. Returns PL_OK,
 * or PL_EIO when f reports a write error. */
int pl_write_safe(FILE *f, const char *text, size_t len, size_t from, size_t to);

/* Monotonic seconds. */
double pl_now(void);

/* xoshiro256** RNG: one stream per purpose; the state is four words so that
 * it can be saved in a checkpoint. */
struct pl_rng {
    uint64_t s[4];
};
void pl_rng_seed(struct pl_rng *r, uint64_t seed);
uint64_t pl_rng_next(struct pl_rng *r);
double pl_rng_uniform(struct pl_rng *r); /* [0, 1) */
float pl_rng_normal(struct pl_rng *r);   /* N(0, 1) */

#endif
