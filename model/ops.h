/* ops: transformer layers, forward and backward (llm.c's conventions).
 *
 * Argument order: outputs, caches for backward, inputs, parameters, dims.
 * Shapes are in the comments; N is the number of token rows (B*T). Every
 * backward ACCUMULATES (+=) into its gradient outputs. Each fast op has a
 * plain-loop `_ref` twin used only by tests. None of them allocates. */
#ifndef OPS_H
#define OPS_H

#include <stdbool.h>

/* out[N,C] = wte[tokens[i]] + wpe[pos[i]] ; pos NULL means i % T. */
void op_embed_fwd(float *out, const int *tokens, const int *pos, const float *wte, const float *wpe,
                  int N, int T, int C);
void op_embed_bwd(float *dwte, float *dwpe, const float *dout, const int *tokens, const int *pos,
                  int N, int T, int C);

/* out[N,C] = (inp - mean) * rstd * w + b ; mean, rstd [N] are cached. */
void op_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp, const float *w,
                      const float *b, int N, int C, float eps);
void op_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                      const float *w, const float *mean, const float *rstd, int N, int C);
void op_layernorm_fwd_ref(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C, float eps);
void op_layernorm_bwd_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const float *mean, const float *rstd, int N, int C);

/* out[N,OC] = inp[N,IC] @ w[IC,OC] + bias[OC] (HF Conv1D layout; bias may be NULL). */
void op_matmul_fwd(float *out, const float *inp, const float *w, const float *bias, int N, int IC,
                   int OC);
/* A residual branch's output projection: out[N,OC] = res[N,OC] + bias[OC] + inp[N,IC] @ w[IC,OC],
 * the sum written straight into the residual stream (no pass for the bias, none for the add).
 * Backward: op_matmul_bwd with d out, and d res += d out. */
void op_matmul_residual_fwd(float *out, const float *res, const float *inp, const float *w,
                            const float *bias, int N, int IC, int OC);
void op_matmul_residual_fwd_ref(float *out, const float *res, const float *inp, const float *w,
                                const float *bias, int N, int IC, int OC);
/* dinp may be NULL (first layer input needs no gradient); dbias may be NULL. */
void op_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                   const float *w, int N, int IC, int OC);
void op_matmul_fwd_ref(float *out, const float *inp, const float *w, const float *bias, int N,
                       int IC, int OC);
void op_matmul_bwd_ref(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                       const float *w, int N, int IC, int OC);

/* Causal multi-head attention over qkv[B,T,3C] (q | k | v, heads of C/NH
 * contiguous inside each). att[B,NH,T,T] caches the probabilities (row i has
 * zeros past i). seg[B,T] (may be NULL): a query attends only to keys with
 * the same seg value, so packed documents never see each other. out[B,T,C].
 * The backward needs scratch of op_attention_scratch(T, threads) floats and
 * runs on at most `threads` threads. */
void op_attention_fwd(float *out, float *att, const float *qkv, const int *seg, int B, int T, int C,
                      int NH);
void op_attention_bwd(float *dqkv, float *scratch, int threads, const float *dout, const float *att,
                      const float *qkv, int B, int T, int C, int NH);
long op_attention_scratch(int T, int threads);
void op_attention_fwd_ref(float *out, float *att, const float *qkv, const int *seg, int B, int T,
                          int C, int NH);
void op_attention_bwd_ref(float *dqkv, const float *dout, const float *att, const float *qkv, int B,
                          int T, int C, int NH);

/* GELU, tanh approximation (HF "gelu_new"); out may be inp. */
void op_gelu_fwd(float *out, const float *inp, long n);
void op_gelu_fwd_ref(float *out, const float *inp, long n);

/* The MLP's bias and GELU in one pass over the product x[N,OC] (computed without bias):
 * pre = x + bias (in place: pre holds x on entry) and out = gelu(pre). */
void op_bias_gelu_fwd(float *pre, float *out, const float *bias, int N, int OC);
/* Its backward, in place: d[N,OC] holds d objective / d out on entry and d objective / d x
 * on exit; dbias[OC] += the column sums of the latter. pre is the forward's. */
void op_bias_gelu_bwd(float *d, float *dbias, const float *pre, int N, int OC);
void op_bias_gelu_fwd_ref(float *pre, float *out, const float *bias, int N, int OC);
void op_bias_gelu_bwd_ref(float *d, float *dbias, const float *pre, int N, int OC);

/* dst += src. */
void op_add_inplace(float *dst, const float *src, long n);

/* Softmax cross-entropy over logits[N,V]. For rows with targets[i] >= 0:
 * logp[i] = log softmax(logits[i])[targets[i]]; rows with targets[i] < 0
 * get logp 0. lse[N] caches log-sum-exp for the backward. */
void op_xent_fwd(float *logp, float *lse, const float *logits, const int *targets, int N, int V);
/* In place: logits[N,V] becomes d objective / d logits, given dlogp[N]
 * (d objective / d logp); rows with no target become zero. */
void op_xent_bwd(float *logits, const float *lse, const int *targets, const float *dlogp, int N,
                 int V);
void op_xent_fwd_ref(float *logp, float *lse, const float *logits, const int *targets, int N,
                     int V);

/* Row-wise log-softmax statistics for sampling and scoring: lse[N]. */
void op_logsumexp(float *lse, const float *logits, int N, int V);

/* ---- the KV cache (model/kv.c) ----
 *
 * These compute every row with one summation order, whatever N or the rest of the pass: a
 * row's result depends on its own inputs only, never on the rows beside it (batch invariance,
 * model/kv.h). None of them calls BLIS. */

/* Attention of new token rows over a KV cache. Sequence i (0 <= i < B) has
 * n[i] >= 1 new rows, consecutive in qkv [N,3C] and out [N,C] (N = sum of n,
 * sequences in order) at positions past[i] .. past[i]+n[i]-1. The new rows'
 * keys and values are first stored in the cache, then each row attends to
 * positions 0 .. its own. k is [slots, NH, C/NH, maxT] (keys transposed: a
 * decode row's scores are then an axpy per dimension, not a dot product per
 * key), v is [slots, NH, maxT, C/NH]; sequence i uses slot[i] (no two alike)
 * and past[i] + n[i] <= maxT. scratch holds
 * op_attention_kv_scratch(maxT, threads) floats; runs on at most `threads`. */
void op_attention_kv_fwd(float *out, float *k, float *v, float *scratch, int threads,
                         const float *qkv, const int *slot, const int *past, const int *n, int B,
                         int maxT, int C, int NH);
long op_attention_kv_scratch(int maxT, int threads);
void op_attention_kv_fwd_ref(float *out, float *k, float *v, const float *qkv, const int *slot,
                             const int *past, const int *n, int B, int maxT, int C, int NH);

/* op_matmul_fwd for the rows of a KV-cache pass, in tiles of 6 rows x 64 columns: BLIS's gemm
 * packs all of w on every call, so a one-row product ran at a fifth of memory bandwidth; this
 * streams w once. Its _ref twin is op_matmul_fwd_ref. */
void op_matmul_fwd_decode(float *out, const float *inp, const float *w, const float *bias, int N,
                          int IC, int OC);

/* LM head of a KV-cache pass: out[N,V] = hidden[N,C] @ wte[V,C]^T, streaming wte once. */
void op_logits_fwd(float *out, const float *hidden, const float *wte, int N, int V, int C);
void op_logits_fwd_ref(float *out, const float *hidden, const float *wte, int N, int V, int C);

/* probs[N,V] = softmax(scale * logits) and lse[N] = logsumexp(scale * logits)
 * per row (scale = 1 / temperature > 0). */
void op_softmax_fwd(float *probs, float *lse, const float *logits, float scale, int N, int V);
void op_softmax_fwd_ref(float *probs, float *lse, const float *logits, float scale, int N, int V);

#endif
