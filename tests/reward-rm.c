/* The reward model: sequences and the read-out, the pair loss and its gradient against finite
 * differences, the task's gradient through the model, score-position invariance, per-kind and
 * per-annotator evaluation, normalisation, exact resume, learning a separable preference, bad
 * input. Tiny byte-level models, one thread. */
#include "reward/rm.h"

#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "model/tok.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A tiny byte-level model folder, as plumb init writes it (no head unless asked). */
static void make_model(const char *dir, bool head)
{
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt_opts o = {.max_batch = 1, .max_seq = 1, .score_head = head};
    struct gpt m;
    struct pl_err err = {0};
    if (gpt_init(&m, &c, &o, &err) == PL_OK) {
        gpt_init_weights(&m, 5);
        if (ckpt_save(&m, dir, &err))
            tap_diag("%s", err.msg);
    }
    gpt_release(&m);
}

/* ---- in-memory preference groups ---- */

#define MAX_GROUPS 64
#define MAX_TEXTS 4
struct groups {
    struct ds_pref_group g[MAX_GROUPS];
    const char *texts[MAX_GROUPS][MAX_TEXTS];
    struct ds_pref_pair pairs[MAX_GROUPS][6];
    char buf[MAX_GROUPS][MAX_TEXTS + 1][16];
    struct ds_prefs set;
};

/* Group i of a separable world: text 0 is made of the letters a, c, e and is better than the
 * others, made of b, d, f; a full ranking of 3 (text 0 first, then 1 over 2 by nothing: tied).
 * Pairs: (0, 1), (0, 2). */
static void separable(struct groups *G, int n, uint64_t seed, const char *kind_even)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    memset(G, 0, sizeof *G);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k <= 3; k++) {
            int len = 2 + (int)(pl_rng_next(&r) % 5);
            for (int j = 0; j < len; j++) {
                static const char good[] = "ace", bad[] = "bdf", any[] = "xyz";
                const char *from = k == 3 ? any : k == 0 ? good : bad;
                G->buf[i][k][j] = from[pl_rng_next(&r) % 3];
            }
            G->buf[i][k][len] = '\0';
        }
        for (int k = 0; k < 3; k++)
            G->texts[i][k] = G->buf[i][k];
        G->pairs[i][0] = (struct ds_pref_pair){0, 1, 0.0, 1.0};
        G->pairs[i][1] = (struct ds_pref_pair){0, 2, 0.0, 1.0};
        G->g[i] = (struct ds_pref_group){.prompt = G->buf[i][3],
                                         .texts = G->texts[i],
                                         .n_texts = 3,
                                         .pairs = G->pairs[i],
                                         .n_pairs = 2,
                                         .kind = i % 2 ? "odd" : kind_even,
                                         .annotator = i % 3 ? "ann1" : "ann2"};
    }
    G->set = (struct ds_prefs){.groups = G->g, .n = (size_t)n, .n_pairs = 2L * n};
}

static struct tok byte_tok;

/* ---- sequences ---- */

static void test_seq(void)
{
    int prompt[] = {1, 2, 3, 4}, resp[] = {5, 6, 7}, out[16];
    bool cut;
    int n = rm_seq(out, prompt, 4, resp, 3, 99, 16, &cut);
    tap_ok(n == 8 && out[0] == 1 && out[4] == 5 && out[7] == 99 && !cut,
           "prompt + response + the end token");
    n = rm_seq(out, prompt, 4, resp, 3, 99, 6, &cut);
    tap_ok(n == 6 && out[0] == 3 && out[1] == 4 && out[2] == 5 && out[5] == 99 && cut,
           "a long sequence loses its prompt's start, keeps response and end token");
    n = rm_seq(out, prompt, 4, resp, 3, 99, 2, &cut);
    tap_ok(n == 2 && out[0] == 7 && out[1] == 99 && cut,
           "a response longer than the context keeps its end and the end token");
    struct tok_buf buf = {0};
    struct pl_err err = {0};
    int rc = rm_encode(&byte_tok, 8, "Q: hi", "ok", &buf, &cut, &err);
    tap_ok(rc == PL_OK && buf.n == 8 && buf.ids[0] == 'Q' && buf.ids[5] == 'o' &&
               buf.ids[7] == 256 && !cut,
           "rm_encode: the texts' bytes and <|endoftext|>");
    rc = rm_encode(&byte_tok, 4, "Q: hi", "ok", &buf, &cut, &err);
    tap_ok(rc == PL_OK && buf.n == 4 && buf.ids[0] == 'i' && buf.ids[1] == 'o' && cut,
           "rm_encode cuts the prompt from the left");
    tok_buf_release(&buf);
    const int a[] = {1, 2, 3}, b[] = {4}, *seqs[] = {a, b};
    int lens[] = {3, 1}, tokens[6], last[2];
    int W = rm_batch(tokens, last, seqs, lens, 2, 256);
    tap_ok(W == 3 && last[0] == 2 && last[1] == 0 && tokens[3] == 4 && tokens[4] == 256 &&
               tokens[5] == 256,
           "rm_batch: right padding with the end token, read at each row's last real token");
}

/* ---- the loss ---- */

static void test_pair_loss(void)
{
    const struct {
        double rb, rw, margin, p, c;
        const char *what;
    } cases[] = {
        {0.3, -0.2, 0.0, 1.0, 0.0, "hard label"},
        {-1.1, 0.7, 0.0, 0.7, 0.0, "soft label"},
        {0.4, 0.1, 1.5, 1.0, 0.0, "margin"},
        {1.3, 0.9, 0.5, 0.8, 0.25, "soft label, margin and centering"},
        {30.0, -25.0, 0.0, 1.0, 0.01, "large scores with centering"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double rb = cases[i].rb, rw = cases[i].rw, m = cases[i].margin, p = cases[i].p;
        double c = cases[i].c, gb, gw, h = 1e-5;
        rm_pair_loss(rb, rw, m, p, c, &gb, &gw);
        double fb = (rm_pair_loss(rb + h, rw, m, p, c, NULL, NULL) -
                     rm_pair_loss(rb - h, rw, m, p, c, NULL, NULL)) /
                    (2 * h);
        double fw = (rm_pair_loss(rb, rw + h, m, p, c, NULL, NULL) -
                     rm_pair_loss(rb, rw - h, m, p, c, NULL, NULL)) /
                    (2 * h);
        tap_ok(fabs(gb - fb) < 1e-7 && fabs(gw - fw) < 1e-7,
               "%s: gradient matches central differences (%.9f %.9f vs %.9f %.9f)", cases[i].what,
               gb, gw, fb, fw);
    }
    tap_is_float(rm_pair_loss(0.0, 0.0, 0.0, 1.0, 0.0, NULL, NULL), log(2.0), 1e-12,
                 "equal scores lose ln 2");
    tap_is_float(rm_pair_loss(2.0, 1.0, 0.5, 1.0, 0.0, NULL, NULL), log1p(exp(-0.5)), 1e-12,
                 "hard loss is -log sigmoid(rb - rw - margin)");
    double d = 0.3, p = 0.7;
    tap_is_float(rm_pair_loss(d, 0.0, 0.0, p, 0.0, NULL, NULL),
                 -(p * log(1 / (1 + exp(-d))) + (1 - p) * log(1 / (1 + exp(d)))), 1e-12,
                 "soft loss is the cross-entropy with p");
    tap_is_float(rm_pair_loss(1.0, 2.0, 0.0, 1.0, 0.5, NULL, NULL) -
                     rm_pair_loss(1.0, 2.0, 0.0, 1.0, 0.0, NULL, NULL),
                 0.5 * 9.0, 1e-12, "centering adds c (rb + rw)^2");
    tap_ok(isfinite(rm_pair_loss(-800.0, 800.0, 0.0, 1.0, 0.0, NULL, NULL)),
           "no overflow for far-apart scores");
}

/* ---- the task's gradient through the model ---- */

static void rm_test_opts(struct rm_opts *o, const char *out)
{
    rm_opts_default(o);
    o->model = tap_tmp("lm");
    o->train.out = out;
    o->train.version = "test";
    o->batch = 4;
    o->eval_frac = 0.0;
    o->optim.lr = 3e-3f;
    o->optim.warmup = 2;
    o->train.eval_every = 0;
    o->train.save_every = 4;
}

static double task_loss(struct train_task *task, struct train_model *model, struct train_step *st)
{
    double loss;
    struct pl_err err = {0};
    st->metrics.n = 0;
    task->backward(task->ctx, model, st, 0, 1.0f, &loss, &err);
    return loss;
}

static void test_task_gradient(void)
{
    static struct groups G;
    separable(&G, 8, 11, "even");
    /* A soft label with a margin in every group. */
    for (int i = 0; i < 8; i++)
        G.pairs[i][1] = (struct ds_pref_pair){2, 0, 0.3, 0.35};
    struct rm_opts o;
    rm_test_opts(&o, tap_tmp("unused"));
    o.center_coef = 0.2;
    struct rm_task t;
    struct pl_err err = {0};
    int rc = rm_task_init(&t, &byte_tok, &o, &G.set, NULL, 32, &err);
    if (!tap_is_int(rc, PL_OK, "task from in-memory groups"))
        tap_diag("%s", err.msg);
    struct gpt m = {0};
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt_opts go = {.trainable = true,
                          .score_head = true,
                          .head_only = true,
                          .max_batch = t.rows,
                          .max_seq = t.T};
    rc = gpt_init(&m, &c, &go, &err);
    gpt_init_weights(&m, 3);
    struct train_task task;
    rm_as_task(&t, &task);
    double w[1];
    struct train_step st = {.n_micro = 1, .weight = w};
    task.next(task.ctx, &st, &err);
    tap_is_float(w[0], 8.0, 0, "a micro-batch weighs its pair count (4 groups x 2)");
    struct train_model model = {.m = &m};
    gpt_zero_grad(&m);
    task_loss(&task, &model, &st);
    float *g = pl_malloc(m.n_params * sizeof *g);
    memcpy(g, m.grads, m.n_params * sizeof *g);
    /* The head, and a LayerNorm bias and a matrix entry of the body. */
    size_t idx[] = {(size_t)(m.w.score - m.params) + 3, (size_t)(m.w.score - m.params) + 11,
                    (size_t)(m.w.lnfb - m.params) + 5, (size_t)(m.w.h[1].fcw - m.params) + 17};
    int good = 0;
    for (size_t k = 0; k < sizeof idx / sizeof *idx; k++) {
        float keep = m.params[idx[k]], h = 1e-2f;
        m.params[idx[k]] = keep + h;
        double up = task_loss(&task, &model, &st);
        m.params[idx[k]] = keep - h;
        double down = task_loss(&task, &model, &st);
        m.params[idx[k]] = keep;
        double fd = (up - down) / (2.0 * h);
        bool ok = fabs(fd - g[idx[k]]) < 2e-3 + 2e-2 * fabs(fd);
        good += ok;
        if (!ok)
            tap_diag("parameter %zu: backward %.6g, differences %.6g", idx[k], g[idx[k]], fd);
    }
    tap_is_int(good, 4,
               "soft labels, margins and centering: the task's gradient through the model "
               "matches central differences");
    pl_free(g);
    gpt_release(&m);
    rm_task_release(&t);
    rm_task_release(&t);
}

/* ---- the read-out ---- */

static void test_invariance(void)
{
    struct gpt m = {0};
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt_opts go = {.score_head = true, .head_only = true, .max_batch = 8, .max_seq = 32};
    struct pl_err err = {0};
    gpt_init(&m, &c, &go, &err);
    gpt_init_weights(&m, 9);
    struct rm_scorer s;
    rm_scorer_init(&s, 8, 32, 256, &err);
    const char *resp[] = {"yes", "no, it is not", "a", "maybe so, who knows", "x y z w v u t"};
    struct rm_data d = {0};
    for (int i = 0; i < 5; i++)
        rm_data_add_text(&d, &byte_tok, 32, "Q: is it?", resp[i], &err);
    const int *seqs[5];
    int lens[5];
    for (int i = 0; i < 5; i++) {
        seqs[i] = d.ids + d.start[i];
        lens[i] = d.len[i];
    }
    double alone[5], together[5], reversed[5], pairs[5], tmp_s[5];
    for (int i = 0; i < 5; i++)
        rm_score_seqs(&s, &m, &seqs[i], &lens[i], 1, &alone[i], &err);
    rm_score_seqs(&s, &m, seqs, lens, 5, together, &err);
    const int *rs[5];
    int rl[5];
    for (int i = 0; i < 5; i++) {
        rs[i] = seqs[4 - i];
        rl[i] = lens[4 - i];
    }
    rm_score_seqs(&s, &m, rs, rl, 5, tmp_s, &err);
    for (int i = 0; i < 5; i++)
        reversed[4 - i] = tmp_s[i];
    /* Batches of two (scorer rows 2): other neighbours, other padding. */
    struct rm_scorer s2;
    rm_scorer_init(&s2, 2, 32, 256, &err);
    rm_score_seqs(&s2, &m, seqs, lens, 5, pairs, &err);
    double worst = 0.0;
    for (int i = 0; i < 5; i++) {
        worst = fmax(worst, fabs(together[i] - alone[i]));
        worst = fmax(worst, fabs(reversed[i] - alone[i]));
        worst = fmax(worst, fabs(pairs[i] - alone[i]));
    }
    tap_ok(worst < 1e-5,
           "a score is the same alone, padded in a batch of 5, in reverse order "
           "and in batches of 2 (largest difference %.3g)",
           worst);
    /* What reading at the padding would have given: the test above can tell. */
    double at_pad = 0.0;
    {
        int tokens[2 * 32], last[2] = {31, 31};
        int W = rm_batch(tokens, last, seqs, lens, 2, 256);
        last[0] = last[1] = W - 1;
        struct gpt_batch b = {.B = 2, .T = W, .tokens = tokens, .last = last};
        gpt_forward(&m, &b, &err);
        at_pad = m.head[0];
    }
    tap_ok(fabs(at_pad - alone[0]) > 1e-3,
           "reading the shorter row at its padding gives another number (%.5f vs %.5f)", at_pad,
           alone[0]);
    rm_data_release(&d);
    rm_scorer_release(&s);
    rm_scorer_release(&s2);
    rm_scorer_release(&s2);
    gpt_release(&m);
}

/* ---- evaluation ---- */

static void test_evaluate(void)
{
    static struct groups G;
    separable(&G, 6, 5, "even");
    /* Group 5's completions all tie: no pair. */
    G.g[5].n_pairs = 0;
    struct gpt m = {0};
    struct gpt_config c = tap_byte_config(32, 16, 2, 2);
    struct gpt_opts go = {.score_head = true, .head_only = true, .max_batch = 4, .max_seq = 32};
    struct pl_err err = {0};
    gpt_init(&m, &c, &go, &err); /* zero weights: every score equal */
    struct rm_data d = {0};
    int rc = rm_data_add(&d, &byte_tok, 32, G.g, 6, &err);
    tap_ok(rc == PL_OK && d.n_groups == 5 && d.dropped == 1 && d.n_seqs == 15 && d.n_pairs == 10,
           "a group without a pair is left out and counted");
    struct rm_scorer s;
    rm_scorer_init(&s, 4, 32, 256, &err);
    struct rm_eval e;
    rc = rm_evaluate(&s, &m, &d, G.g, &e, &err);
    tap_ok(rc == PL_OK && e.all.pairs == 10 && rm_stats_accuracy(&e.all) == 0.5,
           "equal scores count half: accuracy 0.5");
    bool kinds = e.n_kinds == 2 && strcmp(e.kinds[0].name, "even") == 0 &&
                 e.kinds[0].st.pairs == 6 && e.kinds[1].st.pairs == 4;
    bool anns = e.n_annotators == 2 && strcmp(e.annotators[0].name, "ann2") == 0 &&
                e.annotators[0].st.pairs == 4 && e.annotators[1].st.pairs == 6;
    tap_ok(kinds && anns, "pairs per prompt kind and per annotator");
    rm_eval_release(&e);
    rm_eval_release(&e);
    rm_scorer_release(&s);
    rm_data_release(&d);
    gpt_release(&m);
}

/* ---- training ---- */

static int kill_at_6(void *ctx, long step)
{
    (void)ctx;
    return step == 6;
}

static void test_resume(void)
{
    static struct groups G;
    separable(&G, 20, 7, "even");
    struct rm_opts o;
    struct rm_result res;
    struct pl_err err = {0};
    rm_test_opts(&o, tap_tmp("full"));
    o.train.steps = 10;
    int rc = rm_train(&o, &G.set, NULL, &res, &err);
    if (!tap_is_int(rc, PL_OK, "a 10-step run"))
        tap_diag("%s", err.msg);
    rm_test_opts(&o, tap_tmp("cut"));
    o.train.steps = 10;
    o.train.on_step = kill_at_6;
    rc = rm_train(&o, &G.set, NULL, &res, &err);
    tap_ok(rc == PL_OK && res.train.stopped && !res.normalised,
           "killed after step 6 (checkpoint at 4), not normalised");
    o.train.on_step = NULL;
    o.train.resume = true;
    rc = rm_train(&o, &G.set, NULL, &res, &err);
    tap_ok(rc == PL_OK && res.train.start_step == 4 && res.train.steps == 10 && res.normalised,
           "resumed from step 4 to 10 (%s)", rc ? err.msg : "ok");
    size_t na, nb;
    float *a = tap_load_params(tap_tmp("full"), &na), *b = tap_load_params(tap_tmp("cut"), &nb);
    tap_ok(a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0,
           "the resumed run's weights are bit-identical to the uninterrupted run's");
    pl_free(a);
    pl_free(b);
    struct gpt_config ca, cb;
    ckpt_config_read(tap_tmp("full"), &ca, &err);
    ckpt_config_read(tap_tmp("cut"), &cb, &err);
    tap_ok(ca.reward_mean == cb.reward_mean && ca.reward_std == cb.reward_std,
           "and so is the normalisation");
}

/* Mean and std of the rewards of the groups' better texts under the saved model in dir. */
static void rewards(const char *dir, const struct groups *G, int n, double *mean, double *std)
{
    struct gpt m;
    struct tok t;
    struct pl_err err = {0};
    *mean = *std = NAN;
    if (rm_load(&m, &t, dir, 4, 0, &err)) {
        tap_diag("%s", err.msg);
        return;
    }
    struct rm_scorer s;
    rm_scorer_init(&s, 4, 32, t.eos, &err);
    const char *prompts[MAX_GROUPS], *resp[MAX_GROUPS];
    double r[MAX_GROUPS], sum = 0, sq = 0;
    for (int i = 0; i < n; i++) {
        prompts[i] = G->g[i].prompt;
        resp[i] = G->g[i].texts[0];
    }
    if (rm_score_texts(&s, &m, &t, prompts, resp, (size_t)n, r, &err) == PL_OK) {
        for (int i = 0; i < n; i++)
            sum += r[i];
        *mean = sum / n;
        for (int i = 0; i < n; i++)
            sq += (r[i] - *mean) * (r[i] - *mean);
        *std = sqrt(sq / n);
    }
    rm_scorer_release(&s);
    tok_release(&t);
    gpt_release(&m);
}

static void test_normalisation(void)
{
    static struct groups G;
    separable(&G, 20, 7, "even");
    double mean, std;
    rewards(tap_tmp("full"), &G, 20, &mean, &std);
    tap_ok(fabs(mean) < 1e-4 && fabs(std - 1.0) < 1e-4,
           "the reference texts (the better ones) score mean 0, std 1 after training "
           "(%.6f, %.6f)",
           mean, std);
    struct gpt_config c;
    struct pl_err err = {0};
    ckpt_config_read(tap_tmp("full"), &c, &err);
    char *text = NULL;
    size_t len;
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", tap_tmp("full"));
    io_read_file(path, &text, &len, &err);
    tap_ok(text && strstr(text, "\"reward_mean\"") && strstr(text, "\"reward_std\"") &&
               c.reward_std != 1.0 && c.reward_mean != 0.0,
           "config.json holds reward_mean %.6g and reward_std %.6g", c.reward_mean, c.reward_std);
    pl_free(text);
    /* --norm-data: prompts and responses of our own. */
    char refs[4096];
    size_t k = 0;
    for (int i = 0; i < 20; i++)
        k += (size_t)snprintf(refs + k, sizeof refs - k,
                              "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", G.g[i].prompt,
                              G.g[i].texts[0]);
    tap_write_file(tap_tmp("refs.jsonl"), refs);
    static struct groups H;
    separable(&H, 20, 99, "even");
    struct rm_opts o;
    struct rm_result res;
    rm_test_opts(&o, tap_tmp("normed"));
    o.train.steps = 4;
    o.norm_data = tap_tmp("refs.jsonl");
    int rc = rm_train(&o, &H.set, NULL, &res, &err);
    rewards(tap_tmp("normed"), &G, 20, &mean, &std);
    tap_ok(rc == PL_OK && fabs(mean) < 1e-4 && fabs(std - 1.0) < 1e-4,
           "--norm-data's responses score mean 0, std 1 (%.6f, %.6f)", mean, std);
}

static void test_learns(void)
{
    static struct groups G, H;
    separable(&G, 48, 21, "even");
    separable(&H, 16, 22, "even");
    struct rm_opts o;
    struct rm_result res;
    struct pl_err err = {0};
    rm_test_opts(&o, tap_tmp("learn"));
    o.epochs = 12;
    o.batch = 4;
    o.optim.lr = 1e-2f;
    o.optim.warmup = 5;
    o.train.eval_every = 1000;
    int rc = rm_train(&o, &G.set, &H.set, &res, &err);
    if (rc)
        tap_diag("%s", err.msg);
    tap_ok(rc == PL_OK && res.train.eval_first > 0.69 && res.train.eval_first < 0.6932,
           "a fresh (zero) head starts at held-out loss ln 2 (%.5f)", res.train.eval_first);
    struct gpt m;
    struct tok t;
    struct rm_data d = {0};
    struct rm_scorer s;
    struct rm_eval e = {0};
    rc = rm_load(&m, &t, tap_tmp("learn"), 8, 0, &err);
    rm_data_add(&d, &t, 32, H.g, 16, &err);
    rm_scorer_init(&s, 8, 32, t.eos, &err);
    if (rc == PL_OK)
        rc = rm_evaluate(&s, &m, &d, H.g, &e, &err);
    tap_ok(rc == PL_OK && rm_stats_accuracy(&e.all) == 1.0,
           "a tiny model learns a separable preference: held-out accuracy %.3f (loss %.4f)",
           rm_stats_accuracy(&e.all), res.train.eval_last);
    rm_eval_release(&e);
    rm_scorer_release(&s);
    rm_data_release(&d);
    tok_release(&t);
    gpt_release(&m);
}

/* ---- bad input ---- */

static void test_bad_input(void)
{
    static struct groups G;
    separable(&G, 4, 3, "even");
    for (int i = 0; i < 4; i++)
        G.g[i].n_pairs = 0;
    struct rm_opts o;
    struct rm_result res;
    struct pl_err err = {0};
    rm_test_opts(&o, tap_tmp("bad"));
    int rc = rm_train(&o, &G.set, NULL, &res, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "nothing to train on: 4 training groups and not one "
                                              "pair"),
           "groups without pairs only: %s", err.msg);
    struct ds_prefs empty = {0};
    rc = rm_train(&o, &empty, NULL, &res, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "nothing to train on"), "no groups: %s", err.msg);
    tap_ok(access(tap_tmp("bad"), F_OK) != 0, "a failed run leaves no output folder");
    struct gpt m;
    struct tok t;
    rc = rm_load(&m, &t, tap_tmp("lm"), 4, 0, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "no score head"), "a language model: %s", err.msg);
    gpt_release(&m);
    tok_release(&t);
    tap_write_file(tap_tmp("empty.jsonl"), "\n\n");
    o.norm_data = tap_tmp("empty.jsonl");
    separable(&G, 4, 3, "even");
    rc = rm_train(&o, &G.set, NULL, &res, &err);
    tap_ok(rc != PL_OK && strstr(err.msg, "empty.jsonl"), "empty norm data: %s", err.msg);
    o.norm_data = NULL;
    o.center_coef = -1;
    rc = rm_train(&o, &G.set, NULL, &res, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "center_coef"), "negative centering: %s", err.msg);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 1, &err))
        tap_skip_all(err.msg);
    const char *tmpdir = tap_tmpdir("rm");
    tok_init_byte(&byte_tok, &err);
    make_model(tap_tmp("lm"), false);
    tap_plan(40);
    test_seq();
    test_pair_loss();
    test_task_gradient();
    test_invariance();
    test_evaluate();
    test_resume();
    test_normalisation();
    test_learns();
    test_bad_input();
    tok_release(&byte_tok);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmpdir);
    return tap_done();
}
