/* train: the one training loop of plumb (DESIGN.md sections 1, 6 and 9).
 *
 * train_run owns what every training stage shares: AdamW with linear warmup then cosine decay,
 * gradient clipping and accumulation, held-out evaluation every N steps, checkpoints, exact
 * resume, the progress display, run.json and metrics.jsonl. It trains a set of models (struct
 * train_model, each with its own optimizer settings and output folder: PPO's policy and value)
 * on a task (struct train_task) that decides what is learned: language modelling (trainer/lm.h),
 * Bradley-Terry, PPO, DPO. Models a task only reads (DPO's frozen reference, a reward model)
 * belong to the task, not to the loop.
 *
 * The run folder (train_opts.out) holds
 * - run.json: the task's label as "command", the task's fields, the loop's options, each model's
 *   optimizer settings, folder and parameter count, the thread count, the plumb version;
 * - metrics.jsonl: one object a step: "step", "time", "train/loss", each model's "lr" and
 *   "grad_norm" (as "NAME/lr", "NAME/grad_norm" for a named model), "tokens_per_s", the task's
 *   metrics, "train/skipped_steps" once a step was skipped, and the task's held-out values on
 *   evaluation steps; step 0 holds the evaluation before training;
 * - state.safetensors: each model's weights and AdamW moments, the step, the schedule's horizon,
 *   the task's state, the length of metrics.jsonl, and the resume keys in its metadata.
 * Each model's folder gets config.json and model.safetensors at every checkpoint and its tokenizer
 * files at the first one of each call, which also writes run.json: before it, nothing of the run
 * but metrics.jsonl exists. Every
 * file is written atomically and state.safetensors last, so a kill at any moment leaves a
 * checkpoint from which a resumed run reaches, bit for bit, the weights an uninterrupted run
 * would have, given the same thread count (the engine's parallel sums depend on it). */
#ifndef TRAIN_H
#define TRAIN_H

#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "model/tok.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* One model's optimizer: AdamW (decoupled weight decay, none on LayerNorm weights and biases),
 * linear warmup then a cosine down to lr * min_lr_frac, gradient clipping. */
struct train_optim {
    float lr;                              /* peak learning rate (3e-4) */
    float min_lr_frac;                     /* final rate as a share of lr (0.1) */
    long warmup;                           /* linear warmup steps (100) */
    float weight_decay, beta1, beta2, eps; /* (0.1, 0.9, 0.95, 1e-8) */
    float clip;                            /* gradient L2 norm limit; 0: none (1.0) */
};

/* The defaults above. */
void train_optim_default(struct train_optim *o);

/* Learning rate for the step that takes a model from `step` to step + 1 in a run whose schedule
 * ends at step `horizon`: lr * (step + 1) / warmup during warmup, then a cosine from lr down to
 * lr * min_lr_frac at step horizon - 1, and that final rate after it (an extended run). */
float train_lr(const struct train_optim *o, long horizon, long step);

/* A model the loop trains. */
struct train_model {
    /* NULL for the only model of a run; else a short unique name ("policy", "value") that
     * prefixes its state tensors, metrics ("value/lr") and resume keys ("value.lr"). */
    const char *name;
    struct gpt *m;         /* trainable; borrowed */
    const struct tok *tok; /* written into out with the model; NULL: none */
    const char *out;       /* folder the model is saved to at each checkpoint */
    struct train_optim optim;
};

/* Named numbers a task reports: a step's metrics ("rm/accuracy", "objective/kl") or held-out
 * values ("eval/loss", "eval/ppl"), in the order they are written. Names are borrowed and must
 * live as long as the run (string literals). */
#define TRAIN_MAX_VALUES 32
struct train_values {
    int n;
    const char *name[TRAIN_MAX_VALUES];
    double value[TRAIN_MAX_VALUES];
};
void train_values_add(struct train_values *v, const char *name, double value);

/* One optimizer step as the task sees it. */
struct train_step {
    long index;     /* steps taken before this one */
    int n_micro;    /* micro-batches in the step (train_opts.grad_accum) */
    double *weight; /* [n_micro], set by next: loss terms of each micro-batch */
    long tokens;    /* set by next: positions processed, for tokens/s */
    bool skip;      /* set by next or backward: no update this step (PPO's ratio guard) */
    /* Set by next or backward: no metrics.jsonl line for this step (PPO writes one line an
     * iteration, on the last of its minibatch steps), unless it is an evaluation step. */
    bool quiet;
    struct train_values metrics; /* added by next or backward */
    struct io_progress *log;     /* for the task's own log lines (io_progress_log); NULL: none */
};

/* A piece of a task's state that a checkpoint holds (data cursor, RNG state, a KL coefficient),
 * saved as the tensor "task.NAME" (U64 or F64) and written back before a resumed run's first
 * step. */
enum train_var_type { TRAIN_U64, TRAIN_F64 };
struct train_var {
    const char *name;
    enum train_var_type type;
    void *data; /* uint64_t[n] or double[n], borrowed */
    int n;
};

/* A data order for tasks: a new random permutation of n items each epoch, drawn from an RNG
 * whose state at the epoch's start, with the cursor, is all a checkpoint needs (expose rng and
 * cursor as train_vars), so a resumed run draws the same order. Zero-initialise; release. */
struct train_order {
    size_t n;
    size_t *perm;       /* [n] this epoch's order, once drawn */
    uint64_t rng[4];    /* RNG state at the start of the epoch */
    uint64_t cursor[2]; /* epoch, index in perm of the next item */
    struct pl_rng live; /* the RNG after this epoch's shuffle */
    long perm_epoch;    /* epoch perm was drawn for; -1: none yet */
};
/* Errors: PL_ENOMEM. o is releasable on failure. */
int train_order_init(struct train_order *o, size_t n, uint64_t seed, struct pl_err *err);
void train_order_release(struct train_order *o);
/* This epoch's permutation (drawn on first use); the caller reads from perm[cursor[1]] on and
 * advances cursor[1], calling train_order_wrap when it reaches n. */
const size_t *train_order_perm(struct train_order *o);
/* Move to the next epoch. */
void train_order_wrap(struct train_order *o);
/* The next item, crossing into the next epoch when this one runs out (n > 0). */
size_t train_order_next(struct train_order *o);

/* Named option values: a task's resume keys and the fields it adds to run.json. Names and values
 * are copied. Zero-initialise; train_fields_release. */
struct train_fields {
    struct pl_buf b; /* per field: name, '\0', kind, value, '\0' */
    int n;
};
void train_field_str(struct train_fields *f, const char *name, const char *value); /* NULL: null */
void train_field_int(struct train_fields *f, const char *name, long long value);
void train_field_u64(struct train_fields *f, const char *name, uint64_t value);
void train_field_bool(struct train_fields *f, const char *name, bool value);
/* The shortest decimal that reads back as exactly value (as a double, or as a float). */
void train_field_real(struct train_fields *f, const char *name, double value);
void train_field_float(struct train_fields *f, const char *name, float value);
void train_fields_release(struct train_fields *f);

/* What is learned. Each step calls next once, then backward for each micro-batch; eval runs at
 * step 0 and on evaluation steps. `models` is the set given to train_run, in its order. */
struct train_task {
    const char *label; /* "sft": log lines and run.json's "command" */
    void *ctx;
    /* Prepare the step's micro-batches, advancing the data cursor. */
    int (*next)(void *ctx, struct train_step *st, struct pl_err *err);
    /* Forward and backward of micro-batch `micro`: gradients ACCUMULATED into each model's
     * grads scaled by `scale` (weight[micro] / the step's total weight, so that the step
     * minimises the mean over all terms); *loss is the micro-batch's mean loss. */
    int (*backward)(void *ctx, struct train_model *models, struct train_step *st, int micro,
                    float scale, double *loss, struct pl_err *err);
    /* Held-out values, the headline first ("eval/loss"). NULL: no held-out set. */
    int (*eval)(void *ctx, struct train_model *models, struct train_values *out,
                struct pl_err *err);
    /* keys: options that shape the run, which a resume must match (the loop adds "task", the
     * label, "grad_accum" and each model's optimizer settings); info: other run.json fields
     * (input paths). NULL: none. */
    void (*fields)(void *ctx, struct train_fields *keys, struct train_fields *info);
    /* The progress display's note after a step (PPO: iteration, reward, KL) into buf[n]; NULL:
     * the loop's own (loss, learning rate, gradient norm, tokens/s). */
    void (*note)(void *ctx, const struct train_step *st, char *buf, size_t n);
    struct train_var *vars; /* [n_vars] */
    int n_vars;
};

struct train_opts {
    const char *out;     /* run folder, created if missing */
    long steps;          /* step to reach */
    int grad_accum;      /* micro-batches per step (1) */
    long eval_every;     /* evaluate every N steps, at step 0 and at the end; 0: never (100) */
    long save_every;     /* checkpoint every N steps; the last step always (500) */
    bool resume;         /* continue from out/state.safetensors when it exists */
    bool force;          /* train into non-empty folders, removing an older run's files */
    const char *version; /* plumb's version, for run.json */
    FILE *log;           /* progress display and log lines (stderr); NULL: silent */
    /* Called after each step (and its checkpoint, if any) with the step count reached; a nonzero
     * return ends the run at once, as a kill would, keeping the last checkpoint. NULL: none. */
    int (*on_step)(void *ctx, long step);
    void *on_step_ctx;
};

/* The defaults above. */
void train_opts_default(struct train_opts *o);

struct train_result {
    long start_step;    /* step the run started (or resumed) from */
    long steps;         /* step reached */
    long skipped_steps; /* steps the task skipped, over the whole run */
    bool stopped;       /* on_step ended the run early */
    double train_loss;  /* loss of the last step (NaN if none ran) */
    double eval_first;  /* headline held-out value at step 0 (NaN without evaluation) */
    double eval_last;   /* headline held-out value at the last evaluation (NaN without) */
    double seconds;     /* wall time of this call */
};

/* Train models[0, n_models) on task up to step o->steps, writing o->out and each model's folder
 * as described at the top.
 *
 * Folders: without o->resume or o->force, a non-empty run or model folder is refused (PL_EINVAL);
 * with o->force an older run's state.safetensors, metrics.jsonl and run.json there are removed
 * first. A run that fails before its first checkpoint removes what it created (metrics.jsonl,
 * the folders it made), so no metrics without a model stay behind.
 *
 * Resume: with o->resume and an out/state.safetensors, every model's weights and moments, the
 * step and the task's vars come from it and metrics.jsonl is cut back to that step (a cut-short
 * last line dropped). The resume keys must match: a difference is PL_EINVAL naming the option.
 * o->steps may differ: a larger value extends a finished or unfinished run, a value below the
 * checkpoint's step is PL_EINVAL. The learning-rate schedule keeps the horizon of the run's
 * first call (its o->steps): warmup and cosine continue unchanged and steps past that horizon
 * train at the final rate (trainer/README.md says why).
 *
 * A step the task skips updates nothing and is counted. A non-finite loss or gradient norm on a
 * step that is not skipped stops the run before the update with PL_ENUMERIC, naming the step
 * and the last good checkpoint, which stays as it was. Errors: PL_EINVAL (bad options or
 * folders), PL_EIO (naming the path), PL_EFORMAT or PL_ENOTFOUND (a damaged state file),
 * PL_ENUMERIC, PL_ENOMEM, and whatever the task returns. res is filled on every return. */
int train_run(struct train_model *models, int n_models, const struct train_task *task,
              const struct train_opts *o, struct train_result *res, struct pl_err *err);

#endif
