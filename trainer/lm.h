/* lm: the language-modelling task that `plumb pretrain` and `plumb sft` run on the training loop
 * (trainer/train.h): one model, next-token loss, packed rows.
 *
 * Data is cut into units of at most seq + 1 tokens. Pretraining: the text is split into documents
 * at blank lines, each document gets <|endoftext|> appended and is cut into consecutive windows
 * of seq + 1 tokens (overlapping by one, so every token but the first is predicted). SFT: one
 * example is prompt tokens + response tokens + <|endoftext|>, cut to seq + 1 tokens if longer
 * (counted in `truncated`); targets are -1 wherever the predicted token belongs to the prompt, so
 * only response tokens (and the end token) carry loss. Each epoch visits the units in a new
 * random order (one RNG stream per data set, seeded from o->seed). Units are packed whole into
 * rows of seq positions: a unit of n tokens fills n - 1 positions with its own segment id (`seg`)
 * and positions from 0 (`pos`), so attention never crosses a unit boundary; a unit that does not
 * fit in what is left of a row starts the next row, and the rest of the row is padding
 * (<|endoftext|>, target -1, a segment of its own). With mix_corpus, row r of the run is a corpus
 * row when floor((r + 1) * mix_frac) > floor(r * mix_frac), whatever the batch shape, so that
 * grad_accum 2 x batch B trains on the same rows as batch 2B. The held-out set (eval_data, or
 * the last eval_frac of data: of the text, cut at a line start, or of the examples) is packed the
 * same way in file order, at most eval_rows rows; its values are "eval/loss" (mean per target)
 * and "eval/ppl".
 *
 * Across ranks (trainer/dist.h) batch is each rank's: a micro-batch packs ranks x batch rows,
 * rank k trains on rows k * batch .. k * batch + batch - 1 of it, so N ranks at batch B train on
 * the rows one process does at batch N x B; the held-out batches are shared out by rank. */
#ifndef LM_H
#define LM_H

#include "trainer/train.h"

#include "model/gpt.h"
#include "model/pl.h"
#include "model/tok.h"

#include <stdbool.h>
#include <stdint.h>

enum lm_kind { LM_PRETRAIN = 1, LM_SFT = 2 };

struct lm_opts {
    enum lm_kind kind;
    const char *model;       /* starting model folder (plumb init, or a pretrained model) */
    const char *data;        /* pretrain: text; sft: JSONL or CSV {"prompt", "response"} */
    const char *eval_data;   /* held-out set in data's format; NULL: the tail of data */
    double eval_frac;        /* share of data held out when eval_data is NULL (0.05) */
    const char *mix_corpus;  /* sft: plain text mixed into the batches; NULL: none */
    double mix_frac;         /* share of rows taken from mix_corpus (0.25) */
    double epochs;           /* passes over data when train.steps is 0 (1) */
    int batch;               /* rows per micro-batch (16) */
    int seq;                 /* tokens per row; 0: the model's context */
    int eval_rows;           /* rows of the held-out set used, at most (256) */
    uint64_t seed;           /* data order (1337) */
    bool skip_bad_lines;     /* skip and count malformed records instead of failing */
    struct train_opts train; /* out, steps (0: from epochs), grad_accum, ... */
    struct train_optim optim;
};

/* The defaults above and those of train_opts_default and train_optim_default. */
void lm_opts_default(struct lm_opts *o);

/* A tokenised data set, cut into units. */
struct lm_units {
    int *ids; /* [n_ids] every unit's tokens, one after another */
    size_t n_ids, cap_ids;
    size_t *start; /* [n] first token of each unit in ids */
    int *len;      /* [n] tokens in each unit, 2 .. seq + 1 */
    int *prompt;   /* [n] leading tokens of each unit that are never predicted (SFT prompt) */
    size_t n, cap;
};

/* A cursor over a units set: a new random order each epoch. The state words are what a
 * checkpoint keeps. */
struct lm_stream {
    const struct lm_units *units;
    struct train_order order; /* a new random order of the units each epoch */
};

struct lm_task {
    enum lm_kind kind;
    int B, T, accum, eos;
    int rank, ranks; /* dist_rank() and dist_size() at lm_init */
    float mix_frac;
    struct lm_units train, eval, mix;
    struct lm_stream data, corpus;
    uint64_t rows[1]; /* training rows packed so far: places the corpus rows */
    /* The micro-batches of the current step: [accum * ranks * B * T] each, micro-batch i at
     * i * ranks * B * T, this rank's rows rank * B * T after that. */
    int *tokens, *targets, *pos, *seg;
    /* The packed held-out set: [eval_rows * T] each. */
    int *eval_tokens, *eval_targets, *eval_pos, *eval_seg;
    int n_eval_rows;
    long epoch_rows; /* rows one pass over the training units fills, packed in file order */
    long skipped;    /* malformed records skipped (skip_bad_lines) */
    long truncated;  /* examples cut to seq + 1 tokens */
    const struct lm_opts *o;
    struct train_var vars[5];
    int n_vars;
};

/* Load and tokenise o's data with tok for a model of context n_positions and allocate every
 * buffer of the task (t->B = o->batch, t->T = o->seq or n_positions, t->accum =
 * o->train.grad_accum); o must outlive t. Bad records fail with io.h's "PATH:LINE: field
 * 'NAME': ..." messages, or are skipped and counted in t->skipped under o->skip_bad_lines. t is
 * releasable on failure. Errors: PL_EINVAL (seq beyond the context; nothing to train on after
 * cutting, which for SFT says how many examples lost their whole response to the cut),
 * PL_EFORMAT, PL_EIO, PL_ENOTFOUND, PL_ENOMEM. */
int lm_init(struct lm_task *t, const struct tok *tok, const struct lm_opts *o, int n_positions,
            struct pl_err *err);
void lm_release(struct lm_task *t);

/* The task view of t (t must outlive task): label "pretrain" or "sft", one model. */
void lm_as_task(struct lm_task *t, struct train_task *task);

/* o->train.steps, or the steps o->epochs passes over the training rows take (rows counted by
 * packing the units in file order). */
long lm_steps(const struct lm_task *t, const struct lm_opts *o);

/* Micro-batch i of the current step (after task.next) as a gpt_batch with targets, pos, seg. */
void lm_batch(const struct lm_task *t, int micro, struct gpt_batch *b);

struct lm_result {
    struct train_result train;
    long skipped, truncated; /* as in struct lm_task */
};

/* The whole `plumb pretrain` / `plumb sft`: load o->model (trainable) and its tokenizer, the
 * data, and train_run into o->train.out. Errors: PL_EINVAL (a tokenizer larger than the model's
 * vocabulary), and those of lm_init and train_run. */
int lm_run(const struct lm_opts *o, struct lm_result *res, struct pl_err *err);

#endif
