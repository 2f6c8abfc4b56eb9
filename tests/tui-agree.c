/* tui-agree: agreement statistics against values computed by hand (in the comments) and
 * Krippendorff's published example; then `plumb agree`'s figures from label files. */
#include "tui/agree.h"

#include "datasets/ds.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tau_cases(void)
{
    /* One swap of four: 5 concordant, 1 discordant pair: (5 - 1) / 6. */
    int a[] = {1, 2, 3, 4}, b[] = {1, 3, 2, 4};
    tap_is_float(tui_agree_tau_b(a, b, 4), 4.0 / 6.0, 1e-12, "tau-b: one swap in four");
    int r[] = {3, 2, 1};
    tap_is_float(tui_agree_tau_b(a, r, 3), -1, 1e-12, "tau-b: reversed");
    /* a ties 0 and 1, b ties 2 and 3: P = 6, ties 1 each, 4 concordant, 0 discordant:
     * 4 / sqrt(5 * 5) = 0.8. */
    int ta[] = {1, 1, 3, 4}, tb[] = {1, 2, 3, 3};
    tap_is_float(tui_agree_tau_b(ta, tb, 4), 0.8, 1e-12, "tau-b with ties in both");
    int all[] = {1, 1, 1};
    tap_ok(isnan(tui_agree_tau_b(all, r, 3)), "tau-b: undefined when one ranking ties everything");
    long pairs = 0, agree = 0;
    tui_agree_pairs(a, b, 4, &pairs, &agree);
    tap_ok(pairs == 6 && agree == 5, "pairwise: 5 of 6 pairs alike (got %ld of %ld)", agree, pairs);
    pairs = agree = 0;
    tui_agree_pairs(ta, tb, 4, &pairs, &agree);
    tap_ok(pairs == 4 && agree == 4, "pairwise: pairs tied by either are left out (%ld of %ld)",
           agree, pairs);
}

static void alpha_cases(void)
{
    /* Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the example with 4
     * observers, 12 units and missing values: alpha ordinal 0.815 (nominal 0.743, interval
     * 0.849). Rows are units, columns observers A-D. */
    const double N = NAN;
    const double v[12 * 4] = {1, 1, N, 1, 2, 2, 3, 2, 3, 3, 3, 3, 3, 3, 3, 3,
                              2, 2, 2, 2, 1, 2, 3, 4, 4, 4, 4, 4, 1, 1, 2, 1,
                              2, 2, 2, 2, N, 5, 5, 5, N, N, 1, 1, N, 3, N, N};
    double alpha;
    struct pl_err err;
    tap_is_int(tui_agree_alpha(v, 12, 4, &alpha, &err), PL_OK, "alpha: the textbook example");
    tap_is_float(alpha, 0.815, 5e-4, "alpha ordinal: Krippendorff's 0.815");
    const double same[] = {1, 1, 2, 2, 3, 3};
    tui_agree_alpha(same, 3, 2, &alpha, &err);
    tap_is_float(alpha, 1, 1e-12, "alpha: perfect agreement is 1");
    const double one[] = {1, 1, 1, 1};
    tui_agree_alpha(one, 2, 2, &alpha, &err);
    tap_ok(isnan(alpha), "alpha: undefined when every value is the same");
    pl_alloc_fail_at(0);
    int rc = tui_agree_alpha(v, 12, 4, &alpha, &err);
    pl_alloc_fail_at(-1);
    tap_is_int(rc, PL_ENOMEM, "alpha: out of memory is an error");
}

/* A label line of completions "a", "b", "c" for prompt P. */
static void label(FILE *f, const char *id, const char *who, const char *ranking, const char *ties)
{
    fprintf(f,
            "{\"id\":\"%s\",\"annotator\":\"%s\",\"ranking\":%s,\"ties\":%s,\"skipped\":false,"
            "\"time\":\"t\",\"completions\":[\"a\",\"b\",\"c\"],\"prompt\":\"P\"}\n",
            id, who, ranking, ties);
}

static void files(void)
{
    tap_tmpdir("tui-agree");
    const char *path = tap_tmp("labels.jsonl");
    FILE *f = fopen(path, "w");
    /* u1: A 0>1>2, B 1>0>2. u2: A 0>1=2, B 0>1>2. A third annotator C on u1 only, and A's first
     * label of u2 undone and relabelled. */
    label(f, "u1", "A", "[0,1,2]", "[]");
    label(f, "u1", "B", "[1,0,2]", "[]");
    label(f, "u2", "A", "[2,1,0]", "[]");
    fprintf(f, "{\"id\":\"u2\",\"annotator\":\"A\",\"undo\":true,\"time\":\"t\"}\n");
    label(f, "u2", "A", "[0,1,2]", "[[1,2]]");
    label(f, "u2", "B", "[0,1,2]", "[]");
    label(f, "u1", "C", "[0,1,2]", "[]");
    fclose(f);
    struct tui_agree_set set = {0};
    struct pl_err err;
    struct tui_agree g;
    tap_is_int(tui_agree_load(&set, path, &err), PL_OK, "labels load");
    tap_is_int(tui_agree_init(&g, &set, &err), PL_OK, "agreement computed");
    tap_ok(g.n_annotators == 3 && g.n_units == 2 && g.n_rows == 4,
           "3 annotators, 2 units, 3 pairs + overall (%d, %ld, %d)", g.n_annotators, g.n_units,
           g.n_rows);
    const struct tui_agree_row *ab = &g.rows[0];
    tap_ok(ab->a && strcmp(ab->a, "A") == 0 && strcmp(ab->b, "B") == 0, "first row: A / B");
    /* u1: levels A (1,2,3), B (2,1,3): 3 strict pairs, 2 alike; tau (2 - 1) / 3.
     * u2: A (1,2,2), B (1,2,3): the pair A ties is left out, 2 of 2 alike; tau 2 / sqrt(2 * 3). */
    tap_ok(ab->units == 2 && ab->pairs == 5 && ab->agree == 4, "A/B: 4 of 5 pairs alike");
    tap_is_float(ab->tau, (1.0 / 3 + 2 / sqrt(6)) / 2, 1e-12, "A/B: mean tau-b");
    /* Alpha over the 6 completions, values (A, B): (1,2) (2,1) (3,3) (1,1) (2,2) (2,3).
     * Coincidences o11 2, o12 = o21 2, o22 2, o23 = o32 1, o33 2; n1 4, n2 5, n3 3, n 12.
     * Ordinal delta^2: (1,2) (9 - 4.5)^2 = 20.25, (2,3) (8 - 4)^2 = 16, (1,3) (12 - 3.5)^2 = 72.25.
     * D_o = 2 (2 * 20.25 + 1 * 16) = 113; D_e = 2 (20 * 20.25 + 15 * 16 + 12 * 72.25) = 3024;
     * alpha = 1 - 11 * 113 / 3024 = 0.588955. */
    tap_is_float(ab->alpha, 1 - 11.0 * 113 / 3024, 1e-9, "A/B: alpha ordinal by hand");
    const struct tui_agree_row *ac = &g.rows[1], *all = &g.rows[3];
    tap_ok(ac->units == 1 && ac->pairs == 3 && ac->agree == 3 && ac->tau == 1,
           "A/C: one unit, full agreement");
    /* Overall: A/B 4 of 5, A/C 3 of 3, B/C on u1 (2,1,3) against (1,2,3) 2 of 3. */
    tap_ok(all->a == NULL && all->units == 4 && all->pairs == 11 && all->agree == 9,
           "overall: 4 unit-pairs, 9 of 11 pairs alike (%ld, %ld of %ld)", all->units, all->agree,
           all->pairs);
    tui_agree_release(&g);
    tui_agree_release(&g);
    tui_agree_set_release(&set);

    /* A ranking that ties everything counts here (the preference loader drops it): A ties all
     * three of u3, B does not; B's second file relabels u3 and replaces its first. */
    f = fopen(path, "w");
    label(f, "u3", "A", "[0,1,2]", "[[0,1,2]]");
    label(f, "u3", "B", "[0,1,2]", "[]");
    label(f, "u3", "C", "[2,1,0]", "[[2,1,0]]");
    fclose(f);
    const char *later = tap_tmp("later.jsonl");
    f = fopen(later, "w");
    label(f, "u3", "B", "[0,1,2]", "[[0,1,2]]");
    fprintf(f, "{\"id\":\"u9\",\"annotator\":\"B\",\"skipped\":true}\n");
    fclose(f);
    tap_ok(tui_agree_load(&set, path, &err) == PL_OK &&
               tui_agree_load(&set, later, &err) == PL_OK &&
               tui_agree_init(&g, &set, &err) == PL_OK,
           "all-tied rankings and a second file");
    tap_ok(g.replaced == 1 && g.rows[0].units == 1 && g.rows[0].pairs == 0 && isnan(g.rows[0].tau),
           "A/B: the later file's all-tied label replaced B's; no strict pair, no tau");
    tap_ok(isnan(g.rows[g.n_rows - 1].alpha), "every value the same: alpha undefined");
    tui_agree_release(&g);
    tui_agree_set_release(&set);
    tap_write_file(later, "{\"id\":\"u1\",\"annotator\":\"A\",\"undo\":true}\n");
    tap_ok(tui_agree_load(&set, later, &err) == PL_EFORMAT &&
               strstr(err.msg, "later.jsonl:1: field 'undo': annotator 'A' has no earlier label"),
           "an undo of nothing is refused as the loader refuses it: %s", err.msg);
    tui_agree_set_release(&set);
    tap_write_file(later, "{\"id\":\"u1\",\"annotator\":\"A\",\"ranking\":[0,0,1],"
                          "\"completions\":[\"a\",\"b\",\"c\"],\"prompt\":\"P\"}\n");
    tap_ok(tui_agree_load(&set, later, &err) == PL_EFORMAT &&
               strstr(err.msg, ":1: field 'ranking'"),
           "so is a ranking that is no permutation: %s", err.msg);
    tui_agree_set_release(&set);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", tap_tmpdir("tui-agree"));
    if (system(rm) != 0)
        tap_diag("cannot remove %s", tap_tmpdir("tui-agree"));
}

int main(void)
{
    tau_cases();
    alpha_cases();
    files();
    return tap_done();
}
