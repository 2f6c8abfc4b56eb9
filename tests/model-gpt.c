/* The whole GPT: gradients against finite differences, packing, frozen and
 * trainable agreement, overfitting a batch, allocation failure. */
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/tap.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct gpt_config tiny(void)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 17;
    c.n_positions = 12;
    c.n_embd = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.eos_token_id = c.bos_token_id = 16;
    return c;
}

static void random_tokens(int *t, int n, int V, struct pl_rng *r)
{
    for (int i = 0; i < n; i++)
        t[i] = (int)(pl_rng_next(r) % (uint64_t)V);
}

/* The objective of the gradient checks, summed in double from the forward's float outputs:
 * the mean negative log-likelihood (what gpt_backward_lm differentiates) plus
 * sum_i wh[i] * head[i] over the head's values ([B], or [B*T] with head_all). */
static double objective(struct gpt *m, const struct gpt_batch *b, const float *wh)
{
    struct pl_err err;
    gpt_forward(m, b, &err);
    double nll = 0.0;
    int n = 0;
    for (int i = 0; i < b->B * b->T; i++)
        if (b->targets[i] >= 0) {
            nll -= m->logp[i];
            n++;
        }
    double j = n ? nll / n : 0.0;
    for (int i = 0; i < (b->head_all ? b->B * b->T : b->B); i++)
        j += (double)wh[i] * m->head[i];
    return j;
}

/* Every parameter's gradient against a fourth-order central difference of the objective
 * (error O(h^4), so what is left is float rounding in the forward). Returns the worst
 * |numeric - analytic| / (|numeric| + 1e-2) and its parameter in *where. */
static double check_all(struct gpt *m, const struct gpt_batch *b, const float *wh, int *checked,
                        const char **where)
{
    gpt_zero_grad(m);
    objective(m, b, wh);
    gpt_backward_lm(m, 1.0f);
    gpt_backward(m, NULL, wh);
    double worst = 0.0;
    *checked = 0;
    for (int k = 0; k < m->n_tensors; k++) {
        const struct gpt_param *p = &m->table[k];
        for (size_t e = 0; e < p->numel; e++) {
            float *x = m->params + p->offset + e;
            float save = *x, h = 4e-2f;
            double j[4];
            const float step[4] = {-2 * h, -h, h, 2 * h};
            for (int s = 0; s < 4; s++) {
                *x = save + step[s];
                j[s] = objective(m, b, wh);
            }
            *x = save;
            double num = (j[0] - 8 * j[1] + 8 * j[2] - j[3]) / (12.0 * h);
            double rel = fabs(num - m->grads[p->offset + e]) / (fabs(num) + 1e-2);
            if (rel > worst) {
                worst = rel;
                *where = p->name;
            }
            (*checked)++;
        }
    }
    return worst;
}

/* Whole-model gradients, every parameter, on a packed batch: two documents a row with
 * positions restarting (pos) and attention split (seg), some positions without a target. A
 * backward that mishandled packing (positions of the wrong rows in wpe, attention across
 * documents) is off by far more than the tolerance. */
static void test_gradients(void)
{
    struct gpt_config cfg = tiny();
    struct gpt m;
    struct pl_err err = {0};
    /* 16000 forwards of a tiny model: on a busy machine a thread pool only waits on itself. */
    tensor_init(NULL, 1, &err);
    struct gpt_opts o = {.trainable = true, .score_head = true, .max_batch = 2, .max_seq = 6};
    tap_is_int(gpt_init(&m, &cfg, &o, &err), PL_OK, "tiny model initialises");
    gpt_init_weights(&m, 7);
    /* Larger weights than GPT-2's init so every path carries gradient. */
    struct pl_rng r;
    pl_rng_seed(&r, 3);
    for (size_t i = 0; i < m.n_params; i++)
        m.params[i] += 0.2f * pl_rng_normal(&r);
    int tokens[12], targets[12], last[2] = {5, 3};
    int pos[12] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 1};
    int seg[12] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1};
    random_tokens(tokens, 12, cfg.vocab_size, &r);
    random_tokens(targets, 12, cfg.vocab_size, &r);
    targets[0] = targets[7] = -1;
    float wh[12] = {0.7f, -1.3f};
    struct gpt_batch b = {
        .B = 2, .T = 6, .tokens = tokens, .targets = targets, .pos = pos, .seg = seg, .last = last};
    int checked;
    const char *where = "";
    double worst = check_all(&m, &b, wh, &checked, &where);
    tap_ok(checked == (int)m.n_params && worst < 5e-3,
           "packed batch, LM loss and head at the last token: every gradient matches finite "
           "differences (%d, worst %.2g in %s)",
           checked, worst, where);

    for (int i = 0; i < 12; i++)
        wh[i] = 0.3f * pl_rng_normal(&r);
    b.head_all = true;
    worst = check_all(&m, &b, wh, &checked, &where);
    tap_ok(checked == (int)m.n_params && worst < 5e-3,
           "head at every position: every gradient matches finite differences (%d, worst %.2g "
           "in %s)",
           checked, worst, where);
    b.temperature = 0.7f;
    worst = check_all(&m, &b, wh, &checked, &where);
    tap_ok(checked == (int)m.n_params && worst < 5e-3,
           "at temperature 0.7: every gradient matches finite differences (%d, worst %.2g in %s)",
           checked, worst, where);
    objective(&m, &b, wh);
    float logits[64];
    PL_ASSERT(cfg.vocab_size <= 64);
    gpt_logits_row(&m, 1, logits);
    double mx = -INFINITY, z = 0.0;
    for (int v = 0; v < cfg.vocab_size; v++)
        mx = fmax(mx, logits[v]);
    for (int v = 0; v < cfg.vocab_size; v++)
        z += exp(logits[v] - mx);
    tap_is_float(m.logp[1], logits[targets[1]] - mx - log(z), 1e-5,
                 "at a temperature, logp is the log-softmax of the logits divided by it");
    b.temperature = 0.0f;
    objective(&m, &b, wh);
    float all[12];
    memcpy(all, m.head, sizeof all);
    b.head_all = false;
    gpt_forward(&m, &b, &err);
    tap_ok(m.head[0] == all[last[0]] && m.head[1] == all[6 + last[1]],
           "the head at every position holds the head at each row's last token");
    gpt_release(&m);
    tap_ok(m.params == NULL && m.grads == NULL && m.acts == NULL && m.n_params == 0,
           "release leaves the model zeroed");
    gpt_release(&m);
    tap_ok(m.params == NULL, "and releasing it again is harmless");
    tensor_init(NULL, 2, &err);
}

/* Two documents packed in one row (positions restarting, attention split)
 * give the same log-probs as the documents in rows of their own. */
static void test_packing(void)
{
    struct gpt_config cfg = tiny();
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = false, .max_batch = 2, .max_seq = 7};
    gpt_init(&m, &cfg, &o, &err);
    gpt_init_weights(&m, 11);
    int tokens[7] = {3, 4, 5, 9, 10, 11, 12}, targets[7] = {4, 5, 6, 10, 11, 12, 13};
    int pos[7] = {0, 1, 2, 0, 1, 2, 3}, seg[7] = {0, 0, 0, 1, 1, 1, 1};
    struct gpt_batch packed = {
        .B = 1, .T = 7, .tokens = tokens, .targets = targets, .pos = pos, .seg = seg};
    gpt_forward(&m, &packed, &err);
    float lp[7];
    memcpy(lp, m.logp, sizeof lp);
    int t2[8] = {3, 4, 5, 0, 9, 10, 11, 12}, g2[8] = {4, 5, 6, -1, 10, 11, 12, 13};
    struct gpt_batch apart = {.B = 2, .T = 4, .tokens = t2, .targets = g2};
    gpt_forward(&m, &apart, &err);
    double d = 0;
    for (int i = 0; i < 3; i++)
        d = fmax(d, fabs(lp[i] - m.logp[i]));
    for (int i = 0; i < 4; i++)
        d = fmax(d, fabs(lp[3 + i] - m.logp[4 + i]));
    tap_ok(d < 1e-5, "packed documents score as if apart (max diff %.2g)", d);
    gpt_release(&m);
}

/* A frozen model (one layer of activations, chunked logits) computes what a
 * trainable one does. */
static void test_frozen_matches(void)
{
    struct gpt_config cfg = tiny();
    cfg.vocab_size = 300;
    struct gpt a, f;
    struct pl_err err = {0};
    struct gpt_opts oa = {.trainable = true, .score_head = true, .max_batch = 4, .max_seq = 12};
    struct gpt_opts of = {.trainable = false, .score_head = true, .max_batch = 4, .max_seq = 12};
    gpt_init(&a, &cfg, &oa, &err);
    gpt_init(&f, &cfg, &of, &err);
    gpt_init_weights(&a, 5);
    gpt_copy_weights(&f, &a);
    struct pl_rng r;
    pl_rng_seed(&r, 9);
    int tokens[48], targets[48];
    random_tokens(tokens, 48, cfg.vocab_size, &r);
    random_tokens(targets, 48, cfg.vocab_size, &r);
    struct gpt_batch b = {.B = 4, .T = 12, .tokens = tokens, .targets = targets};
    gpt_forward(&a, &b, &err);
    gpt_forward(&f, &b, &err);
    double d = 0;
    for (int i = 0; i < 48; i++)
        d = fmax(d, fabs(a.logp[i] - f.logp[i]));
    for (int i = 0; i < 4; i++)
        d = fmax(d, fabs(a.head[i] - f.head[i]));
    tap_ok(d < 1e-6 && fabs(a.loss - f.loss) < 1e-6, "frozen and trainable models agree");
    tap_ok(f.grads == NULL && f.m == NULL, "a frozen model has no gradient memory");
    float row[300], want = 0;
    gpt_logits_row(&f, 13, row);
    float mx = -INFINITY, s = 0;
    for (int j = 0; j < 300; j++)
        mx = fmaxf(mx, row[j]);
    for (int j = 0; j < 300; j++)
        s += expf(row[j] - mx);
    want = row[targets[13]] - mx - logf(s);
    tap_is_float(want, f.logp[13], 1e-5, "gpt_logits_row agrees with logp");
    gpt_release(&a);
    gpt_release(&f);
}

static void test_overfit(void)
{
    struct gpt_config cfg = tiny();
    cfg.n_embd = 32;
    cfg.n_head = 4;
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = true, .max_batch = 2, .max_seq = 12};
    gpt_init(&m, &cfg, &o, &err);
    gpt_init_weights(&m, 1);
    struct pl_rng r;
    pl_rng_seed(&r, 2);
    int tokens[24], targets[24];
    random_tokens(tokens, 24, cfg.vocab_size, &r);
    for (int i = 0; i < 24; i++)
        targets[i] = i % 12 == 11 ? -1 : tokens[i + 1];
    struct gpt_batch b = {.B = 2, .T = 12, .tokens = tokens, .targets = targets};
    struct gpt_adamw hp = {
        .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.0f};
    float first = 0, loss = 0;
    for (int step = 0; step < 150; step++) {
        gpt_forward(&m, &b, &err);
        loss = m.loss;
        if (step == 0)
            first = loss;
        gpt_zero_grad(&m);
        gpt_backward_lm(&m, 1.0f);
        gpt_clip_grad(&m, 1.0f);
        gpt_adamw_step(&m, &hp);
    }
    tap_ok(loss < 0.1f * first, "a tiny model overfits a fixed batch (loss %.3f -> %.4f)", first,
           loss);
    gpt_release(&m);
}

static void test_bad_input(void)
{
    struct gpt_config cfg = tiny();
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = false, .max_batch = 1, .max_seq = 4};
    gpt_init(&m, &cfg, &o, &err);
    int tokens[4] = {1, 2, 17, 3};
    struct gpt_batch b = {.B = 1, .T = 4, .tokens = tokens};
    tap_is_int(gpt_forward(&m, &b, &err), PL_EINVAL, "a token outside the vocabulary is refused");
    tap_ok(strstr(err.msg, "token id 17") != NULL, "and the message names it: %s", err.msg);
    b.T = 5;
    tap_is_int(gpt_forward(&m, &b, &err), PL_EINVAL, "a batch longer than allocated is refused");
    gpt_release(&m);

    cfg.n_head = 3;
    tap_is_int(gpt_init(&m, &cfg, &o, &err), PL_EINVAL, "n_head must divide n_embd");
    tap_ok(strstr(err.msg, "'n_head'") != NULL, "and the message names the field");
    gpt_release(&m);

    static const struct {
        int vocab;
        const char *tokenizer;
        double std;
        const char *needle;
    } bad[] = {
        {300, "byte", 1.0, "field 'vocab_size': 300 is more than the byte tokenizer's 257 ids"},
        {257, "bpe", 1.0, "field 'tokenizer'"},
        {257, "byte", 0.0, "field 'reward_std'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cfg = tiny();
        cfg.vocab_size = bad[i].vocab;
        snprintf(cfg.tokenizer, sizeof cfg.tokenizer, "%s", bad[i].tokenizer);
        cfg.reward_std = bad[i].std;
        int rc = gpt_config_check(&cfg, &err);
        tap_ok(rc == PL_EINVAL && strstr(err.msg, bad[i].needle), "gpt_config_check: %s", err.msg);
    }
    cfg = tiny();
    cfg.vocab_size = 256;
    cfg.eos_token_id = 255;
    snprintf(cfg.tokenizer, sizeof cfg.tokenizer, "byte");
    tap_is_int(gpt_config_check(&cfg, &err), PL_OK,
               "a byte-level shape below 257 ids is usable (benchmark shapes)");
}

/* A config with a head gets one whatever the options say. */
static void test_config_head(void)
{
    struct gpt_config cfg = tiny();
    cfg.score_head = true;
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.max_batch = 1, .max_seq = 4};
    int rc = gpt_init(&m, &cfg, &o, &err);
    tap_ok(rc == PL_OK && m.w.score && m.opts.score_head && m.cfg.score_head &&
               gpt_param_find(&m, "score.weight"),
           "cfg.score_head allocates score.weight");
    gpt_release(&m);
    cfg.score_head = false;
    o.score_head = true;
    rc = gpt_init(&m, &cfg, &o, &err);
    tap_ok(rc == PL_OK && m.w.score && m.cfg.score_head,
           "opts.score_head does too, and the config then says so");
    gpt_release(&m);
}

/* Memory is counted before anything is allocated; a shape the machine cannot hold is refused
 * with what it needs and what the machine has. */
static void test_memory(void)
{
    struct gpt_config cfg = tiny();
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = true, .score_head = true, .max_batch = 2, .max_seq = 6};
    uint64_t need = gpt_memory_bytes(&cfg, &o);
    gpt_init(&m, &cfg, &o, &err);
    uint64_t big = (uint64_t)m.n_params * sizeof(float) * 4 + m.acts_floats * sizeof(float);
    tap_ok(need >= big && need - big < 16384,
           "gpt_memory_bytes counts what gpt_init allocates (%llu bytes, %llu in the big blocks)",
           (unsigned long long)need, (unsigned long long)big);
    gpt_release(&m);

    gpt_config_gpt2(&cfg);
    cfg.n_layer = 100000;
    struct gpt_opts one = {.max_batch = 1, .max_seq = 1};
    need = gpt_memory_bytes(&cfg, &one);
    unsigned long long have =
        (unsigned long long)sysconf(_SC_PHYS_PAGES) * (unsigned long long)sysconf(_SC_PAGE_SIZE);
    char need_s[64], have_s[64];
    snprintf(need_s, sizeof need_s, "needs %llu bytes", (unsigned long long)need);
    snprintf(have_s, sizeof have_s, "the machine has %llu", have);
    pl_alloc_fail_at(-1);
    int rc = gpt_init(&m, &cfg, &one, &err);
    long allocs = pl_alloc_count();
    tap_ok(rc == PL_ENOMEM && strstr(err.msg, need_s) && strstr(err.msg, have_s),
           "n_layer 100000 is refused: %s", err.msg);
    tap_ok(need > 2000000000000ull && allocs == 0 && m.params == NULL,
           "before a byte of its %llu is allocated", (unsigned long long)need);
    gpt_release(&m);

    cfg.n_layer = INT_MAX;
    cfg.n_embd = 1 << 30;
    cfg.n_head = 1;
    tap_ok(gpt_memory_bytes(&cfg, &one) == UINT64_MAX, "a count past 2^64 saturates");
    rc = gpt_init(&m, &cfg, &one, &err);
    tap_ok(rc == PL_ENOMEM && strstr(err.msg, "more than 2^64 bytes"),
           "and the shape is refused, not wrapped around: %s", err.msg);
    gpt_release(&m);
}

static void test_alloc_failure(void)
{
    struct gpt_config cfg = tiny();
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = true, .score_head = true, .max_batch = 1, .max_seq = 4};
    pl_alloc_fail_at(-1);
    gpt_init(&m, &cfg, &o, &err);
    long n = pl_alloc_count();
    gpt_release(&m);
    int all = 1;
    for (long i = 0; i < n; i++) {
        pl_alloc_fail_at(i);
        int rc = gpt_init(&m, &cfg, &o, &err);
        all &= rc == PL_ENOMEM;
        gpt_release(&m);
    }
    pl_alloc_fail_at(-1);
    tap_ok(n > 0 && all, "allocation failure N of %ld gives PL_ENOMEM every time", n);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 2, &err))
        tap_skip_all(err.msg);
    tap_plan(30);
    test_gradients();
    test_packing();
    test_frozen_matches();
    test_overfit();
    test_bad_input();
    test_config_head();
    test_memory();
    test_alloc_failure();
    return tap_done();
}
