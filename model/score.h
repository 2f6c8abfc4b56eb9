/* score: batched log-likelihood of variable-length token sequences, the
 * primitive every evaluation, the reward model and PPO build on.
 *
 * Sequences are right-padded into one forward of up to m->opts.max_batch
 * rows; padding carries no target, so it changes nothing (a causal model
 * never lets a real token see the padding after it). */
#ifndef SCORE_H
#define SCORE_H

#include "gpt.h"
#include "pl.h"

/* Scratch for one batch, allocated once for the model's max batch shape. */
struct score_ctx {
    struct gpt *m;                /* borrowed */
    int *tokens, *targets, *last; /* [max_batch * max_seq], [.. ], [max_batch] */
};

int score_init(struct score_ctx *s, struct gpt *m, struct pl_err *err);
void score_release(struct score_ctx *s);

/* Score seqs[i][0 .. lens[i]) for i < n (n <= max_batch, 1 <= lens[i] <= max_seq;
 * more sequences take several calls): logp[i][t] = log p(seqs[i][t+1] | seqs[i][0..t])
 * for t < lens[i] - 1, and, when the model has a scalar head and head is not NULL,
 * head[i] = the head at each sequence's last token. logp[i] must hold lens[i] - 1
 * floats (none for a one-token sequence). logp may be NULL (only the head is wanted:
 * the LM head is not run); a head-only model never writes it.
 * Errors: PL_EINVAL (a bad length or token id, with the sequence's index). */
int score_seqs(struct score_ctx *s, const int *const *seqs, const int *lens, int n,
               float *const *logp, float *head, struct pl_err *err);

#endif
