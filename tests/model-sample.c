/* Decoding on the KV cache: greedy, sampling, top-k, top-p, beam search and stopping against
 * full forwards; the same tokens and log-probs whatever the batch, above every size where a
 * kernel used to change path; a tokenizer too small for the model; allocation failure. */
#include "model/gpt.h"
#include "model/ops.h"
#include "model/pl.h"
#include "model/sample.h"
#include "model/tensor.h"
#include "model/tok.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- softmax ---- */

static void test_softmax(void)
{
    static const int shapes[][2] = {{1, 301}, {3, 100}, {70, 33}};
    struct pl_rng r;
    pl_rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int N = shapes[s][0], V = shapes[s][1];
        float *z = pl_malloc(sizeof(float) * N * V);
        float *p = pl_malloc(sizeof(float) * N * V), *pr = pl_malloc(sizeof(float) * N * V);
        float *lse = pl_malloc(sizeof(float) * N), *lr = pl_malloc(sizeof(float) * N);
        tap_fill(z, (size_t)N * V, &r, 3.0f);
        op_softmax_fwd(p, lse, z, 0.7f, N, V);
        op_softmax_fwd_ref(pr, lr, z, 0.7f, N, V);
        double ep = tap_nmse(p, pr, (size_t)N * V), el = tap_nmse(lse, lr, (size_t)N);
        tap_ok(ep < 1e-10 && el < 1e-10,
               "softmax of %d x %d at temperature 1/0.7 matches its _ref (nmse %.2g, %.2g)", N, V,
               ep, el);
        pl_free(z);
        pl_free(p);
        pl_free(pr);
        pl_free(lse);
        pl_free(lr);
    }
}

/* ---- models ---- */

/* ---- decoding ---- */

/* Every completion of a run, copied out of the hooks. */
#define MAXC 96
struct run {
    int n;
    int prompt[MAXC], k[MAXC], n_tokens[MAXC], finish[MAXC];
    int tokens[MAXC][64];
    float logp[MAXC][64];
    char text[MAXC][256];
    size_t text_len[MAXC];
    double score[MAXC];
    long streamed; /* token hook calls */
};

static void on_token(void *user, const struct sample_completion *c)
{
    (void)c;
    ((struct run *)user)->streamed++;
}

static int on_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    (void)err;
    struct run *r = user;
    for (int i = 0; i < n && r->n < MAXC; i++, r->n++) {
        int at = r->n;
        r->prompt[at] = c[i].prompt;
        r->k[at] = c[i].k;
        r->n_tokens[at] = c[i].n_tokens;
        r->finish[at] = c[i].finish;
        r->score[at] = c[i].score;
        memcpy(r->tokens[at], c[i].tokens, sizeof(int) * c[i].n_tokens);
        memcpy(r->logp[at], c[i].logp, sizeof(float) * c[i].n_tokens);
        r->text_len[at] = c[i].text_len;
        memcpy(r->text[at], c[i].text, c[i].text_len);
    }
    return PL_OK;
}

/* Index of completion k of prompt p in r, or -1. */
static int find(const struct run *r, int p, int k)
{
    for (int i = 0; i < r->n; i++)
        if (r->prompt[i] == p && r->k[i] == k)
            return i;
    return -1;
}

static int generate(struct gpt *m, const struct tok *t, const struct sample_opts *o,
                    const struct sample_prompt *p, int np, struct run *r, long *rows)
{
    struct sample_ctx s;
    struct pl_err err = {0};
    memset(r, 0, sizeof *r);
    int rc = sample_init(&s, m, t, o, &err);
    struct sample_hooks h = {.user = r, .token = on_token, .done = on_done};
    if (!rc)
        rc = sample_generate(&s, p, np, &h, &err);
    if (rc)
        tap_diag("generate: %s", err.msg);
    if (rows)
        *rows = s.cache.rows;
    sample_release(&s);
    return rc;
}

static int same_tokens(const struct run *a, const struct run *b)
{
    if (a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        int j = find(b, a->prompt[i], a->k[i]);
        if (j < 0 || a->n_tokens[i] != b->n_tokens[j] ||
            memcmp(a->tokens[i], b->tokens[j], sizeof(int) * a->n_tokens[i]) != 0)
            return 0;
    }
    return 1;
}

static int same_logp(const struct run *a, const struct run *b)
{
    for (int i = 0; i < a->n; i++) {
        int j = find(b, a->prompt[i], a->k[i]);
        if (j < 0 || memcmp(a->logp[i], b->logp[j], sizeof(float) * a->n_tokens[i]) != 0)
            return 0;
    }
    return a->n == b->n;
}

/* log p(token t of completion i) under the full model, at temperature T,
 * with the support cut to the smallest set holding top_p of the mass. */
static double full_logp(struct gpt *m, const int *prompt, int np, const int *gen, int t, double T,
                        double top_p, int *in_support)
{
    int seq[128];
    memcpy(seq, prompt, sizeof(int) * np);
    memcpy(seq + np, gen, sizeof(int) * t);
    struct pl_err err;
    struct gpt_batch b = {.B = 1, .T = np + t, .tokens = seq};
    gpt_forward(m, &b, &err);
    int V = m->cfg.vocab_size;
    float z[V];
    gpt_logits_row(m, np + t - 1, z);
    double mx = -INFINITY, sum = 0, p[V];
    memset(p, 0, sizeof p);
    for (int j = 0; j < V; j++)
        mx = fmax(mx, z[j] / T);
    for (int j = 0; j < V; j++)
        sum += p[j] = exp(z[j] / T - mx);
    for (int j = 0; j < V; j++)
        p[j] /= sum;
    /* Mass of the tokens more likely than the chosen one (ties: lower id). */
    int tok = gen[t];
    double above = 0;
    for (int j = 0; j < V; j++)
        if (p[j] > p[tok] || (p[j] == p[tok] && j < tok))
            above += p[j];
    *in_support = above < top_p;
    double kept = 0;
    if (top_p < 1) {
        /* The nucleus: tokens whose mass above them is under top_p. */
        for (int j = 0; j < V; j++) {
            double a = 0;
            for (int i = 0; i < V; i++)
                if (p[i] > p[j] || (p[i] == p[j] && i < j))
                    a += p[i];
            kept += a < top_p ? p[j] : 0;
        }
    } else {
        kept = 1;
    }
    return log(p[tok] / kept);
}

struct ref_cand {
    double score;
    int beam, id;
};

static int ref_cmp(const void *a, const void *b)
{
    const struct ref_cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->beam != y->beam ? x->beam - y->beam : x->id - y->id;
}

/* Beam search the slow way (no end token): each step scores every
 * continuation of every beam with a full forward and keeps the best width.
 * best[k] gets the k-th best final sequence, k < 2. */
static void beam_ref(struct gpt *m, const int *prompt, int np, int width, int steps,
                     int best[2][64])
{
    int V = m->cfg.vocab_size, nb = 1;
    static int beams[16][64], next[16][64];
    static struct ref_cand cand[16 * 512];
    double sum[16] = {0}, nsum[16];
    for (int t = 0; t < steps; t++) {
        int nc = 0;
        for (int b = 0; b < nb; b++) {
            int seq[128];
            memcpy(seq, prompt, sizeof(int) * np);
            memcpy(seq + np, beams[b], sizeof(int) * t);
            struct pl_err err;
            struct gpt_batch batch = {.B = 1, .T = np + t, .tokens = seq};
            gpt_forward(m, &batch, &err);
            float z[V];
            gpt_logits_row(m, np + t - 1, z);
            double mx = -INFINITY, se = 0;
            for (int j = 0; j < V; j++)
                mx = fmax(mx, z[j]);
            for (int j = 0; j < V; j++)
                se += exp(z[j] - mx);
            for (int j = 0; j < V; j++)
                cand[nc++] = (struct ref_cand){sum[b] + z[j] - mx - log(se), b, j};
        }
        qsort(cand, (size_t)nc, sizeof *cand, ref_cmp);
        nb = nc < width ? nc : width;
        for (int k = 0; k < nb; k++) {
            memcpy(next[k], beams[cand[k].beam], sizeof(int) * t);
            next[k][t] = cand[k].id;
            nsum[k] = cand[k].score;
        }
        memcpy(beams, next, sizeof beams);
        memcpy(sum, nsum, sizeof(double) * nb);
    }
    memcpy(best[0], beams[0], sizeof(int) * steps);
    memcpy(best[1], beams[1], sizeof(int) * steps);
}

/* Bytes of text tokens ids[0..n) decode to. */
static size_t text_upto(const struct tok *t, const int *ids, int n)
{
    size_t total = 0, len;
    for (int i = 0; i < n; i++)
        total += tok_piece(t, ids[i], &len) ? len : 0;
    return total;
}

static const int prompt_a[] = {72, 101, 108, 108, 111}; /* "Hello" */
static const int prompt_b[] = {84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114};
static const int prompt_c[] = {65};

static void test_decoding(void)
{
    struct gpt_config cfg = tap_byte_config(64, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 31);
    struct tok t;
    struct pl_err err = {0};
    tok_init_byte(&t, &err);
    struct sample_prompt p[5] = {
        {prompt_a, 5, 0}, {prompt_b, 12, 1}, {prompt_c, 1, 2}, {prompt_b, 7, 3}, {NULL, 0, 4}};
    struct sample_opts o;
    sample_opts_default(&o);
    o.max_new_tokens = 20;
    o.eos = -1;
    o.n = 3;
    o.temperature = 0.9f;
    o.seed = 99;
    static struct run r1, r2, r3, r4;

    /* Same seed, same text, whatever the batch. */
    o.batch = 3;
    int rc = generate(&m, &t, &o, p, 5, &r1, NULL);
    o.batch = 15;
    rc |= generate(&m, &t, &o, p, 5, &r2, NULL);
    o.batch = 7;
    rc |= generate(&m, &t, &o, p, 5, &r3, NULL);
    tap_ok(!rc && r1.n == 15 && same_tokens(&r1, &r2) && same_tokens(&r1, &r3),
           "a seed gives the same completions with batch 3, 15 and 7");
    tap_is_int(r1.streamed, 15 * 20, "the token hook saw every token");
    int differ = 0;
    for (int k = 1; k < 3; k++)
        differ +=
            memcmp(r1.tokens[find(&r1, 0, 0)], r1.tokens[find(&r1, 0, k)], sizeof(int) * 20) != 0;
    tap_ok(differ == 2, "the completions of one prompt differ from each other");
    o.seed = 100;
    rc = generate(&m, &t, &o, p, 5, &r4, NULL);
    tap_ok(!rc && !same_tokens(&r1, &r4), "another seed, other completions");

    /* Log-probs are those of the distribution sampled from. */
    double worst = 0;
    int outside = 0;
    for (int i = 0; i < r1.n; i++) {
        const struct sample_prompt *pp = &p[r1.prompt[i]];
        int bos = 256, np = pp->n ? pp->n : 1;
        for (int j = 0; j < r1.n_tokens[i]; j += 3) {
            int in;
            double lp = full_logp(&m, pp->n ? pp->ids : &bos, np, r1.tokens[i], j, 0.9, 1, &in);
            worst = fmax(worst, fabs(lp - r1.logp[i][j]));
        }
    }
    tap_ok(worst < 1e-4, "sampled log-probs equal log softmax(logits / T) (max diff %.2g)", worst);

    /* Greedy: deterministic, arg max of the full model, and top-k 1 equals it. */
    o.temperature = 0.0f;
    o.n = 1;
    o.batch = 4;
    rc = generate(&m, &t, &o, p, 5, &r1, NULL);
    rc |= generate(&m, &t, &o, p, 5, &r2, NULL);
    tap_ok(!rc && r1.n == 5 && same_tokens(&r1, &r2), "greedy decoding is deterministic");
    worst = 0;
    for (int i = 0; i < r1.n; i++) {
        const struct sample_prompt *pp = &p[r1.prompt[i]];
        int bos = 256, in;
        for (int j = 0; j < r1.n_tokens[i]; j += 4) {
            double lp = full_logp(&m, pp->n ? pp->ids : &bos, pp->n ? pp->n : 1, r1.tokens[i], j,
                                  1e-3, 1, &in);
            worst = fmax(worst, -lp); /* the arg max has probability ~1 at a tiny temperature */
        }
    }
    tap_ok(worst < 1e-3, "greedy picks the full model's arg max (worst -log p %.2g)", worst);
    o.temperature = 0.7f;
    o.top_k = 1;
    rc = generate(&m, &t, &o, p, 5, &r3, NULL);
    double lp0 = 0;
    for (int i = 0; i < r3.n; i++)
        for (int j = 0; j < r3.n_tokens[i]; j++)
            lp0 = fmax(lp0, fabs(r3.logp[i][j]));
    tap_ok(!rc && same_tokens(&r1, &r3) && lp0 < 1e-5,
           "top-k 1 equals greedy, each token with log-prob 0");

    /* Top-p: every token inside the nucleus, log-probs renormalised over it. */
    o.top_k = 0;
    o.top_p = 0.6f;
    o.temperature = 1.0f;
    o.n = 4;
    o.batch = 8;
    rc = generate(&m, &t, &o, p, 2, &r1, NULL);
    worst = 0;
    for (int i = 0; i < r1.n; i++) {
        const struct sample_prompt *pp = &p[r1.prompt[i]];
        for (int j = 0; j < r1.n_tokens[i]; j++) {
            int in;
            double lp = full_logp(&m, pp->ids, pp->n, r1.tokens[i], j, 1.0, 0.6, &in);
            outside += !in;
            worst = fmax(worst, fabs(lp - r1.logp[i][j]));
        }
    }
    tap_ok(!rc && outside == 0, "top-p 0.6 samples only from the nucleus (%d outside)", outside);
    tap_ok(worst < 1e-4, "and returns log-probs of the renormalised nucleus (max diff %.2g)",
           worst);
    o.top_p = 1.0f;

    /* Beam search: width 1 is greedy, a wider beam scores at least as well. */
    o.temperature = 0.0f;
    o.n = 1;
    o.batch = 4;
    rc = generate(&m, &t, &o, p, 5, &r1, NULL);
    o.beam = 1;
    rc |= generate(&m, &t, &o, p, 5, &r2, NULL);
    tap_ok(!rc && same_tokens(&r1, &r2), "beam search of width 1 equals greedy");
    o.beam = 4;
    o.n = 2;
    o.batch = 8;
    rc = generate(&m, &t, &o, p, 5, &r3, NULL);
    int same = 1;
    for (int i = 0; i < 5 && !rc; i++) {
        int want[2][64], bos = 256;
        beam_ref(&m, p[i].n ? p[i].ids : &bos, p[i].n ? p[i].n : 1, 4, 20, want);
        for (int k = 0; k < 2; k++) {
            int b = find(&r3, i, k);
            same &= b >= 0 && r3.n_tokens[b] == 20 &&
                    memcmp(r3.tokens[b], want[k], sizeof(int) * 20) == 0;
        }
    }
    tap_ok(!rc && r3.n == 10 && same,
           "beam 4 returns the 2 best beams of a step-by-step full-forward beam search");
    o.max_new_tokens = 2;
    o.beam = 0;
    rc = generate(&m, &t, &o, p, 5, &r1, NULL);
    o.beam = 3;
    rc |= generate(&m, &t, &o, p, 5, &r3, NULL);
    int better = 1;
    for (int i = 0; i < 5 && !rc; i++) {
        int g = find(&r1, i, 0), b = find(&r3, i, 0);
        better &= r3.logp[b][0] + r3.logp[b][1] >= r1.logp[g][0] + r1.logp[g][1] - 1e-5;
    }
    tap_ok(!rc && better, "beam 3 finds two-token completions at least as likely as greedy's");
    o.max_new_tokens = 20;
    o.beam = 0;

    /* Stopping: the end token, a stop string, each finishing on its own. */
    o.n = 1;
    o.max_new_tokens = 12;
    rc = generate(&m, &t, &o, p, 1, &r1, NULL);
    int end = r1.tokens[0][3], eos_at = 0;
    while (r1.tokens[0][eos_at] != end)
        eos_at++;
    o.eos = end;
    rc |= generate(&m, &t, &o, p, 5, &r2, NULL);
    int i0 = find(&r2, 0, 0);
    tap_ok(!rc && r2.finish[i0] == SAMPLE_EOS && r2.n_tokens[i0] == eos_at + 1 &&
               r2.text_len[i0] == text_upto(&t, r1.tokens[0], eos_at),
           "the end token ends a completion, kept in tokens, left out of the text");
    o.eos = -1;
    char stop[3] = {r1.text[0][5], r1.text[0][6], 0};
    const char *stops[2] = {"never appears \x01", stop};
    o.stop = stops;
    o.n_stop = 2;
    rc = generate(&m, &t, &o, p, 5, &r2, NULL);
    i0 = find(&r2, 0, 0);
    size_t at = 0;
    while (memcmp(r1.text[0] + at, stop, 2) != 0)
        at++;
    int stop_tok = 0;
    while (text_upto(&t, r1.tokens[0], stop_tok + 1) < at + 2)
        stop_tok++;
    tap_ok(!rc && r2.finish[i0] == SAMPLE_STOP && r2.text_len[i0] == at &&
               r2.n_tokens[i0] == stop_tok + 1,
           "a stop string ends a completion, cut before it (at byte %zu, token %d)", at, stop_tok);
    int others = 1;
    for (int i = 1; i < 5; i++) {
        int k = find(&r2, i, 0);
        others &= r2.finish[k] == SAMPLE_STOP || r2.n_tokens[k] == 12;
    }
    tap_ok(others, "the other prompts run to their own ends");
    o.n_stop = 0;

    /* The K samples of a prompt share its prefill. */
    o.temperature = 1.0f;
    o.n = 4;
    o.batch = 4;
    long rows;
    rc = generate(&m, &t, &o, &p[1], 1, &r1, &rows);
    long fed = 12;
    for (int i = 0; i < r1.n; i++)
        fed += r1.n_tokens[i] - 1;
    tap_ok(!rc && rows == fed, "4 samples of a 12-token prompt ran %ld rows (prefill once: %ld)",
           rows, fed);

    /* Bad prompts. */
    int bad_ids[3] = {1, 300, 2};
    struct sample_prompt bad = {bad_ids, 3, 0};
    struct sample_ctx s;
    rc = sample_init(&s, &m, &t, &o, &err);
    tap_is_int(sample_generate(&s, &bad, 1, NULL, &err), PL_EINVAL, "an unknown token id: %s",
               err.msg);
    int long_ids[64] = {0};
    struct sample_prompt two[2] = {{prompt_a, 5, 0}, {long_ids, 64, 1}};
    tap_is_int(sample_generate(&s, two, 2, NULL, &err), PL_EINVAL,
               "a prompt too long for the context: %s", err.msg);
    sample_release(&s);
    o.beam = 2;
    o.n = 3;
    tap_is_int(sample_init(&s, &m, &t, &o, &err), PL_EINVAL, "n above the beam width: %s", err.msg);
    sample_release(&s);

    tok_release(&t);
    gpt_release(&m);
}

/* ---- batch invariance ---- */

/* Runs whose passes hold over 128 rows (six 30-token prompts prefilled at once) and over 64
 * sequences (LM head) against runs of one prompt at a time: the same tokens and log-probs. */
static void test_invariance(void)
{
    struct gpt_config cfg = tap_byte_config(64, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 71);
    struct tok t;
    struct pl_err err = {0};
    tok_init_byte(&t, &err);
    struct pl_rng r;
    pl_rng_seed(&r, 72);
    static int ids[6][30];
    struct sample_prompt p[6];
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 30; j++)
            ids[i][j] = (int)(pl_rng_next(&r) % 256);
        p[i] = (struct sample_prompt){ids[i], 30, i};
    }
    struct sample_opts o;
    sample_opts_default(&o);
    o.max_new_tokens = 12;
    o.eos = -1;
    o.n = 12;
    o.temperature = 0.9f;
    o.seed = 5;
    static struct run one, all;
    o.batch = 12;
    long rows;
    int rc = generate(&m, &t, &o, p, 6, &one, NULL);
    o.batch = 72;
    rc |= generate(&m, &t, &o, p, 6, &all, &rows);
    tap_ok(!rc && one.n == 72 && same_tokens(&one, &all) && same_logp(&one, &all),
           "72 samples of 6 prompts, one prompt at a time or all at once (a prefill pass of "
           "180 rows, 72 sequences a step): the same tokens and log-probs, bit for bit");
    o.beam = 6;
    o.n = 2;
    o.batch = 6;
    rc = generate(&m, &t, &o, p, 6, &one, NULL);
    o.batch = 72;
    rc |= generate(&m, &t, &o, p, 6, &all, NULL);
    tap_ok(!rc && one.n == 12 && same_tokens(&one, &all) && same_logp(&one, &all),
           "beam search of width 6, one prompt or all six at once: the same beams");
    tok_release(&t);
    gpt_release(&m);
}

/* ---- refusals and allocation failure ---- */

static void test_refusals(void)
{
    /* A model of 300 ids (its config names GPT-2's tokenizer) handed the byte tokenizer. */
    struct gpt_config cfg = tap_byte_config(64, 64, 2, 4);
    cfg.vocab_size = 300;
    snprintf(cfg.tokenizer, sizeof cfg.tokenizer, "gpt2");
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 81);
    struct tok t;
    struct pl_err err = {0};
    tok_init_byte(&t, &err);
    struct sample_opts o;
    sample_opts_default(&o);
    struct sample_ctx s;
    int rc = sample_init(&s, &m, &t, &o, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "257") && strstr(err.msg, "300"),
           "a tokenizer of 257 tokens for a vocabulary of 300 is refused: %s", err.msg);
    sample_release(&s);
    tap_is_int(sample_init(&s, &m, NULL, &o, &err), PL_OK, "without a tokenizer, ids suffice");
    sample_release(&s);
    sample_release(&s);
    tok_release(&t);
    gpt_release(&m);
}

/* Count the allocations of a successful init, then fail each in turn: PL_ENOMEM every time,
 * and a struct that releases. Sampling with top-p, beam search and plain sampling allocate
 * different buffers. */
static void test_alloc(void)
{
    struct gpt_config cfg = tap_byte_config(32, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 91);
    struct tok t;
    struct pl_err err = {0};
    tok_init_byte(&t, &err);
    static const struct {
        int n, beam;
        float top_p;
        const char *name;
    } modes[] = {{2, 0, 1.0f, "sampling"}, {2, 0, 0.5f, "top-p"}, {2, 3, 1.0f, "beam search"}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        struct sample_opts o;
        sample_opts_default(&o);
        o.n = modes[i].n;
        o.beam = modes[i].beam;
        o.top_p = modes[i].top_p;
        o.batch = 6;
        struct sample_ctx s;
        pl_alloc_fail_at(-1);
        int rc = sample_init(&s, &m, &t, &o, &err);
        long n = pl_alloc_count();
        sample_release(&s);
        int all = 1;
        for (long k = 0; k < n; k++) {
            pl_alloc_fail_at(k);
            all &= sample_init(&s, &m, &t, &o, &err) == PL_ENOMEM;
            sample_release(&s);
            sample_release(&s);
        }
        pl_alloc_fail_at(-1);
        tap_ok(!rc && n > 5 && all,
               "%s: each of sample_init's %ld allocations failing gives "
               "PL_ENOMEM",
               modes[i].name, n);
    }
    tok_release(&t);
    gpt_release(&m);
}

int main(void)
{
    struct pl_err err;
    if (tensor_init(NULL, 0, &err))
        tap_skip_all(err.msg);
    tap_plan(3 + 20 + 2 + 2 + 3);
    test_softmax();
    test_decoding();
    test_invariance();
    test_refusals();
    test_alloc();
    return tap_done();
}
