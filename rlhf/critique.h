/* critique: constitutional self-critique (DESIGN.md section 6; Anthropic's constitutional AI)
 * on plumb's engine, for `plumb critique` (cmd/critique.h).
 *
 * SL stage: for each prompt the model samples a draft; each round a principle is drawn from the
 * constitution (datasets/constitution.h), the model writes a critique of the current response
 * under its critique request and then a revision under its revision request, in the format of
 * datasets/constitution.h (few-shot examples first, when given). Every draft and revision is
 * checked against all the constitution's rules; a revision replaces the current response when
 * critique_accept says so. When the current response breaks a rule of the round's principle
 * that carries a critique of its own, that text is the round's critique instead of the
 * model's (small models critique poorly; a machine-checked rule knows what is wrong). A step's context that does not fit the model's window keeps its last
 * n_positions - max_new_tokens tokens, as the toy world's demonstrations do.
 *
 * AI feedback (RL stage): the model is asked which of two responses better meets a principle,
 * as a multiple-choice question (critique_choice_text); the preference is the normalised
 * probability of " (A)" against " (B)" from their log-probs (critique_choice), averaged over
 * the principles and both orders so that a position bias cancels (critique_preference).
 *
 * Randomness: the draft, critique and revision of prompt i come from sample.h's per-sequence
 * RNG with the prompt's place i in the file, and the principle of each round from an RNG seeded
 * with (seed, i), so that a prompt's trace is the same whatever the batch or a resume. */
#ifndef CRITIQUE_H
#define CRITIQUE_H

#include "datasets/constitution.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/kv.h"
#include "model/pl.h"
#include "model/sample.h"
#include "model/tok.h"
#include "reward/rm.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- revision acceptance ---- */

enum critique_verdict {
    CRITIQUE_REJECTED = 0,
    CRITIQUE_KEPT_RULES,    /* the revision breaks fewer rules */
    CRITIQUE_KEPT_CRITIQUE, /* as many rules (ties allowed): the model's own critique did it */
};

/* Whether a revision replaces the current response. It must differ from it; it is kept when it
 * breaks fewer rules, or (ties) as many; with a reward model (scored) it must also score no
 * lower. */
int critique_accept(int broken_current, int broken_revision, bool same_text, bool scored,
                    double score_current, double score_revision, bool ties);

/* ---- AI preference ---- */

/* The multiple-choice question, appended to b: PROMPT "\n(A) " A "\n(B) " B "\nQuestion: "
 * CRITIQUE_REQUEST " Which answer is better?\nAnswer:" (responses stripped); the choices are
 * the continuations CRITIQUE_CHOICE_A and _B. */
#define CRITIQUE_CHOICE_A " (A)"
#define CRITIQUE_CHOICE_B " (B)"
void critique_choice_text(struct pl_buf *b, const char *prompt, const char *a, const char *b_text,
                          const char *critique_request);

/* The normalised probability of choice A: exp(la) / (exp(la) + exp(lb)), computed stably. */
double critique_choice(double logp_a, double logp_b);

/* The probability that x is better than y from n principles' log-probs: lp[4k + 0, 1] are the
 * log-probs of " (A)" and " (B)" with x as A and y as B, lp[4k + 2, 3] those with y as A and x
 * as B. Each order's probability that x wins is clamped to [lo, hi] (0 and 1: no clamp), then
 * all 2n are averaged. */
double critique_preference(const double *lp, int n, double lo, double hi);

/* ---- the stages ---- */

struct critique_opts {
    int rounds;            /* critique-revision rounds per prompt (1) */
    int max_new_tokens;    /* per draft, critique and revision (48) */
    float temperature;     /* sampling temperature of every step (1) */
    uint64_t seed;         /* (1) */
    int batch;             /* prompts generated at once (16) */
    bool ties;             /* critique_accept's ties (false) */
    const int *principles; /* [n_principles] indices to draw from; NULL: all */
    int n_principles;
    double clamp_lo, clamp_hi; /* --compare's clamp (0, 1: none) */
};
void critique_opts_default(struct critique_opts *o);

/* One prompt's trace. Texts are stripped; scores are NaN without a reward model. */
struct critique_round {
    int principle;
    char *critique, *revision;
    bool rule_critique; /* the critique is a broken rule's own, not the model's */
    int broken;         /* rules the revision breaks */
    bool *broken_rules; /* [n_rules] */
    double score;       /* reward of the revision */
    int verdict;        /* enum critique_verdict */
};
struct critique_trace {
    char *draft;
    int draft_broken;
    bool *draft_rules; /* [n_rules] */
    double draft_score;
    struct critique_round *rounds; /* [n_rounds] */
    int n_rounds;
    int final_round; /* the round whose revision is the final response; -1: the draft */
};
void critique_trace_release(struct critique_trace *t);
/* The final response (the draft when no revision was kept). */
const char *critique_trace_final(const struct critique_trace *t);

/* The models and buffers of a run. */
struct critique_run {
    struct gpt m;
    struct tok t;
    struct sample_ctx s;
    struct gpt rm; /* reward model, when reward_dir was given */
    struct tok rm_tok;
    struct rm_scorer scorer;
    bool scored;
    const struct ds_constitution *c; /* borrowed */
    struct critique_opts o;
    char *few_shot;     /* text put before every critique and revision context (may be NULL) */
    struct kv_cache kv; /* --compare */
    struct tok_buf ids;
    float *logp;
};

/* Load model_dir (and reward_dir, may be NULL: a reward model folder) for c under o; few_shot
 * (may be NULL) is a text file put before every critique and revision context. r is zeroed
 * first and releasable on every return. Errors: those of loading; PL_EINVAL for options the
 * model cannot meet (max_new_tokens that leaves no context). */
int critique_run_init(struct critique_run *r, const char *model_dir, const char *reward_dir,
                      const char *few_shot, const struct ds_constitution *c,
                      const struct critique_opts *o, struct pl_err *err);
void critique_run_release(struct critique_run *r);

/* The SL stage for prompts[0, n) (index[i]: the prompt's place in its file, which seeds it):
 * traces[0, n) are filled (zero them first; release each with critique_trace_release). */
int critique_revise(struct critique_run *r, const char *const *prompts, const long *index, int n,
                    struct critique_trace *traces, struct pl_err *err);

/* The preference that x is better than y under every allowed principle, both orders. */
int critique_compare(struct critique_run *r, const char *prompt, const char *x, const char *y,
                     double *p, struct pl_err *err);

/* Log-probs of the continuations conts[0, n) of context (its tokens, cut from the left so that
 * the longest continuation fits the window) from one shared prefix in the KV cache: out[i] =
 * sum of log p(token | context, earlier tokens). */
int critique_score_choices(struct critique_run *r, const char *context, const char *const *conts,
                           int n, double *out, struct pl_err *err);

#endif
