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
    const char evil[] = "ok\x1b[2J\x07 line\n\ttab\r\x7f caf\xc3\xa9 \xc2\x9b" "31m end";
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
    tap_is_str(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"",
               "JSON strings escape quote, backslash and controls, keep UTF-8");
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

int main(void)
{
    test_write_safe();
    test_buf();
    test_errors_and_alloc();
    test_rng();
    return tap_done();
}
