#include "bench.h"

#include "args.h"
#include "bench_mpi.h"

#include "model/bench.h"
#include "model/ckpt.h"
#include "model/io.h"
#include "model/tok.h"
#include "rlhf/ppo.h"
#include "trainer/dist.h"

#include <stdlib.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The two shapes of the README's speed tables: 4 layers x 256 with the byte vocabulary, and
 * GPT-2 124M. */
static void bench_shape(struct gpt_config *c, bool small)
{
    gpt_config_gpt2(c);
    if (small) {
        c->n_layer = 4;
        c->n_embd = 256;
        c->n_head = 4;
        c->vocab_size = 256;
        c->bos_token_id = c->eos_token_id = 255;
        snprintf(c->tokenizer, sizeof c->tokenizer, "byte");
    }
}

/* GPT-2 BPE encode speed: the tokenizer in vocab_dir encodes the whole of text_path, best of
 * `reps`, in MB (10^6 bytes) per second on one thread. */
static int tokenizer_rate(const char *vocab_dir, const char *text_path, int reps, double *mb_per_s,
                          struct pl_err *err)
{
    struct tok t;
    struct tok_buf buf = {0};
    char *text = NULL;
    size_t len = 0;
    int rc = tok_load(&t, vocab_dir, err);
    if (!rc && t.kind != TOK_BPE)
        rc = pl_errf(err, PL_ENOTFOUND, "'%s' holds no GPT-2 vocabulary", vocab_dir);
    if (!rc)
        rc = io_read_file(text_path, &text, &len, err);
    double best = 1e30;
    for (int rep = 0; !rc && rep <= reps; rep++) {
        buf.n = 0;
        double t0 = pl_now();
        rc = tok_encode(&t, &buf, text, len, 0, err);
        double dt = pl_now() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    if (!rc)
        *mb_per_s = (double)len / best / 1e6;
    tok_buf_release(&buf);
    pl_free(text);
    tok_release(&t);
    return rc;
}

/* ---- one PPO iteration ---- */

static int save_random(const struct gpt_config *cfg, bool head, const char *dir, uint64_t seed,
                       struct pl_err *err)
{
    struct gpt m;
    struct gpt_opts o = {.max_batch = 1, .max_seq = 1, .score_head = head};
    int rc = gpt_init(&m, cfg, &o, err);
    if (rc == PL_OK) {
        gpt_init_weights(&m, seed);
        rc = ckpt_save(&m, dir, err);
    }
    gpt_release(&m);
    return rc;
}

struct ppo_bench {
    double gen_s, score_s, update_s, tokens_per_s;
};

/* A PPO iteration on the 4 x 256 byte shape at batch 32 (48 new tokens, minibatch 8, 4 epochs),
 * randomly initialised policy and reward model in a temporary folder: the second of three
 * iterations, timed whole and split into generation, scoring (reference, value, reward) and
 * update (forwards, backwards, clipping and AdamW of both models). */
static int bench_ppo(struct ppo_bench *b, struct pl_err *err)
{
    char dir[] = "/tmp/plumb-bench-ppo-XXXXXX";
    if (!mkdtemp(dir))
        return pl_errf(err, PL_EIO, "cannot make a temporary folder: %s", strerror(errno));
    struct gpt_config cfg;
    bench_shape(&cfg, true);
    cfg.vocab_size = 257;
    cfg.bos_token_id = cfg.eos_token_id = 256;
    cfg.n_positions = 128;
    char *policy = io_path_join(dir, "policy"), *reward = io_path_join(dir, "reward");
    char *prompts = io_path_join(dir, "prompts.jsonl"), *out = io_path_join(dir, "run");
    struct pl_buf text = {0};
    for (int i = 0; i < 32; i++)
        pl_buf_printf(&text, "{\"id\": \"%d\", \"prompt\": \"User: What is the capital of "
                             "place number %d?\\nAssistant:\"}\n",
                      i, i);
    int rc = policy && reward && prompts && out && !text.oom ? PL_OK : pl_oom(err, "paths");
    if (rc == PL_OK)
        rc = io_write_atomic(prompts, text.p, text.len, err);
    if (rc == PL_OK)
        rc = save_random(&cfg, false, policy, 1, err);
    if (rc == PL_OK)
        rc = save_random(&cfg, true, reward, 2, err);
    struct ppo_opts o;
    ppo_opts_default(&o);
    o.policy = policy;
    o.reward = reward;
    o.prompts = prompts;
    o.train.out = out;
    o.train.version = CMD_VERSION;
    o.iterations = 3;
    o.save_every = 0;
    o.sample_every = 0;
    struct ppo_result res;
    if (rc == PL_OK)
        rc = ppo_run(&o, &res, err);
    if (rc == PL_OK)
        *b = (struct ppo_bench){res.timing.gen_s, res.timing.score_s, res.timing.update_s,
                                (double)res.timing.tokens / res.timing.wall_s};
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0 && rc == PL_OK)
        rc = pl_errf(err, PL_EIO, "cannot remove '%s'", dir);
    pl_free(policy);
    pl_free(reward);
    pl_free(prompts);
    pl_free(out);
    pl_buf_release(&text);
    return rc;
}

static void print_ppo(const struct ppo_bench *b, bool json)
{
    double total = b->gen_s + b->score_s + b->update_s;
    if (json) {
        printf(",{\"ppo_iteration\":{\"shape\":\"4x256 byte, batch 32, 48 new tokens\","
               "\"generation_s\":%.4f,\"scoring_s\":%.4f,\"update_s\":%.4f,"
               "\"tokens_per_s\":%.1f}}",
               b->gen_s, b->score_s, b->update_s, b->tokens_per_s);
        return;
    }
    printf("ppo iteration (4x256 byte, batch 32, 48 new tokens, 4 epochs of minibatch 8): "
           "generation %.3f s (%.0f%%), scoring %.3f s (%.0f%%: reference, value, reward), "
           "update %.3f s (%.0f%%); %.0f tokens/s\n",
           b->gen_s, 100 * b->gen_s / total, b->score_s, 100 * b->score_s / total, b->update_s,
           100 * b->update_s / total, b->tokens_per_s);
}

struct bench_args {
    const char *config, *tok_dir, *tok_text;
    int batch, seq, steps;
    bool json;
    bool mpi; /* the data-parallel scaling instead (cmd/bench_mpi.h) */
    struct cmd_engine engine;
};

/* One shape: model and generation rates, printed as they come (a long run shows progress). */
static int bench_one(const struct bench_args *a, const struct gpt_config *cfg, bool builtin,
                     bool first, struct pl_err *err)
{
    struct bench_opts o = {.cfg = *cfg, .batch = a->batch, .seq = a->seq, .steps = a->steps};
    if (o.cfg.n_positions < a->seq)
        o.cfg.n_positions = a->seq;
    /* Generation is measured with GPT-2's vocabulary on the built-in shapes: its LM head is most
     * of a decode step's work. */
    struct bench_opts g = o;
    if (builtin) {
        g.cfg.vocab_size = 50257;
        g.cfg.bos_token_id = g.cfg.eos_token_id = 50256;
        snprintf(g.cfg.tokenizer, sizeof g.cfg.tokenizer, "gpt2");
    }
    struct bench_result r;
    int rc = bench_model(&o, &r, err);
    if (!rc)
        rc = bench_generate(&g, &r, err);
    if (rc)
        return rc;
    char *text = a->json ? bench_json(&r) : bench_text(&r);
    if (!text)
        return pl_oom(err, "benchmark report");
    printf(a->json ? "%s%s" : "%s%s\n", a->json && !first ? "," : "", text);
    fflush(stdout);
    pl_free(text);
    return PL_OK;
}

int cmd_bench(int argc, char **argv)
{
    /* GPT-2's vocabulary and a corpus from the shared datasets, when they are there. */
    char tok_dir[4096], tok_text[4096];
    struct pl_err err = {0};
    if (!cmd_dataset_path(tok_dir, sizeof tok_dir, "gpt2-bpe") ||
        !cmd_dataset_path(tok_text, sizeof tok_text, "tinyshakespeare/input.txt"))
        return cmd_fail(&err, pl_errf(&err, PL_EINVAL, "PLUMB_SHARED_DATASETS is too long"));
    struct bench_args a = {
        .tok_dir = tok_dir, .tok_text = tok_text, .batch = 4, .seq = 256, .steps = 3};
    const struct cmd_opt opts[] = {
        {"--config", CMD_STR, &a.config, 0, 0, "JSON",
         "one shape in config.json's fields (default: the README's two shapes)", false},
        {"--batch", CMD_INT, &a.batch, 1, 4096, "B", "sequences a step (4)", false},
        {"--seq", CMD_INT, &a.seq, 1, 1 << 20, "T", "tokens a sequence (256)", false},
        {"--steps", CMD_INT, &a.steps, 1, 1000000, "N", "timed repetitions, best kept (3)", false},
        {"--tok-dir", CMD_STR, &a.tok_dir, 0, 0, "DIR",
         "GPT-2 vocabulary for the tokenizer figure (shared datasets' gpt2-bpe)", false},
        {"--tok-text", CMD_STR, &a.tok_text, 0, 0, "FILE",
         "text the tokenizer encodes (shared datasets' tinyshakespeare)", false},
        {"--json", CMD_FLAG, &a.json, 0, 0, NULL, "one JSON array instead of text", false},
        {"--mpi", CMD_FLAG, &a.mpi, 0, 0, NULL,
         "training step scaling from 1 to N ranks (under mpirun -np N) and bytes summed a step",
         false},
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "bench",
        .summary = "speed against BLIS's own sgemm rate, as ratios measured in one run",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    bool tok_given = a.tok_dir != tok_dir || a.tok_text != tok_text;
    struct gpt_config shapes[2];
    int n_shapes = 0;
    if (a.config) {
        rc = ckpt_config_parse(a.config, "--config", &shapes[n_shapes++], &err);
        if (rc && rc != PL_ENOMEM)
            return cmd_usage(&spec, "%s", err.msg);
        if (rc)
            return cmd_fail(&err, rc);
    } else {
        bench_shape(&shapes[n_shapes++], true);
        bench_shape(&shapes[n_shapes++], false);
    }
    if ((rc = cmd_engine_start(&a.engine)))
        return rc;
    if (a.mpi) {
        rc = cmd_bench_mpi(shapes, n_shapes, a.batch, a.seq, a.steps, a.json, &err);
        return rc ? cmd_fail(&err, rc) : 0;
    }
    if (dist_size() > 1)
        return cmd_usage(&spec, "runs as one process; under mpirun it takes --mpi");
    if (a.json)
        printf("[");
    for (int s = 0; s < n_shapes; s++)
        if ((rc = bench_one(&a, &shapes[s], !a.config, s == 0, &err)))
            return cmd_fail(&err, rc);
    if (!a.config) {
        struct ppo_bench pb = {0};
        if ((rc = bench_ppo(&pb, &err)))
            return cmd_fail(&err, rc);
        print_ppo(&pb, a.json);
        fflush(stdout);
    }
    double mb_s = 0.0;
    rc = tokenizer_rate(a.tok_dir, a.tok_text, a.steps, &mb_s, &err);
    if (rc && tok_given)
        return cmd_fail(&err, rc);
    if (rc)
        fprintf(stderr, "plumb bench: tokenizer not measured: %s\n", err.msg);
    else if (a.json)
        printf(",{\"tokenizer\":{\"kind\":\"gpt2-bpe\",\"mb_per_s\":%.3f}}", mb_s);
    else
        printf("tokenizer: GPT-2 BPE encodes %s at %.1f MB/s (one thread)\n", a.tok_text, mb_s);
    if (a.json)
        printf("]\n");
    if (fflush(stdout) != 0 || ferror(stdout))
        return cmd_fail(&err, pl_errf(&err, PL_EIO, "cannot write the standard output"));
    return 0;
}
