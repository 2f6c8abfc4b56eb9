/* pl: error text, the allocation-failure hook, the RNG, and terminal-safe writing. */
#include "model/pl.h"
#include "tests/tap.h"

#include <stdlib.h>
#include <string.h>

/* What pl_write_safe writes for text written in ranges split at `cuts`. */
static void safe(const char *text, size_t len, const size_t *cuts, int n_cuts, char *out,
                 size_t cap)
{
    FILE *f = tmpfile();
    size_t from = 0;
    for (int i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : len;
        pl_write_safe(f, text, len, from, to);
        from = to;
    }
    rewind(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
}

static void test_write_safe(void)
{
    char out[256];
    const char evil[] = "ok\x1b[2J\x07 line\n\ttab\r\x7f caf\xc3\xa9 \xc2\x9b"
                        "31m end";
    safe(evil, sizeof evil - 1, NULL, 0, out, sizeof out);
    tap_is_str(out, "ok[2J line\n\ttab caf\xc3\xa9 31m end",
               "escape, bell, carriage return, DEL and UTF-8 C1 controls are dropped");
    size_t cuts[] = {3, 17, 26, 27};
    char split[256];
    safe(evil, sizeof evil - 1, cuts, 4, split, sizeof split);
    tap_is_str(split, out, "streaming in ranges (one cut inside the C1 pair) writes the same");
    const char fine[] = "plain \xe6\x97\xa5\xe6\x9c\xac text, \xc3\x9b too\n";
    safe(fine, sizeof fine - 1, NULL, 0, out, sizeof out);
    tap_is_str(out, fine, "printable text, CJK and a C3 9B letter pass unchanged");
}

static void test_buf(void)
{
    struct pl_buf b = {0};
    pl_buf_add(&b, "", 0);
    tap_ok(b.p && b.p[0] == '\0' && b.len == 0, "an empty append still gives a string");
    const char raw[] = "a\"b\\c\n\x01\xc3\xa9";
    pl_buf_json(&b, raw, sizeof raw - 1);
    tap_is_str(b.p, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"",
               "JSON strings escape quote, backslash and controls, keep UTF-8");
    /* Invalid UTF-8 as Python's errors="replace" decodes it: one U+FFFD per maximal subpart. */
    static const struct {
        const char *in, *out;
    } utf8[] = {
        {"a\xff", "a\xef\xbf\xbd"},                               /* a byte that never starts one */
        {"\xe2\x82", "\xef\xbf\xbd"},                             /* cut short: one replacement */
        {"\xe2\x82x", "\xef\xbf\xbdx"},                           /* cut short before ASCII */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong: two */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate: three */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98\x80\x80", "\xf0\x9f\x98\x80\xef\xbf\xbd"}, /* valid, then a stray */
        {"\xe2\x82\xac", "\xe2\x82\xac"},                         /* the euro sign, kept */
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof *utf8; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", utf8[i].out);
        b.len = 0;
        pl_buf_json(&b, utf8[i].in, strlen(utf8[i].in));
        tap_is_str(b.p, want, "invalid UTF-8 case %zu becomes U+FFFD as Python replaces it", i);
    }
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    b.len = 0;
    pl_buf_printf(&b, "%s|%d", big, 42);
    tap_ok(b.len == 602 && strcmp(b.p + 599, "|42") == 0, "printf grows past any fixed size");
    pl_buf_release(&b);
    pl_alloc_fail_at(0);
    pl_buf_str(&b, "lost");
    pl_buf_str(&b, "and after");
    pl_alloc_fail_at(-1);
    tap_ok(b.oom && b.p == NULL, "a failed growth is remembered and later appends do nothing");
    pl_buf_release(&b);
}

static void test_errors_and_alloc(void)
{
    struct pl_err err = {0};
    tap_is_int(pl_errf(&err, PL_EFORMAT, "x.jsonl:%d: field '%s'", 3, "id"), PL_EFORMAT,
               "pl_errf returns its code");
    tap_is_str(err.msg, "x.jsonl:3: field 'id'", "and formats the message");
    tap_is_str(pl_strerror(PL_ENOMEM), "out of memory", "pl_strerror knows its codes");
    pl_alloc_fail_at(1);
    void *a = pl_malloc(8), *b = pl_malloc(8), *c = pl_malloc(8);
    tap_ok(a && !b && c, "allocation 1 (0-based) fails and the others succeed");
    pl_alloc_fail_at(-1);
    pl_free(a);
    pl_free(c);
}

static void test_rng(void)
{
    struct pl_rng a, b;
    pl_rng_seed(&a, 42);
    pl_rng_seed(&b, 42);
    int same = 1;
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        same &= pl_rng_next(&a) == pl_rng_next(&b);
        float z = pl_rng_normal(&a);
        pl_rng_normal(&b);
        sum += z;
        sq += (double)z * z;
    }
    tap_ok(same, "the same seed gives the same stream");
    tap_is_float(sum / 100000, 0.0, 0.02, "normal draws have mean 0");
    tap_is_float(sq / 100000, 1.0, 0.02, "and variance 1");
}

/* Known answers, computed apart from pl.c (a few lines of Python implementing the published
 * splitmix64 and xoshiro256** of Blackman and Vigna): the state is saved in checkpoints and
 * `plumb world` promises the same bytes on every machine, so the stream must never drift. */
static void test_rng_known(void)
{
    static const struct {
        uint64_t seed;
        uint64_t state[4];
        uint64_t next[5];
    } kat[] = {
        {0,
         {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full,
          0xf88bb8a8724c81ecull},
         {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
          0x6aa594f1262d2d2cull, 0xbba5ad4a1f842e59ull}},
        {42,
         {0xbdd732262feb6e95ull, 0x28efe333b266f103ull, 0x47526757130f9f52ull,
          0x581ce1ff0e4ae394ull},
         {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
          0xecb8ad4703b360a1ull, 0xfde6dc7fe2ec5e64ull}},
    };
    for (size_t k = 0; k < sizeof kat / sizeof *kat; k++) {
        struct pl_rng r;
        pl_rng_seed(&r, kat[k].seed);
        tap_ok(memcmp(r.s, kat[k].state, sizeof r.s) == 0,
               "seed %llu: splitmix64 fills the state as the reference algorithm does",
               (unsigned long long)kat[k].seed);
        int same = 1;
        for (int i = 0; i < 5; i++)
            same &= pl_rng_next(&r) == kat[k].next[i];
        tap_ok(same, "seed %llu: the first five outputs are reference xoshiro256**'s",
               (unsigned long long)kat[k].seed);
    }
    struct pl_rng r;
    pl_rng_seed(&r, 1337);
    for (int i = 0; i < 999; i++)
        pl_rng_next(&r);
    tap_ok(pl_rng_next(&r) == 0x9f2fffd984237d1eull, "seed 1337: output 1000 is known");
    pl_rng_seed(&r, 7);
    double u0 = pl_rng_uniform(&r), u1 = pl_rng_uniform(&r);
    tap_ok(u0 == 0.7005764821796896 && u1 == 0.2787512294737843,
           "uniform draws are the top 53 bits times 2^-53 (%.17g, %.17g)", u0, u1);
    pl_rng_seed(&r, 7);
    tap_is_float(pl_rng_normal(&r), -0.15157274547711355, 1e-6,
                 "a normal draw is Box-Muller's cosine branch of those two");
}

int main(void)
{
    tap_plan(29);
    test_write_safe();
    test_buf();
    test_errors_and_alloc();
    test_rng();
    test_rng_known();
    return tap_done();
}
