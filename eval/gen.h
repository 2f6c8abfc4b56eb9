/* gen: the answers an eval suite classifies: k completions of each of many prompts from a
 * model (model/sample.h), kept as text.
 *
 * Completion j of prompt i draws from the RNG seeded with (seed, i * k + j) (sample.h), so a
 * seed gives the same answers whatever the batch size. Greedy decoding (temperature 0) gives
 * each prompt's one most likely answer. */
#ifndef EVAL_GEN_H
#define EVAL_GEN_H

#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "model/tok.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct eval_gen_opts {
    int k;              /* answers per prompt, >= 1 */
    float temperature;  /* 0: greedy */
    int max_new_tokens; /* >= 1 */
    uint64_t seed;
    const char *const *stop; /* [n_stop] stop strings, borrowed */
    int n_stop;
    int batch;         /* sequences decoded at once (>= 1; raised to k) */
    bool cut_left;     /* a prompt too long for the context keeps its last n_positions -
                          max_new_tokens tokens (as the harness cuts), instead of an error */
    FILE *progress;    /* stderr, or NULL: no progress display */
    const char *label; /* the progress display's label */
};

struct eval_answers {
    const char **text; /* [n * k]: answer j of prompt i at i * k + j, NUL-terminated */
    int n, k;
    struct io_arena arena;
};

/* Generate o->k answers to each of prompts[0, n) with m and t (the model's tokenizer) into a
 * (zeroed first; releasable on failure). Errors: PL_EINVAL for a prompt the model cannot take
 * ("prompt 'ID': ...", ids[i] naming it), those of sample_init and sample_generate, PL_ENOMEM. */
int eval_generate(const struct gpt *m, const struct tok *t, const char *const *prompts,
                  const char *const *ids, int n, const struct eval_gen_opts *o,
                  struct eval_answers *a, struct pl_err *err);
void eval_answers_release(struct eval_answers *a);

/* Load the frozen model and tokenizer of folder dir for generation and scoring with a KV cache
 * (both releasable on failure). Errors: those of ckpt_load_model. */
int eval_load_model(struct gpt *m, struct tok *t, const char *dir, struct pl_err *err);

#endif
