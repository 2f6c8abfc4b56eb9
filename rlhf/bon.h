/* bon: best-of-n sampling against a reward model, the baseline every PPO run is compared with:
 * n completions per prompt from the policy (temperature sampling through model/sample.h, the
 * same seeds as `plumb sample`), each scored by the reward model's one read-out (reward/rm.h),
 * the highest kept.
 *
 * The output is a samples file (DESIGN.md section 5) whose one completion per prompt is the best,
 * so that anything reading samples (`plumb eval world --input`, `plumb simlabel`) reads it:
 * {"id", "prompt", "completions": [best], "rewards": [its reward], "best": k,
 *  "candidates": [all n texts], "candidate_rewards": [...], "model"}. It is written atomically
 * (a kill leaves no partial file; a rerun starts over). */
#ifndef BON_H
#define BON_H

#include "model/pl.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct bon_opts {
    const char *policy, *reward, *prompts, *out;
    int n;              /* completions per prompt (4) */
    float temperature;  /* > 0 (1) */
    int max_new_tokens; /* (48) */
    const char *const *stop;
    int n_stop;
    uint64_t seed; /* (1) */
    int batch;     /* sequences decoded at once; rounded up to a multiple of n (32) */
    bool skip_bad_lines;
    FILE *log; /* progress display; NULL: none */
};
void bon_opts_default(struct bon_opts *o);

struct bon_result {
    long prompts;
    double best;   /* mean reward of the kept completions */
    double sample; /* mean reward of all completions: what one sample scores on average */
    double seconds;
};

/* Errors: those of loading the models (ckpt_load_model, rm_load) and prompts, of sampling and
 * scoring; PL_EINVAL for bad options; PL_EIO writing out. */
int bon_run(const struct bon_opts *o, struct bon_result *res, struct pl_err *err);

#endif
