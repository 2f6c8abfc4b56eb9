#include "ppo.h"

#include "args.h"
#include "train.h"

#include "model/io.h"
#include "rlhf/bon.h"
#include "rlhf/ppo.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct ppo_args {
    struct ppo_opts o;
    const char *kl_estimator;
    double top_p;
    int top_k;
    struct cmd_list stop;
};

static const char *ppo_check(void *ctx)
{
    struct ppo_args *a = ctx;
    if (a->top_k != 0 || a->top_p != 1.0)
        return "rollouts sample the policy's whole distribution (temperature only): top-k and "
               "top-p would make the KL estimate dishonest";
    if (strcmp(a->kl_estimator, "k1") != 0 && strcmp(a->kl_estimator, "k3") != 0)
        return "option '--kl-estimator' is k1 or k3";
    if (a->o.minibatch > a->o.batch)
        return "option '--minibatch' is larger than '--batch'";
    return NULL;
}

/* The run folder must not be one the run reads. */
static const char *same_as_input(const struct ppo_opts *o)
{
    const char *in[] = {o->policy, o->reward, o->value, o->prompts, o->eval_prompts};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++)
        if (in[i] && (strcmp(in[i], o->train.out) == 0 || io_same_file(in[i], o->train.out)))
            return in[i];
    return NULL;
}

int cmd_ppo(int argc, char **argv)
{
    struct ppo_args a = {.kl_estimator = "k1", .top_p = 1.0};
    struct ppo_opts *o = &a.o;
    ppo_opts_default(o);
    o->train.version = CMD_VERSION;
    o->train.log = stderr;
    struct cmd_engine e = {0};
    const struct cmd_opt opts[] = {
        {"--policy", CMD_STR, &o->policy, 0, 0, "DIR",
         "starting policy (an SFT model); also the frozen reference", true},
        {"--reward", CMD_STR, &o->reward, 0, 0, "DIR", "reward model (plumb rm train)", true},
        {"--value", CMD_STR, &o->value, 0, 0, "DIR",
         "value model's starting folder (the reward model)", false},
        {"--prompts", CMD_STR, &o->prompts, 0, 0, "FILE", "prompts {\"id\", \"prompt\"} (JSONL)",
         true},
        {"--eval-prompts", CMD_STR, &o->eval_prompts, 0, 0, "FILE",
         "held-out prompts: mean reward and KL per response at the start and every "
         "--eval-every iterations",
         false},
        {"--eval-every", CMD_LONG, &o->eval_every, 0, 1e12, "N",
         "iterations between held-out evaluations, 0: never (10)", false},
        {"--out", CMD_STR, &o->train.out, 0, 0, "DIR",
         "run folder: the policy, its value model in DIR/value, metrics.jsonl", true},
        {"--iterations", CMD_LONG, &o->iterations, 1, 1e9, "N",
         "rollout-and-update iterations (20)", false},
        {"--batch", CMD_INT, &o->batch, 1, 1 << 16, "N", "prompts per rollout (32)", false},
        {"--minibatch", CMD_INT, &o->minibatch, 1, 1 << 16, "N",
         "responses per optimizer step (8)", false},
        {"--ppo-epochs", CMD_INT, &o->ppo_epochs, 1, 1000, "N", "passes over each rollout (4)",
         false},
        {"--max-new-tokens", CMD_INT, &o->max_new_tokens, 1, 1 << 20, "N",
         "longest response (48)", false},
        {"--temperature", CMD_FLOAT, &o->temperature, 1e-3, 100, "T",
         "rollout temperature, also used for the log-probs trained on (1)", false},
        {"--top-k", CMD_INT, &a.top_k, 0, 1 << 30, "K", "refused: rollouts keep every token",
         false},
        {"--top-p", CMD_REAL, &a.top_p, 0, 1, "P", "refused: rollouts keep every token", false},
        {"--stop", CMD_LIST, &a.stop, 0, 0, "S", "stop string that ends a response (repeatable)",
         false},
        {"--kl-coef", CMD_REAL, &o->kl.beta, 0, 1e6, "X",
         "beta: weight of the per-token KL penalty, the start with --target-kl (0.2)", false},
        {"--target-kl", CMD_REAL, &o->kl.target, 0, 1e6, "X",
         "adapt beta toward this KL per response in nats (0: fixed beta)", false},
        {"--kl-horizon", CMD_REAL, &o->kl.horizon, 1, 1e12, "N",
         "adaptive controller's horizon in responses (10000)", false},
        {"--kl-estimator", CMD_STR, &a.kl_estimator, 0, 0, "k1|k3",
         "per-token KL estimate in the reward (k1)", false},
        {"--gamma", CMD_REAL, &o->gamma, 0, 1, "X", "discount (1)", false},
        {"--lam", CMD_REAL, &o->lambda, 0, 1, "X", "GAE lambda (0.95)", false},
        {"--cliprange", CMD_REAL, &o->cliprange, 1e-6, 10, "X", "policy ratio clip (0.2)", false},
        {"--cliprange-value", CMD_REAL, &o->cliprange_value, 1e-6, 1e6, "X",
         "value clip around the rollout's values (0.2)", false},
        {"--vf-coef", CMD_REAL, &o->vf_coef, 0, 1e6, "X", "weight of the value loss (0.1)", false},
        {"--ratio-guard", CMD_REAL, &o->ratio_guard, 1.0001, 1e12, "X",
         "skip a minibatch whose mean ratio exceeds this (10)", false},
        {"--missing-eos-penalty", CMD_REAL, &o->missing_eos_penalty, 0, 1e6, "X",
         "subtracted from the score of a response that hits the token limit (0)", false},
        {"--kl-warn", CMD_REAL, &o->kl_warn, 1e-9, 1e12, "X",
         "warn when the mean KL per response exceeds this (10)", false},
        {"--sample-every", CMD_LONG, &o->sample_every, 0, 1e12, "N",
         "print sample responses every N iterations, 0: never (10)", false},
        {"--save-every", CMD_LONG, &o->save_every, 0, 1e12, "N",
         "checkpoint every N iterations, 0: only at the end (10)", false},
        {"--seed", CMD_U64, &o->seed, 0, 0, "N", "rollouts, prompt order, minibatches (1)", false},
        {"--lr", CMD_FLOAT, &o->optim.lr, 1e-12, 10, "X", "policy learning rate (1e-5)", false},
        {"--value-lr", CMD_FLOAT, &o->voptim.lr, 1e-12, 10, "X", "value model learning rate (1e-5)",
         false},
        {"--warmup", CMD_LONG, &o->optim.warmup, 0, 1e12, "N", "linear warmup steps of both (0)",
         false},
        {"--clip", CMD_FLOAT, &o->optim.clip, 0, 1e9, "X",
         "gradient norm limit of each model, 0: none (1)", false},
        {"--skip-bad-lines", CMD_FLAG, &o->skip_bad_lines, 0, 0, NULL,
         "skip and count malformed prompts", false},
        {"--resume", CMD_FLAG, &o->train.resume, 0, 0, NULL,
         "continue --out's run (or extend it to more --iterations)", false},
        {"--force", CMD_FLAG, &o->train.force, 0, 0, NULL,
         "train into a non-empty --out, removing an older run's files", false},
        CMD_ENGINE_OPTS(&e),
    };
    const struct cmd_spec spec = {"ppo", "RLHF: PPO of a policy against a reward model",
                                  opts,  sizeof opts / sizeof *opts,
                                  ppo_check, &a};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    const char *same = same_as_input(o);
    if (same)
        return cmd_usage(&spec, "option '--out': '%s' is also an input", same);
    if ((rc = cmd_engine_start(&e)))
        return rc;
    o->kl_estimator = strcmp(a.kl_estimator, "k3") == 0 ? PPO_KL_K3 : PPO_KL_K1;
    o->voptim.warmup = o->optim.warmup;
    o->voptim.clip = o->optim.clip;
    o->stop = a.stop.v;
    o->n_stop = a.stop.n;
    struct pl_err err = {0};
    struct ppo_result res;
    rc = ppo_run(o, &res, &err);
    if (rc)
        return cmd_fail(&err, rc);
    printf("%s: iteration %ld, reward %.4f, KL %.3f nats per response, beta %.4g, %ld "
           "minibatches skipped, %.1f s\n",
           o->train.out, res.iterations, res.score, res.kl, res.beta, res.skipped,
           res.train.seconds);
    if (o->eval_prompts && o->eval_every > 0)
        printf("%s: held out: reward %.4f -> %.4f, KL %.3f nats per response\n", o->train.out,
               res.eval_reward_first, res.eval_reward, res.eval_kl);
    return 0;
}

/* A record plumb bon writes. */
static bool bon_record(const cJSON *v, const void *ctx)
{
    (void)ctx;
    return cJSON_HasObjectItem(v, "completions") && cJSON_HasObjectItem(v, "candidate_rewards");
}

int cmd_bon(int argc, char **argv)
{
    struct bon_opts o;
    bon_opts_default(&o);
    bool force = false;
    o.log = stderr;
    struct cmd_list stop = {0};
    struct cmd_engine e = {0};
    const struct cmd_opt opts[] = {
        {"--policy", CMD_STR, &o.policy, 0, 0, "DIR", "model that samples", true},
        {"--reward", CMD_STR, &o.reward, 0, 0, "DIR", "reward model that picks", true},
        {"--prompts", CMD_STR, &o.prompts, 0, 0, "FILE", "prompts {\"id\", \"prompt\"} (JSONL)",
         true},
        {"--out", CMD_STR, &o.out, 0, 0, "FILE", "samples file of the best completions", true},
        {"-n", CMD_INT, &o.n, 1, 1024, "N", "completions per prompt (4)", false},
        {"--temperature", CMD_FLOAT, &o.temperature, 1e-3, 100, "T", "sampling temperature (1)",
         false},
        {"--max-new-tokens", CMD_INT, &o.max_new_tokens, 1, 1 << 20, "N",
         "longest completion (48)", false},
        {"--stop", CMD_LIST, &stop, 0, 0, "S", "stop string (repeatable)", false},
        {"--seed", CMD_U64, &o.seed, 0, 0, "N", "sampling seed (1)", false},
        {"--batch", CMD_INT, &o.batch, 1, 1 << 16, "N", "sequences decoded at once (32)", false},
        {"--skip-bad-lines", CMD_FLAG, &o.skip_bad_lines, 0, 0, NULL,
         "skip and count malformed prompts", false},
        {"--force", CMD_FLAG, &force, 0, 0, NULL,
         "replace an --out file that holds something other than best-of-n records", false},
        CMD_ENGINE_OPTS(&e),
    };
    const struct cmd_spec spec = {"bon", "best-of-n: keep the completion the reward model prefers",
                                  opts,  sizeof opts / sizeof *opts,
                                  NULL,  NULL};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (io_same_file(o.prompts, o.out))
        return cmd_usage(&spec, "option '--out': '%s' is also the prompts file", o.out);
    if (!cmd_may_replace(&spec, o.out, force, bon_record, NULL))
        return 1;
    if ((rc = cmd_engine_start(&e)))
        return rc;
    o.stop = stop.v;
    o.n_stop = stop.n;
    struct pl_err err = {0};
    struct bon_result res;
    rc = bon_run(&o, &res, &err);
    if (rc)
        return cmd_fail(&err, rc);
    printf("%s: %ld prompts, best-of-%d reward %.4f (one sample %.4f), %.1f s\n", o.out,
           res.prompts, o.n, res.best, res.sample, res.seconds);
    return 0;
}
