/* rm: the reward model (DESIGN.md sections 6 and 9): a GPT with the scalar head (score.weight,
 * GPT2ForSequenceClassification), trained with the Bradley-Terry loss on preference groups
 * (datasets/ds.h) by the one training loop (trainer/train.h), normalised after training, and
 * used to evaluate and to score texts.
 *
 * Where the score is read, everywhere (training, `rm eval`, `rm score`, best-of-n, PPO): a
 * sequence is prompt tokens + response tokens + the end token (<|endoftext|>), built by rm_seq,
 * and the score is the head at that end token, the sequence's last real token, which rm_batch
 * alone places in a batch. A sequence longer than the context keeps its last `ctx` tokens: the
 * prompt is cut from the left so that the response and the end token fit (and the response's
 * start too only when the response alone is longer than the context); such cuts are counted.
 * Rows are right-padded with the end token after the last real token; attention is causal, so
 * padding, a row's place in the batch and the batch's size leave a sequence's score as it is.
 *
 * Scores: the raw head value is what training optimises; every reader reports the normalised
 * reward (head - reward_mean) / reward_std with the two numbers from the model's config.json
 * (rm_reward), which rm_train sets after training so that reference responses score mean 0 and
 * standard deviation 1. */
#ifndef RM_H
#define RM_H

#include "datasets/ds.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tok.h"
#include "trainer/train.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- sequences and batches: where the score is read ---- */

/* out[0, return) = the last ctx tokens of prompt[0, n_prompt) + response[0, n_response) + eos
 * (response without an end token of its own: this appends the one the score is read at).
 * out has room for ctx ids (ctx >= 1); *cut (may be NULL) says whether tokens were dropped. */
int rm_seq(int *out, const int *prompt, int n_prompt, const int *response, int n_response, int eos,
           int ctx, bool *cut);

/* The texts through the tokenizer (prompt and response encoded apart, as SFT does), then
 * rm_seq: buf->ids[0, buf->n) is the sequence (buf is reset first). Errors: tok_encode's. */
int rm_encode(const struct tok *t, int ctx, const char *prompt, const char *response,
              struct tok_buf *buf, bool *cut, struct pl_err *err);

/* Lay seqs[0, n) (lens[i] >= 1 tokens each) out as rows of the returned width W = the longest
 * length: tokens [n * W] right-padded with eos, last[n] = lens[i] - 1, the end token rm_seq put
 * there. The only place the read-out index is decided. */
int rm_batch(int *tokens, int *last, const int *const *seqs, const int *lens, int n, int eos);

/* The normalised reward of a raw head value: (head - reward_mean) / reward_std. */
double rm_reward(const struct gpt_config *cfg, double head);

/* Buffers to run batches of up to `rows` sequences of up to T tokens through a reward model. */
struct rm_scorer {
    int rows, T, eos;
    int *tokens, *last; /* [rows * T], [rows] */
    const int **seqs;   /* [rows] scratch for rm_score_seqs' chunks */
    int *lens;          /* [rows] */
};
/* Errors: PL_EINVAL (rows or T < 1), PL_ENOMEM; s releasable on failure. */
int rm_scorer_init(struct rm_scorer *s, int rows, int T, int eos, struct pl_err *err);
void rm_scorer_release(struct rm_scorer *s);

/* One forward of seqs[0, n) (n <= s->rows, lengths 1..s->T) through m, which must have a scalar
 * head, max_batch >= n and max_seq >= the longest: m->head[i] is sequence i's raw score. The
 * batch arrays live in s, so a gpt_backward of this forward may follow. Errors: gpt_forward's. */
int rm_forward(struct rm_scorer *s, struct gpt *m, const int *const *seqs, const int *lens, int n,
               struct pl_err *err);
/* Raw scores of any number of sequences, in forwards of s->rows (at most m's max_batch). */
int rm_score_seqs(struct rm_scorer *s, struct gpt *m, const int *const *seqs, const int *lens,
                  size_t n, double *raw, struct pl_err *err);

/* Normalised rewards of (prompts[i], responses[i]), i < n, each encoded with ctx = s->T. */
int rm_score_texts(struct rm_scorer *s, struct gpt *m, const struct tok *t,
                   const char *const *prompts, const char *const *responses, size_t n,
                   double *reward, struct pl_err *err);

/* Load model folder dir as a frozen reward model (head only, no LM logits) for batches of
 * max_batch sequences of up to max_seq tokens (0: the model's context) and its tokenizer. A
 * folder whose config.json names no scalar head is PL_EINVAL "DIR: no score head: ...". m and
 * t are zeroed first and releasable on every return. Errors: those of ckpt_load_model. */
int rm_load(struct gpt *m, struct tok *t, const char *dir, int max_batch, int max_seq,
            struct pl_err *err);

/* ---- preference data as token sequences ---- */

/* A group of ds_prefs, encoded: its sequences and pairs. */
struct rm_group {
    size_t seq;  /* first sequence in rm_data */
    int n_seqs;  /* = the group's n_texts */
    size_t pair; /* first pair in rm_data */
    int n_pairs;
    size_t src; /* index of the group in the array given to rm_data_add */
};
/* Encoded sequences (ids[start[k], start[k] + len[k])) and groups. */
struct rm_data {
    int *ids;
    size_t n_ids, cap_ids;
    size_t *start;
    int *len;
    size_t n_seqs, cap_seqs;
    struct rm_group *groups;
    size_t n_groups, cap_groups;
    struct ds_pref_pair *pairs; /* better and worse index the group's own sequences */
    size_t n_pairs, cap_pairs;
    int longest;    /* tokens of the longest sequence */
    int most_texts; /* sequences of the largest group */
    long cut;       /* sequences cut to ctx tokens */
    long dropped;   /* groups without a single pair (all tied): nothing to learn, left out */
};

/* Append groups[0, n) (group i's src is i) with every text encoded by rm_encode for ctx.
 * Zero-initialise d first; d stays releasable on failure. Errors: tok_encode's, PL_ENOMEM. */
int rm_data_add(struct rm_data *d, const struct tok *t, int ctx, const struct ds_pref_group *groups,
                size_t n, struct pl_err *err);
/* Append one sequence (prompt, response), in no group. */
int rm_data_add_text(struct rm_data *d, const struct tok *t, int ctx, const char *prompt,
                     const char *response, struct pl_err *err);
/* Raw scores of every sequence of d: raw[d->n_seqs]. */
int rm_score_data(struct rm_scorer *s, struct gpt *m, const struct rm_data *d, double *raw,
                  struct pl_err *err);
void rm_data_release(struct rm_data *d);

/* ---- the loss and the statistics ---- */

/* One pair's loss, d = rb - rw - margin: -(p log sigmoid(d) + (1 - p) log sigmoid(-d)) +
 * center * (rb + rw)^2; p = 1 is the hard Bradley-Terry loss -log sigmoid(rb - rw - margin),
 * center is TRL's center_rewards_coefficient. Its derivatives in *d_rb and *d_rw (may be NULL). */
double rm_pair_loss(double rb, double rw, double margin, double p, double center, double *d_rb,
                    double *d_rw);

/* Sums over pairs. A pair is right when the side its label favours (better when p >= 0.5,
 * else worse) scores higher; equal scores count half. */
struct rm_stats {
    double pairs, loss, right, margin, chosen, rejected; /* margin: sum of rb - rw */
};
void rm_stats_add(struct rm_stats *s, const struct ds_pref_pair *pr, double rb, double rw,
                  double center);
/* Means over the pairs (NaN when there are none). */
double rm_stats_accuracy(const struct rm_stats *s);
double rm_stats_mean(const struct rm_stats *s, double sum);

/* ---- evaluation ---- */

/* Statistics of the pairs of one prompt kind or one annotator. */
struct rm_slice {
    const char *name;
    struct rm_stats st;
};
struct rm_eval {
    struct rm_stats all;
    struct rm_slice *kinds, *annotators; /* only groups that name one; none: NULL, 0 */
    int n_kinds, n_annotators;
    size_t groups;         /* groups with pairs */
    long dropped, cut;     /* as in rm_data */
    long skipped;          /* bad records skipped (rm_eval_files with IO_SKIP_BAD_LINES) */
    double mean, std;      /* the model's normalisation */
    struct io_arena names; /* the slices' names */
};

/* Score every sequence of d (encoded from groups) with m and gather the pair statistics in
 * normalised rewards, overall and per kind and annotator. out is zeroed first and releasable on
 * every return. */
int rm_evaluate(struct rm_scorer *s, struct gpt *m, const struct rm_data *d,
                const struct ds_pref_group *groups, struct rm_eval *out, struct pl_err *err);
/* `plumb rm eval`: load the preference files paths[0, n) (ds_prefs_load with flags) and the
 * reward model folder dir (rm_load; batch sequences a forward), then rm_evaluate. Errors: those
 * of the loader and rm_load; PL_EINVAL "...: no pairs to evaluate". */
int rm_eval_files(const char *dir, const char *const *paths, int n, unsigned flags, int batch,
                  struct rm_eval *out, struct pl_err *err);
void rm_eval_release(struct rm_eval *e);

/* ---- training ---- */

struct rm_opts {
    const char *model;       /* starting folder: base, SFT or reward model */
    const char *const *data; /* [n_data] preference files */
    int n_data;
    const char *const *eval_data; /* [n_eval_data] held-out files; none: the tail of data */
    int n_eval_data;
    double eval_frac;      /* share of data's groups held out without eval_data (0.05) */
    const char *norm_data; /* sft {"prompt", "response"} reference set; NULL: the better texts
                            * of the training groups */
    double epochs;         /* passes over the training groups when train.steps is 0 (1) */
    int batch;             /* groups per micro-batch (8) */
    int seq;               /* context a sequence is cut to; 0: the model's */
    double center_coef;    /* weight of (rb + rw)^2 (0) */
    uint64_t seed;         /* group order (1337) */
    bool skip_bad_lines;
    struct train_opts train; /* out, steps (0: from epochs), grad_accum, eval_every, ... */
    struct train_optim optim;
};
void rm_opts_default(struct rm_opts *o);

/* The Bradley-Terry task for train_run. A batch element is a group: a micro-batch is `batch`
 * groups whose sequences are the rows of one forward, so each completion's forward serves all
 * its pairs (InstructGPT); the loss is the mean over the step's pairs (each micro-batch weighs
 * its pair count). Groups come in a new order each epoch from an RNG kept in the checkpoint.
 * Metrics: rm/loss, rm/accuracy, rm/margin, rm/chosen, rm/rejected over the step's pairs
 * (raw scores); held-out values eval/loss (the headline), eval/accuracy, eval/margin,
 * eval/chosen, eval/rejected. Across ranks (trainer/dist.h) batch is each rank's: every rank
 * draws ranks x batch groups a micro-batch and trains on its own batch of them, the metrics
 * summed over all; the held-out set is scored whole on every rank. */
struct rm_task {
    struct rm_data train, eval, norm; /* norm: --norm-data's sequences (may be empty) */
    int B, accum, T, rows;            /* rows: sequences of the largest micro-batch */
    double center;
    struct rm_scorer sc;
    struct train_order order; /* groups in a new order each epoch (state: rng, cursor) */
    size_t *step_groups;      /* [accum * B] the current step's groups */
    double *grad;             /* [rows] d loss / d head */
    float *dhead;             /* [rows] */
    double *eval_raw;         /* [eval.n_seqs] */
    struct rm_stats step;
    const struct rm_opts *o;
    struct train_var vars[2];
};

/* Encode train and heldout (NULL: the last eval_frac of train's groups) and the norm data for a
 * model of context n_positions and allocate the task; o must outlive t. Errors: PL_EINVAL
 * ("nothing to train on: ..." when no group has a pair; bad options), rm_data_add's. */
int rm_task_init(struct rm_task *t, const struct tok *tok, const struct rm_opts *o,
                 const struct ds_prefs *train, const struct ds_prefs *heldout, int n_positions,
                 struct pl_err *err);
void rm_task_release(struct rm_task *t);
void rm_as_task(struct rm_task *t, struct train_task *task);
/* o->train.steps, or ceil(epochs * training groups / (batch * grad_accum * ranks)). */
long rm_steps(const struct rm_task *t, const struct rm_opts *o);

/* Set m's normalisation from its raw scores of the reference sequences: the norm data, or
 * else every text that is the better side of a pair in a training group; std 1 when they
 * all score the same. */
int rm_normalise(struct rm_task *t, struct gpt *m, struct pl_err *err);

struct rm_result {
    struct train_result train;
    size_t groups, eval_groups; /* encoded groups with pairs */
    long pairs, dropped, cut, skipped;
    bool normalised; /* false when on_step stopped the run */
    double reward_mean, reward_std;
};

/* Train a reward model from o->model on the sets: the model gets a scalar head (zero when the
 * folder has none), trains into o->train.out, and at the end rm_normalise writes reward_mean
 * and reward_std into out/config.json. A run stopped by on_step is left unnormalised (its
 * checkpoints carry mean 0, std 1). Errors: those of rm_task_init, ckpt_load, train_run. */
int rm_train(const struct rm_opts *o, const struct ds_prefs *train, const struct ds_prefs *heldout,
             struct rm_result *res, struct pl_err *err);
/* `plumb rm train`: load o->data (and o->eval_data) with ds_prefs_load, then rm_train. */
int rm_run(const struct rm_opts *o, struct rm_result *res, struct pl_err *err);

#endif
