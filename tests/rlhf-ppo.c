/* PPO: the KL estimators (exact sampling), the adaptive controller, GAE and whitening against
 * hand-computed values, the clipped losses' gradients against finite differences, distinct-2,
 * rollout log-probs against a full forward, a bandit whose optimum is known, exact resume after
 * SIGKILL, best-of-n, and the command's bad input. Tiny byte-level models, one thread. */
#include "rlhf/bon.h"
#include "rlhf/ppo.h"

#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the pieces ---- */

static void test_kl(void)
{
    tap_is_float(ppo_kl(PPO_KL_K1, -1.0, -1.5), 0.5, 1e-12, "k1 is logp - logp_ref");
    /* r = p_ref / p = e^-0.5: (r - 1) - log r = e^-0.5 - 1 + 0.5 */
    tap_is_float(ppo_kl(PPO_KL_K3, -1.0, -1.5), exp(-0.5) - 0.5, 1e-12,
                 "k3 is (r - 1) - log r with r = p_ref / p");
    tap_ok(ppo_kl(PPO_KL_K3, -2.0, -0.5) > 0.0 && ppo_kl(PPO_KL_K1, -2.0, -0.5) < 0.0,
           "a token the reference likes more: k1 negative, k3 positive");

    /* Sample exactly from p and estimate KL(p || q) from the draws. */
    const double p[4] = {0.5, 0.25, 0.15, 0.10}, q[4] = {0.25, 0.25, 0.25, 0.25};
    double kl = 0.0;
    for (int i = 0; i < 4; i++)
        kl += p[i] * log(p[i] / q[i]);
    struct pl_rng r;
    pl_rng_seed(&r, 11);
    const int N = 20000;
    double s1 = 0.0, q1 = 0.0, s3 = 0.0;
    for (int n = 0; n < N; n++) {
        double u = pl_rng_uniform(&r), c = 0.0;
        int x = 0;
        while (x < 3 && u >= c + p[x])
            c += p[x++];
        double k1 = ppo_kl(PPO_KL_K1, log(p[x]), log(q[x]));
        s1 += k1;
        q1 += k1 * k1;
        s3 += ppo_kl(PPO_KL_K3, log(p[x]), log(q[x]));
    }
    double m1 = s1 / N, se = sqrt((q1 / N - m1 * m1) / N), m3 = s3 / N;
    tap_ok(m1 > -3.0 * se && fabs(m1 - kl) < 4.0 * se,
           "k1's mean over exact samples is non-negative and the true KL: %.4f +- %.4f (KL %.4f)",
           m1, se, kl);
    tap_ok(fabs(m3 - kl) < 0.02, "so is k3's: %.4f", m3);
}

static void test_controller(void)
{
    struct ppo_kl_ctl c = {.beta = 0.2, .target = 6.0, .horizon = 10000.0};
    ppo_kl_update(&c, 9.0, 32);
    tap_is_float(c.beta, 0.2 * (1.0 + 0.2 * 32.0 / 10000.0), 1e-15,
                 "KL above target: beta grows by the clipped error times n / horizon");
    c.beta = 0.2;
    ppo_kl_update(&c, 5.4, 100);
    tap_is_float(c.beta, 0.2 * (1.0 - 0.1 * 100.0 / 10000.0), 1e-15,
                 "KL below target within the clip: beta shrinks by (kl/target - 1) n / horizon");
    struct ppo_kl_ctl fixed = {.beta = 0.3};
    ppo_kl_update(&fixed, 50.0, 64);
    tap_is_float(fixed.beta, 0.3, 0.0, "a fixed beta stays");
}

static void test_gae(void)
{
    const float rew[3] = {0.0f, -0.1f, 1.0f}, val[3] = {0.5f, 0.2f, 0.3f};
    float adv[3], ret[3];
    ppo_gae(adv, ret, rew, val, 3, 1.0, 0.95);
    /* deltas: 0 + 0.2 - 0.5 = -0.3; -0.1 + 0.3 - 0.2 = 0; 1 + 0 - 0.3 = 0.7
     * adv2 = 0.7; adv1 = 0 + 0.95 * 0.7 = 0.665; adv0 = -0.3 + 0.95 * 0.665 = 0.33175 */
    tap_ok(fabsf(adv[2] - 0.7f) < 1e-6f && fabsf(adv[1] - 0.665f) < 1e-6f &&
               fabsf(adv[0] - 0.33175f) < 1e-6f,
           "GAE: %.5f %.5f %.5f by hand", adv[0], adv[1], adv[2]);
    tap_ok(fabsf(ret[0] - 0.83175f) < 1e-6f && fabsf(ret[2] - 1.0f) < 1e-6f,
           "returns are advantages plus values");
    ppo_gae(adv, ret, rew, val, 3, 0.5, 0.0);
    /* lambda 0: one-step TD errors with gamma 0.5: 0 + 0.1 - 0.5, -0.1 + 0.15 - 0.2, 0.7 */
    tap_ok(fabsf(adv[0] + 0.4f) < 1e-6f && fabsf(adv[1] + 0.15f) < 1e-6f &&
               fabsf(adv[2] - 0.7f) < 1e-6f,
           "lambda 0 gives the one-step TD errors");

    float x[6] = {1.0f, 9.0f, 2.0f, 3.0f, 9.0f, 6.0f};
    const unsigned char mask[6] = {1, 0, 1, 1, 0, 1};
    ppo_whiten(x, mask, 6);
    /* masked values 1 2 3 6: mean 3, unbiased variance (4 + 1 + 0 + 9) / 3 */
    double sd = sqrt(14.0 / 3.0 + 1e-8);
    tap_ok(fabsf(x[0] - (float)(-2.0 / sd)) < 1e-6f && fabsf(x[5] - (float)(3.0 / sd)) < 1e-6f &&
               x[1] == 9.0f && x[4] == 9.0f,
           "whitening uses the masked entries only, with Bessel's correction");
}

/* The clipped losses' derivatives against central differences, away from the kinks. */
static void test_losses(void)
{
    const double advs[] = {1.3, -0.7}, logps[] = {-1.0, -1.1, -0.95, -1.4, -0.6};
    double worst = 0.0;
    int clipped_seen = 0, free_seen = 0;
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < 5; k++) {
            double d, d2, h = 1e-6;
            bool c;
            ppo_policy_loss(logps[k], -1.0, advs[a], 0.2, &d, &c);
            double up = ppo_policy_loss(logps[k] + h, -1.0, advs[a], 0.2, &d2, &c);
            double dn = ppo_policy_loss(logps[k] - h, -1.0, advs[a], 0.2, &d2, &c);
            ppo_policy_loss(logps[k], -1.0, advs[a], 0.2, &d, &c);
            worst = fmax(worst, fabs((up - dn) / (2 * h) - d));
            clipped_seen += c;
            free_seen += !c;
        }
    tap_ok(worst < 1e-6 && clipped_seen > 0 && free_seen > 0,
           "policy loss gradient matches finite differences, clipped and not (worst %.2g)", worst);
    double d;
    bool c;
    double l = ppo_policy_loss(log(1.5), 0.0, 2.0, 0.2, &d, &c);
    tap_ok(fabs(l + 2.0 * 1.2) < 1e-12 && c && d == 0.0,
           "ratio 1.5 with a positive advantage: loss -A * 1.2, clipped, no gradient");
    l = ppo_policy_loss(log(1.5), 0.0, -2.0, 0.2, &d, &c);
    tap_ok(fabs(l - 3.0) < 1e-12 && !c && fabs(d - 3.0) < 1e-12,
           "with a negative advantage the unclipped term wins: loss 3, gradient 3");

    const double vs[] = {0.0, 0.15, 0.5, -0.4, 0.9};
    worst = 0.0;
    clipped_seen = free_seen = 0;
    for (int k = 0; k < 5; k++)
        for (int r = 0; r < 2; r++) {
            double ret = r ? 1.0 : -1.0, dv, d2, h = 1e-6;
            ppo_value_loss(vs[k], 0.1, ret, 0.2, &dv, &c);
            double up = ppo_value_loss(vs[k] + h, 0.1, ret, 0.2, &d2, &c);
            double dn = ppo_value_loss(vs[k] - h, 0.1, ret, 0.2, &d2, &c);
            ppo_value_loss(vs[k], 0.1, ret, 0.2, &dv, &c);
            worst = fmax(worst, fabs((up - dn) / (2 * h) - dv));
            clipped_seen += c;
            free_seen += !c;
        }
    tap_ok(worst < 1e-6 && clipped_seen > 0 && free_seen > 0,
           "value loss gradient matches finite differences, clipped and not (worst %.2g)", worst);
    l = ppo_value_loss(0.9, 0.1, 1.0, 0.2, &d, &c);
    tap_ok(fabs(l - 0.5 * 0.49) < 1e-12 && c && d == 0.0,
           "a value beyond the clip keeps the clipped, larger loss: 0.5 * (0.3 - 1)^2");

    const int tokens[8] = {9, 1, 2, 1, 2, 9, 1, 2}, plen[2] = {1, 1}, rlen[2] = {3, 3};
    uint64_t pairs[8];
    /* rows of width 4: 9|1 2 1 and 2|9 1 2, bigrams (1,2) (2,1) (9,1) (1,2) */
    tap_is_float(ppo_distinct_2(tokens, plen, rlen, 2, 4, pairs), 0.75, 1e-12,
                 "distinct-2: 3 different bigrams of 4");
}

/* ---- runs on tiny models ---- */

/* Copies: tap_tmp's results are reused after 64 calls. */
static char policy_dir[512], reward_dir[512], prompts_path[512];

static void make_model(const char *dir, bool head, uint64_t seed)
{
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt m;
    struct pl_err err = {0};
    tap_model_perturbed(&m, &c, seed);
    if (head) {
        struct gpt h;
        struct gpt_opts o = {.max_batch = 1, .max_seq = 1, .score_head = true};
        if (gpt_init(&h, &c, &o, &err) == PL_OK) {
            gpt_copy_weights(&h, &m);
            struct pl_rng r;
            pl_rng_seed(&r, seed);
            tap_fill(h.w.score, (size_t)c.n_embd, &r, 0.5f);
            if (ckpt_save(&h, dir, &err))
                tap_diag("%s", err.msg);
        }
        gpt_release(&h);
    } else if (ckpt_save(&m, dir, &err)) {
        tap_diag("%s", err.msg);
    }
    gpt_release(&m);
}

static void test_opts(struct ppo_opts *o, const char *out)
{
    ppo_opts_default(o);
    o->policy = policy_dir;
    o->reward = reward_dir;
    o->prompts = prompts_path;
    o->train.out = out;
    o->train.version = "test";
    o->batch = 8;
    o->minibatch = 4;
    o->ppo_epochs = 2;
    o->max_new_tokens = 6;
    o->iterations = 3;
    o->save_every = 1;
}

/* The sampler's per-token log-probs are the policy's own: at iteration 0 the reference is the
 * policy, so its full-forward log-probs must match the rollout's. */
static void test_rollout_logp(float temperature)
{
    struct ppo_opts o;
    test_opts(&o, tap_tmp("unused"));
    o.temperature = temperature;
    struct ppo p;
    struct pl_err err = {0};
    int rc = ppo_init(&p, &o, &err);
    if (rc == PL_OK)
        rc = ppo_rollout(&p, 0, &err);
    double worst = 0.0;
    long n = 0;
    const struct ppo_rollout *r = &p.ro;
    for (size_t k = 0; rc == PL_OK && k < (size_t)r->rows * r->width; k++)
        if (r->mask[k]) {
            worst = fmax(worst, fabs(r->logp[k] - r->ref[k]));
            n++;
        }
    long lens = 0;
    for (int i = 0; rc == PL_OK && i < r->rows; i++)
        lens += r->rlen[i];
    if (!tap_ok(rc == PL_OK && n == lens && n > 0 && worst < 2e-5,
                "temperature %g: the rollout's %ld log-probs equal a full forward's (worst %.2g)",
                (double)temperature, n, worst))
        tap_diag("%s", err.msg);
    tap_ok(rc == PL_OK && fabs(p.it_kl) < 1e-3, "so the first iteration's KL is 0: %.2g",
           p.it_kl);
    ppo_release(&p);
}

/* A bandit: reward 1 when the response starts with a lowercase letter, 0 otherwise. The optimum
 * is to always start with one; a model fresh from GPT-2's initialisation does about 26 times in
 * 257. */
static int bandit_score(void *ctx, const struct ppo_rollout *r, double *scores, struct pl_err *err)
{
    (void)ctx;
    (void)err;
    for (int i = 0; i < r->rows; i++) {
        int t = r->tokens[(size_t)i * r->width + r->plen[i]];
        scores[i] = t >= 'a' && t <= 'z';
    }
    return PL_OK;
}

static const char *const bandit_prompts[4] = {"ab", "cd", "ef", "gh"};

/* Mean probability over the bandit's prompts that the next token is a lowercase letter, under
 * the model in dir. */
static double letter_prob(const char *dir)
{
    struct gpt m;
    struct tok t;
    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 8};
    double sum = 0.0;
    if (ckpt_load_model(&m, &t, dir, &go, &err) == PL_OK)
        for (int i = 0; i < 4; i++) {
            int ids[2] = {bandit_prompts[i][0], bandit_prompts[i][1]};
            struct gpt_batch b = {.B = 1, .T = 2, .tokens = ids};
            gpt_forward(&m, &b, &err);
            float logits[257];
            gpt_logits_row(&m, 1, logits);
            double mx = -INFINITY, z = 0.0, letters = 0.0;
            for (int v = 0; v < 257; v++)
                mx = fmax(mx, logits[v]);
            for (int v = 0; v < 257; v++) {
                z += exp(logits[v] - mx);
                letters += v >= 'a' && v <= 'z' ? exp(logits[v] - mx) : 0.0;
            }
            sum += letters / z;
        }
    else
        sum = NAN;
    gpt_release(&m);
    tok_release(&t);
    return sum / 4.0;
}

static void test_bandit(void)
{
    const char *flat = tap_tmp("flat");
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    struct gpt m;
    struct pl_err err = {0};
    if (gpt_init(&m, &c, &go, &err) == PL_OK) {
        gpt_init_weights(&m, 9);
        ckpt_save(&m, flat, &err);
    }
    gpt_release(&m);
    double before = letter_prob(flat);
    struct ppo_opts o;
    test_opts(&o, tap_tmp("bandit"));
    o.prompts = tap_tmp("bandit.jsonl");
    o.reward = NULL;
    o.scorer = bandit_score;
    o.policy = flat;
    o.batch = 16;
    o.minibatch = 8;
    o.ppo_epochs = 4;
    o.max_new_tokens = 1;
    o.iterations = 60;
    o.save_every = 0;
    o.kl.beta = 0.0;
    o.optim.lr = 1e-2f;
    o.voptim.lr = 1e-2f;
    struct ppo_result res;
    int rc = ppo_run(&o, &res, &err);
    double after = letter_prob(tap_tmp("bandit"));
    if (!tap_ok(rc == PL_OK && before < 0.2 && after > 0.9,
                "a bandit rewarding a first token that is a letter: its probability goes %.3f -> "
                "%.3f",
                before, after))
        tap_diag("%s", err.msg);
    tap_ok(rc == PL_OK && res.score > 0.8, "the last iteration's mean reward is %.3f", res.score);
}

/* ---- the command ---- */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = pl_malloc(1 << 22);
    *n = buf ? fread(buf, 1, (1 << 22) - 1, f) : 0;
    if (buf)
        buf[*n] = '\0';
    fclose(f);
    return buf;
}

/* metrics.jsonl without the wall-clock fields, which differ between runs. */
static bool same_metrics(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y;
    char *sa = NULL, *sb = NULL;
    for (char *la = x ? strtok_r(x, "\n", &sa) : NULL, *lb = y ? strtok_r(y, "\n", &sb) : NULL;
         same && (la || lb); la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb)) {
        if (!la || !lb) {
            same = false;
            break;
        }
        /* Compare the objective/... through val/distinct_2 span: no timings in it. */
        const char *fa = strstr(la, "\"objective/scores\""), *fb = strstr(lb, "\"objective/scores\"");
        const char *ea = strstr(la, "\"policy/approxkl\""), *eb = strstr(lb, "\"policy/approxkl\"");
        same = fa && fb && ea && eb && ea - fa == eb - fb && memcmp(fa, fb, (size_t)(ea - fa)) == 0;
    }
    pl_free(x);
    pl_free(y);
    return same;
}

static bool state_exists(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    return access(path, F_OK) == 0;
}

static void test_kill(const char *bin)
{
    char opts[2048], cmd[8192];
    snprintf(opts, sizeof opts,
             "--policy %s --reward %s --prompts %s --iterations 12 --batch 8 --minibatch 4 "
             "--ppo-epochs 2 --max-new-tokens 6 --save-every 1 --lr 1e-3 --value-lr 1e-3 "
             "--target-kl 1 --threads 1",
             policy_dir, reward_dir, prompts_path);
    snprintf(cmd, sizeof cmd, "exec %s ppo %s --out %s 2>/dev/null >/dev/null", bin, opts,
             tap_tmp("killed"));
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 20000 && !state_exists(tap_tmp("killed")); i++)
        nanosleep(&ms, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    snprintf(cmd, sizeof cmd,
             "%s ppo %s --out %s --resume >/dev/null 2>&1 && %s ppo %s --out %s >/dev/null 2>&1",
             bin, opts, tap_tmp("killed"), bin, opts, tap_tmp("whole"));
    int code = tap_system(cmd);
    tap_ok(WIFSIGNALED(st), "plumb ppo was killed with SIGKILL after a checkpoint");
    tap_ok(code == 0 && tap_same_file(tap_tmp("whole/model.safetensors"),
                                  tap_tmp("killed/model.safetensors")) &&
               tap_same_file(tap_tmp("whole/value/model.safetensors"),
                         tap_tmp("killed/value/model.safetensors")),
           "resumed, it ends with the uninterrupted run's policy and value model, bit for bit");
    tap_ok(same_metrics(tap_tmp("whole/metrics.jsonl"), tap_tmp("killed/metrics.jsonl")),
           "and the same rewards, KL and statistics in metrics.jsonl, iteration by iteration");
    size_t n = 0;
    char *text = slurp(tap_tmp("whole/metrics.jsonl"), &n);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    tap_ok(text && lines == 12 && strstr(text, "\"objective/kl\"") &&
               strstr(text, "\"policy/clipfrac\"") && strstr(text, "\"val/distinct_2\"") &&
               strstr(text, "\"beta\"") && strstr(text, "\"skipped_minibatches\""),
           "metrics.jsonl has one line an iteration (%d) under TRL's names", lines);
    pl_free(text);
}

static void test_commands(void)
{
    const char *bin = getenv("PLUMB_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        tap_skip(9, "PLUMB_BIN not set");
        return;
    }
    test_kill(bin);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s ppo --policy %s --reward %s --prompts %s --out %s --top-k 5 2>%s", bin,
             policy_dir, reward_dir, prompts_path, tap_tmp("x"), tap_tmp("err.txt"));
    size_t n;
    int code = tap_system(cmd);
    char *e = slurp(tap_tmp("err.txt"), &n);
    tap_ok(code == 2 && e && strstr(e, "top-k and top-p would make the KL estimate dishonest"),
           "top-k is refused with exit status 2: %s", e ? e : "");
    pl_free(e);
    snprintf(cmd, sizeof cmd, "%s ppo --policy %s --reward %s --prompts %s --out %s 2>%s", bin,
             policy_dir, reward_dir, prompts_path, policy_dir, tap_tmp("err.txt"));
    code = tap_system(cmd);
    e = slurp(tap_tmp("err.txt"), &n);
    tap_ok(code == 2 && e && strstr(e, "is also an input"),
           "an output folder that is an input is refused: %s", e ? e : "");
    pl_free(e);
    tap_write_file(tap_tmp("bad.jsonl"), "{\"id\": \"a\", \"prompt\": \"hi\"}\n{\"id\": \"b\"}\n");
    snprintf(cmd, sizeof cmd, "%s ppo --policy %s --reward %s --prompts %s --out %s 2>%s", bin,
             policy_dir, reward_dir, tap_tmp("bad.jsonl"), tap_tmp("bad"), tap_tmp("err.txt"));
    code = tap_system(cmd);
    e = slurp(tap_tmp("err.txt"), &n);
    tap_ok(code == 1 && e && strstr(e, "bad.jsonl:2:") && access(tap_tmp("bad"), F_OK) != 0,
           "a bad prompt line names file and line, exit 1, no run folder: %s", e ? e : "");
    pl_free(e);
    snprintf(cmd, sizeof cmd, "%s ppo --policy %s --reward %s --prompts %s --out %s 2>%s", bin,
             policy_dir, policy_dir, prompts_path, tap_tmp("nohead"), tap_tmp("err.txt"));
    code = tap_system(cmd);
    e = slurp(tap_tmp("err.txt"), &n);
    tap_ok(code == 1 && e && strstr(e, "no score head"),
           "a reward model without a head is refused: %s", e ? e : "");
    pl_free(e);

    snprintf(cmd, sizeof cmd,
             "%s bon --policy %s --reward %s --prompts %s --out %s -n 3 --max-new-tokens 5 "
             "--threads 1 >%s 2>/dev/null",
             bin, policy_dir, reward_dir, prompts_path, tap_tmp("bon.jsonl"), tap_tmp("bon.txt"));
    code = tap_system(cmd);
    char *out = slurp(tap_tmp("bon.jsonl"), &n);
    int lines = 0;
    for (size_t i = 0; out && i < n; i++)
        lines += out[i] == '\n';
    tap_ok(code == 0 && lines == 4 && strstr(out, "\"candidates\": [") &&
               strstr(out, "\"candidate_rewards\": [") && strstr(out, "\"completions\": ["),
           "plumb bon writes a samples line per prompt with every candidate and its reward");
    pl_free(out);
}

/* The best of n is the candidate with the highest reward, and its reward is that candidate's. */
static void test_bon(void)
{
    struct bon_opts o;
    bon_opts_default(&o);
    o.policy = policy_dir;
    o.reward = reward_dir;
    o.prompts = prompts_path;
    o.out = tap_tmp("bon_lib.jsonl");
    o.n = 5;
    o.max_new_tokens = 6;
    struct bon_result res;
    struct pl_err err = {0};
    int rc = bon_run(&o, &res, &err);
    if (!tap_ok(rc == PL_OK && res.prompts == 4 && res.best >= res.sample,
                "best-of-5 scores at least one sample's mean: %.3f >= %.3f", res.best,
                res.sample))
        tap_diag("%s", err.msg);
    FILE *f = fopen(o.out, "r");
    char line[8192];
    bool ok = f != NULL;
    while (ok && fgets(line, sizeof line, f)) {
        double best = 0.0, mx = -INFINITY;
        int k = -1;
        const char *r = strstr(line, "\"rewards\": [");
        const char *b = strstr(line, "\"best\": ");
        const char *c = strstr(line, "\"candidate_rewards\": [");
        ok = r && b && c && sscanf(r + 12, "%lf", &best) == 1 && sscanf(b + 8, "%d", &k) == 1;
        for (const char *s = c ? c + 22 : NULL; ok && s && *s != ']'; s++) {
            char *end;
            double v = strtod(s, &end);
            mx = fmax(mx, v);
            s = end;
            if (*s == ']')
                break;
        }
        ok = ok && best == mx && k >= 0 && k < 5;
    }
    if (f)
        fclose(f);
    tap_ok(ok, "each record keeps the candidate with the highest reward");
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 1, &err))
        tap_skip_all(err.msg);
    tap_tmpdir("ppo");
    tap_plan(35);
    test_kl();
    test_controller();
    test_gae();
    test_losses();

    snprintf(policy_dir, sizeof policy_dir, "%s", tap_tmp("policy"));
    snprintf(reward_dir, sizeof reward_dir, "%s", tap_tmp("reward"));
    snprintf(prompts_path, sizeof prompts_path, "%s", tap_tmp("prompts.jsonl"));
    make_model(policy_dir, false, 3);
    make_model(reward_dir, true, 4);
    tap_write_file(prompts_path, "{\"id\": \"a\", \"prompt\": \"User: hi\\nAssistant:\"}\n"
                                 "{\"id\": \"b\", \"prompt\": \"abc\"}\n"
                                 "{\"id\": \"c\", \"prompt\": \"a longer prompt\"}\n"
                                 "{\"id\": \"d\", \"prompt\": \"q\"}\n");
    struct pl_buf b = {0};
    for (int i = 0; i < 4; i++)
        pl_buf_printf(&b, "{\"id\": \"%d\", \"prompt\": \"%s\"}\n", i, bandit_prompts[i]);
    tap_write_file(tap_tmp("bandit.jsonl"), b.p);
    pl_buf_release(&b);
    test_rollout_logp(1.0f);
    test_rollout_logp(0.7f);
    test_bandit();
    test_bon();
    test_commands();
    return tap_done();
}
