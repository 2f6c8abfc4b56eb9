/* choice: the log-likelihood of continuations of contexts, as lm-evaluation-harness's
 * loglikelihood requests compute it, the primitive of every multiple-choice suite.
 *
 * Tokens, as the harness's _encode_pair: trailing whitespace of the context moves to the front
 * of the continuation; the continuation's tokens are those of encode(context + continuation)
 * after the first len(encode(context)) tokens; an empty context is the end-of-text token alone
 * and the continuation is then encoded by itself. A request whose context and continuation
 * hold more than the model's context n_positions + 1 tokens keeps the last n_positions + 1 (the
 * input is the first n_positions of them), as the harness cuts from the left. A continuation
 * longer than n_positions (the harness fails there) has its last n_positions tokens scored,
 * the others serving as their context; ntok then counts the scored tokens.
 *
 * Two ways to the same numbers (equal to rounding, tests/eval-choice.c: 1e-5):
 * - EVAL_SCORE_KV (the default): each context is run once into a KV-cache slot, forked into a
 *   slot per continuation, and the continuations of many requests are scored in one pass
 *   (model/kv.h). Continuations whose cut context differs (only when a request is cut) get
 *   their own context slot.
 * - EVAL_SCORE_FULL: each context + continuation is run whole, `batch` sequences a forward.
 *
 * A query's repeated continuations are scored once. Everything is allocated at init; scoring
 * allocates only its token buffers. */
#ifndef EVAL_CHOICE_H
#define EVAL_CHOICE_H

#include "eval/results.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/kv.h"
#include "model/pl.h"
#include "model/tok.h"

#include <stdbool.h>
#include <stdio.h>

enum eval_score_mode { EVAL_SCORE_KV, EVAL_SCORE_FULL };

/* One request group: the continuations of one context. */
struct eval_query {
    const char *context;      /* "" for none: the end-of-text token is the context */
    const char *const *conts; /* [n] continuations, each non-empty */
    int n;
};

struct eval_scorer {
    struct gpt m; /* owned: loaded for the mode */
    struct tok t;
    int mode;
    int batch;
    struct kv_cache kv; /* EVAL_SCORE_KV */
    long tokens;        /* tokens run through the model so far */
    int stem;           /* tokens of the shared context prefix held in the last KV slot */
    /* Internal buffers of a batch. */
    struct tok_buf enc;
    int *ibuf;
    size_t ibuf_cap;
    float *fbuf;
    size_t fbuf_cap;
};

/* Load model folder dir for scoring in `mode` with `batch` sequences (KV slots, or rows of a
 * full forward) at once. s is releasable on failure. Errors: those of ckpt_load_model and
 * kv_init (PL_ENOMEM), PL_EINVAL for a batch below 2. */
int eval_scorer_load(struct eval_scorer *s, const char *dir, int mode, int batch,
                     struct pl_err *err);
void eval_scorer_release(struct eval_scorer *s);

/* ll[i] = the summed log-probability of the i-th continuation over q[0, n) (q[0]'s first, then
 * q[1]'s, ...) given its context, ntok[i] its number of scored tokens (ntok may be NULL).
 * `progress` (may be NULL) is advanced by one per query. Errors: PL_EINVAL "query N,
 * continuation J: no tokens" for an empty continuation; PL_ENOMEM. */
int eval_score(struct eval_scorer *s, const struct eval_query *q, int n, double *ll, int *ntok,
               struct io_progress *progress, struct pl_err *err);

/* ---- a suite's questions ---- */

/* The queries of a suite and the text they point to. */
struct eval_qset {
    struct eval_query *q; /* [n] */
    const char **conts;   /* every continuation, query after query */
    int n, n_conts;
    struct io_arena arena;
};
/* Room for n queries of n_conts continuations in all (s zeroed first). Errors: PL_ENOMEM. */
int eval_qset_alloc(struct eval_qset *s, int n, int n_conts, struct pl_err *err);
/* Append a query: context (already in the arena; NULL reads as out of memory) and the
 * continuations delim + choices[j], j < k. Errors: PL_ENOMEM. */
int eval_qset_add(struct eval_qset *s, const char *context, const char *const *choices, int k,
                  const char *delim, struct pl_err *err);
void eval_qset_release(struct eval_qset *s);
/* x + y + z (y, z may be NULL) copied into a; NULL when out of memory. */
const char *eval_cat3(struct io_arena *a, const char *x, const char *y, const char *z);

/* Load c->model and score queries q[0, n) (n_conts continuations in all) with a progress
 * display labelled `label` on c->progress: *ll and *ntok [n_conts] are new arrays (the
 * caller's: pl_free), set even on failure. Errors: those of eval_scorer_load and eval_score. */
int eval_score_set(const struct eval_common *c, const char *label, const struct eval_query *q,
                   int n, int n_conts, double **ll, int **ntok, struct pl_err *err);

#endif
