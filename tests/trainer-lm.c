/* The language-modelling task: packing and prompt masking, gradient accumulation, determinism,
 * exact resume after a kill, extending a run, the non-finite stop, bad input and responses cut
 * off, nothing half-written after a failure, allocation failure and the commands. */
#include "trainer/lm.h"

#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "model/tok.h"
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

/* A tiny byte-level model folder, as plumb init writes it. */
static void make_model(const char *dir)
{
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt_opts o = {.max_batch = 1, .max_seq = 1};
    struct gpt m;
    struct pl_err err = {0};
    if (gpt_init(&m, &c, &o, &err) == PL_OK) {
        gpt_init_weights(&m, 5);
        if (ckpt_save(&m, dir, &err))
            tap_diag("%s", err.msg);
    }
    gpt_release(&m);
}

/* A corpus of short arithmetic sentences in paragraphs, and SFT questions about them. */
static void make_data(void)
{
    char corpus[16384], sft[16384];
    size_t c = 0, s = 0;
    for (int i = 0; i < 120; i++) {
        c += (size_t)snprintf(corpus + c, sizeof corpus - c, "%d plus %d is %d.%s\n", i % 7, i % 5,
                              i % 7 + i % 5, i % 9 == 8 ? "\n" : "");
        if (i < 40)
            s += (size_t)snprintf(sft + s, sizeof sft - s,
                                  "{\"prompt\": \"Q: %d plus %d?\\nA:\", \"response\": \" %d\"}\n",
                                  i % 7, i % 5, i % 7 + i % 5);
    }
    tap_write_file(tap_tmp("corpus.txt"), corpus);
    tap_write_file(tap_tmp("sft.jsonl"), sft);
    make_model(tap_tmp("model"));
}

static void base_opts(struct lm_opts *o, enum lm_kind kind, const char *out)
{
    lm_opts_default(o);
    o->kind = kind;
    o->model = tap_tmp("model");
    o->data = kind == LM_SFT ? tap_tmp("sft.jsonl") : tap_tmp("corpus.txt");
    o->train.out = out;
    o->train.steps = 8;
    o->batch = 4;
    o->seq = 32;
    o->optim.lr = 3e-3f;
    o->optim.warmup = 2;
    o->train.eval_every = 4;
    o->train.save_every = 4;
    o->eval_frac = 0.1;
    o->train.version = "test";
}

/* The "train/loss" and "eval/loss" values of metrics.jsonl as written, one after another. */
static void loss_curve(const char *dir, char *out, size_t cap)
{
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    size_t len = 0;
    out[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        const char *keys[] = {"\"step\": ", "\"train/loss\": ", "\"eval/loss\": "};
        for (int k = 0; k < 3; k++) {
            const char *v = strstr(line, keys[k]);
            if (v)
                len +=
                    (size_t)snprintf(out + len, cap - len, "%.*s ",
                                     (int)strcspn(v + strlen(keys[k]), ",}"), v + strlen(keys[k]));
        }
    }
    if (f)
        fclose(f);
}

static long state_step(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    struct ckpt_file f;
    struct pl_err err = {0};
    int64_t step = -1;
    if (ckpt_file_open(&f, path, &err) == PL_OK)
        ckpt_file_get(&f, "step", CKPT_I64, &step, 1, &err);
    ckpt_file_release(&f);
    return (long)step;
}

/* ---- packing and masking ---- */

/* Three SFT examples of four tokens (two prompt bytes, one response byte, the end token) in rows
 * of eight: two examples a row, then two padding positions. */
static void test_sft_packing(void)
{
    tap_write_file(tap_tmp("three.jsonl"), "{\"prompt\": \"ab\", \"response\": \"c\"}\n"
                                           "{\"prompt\": \"de\", \"response\": \"f\"}\n"
                                           "{\"prompt\": \"gh\", \"response\": \"i\"}\n");
    struct lm_opts o;
    base_opts(&o, LM_SFT, tap_tmp("unused"));
    o.data = tap_tmp("three.jsonl");
    o.eval_frac = 0;
    o.batch = 2;
    o.seq = 8;
    struct tok tok = {0};
    struct pl_err err = {0};
    struct lm_task t;
    tok_init_byte(&tok, &err);
    int rc = lm_init(&t, &tok, &o, 32, &err);
    if (!tap_is_int(rc, PL_OK, "three examples load"))
        tap_diag("%s", err.msg);
    tap_is_int((long)t.train.n, 3, "one unit per example");
    tap_is_int(t.n_eval_rows, 0, "eval_frac 0 holds nothing out");
    tap_is_int(lm_steps(&t, &(struct lm_opts){.epochs = 2}), 2,
               "two epochs of two rows in batches of two rows are two steps");
    struct train_task task;
    lm_as_task(&t, &task);
    double weight;
    struct train_step st = {.n_micro = 1, .weight = &weight};
    task.next(task.ctx, &st, &err);
    long tokens = st.tokens;
    struct gpt_batch b;
    lm_batch(&t, 0, &b);
    static const int want_seg[8] = {0, 0, 0, 1, 1, 1, 2, 2}, want_pos[8] = {0, 1, 2, 0, 1, 2, 0, 1};
    int layout = 1, masked = 1, seen = 0;
    for (int r = 0; r < 2; r++) {
        const int *tk = b.tokens + r * 8, *tg = b.targets + r * 8;
        for (int i = 0; i < 8; i++)
            layout &= b.seg[r * 8 + i] == want_seg[i] && b.pos[r * 8 + i] == want_pos[i];
        for (int s = 0; s < 2; s++) {
            int first = tk[3 * s];
            masked &= (first == 'a' || first == 'd' || first == 'g') &&
                      tk[3 * s + 1] == first + 1 && tk[3 * s + 2] == first + 2 && tg[3 * s] == -1 &&
                      tg[3 * s + 1] == first + 2 && tg[3 * s + 2] == 256;
            if (r == 0 || s == 0)
                seen |= 1 << (first - 'a') / 3;
        }
        masked &= tk[6] == 256 && tk[7] == 256 && tg[6] == -1 && tg[7] == -1;
    }
    tap_ok(layout, "segments and positions restart at each example; padding has its own segment");
    tap_ok(masked, "targets: -1 on the prompt, the response byte, then the end token");
    tap_is_int(seen, 7, "the first three units are the three examples, each once");
    tap_is_float(weight, 8, 0, "the step's weight counts the response and end targets");
    tap_is_int(tokens, 16, "tokens processed are batch x seq");

    /* The task's loss is the mean over response targets only, and each packed example scores
     * as if it were alone. */
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt m;
    struct gpt_opts go = {.trainable = true, .max_batch = 2, .max_seq = 8};
    gpt_init(&m, &c, &go, &err);
    gpt_init_weights(&m, 3);
    double loss;
    gpt_zero_grad(&m);
    struct train_model tm = {.m = &m};
    task.backward(task.ctx, &tm, &st, 0, 1.0f, &loss, &err);
    float packed_logp[16];
    memcpy(packed_logp, m.logp, sizeof packed_logp);
    int all[16]; /* every next token inside each example, prompt included */
    for (int i = 0; i < 16; i++)
        all[i] = i % 8 >= 6 ? -1 : want_pos[i % 8] < 2 ? b.tokens[i + 1] : 256;
    struct gpt_batch ball = b;
    ball.targets = all;
    gpt_forward(&m, &ball, &err);
    double sum = 0;
    int n = 0;
    for (int i = 0; i < 16; i++)
        if (b.targets[i] >= 0) {
            sum -= m.logp[i];
            n++;
        }
    tap_is_float(loss, sum / n, 1e-6, "the loss is the mean over response tokens only");
    tap_ok(fabs(m.loss - loss) > 1e-3, "counting prompt tokens would change it (%.4f vs %.4f)",
           m.loss, loss);
    double d = 0;
    for (int s = 0; s < 4; s++) {
        const int *tk = b.tokens + (s / 2) * 8 + 3 * (s % 2),
                  *tg = b.targets + (s / 2) * 8 + 3 * (s % 2);
        struct gpt_batch alone = {.B = 1, .T = 3, .tokens = tk, .targets = tg};
        gpt_forward(&m, &alone, &err);
        for (int i = 1; i < 3; i++)
            d = fmax(d, fabs(m.logp[i] - packed_logp[(s / 2) * 8 + 3 * (s % 2) + i]));
    }
    tap_ok(d < 1e-5, "packed examples score as if alone (max diff %.2g)", d);
    gpt_release(&m);
    lm_release(&t);
    tok_release(&tok);
}

/* Pretraining text: documents at blank lines, each with the end token, in windows of seq + 1
 * overlapping by one; the held-out tail starts at a line. */
static void test_text_units(void)
{
    tap_write_file(tap_tmp("doc.txt"), "abcdefghij\nklm\n\n\nnopq\n");
    struct lm_opts o;
    base_opts(&o, LM_PRETRAIN, tap_tmp("unused"));
    o.data = tap_tmp("doc.txt");
    o.eval_frac = 0;
    o.seq = 4;
    struct tok tok = {0};
    struct pl_err err = {0};
    struct lm_task t;
    tok_init_byte(&tok, &err);
    int rc = lm_init(&t, &tok, &o, 32, &err);
    tap_is_int(rc, PL_OK, "a two-document text loads");
    int lens[6] = {5, 5, 5, 4, 5, 2}, ok = t.train.n == 6;
    for (size_t i = 0; ok && i < 6; i++)
        ok = t.train.len[i] == lens[i] && t.train.prompt[i] == 0;
    tap_ok(ok, "15 + 1 tokens make windows of 5, 5, 5, 4; 5 + 1 make 5, 2");
    const int *ids = t.train.ids;
    tap_ok(ok && ids[t.train.start[1]] == 'e' && ids[t.train.start[3]] == 'l' &&
               ids[t.train.start[3] + 3] == 256 && ids[t.train.start[5] + 1] == 256,
           "windows overlap by one token and each document ends with the end token");
    lm_release(&t);

    tap_write_file(tap_tmp("lines.txt"), "line one\nline two\nline three\nline four\n");
    o.data = tap_tmp("lines.txt");
    o.eval_frac = 0.3;
    rc = lm_init(&t, &tok, &o, 32, &err);
    tap_ok(rc == PL_OK && t.train.n_ids == 29 + 1 && t.eval.n_ids == 10 + 1 && t.n_eval_rows == 3,
           "the held-out tail starts at the next line start: the last line");
    lm_release(&t);
    tok_release(&tok);
}

/* ---- the loop ---- */

static void test_accumulation(void)
{
    struct lm_opts o;
    struct lm_result res;
    struct pl_err err = {0};
    base_opts(&o, LM_PRETRAIN, tap_tmp("accum1"));
    o.train.steps = 3;
    o.train.eval_every = 0;
    int rc = lm_run(&o, &res, &err);
    base_opts(&o, LM_PRETRAIN, tap_tmp("accum2"));
    o.train.steps = 3;
    o.train.eval_every = 0;
    o.batch = 2;
    o.train.grad_accum = 2;
    rc |= lm_run(&o, &res, &err);
    if (!tap_is_int(rc, PL_OK, "batch 4 and batch 2 x accumulation 2 train"))
        tap_diag("%s", err.msg);
    size_t n1, n2;
    float *a = tap_load_params(tap_tmp("accum1"), &n1),
          *b = tap_load_params(tap_tmp("accum2"), &n2);
    double d = 0, moved = 0;
    float *init = tap_load_params(tap_tmp("model"), &n2);
    for (size_t i = 0; a && b && init && i < n1; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        moved = fmax(moved, fabs(a[i] - init[i]));
    }
    tap_ok(a && b && d < 2e-5 && moved > 1e-3,
           "accumulating 2 x 2 rows gives the weights of 4 rows (max diff %.2g, moved %.2g)", d,
           moved);
    pl_free(a);
    pl_free(b);
    pl_free(init);
}

/* Stop the run at step 6, after the checkpoint of step 4, as a kill would. */
static int kill_at_6(void *ctx, long step)
{
    (void)ctx;
    return step == 6;
}

static void test_determinism_and_resume(void)
{
    static char curve_a[8192], curve_b[8192];
    struct lm_opts o;
    struct lm_result res;
    struct pl_err err = {0};
    int rc = PL_OK;
    const char *dirs[] = {tap_tmp("run_a"), tap_tmp("run_a2")};
    for (int i = 0; i < 2; i++) {
        base_opts(&o, LM_SFT, dirs[i]);
        o.mix_corpus = tap_tmp("corpus.txt");
        rc |= lm_run(&o, &res, &err);
    }
    if (!tap_is_int(rc, PL_OK, "an SFT run with a mixed-in corpus trains"))
        tap_diag("%s", err.msg);
    tap_ok(isfinite(res.train.eval_first) && res.train.eval_last < res.train.eval_first,
           "its held-out loss falls (%.4f -> %.4f)", res.train.eval_first, res.train.eval_last);
    loss_curve(dirs[0], curve_a, sizeof curve_a);
    loss_curve(dirs[1], curve_b, sizeof curve_b);
    tap_ok(curve_a[0] && strcmp(curve_a, curve_b) == 0, "the same seed gives the same loss curve");
    size_t na, nb;
    float *a = tap_load_params(dirs[0], &na), *b = tap_load_params(dirs[1], &nb);
    tap_ok(a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0,
           "and the same weights, bit for bit");
    pl_free(b);

    base_opts(&o, LM_SFT, tap_tmp("run_b"));
    o.mix_corpus = tap_tmp("corpus.txt");
    o.train.on_step = kill_at_6;
    rc = lm_run(&o, &res, &err);
    tap_ok(rc == PL_OK && res.train.stopped && res.train.steps == 6 &&
               state_step(tap_tmp("run_b")) == 4,
           "a run killed at step 6 keeps its checkpoint of step 4");
    o.train.on_step = NULL;
    o.train.resume = true;
    rc = lm_run(&o, &res, &err);
    tap_ok(rc == PL_OK && res.train.start_step == 4 && res.train.steps == 8,
           "--resume continues from step 4");
    b = tap_load_params(tap_tmp("run_b"), &nb);
    tap_ok(a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0,
           "the resumed run ends with the uninterrupted run's weights, bit for bit");
    loss_curve(tap_tmp("run_b"), curve_b, sizeof curve_b);
    tap_ok(strcmp(curve_a, curve_b) == 0, "and metrics.jsonl holds the same loss curve");
    pl_free(a);
    pl_free(b);

    o.batch = 2;
    rc = lm_run(&o, &res, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "option 'batch' was 4 there and is 2 now"),
           "resuming with another batch size is refused: %s", err.msg);
    base_opts(&o, LM_SFT, tap_tmp("run_c"));
    o.mix_corpus = tap_tmp("corpus.txt");
    o.seed = 7;
    lm_run(&o, &res, &err);
    loss_curve(tap_tmp("run_c"), curve_b, sizeof curve_b);
    tap_ok(strcmp(curve_a, curve_b) != 0, "another seed gives another curve");
}

/* A task that poisons the gradient (or the loss) of one micro-batch. */
struct poison {
    struct train_task inner;
    int at, calls;
    bool loss;
};

static int poison_next(void *ctx, struct train_step *st, struct pl_err *err)
{
    struct poison *p = ctx;
    return p->inner.next(p->inner.ctx, st, err);
}

static int poison_backward(void *ctx, struct train_model *models, struct train_step *st, int micro,
                           float scale, double *loss, struct pl_err *err)
{
    struct poison *p = ctx;
    int rc = p->inner.backward(p->inner.ctx, models, st, micro, scale, loss, err);
    if (++p->calls == p->at) {
        if (p->loss)
            *loss = NAN;
        else
            models[0].m->grads[0] = INFINITY;
    }
    return rc;
}

static int poison_eval(void *ctx, struct train_model *models, struct train_values *out,
                       struct pl_err *err)
{
    struct poison *p = ctx;
    return p->inner.eval(p->inner.ctx, models, out, err);
}

static void poison_fields(void *ctx, struct train_fields *keys, struct train_fields *info)
{
    struct poison *p = ctx;
    p->inner.fields(p->inner.ctx, keys, info);
}

/* The LM task on the loop directly, its model in `model`. */
static int run_task(struct lm_opts *o, struct gpt *m, const struct tok *tok,
                    const struct train_task *task, struct lm_result *res, struct pl_err *err)
{
    struct train_model model = {.m = m, .tok = tok, .out = o->train.out, .optim = o->optim};
    return train_run(&model, 1, task, &o->train, &res->train, err);
}

static void test_nonfinite(void)
{
    struct lm_opts o;
    base_opts(&o, LM_PRETRAIN, tap_tmp("nan"));
    o.train.save_every = 2;
    struct tok tok = {0};
    struct pl_err err = {0};
    struct lm_task t;
    struct gpt m = {0};
    struct lm_result res;
    struct gpt_opts go = {.trainable = true, .max_batch = 4, .max_seq = 32};
    tok_init_byte(&tok, &err);
    int rc = lm_init(&t, &tok, &o, 32, &err);
    if (rc == PL_OK)
        rc = ckpt_load(&m, o.model, &go, &err);
    struct poison p = {.at = 5};
    lm_as_task(&t, &p.inner);
    struct train_task task = {.label = p.inner.label,
                              .ctx = &p,
                              .next = poison_next,
                              .backward = poison_backward,
                              .eval = poison_eval,
                              .fields = poison_fields,
                              .vars = p.inner.vars,
                              .n_vars = p.inner.n_vars};
    if (rc == PL_OK)
        rc = run_task(&o, &m, &tok, &task, &res, &err);
    tap_is_int(rc, PL_ENUMERIC, "an infinite gradient at step 5 stops the run");
    char want[700];
    snprintf(want, sizeof want, "the last good checkpoint is step 4 in '%s'", tap_tmp("nan"));
    tap_ok(strncmp(err.msg, "step 5: training loss is ", 25) == 0 &&
               strstr(err.msg, "gradient norm inf: stopped before the update") &&
               strstr(err.msg, want),
           "the message names the step and the last good checkpoint: %s", err.msg);
    tap_ok(state_step(tap_tmp("nan")) == 4 && res.train.steps == 4, "which stays at step 4");
    gpt_release(&m);
    lm_release(&t);

    o.train.out = tap_tmp("nan2");
    rc = lm_init(&t, &tok, &o, 32, &err);
    if (rc == PL_OK)
        rc = ckpt_load(&m, o.model, &go, &err);
    p = (struct poison){.at = 1, .loss = true};
    lm_as_task(&t, &p.inner);
    if (rc == PL_OK)
        rc = run_task(&o, &m, &tok, &task, &res, &err);
    tap_ok(rc == PL_ENUMERIC && strstr(err.msg, "step 1: training loss is nan") &&
               strstr(err.msg, "no checkpoint was written") && access(tap_tmp("nan2"), F_OK) != 0,
           "a NaN loss at step 1 stops before any checkpoint, and the folder the run made (its "
           "metrics.jsonl) is gone: %s",
           err.msg);
    gpt_release(&m);
    lm_release(&t);
    tok_release(&tok);
}

/* ---- bad input ---- */

static int load_sft(const char *path, bool skip, struct lm_task *t, struct pl_err *err)
{
    struct lm_opts o;
    base_opts(&o, LM_SFT, tap_tmp("unused"));
    o.data = path;
    o.skip_bad_lines = skip;
    struct tok tok = {0};
    tok_init_byte(&tok, err);
    int rc = lm_init(t, &tok, &o, 32, err);
    tok_release(&tok);
    return rc;
}

static void expect_error(const char *name, const char *text, enum lm_kind kind, int code,
                         const char *want_suffix)
{
    struct lm_opts o;
    base_opts(&o, kind, tap_tmp("unused"));
    o.data = tap_tmp(name);
    tap_write_file(o.data, text);
    struct tok tok = {0};
    struct pl_err err = {0};
    struct lm_task t;
    tok_init_byte(&tok, &err);
    int rc = lm_init(&t, &tok, &o, 32, &err);
    char want[1024];
    snprintf(want, sizeof want, "%s%s", o.data, want_suffix);
    tap_ok(rc == code && strcmp(err.msg, want) == 0, "%s: %s", name, err.msg);
    if (rc != code || strcmp(err.msg, want) != 0)
        tap_diag("want: %s", want);
    lm_release(&t);
    tok_release(&tok);
}

static void test_bad_input(void)
{
    static const char good[] = "{\"prompt\": \"p\", \"response\": \"r\"}\n";
    char text[1024];
    snprintf(text, sizeof text, "%s[1, 2]\n%s", good, good);
    expect_error("array.jsonl", text, LM_SFT, PL_EFORMAT, ":2: not a JSON object");
    snprintf(text, sizeof text, "%s\n{\"prompt\": \"p\"}\n", good);
    expect_error("noresp.jsonl", text, LM_SFT, PL_EFORMAT,
                 ":3: field 'response': expected a string");
    expect_error("nocol.csv", "prompt,answer\nhi,there\n", LM_SFT, PL_EFORMAT,
                 ": missing column 'response'");
    expect_error("empty.jsonl", "", LM_SFT, PL_EFORMAT, ": no records");
    expect_error("empty.txt", "", LM_PRETRAIN, PL_EFORMAT, ": empty file");
    expect_error("blank.txt", "\n \n\n", LM_PRETRAIN, PL_EINVAL, ": nothing to train on");

    snprintf(text, sizeof text, "%s[1]\n%s{\"prompt\": 3, \"response\": \"r\"}\n%s", good, good,
             good);
    tap_write_file(tap_tmp("mixed.jsonl"), text);
    struct lm_task t;
    struct pl_err err = {0};
    int rc = load_sft(tap_tmp("mixed.jsonl"), true, &t, &err);
    tap_ok(rc == PL_OK && t.skipped == 2 && t.train.n == 3,
           "skip_bad_lines skips and counts two bad lines (rc %d, skipped %ld)", rc, t.skipped);
    lm_release(&t);
    rc = load_sft(tap_tmp("mixed.jsonl"), false, &t, &err);
    tap_is_int(rc, PL_EFORMAT, "without it the first bad line fails");
    lm_release(&t);
    tap_write_file(tap_tmp("ok.csv"), "response,prompt\n\"r, with comma\",p\n");
    rc = load_sft(tap_tmp("ok.csv"), false, &t, &err);
    tap_ok(rc == PL_OK && t.train.n == 1 && t.train.len[0] == 1 + 13 + 1 && t.train.prompt[0] == 1,
           "a CSV with the two columns in any order loads");
    lm_release(&t);
}

/* Every allocation of lm_init may fail: PL_ENOMEM, nothing leaked (ASan checks). The
 * allocations of a successful init are counted first, then each one fails in turn. */
static void test_alloc_failure(void)
{
    struct lm_opts o;
    base_opts(&o, LM_SFT, tap_tmp("unused"));
    o.mix_corpus = tap_tmp("corpus.txt");
    struct tok tok = {0};
    struct pl_err err = {0};
    tok_init_byte(&tok, &err);
    struct lm_task t;
    pl_alloc_fail_at(-1);
    int rc = lm_init(&t, &tok, &o, 32, &err);
    long total = pl_alloc_count(), bad = 0;
    lm_release(&t);
    for (long n = 0; rc == PL_OK && n < total; n++) {
        pl_alloc_fail_at(n);
        int got = lm_init(&t, &tok, &o, 32, &err);
        pl_alloc_fail_at(-1);
        if (got != PL_ENOMEM && bad++ == 0)
            tap_diag("allocation %ld: rc %d, '%s'", n, got, err.msg);
        lm_release(&t);
    }
    tap_ok(rc == PL_OK && total > 0 && bad == 0,
           "allocation failure at each of the %ld allocations gives PL_ENOMEM", total);
    tok_release(&tok);
}

/* Every response cut off by seq: nothing to train on, and the message says how many. */
static void test_cut_off(void)
{
    tap_write_file(tap_tmp("long.jsonl"), "{\"prompt\": \"a long prompt that fills the row\", "
                                          "\"response\": \"r\"}\n"
                                          "{\"prompt\": \"another prompt as long as a row\", "
                                          "\"response\": \"s\"}\n");
    struct lm_opts o;
    base_opts(&o, LM_SFT, tap_tmp("unused"));
    o.data = tap_tmp("long.jsonl");
    o.eval_frac = 0;
    o.seq = 8;
    struct tok tok = {0};
    struct pl_err err = {0};
    struct lm_task t;
    tok_init_byte(&tok, &err);
    int rc = lm_init(&t, &tok, &o, 32, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "nothing to train on: all 2 training examples were "
                                              "cut to 9 tokens before their response"),
           "SFT whose every response is cut off fails: %s", err.msg);
    lm_release(&t);
    tok_release(&tok);
}

/* A finished run resumed with more steps goes on from its last step at the final learning rate;
 * an unfinished one keeps its schedule to the old end, then holds that rate. */
static double metric_at(const char *dir, long step, const char *key)
{
    char path[600], line[2048], want[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(want, sizeof want, "{\"step\": %ld,", step);
    FILE *f = fopen(path, "r");
    double v = NAN;
    while (f && fgets(line, sizeof line, f)) {
        const char *k = strstr(line, key);
        if (strncmp(line, want, strlen(want)) == 0 && k)
            v = strtod(k + strlen(key) + 3, NULL);
    }
    if (f)
        fclose(f);
    return v;
}

static void test_extend(void)
{
    static char whole[8192], extended[8192];
    struct lm_opts o;
    struct lm_result res;
    struct pl_err err = {0};
    base_opts(&o, LM_PRETRAIN, tap_tmp("ext"));
    int rc = lm_run(&o, &res, &err);
    loss_curve(tap_tmp("ext"), whole, sizeof whole);
    o.train.steps = 12;
    o.train.resume = true;
    rc |= lm_run(&o, &res, &err);
    if (!tap_ok(rc == PL_OK && res.train.start_step == 8 && res.train.steps == 12,
                "--resume with more steps extends a finished run from step 8 to 12"))
        tap_diag("%s", err.msg);
    loss_curve(tap_tmp("ext"), extended, sizeof extended);
    tap_ok(whole[0] && strncmp(whole, extended, strlen(whole)) == 0 &&
               strlen(extended) > strlen(whole),
           "its first 8 steps stay as they were and 4 more follow");
    float lo = o.optim.lr * o.optim.min_lr_frac;
    tap_ok(fabs(metric_at(tap_tmp("ext"), 9, "\"lr\"") - lo) < 1e-9 &&
               fabs(metric_at(tap_tmp("ext"), 12, "\"lr\"") - lo) < 1e-9,
           "the added steps train at the final rate (%g, %g)",
           metric_at(tap_tmp("ext"), 9, "\"lr\""), metric_at(tap_tmp("ext"), 12, "\"lr\""));

    base_opts(&o, LM_PRETRAIN, tap_tmp("ext2"));
    o.train.on_step = kill_at_6;
    rc = lm_run(&o, &res, &err);
    o.train.on_step = NULL;
    o.train.steps = 12;
    o.train.resume = true;
    rc |= lm_run(&o, &res, &err);
    loss_curve(tap_tmp("ext2"), extended, sizeof extended);
    tap_ok(rc == PL_OK && res.train.start_step == 4 &&
               strncmp(whole, extended, strlen(whole)) == 0 &&
               metric_at(tap_tmp("ext2"), 8, "\"lr\"") == metric_at(tap_tmp("ext"), 8, "\"lr\"") &&
               fabs(metric_at(tap_tmp("ext2"), 10, "\"lr\"") - lo) < 1e-9,
           "an unfinished run extended from its step 4 checkpoint keeps the 8-step schedule, "
           "then holds the final rate");
    o.train.steps = 3;
    rc = lm_run(&o, &res, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "it is at step 12, beyond the 3 steps asked for"),
           "fewer steps than the checkpoint's is refused: %s", err.msg);
}

/* A cut last line of metrics.jsonl is dropped on resume. */
static void test_cut_line(void)
{
    struct lm_opts o;
    struct lm_result res;
    struct pl_err err = {0};
    base_opts(&o, LM_PRETRAIN, tap_tmp("cut"));
    o.train.on_step = kill_at_6;
    int rc = lm_run(&o, &res, &err);
    FILE *f = fopen(tap_tmp("cut/metrics.jsonl"), "a");
    if (f) {
        fputs("{\"step\": 7, \"ti", f);
        fclose(f);
    }
    o.train.on_step = NULL;
    o.train.resume = true;
    rc |= lm_run(&o, &res, &err);
    static char curve[8192], whole[8192];
    loss_curve(tap_tmp("cut"), curve, sizeof curve);
    loss_curve(tap_tmp("ext2"), whole, sizeof whole);
    tap_ok(rc == PL_OK && strncmp(curve, whole, strlen(curve)) == 0 &&
               metric_at(tap_tmp("cut"), 8, "\"train/loss\"") ==
                   metric_at(tap_tmp("ext2"), 8, "\"train/loss\""),
           "after a cut last line, --resume writes whole lines only, as an uninterrupted run");
}

/* ---- the commands ---- */

/* plumb pretrain killed with SIGKILL just after its first checkpoint, then resumed, ends with
 * the weights of an uninterrupted run. */
static void test_kill(const char *bin)
{
    static const char opts[] = "--steps 1000 --batch 2 --seq 16 --save-every 5 --eval-every 50";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s pretrain --model %s --data %s --out %s %s 2>/dev/null", bin,
             tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("killed"), opts);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 20000 && access(tap_tmp("killed/state.safetensors"), F_OK) != 0; i++)
        nanosleep(&ms, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    long at = state_step(tap_tmp("killed"));
    snprintf(cmd, sizeof cmd,
             "%s pretrain --model %s --data %s --out %s %s --resume >/dev/null 2>&1 && "
             "%s pretrain --model %s --data %s --out %s %s >/dev/null 2>&1",
             bin, tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("killed"), opts, bin,
             tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("whole"), opts);
    int code = tap_system(cmd);
    size_t na, nb;
    float *a = tap_load_params(tap_tmp("whole"), &na), *b = tap_load_params(tap_tmp("killed"), &nb);
    tap_ok(WIFSIGNALED(st) && at > 0 && at < 1000,
           "the kill landed before the run finished (checkpoint of step %ld)", at);
    tap_ok(at > 0 && code == 0 && a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0,
           "plumb pretrain killed after its checkpoint of step %ld and resumed ends with the "
           "uninterrupted run's weights",
           at);
    pl_free(a);
    pl_free(b);
}

/* Whether a line of the file holds `what`. */
static bool file_has(const char *path, const char *what)
{
    char line[2048];
    bool found = false;
    FILE *f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, what) != NULL;
    if (f)
        fclose(f);
    if (!found)
        tap_diag("%s lacks '%s'", path, what);
    return found;
}

static void test_commands(void)
{
    const char *bin = getenv("PLUMB_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        tap_skip(11, "PLUMB_BIN not set");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s pretrain --model %s --data %s --out %s --steps 4 --batch 2 --seq 16 --warmup 1 "
             "--eval-every 2 --threads 2 >%s 2>&1",
             bin, tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("cli"), tap_tmp("cli.log"));
    tap_is_int(tap_system(cmd), 0, "plumb pretrain exits 0");
    char curve[4096];
    loss_curve(tap_tmp("cli"), curve, sizeof curve);
    tap_ok(strncmp(curve, "0 ", 2) == 0 && strstr(curve, " 4 "),
           "metrics.jsonl runs from step 0 to step 4: %s", curve);
    test_kill(bin);
    snprintf(cmd, sizeof cmd, "%s sft --model %s --data %s --out %s 2>%s", bin, tap_tmp("model"),
             tap_tmp("array.jsonl"), tap_tmp("cli2"), tap_tmp("cli2.log"));
    int code = tap_system(cmd);
    char line[1024] = "", want[600];
    FILE *f = fopen(tap_tmp("cli2.log"), "r");
    if (f && !fgets(line, sizeof line, f))
        line[0] = '\0';
    if (f)
        fclose(f);
    snprintf(want, sizeof want, "plumb: %s:2: not a JSON object\n", tap_tmp("array.jsonl"));
    tap_ok(code == 1 && strcmp(line, want) == 0, "plumb sft on bad data exits 1: %s", line);
    snprintf(cmd, sizeof cmd, "%s sft --model %s --out %s 2>/dev/null", bin, tap_tmp("model"),
             tap_tmp("cli3"));
    tap_is_int(tap_system(cmd), 2, "plumb sft without --data exits 2");

    snprintf(cmd, sizeof cmd, "%s sft --help >%s 2>&1", bin, tap_tmp("help.log"));
    tap_ok(tap_system(cmd) == 0 && file_has(tap_tmp("help.log"), "sft"), "plumb sft --help exits 0");
    snprintf(cmd, sizeof cmd, "%s pretrain --model %s --data %s --out %s --lr 100 2>%s", bin,
             tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("cli4"), tap_tmp("cli4.log"));
    tap_ok(tap_system(cmd) == 2 && file_has(tap_tmp("cli4.log"), "option '--lr': '100'"),
           "--lr 100 exits 2 naming the option and the value");
    snprintf(cmd, sizeof cmd,
             "%s pretrain --model %s --data %s --out %s --steps 2 --batch 2 --seq 16 2>%s", bin,
             tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("cli"), tap_tmp("cli5.log"));
    tap_ok(tap_system(cmd) == 1 && file_has(tap_tmp("cli5.log"), "is not empty") &&
               file_has(tap_tmp("cli5.log"), "--force") && state_step(tap_tmp("cli")) == 4,
           "a non-empty --out without --resume is refused and left as it was");
    snprintf(cmd, sizeof cmd,
             "%s pretrain --model %s --data %s --out %s --steps 2 --batch 2 --seq 16 "
             "--save-every 0 --eval-every 0 --force >/dev/null 2>&1",
             bin, tap_tmp("model"), tap_tmp("corpus.txt"), tap_tmp("cli"));
    char curve2[4096];
    int code2 = tap_system(cmd);
    loss_curve(tap_tmp("cli"), curve2, sizeof curve2);
    tap_ok(code2 == 0 && state_step(tap_tmp("cli")) == 2 && strncmp(curve2, "1 ", 2) == 0,
           "--force replaces the older run: state and metrics.jsonl are this run's: %s", curve2);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 2, &err))
        tap_skip_all(err.msg);
    const char *tmpdir = tap_tmpdir("trainer");
    tap_plan(59);
    make_data();
    test_sft_packing();
    test_text_units();
    test_accumulation();
    test_determinism_and_resume();
    test_nonfinite();
    test_bad_input();
    test_alloc_failure();
    test_cut_off();
    test_extend();
    test_cut_line();
    test_commands();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmpdir);
    return tap_done();
}
