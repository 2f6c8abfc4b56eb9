/* sample: decoding on top of the KV cache (model/kv.h, DESIGN.md section 9): greedy,
 * sampling (temperature, top-k, top-p) and beam search, for many prompts with K completions
 * each, stop strings, and hooks that see each token and each finished prompt. It knows nothing
 * of files, options or progress displays: `plumb generate` and `plumb sample` are cmd/gen.h.
 *
 * Completion k of the prompt with index i draws from its own RNG seeded with (seed, i * K + k),
 * and the cache computes every sequence's logits with the same bits whatever the batch holds,
 * so a seed gives the same tokens and the same log-probabilities whatever the batch size, the
 * other prompts, or where a run was resumed. Every token comes with its exact log-probability
 * under the distribution it was drawn from (what PPO needs).
 *
 * Everything is allocated at init; nothing allocates per token. */
#ifndef SAMPLE_H
#define SAMPLE_H

#include "gpt.h"
#include "kv.h"
#include "pl.h"
#include "tok.h"

#include <stdint.h>

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
    struct kv_cache cache;
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
 * Errors: PL_EINVAL (sample_opts_check; stop strings without a tokenizer; a
 * tokenizer with fewer tokens than the model's vocabulary, whose last ids
 * would have no text), PL_ENOMEM. */
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

#endif
