/* ppo: PPO-style RLHF against a reward model (DESIGN.md sections 6 and 9), on the one training
 * loop (trainer/train.h).
 *
 * Four models: the policy (trainable, from an SFT folder), a frozen reference copy of it, a
 * value model (trainable, initialised from the reward model: its body and head, the head read at
 * every position), and the frozen reward model (or, in tests and for rule-based rewards, a
 * scoring function instead).
 *
 * One iteration:
 * 1. rollout: `batch` prompts, one response each, sampled from the exact policy distribution at
 *    the rollout temperature (no top-k or top-p, so that the KL estimate is honest) through the
 *    KV cache (model/sample.h), which also gives each token's log-probability: the policy needs
 *    no second pass over prompt and response before its first update;
 * 2. one forward of the reference (its log-probs at the same temperature) and one of the value
 *    model over prompt + response; the reward model's normalised score of the response text
 *    (reward/rm.h's read-out, the same as in training), less --missing-eos-penalty when the
 *    response hit the token limit without its end;
 * 3. per-token rewards -beta * kl_t (kl_t: k1 = logp - logp_ref, or k3), plus the score at the
 *    last response token; advantages by the estimator (GAE), whitened over the batch's tokens;
 *    returns = advantages + values;
 * 4. ppo_epochs passes over the rollout in shuffled minibatches, each one optimizer step of
 *    both models (train_run's steps): the clipped surrogate plus vf_coef times the clipped
 *    value loss, token means; a minibatch whose mean ratio exceeds ratio_guard is skipped and
 *    counted;
 * 5. the KL controller: fixed beta, or Ziegler et al.'s adaptive one toward target_kl.
 *
 * Checkpoints come only at iteration ends, so a rollout never has to be saved: the state is the
 * two models and their AdamW moments (train_run), beta, the prompt order and its cursor, and
 * the run's counters; iteration i samples with seeds (seed, i * batch + row) and shuffles its
 * minibatches from (seed, i), so a resumed run reproduces an uninterrupted one bit for bit at
 * the same thread count. metrics.jsonl gets one line per iteration (its last minibatch step)
 * under TRL's names.
 *
 * Across ranks (trainer/dist.h) batch and minibatch are each rank's: every rank draws the
 * prompts of all ranks, answers its own batch of them with the sampling streams one process
 * at batch ranks x batch would use, and its minibatches come from its own rows; the
 * advantages are whitened, and the KL controller, the ratio guard and the metrics read means,
 * over every rank's tokens (val/distinct_2 is the ranks' mean). With minibatch = batch (one
 * minibatch an epoch) N ranks train as one process at N x batch, up to summation order. The
 * held-out batches are shared out by rank. */
#ifndef PPO_H
#define PPO_H

#include "model/gpt.h"
#include "model/pl.h"
#include "model/sample.h"
#include "datasets/ds.h"
#include "model/tok.h"
#include "reward/rm.h"
#include "trainer/train.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the pieces, each alone ---- */

enum ppo_kl_estimator {
    PPO_KL_K1, /* logp - logp_ref: unbiased for the sequence KL, a token may be negative */
    PPO_KL_K3, /* (r - 1) - log r with r = p_ref / p: unbiased and never negative */
};

/* One token's KL estimate from its log-probabilities under the policy and the reference. */
double ppo_kl(enum ppo_kl_estimator e, double logp, double logp_ref);

/* The KL coefficient: fixed, or adaptive (Ziegler et al. 2019): after a batch of n_episodes
 * responses with mean KL kl per response, beta *= 1 + clip(kl / target - 1, -0.2, 0.2) *
 * n_episodes / horizon. */
struct ppo_kl_ctl {
    double beta;
    double target;  /* > 0: adaptive; 0: fixed */
    double horizon; /* (10000) */
};
void ppo_kl_update(struct ppo_kl_ctl *c, double kl, long n_episodes);

/* Generalised advantage estimation over one response of n tokens: with rewards r[t] and values
 * v[t] (v[n] = 0: nothing follows the last token), delta_t = r[t] + gamma v[t+1] - v[t] and
 * adv[t] = delta_t + gamma lambda adv[t+1]; ret[t] = adv[t] + v[t]. */
void ppo_gae(float *adv, float *ret, const float *rewards, const float *values, int n,
             double gamma, double lambda);

/* x[i] for i < n with mask[i] set become (x - mean) / sqrt(var + 1e-8) over those entries (var
 * with Bessel's correction, as TRL's masked_whiten); others are left alone. Fewer than two
 * entries: unchanged. */
void ppo_whiten(float *x, const unsigned char *mask, size_t n);

/* The clipped surrogate for one token: with ratio = exp(logp - logp_old),
 * loss = max(-adv * ratio, -adv * clamp(ratio, 1 - clip, 1 + clip)); *dlogp its derivative in
 * logp, *clipped whether the clamped term won (strictly). */
double ppo_policy_loss(double logp, double logp_old, double adv, double clip, double *dlogp,
                       bool *clipped);

/* The clipped value loss for one token: with vc = clamp(v, v_old - clip, v_old + clip),
 * loss = 0.5 * max((v - ret)^2, (vc - ret)^2); *dv its derivative in v, *clipped whether the
 * clamped term won (strictly). */
double ppo_value_loss(double v, double v_old, double ret, double clip, double *dv, bool *clipped);

/* Distinct bigrams over all bigrams of the responses (a diversity measure; 0 when there are no
 * bigrams). pairs is scratch for one uint64 a bigram; rows as in struct ppo_rollout. */
double ppo_distinct_2(const int *tokens, const int *plen, const int *rlen, int rows, int width,
                      uint64_t *pairs);

/* ---- the rollout buffer ---- */

/* A prompt set, encoded with the policy's tokenizer: prompt i is ids[start[i], + len[i]). */
struct ppo_prompts {
    const char *path;
    struct ds_prompts set;
    int *ids;
    size_t *start;
    int *len;
};

/* Row i holds prompt + response in tokens[i * width, + plen[i] + rlen[i]), right-padded with
 * the end token. Per-token arrays are laid out like tokens and indexed by the position that
 * PREDICTS a response token: response token t of row i sits at plen[i] + t and its log-prob,
 * reference log-prob, value, reward, advantage and return at i * width + plen[i] - 1 + t, which
 * is where gpt_forward's logp and per-position head put them. mask marks those positions. */
struct ppo_rollout {
    int rows, width;
    int *tokens, *plen, *rlen, *finish; /* finish: enum sample_finish */
    float *logp, *ref, *values, *rewards, *adv, *ret;
    unsigned char *mask;
    double *score; /* [rows] normalised reward-model score, less any missing-end penalty */
    double *kl;    /* [rows] sum of the KL estimate over the response */
    int *prompt;   /* [rows] index of each row's prompt in src */
    const struct ppo_prompts *src;
    char *text;    /* [rows * text_cap] each response's text, NUL-terminated */
    size_t text_cap;
};

/* A reward other than the reward model: scores[i] for each row of r (i < r->rows). */
typedef int (*ppo_scorer_fn)(void *ctx, const struct ppo_rollout *r, double *scores,
                             struct pl_err *err);

/* ---- the run ---- */

/* One whole iteration's wall time, from the start of its rollout to the start of the next: the
 * update is what remains after generation and scoring (forwards, backwards, clipping, AdamW,
 * and a checkpoint or held-out evaluation when one falls there). tokens: its rollout's prompt
 * and response tokens. */
struct ppo_timing {
    double wall_s, gen_s, score_s, update_s;
    long tokens;
};

struct ppo_opts {
    const char *policy;  /* SFT model folder: the policy and the reference */
    const char *reward;  /* reward model folder (a scalar head); NULL with scorer */
    const char *value;   /* value model's starting folder; NULL: reward, else the policy with a
                            zero head */
    const char *prompts; /* prompts JSONL {"id", "prompt"} */
    const char *eval_prompts; /* held-out prompts: mean reward and KL to the reference of
                                 responses to them, at step 0 and every eval_every; NULL: none */
    long eval_every;          /* iterations between held-out evaluations (10); the last always */
    ppo_scorer_fn scorer; /* instead of the reward model (tests, rule-based rewards) */
    void *scorer_ctx;
    const char *const *stop; /* [n_stop] stop strings ending a response */
    int n_stop;
    long iterations;    /* (20) */
    int batch;          /* prompts per rollout (32) */
    int minibatch;      /* rows per update (8) */
    int ppo_epochs;     /* passes over a rollout (4) */
    int max_new_tokens; /* (48) */
    float temperature;  /* of rollouts and of the log-probs they are trained with (1) */
    struct ppo_kl_ctl kl;
    enum ppo_kl_estimator kl_estimator;
    double gamma, lambda;                       /* (1, 0.95) */
    double cliprange, cliprange_value, vf_coef; /* (0.2, 0.2, 0.1) */
    double ratio_guard;                         /* skip a minibatch with mean ratio above (10) */
    double missing_eos_penalty;                 /* subtracted when a response has no end (0) */
    double kl_warn;                             /* warn when the mean KL exceeds this (10) */
    int kl_negative_warn; /* warn after this many iterations in a row of negative KL (3) */
    long sample_every;    /* iterations between sample tables on the log; 0: none (10) */
    long save_every;      /* iterations between checkpoints (10); the last always */
    uint64_t seed;        /* (1) */
    bool skip_bad_lines;
    struct train_opts train;          /* out (the policy's folder; the value model's goes to
                                         out/value), resume, force, log, version, on_step */
    struct train_optim optim, voptim; /* policy's and value model's (lr 1e-5, 1e-5; no warmup) */
};
void ppo_opts_default(struct ppo_opts *o);

/* Everything a run holds. */
struct ppo {
    const struct ppo_opts *o;
    struct gpt policy, ref, value, reward;
    struct tok tok, rtok; /* the policy's (= the value model's) and the reward model's */
    struct ppo_prompts train, eval;
    struct sample_ctx sampler;
    struct rm_scorer rsc;
    struct ppo_rollout ro;
    /* a minibatch: rows gathered from the rollout */
    int *mb_rows, *mb_tokens, *mb_targets;
    float *mb_dlogp, *mb_dhead;
    int *perm; /* [ppo_epochs * batch] the iteration's minibatch order */
    const char **texts_p, **texts_r;
    uint64_t *pairs;
    double *scores;
    struct sample_prompt *sp; /* [batch] */
    long spi; /* optimizer steps per iteration */
    /* state kept by checkpoints */
    struct train_order order; /* the prompts, a new order each epoch */
    double beta;
    uint64_t counters[2]; /* skipped minibatches; iterations in a row with negative KL */
    struct train_var vars[4];
    /* the current iteration's statistics */
    long iteration;
    double it_t0, gen_s, score_s, update_s; /* update_s: forwards and backwards only */
    long it_tokens;
    struct ppo_timing done;
    struct train_values it; /* rollout statistics, reported with the last minibatch */
    double it_score, it_kl, it_beta; /* mean score and KL per response, beta used */
    double eval_reward, eval_kl;     /* the last held-out evaluation's */
    double sum_pg, sum_vf, sum_approxkl, sum_clip, sum_vclip, sum_ratio;
    long n_mb;
    bool warn_high, warn_negative;
};

/* Load the models (policy, reference, value, reward: printing each one's memory to
 * o->train.log), read and encode the prompts, and allocate everything a run needs. p is
 * releasable on failure. Errors: those of loading (ckpt_load_model, rm_load, ds_prompts_init),
 * PL_EINVAL for bad options (top-k is not an option: rollouts sample the whole distribution),
 * a value or reward model whose tokenizer differs from the policy's where it must not, or a
 * prompt that leaves no room for max_new_tokens in the context. */
int ppo_init(struct ppo *p, const struct ppo_opts *o, struct pl_err *err);
void ppo_release(struct ppo *p);

/* Iteration `iteration`'s rollout: sample `batch` training prompts, score with reference,
 * value and reward, then rewards and advantages (steps 1-3 above); statistics into p->it. */
int ppo_rollout(struct ppo *p, long iteration, struct pl_err *err);

/* The task train_run trains p's policy and value model on; models[0] is the policy and
 * models[1] the value model. */
void ppo_as_task(struct ppo *p, struct train_task *task);

struct ppo_result {
    struct train_result train;
    long iterations;     /* reached */
    long skipped;        /* minibatches skipped by the ratio guard */
    double beta;         /* at the end */
    double score, kl;    /* the last iteration's mean score and KL per response */
    double eval_reward_first, eval_reward, eval_kl; /* held out: at step 0 and at the end */
    /* The last iteration that another followed in this call, timed whole (NaN-free zeros when
     * none did): what `plumb bench` reports. */
    struct ppo_timing timing;
};

/* `plumb ppo`: ppo_init, then train_run for o->iterations iterations (resuming per o->train);
 * the policy goes to o->train.out, the value model to o->train.out/value. */
int ppo_run(const struct ppo_opts *o, struct ppo_result *res, struct pl_err *err);

#endif
