/* Every op's backward against central finite differences, and every fast op
 * against its plain-loop _ref twin. */
#include "model/ops.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct pl_rng rng;

static float *randv(long n, float scale)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++)
        p[i] = scale * pl_rng_normal(&rng);
    return p;
}

static float *zeros(long n)
{
    return calloc((size_t)n, sizeof(float));
}

/* Normalised mean squared error of got against want. */
static double nmse(const float *got, const float *want, long n)
{
    double num = 0, den = 1e-30;
    for (long i = 0; i < n; i++) {
        num += (double)(got[i] - want[i]) * (got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    return num / den;
}

/* Relative L2 error of an analytic gradient against a numeric one. */
static double rel_err(const float *ana, const double *num, long n)
{
    double d = 0, s = 1e-30;
    for (long i = 0; i < n; i++) {
        d += (ana[i] - num[i]) * (ana[i] - num[i]);
        s += num[i] * num[i];
    }
    return sqrt(d / s);
}

/* The scalar objective J = sum(r * out) in double, for finite differences. */
static double dotd(const float *a, const float *r, long n)
{
    double s = 0;
    for (long i = 0; i < n; i++)
        s += (double)a[i] * r[i];
    return s;
}

#define H 1e-2f

/* Central differences of J with respect to x[0..n), where eval() recomputes J. */
static void numeric_grad(double *out, float *x, long n, double (*eval)(void *), void *ctx)
{
    for (long i = 0; i < n; i++) {
        float save = x[i];
        x[i] = save + H;
        double jp = eval(ctx);
        x[i] = save - H;
        double jm = eval(ctx);
        x[i] = save;
        out[i] = (jp - jm) / (2.0 * H);
    }
}

/* ---- layernorm ---- */
struct ln_ctx {
    float *out, *mean, *rstd, *inp, *w, *b, *r;
    int N, C;
};
static double ln_eval(void *p)
{
    struct ln_ctx *c = p;
    op_layernorm_fwd_ref(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
    return dotd(c->out, c->r, (long)c->N * c->C);
}

static void test_layernorm(void)
{
    int N = 6, C = 16;
    struct ln_ctx c = {zeros(N * C),    zeros(N),    zeros(N),
                       randv(N * C, 1), randv(C, 1), randv(C, 1),
                       randv(N * C, 1), N,           C};
    float *o2 = zeros(N * C), *m2 = zeros(N), *r2 = zeros(N);
    op_layernorm_fwd(o2, m2, r2, c.inp, c.w, c.b, N, C, 1e-5f);
    ln_eval(&c);
    tap_ok(nmse(o2, c.out, N * C) < 1e-12, "layernorm forward matches ref");
    float *dinp = zeros(N * C), *dw = zeros(C), *db = zeros(C);
    float *dinp2 = zeros(N * C), *dw2 = zeros(C), *db2 = zeros(C);
    op_layernorm_bwd(dinp, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, N, C);
    op_layernorm_bwd_ref(dinp2, dw2, db2, c.r, c.inp, c.w, c.mean, c.rstd, N, C);
    tap_ok(nmse(dinp, dinp2, N * C) < 1e-10 && nmse(dw, dw2, C) < 1e-10 && nmse(db, db2, C) < 1e-10,
           "layernorm backward matches ref");
    double *num = malloc(sizeof(double) * N * C);
    numeric_grad(num, c.inp, N * C, ln_eval, &c);
    tap_ok(rel_err(dinp, num, N * C) < 1e-2, "layernorm d input vs finite differences (%.2g)",
           rel_err(dinp, num, N * C));
    numeric_grad(num, c.w, C, ln_eval, &c);
    tap_ok(rel_err(dw, num, C) < 1e-2, "layernorm d weight vs finite differences");
    numeric_grad(num, c.b, C, ln_eval, &c);
    tap_ok(rel_err(db, num, C) < 1e-2, "layernorm d bias vs finite differences");
    /* Backward accumulates: a second call doubles the gradient. */
    op_layernorm_bwd(dinp, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, N, C);
    tap_is_float(dw[3], 2 * dw2[3], 1e-4 * (1 + fabs(dw2[3])), "layernorm backward accumulates");
    free(num);
    free(c.out), free(c.mean), free(c.rstd), free(c.inp), free(c.w), free(c.b), free(c.r);
    free(o2), free(m2), free(r2), free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2);
}

/* ---- matmul ---- */
struct mm_ctx {
    float *out, *inp, *w, *b, *r;
    int N, IC, OC;
};
static double mm_eval(void *p)
{
    struct mm_ctx *c = p;
    op_matmul_fwd_ref(c->out, c->inp, c->w, c->b, c->N, c->IC, c->OC);
    return dotd(c->out, c->r, (long)c->N * c->OC);
}

static void test_matmul(void)
{
    int N = 7, IC = 12, OC = 10;
    struct mm_ctx c = {zeros(N * OC),
                       randv(N * IC, 1),
                       randv(IC * OC, 1),
                       randv(OC, 1),
                       randv(N * OC, 1),
                       N,
                       IC,
                       OC};
    float *o2 = zeros(N * OC);
    op_matmul_fwd(o2, c.inp, c.w, c.b, N, IC, OC);
    mm_eval(&c);
    tap_ok(nmse(o2, c.out, N * OC) < 1e-12, "matmul forward matches ref");
    /* Into the residual stream: r stands for the stream. */
    float *o3 = zeros(N * OC), *o4 = zeros(N * OC);
    op_matmul_residual_fwd(o3, c.r, c.inp, c.w, c.b, N, IC, OC);
    op_matmul_residual_fwd_ref(o4, c.r, c.inp, c.w, c.b, N, IC, OC);
    bool sum = true;
    for (int i = 0; i < N * OC; i++)
        sum &= fabs(o4[i] - (c.out[i] + c.r[i])) < 1e-5;
    tap_ok(nmse(o3, o4, N * OC) < 1e-12 && sum, "matmul into the residual stream matches ref");
    free(o3), free(o4);
    float *di = zeros(N * IC), *dw = zeros(IC * OC), *db = zeros(OC);
    float *di2 = zeros(N * IC), *dw2 = zeros(IC * OC), *db2 = zeros(OC);
    op_matmul_bwd(di, dw, db, c.r, c.inp, c.w, N, IC, OC);
    op_matmul_bwd_ref(di2, dw2, db2, c.r, c.inp, c.w, N, IC, OC);
    tap_ok(nmse(di, di2, N * IC) < 1e-12 && nmse(dw, dw2, IC * OC) < 1e-12 &&
               nmse(db, db2, OC) < 1e-12,
           "matmul backward matches ref");
    double *num = malloc(sizeof(double) * IC * OC);
    numeric_grad(num, c.inp, N * IC, mm_eval, &c);
    tap_ok(rel_err(di, num, N * IC) < 1e-3, "matmul d input vs finite differences");
    numeric_grad(num, c.w, IC * OC, mm_eval, &c);
    tap_ok(rel_err(dw, num, IC * OC) < 1e-3, "matmul d weight vs finite differences");
    numeric_grad(num, c.b, OC, mm_eval, &c);
    tap_ok(rel_err(db, num, OC) < 1e-3, "matmul d bias vs finite differences");
    free(num);
    free(c.out), free(c.inp), free(c.w), free(c.b), free(c.r), free(o2);
    free(di), free(dw), free(db), free(di2), free(dw2), free(db2);
}

/* ---- attention ---- */
struct att_ctx {
    float *out, *att, *qkv, *r;
    const int *seg;
    int B, T, C, NH;
};
static double att_eval(void *p)
{
    struct att_ctx *c = p;
    op_attention_fwd_ref(c->out, c->att, c->qkv, c->seg, c->B, c->T, c->C, c->NH);
    return dotd(c->out, c->r, (long)c->B * c->T * c->C);
}

/* T past op_attention_fwd's query block (128 rows) covers the blocked products; finite
 * differences only at small T (the ref twins carry the check at large T). */
static void test_attention(const int *seg, int T, const char *label)
{
    int B = 2, C = 8, NH = 2;
    long n = (long)B * T * C, nq = 3 * n, na = (long)B * NH * T * T;
    struct att_ctx c = {zeros(n), zeros(na), randv(nq, 1), randv(n, 1), seg, B, T, C, NH};
    float *o2 = zeros(n), *a2 = zeros(na);
    op_attention_fwd(o2, a2, c.qkv, seg, B, T, C, NH);
    att_eval(&c);
    tap_ok(nmse(o2, c.out, n) < 1e-12 && nmse(a2, c.att, na) < 1e-12,
           "attention forward matches ref (%s)", label);
    float *dq = zeros(nq), *dq2 = zeros(nq);
    int threads = 2;
    float *scratch = zeros(op_attention_scratch(T, threads));
    op_attention_bwd(dq, scratch, threads, c.r, c.att, c.qkv, B, T, C, NH);
    op_attention_bwd_ref(dq2, c.r, c.att, c.qkv, B, T, C, NH);
    tap_ok(nmse(dq, dq2, nq) < 1e-10, "attention backward matches ref (%s)", label);
    double *num = malloc(sizeof(double) * nq);
    if (T <= 16) {
        numeric_grad(num, c.qkv, nq, att_eval, &c);
        tap_ok(rel_err(dq, num, nq) < 1e-2, "attention d qkv vs finite differences (%s: %.2g)",
               label, rel_err(dq, num, nq));
    }
    /* Causality: a query never sees a later key. */
    int causal = 1;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++)
                for (int j = i + 1; j < T; j++)
                    causal &= a2[(((size_t)b * NH + h) * T + i) * T + j] == 0.0f;
    tap_ok(causal, "attention is causal (%s)", label);
    free(num), free(scratch), free(dq), free(dq2), free(o2), free(a2);
    free(c.out), free(c.att), free(c.qkv), free(c.r);
}

/* ---- gelu ---- */
static void test_gelu(void)
{
    long n = 200;
    float *inp = randv(n, 3), *out = zeros(n), *ref = zeros(n);
    inp[0] = 0.0f, inp[1] = -20.0f, inp[2] = 20.0f;
    op_gelu_fwd(out, inp, n);
    op_gelu_fwd_ref(ref, inp, n);
    tap_ok(nmse(out, ref, n) < 1e-12, "gelu forward matches ref");
    op_gelu_fwd(inp, inp, n);
    tap_ok(memcmp(inp, out, sizeof(float) * n) == 0, "gelu forward in place");
    free(inp), free(out), free(ref);
}

/* ---- bias + gelu (fused) ---- */
struct bg_ctx {
    float *x, *bias, *pre, *out, *r;
    int N, OC;
};
/* J = sum(r * gelu(x + bias)), on a copy of x: the forward writes pre in place. */
static double bg_eval(void *p)
{
    struct bg_ctx *c = p;
    long n = (long)c->N * c->OC;
    memcpy(c->pre, c->x, sizeof(float) * n);
    op_bias_gelu_fwd_ref(c->pre, c->out, c->bias, c->N, c->OC);
    return dotd(c->out, c->r, n);
}

static void test_bias_gelu(void)
{
    /* 70 columns: a full block of column sums and a partial one. */
    int N = 9, OC = 70;
    long n = (long)N * OC;
    struct bg_ctx c = {randv(n, 3), randv(OC, 1), zeros(n), zeros(n), randv(n, 1), N, OC};
    c.x[0] = -20.0f, c.x[1] = 20.0f;
    bg_eval(&c);
    float *pre = malloc(sizeof(float) * n), *out = zeros(n);
    memcpy(pre, c.x, sizeof(float) * n);
    op_bias_gelu_fwd(pre, out, c.bias, N, OC);
    tap_ok(nmse(pre, c.pre, n) < 1e-14 && nmse(out, c.out, n) < 1e-12,
           "bias + gelu forward matches ref");
    float *d = malloc(sizeof(float) * n), *d2 = malloc(sizeof(float) * n);
    float *db = zeros(OC), *db2 = zeros(OC);
    memcpy(d, c.r, sizeof(float) * n);
    memcpy(d2, c.r, sizeof(float) * n);
    op_bias_gelu_bwd(d, db, c.pre, N, OC);
    op_bias_gelu_bwd_ref(d2, db2, c.pre, N, OC);
    tap_ok(nmse(d, d2, n) < 1e-12 && nmse(db, db2, OC) < 1e-12,
           "bias + gelu backward matches ref");
    double *num = malloc(sizeof(double) * n);
    numeric_grad(num, c.x, n, bg_eval, &c);
    tap_ok(rel_err(d, num, n) < 1e-2, "bias + gelu d input vs finite differences (%.2g)",
           rel_err(d, num, n));
    numeric_grad(num, c.bias, OC, bg_eval, &c);
    tap_ok(rel_err(db, num, OC) < 1e-2, "bias + gelu d bias vs finite differences (%.2g)",
           rel_err(db, num, OC));
    /* The bias gradient accumulates. */
    memcpy(d, c.r, sizeof(float) * n);
    op_bias_gelu_bwd(d, db, c.pre, N, OC);
    tap_is_float(db[5], 2 * db2[5], 1e-4 * (1 + fabs(db2[5])), "bias + gelu backward accumulates");
    free(num), free(pre), free(out), free(d), free(d2), free(db), free(db2);
    free(c.x), free(c.bias), free(c.pre), free(c.out), free(c.r);
}

/* ---- cross-entropy ---- */
struct xent_ctx {
    float *logp, *lse, *logits, *r;
    const int *targets;
    int N, V;
};
static double xent_eval(void *p)
{
    struct xent_ctx *c = p;
    op_xent_fwd_ref(c->logp, c->lse, c->logits, c->targets, c->N, c->V);
    return dotd(c->logp, c->r, c->N);
}

static void test_xent(void)
{
    int N = 5, V = 11;
    int targets[5] = {3, -1, 0, 10, 7};
    struct xent_ctx c = {zeros(N), zeros(N), randv((long)N * V, 3), randv(N, 1), targets, N, V};
    float *lp2 = zeros(N), *lse2 = zeros(N);
    op_xent_fwd(lp2, lse2, c.logits, targets, N, V);
    xent_eval(&c);
    tap_ok(nmse(lp2, c.logp, N) < 1e-12, "cross-entropy forward matches ref");
    tap_is_float(lp2[1], 0.0f, 0.0, "an ignored row has log-prob 0");
    float *lse3 = zeros(N);
    op_logsumexp(lse3, c.logits, N, V);
    tap_is_float(lse3[0], c.lse[0], 1e-5, "logsumexp matches");
    float *dz = malloc(sizeof(float) * N * V);
    memcpy(dz, c.logits, sizeof(float) * N * V);
    op_xent_bwd(dz, c.lse, targets, c.r, N, V);
    double *num = malloc(sizeof(double) * N * V);
    numeric_grad(num, c.logits, (long)N * V, xent_eval, &c);
    tap_ok(rel_err(dz, num, (long)N * V) < 1e-2, "cross-entropy backward vs finite differences");
    float rowsum = 0;
    for (int j = 0; j < V; j++)
        rowsum += fabsf(dz[V + j]);
    tap_is_float(rowsum, 0.0, 0.0, "an ignored row gets no gradient");
    free(num), free(dz), free(lp2), free(lse2), free(lse3);
    free(c.logp), free(c.lse), free(c.logits), free(c.r);
}

/* ---- embedding ---- */
static void test_embed(void)
{
    int V = 7, P = 6, C = 4, B = 2, T = 3, N = B * T;
    int tokens[6] = {1, 2, 1, 6, 0, 1};
    int pos[6] = {0, 1, 2, 3, 4, 5};
    float *wte = randv(V * C, 1), *wpe = randv(P * C, 1), *out = zeros(N * C);
    op_embed_fwd(out, tokens, NULL, wte, wpe, N, T, C);
    tap_is_float(out[3 * C + 2], wte[6 * C + 2] + wpe[0 * C + 2], 1e-6,
                 "embedding: row 3 is token 6 at position 0");
    op_embed_fwd(out, tokens, pos, wte, wpe, N, T, C);
    tap_is_float(out[3 * C + 2], wte[6 * C + 2] + wpe[3 * C + 2], 1e-6,
                 "embedding honours explicit positions");
    float *dout = randv(N * C, 1), *dwte = zeros(V * C), *dwpe = zeros(P * C);
    op_embed_bwd(dwte, dwpe, dout, tokens, NULL, N, T, C);
    tap_is_float(dwte[1 * C], dout[0] + dout[2 * C] + dout[5 * C], 1e-5,
                 "embedding backward sums rows of a repeated token");
    tap_is_float(dwpe[0], dout[0] + dout[3 * C], 1e-5, "embedding backward sums positions");
    free(wte), free(wpe), free(out), free(dout), free(dwte), free(dwpe);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 2, &err))
        tap_skip_all(err.msg);
    pl_rng_seed(&rng, 42);
    test_layernorm();
    test_matmul();
    test_attention(NULL, 5, "causal");
    int seg[10] = {0, 0, 1, 1, 1, 5, 5, 5, 5, 6};
    test_attention(seg, 5, "packed documents");
    test_attention(NULL, 150, "causal, two query blocks");
    int segs[300];
    for (int i = 0; i < 300; i++)
        segs[i] = i / 47;
    test_attention(segs, 150, "packed documents, two query blocks");
    test_gelu();
    test_bias_gelu();
    test_xent();
    test_embed();
    return tap_done();
}
