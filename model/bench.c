#include "bench.h"

#include "sample.h"
#include "tensor.h"

#include <cjson/cJSON.h>
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* One GEMM of a training step: op(A) [m,k] @ op(B) [k,n], issued `count`
 * times a step. `per_head` GEMMs run B*NH at a time in parallel, one thread
 * each, exactly as the attention op runs them. */
struct gemm_shape {
    bool ta, tb;
    int m, n, k;
    int count;
    bool per_head;
};

#define MAX_SHAPES 24

/* Every GEMM of one forward + backward. */
static int step_gemms(const struct gpt_config *c, int B, int T, struct gemm_shape *out)
{
    int N = B * T, C = c->n_embd, V = c->vocab_size, hs = C / c->n_head, L = c->n_layer, n = 0;
    const int io[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    for (int i = 0; i < 4; i++) {
        int IC = io[i][0], OC = io[i][1];
        out[n++] = (struct gemm_shape){false, false, N, OC, IC, L, false};
        out[n++] = (struct gemm_shape){false, true, N, IC, OC, L, false};
        out[n++] = (struct gemm_shape){true, false, IC, OC, N, L, false};
    }
    out[n++] = (struct gemm_shape){false, true, T, T, hs, 2 * L, true};  /* scores, d probs */
    out[n++] = (struct gemm_shape){false, false, T, hs, T, 2 * L, true}; /* output, d q */
    out[n++] = (struct gemm_shape){true, false, T, hs, T, 2 * L, true};  /* d v, d k */
    out[n++] = (struct gemm_shape){false, true, N, V, C, 1, false};      /* LM head */
    out[n++] = (struct gemm_shape){false, false, N, C, V, 1, false};
    out[n++] = (struct gemm_shape){true, false, V, C, N, 1, false};
    return n;
}

struct gemm_bufs {
    float *a, *b, *c;
    size_t na, nb, nc;
};

/* Buffers for the largest operands, with one block per thread for per-head GEMMs. */
static int gemm_bufs_init(struct gemm_bufs *g, const struct gemm_shape *s, int n, int threads,
                          struct pl_err *err)
{
    memset(g, 0, sizeof *g);
    for (int i = 0; i < n; i++) {
        size_t mult = s[i].per_head ? (size_t)threads : 1;
        size_t a = (size_t)s[i].m * s[i].k * mult, b = (size_t)s[i].k * s[i].n * mult,
               c = (size_t)s[i].m * s[i].n * mult;
        g->na = a > g->na ? a : g->na;
        g->nb = b > g->nb ? b : g->nb;
        g->nc = c > g->nc ? c : g->nc;
    }
    g->a = pl_alloc_big(g->na * sizeof(float));
    g->b = pl_alloc_big(g->nb * sizeof(float));
    g->c = pl_alloc_big(g->nc * sizeof(float));
    if (!g->a || !g->b || !g->c)
        return pl_oom(err, "benchmark buffers");
    for (size_t i = 0; i < g->na; i++)
        g->a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < g->nb; i++)
        g->b[i] = (float)(i % 5) * 0.01f;
    return PL_OK;
}

static void gemm_bufs_release(struct gemm_bufs *g)
{
    pl_free_big(g->a, g->na * sizeof(float));
    pl_free_big(g->b, g->nb * sizeof(float));
    pl_free_big(g->c, g->nc * sizeof(float));
}

static void run_gemm(const struct gemm_shape *s, struct gemm_bufs *g, int heads)
{
    int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    if (!s->per_head) {
        tensor_gemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, g->a, lda, g->b, ldb, 0.0f, g->c, s->n);
        return;
    }
    size_t sa = (size_t)s->m * s->k, sb = (size_t)s->k * s->n, sc = (size_t)s->m * s->n;
#pragma omp parallel for schedule(dynamic)
    for (int h = 0; h < heads; h++) {
        int t = omp_get_thread_num();
        tensor_gemm_1t(s->ta, s->tb, s->m, s->n, s->k, 1.0f, g->a + t * sa, lda, g->b + t * sb, ldb,
                       0.0f, g->c + t * sc, s->n);
    }
}

/* BLIS's FLOP/s over the GEMMs of one training step, best of `steps`. */
static int sgemm_rate(const struct bench_opts *o, double *gflops, struct pl_err *err)
{
    struct gemm_shape s[MAX_SHAPES];
    int n = step_gemms(&o->cfg, o->batch, o->seq, s), heads = o->batch * o->cfg.n_head;
    struct gemm_bufs g;
    int rc = gemm_bufs_init(&g, s, n, omp_get_max_threads(), err);
    if (rc)
        return gemm_bufs_release(&g), rc;
    double flops = 0.0, best = 1e30;
    for (int i = 0; i < n; i++)
        flops += 2.0 * s[i].m * s[i].n * s[i].k * s[i].count * (s[i].per_head ? heads : 1);
    for (int rep = 0; rep <= o->steps; rep++) {
        double t0 = pl_now();
        for (int i = 0; i < n; i++)
            for (int c = 0; c < s[i].count; c++)
                run_gemm(&s[i], &g, heads);
        double dt = pl_now() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    gemm_bufs_release(&g);
    *gflops = flops / best / 1e9;
    return PL_OK;
}

/* ---- the FMA peak ----
 *
 * FMA_CHAINS independent accumulators a thread: more than latency x issue width (4 x 2 on
 * Zen 5), so the loop runs at the FMA units' throughput. Intrinsics, because ISO C mode
 * compiles a * b + c as two instructions (no contraction). */
#define FMA_CHAINS 16
#define FMA_ITERS 2000000L

__attribute__((target("avx512f"))) static float fma_loop_512(long iters)
{
    __m512 acc[FMA_CHAINS], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < iters; n++)
        for (int i = 0; i < FMA_CHAINS; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    for (int i = 1; i < FMA_CHAINS; i++)
        acc[0] = _mm512_add_ps(acc[0], acc[i]);
    return _mm512_reduce_add_ps(acc[0]);
}

__attribute__((target("avx2,fma"))) static float fma_loop_256(long iters)
{
    __m256 acc[FMA_CHAINS], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < iters; n++)
        for (int i = 0; i < FMA_CHAINS; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    float out[8], sum = 0.0f;
    for (int i = 1; i < FMA_CHAINS; i++)
        acc[0] = _mm256_add_ps(acc[0], acc[i]);
    _mm256_storeu_ps(out, acc[0]);
    for (int i = 0; i < 8; i++)
        sum += out[i];
    return sum;
}

double bench_fma_peak(int steps)
{
    __builtin_cpu_init();
    bool wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return 0.0;
    int lanes = wide ? 16 : 8, threads = omp_get_max_threads();
    double best = 1e30;
    /* The sums go somewhere the compiler cannot drop. */
    volatile float sink = 0.0f;
    for (int rep = 0; rep <= steps; rep++) {
        double t0 = pl_now();
#pragma omp parallel num_threads(threads)
        {
            float r = wide ? fma_loop_512(FMA_ITERS) : fma_loop_256(FMA_ITERS);
#pragma omp atomic
            sink += r;
        }
        double dt = pl_now() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    (void)sink;
    return 2.0 * FMA_CHAINS * lanes * (double)FMA_ITERS * threads / best / 1e9;
}

/* A frozen model's forward with per-token log-probs (scoring), best of `steps`. */
static int score_rate(const struct bench_opts *o, const int *tokens, const int *targets,
                      double *score_s, struct pl_err *err)
{
    struct gpt m;
    struct gpt_opts go = {.max_batch = o->batch, .max_seq = o->seq};
    int rc = gpt_init(&m, &o->cfg, &go, err);
    if (rc)
        return gpt_release(&m), rc;
    gpt_init_weights(&m, 1);
    struct gpt_batch b = {.B = o->batch, .T = o->seq, .tokens = tokens, .targets = targets};
    *score_s = 1e30;
    for (int rep = 0; rep <= o->steps && !rc; rep++) {
        double t0 = pl_now();
        rc = gpt_forward(&m, &b, err);
        double dt = pl_now() - t0;
        if (rep > 0 && dt < *score_s)
            *score_s = dt;
    }
    gpt_release(&m);
    return rc;
}

/* plumb's forward, scoring pass and training step on random tokens, best of `steps` each. */
static int model_rates(const struct bench_opts *o, double *fwd_s, double *score_s,
                       double *train_s, struct pl_err *err)
{
    struct gpt m;
    struct gpt_opts go = {.trainable = true, .max_batch = o->batch, .max_seq = o->seq};
    int rc = gpt_init(&m, &o->cfg, &go, err);
    if (rc)
        return gpt_release(&m), rc;
    gpt_init_weights(&m, 1);
    int N = o->batch * o->seq;
    int *tokens = pl_malloc(sizeof(int) * (size_t)N * 2);
    if (!tokens)
        return gpt_release(&m), pl_oom(err, "benchmark tokens");
    int *targets = tokens + N;
    struct pl_rng rng;
    pl_rng_seed(&rng, 1);
    for (int i = 0; i < 2 * N; i++)
        tokens[i] = (int)(pl_rng_next(&rng) % (uint64_t)o->cfg.vocab_size);
    struct gpt_batch b = {.B = o->batch, .T = o->seq, .tokens = tokens, .targets = targets};
    struct gpt_adamw hp = {
        .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    *fwd_s = *train_s = 1e30;
    for (int rep = 0; rep <= o->steps && !rc; rep++) {
        double t0 = pl_now();
        rc = gpt_forward(&m, &b, err);
        double t1 = pl_now();
        gpt_zero_grad(&m);
        gpt_backward_lm(&m, 1.0f);
        gpt_clip_grad(&m, 1.0f);
        gpt_adamw_step(&m, &hp);
        double t2 = pl_now();
        if (rep > 0) {
            *fwd_s = t1 - t0 < *fwd_s ? t1 - t0 : *fwd_s;
            *train_s = t2 - t0 < *train_s ? t2 - t0 : *train_s;
        }
    }
    gpt_release(&m);
    if (!rc)
        rc = score_rate(o, tokens, targets, score_s, err);
    pl_free(tokens);
    return rc;
}

int bench_model(const struct bench_opts *o, struct bench_result *r, struct pl_err *err)
{
    memset(r, 0, sizeof *r);
    if (o->batch <= 0 || o->seq <= 0 || o->steps <= 0)
        return pl_errf(err, PL_EINVAL, "bench: batch, seq and steps must be positive");
    r->peak_gflops = bench_fma_peak(o->steps);
    int rc = sgemm_rate(o, &r->sgemm_gflops, err);
    double fwd_s, score_s, train_s;
    if (!rc)
        rc = model_rates(o, &fwd_s, &score_s, &train_s, err);
    if (rc)
        return rc;
    double tokens = (double)o->batch * o->seq, flops = gpt_train_flops(&o->cfg, o->batch, o->seq);
    r->cfg = o->cfg;
    r->batch = o->batch;
    r->seq = o->seq;
    r->steps = o->steps;
    r->threads = tensor_threads();
    r->arch = tensor_arch();
    r->fwd_tokens_per_s = tokens / fwd_s;
    r->fwd_gflops = flops / 3.0 / fwd_s / 1e9; /* forward is a third of the 6N convention */
    r->fwd_mfu = r->fwd_gflops / r->sgemm_gflops;
    r->score_tokens_per_s = tokens / score_s;
    r->score_gflops = flops / 3.0 / score_s / 1e9;
    r->score_mfu = r->score_gflops / r->sgemm_gflops;
    r->train_tokens_per_s = tokens / train_s;
    r->train_gflops = flops / train_s / 1e9;
    r->train_mfu = r->train_gflops / r->sgemm_gflops;
    double peak = r->peak_gflops > 0.0 ? r->peak_gflops : 1e30;
    r->fwd_peak = r->fwd_gflops / peak;
    r->score_peak = r->score_gflops / peak;
    r->train_peak = r->train_gflops / peak;
    return PL_OK;
}

#define GEN_PROMPT 64
#define GEN_NEW 64

/* Best of `steps` timed sample_generate runs over `batch` random prompts. */
static int gen_rate(const struct gpt *m, int batch, int steps, double *tokens_per_s,
                    struct pl_err *err)
{
    struct sample_opts so;
    sample_opts_default(&so);
    so.max_new_tokens = GEN_NEW;
    so.eos = -1; /* every sequence runs to its full length, as PyTorch's loop does */
    so.batch = batch;
    so.max_len = GEN_PROMPT + GEN_NEW;
    struct sample_ctx s;
    int rc = sample_init(&s, m, NULL, &so, err);
    int *ids = pl_malloc(sizeof(int) * batch * GEN_PROMPT);
    struct sample_prompt *p = pl_malloc(sizeof *p * batch);
    if (!rc && (!ids || !p))
        rc = pl_oom(err, "benchmark prompts");
    struct pl_rng rng;
    pl_rng_seed(&rng, 2);
    for (int i = 0; !rc && i < batch; i++) {
        for (int t = 0; t < GEN_PROMPT; t++)
            ids[i * GEN_PROMPT + t] = (int)(pl_rng_next(&rng) % (uint64_t)m->cfg.vocab_size);
        p[i] = (struct sample_prompt){ids + i * GEN_PROMPT, GEN_PROMPT, i};
    }
    double best = 1e30;
    for (int rep = 0; rep <= steps && !rc; rep++) {
        double t0 = pl_now();
        rc = sample_generate(&s, p, batch, NULL, err);
        double dt = pl_now() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    *tokens_per_s = (double)batch * GEN_NEW / best;
    pl_free(ids);
    pl_free(p);
    sample_release(&s);
    return rc;
}

int bench_generate(const struct bench_opts *o, struct bench_result *r, struct pl_err *err)
{
    if (o->steps <= 0)
        return pl_errf(err, PL_EINVAL, "bench: steps must be positive");
    struct gpt_config cfg = o->cfg;
    if (cfg.n_positions < GEN_PROMPT + GEN_NEW)
        cfg.n_positions = GEN_PROMPT + GEN_NEW;
    struct gpt m;
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = gpt_init(&m, &cfg, &go, err);
    if (!rc) {
        gpt_init_weights(&m, 1);
        rc = gen_rate(&m, 1, o->steps, &r->gen_b1_tokens_per_s, err);
    }
    if (!rc)
        rc = gen_rate(&m, 32, o->steps, &r->gen_b32_tokens_per_s, err);
    gpt_release(&m);
    r->gen_prompt = GEN_PROMPT;
    r->gen_new = GEN_NEW;
    r->gen_vocab = cfg.vocab_size;
    return rc;
}

static cJSON *rates(double tokens_per_s, double gflops, double mfu, double peak)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tokens_per_s", tokens_per_s);
    cJSON_AddNumberToObject(o, "gflops", gflops);
    cJSON_AddNumberToObject(o, "mfu", mfu);
    cJSON_AddNumberToObject(o, "peak", peak);
    return o;
}

char *bench_json(const struct bench_result *r)
{
    cJSON *root = cJSON_CreateObject(), *shape = cJSON_CreateObject(), *blis = cJSON_CreateObject();
    cJSON_AddNumberToObject(shape, "n_layer", r->cfg.n_layer);
    cJSON_AddNumberToObject(shape, "n_embd", r->cfg.n_embd);
    cJSON_AddNumberToObject(shape, "n_head", r->cfg.n_head);
    cJSON_AddNumberToObject(shape, "vocab_size", r->cfg.vocab_size);
    cJSON_AddNumberToObject(shape, "batch", r->batch);
    cJSON_AddNumberToObject(shape, "seq", r->seq);
    cJSON_AddItemToObject(root, "shape", shape);
    cJSON_AddStringToObject(blis, "arch", r->arch);
    cJSON_AddNumberToObject(blis, "threads", r->threads);
    cJSON_AddNumberToObject(blis, "sgemm_gflops", r->sgemm_gflops);
    cJSON_AddItemToObject(root, "blis", blis);
    cJSON_AddNumberToObject(root, "fma_peak_gflops", r->peak_gflops);
    cJSON_AddItemToObject(root, "forward",
                          rates(r->fwd_tokens_per_s, r->fwd_gflops, r->fwd_mfu, r->fwd_peak));
    cJSON_AddItemToObject(root, "score", rates(r->score_tokens_per_s, r->score_gflops,
                                               r->score_mfu, r->score_peak));
    cJSON_AddItemToObject(root, "train", rates(r->train_tokens_per_s, r->train_gflops,
                                               r->train_mfu, r->train_peak));
    if (r->gen_b1_tokens_per_s > 0) {
        cJSON *gen = cJSON_CreateObject(), *b1 = cJSON_CreateObject(), *b32 = cJSON_CreateObject();
        cJSON_AddNumberToObject(gen, "prompt", r->gen_prompt);
        cJSON_AddNumberToObject(gen, "new_tokens", r->gen_new);
        cJSON_AddNumberToObject(gen, "vocab_size", r->gen_vocab);
        cJSON_AddNumberToObject(b1, "tokens_per_s", r->gen_b1_tokens_per_s);
        cJSON_AddNumberToObject(b32, "tokens_per_s", r->gen_b32_tokens_per_s);
        cJSON_AddItemToObject(gen, "b1", b1);
        cJSON_AddItemToObject(gen, "b32", b32);
        cJSON_AddItemToObject(root, "generate", gen);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *out = text ? pl_strdup(text) : NULL;
    cJSON_free(text);
    return out;
}

char *bench_text(const struct bench_result *r)
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "shape: %d layers x %d wide, %d heads, vocab %d, batch %d x %d tokens\n"
             "blis:  kernels '%s', %d threads, sgemm on this step's GEMM shapes %.1f GFLOP/s\n"
             "peak:  FMA loop on %d threads %.1f GFLOP/s (sgemm is %.2f of it)\n"
             "forward: %.0f tokens/s, %.1f GFLOP/s, %.2f of sgemm, %.2f of peak\n"
             "score:   %.0f tokens/s, %.1f GFLOP/s, %.2f of sgemm, %.2f of peak\n"
             "train:   %.0f tokens/s, %.1f GFLOP/s, %.2f of sgemm (MFU), %.2f of peak\n",
             r->cfg.n_layer, r->cfg.n_embd, r->cfg.n_head, r->cfg.vocab_size, r->batch, r->seq,
             r->arch, r->threads, r->sgemm_gflops, r->threads, r->peak_gflops,
             r->peak_gflops > 0.0 ? r->sgemm_gflops / r->peak_gflops : 0.0, r->fwd_tokens_per_s,
             r->fwd_gflops, r->fwd_mfu, r->fwd_peak, r->score_tokens_per_s, r->score_gflops,
             r->score_mfu, r->score_peak, r->train_tokens_per_s, r->train_gflops, r->train_mfu,
             r->train_peak);
    if (r->gen_b1_tokens_per_s > 0) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n,
                 "generate: %.0f tokens/s for 1 prompt, %.0f for 32 (%d-token prompts, %d new, "
                 "vocab %d)\n",
                 r->gen_b1_tokens_per_s, r->gen_b32_tokens_per_s, r->gen_prompt, r->gen_new,
                 r->gen_vocab);
    }
    return pl_strdup(buf);
}
