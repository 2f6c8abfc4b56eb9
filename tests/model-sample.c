/* Generation: the cached ops against their _ref twins, the KV cache against
 * full forwards, decoding (greedy, sampling, top-k, top-p, beam search),
 * stopping, Hugging Face checkpoints, `plumb sample` and its bad input. */
#include "datasets/ds.h"
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/ops.h"
#include "model/pl.h"
#include "model/sample.h"
#include "model/tensor.h"
#include "model/tok.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void fill(float *x, size_t n, struct pl_rng *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * pl_rng_normal(r);
}

/* Normalised mean squared error of got against want. */
static double nmse(const float *got, const float *want, size_t n)
{
    double e = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    return w > 0 ? e / w : e;
}

/* ---- ops ---- */

static void test_attention_kv(void)
{
    /* Three sequences: a long prefill (several BLIS blocks), a short one on
     * top of cached tokens, and a single decode row. */
    enum { C = 32, NH = 4, T = 160, SLOTS = 4 };
    int slot[3] = {2, 0, 3}, past[3] = {0, 7, 20}, n[3] = {150, 5, 1}, N = 156;
    struct pl_rng r;
    pl_rng_seed(&r, 5);
    size_t cache = (size_t)SLOTS * T * C;
    float *qkv = pl_malloc(sizeof(float) * N * 3 * C), *out = pl_malloc(sizeof(float) * N * C);
    float *ref = pl_malloc(sizeof(float) * N * C), *k = pl_malloc(sizeof(float) * cache * 4);
    float *v = k + cache, *k2 = v + cache, *v2 = k2 + cache;
    float *scratch = pl_malloc(sizeof(float) * op_attention_kv_scratch(T, 4));
    fill(qkv, (size_t)N * 3 * C, &r, 1.0f);
    fill(k, cache * 2, &r, 1.0f);
    memcpy(k2, k, sizeof(float) * cache * 2);
    op_attention_kv_fwd(out, k, v, scratch, 4, qkv, slot, past, n, 3, T, C, NH);
    op_attention_kv_fwd_ref(ref, k2, v2, qkv, slot, past, n, 3, T, C, NH);
    double e = nmse(out, ref, (size_t)N * C);
    tap_ok(e < 1e-10, "cached attention matches its _ref (nmse %.2g)", e);
    tap_ok(memcmp(k, k2, sizeof(float) * cache * 2) == 0, "and stores the same keys and values");
    pl_free(qkv);
    pl_free(out);
    pl_free(ref);
    pl_free(k);
    pl_free(scratch);
}

static void test_decode_matmul(void)
{
    /* Column tails (OC % 64), row tails (N % 6) and the BLIS fallback. */
    static const int shapes[][3] = {
        {1, 64, 192}, {5, 40, 200}, {7, 128, 64}, {13, 24, 72}, {130, 32, 96}};
    struct pl_rng r;
    pl_rng_seed(&r, 6);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int N = shapes[s][0], IC = shapes[s][1], OC = shapes[s][2];
        float *inp = pl_malloc(sizeof(float) * N * IC), *w = pl_malloc(sizeof(float) * IC * OC);
        float *b = pl_malloc(sizeof(float) * OC), *out = pl_malloc(sizeof(float) * N * OC);
        float *ref = pl_malloc(sizeof(float) * N * OC);
        fill(inp, (size_t)N * IC, &r, 1.0f);
        fill(w, (size_t)IC * OC, &r, 0.1f);
        fill(b, (size_t)OC, &r, 0.1f);
        op_matmul_fwd_decode(out, inp, w, s % 2 ? NULL : b, N, IC, OC);
        op_matmul_fwd_ref(ref, inp, w, s % 2 ? NULL : b, N, IC, OC);
        double e = nmse(out, ref, (size_t)N * OC);
        tap_ok(e < 1e-10, "decode matmul %dx%d @ %dx%d matches op_matmul_fwd_ref (nmse %.2g)", N,
               IC, IC, OC, e);
        pl_free(inp);
        pl_free(w);
        pl_free(b);
        pl_free(out);
        pl_free(ref);
    }
}

static void test_logits_softmax(void)
{
    static const int shapes[][3] = {{1, 301, 64}, {3, 100, 40}, {6, 57, 8}, {70, 33, 16}};
    struct pl_rng r;
    pl_rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int N = shapes[s][0], V = shapes[s][1], C = shapes[s][2];
        float *h = pl_malloc(sizeof(float) * N * C), *wte = pl_malloc(sizeof(float) * V * C);
        float *out = pl_malloc(sizeof(float) * N * V), *ref = pl_malloc(sizeof(float) * N * V);
        fill(h, (size_t)N * C, &r, 1.0f);
        fill(wte, (size_t)V * C, &r, 0.5f);
        op_logits_fwd(out, h, wte, N, V, C);
        op_logits_fwd_ref(ref, h, wte, N, V, C);
        double e = nmse(out, ref, (size_t)N * V);
        tap_ok(e < 1e-10, "LM head %d rows, V %d, C %d matches its _ref (nmse %.2g)", N, V, C, e);
        float *p = pl_malloc(sizeof(float) * N * V), *pr = pl_malloc(sizeof(float) * N * V);
        float *lse = pl_malloc(sizeof(float) * N), *lr = pl_malloc(sizeof(float) * N);
        op_softmax_fwd(p, lse, ref, 0.7f, N, V);
        op_softmax_fwd_ref(pr, lr, ref, 0.7f, N, V);
        double ep = nmse(p, pr, (size_t)N * V), el = nmse(lse, lr, (size_t)N);
        tap_ok(ep < 1e-10 && el < 1e-10,
               "softmax at temperature 1/0.7 matches its _ref (nmse %.2g, %.2g)", ep, el);
        pl_free(h);
        pl_free(wte);
        pl_free(out);
        pl_free(ref);
        pl_free(p);
        pl_free(pr);
        pl_free(lse);
        pl_free(lr);
    }
}

/* ---- the KV cache ---- */

/* A byte-tokenizer model with weights far from GPT-2's init, so that the
 * distributions are peaked and attention is not uniform. */
static struct gpt_config byte_config(int P)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 257;
    c.n_positions = P;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.bos_token_id = c.eos_token_id = 256;
    snprintf(c.tokenizer, sizeof c.tokenizer, "byte");
    return c;
}

static void model_init(struct gpt *m, const struct gpt_config *cfg, uint64_t seed)
{
    struct pl_err err;
    struct gpt_opts o = {.max_batch = 1, .max_seq = cfg->n_positions};
    if (gpt_init(m, cfg, &o, &err))
        exit(1);
    gpt_init_weights(m, seed);
    struct pl_rng r;
    pl_rng_seed(&r, seed + 1);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.15f * pl_rng_normal(&r);
}

/* Largest |cache logits row - full forward logits at the sequence's end|. */
static double logits_gap(struct gpt *m, const float *row, const int *seq, int len)
{
    struct pl_err err;
    struct gpt_batch b = {.B = 1, .T = len, .tokens = seq};
    gpt_forward(m, &b, &err);
    int V = m->cfg.vocab_size;
    float full[V];
    gpt_logits_row(m, len - 1, full);
    double d = 0;
    for (int j = 0; j < V; j++)
        d = fmax(d, fabs(full[j] - row[j]));
    return d;
}

static void test_incremental(void)
{
    struct gpt_config cfg = byte_config(96);
    struct gpt m;
    model_init(&m, &cfg, 21);
    struct sample_cache c;
    struct pl_err err = {0};
    tap_is_int(sample_cache_init(&c, &m, 3, 96, 96, &err), PL_OK, "kv cache initialises");
    struct pl_rng r;
    pl_rng_seed(&r, 22);
    int seqs[3][96], lens[3] = {70, 9, 1};
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 96; t++)
            seqs[i][t] = (int)(pl_rng_next(&r) % 257);
    /* Prefill all three (of different lengths) in one pass, then decode. */
    int slot[3] = {1, 2, 0}, tokens[96], n = 0;
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < lens[i]; t++)
            tokens[n++] = seqs[i][t];
    double worst = 0;
    int rc = sample_cache_extend(&c, 3, slot, lens, tokens, &err);
    for (int i = 0; i < 3; i++)
        worst = fmax(worst, logits_gap(&m, c.logits + i * 257, seqs[i], lens[i]));
    for (int step = 0; step < 6 && !rc; step++) {
        int count[3] = {1, step % 2 ? 2 : 1, 1};
        n = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < count[i]; j++)
                tokens[n++] = seqs[i][lens[i] + j];
        rc = sample_cache_extend(&c, 3, slot, count, tokens, &err);
        for (int i = 0; i < 3; i++) {
            lens[i] += count[i];
            worst = fmax(worst, logits_gap(&m, c.logits + i * 257, seqs[i], lens[i]));
        }
    }
    tap_is_int(rc, PL_OK, "prefill and decode steps run");
    tap_ok(worst < 1e-4,
           "incremental logits equal full forwards (batched, lengths 70/9/1; max diff %.2g)",
           worst);
    tap_is_int(c.len[1] + c.len[2] + c.len[0], lens[0] + lens[1] + lens[2],
               "each slot holds its tokens");

    /* Fork: one prefill of a prefix, three continuations. */
    c.len[0] = c.len[1] = c.len[2] = 0;
    long rows0 = c.rows;
    int pre = 12, one = 0;
    rc = sample_cache_extend(&c, 1, &one, &pre, seqs[0], &err);
    sample_cache_fork(&c, 1, 0);
    sample_cache_fork(&c, 2, 0);
    int cont[3] = {5, 77, 200}, slots[3] = {0, 1, 2}, ones[3] = {1, 1, 1};
    rc = rc ? rc : sample_cache_extend(&c, 3, slots, ones, cont, &err);
    worst = 0;
    for (int i = 0; i < 3; i++) {
        int seq[13];
        memcpy(seq, seqs[0], sizeof(int) * 12);
        seq[12] = cont[i];
        worst = fmax(worst, logits_gap(&m, c.logits + i * 257, seq, 13));
    }
    tap_ok(!rc && worst < 1e-4, "forked slots continue the shared prefix (max diff %.2g)", worst);
    tap_is_int(c.rows - rows0, pre + 3, "the prefix ran through the model once");

    int bad = 257;
    tap_is_int(sample_cache_extend(&c, 1, &one, ones, &bad, &err), PL_EINVAL,
               "an unknown token id is refused");
    tap_ok(strstr(err.msg, "257") != NULL, "naming it: %s", err.msg);
    int many = 96;
    tap_is_int(sample_cache_extend(&c, 1, &one, &many, seqs[0], &err), PL_EINVAL,
               "a slot cannot pass max_len: %s", err.msg);
    sample_cache_release(&c);
    sample_cache_release(&c);
    gpt_release(&m);
}

/* ---- decoding ---- */

/* Every completion of a run, copied out of the hooks. */
#define MAXC 64
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
    struct gpt_config cfg = byte_config(64);
    struct gpt m;
    model_init(&m, &cfg, 31);
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

    /* Allocation failure at each allocation of init and generate. */
    o.beam = 0;
    o.n = 2;
    int failures = 0, ok_codes = 1;
    for (long n = 0;; n++) {
        pl_alloc_fail_at(n);
        rc = sample_init(&s, &m, &t, &o, &err);
        if (!rc)
            rc = sample_generate(&s, p, 2, NULL, &err);
        sample_release(&s);
        pl_alloc_fail_at(-1);
        if (!rc)
            break;
        failures++;
        ok_codes &= rc == PL_ENOMEM;
    }
    tap_ok(ok_codes && failures > 5, "each of %d allocation failures gives PL_ENOMEM", failures);
    tok_release(&t);
    gpt_release(&m);
}

/* ---- Hugging Face checkpoints ---- */

static double *json_doubles(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    double *x = pl_malloc(sizeof(double) * (*n ? *n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) x[i++] = e->valuedouble;
    return x;
}

/* Prefill half of each fixture row, decode the rest, and compare every
 * logits row the fixture records (float64 PyTorch) on the way. */
static void test_checkpoint(const char *dir)
{
    struct gpt m;
    struct tok t;
    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = ckpt_load(&m, dir, &go, &err);
    if (!rc)
        rc = tok_load(&t, dir, &err);
    if (!tap_is_int(rc, PL_OK, "%s loads (model and tokenizer): %s", dir, err.msg)) {
        tap_skip(2, "no checkpoint");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *x = NULL;
    ds_json_load(path, &x, &err);
    int B = cJSON_GetObjectItem(x, "B")->valueint, T = cJSON_GetObjectItem(x, "T")->valueint;
    int V = m.cfg.vocab_size, n_tok, n_rows, n_log;
    double *tokd = json_doubles(cJSON_GetObjectItem(x, "tokens"), &n_tok);
    double *rowd = json_doubles(cJSON_GetObjectItem(x, "logits_rows"), &n_rows);
    double *logits = json_doubles(cJSON_GetObjectItem(x, "logits"), &n_log);
    struct sample_cache c;
    rc = sample_cache_init(&c, &m, B, T, B * T, &err);
    int slot[2] = {0, 1}, count[2], tokens[64], half = T / 2;
    double worst = 0;
    int compared = 0;
    for (int at = 0; at < T && !rc;) {
        int step = at == 0 ? half : 1, n = 0;
        for (int b = 0; b < B; b++) {
            count[b] = step;
            for (int j = 0; j < step; j++)
                tokens[n++] = (int)tokd[b * T + at + j];
        }
        rc = sample_cache_extend(&c, B, slot, count, tokens, &err);
        at += step;
        for (int b = 0; b < B; b++)
            for (int r = 0; r < n_rows; r++)
                if ((int)rowd[r] == b * T + at - 1) {
                    for (int j = 0; j < V; j++)
                        worst = fmax(worst, fabs(c.logits[b * V + j] - logits[(size_t)r * V + j]));
                    compared++;
                }
    }
    tap_ok(!rc && compared > 0 && worst < 1e-4,
           "%s: cached logits match PyTorch's at %d positions (max diff %.2g)", dir, compared,
           worst);
    sample_cache_release(&c);
    pl_free(tokd);
    pl_free(rowd);
    pl_free(logits);
    cJSON_Delete(x);
    struct sample_opts o;
    sample_opts_default(&o);
    tok_release(&t);
    gpt_release(&m);

    FILE *out = tmpfile();
    o.max_new_tokens = 8;
    o.n = 2;
    o.seed = 3;
    rc = sample_text(dir, "hello world", &o, out, &err);
    char buf[4096] = "";
    rewind(out);
    size_t got = fread(buf, 1, sizeof buf - 1, out);
    buf[got] = '\0';
    fclose(out);
    tap_ok(!rc && strstr(buf, "--- completion 1 of 2 ---\n") &&
               strstr(buf, "--- completion 2 of 2 ---\n"),
           "%s generates text (plumb generate): %s", dir, rc ? err.msg : "ok");
}

/* ---- plumb sample ---- */

static char tmpdir[] = "/tmp/plumb-sample-XXXXXX";

/* tmpdir/name in a buffer of its own (one per distinct name, up to 16). */
static const char *tmp(const char *name)
{
    static char path[16][128];
    static int used;
    for (int i = 0; i < used; i++)
        if (strcmp(path[i] + strlen(tmpdir) + 1, name) == 0)
            return path[i];
    snprintf(path[used], sizeof path[0], "%s/%s", tmpdir, name);
    return path[used++];
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static char *get(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_sample_file(void)
{
    if (!mkdtemp(tmpdir)) {
        tap_skip(12, "no temporary folder");
        return;
    }
    struct gpt_config cfg = byte_config(32);
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    gpt_init(&m, &cfg, &go, &err);
    gpt_init_weights(&m, 5);
    const char *model = tmp("model");
    tap_is_int(ckpt_save(&m, model, &err), PL_OK, "a byte-level model is saved");
    gpt_release(&m);

    const char *prompts = tmp("prompts.jsonl"), *out = tmp("samples.jsonl");
    put(prompts, "{\"id\": \"a\", \"prompt\": \"Once\"}\n"
                 "{\"id\": \"b\", \"prompt\": \"The sky is\"}\n"
                 "\n"
                 "{\"id\": \"c\", \"prompt\": \"\"}\n"
                 "{\"id\": \"d\", \"prompt\": \"x\\ty\"}\n"
                 "{\"id\": \"e\", \"prompt\": \"last one\", \"extra\": 1}\n");
    struct sample_opts o;
    sample_opts_default(&o);
    o.n = 2;
    o.max_new_tokens = 6;
    o.batch = 4;
    o.seed = 7;
    FILE *bar = tmpfile();
    int rc = sample_file(model, prompts, out, &o, bar, &err);
    char first[1 << 16];
    snprintf(first, sizeof first, "%s", get(out));
    rewind(bar);
    char progress[512] = "";
    progress[fread(progress, 1, sizeof progress - 1, bar)] = '\0';
    fclose(bar);
    tap_ok(!rc && count_lines(first) == 5, "plumb sample writes a record per prompt: %s",
           rc ? err.msg : "5 lines");
    tap_ok(strstr(progress, "5/5 prompts") && strstr(progress, "tokens/s"),
           "with a progress line: %.*s", (int)strcspn(progress, "\n"), progress);
    cJSON *rec = cJSON_ParseWithLength(first, strcspn(first, "\n"));
    const cJSON *comp = cJSON_GetObjectItem(rec, "completions");
    const cJSON *lps = cJSON_GetObjectItem(rec, "logprobs");
    tap_ok(cJSON_IsString(cJSON_GetObjectItem(rec, "id")) && cJSON_GetArraySize(comp) == 2 &&
               cJSON_GetArraySize(lps) == 2 &&
               cJSON_GetArraySize(cJSON_GetArrayItem(lps, 0)) ==
                   cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "tokens"), 0)) &&
               cJSON_IsString(cJSON_GetObjectItem(rec, "model")),
           "a record holds id, prompt, 2 completions, their tokens and log-probs, the model");
    cJSON_Delete(rec);

    /* A crash cut the fourth line short and lost the fifth: a rerun redoes
     * exactly those, and a third run has nothing to do. */
    size_t keep = 0;
    for (int line = 0; line < 3; line++)
        keep += strcspn(first + keep, "\n") + 1;
    char cut[1 << 16];
    snprintf(cut, sizeof cut, "%.*s", (int)(keep + 20), first);
    put(out, cut);
    rc = sample_file(model, prompts, out, &o, NULL, &err);
    tap_ok(!rc && strcmp(get(out), first) == 0,
           "resume drops the cut-short line and writes the missing records once, identically");
    rc = sample_file(model, prompts, out, &o, NULL, &err);
    tap_ok(!rc && strcmp(get(out), first) == 0, "a finished file is left as it is");

    /* Bad input: a clear error, and the output exactly as it was. */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"", "prompts.jsonl: no records"},
        {"{\"id\": \"a\", \"prompt\": \"ok\"}\n{\"id\": \"b\", \"prompt\": 5}\n",
         "prompts.jsonl:2: field 'prompt': expected a string"},
        {"{\"id\": 1, \"prompt\": \"ok\"}\n", "prompts.jsonl:1: field 'id': expected a string"},
        {"{\"id\": \"a\", \"prompt\": \"ok\"}\n{\"id\": \"a\", \"prompt\": \"again\"}\n",
         "prompts.jsonl:2: duplicate id 'a' (first on line 1)"},
        {"{\"id\": \"a\", \"prompt\": \"ok\"}\n{\"id\": \"z\", \"prompt\": "
         "\"0123456789012345678901234567890123456789\"}\n",
         "prompts.jsonl:2: prompt of 40 tokens leaves no room to generate in the model's context "
         "of 32"},
        {"not json\n", "prompts.jsonl:1: not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        put(prompts, bad[i].text);
        rc = sample_file(model, prompts, out, &o, NULL, &err);
        const char *msg = strstr(err.msg, "prompts.jsonl");
        tap_ok(rc == PL_EFORMAT && msg && strcmp(msg, bad[i].want) == 0 &&
                   strcmp(get(out), first) == 0,
               "bad input %zu: %s", i, err.msg);
    }
    /* A tokenizer with ids the model lacks: the fixture's BPE, whose merges
     * are ids 256 and up, on a model of 256 tokens. */
    const char *bpe = tmp("bpe");
    cfg.vocab_size = 256;
    cfg.eos_token_id = cfg.bos_token_id = 255;
    snprintf(cfg.tokenizer, sizeof cfg.tokenizer, "gpt2");
    gpt_init(&m, &cfg, &go, &err);
    gpt_init_weights(&m, 5);
    rc = ckpt_save(&m, bpe, &err);
    gpt_release(&m);
    put(tmp("bpe/vocab.json"), get("tests/data/tiny-gpt2/vocab.json"));
    put(tmp("bpe/merges.txt"), get("tests/data/tiny-gpt2/merges.txt"));
    struct tok t;
    struct tok_buf ids = {0};
    tok_load(&t, bpe, &err);
    tok_encode(&t, &ids, " the", 4, 0, &err);
    char want[160];
    snprintf(want, sizeof want,
             "prompts.jsonl:2: token id %d from the tokenizer is outside the model's vocabulary "
             "(256)",
             ids.n ? ids.ids[0] : -1);
    tok_buf_release(&ids);
    tok_release(&t);
    put(prompts, "{\"id\": \"a\", \"prompt\": \"ab\"}\n{\"id\": \"b\", \"prompt\": \" the\"}\n");
    rc = sample_file(bpe, prompts, out, &o, NULL, &err);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, want) && strcmp(get(out), first) == 0,
           "a token id the model lacks: %s", err.msg);

    put(out, "{\"id\": \"a\"}\n{\"oops\": 1}\n");
    put(prompts, "{\"id\": \"a\", \"prompt\": \"ok\"}\n");
    rc = sample_file(model, prompts, out, &o, NULL, &err);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "samples.jsonl:2:") &&
               strcmp(get(out), "{\"id\": \"a\"}\n{\"oops\": 1}\n") == 0,
           "a bad record in the output is reported, not rewritten: %s", err.msg);

    const char *files[] = {"prompts.jsonl",           "samples.jsonl",   "model/config.json",
                           "model/model.safetensors", "bpe/config.json", "bpe/model.safetensors",
                           "bpe/vocab.json",          "bpe/merges.txt"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        unlink(tmp(files[i]));
    rmdir(tmp("model"));
    rmdir(tmp("bpe"));
    rmdir(tmpdir);
}

/* plumb generate and plumb sample, through the binary of this build (PLUMB_BIN). */
static void test_commands(void)
{
    const char *bin = getenv("PLUMB_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        tap_skip(4, "PLUMB_BIN not set");
        return;
    }
    char cmd[1024], out[4096] = "";
    snprintf(cmd, sizeof cmd,
             "%s generate --model tests/data/tiny-gpt2 --prompt 'the cat' --max-new-tokens 5 "
             "--seed 4 --top-k 20",
             bin);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    int st = p ? pclose(p) : -1;
    out[n] = '\0';
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && n > 0 && out[n - 1] == '\n',
           "plumb generate exits 0 with a line of text");
    snprintf(cmd, sizeof cmd,
             "%s generate --model tests/data/tiny-gpt2 --prompt x --top-p 2 "
             "2>/dev/null",
             bin);
    st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "a bad --top-p exits 2");
    snprintf(cmd, sizeof cmd, "%s sample --model tests/data/tiny-gpt2 -k 2 2>/dev/null", bin);
    st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "plumb sample without --prompts exits 2");
    snprintf(cmd, sizeof cmd,
             "%s sample --model tests/data/tiny-gpt2 --prompts /nonexistent.jsonl -k 2 --out "
             "/dev/null 2>/dev/null",
             bin);
    st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 1, "a missing prompt file exits 1");
}

int main(void)
{
    struct pl_err err;
    if (tensor_init(NULL, 0, &err))
        tap_skip_all(err.msg);
    test_attention_kv();
    test_decode_matmul();
    test_logits_softmax();
    test_incremental();
    test_decoding();
    test_checkpoint("tests/data/tiny-gpt2");
    test_checkpoint("tests/data/tiny-gpt2-f16");
    test_checkpoint("tests/data/tiny-gpt2-bf16");
    test_sample_file();
    test_commands();
    return tap_done();
}
