/* The training loop on its own: the schedule, and a toy task that trains two models with their
 * own learning rates, reports its own metrics and held-out values, skips a step and keeps a
 * double in its state; exact resume of both models, resume keys, output folders. */
#include "trainer/train.h"

#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/plumb-loop-XXXXXX";

/* A path inside the temporary folder, kept until the end. */
static const char *tmp(const char *name)
{
    static char bufs[32][512];
    static int next;
    PL_ASSERT(next < 32);
    char *b = bufs[next++];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

/* ---- schedule ---- */

static void test_schedule(void)
{
    struct train_optim o;
    train_optim_default(&o);
    o.lr = 1e-3f;
    o.warmup = 10;
    o.min_lr_frac = 0.1f;
    tap_is_float(train_lr(&o, 111, 0), 1e-4, 1e-9, "warmup starts at lr / warmup");
    tap_is_float(train_lr(&o, 111, 4), 5e-4, 1e-9, "warmup rises linearly");
    tap_is_float(train_lr(&o, 111, 9), 1e-3, 1e-9, "warmup ends at the peak");
    tap_is_float(train_lr(&o, 111, 10), 1e-3, 1e-9, "the cosine starts at the peak");
    tap_is_float(train_lr(&o, 111, 60), 0.55e-3, 1e-9, "halfway down the cosine is the midpoint");
    tap_is_float(train_lr(&o, 111, 110), 1e-4, 1e-9, "the last step is at min_lr_frac x lr");
    tap_is_float(train_lr(&o, 111, 150), 1e-4, 1e-9, "past the horizon the final rate holds");
    o.warmup = 0;
    tap_is_float(train_lr(&o, 111, 0), 1e-3, 1e-9, "no warmup starts at the peak");
}

/* ---- a toy task over two models ---- */

enum { B = 2, T = 8 };

struct toy {
    uint64_t rng[4]; /* data RNG: state */
    double kl;       /* a coefficient the task adapts: state */
    long skip_at;    /* step index to skip; -1: none */
    long fail_at;    /* step index whose backward fails; -1: none */
    bool quiet_even; /* steps of even index write no metrics line */
    int notes;       /* calls of the progress note */
    int tokens[B * T], targets[B * T], eval_tokens[B * T], eval_targets[B * T];
    struct train_var vars[2];
};

static void fill(struct pl_rng *r, int *tokens, int *targets)
{
    for (int i = 0; i < B * T; i++)
        tokens[i] = (int)(pl_rng_next(r) % 32);
    for (int i = 0; i < B * T; i++)
        targets[i] = i % T == T - 1 ? -1 : (tokens[i] + 1) % 32;
}

static int toy_next(void *ctx, struct train_step *st, struct pl_err *err)
{
    (void)err;
    struct toy *t = ctx;
    struct pl_rng r;
    memcpy(r.s, t->rng, sizeof r.s);
    fill(&r, t->tokens, t->targets);
    memcpy(t->rng, r.s, sizeof r.s);
    st->weight[0] = B * (T - 1);
    st->tokens = B * T;
    return PL_OK;
}

static int toy_backward(void *ctx, struct train_model *models, struct train_step *st, int micro,
                        float scale, double *loss, struct pl_err *err)
{
    (void)micro;
    struct toy *t = ctx;
    struct gpt_batch b = {.B = B, .T = T, .tokens = t->tokens, .targets = t->targets};
    double l[2];
    for (int k = 0; k < 2; k++) {
        int rc = gpt_forward(models[k].m, &b, err);
        if (rc)
            return rc;
        l[k] = models[k].m->loss;
        gpt_backward_lm(models[k].m, scale);
    }
    if (st->index == t->fail_at)
        return pl_errf(err, PL_EIO, "toy failure");
    t->kl = 0.5 * t->kl + l[0] - l[1];
    *loss = l[0] + l[1];
    train_values_add(&st->metrics, "toy/policy_loss", l[0]);
    train_values_add(&st->metrics, "objective/kl_coef", t->kl);
    st->skip = st->index == t->skip_at;
    st->quiet = t->quiet_even && st->index % 2 == 0;
    return PL_OK;
}

static void toy_note(void *ctx, const struct train_step *st, char *buf, size_t n)
{
    struct toy *t = ctx;
    t->notes++;
    snprintf(buf, n, "toy step %ld", st->index + 1);
}

static int toy_eval(void *ctx, struct train_model *models, struct train_values *out,
                    struct pl_err *err)
{
    struct toy *t = ctx;
    struct gpt_batch b = {.B = B, .T = T, .tokens = t->eval_tokens, .targets = t->eval_targets};
    static const char *names[2] = {"eval/policy_loss", "eval/value_loss"};
    for (int k = 0; k < 2; k++) {
        int rc = gpt_forward(models[k].m, &b, err);
        if (rc)
            return rc;
        train_values_add(out, names[k], models[k].m->loss);
    }
    return PL_OK;
}

static void toy_fields(void *ctx, struct train_fields *keys, struct train_fields *info)
{
    (void)ctx;
    train_field_int(keys, "toy_batch", B);
    train_field_str(info, "toy_note", "two models");
}

static void toy_init(struct toy *t, struct train_task *task)
{
    memset(t, 0, sizeof *t);
    struct pl_rng r;
    pl_rng_seed(&r, 99);
    fill(&r, t->eval_tokens, t->eval_targets);
    pl_rng_seed(&r, 7);
    memcpy(t->rng, r.s, sizeof r.s);
    t->kl = 0.2;
    t->skip_at = 2;
    t->fail_at = -1;
    t->vars[0] = (struct train_var){"rng", TRAIN_U64, t->rng, 4};
    t->vars[1] = (struct train_var){"kl", TRAIN_F64, &t->kl, 1};
    *task = (struct train_task){.label = "toy",
                                .ctx = t,
                                .next = toy_next,
                                .backward = toy_backward,
                                .eval = toy_eval,
                                .fields = toy_fields,
                                .note = toy_note,
                                .vars = t->vars,
                                .n_vars = 2};
}

/* Two fresh models (the same every time), the policy saved into the run folder and the value
 * model into run/value. */
struct pair {
    struct gpt m[2];
    struct train_model set[2];
    char value_out[600];
};

static void pair_init(struct pair *p, const char *run)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 257;
    c.n_positions = T;
    c.n_embd = 16;
    c.n_layer = 1;
    c.n_head = 2;
    c.bos_token_id = c.eos_token_id = 256;
    snprintf(c.tokenizer, sizeof c.tokenizer, "byte");
    struct gpt_opts go = {.trainable = true, .max_batch = B, .max_seq = T};
    struct pl_err err = {0};
    snprintf(p->value_out, sizeof p->value_out, "%s/value", run);
    for (int k = 0; k < 2; k++) {
        if (gpt_init(&p->m[k], &c, &go, &err))
            tap_diag("%s", err.msg);
        gpt_init_weights(&p->m[k], 5 + (uint64_t)k);
        p->set[k] = (struct train_model){
            .name = k ? "value" : "policy", .m = &p->m[k], .out = k ? p->value_out : run};
        train_optim_default(&p->set[k].optim);
        p->set[k].optim.lr = k ? 1e-3f : 1e-2f;
        p->set[k].optim.warmup = 2;
    }
}

static void pair_release(struct pair *p)
{
    gpt_release(&p->m[0]);
    gpt_release(&p->m[1]);
}

static void toy_opts(struct train_opts *o, const char *run)
{
    train_opts_default(o);
    o->out = run;
    o->steps = 10;
    o->eval_every = 5;
    o->save_every = 4;
    o->version = "test";
}

/* The run: fresh models and task (a resume restores them), trained per o. */
static int toy_run(const struct train_opts *o, struct train_result *res, struct toy *t,
                   struct pl_err *err)
{
    struct pair p;
    struct train_task task;
    pair_init(&p, o->out);
    toy_init(t, &task);
    int rc = train_run(p.set, 2, &task, o, res, err);
    pair_release(&p);
    return rc;
}

static int stop_at_6(void *ctx, long step)
{
    (void)ctx;
    return step == 6;
}

/* Drop `"KEY": value` from a metrics line. */
static void cut_field(char *line, const char *key)
{
    char *k = strstr(line, key), *end = k ? k + strcspn(k, ",}") : NULL;
    if (!k)
        return;
    if (*end == ',')
        end += 2;
    else if (k - line >= 2)
        k -= 2;
    memmove(k, end, strlen(end) + 1);
}

/* metrics.jsonl without the wall-clock fields. */
static char *metrics_text(const char *run)
{
    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    struct pl_buf b = {0};
    pl_buf_str(&b, "");
    while (f && fgets(line, sizeof line, f)) {
        cut_field(line, "\"time\": ");
        cut_field(line, "\"tokens_per_s\": ");
        pl_buf_str(&b, line);
    }
    if (f)
        fclose(f);
    return b.p;
}

/* Whether tensor `name` holds the same bytes in two state files. */
static bool same_tensor(const char *run_a, const char *run_b, const char *name)
{
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/state.safetensors", run_a);
    snprintf(pb, sizeof pb, "%s/state.safetensors", run_b);
    struct ckpt_file fa = {0}, fb = {0};
    struct pl_err err = {0};
    bool same = false;
    if (ckpt_file_open(&fa, pa, &err) == PL_OK && ckpt_file_open(&fb, pb, &err) == PL_OK) {
        const struct ckpt_tensor *a = ckpt_file_find(&fa, name), *b = ckpt_file_find(&fb, name);
        same = a && b && a->dtype == b->dtype && ckpt_tensor_numel(a) == ckpt_tensor_numel(b) &&
               memcmp(a->data, b->data, ckpt_tensor_numel(a) * ckpt_dtype_size(a->dtype)) == 0;
    }
    ckpt_file_release(&fa);
    ckpt_file_release(&fb);
    return same;
}

static void test_two_models(void)
{
    struct train_opts o;
    struct train_result res;
    struct pl_err err = {0};
    struct toy whole;
    toy_opts(&o, tmp("whole"));
    int rc = toy_run(&o, &res, &whole, &err);
    if (!tap_ok(rc == PL_OK && res.steps == 10, "two models train for 10 steps"))
        tap_diag("%s", err.msg);
    tap_ok(res.skipped_steps == 1, "the skipped step is counted in the result");
    char *text = metrics_text(tmp("whole"));
    tap_ok(text && strstr(text, "{\"step\": 3, \"train/loss\": ") &&
               strstr(text, "\"objective/kl_coef\": ") &&
               strstr(text, "\"train/skipped_steps\": 1}") &&
               strstr(text, "\"eval/policy_loss\": ") && strstr(text, "\"eval/value_loss\": "),
           "metrics carry the task's names, its held-out values and the skipped count");
    const char *s3 = text ? strstr(text, "{\"step\": 3,") : NULL;
    tap_ok(s3 && strstr(s3, "policy/lr") > strchr(s3, '\n'),
           "the skipped step logs no learning rate: nothing was updated");
    char want[200];
    snprintf(want, sizeof want, "\"policy/lr\": %.9g",
             (double)train_lr(&(struct train_optim){.lr = 1e-2f, .min_lr_frac = 0.1f, .warmup = 2},
                              10, 4));
    char want_v[200];
    snprintf(want_v, sizeof want_v, "\"value/lr\": %.9g",
             (double)train_lr(&(struct train_optim){.lr = 1e-3f, .min_lr_frac = 0.1f, .warmup = 2},
                              10, 4));
    const char *s5 = text ? strstr(text, "{\"step\": 5,") : NULL;
    tap_ok(s5 && strstr(s5, want) && strstr(s5, want_v),
           "each model follows its own schedule: %s, %s", want, want_v);

    struct toy part;
    toy_opts(&o, tmp("part"));
    o.on_step = stop_at_6;
    rc = toy_run(&o, &res, &part, &err);
    o.on_step = NULL;
    o.resume = true;
    rc |= toy_run(&o, &res, &part, &err);
    if (!tap_ok(rc == PL_OK && res.start_step == 4 && res.steps == 10 && res.skipped_steps == 1,
                "a run stopped at step 6 resumes from its step 4 checkpoint to step 10"))
        tap_diag("%s", err.msg);
    tap_ok(tap_same_file(tmp("whole/model.safetensors"), tmp("part/model.safetensors")) &&
               tap_same_file(tmp("whole/value/model.safetensors"), tmp("part/value/model.safetensors")),
           "both models' weights equal the uninterrupted run's, bit for bit");
    const char *moments[] = {"policy.adam.m", "policy.adam.v", "value.adam.m",
                             "value.adam.v",  "policy.adam.t", "value.adam.t"};
    bool same = true;
    for (int i = 0; i < 6; i++)
        same &= same_tensor(tmp("whole"), tmp("part"), moments[i]);
    tap_ok(same, "and so do both models' AdamW moments and step counts");
    tap_ok(same_tensor(tmp("whole"), tmp("part"), "task.kl") && part.kl == whole.kl,
           "the task's double state resumes exactly (kl %.17g)", part.kl);
    char *text2 = metrics_text(tmp("part"));
    tap_ok(text && text2 && strcmp(text, text2) == 0, "metrics.jsonl is the uninterrupted run's");
    pl_free(text);
    pl_free(text2);

    struct pair p;
    struct train_task task;
    struct toy t;
    pair_init(&p, tmp("part"));
    toy_init(&t, &task);
    p.set[1].optim.lr = 2e-3f;
    rc = train_run(p.set, 2, &task, &o, &res, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "option 'value.lr' was 0.001 there and is 0.002 now"),
           "a resume with another learning rate for one model is refused: %s", err.msg);
    pair_release(&p);
}

/* A task may keep a step out of metrics.jsonl (PPO logs once an iteration); evaluation steps
 * are always written. */
static void test_quiet(void)
{
    struct train_opts o;
    struct train_result res;
    struct pl_err err = {0};
    toy_opts(&o, tmp("quiet"));
    struct pair p;
    struct train_task task;
    struct toy t;
    pair_init(&p, o.out);
    toy_init(&t, &task);
    t.quiet_even = true;
    int rc = train_run(p.set, 2, &task, &o, &res, &err);
    char *text = metrics_text(tmp("quiet"));
    tap_ok(rc == PL_OK && text && !strstr(text, "\"step\": 1,") && !strstr(text, "\"step\": 3,") &&
               strstr(text, "\"step\": 2,") && strstr(text, "\"step\": 5,") &&
               strstr(text, "\"step\": 10,"),
           "quiet steps write no metrics line, except on evaluation steps");
    tap_is_int(t.notes, 10, "the task's progress note is asked for after every step");
    pl_free(text);
    pair_release(&p);
}

static void test_folders(void)
{
    struct train_opts o;
    struct train_result res;
    struct pl_err err = {0};
    struct toy t;
    toy_opts(&o, tmp("whole"));
    o.steps = 2;
    int rc = toy_run(&o, &res, &t, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "is not empty: resume the run there (--resume) or "
                                              "replace it (--force)"),
           "a non-empty run folder is refused: %s", err.msg);
    o.force = true;
    o.save_every = 0;
    o.eval_every = 0;
    rc = toy_run(&o, &res, &t, &err);
    char *text = metrics_text(tmp("whole"));
    struct ckpt_file f = {0};
    int64_t step = -1;
    if (ckpt_file_open(&f, tmp("whole/state.safetensors"), &err) == PL_OK)
        ckpt_file_get(&f, "step", CKPT_I64, &step, 1, &err);
    ckpt_file_release(&f);
    tap_ok(rc == PL_OK && step == 2 && text && strncmp(text, "{\"step\": 1,", 11) == 0 &&
               !strstr(text, "\"step\": 3"),
           "with force nothing of the older run survives in state or metrics");
    pl_free(text);

    toy_opts(&o, tmp("fails"));
    struct pair p;
    struct train_task task;
    pair_init(&p, o.out);
    toy_init(&t, &task);
    t.fail_at = 2;
    rc = train_run(p.set, 2, &task, &o, &res, &err);
    tap_ok(rc == PL_EIO && access(tmp("fails"), F_OK) != 0,
           "a run failing before its first checkpoint leaves no folder or metrics behind");
    pair_release(&p);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 2, &err))
        tap_skip_all(err.msg);
    if (!mkdtemp(tmpdir))
        tap_skip_all("cannot create a temporary folder");
    tap_plan(24);
    test_schedule();
    test_two_models();
    test_quiet();
    test_folders();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmpdir);
    return tap_done();
}
