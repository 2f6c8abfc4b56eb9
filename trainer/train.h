/* train: the one training loop of plumb (DESIGN.md sections 1, 6 and 9) and the language-modelling
 * task that `plumb pretrain` and `plumb sft` run on it.
 *
 * train_run owns everything the training stages share: AdamW with linear warmup then cosine decay,
 * gradient clipping, gradient accumulation, held-out loss and perplexity every N steps,
 * checkpoints, exact resume, the progress display and metrics.jsonl. What is learned is a
 * struct train_task: language modelling here; Bradley-Terry, PPO and DPO plug in the same way.
 *
 * The output folder is a model folder (config.json, model.safetensors, tokenizer files: ckpt_load
 * and tok_load read it) plus run.json (every option, the plumb version), metrics.jsonl (one
 * object a step: "step", "time", "train/loss", "lr", "grad_norm", "tokens_per_s", and
 * "eval/loss", "eval/ppl" on evaluation steps; step 0 holds the evaluation before training) and
 * state.safetensors (weights, AdamW moments, step, the task's data cursor and RNG states, the
 * length of metrics.jsonl). Every file is written atomically and state.safetensors last, so a
 * kill at any moment leaves a checkpoint from which --resume reproduces, bit for bit, the weights
 * an uninterrupted run would have written, given the same thread count (the engine's parallel
 * sums depend on it). */
#ifndef TRAIN_H
#define TRAIN_H

#include "model/gpt.h"
#include "model/pl.h"
#include "model/tok.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum train_kind { TRAIN_PRETRAIN = 1, TRAIN_SFT = 2 };

struct train_opts {
    enum train_kind kind;
    const char *model;      /* starting model folder (plumb init, or a pretrained model) */
    const char *data;       /* pretrain: text; sft: JSONL or CSV {"prompt", "response"} */
    const char *eval_data;  /* held-out set in data's format; NULL: the tail of data */
    double eval_frac;       /* share of data held out when eval_data is NULL (0.05) */
    const char *mix_corpus; /* sft: plain text mixed into the batches; NULL: none */
    double mix_frac;        /* share of rows taken from mix_corpus (0.25) */
    const char *out;        /* output folder, created if missing */

    long steps;        /* optimizer steps; 0: as many as `epochs` passes over data take */
    double epochs;     /* passes over data when steps is 0 (1) */
    int batch;         /* rows per micro-batch (16) */
    int seq;           /* tokens per row; 0: the model's context */
    int grad_accum;    /* micro-batches per optimizer step (1) */
    float lr;          /* peak learning rate (3e-4) */
    float min_lr_frac; /* final learning rate as a share of lr (0.1) */
    long warmup;       /* linear warmup steps (100) */
    float weight_decay, beta1, beta2, eps; /* AdamW (0.1, 0.9, 0.95, 1e-8) */
    float clip;                            /* gradient L2 norm limit; 0: none (1.0) */

    long eval_every;     /* evaluate every N steps, at step 0 and at the end; 0: never (100) */
    int eval_rows;       /* rows of the held-out set used, at most (256) */
    long save_every;     /* checkpoint every N steps; the last step always (500) */
    long log_every;      /* plain log line every N steps when log is not a terminal (10) */
    uint64_t seed;       /* data order (1337) */
    bool resume;         /* continue from out/state.safetensors when it exists */
    bool skip_bad_lines; /* skip and count malformed records instead of failing */

    const char *version; /* plumb's version, for run.json */
    FILE *log;           /* progress display and log lines (stderr); NULL: silent */
    /* Called after each step (and its checkpoint, if any) with the step count reached; a nonzero
     * return ends the run at once, as a kill would, keeping the last checkpoint. NULL: none. */
    int (*on_step)(void *ctx, long step);
    void *on_step_ctx;
};

/* The defaults above. */
void train_opts_default(struct train_opts *o);

/* Learning rate for the step that takes the model from `step` to step + 1: lr * (step + 1) /
 * warmup during warmup, then a cosine from lr down to lr * min_lr_frac at the last step. */
float train_lr(const struct train_opts *o, long step);

/* A piece of a task's state that a checkpoint must hold (data cursor, RNG state), saved as the
 * U64 tensor "task.<name>" and written back before the first step of a resumed run. */
struct train_var {
    const char *name;
    uint64_t *words; /* [n], borrowed */
    int n;
};

/* What is learned. Each optimizer step calls next once, then backward for each of the
 * grad_accum micro-batches; eval runs on evaluation steps. */
struct train_task {
    void *ctx;
    /* Prepare the micro-batches of the next step, advancing the data cursor: weight[i] is the
     * number of loss terms of micro-batch i, *tokens the positions processed (for tokens/s). */
    int (*next)(void *ctx, double *weight, long *tokens, struct pl_err *err);
    /* Forward and backward of micro-batch i, gradients ACCUMULATED into m->grads scaled by
     * `scale` (weight[i] / the step's total weight, so the step minimises the mean over all
     * terms); *loss is the micro-batch's mean loss. */
    int (*backward)(void *ctx, struct gpt *m, int micro, float scale, double *loss,
                    struct pl_err *err);
    /* Mean held-out loss. NULL: the task has no held-out set. */
    int (*eval)(void *ctx, struct gpt *m, double *loss, struct pl_err *err);
    struct train_var *vars; /* [n_vars] */
    int n_vars;
};

struct train_result {
    long start_step;   /* step the run started (or resumed) from */
    long steps;        /* step reached */
    bool stopped;      /* on_step ended the run early */
    double train_loss; /* loss of the last step (NaN if none ran) */
    double eval_first; /* held-out loss at step 0 (NaN without evaluation) */
    double eval_last;  /* held-out loss at the last evaluation (NaN without evaluation) */
    double seconds;    /* wall time of this call */
    long skipped;      /* malformed records skipped (skip_bad_lines), set by train_lm */
    long truncated;    /* examples cut to seq + 1 tokens, set by train_lm */
};

/* Train m (trainable, max_batch and max_seq fitting the task) for o->steps steps of task, writing
 * o->out as described at the top; tok's files are written there first. With o->resume and an
 * out/state.safetensors, the weights, moments, step and task vars come from it, metrics.jsonl is
 * cut back to that step, and options that shape the run (steps, batch, seq, grad_accum, the
 * schedule and AdamW settings, seed, mix_frac, eval_frac, kind) must match: a difference is
 * PL_EINVAL naming the option. A non-finite loss or gradient norm stops the run before the
 * update with PL_ENUMERIC, naming the step and the last good checkpoint, which stays as it was.
 * Errors: PL_EINVAL (bad options), PL_EIO, PL_EFORMAT or PL_ENOTFOUND (a damaged state file),
 * PL_ENUMERIC, PL_ENOMEM, and whatever the task returns. res is filled on every return. */
int train_run(struct gpt *m, const struct tok *tok, const struct train_task *task,
              const struct train_opts *o, struct train_result *res, struct pl_err *err);

/* ---- language modelling: pretraining and SFT ----
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
 * same way in file order, at most eval_rows rows. */

/* A tokenised data set, cut into units. */
struct train_units {
    int *ids; /* [n_ids] every unit's tokens, one after another */
    size_t n_ids, cap_ids;
    size_t *start; /* [n] first token of each unit in ids */
    int *len;      /* [n] tokens in each unit, 2 .. seq + 1 */
    int *prompt;   /* [n] leading tokens of each unit that are never predicted (SFT prompt) */
    size_t n, cap;
};

/* A cursor over a units set: a new random order each epoch. The state words are what a
 * checkpoint keeps. */
struct train_stream {
    const struct train_units *units;
    size_t *perm;       /* [units->n] this epoch's order */
    uint64_t rng[4];    /* data-order RNG state at the start of the epoch */
    uint64_t cursor[2]; /* epoch, index in perm of the next unit */
    struct pl_rng live; /* the RNG after this epoch's shuffle */
    long perm_epoch;    /* epoch perm was drawn for; -1: none yet */
};

struct train_lm {
    int B, T, accum, eos;
    float mix_frac;
    struct train_units train, eval, mix;
    struct train_stream data, corpus;
    uint64_t rows[1]; /* training rows packed so far: places the corpus rows */
    /* The micro-batches of the current step: [accum * B * T] each, micro-batch i at i * B * T. */
    int *tokens, *targets, *pos, *seg;
    /* The packed held-out set: [eval_rows * T] each. */
    int *eval_tokens, *eval_targets, *eval_pos, *eval_seg;
    int n_eval_rows;
    long epoch_rows; /* rows one pass over the training units fills, packed in file order */
    long skipped, truncated;
    struct train_var vars[5];
    int n_vars;
};

/* Load and tokenise o's data with tok for a model of context n_positions and allocate every
 * buffer of the task (t->B = o->batch, t->T = o->seq or n_positions). Bad records fail with
 * ds.h's "PATH:LINE: field 'NAME': ..." messages, or are skipped and counted in t->skipped
 * under o->skip_bad_lines. t is releasable on failure. Errors: PL_EINVAL (seq beyond the
 * context, empty data after cutting), PL_EFORMAT, PL_EIO, PL_ENOTFOUND, PL_ENOMEM. */
int train_lm_init(struct train_lm *t, const struct tok *tok, const struct train_opts *o,
                  int n_positions, struct pl_err *err);
void train_lm_release(struct train_lm *t);

/* The task view of t (t must outlive task). */
void train_lm_task(struct train_lm *t, struct train_task *task);

/* o->steps, or the steps o->epochs passes over the training rows take (rows counted by packing
 * the units in file order). */
long train_lm_steps(const struct train_lm *t, const struct train_opts *o);

/* Micro-batch i of the current step (after task.next) as a gpt_batch with targets, pos, seg. */
void train_lm_batch(const struct train_lm *t, int micro, struct gpt_batch *b);

/* The whole `plumb pretrain` / `plumb sft`: load o->model (trainable) and its tokenizer, the
 * data, and train_run. Errors: as train_lm_init and train_run. */
int train_lm(const struct train_opts *o, struct train_result *res, struct pl_err *err);

#endif
