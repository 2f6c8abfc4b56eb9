#include "ops.h"

#include "pl.h"
#include "tensor.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Work below this many floats runs on one thread: waking the pool costs more. */
#define PAR_MIN 32768L

/* exp for the hot loops: plain arithmetic that GCC vectorises (libm's expf
 * does not), relative error about 2e-7 over the float range. */
static inline float fexp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* Round to nearest by adding and taking away 1.5 * 2^23: floorf keeps GCC from
     * vectorising the loop (it refused every elementwise loop that called this). */
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145752f - n * 1.42860677e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f +
                                                  r * (0.0416666679f + r * (0.00833333377f +
                                                                            r * 0.00138888892f)))));
    /* NaN must come out NaN (through p), and never reach the integer conversion. */
    float k = n == n ? n : 0.0f;
    int32_t bits = (int32_t)((uint32_t)((int32_t)k + 127) << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float ftanh(float x)
{
    return 1.0f - 2.0f / (fexp(2.0f * x) + 1.0f);
}

/* ---- embedding ---- */

void op_embed_fwd(float *out, const int *tokens, const int *pos, const float *wte, const float *wpe,
                  int N, int T, int C)
{
#pragma omp parallel for if ((long)N * C > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *te = wte + (size_t)tokens[i] * C;
        const float *pe = wpe + (size_t)(pos ? pos[i] : i % T) * C;
        float *o = out + (size_t)i * C;
        for (int c = 0; c < C; c++)
            o[c] = te[c] + pe[c];
    }
}

void op_embed_bwd(float *dwte, float *dwpe, const float *dout, const int *tokens, const int *pos,
                  int N, int T, int C)
{
    /* Serial: two rows may share a token, and this is a tiny part of a step. */
    for (int i = 0; i < N; i++) {
        float *dte = dwte + (size_t)tokens[i] * C;
        float *dpe = dwpe + (size_t)(pos ? pos[i] : i % T) * C;
        const float *d = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) {
            dte[c] += d[c];
            dpe[c] += d[c];
        }
    }
}

/* ---- layernorm ---- */

void op_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                      const float *b, int N, int C, float eps)
{
#pragma omp parallel for if ((long)N * C > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        /* simd reductions: a plain float sum is one chain of dependent adds (GCC keeps its
         * order), which made LayerNorm a few percent of a training step. */
        float m = 0.0f;
#pragma omp simd reduction(+ : m)
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= (float)C;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= (float)C;
        float s = 1.0f / sqrtf(v + eps);
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

void op_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, const float *mean, const float *rstd, int N, int C)
{
    /* dinp rows are independent; dw and db are summed over rows per thread
     * and reduced after, so threads never write the same parameter. */
    int nt = (long)N * C > PAR_MIN ? omp_get_max_threads() : 1;
#pragma omp parallel num_threads(nt)
    {
        float dwl[C], dbl[C];
        memset(dwl, 0, sizeof dwl);
        memset(dbl, 0, sizeof dbl);
#pragma omp for
        for (int i = 0; i < N; i++) {
            const float *x = inp + (size_t)i * C;
            const float *d = dout + (size_t)i * C;
            float *dx = dinp + (size_t)i * C;
            float m = mean[i], s = rstd[i];
            float dnorm_mean = 0.0f, dnorm_norm = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm)
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * s;
                float dn = w[c] * d[c];
                dnorm_mean += dn;
                dnorm_norm += dn * xh;
                dbl[c] += d[c];
                dwl[c] += xh * d[c];
            }
            dnorm_mean /= (float)C;
            dnorm_norm /= (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * s;
                dx[c] += (w[c] * d[c] - dnorm_mean - xh * dnorm_norm) * s;
            }
        }
#pragma omp critical
        for (int c = 0; c < C; c++) {
            dw[c] += dwl[c];
            db[c] += dbl[c];
        }
    }
}

void op_layernorm_fwd_ref(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C, float eps)
{
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + eps);
        for (int c = 0; c < C; c++)
            out[(size_t)i * C + c] = (float)((x[c] - m) * s * w[c] + b[c]);
        mean[i] = (float)m;
        rstd[i] = (float)s;
    }
}

void op_layernorm_bwd_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const float *mean, const float *rstd, int N, int C)
{
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        const float *d = dout + (size_t)i * C;
        double a = 0, bsum = 0;
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - mean[i]) * rstd[i];
            a += w[c] * d[c];
            bsum += w[c] * d[c] * xh;
            db[c] += d[c];
            dw[c] += (float)(xh * d[c]);
        }
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - mean[i]) * rstd[i];
            dinp[(size_t)i * C + c] += (float)((w[c] * d[c] - a / C - xh * bsum / C) * rstd[i]);
        }
    }
}

/* ---- matmul (HF Conv1D layout: w is [IC, OC]) ---- */

/* Columns a block takes in column_sums: a row's block is one contiguous read. */
#define SUM_COLS 64

/* sums[OC] += column sums of x[N,OC]. Each thread owns blocks of columns and walks the rows
 * in order (summing a column down its rows strides a whole row per float), so every sum runs
 * in one order whatever the thread count. */
static void column_sums(float *sums, const float *x, int N, int OC)
{
#pragma omp parallel for schedule(static) if ((long)N * OC > PAR_MIN)
    for (int o0 = 0; o0 < OC; o0 += SUM_COLS) {
        int n = OC - o0 < SUM_COLS ? OC - o0 : SUM_COLS;
        float acc[SUM_COLS] = {0};
        for (int i = 0; i < N; i++) {
            const float *row = x + (size_t)i * OC + o0;
#pragma omp simd
            for (int o = 0; o < n; o++)
                acc[o] += row[o];
        }
        for (int o = 0; o < n; o++)
            sums[o0 + o] += acc[o];
    }
}

void op_matmul_fwd(float *out, const float *inp, const float *w, const float *bias, int N, int IC,
                   int OC)
{
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for if ((long)N * OC > PAR_MIN)
        for (int i = 0; i < N; i++)
            memcpy(out + (size_t)i * OC, bias, sizeof(float) * OC);
        beta = 1.0f;
    }
    tensor_gemm(false, false, N, OC, IC, 1.0f, inp, IC, w, OC, beta, out, OC);
}

void op_matmul_residual_fwd(float *out, const float *res, const float *inp, const float *w,
                            const float *bias, int N, int IC, int OC)
{
#pragma omp parallel for if ((long)N * OC > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *r = res + (size_t)i * OC;
        float *o = out + (size_t)i * OC;
#pragma omp simd
        for (int c = 0; c < OC; c++)
            o[c] = r[c] + bias[c];
    }
    tensor_gemm(false, false, N, OC, IC, 1.0f, inp, IC, w, OC, 1.0f, out, OC);
}

void op_matmul_residual_fwd_ref(float *out, const float *res, const float *inp, const float *w,
                                const float *bias, int N, int IC, int OC)
{
    op_matmul_fwd_ref(out, inp, w, bias, N, IC, OC);
    for (long i = 0; i < (long)N * OC; i++)
        out[i] += res[i];
}

void op_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                   const float *w, int N, int IC, int OC)
{
    if (dinp)
        tensor_gemm(false, true, N, IC, OC, 1.0f, dout, OC, w, OC, 1.0f, dinp, IC);
    tensor_gemm(true, false, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dw, OC);
    if (dbias)
        column_sums(dbias, dout, N, OC);
}

void op_matmul_fwd_ref(float *out, const float *inp, const float *w, const float *bias, int N,
                       int IC, int OC)
{
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int k = 0; k < IC; k++)
                s += (double)inp[(size_t)i * IC + k] * w[(size_t)k * OC + o];
            out[(size_t)i * OC + o] = (float)s;
        }
}

void op_matmul_bwd_ref(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                       const float *w, int N, int IC, int OC)
{
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            float d = dout[(size_t)i * OC + o];
            if (dbias)
                dbias[o] += d;
            for (int k = 0; k < IC; k++) {
                if (dinp)
                    dinp[(size_t)i * IC + k] += d * w[(size_t)k * OC + o];
                dw[(size_t)k * OC + o] += d * inp[(size_t)i * IC + k];
            }
        }
}

/* ---- attention ---- */

/* Softmax of row i of scores in place over the keys it may see (j <= i and,
 * with seg, the same document); every other entry up to i becomes 0. */
static void attention_row_softmax(float *row, int i, const int *seg)
{
    float mx = -INFINITY, sum = 0.0f;
    if (!seg) {
#pragma omp simd reduction(max : mx)
        for (int j = 0; j <= i; j++)
            mx = row[j] > mx ? row[j] : mx;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j <= i; j++) {
            row[j] = fexp(row[j] - mx);
            sum += row[j];
        }
    } else {
        for (int j = 0; j <= i; j++)
            if (seg[j] == seg[i] && row[j] > mx)
                mx = row[j];
        for (int j = 0; j <= i; j++) {
            float e = seg[j] == seg[i] ? fexp(row[j] - mx) : 0.0f;
            row[j] = e;
            sum += e;
        }
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j <= i; j++)
        row[j] *= inv;
}

/* Query rows a block: causal attention computes, for rows r0..r1-1, the scores against keys
 * 0..r1-1 only, so the products skip part of the masked upper triangle instead of multiplying
 * zeros (3/4 of the full T x T work at T = 256). Measured here on one thread, T = 256 and 64
 * dimensions a head: 191 us a head's two forward products unblocked, 165 in blocks of 64 rows
 * (BLIS runs 64-row products at 50-70 GFLOP/s against 90), 157 in blocks of 128. */
#define ATT_QB 128

void op_attention_fwd(float *out, float *att, const float *qkv, const int *seg, int B, int T, int C,
                      int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *s = att + ((size_t)b * NH + h) * T * T;
            float *o = out + (size_t)b * T * C + h * hs;
            const int *sg = seg ? seg + (size_t)b * T : NULL;
            for (int r0 = 0; r0 < T; r0 += ATT_QB) {
                int r1 = r0 + ATT_QB < T ? r0 + ATT_QB : T, rows = r1 - r0;
                float *sb = s + (size_t)r0 * T;
                tensor_gemm_1t(false, true, rows, r1, hs, scale, q + (size_t)r0 * C3, C3, k, C3,
                               0.0f, sb, T);
                for (int i = r0; i < r1; i++) {
                    attention_row_softmax(s + (size_t)i * T, i, sg);
                    memset(s + (size_t)i * T + i + 1, 0, sizeof(float) * (T - i - 1));
                }
                tensor_gemm_1t(false, false, rows, hs, r1, 1.0f, sb, T, v, C3, 0.0f,
                               o + (size_t)r0 * C, C);
            }
        }
}

long op_attention_scratch(int T, int threads)
{
    return (long)T * T * (threads > 0 ? threads : 1);
}

void op_attention_bwd(float *dqkv, float *scratch, int threads, const float *dout, const float *att,
                      const float *qkv, int B, int T, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    int nt = omp_get_max_threads() < threads ? omp_get_max_threads() : threads;
#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(nt)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
            const float *q = qkv + (size_t)b * T * C3 + h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (size_t)b * T * C3 + h * hs;
            float *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            const float *dy = dout + (size_t)b * T * C + h * hs;
            /* Query blocks as in the forward: rows r0..r1-1 see keys 0..r1-1. */
            for (int r0 = 0; r0 < T; r0 += ATT_QB) {
                int r1 = r0 + ATT_QB < T ? r0 + ATT_QB : T, rows = r1 - r0;
                const float *pb = p + (size_t)r0 * T, *dyb = dy + (size_t)r0 * C;
                float *db = dp + (size_t)r0 * T;
                tensor_gemm_1t(false, true, rows, r1, hs, 1.0f, dyb, C, v, C3, 0.0f, db, T);
                tensor_gemm_1t(true, false, r1, hs, rows, 1.0f, pb, T, dyb, C, 1.0f, dv, C3);
                /* Softmax backward; masked entries have p = 0 and so get 0. */
                for (int i = r0; i < r1; i++) {
                    const float *pr = p + (size_t)i * T;
                    float *dr = dp + (size_t)i * T;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j <= i; j++)
                        dot += pr[j] * dr[j];
#pragma omp simd
                    for (int j = 0; j <= i; j++)
                        dr[j] = pr[j] * (dr[j] - dot);
                    memset(dr + i + 1, 0, sizeof(float) * (r1 - i - 1));
                }
                tensor_gemm_1t(false, false, rows, hs, r1, scale, db, T, k, C3, 1.0f,
                               dq + (size_t)r0 * C3, C3);
                tensor_gemm_1t(true, false, r1, hs, rows, scale, db, T, q + (size_t)r0 * C3, C3,
                               1.0f, dk, C3);
            }
        }
}

void op_attention_fwd_ref(float *out, float *att, const float *qkv, const int *seg, int B, int T,
                          int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * C3 + h * hs;
                float *row = att + (((size_t)b * NH + h) * T + i) * T;
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    int visible = j <= i && (!seg || seg[b * T + j] == seg[b * T + i]);
                    double s = 0;
                    if (visible) {
                        const float *k = qkv + ((size_t)b * T + j) * C3 + C + h * hs;
                        for (int d = 0; d < hs; d++)
                            s += (double)q[d] * k[d];
                        s *= scale;
                        if (s > mx)
                            mx = s;
                    }
                    row[j] = visible ? (float)s : -INFINITY;
                }
                double sum = 0;
                for (int j = 0; j < T; j++)
                    sum += row[j] == -INFINITY ? 0 : exp(row[j] - mx);
                for (int j = 0; j < T; j++)
                    row[j] = row[j] == -INFINITY ? 0.0f : (float)(exp(row[j] - mx) / sum);
                float *o = out + ((size_t)b * T + i) * C + h * hs;
                for (int d = 0; d < hs; d++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += (double)row[j] * qkv[((size_t)b * T + j) * C3 + 2 * C + h * hs + d];
                    o[d] = (float)acc;
                }
            }
}

void op_attention_bwd_ref(float *dqkv, const float *dout, const float *att, const float *qkv, int B,
                          int T, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *p = att + (((size_t)b * NH + h) * T + i) * T;
                const float *dy = dout + ((size_t)b * T + i) * C + h * hs;
                const float *q = qkv + ((size_t)b * T + i) * C3 + h * hs;
                float *dq = dqkv + ((size_t)b * T + i) * C3 + h * hs;
                double dpv[T], dot = 0;
                for (int j = 0; j < T; j++) {
                    const float *v = qkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs;
                    float *dv = dqkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs;
                    double s = 0;
                    for (int d = 0; d < hs; d++) {
                        s += (double)dy[d] * v[d];
                        dv[d] += p[j] * dy[d];
                    }
                    dpv[j] = s;
                    dot += p[j] * s;
                }
                for (int j = 0; j < T; j++) {
                    double ds = p[j] * (dpv[j] - dot) * scale;
                    const float *k = qkv + ((size_t)b * T + j) * C3 + C + h * hs;
                    float *dk = dqkv + ((size_t)b * T + j) * C3 + C + h * hs;
                    for (int d = 0; d < hs; d++) {
                        dq[d] += (float)(ds * k[d]);
                        dk[d] += (float)(ds * q[d]);
                    }
                }
            }
}

/* ---- GELU (tanh form) ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

void op_gelu_fwd(float *out, const float *inp, long n)
{
#pragma omp parallel for simd if (parallel : n > PAR_MIN)
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + ftanh(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void op_bias_gelu_fwd(float *pre, float *out, const float *bias, int N, int OC)
{
#pragma omp parallel for schedule(static) if ((long)N * OC > PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *p = pre + (size_t)i * OC, *o = out + (size_t)i * OC;
#pragma omp simd
        for (int c = 0; c < OC; c++) {
            float x = p[c] + bias[c];
            p[c] = x;
            o[c] = 0.5f * x * (1.0f + ftanh(GELU_K * (x + 0.044715f * x * x * x)));
        }
    }
}

/* GELU's derivative at x. */
static inline float gelu_grad(float x)
{
    float t = ftanh(GELU_K * (x + 0.044715f * x * x * x));
    float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

void op_bias_gelu_bwd(float *d, float *dbias, const float *pre, int N, int OC)
{
    /* Threads own column blocks (the bias sums then run in one order whatever the thread
     * count) and walk the rows in order. */
#pragma omp parallel for schedule(static) if ((long)N * OC > PAR_MIN)
    for (int o0 = 0; o0 < OC; o0 += SUM_COLS) {
        int n = OC - o0 < SUM_COLS ? OC - o0 : SUM_COLS;
        float acc[SUM_COLS] = {0};
        for (int i = 0; i < N; i++) {
            float *dr = d + (size_t)i * OC + o0;
            const float *x = pre + (size_t)i * OC + o0;
#pragma omp simd
            for (int c = 0; c < n; c++) {
                dr[c] *= gelu_grad(x[c]);
                acc[c] += dr[c];
            }
        }
        for (int c = 0; c < n; c++)
            dbias[o0 + c] += acc[c];
    }
}

void op_bias_gelu_fwd_ref(float *pre, float *out, const float *bias, int N, int OC)
{
    for (int i = 0; i < N; i++)
        for (int c = 0; c < OC; c++) {
            float *p = pre + (size_t)i * OC + c;
            *p += bias[c];
            op_gelu_fwd_ref(out + (size_t)i * OC + c, p, 1);
        }
}

void op_bias_gelu_bwd_ref(float *d, float *dbias, const float *pre, int N, int OC)
{
    for (int i = 0; i < N; i++)
        for (int c = 0; c < OC; c++) {
            size_t k = (size_t)i * OC + c;
            double x = pre[k];
            double t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
            double du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
            d[k] = (float)(d[k] * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du));
            dbias[c] += d[k];
        }
}

void op_gelu_fwd_ref(float *out, const float *inp, long n)
{
    for (long i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
    }
}


/* ---- residual ---- */

void op_add_inplace(float *dst, const float *src, long n)
{
#pragma omp parallel for simd if (parallel : n > PAR_MIN)
    for (long i = 0; i < n; i++)
        dst[i] += src[i];
}

/* ---- softmax cross-entropy ---- */

static float row_logsumexp(const float *z, int V)
{
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < V; j++)
        mx = z[j] > mx ? z[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++)
        sum += fexp(z[j] - mx);
    return mx + logf(sum);
}

void op_logsumexp(float *lse, const float *logits, int N, int V)
{
#pragma omp parallel for if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++)
        lse[i] = row_logsumexp(logits + (size_t)i * V, V);
}

void op_xent_fwd(float *logp, float *lse, const float *logits, const int *targets, int N, int V)
{
#pragma omp parallel for if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        if (targets[i] < 0) {
            logp[i] = 0.0f;
            lse[i] = 0.0f;
            continue;
        }
        lse[i] = row_logsumexp(z, V);
        logp[i] = z[targets[i]] - lse[i];
    }
}

void op_xent_bwd(float *logits, const float *lse, const int *targets, const float *dlogp, int N,
                 int V)
{
#pragma omp parallel for if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *z = logits + (size_t)i * V;
        if (targets[i] < 0 || dlogp[i] == 0.0f) {
            memset(z, 0, sizeof(float) * V);
            continue;
        }
        float g = dlogp[i], l = lse[i];
#pragma omp simd
        for (int j = 0; j < V; j++)
            z[j] = -g * fexp(z[j] - l);
        z[targets[i]] += g;
    }
}

void op_xent_fwd_ref(float *logp, float *lse, const float *logits, const int *targets, int N, int V)
{
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        if (targets[i] < 0) {
            logp[i] = 0.0f;
            lse[i] = 0.0f;
            continue;
        }
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++)
            mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < V; j++)
            sum += exp(z[j] - mx);
        lse[i] = (float)(mx + log(sum));
        logp[i] = (float)(z[targets[i]] - mx - log(sum));
    }
}

/* ---- the KV cache (model/kv.c) ---- */

/* Query rows a KV pass attends in one go: consecutive rows of one sequence share each key and
 * value they load. */
#define KV_TILE 4
/* Scores or output columns held in registers at a time (one AVX-512 vector). */
#define KV_W 16

long op_attention_kv_scratch(int maxT, int threads)
{
    return (long)KV_TILE * maxT * (threads > 0 ? threads : 1);
}

/* Scores s[r][j0 + jj] (row stride maxT), jj < w, of nr rows: each sums q[r][c] * k[c][j] over
 * c in order from 0, as a lone row's would. Inlined with constant nr and w, so that the
 * accumulators stay in registers. */
static inline __attribute__((always_inline)) void kv_scores(float *s, const float *qs,
                                                            const float *kt, int j0, int w, int nr,
                                                            int hs, int maxT)
{
    float acc[KV_TILE][KV_W] = {{0}};
    for (int c = 0; c < hs; c++) {
        const float *kc = kt + (size_t)c * maxT + j0;
        for (int r = 0; r < nr; r++) {
            float qc = qs[r * hs + c];
#pragma omp simd
            for (int jj = 0; jj < w; jj++)
                acc[r][jj] += qc * kc[jj];
        }
    }
    for (int r = 0; r < nr; r++)
        memcpy(s + (size_t)r * maxT + j0, acc[r], sizeof(float) * w);
}

/* out[r][c0 + cc], cc < w, of nr rows whose row r attends to keys 0..L0 + r - 1: the sum of
 * p[r][j] * v[j][c] over j in order from 0, as a lone row's would. */
static inline __attribute__((always_inline)) void kv_values(float *out, size_t ostride,
                                                            const float *s, const float *inv,
                                                            const float *v, int c0, int w, int nr,
                                                            int L0, int hs, int maxT)
{
    float acc[KV_TILE][KV_W] = {{0}};
    for (int j = 0; j < L0 + nr - 1; j++) {
        const float *vj = v + (size_t)j * hs + c0;
        for (int r = 0; r < nr; r++) {
            if (j >= L0 + r)
                continue;
            float p = s[(size_t)r * maxT + j] * inv[r];
#pragma omp simd
            for (int cc = 0; cc < w; cc++)
                acc[r][cc] += p * vj[cc];
        }
    }
    for (int r = 0; r < nr; r++)
        memcpy(out + (size_t)r * ostride + c0, acc[r], sizeof(float) * w);
}

/* nr (<= KV_TILE) consecutive query rows of one sequence over one head (kt: keys transposed,
 * row stride maxT); row r attends to keys 0..L0 + r - 1. Every row, prefill or decode, goes
 * through here and its sums run in the same order whatever rows share its tile or pass, so its
 * result is the same bits in any batch (a BLIS block's order depends on its shape). Plain loops:
 * with the keys transposed the scores need no horizontal sums. */
static inline __attribute__((always_inline)) void kv_attend_tile(float *out, size_t ostride,
                                                                 float *s, const float *qs,
                                                                 const float *kt, const float *v,
                                                                 int L0, int nr, int hs, int maxT)
{
    float inv[KV_TILE];
    int Lmax = L0 + nr - 1, j0 = 0;
    for (; j0 + KV_W <= Lmax; j0 += KV_W)
        kv_scores(s, qs, kt, j0, KV_W, nr, hs, maxT);
    if (j0 < Lmax)
        kv_scores(s, qs, kt, j0, Lmax - j0, nr, hs, maxT);
    for (int r = 0; r < nr; r++) {
        float *sr = s + (size_t)r * maxT;
        int L = L0 + r;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < L; j++)
            mx = sr[j] > mx ? sr[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < L; j++) {
            sr[j] = fexp(sr[j] - mx);
            sum += sr[j];
        }
        inv[r] = 1.0f / sum;
    }
    int c0 = 0;
    for (; c0 + KV_W <= hs; c0 += KV_W)
        kv_values(out, ostride, s, inv, v, c0, KV_W, nr, L0, hs, maxT);
    if (c0 < hs)
        kv_values(out, ostride, s, inv, v, c0, hs - c0, nr, L0, hs, maxT);
}

/* kv_attend_tile with the queries q[r] (row stride qstride) scaled, for a constant nr. */
static void kv_attend_rows(float *out, size_t ostride, float *s, const float *q, size_t qstride,
                           const float *kt, const float *v, int L0, int nr, int hs, int maxT,
                           float scale)
{
    float qs[KV_TILE * hs];
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < hs; c++)
            qs[r * hs + c] = q[(size_t)r * qstride + c] * scale;
    switch (nr) {
    case 1:
        kv_attend_tile(out, ostride, s, qs, kt, v, L0, 1, hs, maxT);
        break;
    case 2:
        kv_attend_tile(out, ostride, s, qs, kt, v, L0, 2, hs, maxT);
        break;
    case 3:
        kv_attend_tile(out, ostride, s, qs, kt, v, L0, 3, hs, maxT);
        break;
    default:
        kv_attend_tile(out, ostride, s, qs, kt, v, L0, KV_TILE, hs, maxT);
        break;
    }
}

void op_attention_kv_fwd(float *out, float *k, float *v, float *scratch, int threads,
                         const float *qkv, const int *slot, const int *past, const int *n, int B,
                         int maxT, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    size_t per_head = (size_t)maxT * hs, per_slot = per_head * NH;
    /* first[i]: sequence i's first row; tile[i]: its first tile of up to KV_TILE rows. */
    int first[B + 1], tile[B + 1];
    long work = 0;
    first[0] = tile[0] = 0;
    for (int i = 0; i < B; i++) {
        first[i + 1] = first[i] + n[i];
        tile[i + 1] = tile[i] + (n[i] + KV_TILE - 1) / KV_TILE;
        work += (long)n[i] * (past[i] + n[i]) * C;
    }
    int tiles = tile[B];
    int nt = omp_get_max_threads() < threads ? omp_get_max_threads() : threads;
    if (work <= PAR_MIN)
        nt = 1;
#pragma omp parallel num_threads(nt)
    {
        /* Every new row's key and value into the cache first, then each tile attends: the rows
         * of a long prefill spread over the threads like those of many sequences. */
#pragma omp for collapse(2) schedule(static)
        for (int i = 0; i < B; i++)
            for (int h = 0; h < NH; h++) {
                float *kh = k + slot[i] * per_slot + h * per_head;
                float *vh = v + slot[i] * per_slot + h * per_head;
                for (int r = 0; r < n[i]; r++) {
                    const float *x = qkv + (size_t)(first[i] + r) * C3 + h * hs;
                    for (int c = 0; c < hs; c++)
                        kh[(size_t)c * maxT + past[i] + r] = x[C + c];
                    memcpy(vh + (size_t)(past[i] + r) * hs, x + 2 * C, sizeof(float) * hs);
                }
            }
        float *s = scratch + (size_t)omp_get_thread_num() * KV_TILE * maxT;
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int t = 0; t < tiles; t++)
            for (int h = 0; h < NH; h++) {
                int lo = 0, hi = B - 1;
                while (lo < hi) {
                    int mid = (lo + hi + 1) / 2;
                    if (tile[mid] <= t)
                        lo = mid;
                    else
                        hi = mid - 1;
                }
                int i = lo, r0 = (t - tile[i]) * KV_TILE, row = first[i] + r0;
                int nr = n[i] - r0 < KV_TILE ? n[i] - r0 : KV_TILE;
                kv_attend_rows(out + (size_t)row * C + h * hs, (size_t)C, s,
                               qkv + (size_t)row * C3 + h * hs, (size_t)C3,
                               k + slot[i] * per_slot + h * per_head,
                               v + slot[i] * per_slot + h * per_head, past[i] + r0 + 1, nr, hs,
                               maxT, scale);
            }
    }
}

void op_attention_kv_fwd_ref(float *out, float *k, float *v, const float *qkv, const int *slot,
                             const int *past, const int *n, int B, int maxT, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    for (int i = 0, row = 0; i < B; row += n[i++])
        for (int h = 0; h < NH; h++) {
            float *kh = k + (((size_t)slot[i] * NH + h) * maxT) * hs;
            float *vh = v + (((size_t)slot[i] * NH + h) * maxT) * hs;
            for (int r = 0; r < n[i]; r++)
                for (int d = 0; d < hs; d++) {
                    const float *x = qkv + (size_t)(row + r) * C3 + h * hs + d;
                    kh[(size_t)d * maxT + past[i] + r] = x[C];
                    vh[(size_t)(past[i] + r) * hs + d] = x[2 * C];
                }
            for (int r = 0; r < n[i]; r++) {
                const float *q = qkv + (size_t)(row + r) * C3 + h * hs;
                int L = past[i] + r + 1;
                double s[L], mx = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) {
                    s[j] = 0;
                    for (int d = 0; d < hs; d++)
                        s[j] += (double)q[d] * kh[(size_t)d * maxT + j];
                    s[j] *= scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < L; j++)
                    sum += exp(s[j] - mx);
                for (int d = 0; d < hs; d++) {
                    double acc = 0;
                    for (int j = 0; j < L; j++)
                        acc += exp(s[j] - mx) / sum * vh[(size_t)j * hs + d];
                    out[(size_t)(row + r) * C + h * hs + d] = (float)acc;
                }
            }
        }
}

/* Sixteen floats: GCC and Clang lower it to one AVX-512 register, or two
 * AVX2 ones, without intrinsics. Loads and stores go through memcpy because
 * rows are not 64-byte aligned, and are macros because passing a vector by
 * value would tie the calling convention to -march. */
typedef float vf16 __attribute__((vector_size(64)));
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(vf16))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(vf16))

/* acc += a * b as one fused multiply-add (VFMA_S: a is a scalar, broadcast): ISO C mode
 * compiles a * b + c as a multiply and an add (no contraction), which ran a decode tile at half
 * the rate of the FMA units. */
#ifdef __AVX512F__
#define VFMA(acc, a, b) ((acc) = _mm512_fmadd_ps((a), (b), (acc)))
#define VFMA_S(acc, a, b) ((acc) = _mm512_fmadd_ps(_mm512_set1_ps(a), (b), (acc)))
#else
#define VFMA(acc, a, b) ((acc) += (a) * (b))
#define VFMA_S(acc, a, b) ((acc) += (a) * (b))
#endif

typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));

/* Sum of the lanes, as a tree of halves: a plain loop is a chain of 16
 * dependent adds, which costs the LM head as much as its products. */
static inline float vsum(const vf16 *x)
{
    vf8 a, b;
    memcpy(&a, x, sizeof a);
    memcpy(&b, (const char *)x + sizeof a, sizeof b);
    a += b;
    vf4 c, d;
    memcpy(&c, &a, sizeof c);
    memcpy(&d, (const char *)&a + sizeof c, sizeof d);
    c += d;
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* A decode tile is up to 6 rows x 64 columns: 24 accumulators, 4 weight
 * vectors and a broadcast fill AVX-512's 32 registers. */
#define DEC_ROWS 6
#define DEC_COLS 64

/* out[rows, 64] = x[rows, IC] @ w[IC, 64 of OC] (+ bias). rows is a constant
 * once inlined, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void
dec_tile(float *out, const float *x, const float *w, const float *bias, int rows, int IC, int OC)
{
    vf16 acc[DEC_ROWS][4];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < 4; j++) {
            acc[r][j] = (vf16){0};
            if (bias)
                VLOAD(acc[r][j], bias + 16 * j);
        }
    for (int k = 0; k < IC; k++) {
        const float *wk = w + (size_t)k * OC;
        vf16 w0, w1, w2, w3;
        VLOAD(w0, wk);
        VLOAD(w1, wk + 16);
        VLOAD(w2, wk + 32);
        VLOAD(w3, wk + 48);
        for (int r = 0; r < rows; r++) {
            float xs = x[(size_t)r * IC + k];
            VFMA_S(acc[r][0], xs, w0);
            VFMA_S(acc[r][1], xs, w1);
            VFMA_S(acc[r][2], xs, w2);
            VFMA_S(acc[r][3], xs, w3);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < 4; j++)
            VSTORE(out + (size_t)r * OC + 16 * j, acc[r][j]);
}

static void dec_rows(float *out, const float *x, const float *w, const float *bias, int rows,
                     int IC, int OC)
{
    switch (rows) {
    case 1:
        dec_tile(out, x, w, bias, 1, IC, OC);
        break;
    case 2:
        dec_tile(out, x, w, bias, 2, IC, OC);
        break;
    case 3:
        dec_tile(out, x, w, bias, 3, IC, OC);
        break;
    case 4:
        dec_tile(out, x, w, bias, 4, IC, OC);
        break;
    case 5:
        dec_tile(out, x, w, bias, 5, IC, OC);
        break;
    default:
        dec_tile(out, x, w, bias, DEC_ROWS, IC, OC);
        break;
    }
}

void op_matmul_fwd_decode(float *out, const float *inp, const float *w, const float *bias, int N,
                          int IC, int OC)
{
    int blocks = OC / DEC_COLS, groups = (N + DEC_ROWS - 1) / DEC_ROWS;
#pragma omp parallel for collapse(2) schedule(static) if ((long)N * IC * OC > PAR_MIN)
    for (int b = 0; b < blocks; b++)
        for (int g = 0; g < groups; g++) {
            int r0 = g * DEC_ROWS, rows = N - r0 < DEC_ROWS ? N - r0 : DEC_ROWS;
            dec_rows(out + (size_t)r0 * OC + b * DEC_COLS, inp + (size_t)r0 * IC, w + b * DEC_COLS,
                     bias ? bias + b * DEC_COLS : NULL, rows, IC, OC);
        }
    /* The last OC % 64 columns (only tiny models have any). */
    for (int r = 0; r < N; r++)
        for (int o = blocks * DEC_COLS; o < OC; o++) {
            float s = bias ? bias[o] : 0.0f;
            for (int k = 0; k < IC; k++)
                s += inp[(size_t)r * IC + k] * w[(size_t)k * OC + o];
            out[(size_t)r * OC + o] = s;
        }
}

/* out[r, 0..3] = h[r] . wte[0..3] for rows r < rows (out has row stride V):
 * four vocabulary rows at a time, so each row of wte is read once per tile. */
static inline __attribute__((always_inline)) void
logit_tile(float *out, const float *h, const float *wte, int rows, int C, int V)
{
    vf16 acc[4][4];
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < 4; i++)
            acc[r][i] = (vf16){0};
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        vf16 w0, w1, w2, w3, x;
        VLOAD(w0, wte + c);
        VLOAD(w1, wte + C + c);
        VLOAD(w2, wte + 2 * C + c);
        VLOAD(w3, wte + 3 * C + c);
        for (int r = 0; r < rows; r++) {
            VLOAD(x, h + (size_t)r * C + c);
            VFMA(acc[r][0], x, w0);
            VFMA(acc[r][1], x, w1);
            VFMA(acc[r][2], x, w2);
            VFMA(acc[r][3], x, w3);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < 4; i++) {
            float s = vsum(&acc[r][i]);
            for (int cc = c; cc < C; cc++)
                s += h[(size_t)r * C + cc] * wte[(size_t)i * C + cc];
            out[(size_t)r * V + i] = s;
        }
}

static void logit_rows(float *out, const float *h, const float *wte, int rows, int C, int V)
{
    switch (rows) {
    case 1:
        logit_tile(out, h, wte, 1, C, V);
        break;
    case 2:
        logit_tile(out, h, wte, 2, C, V);
        break;
    case 3:
        logit_tile(out, h, wte, 3, C, V);
        break;
    default:
        logit_tile(out, h, wte, 4, C, V);
        break;
    }
}

void op_logits_fwd(float *out, const float *hidden, const float *wte, int N, int V, int C)
{
    int blocks = V / 4;
#pragma omp parallel for schedule(static) if ((long)N * V * C > PAR_MIN)
    for (int b = 0; b < blocks; b++)
        for (int r0 = 0; r0 < N; r0 += 4)
            logit_rows(out + (size_t)r0 * V + 4 * b, hidden + (size_t)r0 * C,
                       wte + (size_t)4 * b * C, N - r0 < 4 ? N - r0 : 4, C, V);
    for (int v = blocks * 4; v < V; v++)
        for (int r = 0; r < N; r++) {
            float s = 0.0f;
            for (int c = 0; c < C; c++)
                s += hidden[(size_t)r * C + c] * wte[(size_t)v * C + c];
            out[(size_t)r * V + v] = s;
        }
}

void op_logits_fwd_ref(float *out, const float *hidden, const float *wte, int N, int V, int C)
{
    for (int r = 0; r < N; r++)
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += (double)hidden[(size_t)r * C + c] * wte[(size_t)v * C + c];
            out[(size_t)r * V + v] = (float)s;
        }
}

void op_softmax_fwd(float *probs, float *lse, const float *logits, float scale, int N, int V)
{
#pragma omp parallel for if ((long)N * V > PAR_MIN)
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        float *p = probs + (size_t)i * V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++)
            mx = z[j] > mx ? z[j] : mx;
        mx *= scale; /* scale > 0 keeps the arg max */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            p[j] = fexp(scale * z[j] - mx);
            sum += p[j];
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < V; j++)
            p[j] *= inv;
        lse[i] = mx + logf(sum);
    }
}

void op_softmax_fwd_ref(float *probs, float *lse, const float *logits, float scale, int N, int V)
{
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++)
            mx = (double)scale * z[j] > mx ? (double)scale * z[j] : mx;
        for (int j = 0; j < V; j++)
            sum += exp((double)scale * z[j] - mx);
        for (int j = 0; j < V; j++)
            probs[(size_t)i * V + j] = (float)(exp((double)scale * z[j] - mx) / sum);
        lse[i] = (float)(mx + log(sum));
    }
}
