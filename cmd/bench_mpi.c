#include "bench_mpi.h"

#include "model/tensor.h"
#include "trainer/dist.h"

#include <math.h>
#include <stdio.h>

/* One timing: the best step and what it spent summing gradients. */
struct step_timing {
    const struct gpt_config *cfg;
    int batch, seq, steps;
    double step_s, sum_s; /* best step, its gradient sum (waiting for the slowest rank too) */
    double alone_s;       /* best gradient sum alone, the ranks in step: the transfer itself */
    uint64_t bytes;       /* summed over the ranks in that step */
};

/* The training step as train_run takes it, on random tokens (a new stream each rank). */
static int time_steps(void *ctx, struct pl_err *err)
{
    struct step_timing *s = ctx;
    struct gpt m;
    struct gpt_opts go = {.trainable = true, .max_batch = s->batch, .max_seq = s->seq};
    size_t n = (size_t)s->batch * s->seq;
    int *tokens = pl_malloc(2 * n * sizeof *tokens);
    int rc = tokens ? gpt_init(&m, s->cfg, &go, err) : pl_oom(err, "benchmark tokens");
    if (rc) {
        pl_free(tokens);
        return rc;
    }
    gpt_init_weights(&m, 1);
    struct pl_rng r;
    pl_rng_seed(&r, 7 + (uint64_t)dist_rank());
    for (size_t i = 0; i < 2 * n; i++)
        tokens[i] = (int)(pl_rng_next(&r) % (uint64_t)s->cfg->vocab_size);
    struct gpt_batch b = {.B = s->batch, .T = s->seq, .tokens = tokens, .targets = tokens + n};
    struct gpt_adamw hp = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    s->step_s = INFINITY;
    for (int i = 0; rc == PL_OK && i <= s->steps; i++) {
        double t0 = pl_now();
        gpt_zero_grad(&m);
        if ((rc = gpt_forward(&m, &b, err)))
            break;
        gpt_backward_lm(&m, 1.0f / (float)dist_size());
        double t1 = pl_now();
        uint64_t bytes = dist_bytes();
        if ((rc = dist_sum_floats(m.grads, m.n_params, 1.0f, err)))
            break;
        double t2 = pl_now();
        gpt_clip_grad(&m, 1.0f);
        gpt_adamw_step(&m, &hp);
        double dt = pl_now() - t0;
        if (i > 0 && dt < s->step_s) {
            s->step_s = dt;
            s->sum_s = t2 - t1;
            s->bytes = dist_bytes() - bytes;
        }
    }
    s->alone_s = INFINITY;
    for (int i = 0; rc == PL_OK && dist_size() > 1 && i < s->steps; i++) {
        double sync = 0.0;
        if ((rc = dist_sum_doubles(&sync, 1, err)))
            break;
        double t0 = pl_now();
        rc = dist_sum_floats(m.grads, m.n_params, 1.0f, err);
        s->alone_s = fmin(s->alone_s, pl_now() - t0);
    }
    gpt_release(&m);
    pl_free(tokens);
    return rc;
}

/* Floats in a model of cfg (counted by allocating it frozen, without activations to speak of). */
static int count_params(const struct gpt_config *cfg, size_t *n, struct pl_err *err)
{
    struct gpt m;
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = gpt_init(&m, cfg, &go, err);
    *n = rc ? 0 : m.n_params;
    gpt_release(&m);
    return rc;
}

int cmd_bench_mpi(const struct gpt_config *shapes, int n_shapes, int batch, int seq, int steps,
                  bool json, struct pl_err *err)
{
    struct gpt_config cfg = shapes[0];
    if (cfg.n_positions < seq)
        cfg.n_positions = seq;
    int N = dist_size();
    struct step_timing one = {&cfg, batch, seq, steps, 0, 0, 0, 0}, all = one;
    int rc = dist_solo(time_steps, &one, err);
    if (rc == PL_OK && N > 1)
        rc = time_steps(&all, err);
    if (rc)
        return rc;
    double tok1 = (double)batch * seq / one.step_s, tokN = N * (double)batch * seq / all.step_s;
    if (json) {
        printf("{\"mpi\": {\"ranks\": %d, \"threads_per_rank\": %d, \"shape\": {\"n_layer\": %d, "
               "\"n_embd\": %d, \"vocab_size\": %d, \"batch\": %d, \"seq\": %d}, "
               "\"one_rank\": {\"tokens_per_s\": %.1f, \"step_s\": %.4f}",
               N, tensor_threads(), cfg.n_layer, cfg.n_embd, cfg.vocab_size, batch, seq, tok1,
               one.step_s);
        if (N > 1)
            printf(", \"all_ranks\": {\"tokens_per_s\": %.1f, \"step_s\": %.4f, "
                   "\"gradient_sum_s\": %.4f, \"gradient_sum_alone_s\": %.4f, \"bytes\": %llu}, "
                   "\"efficiency\": %.3f",
                   tokN, all.step_s, all.sum_s, all.alone_s, (unsigned long long)all.bytes,
                   tokN / (N * tok1));
        printf(", \"volume\": [");
    } else {
        printf("mpi: %d rank%s, %d thread%s each; %d layers x %d wide, vocab %d, batch %d x %d "
               "tokens a rank\n  1 rank:  %.0f tokens/s (step %.3f s)\n",
               N, N > 1 ? "s" : "", tensor_threads(), tensor_threads() > 1 ? "s" : "", cfg.n_layer,
               cfg.n_embd, cfg.vocab_size, batch, seq, tok1, one.step_s);
        if (N > 1)
            printf("  %d ranks: %.0f tokens/s (step %.3f s, of which %.3f s summing %.1f MB of "
                   "gradients and waiting;\n           the sum alone, ranks in step, %.3f s)\n"
                   "  scaling efficiency %.3f (tokens/s at %d ranks / (%d x tokens/s at 1))\n",
                   N, tokN, all.step_s, all.sum_s, all.bytes / 1e6, all.alone_s, tokN / (N * tok1),
                   N, N);
        else
            printf("  (run it under `mpirun -np 2` for the scaling efficiency)\n");
        printf("summed over the ranks each step (each rank sends and receives about twice this "
               "in a ring):\n");
    }
    for (int i = 0; i < n_shapes; i++) {
        size_t n = 0;
        if ((rc = count_params(&shapes[i], &n, err)))
            return rc;
        /* PPO trains two models: the policy and a value model with a scalar head. */
        double one_model = 4.0 * (double)n, ppo = 4.0 * (2.0 * (double)n + shapes[i].n_embd);
        if (json)
            printf("%s{\"n_layer\": %d, \"n_embd\": %d, \"vocab_size\": %d, \"params\": %zu, "
                   "\"bytes\": %.0f, \"ppo_bytes\": %.0f}",
                   i ? ", " : "", shapes[i].n_layer, shapes[i].n_embd, shapes[i].vocab_size, n,
                   one_model, ppo);
        else
            printf("  %d layers x %d wide, vocab %d (%.2fM parameters): %.1f MB a step "
                   "(pretrain, sft, rm train), %.1f MB a PPO minibatch (policy and value)\n",
                   shapes[i].n_layer, shapes[i].n_embd, shapes[i].vocab_size, n / 1e6,
                   one_model / 1e6, ppo / 1e6);
    }
    if (json)
        printf("]}}\n");
    return PL_OK;
}
