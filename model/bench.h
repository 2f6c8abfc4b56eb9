/* bench: plumb's speed as ratios measured in one run (absolute times drift
 * on shared machines). Two yardsticks, both measured in the same run: the
 * machine's FMA peak (a loop of independent AVX-512, else AVX2, FMAs on every
 * thread) and BLIS's own sgemm rate on exactly the GEMMs of one training step.
 * plumb's forward, scoring pass and training step are reported as achieved
 * FLOP/s and as fractions of both. Every figure is the best of `steps` timed
 * repetitions after one warm-up, for the yardsticks and for plumb alike. */
#ifndef BENCH_H
#define BENCH_H

#include "gpt.h"
#include "pl.h"

struct bench_opts {
    struct gpt_config cfg;
    int batch, seq, steps;
};

struct bench_result {
    struct gpt_config cfg;
    int batch, seq, steps, threads;
    const char *arch;    /* BLIS kernel set in use */
    double sgemm_gflops; /* BLIS on the training step's GEMM shapes */
    double peak_gflops;  /* FMA peak on all threads */
    /* mfu: fraction of sgemm_gflops; peak: fraction of peak_gflops. forward runs on the
     * trainable model (the training step's forward); score is a frozen model's forward with
     * per-token log-probs, as scoring and evaluation run it. */
    double fwd_tokens_per_s, fwd_gflops, fwd_mfu, fwd_peak;
    double score_tokens_per_s, score_gflops, score_mfu, score_peak;
    double train_tokens_per_s, train_gflops, train_mfu, train_peak;
    /* Generation (bench_generate; 0 when not run): tokens/s of sample_generate
     * sampling gen_new tokens after prompts of gen_prompt tokens, for one
     * prompt and for 32 at once, with a vocabulary of gen_vocab. */
    int gen_prompt, gen_new, gen_vocab;
    double gen_b1_tokens_per_s, gen_b32_tokens_per_s;
};

/* The FMA peak of the threads in use, in GFLOP/s (2 FLOPs an FMA), best of `steps`
 * runs of a short loop (about 10^9 FMAs). */
double bench_fma_peak(int steps);

/* Run the model and GEMM benchmarks for one shape, the FMA peak included. Errors: PL_EINVAL,
 * PL_ENOMEM. */
int bench_model(const struct bench_opts *o, struct bench_result *r, struct pl_err *err);

/* Then, into the same result: generation with a KV cache on the same shape
 * (context at least 128), prompts of 64 random tokens, 64 new tokens each
 * sampled at temperature 1 with no end token, best of `steps` runs of the
 * whole (prefill and decode). Errors: PL_EINVAL, PL_ENOMEM. */
int bench_generate(const struct bench_opts *o, struct bench_result *r, struct pl_err *err);

/* The result as a JSON object (caller frees with pl_free):
 * {"shape": {...}, "blis": {"arch", "threads", "sgemm_gflops"}, "fma_peak_gflops",
 *  "forward", "score", "train": each {"tokens_per_s", "gflops", "mfu", "peak"},
 *  "generate": {"prompt", "new_tokens", "vocab_size", "b1": {"tokens_per_s"},
 *               "b32": {"tokens_per_s"}}}
 * ("generate" only after bench_generate). */
char *bench_json(const struct bench_result *r);

/* A few lines of plain text for a terminal (caller frees with pl_free). */
char *bench_text(const struct bench_result *r);

#endif
