#include "rlhf/ppo.h"

#include "model/ckpt.h"
#include "model/io.h"
#include "trainer/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the pieces ---- */

double ppo_kl(enum ppo_kl_estimator e, double logp, double logp_ref)
{
    double logr = logp_ref - logp;
    if (e == PPO_KL_K3)
        return expm1(logr) - logr;
    return -logr;
}

void ppo_kl_update(struct ppo_kl_ctl *c, double kl, long n_episodes)
{
    if (!(c->target > 0.0) || !isfinite(kl))
        return;
    double err = kl / c->target - 1.0;
    err = err < -0.2 ? -0.2 : err > 0.2 ? 0.2 : err;
    c->beta *= 1.0 + err * (double)n_episodes / c->horizon;
}

void ppo_gae(float *adv, float *ret, const float *rewards, const float *values, int n,
             double gamma, double lambda)
{
    double last = 0.0;
    for (int t = n - 1; t >= 0; t--) {
        double next = t + 1 < n ? values[t + 1] : 0.0;
        double delta = rewards[t] + gamma * next - values[t];
        last = delta + gamma * lambda * last;
        adv[t] = (float)last;
        ret[t] = (float)(last + values[t]);
    }
}

/* ppo_whiten, over the masked entries of this rank's x alone or of every rank's (dist). */
static int whiten(float *x, const unsigned char *mask, size_t n, bool ranks, struct pl_err *err)
{
    double v[2] = {0.0, 0.0}, sq = 0.0; /* sum, count */
    for (size_t i = 0; i < n; i++)
        if (mask[i]) {
            v[0] += x[i];
            v[1] += 1.0;
        }
    int rc = ranks ? dist_sum_doubles(v, 2, err) : PL_OK;
    if (rc || v[1] < 2.0)
        return rc;
    double mean = v[0] / v[1];
    for (size_t i = 0; i < n; i++)
        if (mask[i])
            sq += (x[i] - mean) * (x[i] - mean);
    if (ranks && (rc = dist_sum_doubles(&sq, 1, err)))
        return rc;
    double inv = 1.0 / sqrt(sq / (v[1] - 1.0) + 1e-8);
    for (size_t i = 0; i < n; i++)
        if (mask[i])
            x[i] = (float)((x[i] - mean) * inv);
    return PL_OK;
}

void ppo_whiten(float *x, const unsigned char *mask, size_t n)
{
    whiten(x, mask, n, false, NULL);
}

double ppo_policy_loss(double logp, double logp_old, double adv, double clip, double *dlogp,
                       bool *clipped)
{
    double ratio = exp(logp - logp_old);
    double lo = 1.0 - clip, hi = 1.0 + clip;
    double rc = ratio < lo ? lo : ratio > hi ? hi : ratio;
    double l1 = -adv * ratio, l2 = -adv * rc;
    *clipped = l2 > l1;
    /* The clamped term is constant in logp where it wins. */
    *dlogp = *clipped ? 0.0 : l1;
    return *clipped ? l2 : l1;
}

double ppo_value_loss(double v, double v_old, double ret, double clip, double *dv, bool *clipped)
{
    double vc = v < v_old - clip ? v_old - clip : v > v_old + clip ? v_old + clip : v;
    double l1 = (v - ret) * (v - ret), l2 = (vc - ret) * (vc - ret);
    *clipped = l2 > l1;
    /* Where the clamped term wins v lies outside the clip range, so it is constant in v. */
    *dv = *clipped ? 0.0 : v - ret;
    return 0.5 * (*clipped ? l2 : l1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double ppo_distinct_2(const int *tokens, const int *plen, const int *rlen, int rows, int width,
                      uint64_t *pairs)
{
    size_t n = 0;
    for (int i = 0; i < rows; i++) {
        const int *r = tokens + (size_t)i * width + plen[i];
        for (int t = 0; t + 1 < rlen[i]; t++)
            pairs[n++] = (uint64_t)(uint32_t)r[t] << 32 | (uint32_t)r[t + 1];
    }
    if (n == 0)
        return 0.0;
    qsort(pairs, n, sizeof *pairs, cmp_u64);
    size_t distinct = 1;
    for (size_t i = 1; i < n; i++)
        distinct += pairs[i] != pairs[i - 1];
    return (double)distinct / (double)n;
}

/* ---- options ---- */

void ppo_opts_default(struct ppo_opts *o)
{
    *o = (struct ppo_opts){.iterations = 20,
                           .batch = 32,
                           .minibatch = 8,
                           .ppo_epochs = 4,
                           .max_new_tokens = 48,
                           .temperature = 1.0f,
                           .kl = {.beta = 0.2, .target = 0.0, .horizon = 10000.0},
                           .kl_estimator = PPO_KL_K1,
                           .gamma = 1.0,
                           .lambda = 0.95,
                           .cliprange = 0.2,
                           .cliprange_value = 0.2,
                           .vf_coef = 0.1,
                           .ratio_guard = 10.0,
                           .kl_warn = 10.0,
                           .kl_negative_warn = 3,
                           .sample_every = 10,
                           .save_every = 10,
                           .eval_every = 10,
                           .seed = 1};
    train_opts_default(&o->train);
    o->train.eval_every = 0;
    train_optim_default(&o->optim);
    o->optim.lr = 1e-5f;
    o->optim.warmup = 0;
    o->optim.min_lr_frac = 1.0f;
    o->voptim = o->optim;
}

static int check_opts(const struct ppo_opts *o, struct pl_err *err)
{
    if (!o->policy || !o->prompts || !o->train.out)
        return pl_errf(err, PL_EINVAL, "a policy, prompts and an output folder are needed");
    if (!o->reward && !o->scorer)
        return pl_errf(err, PL_EINVAL, "a reward model is needed");
    if (o->iterations < 1 || o->batch < 1 || o->minibatch < 1 || o->ppo_epochs < 1 ||
        o->max_new_tokens < 1 || o->save_every < 0 || o->sample_every < 0 || o->eval_every < 0)
        return pl_errf(err, PL_EINVAL, "iterations, batch, minibatch, ppo epochs and new tokens "
                                       "must be positive");
    if (o->minibatch > o->batch)
        return pl_errf(err, PL_EINVAL, "the minibatch (%d) is larger than the batch (%d)",
                       o->minibatch, o->batch);
    if (!(o->temperature > 0.0f) || !isfinite(o->temperature))
        return pl_errf(err, PL_EINVAL, "the rollout temperature must be positive: PPO samples "
                                       "the policy's own distribution, never greedily");
    if (!(o->kl.beta >= 0.0) || !(o->kl.target >= 0.0) || !(o->kl.horizon > 0.0) ||
        !(o->gamma >= 0.0 && o->gamma <= 1.0) || !(o->lambda >= 0.0 && o->lambda <= 1.0) ||
        !(o->cliprange > 0.0) || !(o->cliprange_value > 0.0) || !(o->vf_coef >= 0.0) ||
        !(o->ratio_guard > 1.0) || !(o->missing_eos_penalty >= 0.0) || !(o->kl_warn > 0.0))
        return pl_errf(err, PL_EINVAL, "a PPO coefficient is out of range");
    return PL_OK;
}

/* ---- set-up ---- */

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* Two tokenizers that give the same ids: the value model reads the policy's tokens. */
static int same_vocab(const struct gpt_config *a, const struct gpt_config *b, const char *what,
                      const char *dir, struct pl_err *err)
{
    if (a->vocab_size != b->vocab_size || strcmp(a->tokenizer, b->tokenizer) != 0)
        return pl_errf(err, PL_EINVAL,
                       "%s '%s' has tokenizer %s with %d ids, the policy %s with %d: they must "
                       "read the same tokens",
                       what, dir, b->tokenizer, b->vocab_size, a->tokenizer, a->vocab_size);
    return PL_OK;
}

static int encode_prompts(struct ppo *p, struct ppo_prompts *pp, struct pl_err *err)
{
    size_t n = pp->set.n;
    struct tok_buf buf = {0};
    pp->start = pl_malloc(sizeof *pp->start * (n ? n : 1));
    pp->len = pl_malloc(sizeof *pp->len * (n ? n : 1));
    if (!pp->start || !pp->len)
        return pl_oom(err, "prompts");
    int rc = n ? PL_OK : pl_errf(err, PL_EINVAL, "%s: no prompts", pp->path);
    for (size_t i = 0; rc == PL_OK && i < n; i++) {
        const char *text = pp->set.recs[i].prompt;
        pp->start[i] = buf.n;
        rc = tok_encode(&p->tok, &buf, text, strlen(text), 0, err);
        pp->len[i] = (int)(buf.n - pp->start[i]);
        if (rc == PL_OK && pp->len[i] == 0)
            rc = pl_errf(err, PL_EFORMAT, "%s:%ld: field 'prompt': empty", pp->path,
                         pp->set.recs[i].line);
        if (rc == PL_OK && pp->len[i] + 1 > p->policy.cfg.n_positions)
            rc = pl_errf(err, PL_EINVAL,
                         "%s:%ld: the prompt has %d tokens and leaves no room for a response in "
                         "the policy's context of %d",
                         pp->path, pp->set.recs[i].line, pp->len[i], p->policy.cfg.n_positions);
    }
    pp->ids = buf.ids;
    buf.ids = NULL;
    tok_buf_release(&buf);
    return rc;
}

static int load_prompts(struct ppo *p, struct ppo_prompts *pp, const char *path,
                        struct pl_err *err)
{
    pp->path = path;
    int rc = ds_prompts_init(&pp->set, path, p->o->skip_bad_lines ? IO_SKIP_BAD_LINES : 0, err);
    return rc ? rc : encode_prompts(p, pp, err);
}

static void release_prompts(struct ppo_prompts *pp)
{
    ds_prompts_release(&pp->set);
    pl_free(pp->ids);
    pl_free(pp->start);
    pl_free(pp->len);
}

/* The rollout width: the longest prompt plus max_new_tokens, within the context. */
static int rollout_width(const struct ppo *p)
{
    int longest = 0;
    for (size_t i = 0; i < p->train.set.n; i++)
        longest = p->train.len[i] > longest ? p->train.len[i] : longest;
    for (size_t i = 0; i < p->eval.set.n; i++)
        longest = p->eval.len[i] > longest ? p->eval.len[i] : longest;
    long w = (long)longest + p->o->max_new_tokens;
    return w < p->policy.cfg.n_positions ? (int)w : p->policy.cfg.n_positions;
}

static int load_models(struct ppo *p, struct pl_err *err)
{
    const struct ppo_opts *o = p->o;
    struct gpt_config cfg;
    struct tok scratch = {0};
    int rc = ckpt_load_tokenizer(&p->tok, &cfg, o->policy, err);
    if (rc)
        return rc;
    /* The width depends on the prompts' lengths, which need the tokenizer only. */
    p->policy.cfg = cfg;
    if ((rc = load_prompts(p, &p->train, o->prompts, err)))
        return rc;
    if (o->eval_prompts && (rc = load_prompts(p, &p->eval, o->eval_prompts, err)))
        return rc;
    int W = rollout_width(p), M = o->minibatch;
    struct gpt_opts po = {.trainable = true, .max_batch = M, .max_seq = W};
    if ((rc = ckpt_load(&p->policy, o->policy, &po, err)))
        return rc;
    struct gpt_opts ro = {.max_batch = M, .max_seq = W};
    rc = ckpt_load_model(&p->ref, &scratch, o->policy, &ro, err);
    tok_release(&scratch);
    if (rc)
        return rc;
    if (o->reward) {
        if ((rc = rm_load(&p->reward, &p->rtok, o->reward, M, 0, err)))
            return rc;
        rc = rm_scorer_init(&p->rsc, M, p->reward.cfg.n_positions, p->reward.cfg.eos_token_id,
                            err);
        if (rc)
            return rc;
    }
    const char *vdir = o->value ? o->value : o->reward ? o->reward : o->policy;
    struct gpt_opts vo = {
        .trainable = true, .score_head = true, .head_only = true, .max_batch = M, .max_seq = W};
    rc = ckpt_load_model(&p->value, &scratch, vdir, &vo, err);
    tok_release(&scratch);
    /* A model folder without a head (the policy's) starts the value model at zero; a missing
     * folder or file is an error (nothing was loaded then). */
    if (rc == PL_ENOTFOUND && p->value.params)
        rc = PL_OK;
    if (rc == PL_OK)
        rc = same_vocab(&p->policy.cfg, &p->value.cfg, "the value model", vdir, err);
    if (rc == PL_OK && p->value.cfg.n_positions < W)
        rc = pl_errf(err, PL_EINVAL, "the value model '%s' has a context of %d, the rollouts %d",
                     vdir, p->value.cfg.n_positions, W);
    if (rc)
        return rc;
    p->value.cfg.reward_mean = 0.0;
    p->value.cfg.reward_std = 1.0;
    return PL_OK;
}

static void log_memory(struct ppo *p, FILE *f)
{
    if (!f)
        return;
    uint64_t pol = gpt_memory_bytes(&p->policy.cfg, &p->policy.opts);
    uint64_t ref = gpt_memory_bytes(&p->ref.cfg, &p->ref.opts);
    uint64_t val = gpt_memory_bytes(&p->value.cfg, &p->value.opts);
    uint64_t rew = p->o->reward ? gpt_memory_bytes(&p->reward.cfg, &p->reward.opts) : 0;
    uint64_t kv = (uint64_t)p->sampler.cache.kv_floats * sizeof(float);
    fprintf(f,
            "ppo: memory %.1f MiB: policy %.1f (trainable), reference %.1f, value %.1f "
            "(trainable), reward %.1f, KV cache %.1f\n",
            mib(pol + ref + val + rew + kv), mib(pol), mib(ref), mib(val), mib(rew), mib(kv));
}

static int alloc_buffers(struct ppo *p, struct pl_err *err)
{
    const struct ppo_opts *o = p->o;
    int B = o->batch, W = rollout_width(p), M = o->minibatch;
    size_t BW = (size_t)B * W, MW = (size_t)M * W;
    struct ppo_rollout *r = &p->ro;
    r->rows = B;
    r->width = W;
    r->text_cap = p->sampler.text_cap + 1;
    r->tokens = pl_calloc(BW, sizeof *r->tokens);
    r->plen = pl_calloc((size_t)B, sizeof *r->plen);
    r->rlen = pl_calloc((size_t)B, sizeof *r->rlen);
    r->finish = pl_calloc((size_t)B, sizeof *r->finish);
    r->prompt = pl_calloc((size_t)B, sizeof *r->prompt);
    float **f[] = {&r->logp, &r->ref, &r->values, &r->rewards, &r->adv, &r->ret};
    bool ok = true;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        ok &= (*f[i] = pl_calloc(BW, sizeof(float))) != NULL;
    r->mask = pl_calloc(BW, 1);
    r->score = pl_calloc((size_t)B, sizeof *r->score);
    r->kl = pl_calloc((size_t)B, sizeof *r->kl);
    r->text = pl_calloc((size_t)B, r->text_cap);
    p->mb_rows = pl_calloc((size_t)M, sizeof *p->mb_rows);
    p->mb_tokens = pl_calloc(MW, sizeof *p->mb_tokens);
    p->mb_targets = pl_calloc(MW, sizeof *p->mb_targets);
    p->mb_dlogp = pl_calloc(MW, sizeof *p->mb_dlogp);
    p->mb_dhead = pl_calloc(MW, sizeof *p->mb_dhead);
    p->perm = pl_calloc((size_t)o->ppo_epochs * B, sizeof *p->perm);
    p->texts_p = pl_calloc((size_t)B, sizeof *p->texts_p);
    p->texts_r = pl_calloc((size_t)B, sizeof *p->texts_r);
    p->pairs = pl_calloc(BW, sizeof *p->pairs);
    p->scores = pl_calloc((size_t)B, sizeof *p->scores);
    p->sp = pl_calloc((size_t)B, sizeof *p->sp);
    ok &= r->tokens && r->plen && r->rlen && r->finish && r->prompt && r->mask && r->score &&
          r->kl && r->text && p->mb_rows && p->mb_tokens && p->mb_targets && p->mb_dlogp &&
          p->mb_dhead && p->perm && p->texts_p && p->texts_r && p->pairs && p->scores && p->sp;
    return ok ? PL_OK : pl_oom(err, "the rollout buffers");
}

int ppo_init(struct ppo *p, const struct ppo_opts *o, struct pl_err *err)
{
    memset(p, 0, sizeof *p);
    p->o = o;
    p->beta = o->kl.beta;
    int rc = check_opts(o, err);
    if (rc == PL_OK)
        rc = load_models(p, err);
    if (rc == PL_OK) {
        struct sample_opts so;
        sample_opts_default(&so);
        so.n = 1;
        so.max_new_tokens = o->max_new_tokens;
        so.temperature = o->temperature;
        so.seed = o->seed;
        so.stop = o->stop;
        so.n_stop = o->n_stop;
        so.batch = o->batch;
        so.max_len = rollout_width(p);
        rc = sample_init(&p->sampler, &p->policy, &p->tok, &so, err);
    }
    if (rc == PL_OK)
        rc = alloc_buffers(p, err);
    if (rc == PL_OK)
        rc = train_order_init(&p->order, p->train.set.n, o->seed, err);
    if (rc)
        return rc;
    long per_epoch = (o->batch + o->minibatch - 1) / o->minibatch;
    p->spi = per_epoch * o->ppo_epochs;
    p->vars[0] = (struct train_var){"prompt_rng", TRAIN_U64, p->order.rng, 4};
    p->vars[1] = (struct train_var){"prompt_cursor", TRAIN_U64, p->order.cursor, 2};
    p->vars[2] = (struct train_var){"beta", TRAIN_F64, &p->beta, 1};
    p->vars[3] = (struct train_var){"counters", TRAIN_U64, p->counters, 2};
    log_memory(p, o->train.log);
    return PL_OK;
}

void ppo_release(struct ppo *p)
{
    gpt_release(&p->policy);
    gpt_release(&p->ref);
    gpt_release(&p->value);
    gpt_release(&p->reward);
    tok_release(&p->tok);
    tok_release(&p->rtok);
    release_prompts(&p->train);
    release_prompts(&p->eval);
    sample_release(&p->sampler);
    rm_scorer_release(&p->rsc);
    struct ppo_rollout *r = &p->ro;
    void *ptrs[] = {r->tokens,   r->plen,       r->rlen,       r->finish,   r->prompt,
                    r->logp,     r->ref,        r->values,     r->rewards,  r->adv,
                    r->ret,      r->mask,       r->score,      r->kl,       r->text,
                    p->mb_rows,  p->mb_tokens,  p->mb_targets, p->mb_dlogp, p->mb_dhead,
                    p->perm,     p->texts_p,    p->texts_r,    p->pairs,    p->scores, p->sp};
    for (size_t i = 0; i < sizeof ptrs / sizeof *ptrs; i++)
        pl_free(ptrs[i]);
    train_order_release(&p->order);
    memset(p, 0, sizeof *p);
}

/* ---- the rollout ---- */

static int on_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    (void)n;
    (void)err;
    struct ppo *p = user;
    struct ppo_rollout *r = &p->ro;
    int i = c->prompt, P = r->plen[i];
    size_t row = (size_t)i * r->width;
    r->rlen[i] = c->n_tokens;
    r->finish[i] = c->finish;
    memcpy(r->tokens + row + P, c->tokens, sizeof(int) * (size_t)c->n_tokens);
    for (int t = 0; t < c->n_tokens; t++) {
        r->logp[row + P - 1 + t] = c->logp[t];
        r->mask[row + P - 1 + t] = 1;
    }
    size_t len = c->text_len < r->text_cap - 1 ? c->text_len : r->text_cap - 1;
    memcpy(r->text + (size_t)i * r->text_cap, c->text, len);
    r->text[(size_t)i * r->text_cap + len] = '\0';
    return PL_OK;
}

/* Responses to the prompts r->prompt[0, r->rows) of r->src; row i's sampling stream is
 * seed_base + i. */
static int generate(struct ppo *p, long seed_base, struct pl_err *err)
{
    struct ppo_rollout *r = &p->ro;
    const struct ppo_prompts *src = r->src;
    int B = r->rows, eos = p->policy.cfg.eos_token_id;
    size_t BW = (size_t)B * r->width;
    for (size_t k = 0; k < BW; k++)
        r->tokens[k] = eos;
    memset(r->mask, 0, BW);
    for (size_t k = 0; k < BW; k++)
        r->logp[k] = r->ref[k] = r->values[k] = r->rewards[k] = r->adv[k] = r->ret[k] = 0.0f;
    struct sample_prompt *sp = p->sp;
    for (int i = 0; i < B; i++) {
        int q = r->prompt[i];
        r->plen[i] = src->len[q];
        memcpy(r->tokens + (size_t)i * r->width, src->ids + src->start[q],
               sizeof(int) * (size_t)r->plen[i]);
        sp[i] = (struct sample_prompt){
            .ids = src->ids + src->start[q], .n = r->plen[i], .index = seed_base + i};
    }
    struct sample_hooks hooks = {.user = p, .done = on_done};
    return sample_generate(&p->sampler, sp, B, &hooks, err);
}

/* Copy rollout rows rows[0, n) into the minibatch arrays, as wide as the longest of them, with
 * targets at the response positions; returns that width. */
static int gather(struct ppo *p, const int *rows, int n)
{
    const struct ppo_rollout *r = &p->ro;
    int T = 1;
    for (int k = 0; k < n; k++) {
        int len = r->plen[rows[k]] + r->rlen[rows[k]];
        T = len > T ? len : T;
    }
    for (int k = 0; k < n; k++) {
        const int *src = r->tokens + (size_t)rows[k] * r->width;
        const unsigned char *mask = r->mask + (size_t)rows[k] * r->width;
        int *tok = p->mb_tokens + (size_t)k * T, *tgt = p->mb_targets + (size_t)k * T;
        memcpy(tok, src, sizeof(int) * (size_t)T);
        for (int q = 0; q < T; q++)
            tgt[q] = mask[q] && q + 1 < r->width ? src[q + 1] : -1;
    }
    return T;
}

/* Reference log-probs and old values of every rollout row, a minibatch of rows at a time. */
static int score_rows(struct ppo *p, struct pl_err *err)
{
    struct ppo_rollout *r = &p->ro;
    int M = p->o->minibatch;
    for (int i0 = 0; i0 < r->rows; i0 += M) {
        int n = r->rows - i0 < M ? r->rows - i0 : M;
        for (int k = 0; k < n; k++)
            p->mb_rows[k] = i0 + k;
        int T = gather(p, p->mb_rows, n);
        struct gpt_batch b = {.B = n,
                              .T = T,
                              .tokens = p->mb_tokens,
                              .targets = p->mb_targets,
                              .temperature = p->o->temperature};
        int rc = gpt_forward(&p->ref, &b, err);
        struct gpt_batch vb = {.B = n, .T = T, .tokens = p->mb_tokens, .head_all = true};
        if (rc == PL_OK)
            rc = gpt_forward(&p->value, &vb, err);
        if (rc)
            return rc;
        for (int k = 0; k < n; k++) {
            size_t row = (size_t)(i0 + k) * r->width;
            for (int q = 0; q < T; q++)
                if (r->mask[row + q]) {
                    r->ref[row + q] = p->ref.logp[(size_t)k * T + q];
                    r->values[row + q] = p->value.head[(size_t)k * T + q];
                }
        }
    }
    return PL_OK;
}

static int reward_model_scores(struct ppo *p, double *scores, struct pl_err *err)
{
    const struct ppo_rollout *r = &p->ro;
    for (int i = 0; i < r->rows; i++) {
        p->texts_p[i] = r->src->set.recs[r->prompt[i]].prompt;
        p->texts_r[i] = r->text + (size_t)i * r->text_cap;
    }
    return rm_score_texts(&p->rsc, &p->reward, &p->rtok, p->texts_p, p->texts_r,
                          (size_t)r->rows, scores, err);
}

/* Per-token rewards, advantages and returns; the rollout's statistics, over every rank's rows. */
static int advantages(struct ppo *p, struct pl_err *err)
{
    const struct ppo_opts *o = p->o;
    struct ppo_rollout *r = &p->ro;
    double sum_score = 0.0, sum_kl = 0.0, sum_k1 = 0.0, sum_nonscore = 0.0, sum_ent = 0.0;
    long eos = 0, tokens = 0;
    for (int i = 0; i < r->rows; i++) {
        size_t base = (size_t)i * r->width + r->plen[i] - 1;
        double kl = 0.0, k1 = 0.0, ent = 0.0;
        for (int t = 0; t < r->rlen[i]; t++) {
            double lp = r->logp[base + t], lr = r->ref[base + t];
            double k = ppo_kl(o->kl_estimator, lp, lr);
            r->rewards[base + t] = (float)(-p->beta * k);
            kl += k;
            k1 += lp - lr;
            ent -= lp;
        }
        r->rewards[base + r->rlen[i] - 1] += (float)r->score[i];
        r->kl[i] = kl;
        ppo_gae(r->adv + base, r->ret + base, r->rewards + base, r->values + base, r->rlen[i],
                o->gamma, o->lambda);
        sum_score += r->score[i];
        sum_kl += kl;
        sum_k1 += k1;
        sum_nonscore -= p->beta * kl;
        sum_ent += ent;
        eos += r->finish[i] != SAMPLE_LENGTH;
        tokens += r->rlen[i];
    }
    int rc = whiten(r->adv, r->mask, (size_t)r->rows * r->width, true, err);
    /* dist: the sums of every rank's rows, and the mean of their distinct-2 */
    double d2 = ppo_distinct_2(r->tokens, r->plen, r->rlen, r->rows, r->width, p->pairs);
    double all[8] = {sum_score, sum_kl, sum_k1, sum_nonscore, sum_ent, (double)eos, (double)tokens,
                     d2};
    if (rc || (rc = dist_sum_doubles(all, 8, err)))
        return rc;
    sum_score = all[0], sum_kl = all[1], sum_k1 = all[2], sum_nonscore = all[3], sum_ent = all[4];
    double B = (double)r->rows * dist_size();
    struct train_values *v = &p->it;
    v->n = 0;
    train_values_add(v, "objective/scores", sum_score / B);
    train_values_add(v, "objective/kl", sum_kl / B);
    train_values_add(v, "objective/non_score_reward", sum_nonscore / B);
    train_values_add(v, "objective/rlhf_reward", (sum_score + sum_nonscore) / B);
    train_values_add(v, "objective/entropy", sum_ent / B);
    train_values_add(v, "val/eos_rate", all[5] / B);
    train_values_add(v, "val/response_length", all[6] / B);
    train_values_add(v, "val/distinct_2", all[7] / dist_size());
    train_values_add(v, "beta", p->beta);
    p->it_score = sum_score / B;
    p->it_kl = sum_kl / B;
    p->it_beta = p->beta;
    /* The warnings read the k1 mean: an exact sampler makes it non-negative on average. */
    p->counters[1] = sum_k1 / B < 0.0 ? p->counters[1] + 1 : 0;
    p->warn_negative = p->counters[1] >= (uint64_t)o->kl_negative_warn;
    p->warn_high = sum_kl / B > o->kl_warn;
    struct ppo_kl_ctl ctl = o->kl;
    ctl.beta = p->beta;
    ppo_kl_update(&ctl, sum_kl / B, (long)B);
    p->beta = ctl.beta;
    return PL_OK;
}

int ppo_rollout(struct ppo *p, long iteration, struct pl_err *err)
{
    double t0 = pl_now();
    p->iteration = iteration;
    struct ppo_rollout *r = &p->ro;
    r->rows = p->o->batch;
    r->src = &p->train;
    /* dist: every rank draws the prompts of all and answers its own batch of them, with the
     * sampling streams one process at batch ranks x batch would give those rows. */
    int rank = dist_rank(), ranks = dist_size();
    for (int i = 0; i < ranks * r->rows; i++) {
        int q = (int)train_order_next(&p->order);
        if (i / r->rows == rank)
            r->prompt[i % r->rows] = q;
    }
    int rc = generate(p, (iteration * ranks + rank) * r->rows, err);
    double t1 = pl_now();
    if (rc == PL_OK)
        rc = score_rows(p, err);
    if (rc == PL_OK)
        rc = p->o->scorer ? p->o->scorer(p->o->scorer_ctx, &p->ro, p->scores, err)
                          : reward_model_scores(p, p->scores, err);
    if (rc)
        return rc;
    for (int i = 0; i < r->rows; i++) {
        if (!isfinite(p->scores[i]))
            return pl_errf(err, PL_ENUMERIC,
                           "iteration %ld: the reward of response %d is %g: stopped before the "
                           "update",
                           iteration + 1, i, p->scores[i]);
        r->score[i] = p->scores[i];
        if (r->finish[i] == SAMPLE_LENGTH)
            r->score[i] -= p->o->missing_eos_penalty;
    }
    if ((rc = advantages(p, err)))
        return rc;
    p->gen_s = t1 - t0;
    p->score_s = pl_now() - t1;
    return PL_OK;
}

/* ---- the task ---- */

static void shuffle(struct ppo *p, long iteration)
{
    int B = p->ro.rows;
    struct pl_rng rng;
    pl_rng_seed(&rng, p->o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)iteration);
    for (int e = 0; e < p->o->ppo_epochs; e++) {
        int *perm = p->perm + (size_t)e * B;
        for (int i = 0; i < B; i++)
            perm[i] = i;
        for (int i = B - 1; i > 0; i--) {
            int j = (int)(pl_rng_next(&rng) % (uint64_t)(i + 1));
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    }
}

static void sample_table(struct ppo *p, struct io_progress *log)
{
    const struct ppo_rollout *r = &p->ro;
    io_progress_log(log, "iteration %ld, responses (score, KL, text):", p->iteration + 1);
    for (int i = 0; i < r->rows && i < 4; i++) {
        fprintf(log->f, "  %+7.3f %6.2f  ", r->score[i], r->kl[i]);
        const char *t = r->text + (size_t)i * r->text_cap;
        pl_write_safe(log->f, t, strlen(t), 0, strlen(t));
        fputc('\n', log->f);
    }
}

static void warn(struct ppo *p, struct io_progress *log)
{
    if (!log)
        return;
    double kl = p->it_kl;
    if (p->warn_high)
        io_progress_log(log,
                        "warning: iteration %ld: mean KL %.2f nats per response exceeds %.3g: "
                        "the policy is far from the reference; if the reward rises while "
                        "responses degrade, it is hacking the reward model",
                        p->iteration + 1, kl, p->o->kl_warn);
    if (p->warn_negative)
        io_progress_log(log,
                        "warning: iteration %ld: the mean k1 KL has been negative for %llu "
                        "iterations in a row: rollouts may not sample the policy's own "
                        "distribution",
                        p->iteration + 1, (unsigned long long)p->counters[1]);
}

static int task_next(void *ctx, struct train_step *st, struct pl_err *err)
{
    struct ppo *p = ctx;
    long it = st->index / p->spi, j = st->index % p->spi;
    if (j == 0) {
        double now = pl_now();
        /* The iteration just ended, whole: its optimizer steps and checkpoint included. */
        if (p->it_t0 > 0.0)
            p->done = (struct ppo_timing){
                now - p->it_t0, p->gen_s, p->score_s, now - p->it_t0 - p->gen_s - p->score_s,
                p->it_tokens};
        p->it_t0 = now;
        int rc = ppo_rollout(p, it, err);
        if (rc)
            return rc;
        shuffle(p, it);
        p->sum_pg = p->sum_vf = p->sum_approxkl = p->sum_clip = p->sum_vclip = p->sum_ratio = 0;
        p->n_mb = 0;
        p->update_s = 0.0;
        double tokens = 0.0;
        for (int i = 0; i < p->ro.rows; i++)
            tokens += p->ro.plen[i] + p->ro.rlen[i];
        if ((rc = dist_sum_doubles(&tokens, 1, err)))
            return rc;
        p->it_tokens = (long)tokens;
        if (st->log && p->o->sample_every > 0 && (it + 1) % p->o->sample_every == 0)
            sample_table(p, st->log);
        warn(p, st->log);
    }
    int B = p->ro.rows, M = p->o->minibatch, per_epoch = (B + M - 1) / M;
    int epoch = (int)(j / per_epoch), first = (int)(j % per_epoch) * M;
    int n = B - first < M ? B - first : M;
    long tokens = 0, masked = 0;
    for (int k = 0; k < n; k++) {
        int row = p->perm[(size_t)epoch * B + first + k];
        p->mb_rows[k] = row;
        tokens += p->ro.plen[row] + p->ro.rlen[row];
        masked += p->ro.rlen[row];
    }
    st->weight[0] = (double)masked;
    st->tokens = tokens;
    st->quiet = j + 1 < p->spi;
    return PL_OK;
}

static void add_iteration_metrics(struct ppo *p, struct train_step *st)
{
    for (int i = 0; i < p->it.n; i++)
        train_values_add(&st->metrics, p->it.name[i], p->it.value[i]);
    double n = p->n_mb > 0 ? (double)p->n_mb : NAN;
    train_values_add(&st->metrics, "policy/approxkl", p->sum_approxkl / n);
    train_values_add(&st->metrics, "policy/clipfrac", p->sum_clip / n);
    train_values_add(&st->metrics, "policy/ratio_mean", p->sum_ratio / n);
    train_values_add(&st->metrics, "loss/policy", p->sum_pg / n);
    train_values_add(&st->metrics, "loss/value", p->sum_vf / n);
    train_values_add(&st->metrics, "val/clipfrac", p->sum_vclip / n);
    train_values_add(&st->metrics, "skipped_minibatches", (double)p->counters[0]);
    train_values_add(&st->metrics, "ppo/iteration", (double)(p->iteration + 1));
    train_values_add(&st->metrics, "episode",
                     (double)(p->iteration + 1) * p->ro.rows * dist_size());
    train_values_add(&st->metrics, "time/generation", p->gen_s);
    train_values_add(&st->metrics, "time/scoring", p->score_s);
    train_values_add(&st->metrics, "time/update", p->update_s);
    train_values_add(&st->metrics, "iteration_tokens_per_s",
                     (double)p->it_tokens / (pl_now() - p->it_t0));
    if (p->warn_high)
        train_values_add(&st->metrics, "warn/kl_high", 1.0);
    if (p->warn_negative)
        train_values_add(&st->metrics, "warn/kl_negative", 1.0);
}

static int task_backward(void *ctx, struct train_model *models, struct train_step *st, int micro,
                         float scale, double *loss, struct pl_err *err)
{
    (void)micro;
    struct ppo *p = ctx;
    const struct ppo_opts *o = p->o;
    const struct ppo_rollout *r = &p->ro;
    double t0 = pl_now();
    long j = st->index % p->spi;
    int M = o->minibatch, B = r->rows, first = (int)(j % ((B + M - 1) / M)) * M;
    int n = B - first < M ? B - first : M;
    int T = gather(p, p->mb_rows, n);
    struct gpt *pol = models[0].m, *val = models[1].m;
    struct gpt_batch b = {.B = n,
                          .T = T,
                          .tokens = p->mb_tokens,
                          .targets = p->mb_targets,
                          .temperature = o->temperature};
    struct gpt_batch vb = {.B = n, .T = T, .tokens = p->mb_tokens, .head_all = true};
    int rc = gpt_forward(pol, &b, err);
    if (rc == PL_OK)
        rc = gpt_forward(val, &vb, err);
    if (rc)
        return rc;
    double pg = 0.0, vf = 0.0, approxkl = 0.0, ratio = 0.0;
    long clipped = 0, vclipped = 0, count = 0;
    size_t NT = (size_t)n * T;
    for (size_t k = 0; k < NT; k++)
        p->mb_dlogp[k] = p->mb_dhead[k] = 0.0f;
    for (int k = 0; k < n; k++) {
        size_t row = (size_t)p->mb_rows[k] * r->width;
        for (int q = 0; q < T; q++) {
            if (!r->mask[row + q])
                continue;
            size_t at = (size_t)k * T + q;
            double lp = pol->logp[at], old = r->logp[row + q], dlp, dv;
            bool c, vc;
            pg += ppo_policy_loss(lp, old, r->adv[row + q], o->cliprange, &dlp, &c);
            vf += ppo_value_loss(val->head[at], r->values[row + q], r->ret[row + q],
                                 o->cliprange_value, &dv, &vc);
            approxkl += 0.5 * (lp - old) * (lp - old);
            ratio += exp(lp - old);
            clipped += c;
            vclipped += vc;
            p->mb_dlogp[at] = (float)dlp;
            p->mb_dhead[at] = (float)dv;
            count++;
        }
    }
    double inv = 1.0 / (double)count;
    *loss = (pg + o->vf_coef * vf) * inv;
    /* dist: the minibatch's statistics and the ratio guard over every rank's tokens; the
     * gradients keep this rank's token mean, which the loop weighs by its share of them. */
    double g[7] = {pg, vf, approxkl, ratio, (double)clipped, (double)vclipped, (double)count};
    if ((rc = dist_sum_doubles(g, 7, err)))
        return rc;
    double ginv = 1.0 / g[6];
    p->sum_pg += g[0] * ginv;
    p->sum_vf += g[1] * ginv;
    p->sum_approxkl += g[2] * ginv;
    p->sum_ratio += g[3] * ginv;
    p->sum_clip += g[4] * ginv;
    p->sum_vclip += g[5] * ginv;
    p->n_mb++;
    if (g[3] * ginv > o->ratio_guard) {
        st->skip = true;
        p->counters[0]++;
    } else {
        float sp = (float)(scale * inv), sv = (float)(scale * inv * o->vf_coef);
        for (size_t k = 0; k < NT; k++) {
            p->mb_dlogp[k] *= sp;
            p->mb_dhead[k] *= sv;
        }
        gpt_backward(pol, p->mb_dlogp, NULL);
        gpt_backward(val, NULL, p->mb_dhead);
    }
    p->update_s += pl_now() - t0;
    if (j + 1 == p->spi)
        add_iteration_metrics(p, st);
    return PL_OK;
}

/* Held-out prompts, a batch at a time, with the same sampling streams at every evaluation: the
 * mean reward-model score and k1 KL to the reference per response. */
static int task_eval(void *ctx, struct train_model *models, struct train_values *out,
                     struct pl_err *err)
{
    (void)models;
    struct ppo *p = ctx;
    struct ppo_rollout *r = &p->ro;
    size_t n = p->eval.set.n;
    double score = 0.0, kl = 0.0, len = 0.0, eos = 0.0;
    int rc = PL_OK;
    r->src = &p->eval;
    /* dist: the batches shared out by rank, the sums added up over the ranks. */
    size_t B = (size_t)p->o->batch, ranks = (size_t)dist_size();
    for (size_t c0 = (size_t)dist_rank() * B; rc == PL_OK && c0 < n; c0 += ranks * B) {
        r->rows = (int)(n - c0 < (size_t)p->o->batch ? n - c0 : (size_t)p->o->batch);
        for (int i = 0; i < r->rows; i++)
            r->prompt[i] = (int)(c0 + (size_t)i);
        /* Streams far from the training ones (iteration * batch + row). */
        rc = generate(p, (1L << 40) + (long)c0, err);
        if (rc == PL_OK)
            rc = score_rows(p, err);
        if (rc == PL_OK)
            rc = p->o->scorer ? p->o->scorer(p->o->scorer_ctx, r, p->scores, err)
                              : reward_model_scores(p, p->scores, err);
        for (int i = 0; rc == PL_OK && i < r->rows; i++) {
            size_t base = (size_t)i * r->width + r->plen[i] - 1;
            for (int t = 0; t < r->rlen[i]; t++)
                kl += r->logp[base + t] - r->ref[base + t];
            score += p->scores[i];
            len += r->rlen[i];
            eos += r->finish[i] != SAMPLE_LENGTH;
        }
    }
    r->rows = p->o->batch;
    r->src = &p->train;
    double all[4] = {score, kl, len, eos};
    if (rc || (rc = dist_sum_doubles(all, 4, err)))
        return rc;
    score = all[0], kl = all[1], len = all[2], eos = all[3];
    p->eval_reward = score / (double)n;
    p->eval_kl = kl / (double)n;
    train_values_add(out, "eval/reward", p->eval_reward);
    train_values_add(out, "eval/kl", p->eval_kl);
    train_values_add(out, "eval/response_length", len / (double)n);
    train_values_add(out, "eval/eos_rate", eos / (double)n);
    return PL_OK;
}

static void task_fields(void *ctx, struct train_fields *keys, struct train_fields *info)
{
    struct ppo *p = ctx;
    const struct ppo_opts *o = p->o;
    train_field_int(keys, "batch", o->batch);
    train_field_int(keys, "minibatch", o->minibatch);
    train_field_int(keys, "ppo_epochs", o->ppo_epochs);
    train_field_int(keys, "max_new_tokens", o->max_new_tokens);
    train_field_float(keys, "temperature", o->temperature);
    train_field_real(keys, "kl_coef", o->kl.beta);
    train_field_real(keys, "target_kl", o->kl.target);
    train_field_real(keys, "kl_horizon", o->kl.horizon);
    train_field_str(keys, "kl_estimator", o->kl_estimator == PPO_KL_K3 ? "k3" : "k1");
    train_field_str(keys, "advantage", "gae");
    train_field_real(keys, "gamma", o->gamma);
    train_field_real(keys, "lambda", o->lambda);
    train_field_real(keys, "cliprange", o->cliprange);
    train_field_real(keys, "cliprange_value", o->cliprange_value);
    train_field_real(keys, "vf_coef", o->vf_coef);
    train_field_real(keys, "ratio_guard", o->ratio_guard);
    train_field_real(keys, "missing_eos_penalty", o->missing_eos_penalty);
    train_field_u64(keys, "seed", o->seed);
    train_field_int(keys, "stop_strings", o->n_stop);
    train_field_str(info, "policy", o->policy);
    train_field_str(info, "reward", o->reward);
    train_field_str(info, "value", o->value ? o->value : o->reward ? o->reward : o->policy);
    train_field_str(info, "prompts", o->prompts);
    train_field_str(info, "eval_prompts", o->eval_prompts);
    train_field_int(info, "iterations", o->iterations);
    train_field_int(info, "steps_per_iteration", p->spi);
}

static void task_note(void *ctx, const struct train_step *st, char *buf, size_t n)
{
    struct ppo *p = ctx;
    int len = snprintf(buf, n, "iteration %ld/%ld, reward %.3f, KL %.2f, beta %.3g",
                       st->index / p->spi + 1, p->o->iterations, p->it_score, p->it_kl, p->it_beta);
    /* Rollout tokens over the whole of the last finished iteration. */
    if (p->done.wall_s > 0.0 && len > 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, ", %.0f tok/s",
                 (double)p->done.tokens / p->done.wall_s);
}

void ppo_as_task(struct ppo *p, struct train_task *task)
{
    *task = (struct train_task){.label = "ppo",
                                .ctx = p,
                                .next = task_next,
                                .backward = task_backward,
                                .eval = p->eval.set.n ? task_eval : NULL,
                                .fields = task_fields,
                                .note = task_note,
                                .vars = p->vars,
                                .n_vars = 4};
}

int ppo_run(const struct ppo_opts *o, struct ppo_result *res, struct pl_err *err)
{
    *res = (struct ppo_result){.train = {.train_loss = NAN, .eval_first = NAN, .eval_last = NAN},
                               .score = NAN,
                               .kl = NAN,
                               .eval_reward_first = NAN,
                               .eval_reward = NAN,
                               .eval_kl = NAN};
    struct ppo p = {0};
    char *value_out = o->train.out ? io_path_join(o->train.out, "value") : NULL;
    int rc = value_out ? ppo_init(&p, o, err) : pl_oom(err, "a path");
    if (rc == PL_OK) {
        struct train_model models[2] = {
            {.name = "policy", .m = &p.policy, .tok = &p.tok, .out = o->train.out,
             .optim = o->optim},
            {.name = "value", .m = &p.value, .tok = &p.tok, .out = value_out, .optim = o->voptim},
        };
        struct train_opts run = o->train;
        run.steps = o->iterations * p.spi;
        run.save_every = o->save_every * p.spi;
        run.grad_accum = 1;
        run.eval_every = o->eval_every * p.spi;
        struct train_task task;
        ppo_as_task(&p, &task);
        rc = train_run(models, 2, &task, &run, &res->train, err);
        res->iterations = res->train.steps / p.spi;
        res->skipped = (long)p.counters[0];
        res->beta = p.beta;
        if (p.it.n) {
            res->score = p.it_score;
            res->kl = p.it_kl;
        }
        res->eval_reward_first = res->train.eval_first;
        res->eval_reward = p.eval_reward;
        res->eval_kl = p.eval_kl;
        res->timing = p.done;
    }
    ppo_release(&p);
    pl_free(value_out);
    return rc;
}
