/* eval-choice: continuation log-likelihoods from the forked KV cache equal full-sequence scoring
 * (model/score.h) to 1e-5, whatever the batch; the harness's token handling (trailing spaces
 * move to the continuation, an empty context is the end token, long requests cut from the
 * left); errors for empty continuations. */
#include "eval/choice.h"
#include "model/ckpt.h"
#include "model/score.h"
#include "model/tensor.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *mdir;

static const char *const c0[] = {" Paris", " Lyon", " a much longer answer than the others"};
static const char *const c1[] = {"yes", "no"};
static const char *const c2[] = {"The cat sat.", "The dog sat down on the mat."};
static const char *const c3[] = {" x", " y", " z", " w", " v"};
static const char *const c4[] = {
    " a continuation of more than sixty-four bytes, longer than the model's whole context"};
static char long_ctx[200];
static struct eval_query queries[] = {
    {"Q: Capital of France?\nA:", c0, 3},
    {"Answer: ", c1, 2},
    {"", c2, 2},
    {long_ctx, c3, 5},
    {long_ctx, c0, 3},
    {"Q:", c4, 1},
};
#define NQ (int)(sizeof queries / sizeof *queries)
#define NU 16

static int score_all(int mode, int batch, double *ll, int *ntok)
{
    struct eval_scorer s;
    struct pl_err err = {0};
    int rc = eval_scorer_load(&s, mdir, mode, batch, &err);
    if (!rc)
        rc = eval_score(&s, queries, NQ, ll, ntok, NULL, &err);
    if (rc)
        tap_diag("%s", err.msg);
    eval_scorer_release(&s);
    return rc;
}

/* The harness's request by hand: whole = context + continuation, run through score_seqs. */
static double by_hand(struct gpt *m, const char *ctx, const char *cont)
{
    char whole[512];
    snprintf(whole, sizeof whole, "%s%s", ctx, cont);
    int ids[512], n = 0, nc = 0;
    if (!*ctx) {
        ids[n++] = 256;
        nc = 1;
    } else {
        /* Trailing spaces of the context belong to the continuation: for bytes that only moves
         * where the context ends. */
        size_t k = strlen(ctx);
        while (k > 0 && ctx[k - 1] == ' ')
            k--;
        nc = (int)k;
    }
    for (const char *p = whole; *p; p++)
        ids[n++] = (unsigned char)*p;
    struct score_ctx sc;
    struct pl_err err = {0};
    score_init(&sc, m, &err);
    const int *seqs[1] = {ids};
    float logp[512];
    float *lp[1] = {logp};
    score_seqs(&sc, seqs, &n, 1, lp, NULL, &err);
    score_release(&sc);
    double sum = 0;
    for (int t = nc - 1; t < n - 1; t++)
        sum += logp[t];
    return sum;
}

int main(void)
{
    tap_tmpdir("eval-choice");
    struct pl_err err = {0};
    if (tensor_init(NULL, 1, &err))
        tap_skip_all("BLIS does not start");
    memset(long_ctx, 'a', sizeof long_ctx - 1);
    for (size_t i = 0; i + 1 < sizeof long_ctx; i += 7)
        long_ctx[i] = ' ';
    struct gpt m;
    struct gpt_config cfg = tap_byte_config(64, 32, 2, 4);
    tap_model_perturbed(&m, &cfg, 11);
    mdir = tap_tmp("model");
    tap_is_int(ckpt_save(&m, mdir, &err), PL_OK, "a tiny model saved");

    double kv[NU], kv2[NU], full[NU], full1[NU];
    int ntok[NU];
    tap_is_int(score_all(EVAL_SCORE_KV, 32, kv, ntok), PL_OK, "KV scoring runs");
    tap_is_int(score_all(EVAL_SCORE_KV, 3, kv2, NULL), PL_OK, "KV scoring with 3 slots runs");
    tap_is_int(score_all(EVAL_SCORE_FULL, 4, full, NULL), PL_OK, "full scoring runs");
    tap_is_int(score_all(EVAL_SCORE_FULL, 2, full1, NULL), PL_OK, "full scoring, batch 2, runs");
    double worst = 0, worst_b = 0, worst_f = 0;
    for (int i = 0; i < NU; i++) {
        worst = fmax(worst, fabs(kv[i] - full[i]));
        worst_b = fmax(worst_b, fabs(kv[i] - kv2[i]));
        worst_f = fmax(worst_f, fabs(full[i] - full1[i]));
    }
    tap_ok(worst < 1e-5, "forked-cache scoring equals full scoring to 1e-5 (worst %.2g)", worst);
    tap_ok(worst_b == 0, "the cache gives the same bits with 3 slots as with 32");
    tap_ok(worst_f < 1e-5, "full scoring is the same in batches of 2 (worst %.2g)", worst_f);
    tap_ok(kv[0] < 0 && kv[2] < kv[0], "log-likelihoods are negative, a long answer lower");

    /* The uncut requests against score_seqs by hand. */
    int u = 0;
    double worst_h = 0;
    for (int q = 0; q < 3; q++)
        for (int j = 0; j < queries[q].n; j++, u++)
            worst_h =
                fmax(worst_h, fabs(kv[u] - by_hand(&m, queries[q].context, queries[q].conts[j])));
    tap_ok(worst_h < 1e-5, "they equal score_seqs on context + continuation (worst %.2g)", worst_h);
    tap_is_int(ntok[0], 6, "' Paris' is 6 byte tokens");
    tap_is_int(ntok[3], 4, "'Answer: ' + 'yes': the space moves over, ' yes' is 4 tokens");
    tap_is_int(ntok[5], 12, "after an empty context, the whole sentence");
    tap_is_int(ntok[15], 64, "a continuation longer than the context: its last 64 tokens scored");
    /* A cut request: 199 + 2 tokens > 64 + 1, so the context keeps its last 63 tokens; the same
     * as asking with those 63 bytes alone, which needs no cut. */
    static const char *const x[] = {" x"};
    char cut_ctx[64];
    snprintf(cut_ctx, sizeof cut_ctx, "%s", long_ctx + strlen(long_ctx) - 63);
    struct eval_query cutq = {cut_ctx, x, 1};
    struct eval_scorer s;
    double one = NAN;
    int rc = eval_scorer_load(&s, mdir, EVAL_SCORE_FULL, 2, &err);
    if (!rc)
        rc = eval_score(&s, &cutq, 1, &one, NULL, NULL, &err);
    eval_scorer_release(&s);
    tap_ok(rc == PL_OK && fabs(kv[7] - one) < 1e-5,
           "a long request keeps its last n_positions + 1 tokens (cut from the left)");

    /* A repeated choice is scored once, with the same result as alone. */
    static const char *const twice[] = {" a", " bb", " a"};
    static const char *const once[] = {" a"};
    struct eval_query dq[2] = {{"Q:", twice, 3}, {"Q:", once, 1}};
    double l4[4] = {0};
    int t4[4] = {0};
    rc = eval_scorer_load(&s, mdir, EVAL_SCORE_KV, 8, &err);
    if (!rc)
        rc = eval_score(&s, dq, 2, l4, t4, NULL, &err);
    eval_scorer_release(&s);
    tap_ok(rc == PL_OK && l4[0] == l4[2] && l4[0] == l4[3] && t4[2] == 2 && l4[1] != l4[0],
           "a repeated continuation: scored once, the same bits as alone");

    /* Questions after one primer: the primer runs once for the whole call (the stem), and the
     * results equal full scoring, also when a context is the primer alone. */
    static const char *const sc0[] = {" yes", " no"};
    static const char *const sc1[] = {" red", " green", " blue"};
    struct eval_query stemq[3] = {{"Q: Is it?\nA: Yes.\n\nQ: Colour?\nA:", sc1, 3},
                                  {"Q: Is it?\nA: Yes.\n\nQ: Open?\nA:", sc0, 2},
                                  {"Q: Is it?\nA: Yes.\n\nQ:", sc0, 2}};
    double st_kv[7], st_kv3[7], st_full[7];
    long fed_rows = 0;
    rc = eval_scorer_load(&s, mdir, EVAL_SCORE_KV, 32, &err);
    if (!rc)
        rc = eval_score(&s, stemq, 3, st_kv, NULL, NULL, &err);
    int stem = s.stem;
    fed_rows = s.tokens;
    eval_scorer_release(&s);
    if (!rc)
        rc = eval_scorer_load(&s, mdir, EVAL_SCORE_KV, 3, &err);
    if (!rc)
        rc = eval_score(&s, stemq, 3, st_kv3, NULL, NULL, &err);
    eval_scorer_release(&s);
    if (!rc)
        rc = eval_scorer_load(&s, mdir, EVAL_SCORE_FULL, 4, &err);
    if (!rc)
        rc = eval_score(&s, stemq, 3, st_full, NULL, NULL, &err);
    eval_scorer_release(&s);
    double worst_s = 0, worst_s3 = 0;
    for (int i = 0; i < 7; i++) {
        worst_s = fmax(worst_s, fabs(st_kv[i] - st_full[i]));
        worst_s3 = fmax(worst_s3, fabs(st_kv[i] - st_kv3[i]));
    }
    tap_is_int(rc, PL_OK, "questions after a shared primer scored both ways");
    /* The stem is what every context runs before its last token: the third context (21 bytes)
     * but its last, 20 tokens, run once instead of three times. Then the other contexts' rest
     * (32 and 30 bytes, less the stem and their last) and the continuations (4 + 6 + 5 bytes,
     * twice 4 + 3). */
    tap_is_int(stem, 20, "the primer is one stem of 20 tokens");
    tap_is_int((int)fed_rows, 20 + (31 - 20) + (29 - 20) + 15 + 2 * 7,
               "tokens run: the stem once, each context's rest, each continuation");
    tap_ok(worst_s < 1e-5, "after a stem, equal to full scoring (worst %.2g)", worst_s);
    tap_ok(worst_s3 == 0, "the same bits with 3 slots (one question at a time) as with 32");

    static const char *const empty[] = {"a", ""};
    struct eval_query bad = {"ctx", empty, 2};
    rc = eval_scorer_load(&s, mdir, EVAL_SCORE_KV, 8, &err);
    double ll[2];
    if (!rc)
        rc = eval_score(&s, &bad, 1, ll, NULL, NULL, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "query 0, continuation 1: no tokens"),
           "an empty continuation: %s", err.msg);
    eval_scorer_release(&s);
    gpt_release(&m);
    return tap_done();
}
