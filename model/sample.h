/* sample: generation with a KV cache (DESIGN.md section 9).
 *
 * struct sample_cache holds the keys and values of up to max_seqs sequences
 * ("slots") of one frozen model and runs the model over new tokens of any set
 * of slots in one pass: whole prompts (prefill) and single tokens (decode)
 * alike, so a batch never waits for its slowest member. sample_cache_fork
 * copies a slot's tokens into another, so the K samples of a prompt, or the
 * choices of a multiple-choice question, share one prefill of their prefix.
 *
 * struct sample_ctx generates on top of it: greedy, sampling (temperature,
 * top-k, top-p) and beam search, for many prompts with K completions each.
 * Completion k of the prompt with index i draws from its own RNG seeded with
 * (seed, i * K + k), so a seed gives the same text whatever the batch size,
 * and every token comes with its exact log-probability under the
 * distribution it was drawn from (what PPO needs).
 *
 * sample_text and sample_file are `plumb generate` and `plumb sample`.
 * Everything is allocated at init; nothing allocates per token. */
#ifndef SAMPLE_H
#define SAMPLE_H

#include "gpt.h"
#include "pl.h"
#include "tok.h"

#include <stdint.h>
#include <stdio.h>

/* ---- the KV cache ---- */

struct sample_cache {
    const struct gpt *m; /* borrowed: outlives the cache; only its weights are read */
    int max_seqs, max_len, max_rows;
    /* [max_seqs] tokens each slot holds. Lowering len[s] forgets the tokens past
     * it (0 empties the slot); raising it is not allowed. */
    int *len;
    /* [max_seqs, V]: after sample_cache_extend, row i holds the logits that
     * follow the last new token of the i-th sequence passed. */
    float *logits;
    long rows; /* token rows run through the model so far */
    /* Internal. */
    float *kv; /* [L][k|v][max_seqs][NH], keys [C/NH][max_len], values [max_len][C/NH] */
    size_t kv_floats;
    float *work; /* activations of max_rows rows */
    size_t work_floats;
    int *ibuf; /* [max_rows] positions, [max_seqs] tokens each slot held before */
    int threads;
};

/* Allocate for m (frozen or not: its activations are not used), max_seqs
 * slots of max_len tokens (<= n_positions), at most max_rows new tokens per
 * sample_cache_extend (>= max_seqs). c is releasable on failure.
 * Errors: PL_EINVAL (sizes), PL_ENOMEM. */
int sample_cache_init(struct sample_cache *c, const struct gpt *m, int max_seqs, int max_len,
                      int max_rows, struct pl_err *err);
/* Safe on a zeroed struct and twice. */
void sample_cache_release(struct sample_cache *c);

/* Append count[i] >= 1 tokens to slot[i] for i < n (distinct slots) and run
 * the model over them in one pass; tokens holds them all, sequence after
 * sequence. Fills c->logits rows 0..n-1. Errors (nothing changes): PL_EINVAL
 * for a bad slot, a token id outside the vocabulary, more than max_rows
 * tokens, or a slot that would pass max_len. */
int sample_cache_extend(struct sample_cache *c, int n, const int *slot, const int *count,
                        const int *tokens, struct pl_err *err);

/* Make slot dst hold exactly what slot src holds (dst != src). */
void sample_cache_fork(struct sample_cache *c, int dst, int src);

/* ---- decoding ---- */

enum sample_finish {
    SAMPLE_RUNNING = 0,
    SAMPLE_EOS,    /* produced the end token */
    SAMPLE_STOP,   /* produced a stop string */
    SAMPLE_LENGTH, /* reached max_new_tokens or the end of max_len */
};

/* "eos", "stop", "length" (or "running"). */
const char *sample_finish_name(int finish);

struct sample_opts {
    int n;                /* completions per prompt; with beam search, the best n beams */
    int max_new_tokens;   /* >= 1 */
    float temperature;    /* > 0 samples; 0 is greedy */
    int top_k;            /* > 0 keeps the k most likely tokens; 0 keeps all */
    float top_p;          /* < 1 keeps the fewest most likely tokens holding this mass */
    int beam;             /* > 0: beam search of this width (temperature, top_k, top_p unused) */
    float length_penalty; /* beam: hypotheses rank by sum log p / length^length_penalty */
    uint64_t seed;
    int eos;                 /* end token: SAMPLE_EOS_MODEL, an id, or another negative for none */
    const char *const *stop; /* [n_stop] stop strings (borrowed; need a tokenizer) */
    int n_stop;
    int batch;   /* most sequences decoded at once; >= n (>= beam with beam search) */
    int max_len; /* longest prompt + completion in tokens (<= n_positions); 0 = n_positions */
};

/* The model's own end token (config.json's eos_token_id). */
#define SAMPLE_EOS_MODEL (-2)

/* n 1, 64 new tokens, temperature 1, no top-k or top-p, no beam, length
 * penalty 1, seed 1, the model's end token, batch 32, max_len 0. */
void sample_opts_default(struct sample_opts *o);

/* Why o is unusable for cfg (PL_EINVAL naming the option), else PL_OK. */
int sample_opts_check(const struct sample_opts *o, const struct gpt_config *cfg,
                      struct pl_err *err);

struct sample_prompt {
    const int *ids; /* [n]; n = 0 starts from cfg's bos token */
    int n;
    long index; /* seeds its completions' RNGs: (seed, index * opts.n + k) */
};

/* One completion, valid during the hook call that receives it. */
struct sample_completion {
    int prompt;        /* position in the prompts array */
    int k;             /* 0..n-1 (beams best first) */
    const int *tokens; /* [n_tokens] generated ids, the end token included */
    const float *logp; /* [n_tokens] log-probability of each under the distribution it was drawn
                        * from: temperature-scaled and cut by top-k / top-p when sampling; the
                        * model's own (temperature 1) for greedy and beam search */
    int n_tokens;
    const char *text; /* the decoded tokens, end token left out, cut before a stop string;
                       * NULL without a tokenizer */
    size_t text_len;
    int finish;   /* enum sample_finish */
    double score; /* sum of logp; with beam search divided by n_tokens^length_penalty */
};

struct sample_hooks {
    void *user;
    /* After each new token of any sequence (for streaming; not called by beam
     * search, whose beams change places); may be NULL. */
    void (*token)(void *user, const struct sample_completion *c);
    /* When all completions of a prompt are finished: c[0..n), n = opts.n
     * (beam search: fewer when fewer beams ever ended). A nonzero
     * return (with err filled) stops sample_generate, which returns it. */
    int (*done)(void *user, const struct sample_completion *c, int n, struct pl_err *err);
};

struct sample_slot;
struct sample_lane;

struct sample_ctx {
    const struct gpt *m;   /* borrowed */
    const struct tok *tok; /* borrowed, may be NULL: then no text and no stop strings */
    struct sample_opts o;
    struct sample_cache cache;
    long tokens; /* tokens generated so far */
    /* Internal. */
    int width;                      /* slots a prompt uses: n, or beam */
    int lanes;                      /* prompts decoded at once: batch / width */
    int bos;                        /* what an empty prompt starts from */
    struct sample_slot *slots;      /* [lanes * width] */
    struct sample_lane *lane;       /* [lanes] */
    struct sample_completion *comp; /* [width], for the done hook */
    size_t text_cap;                /* bytes of text a sequence can hold */
    float *probs, *lse;             /* [slots, V], [slots] */
    void *scratch;                  /* top-k / top-p candidates, or beam candidates */
    int *steps;                     /* a step's plan: slots, counts, lanes, tokens */
    char *mem;                      /* every sequence's tokens, log-probs and text */
};

/* Ready s to generate with m (and tok, may be NULL) under o, which is
 * copied (o->stop stays borrowed). s is releasable on failure.
 * Errors: PL_EINVAL (sample_opts_check), PL_ENOMEM. */
int sample_init(struct sample_ctx *s, const struct gpt *m, const struct tok *tok,
                const struct sample_opts *o, struct pl_err *err);
/* Safe on a zeroed struct and twice. */
void sample_release(struct sample_ctx *s);

/* Generate o.n completions for each of prompts[0..n_prompts), o.batch
 * sequences at a time: a prompt's prefill runs in the same pass as the
 * others' decode steps, and a finished prompt's slots go to the next one.
 * Every prompt is checked before anything runs. Errors: PL_EINVAL ("prompt
 * 3: token id 70000 is outside the vocabulary (50257)", or a prompt that
 * leaves no room in max_len), or what a done hook returned. */
int sample_generate(struct sample_ctx *s, const struct sample_prompt *prompts, int n_prompts,
                    const struct sample_hooks *hooks, struct pl_err *err);

/* ---- the commands ---- */

/* `plumb generate`: load the model in dir, encode prompt, and write its o->n
 * completions to out, streaming the first as it is generated (a header line
 * "--- completion k of n ---" before each when n > 1; with beam search each
 * is written when done). o->max_len 0 sizes the cache to the prompt; the
 * batch shrinks to the prompt's sequences.
 * Errors: those of ckpt_load and tok_load, PL_EINVAL for a prompt too long
 * or with ids outside the model's vocabulary, PL_EIO writing out. */
int sample_text(const char *dir, const char *prompt, const struct sample_opts *o, FILE *out,
                struct pl_err *err);

/* `plumb sample`: for each {"id", "prompt"} of prompts_path write one line
 * {"id", "prompt", "completions": [o->n texts], "tokens": [[ids]],
 *  "logprobs": [[per token]], "finish": ["eos"|"stop"|"length"], "model": dir}
 * to out_path, flushed and fsync'd per prompt. Resumable: prompts whose id is
 * already in out_path are skipped; a last line cut short by a crash (no
 * newline) is dropped and redone. Every prompt is read and checked before
 * the first is generated, so bad input leaves out_path as it was. The RNG
 * index of a prompt is its place in the file, so a resumed run writes what
 * an uninterrupted one would have. o->max_len 0 fits the longest prompt.
 * progress (may be NULL) gets a progress bar: "\r"-updated on a terminal,
 * a plain line every few seconds otherwise. Errors name the file and line:
 * PL_EFORMAT for a bad record, a duplicate id, a prompt with token ids the
 * model lacks or too long for its context, an empty file ("PATH: no
 * records"), a bad line in out_path; PL_ENOTFOUND, PL_EIO, PL_ENOMEM. */
int sample_file(const char *dir, const char *prompts_path, const char *out_path,
                const struct sample_opts *o, FILE *progress, struct pl_err *err);

#endif
