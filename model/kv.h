/* kv: the KV cache: one frozen GPT run over new tokens of many sequences at once (DESIGN.md
 * section 9), for generation (model/sample.h) and for scoring many continuations of one
 * shared context.
 *
 * A cache holds the keys and values of up to max_seqs sequences ("slots") and runs the model
 * over new tokens of any set of slots in one pass: whole prompts (prefill) and single tokens
 * (decode) alike, so a batch never waits for its slowest member. kv_fork copies a slot into
 * another, so the K samples of a prompt, the choices of a multiple-choice question or the K
 * responses of a PPO prompt share one prefill of their context.
 *
 * Batch invariance: every row of a pass, prefill or decode, goes through the same kernels in
 * one summation order whatever else the pass holds (plumb's row-tiled kernels, never BLIS,
 * whose order depends on the shape of the whole product). A sequence's logits and log-probs
 * are therefore the same bits alone or in any batch, fed in one pass or split over several.
 * They equal a full forward's (gpt_forward, score_seqs) to rounding, not bit for bit.
 *
 * Scoring continuations of a context P (n tokens) with kv_extend_logp: extend one slot with
 * P[0..n-1) once, kv_fork it into a slot per continuation x[0..m), then extend each slot with
 * the tokens P[n-1], x[0..m-1) and the targets x[0..m): logp then holds log p(x[j] | P, x[<j]).
 *
 * Everything is allocated at init; no pass allocates. */
#ifndef KV_H
#define KV_H

#include "gpt.h"
#include "pl.h"

#include <stddef.h>

struct kv_cache {
    const struct gpt *m; /* borrowed: outlives the cache; only its weights are read */
    int max_seqs, max_len, max_rows;
    /* [max_seqs] tokens each slot holds. Lowering len[s] forgets the tokens past it (0 empties
     * the slot); raising it is not allowed. */
    int *len;
    /* [max_seqs, V]: after an extend, row i holds the logits that follow the last new token of
     * the i-th sequence passed. */
    float *logits;
    long rows; /* token rows run through the model so far */
    /* Internal. */
    float *kv; /* [L][k|v][max_seqs][NH], keys [C/NH][max_len], values [max_len][C/NH] */
    size_t kv_floats;
    float *work; /* activations of max_rows rows */
    size_t work_floats;
    float *chunk; /* [chunk_rows, V]: logits of the rows kv_extend_logp scores at a time */
    int chunk_rows;
    int *ibuf; /* [max_rows] positions, [max_seqs] tokens each slot held before */
    int threads;
};

/* Allocate for m (frozen or not: its activations are not used), max_seqs slots of max_len
 * tokens (<= n_positions), at most max_rows new tokens per extend (>= max_seqs). c is
 * releasable on failure. Errors: PL_EINVAL (sizes), PL_ENOMEM. */
int kv_init(struct kv_cache *c, const struct gpt *m, int max_seqs, int max_len, int max_rows,
            struct pl_err *err);
/* Safe on a zeroed struct and twice. */
void kv_release(struct kv_cache *c);

/* Append count[i] >= 1 tokens to slot[i] for i < n (distinct slots) and run the model over
 * them in one pass; tokens holds them all, sequence after sequence (sum of count rows). Fills
 * c->logits rows 0..n-1. Errors (nothing changes): PL_EINVAL for a bad slot, a token id
 * outside the vocabulary, more than max_rows tokens, or a slot that would pass max_len. */
int kv_extend(struct kv_cache *c, int n, const int *slot, const int *count, const int *tokens,
              struct pl_err *err);

/* kv_extend that also scores every new row: for row r (laid out as tokens), logp[r] = log
 * p(targets[r] | the slot's tokens up to and including tokens[r]), or 0 where targets[r] < 0.
 * Also PL_EINVAL for a target >= the vocabulary size. */
int kv_extend_logp(struct kv_cache *c, int n, const int *slot, const int *count, const int *tokens,
                   const int *targets, float *logp, struct pl_err *err);

/* Make slot dst hold exactly what slot src holds (dst != src, both < max_seqs). */
void kv_fork(struct kv_cache *c, int dst, int src);

#endif
