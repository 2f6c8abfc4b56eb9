/* The whole GPT: gradients against finite differences, packing, frozen and
 * trainable agreement, overfitting a batch, allocation failure. */
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Loss plus a weighted head term, recomputed for finite differences. */
static double objective(struct gpt *m, const struct gpt_batch *b, const float *wh)
{
    struct pl_err err;
    gpt_forward(m, b, &err);
    double j = m->loss;
    for (int r = 0; wh && r < b->B; r++)
        j += (double)wh[r] * m->head[r];
    return j;
}

static void test_gradients(void)
{
    struct gpt_config cfg = tiny();
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = true, .score_head = true, .max_batch = 2, .max_seq = 6};
    tap_is_int(gpt_init(&m, &cfg, &o, &err), PL_OK, "tiny model initialises");
    gpt_init_weights(&m, 7);
    /* Larger weights than GPT-2's init so every path carries gradient. */
    struct pl_rng r;
    pl_rng_seed(&r, 3);
    for (size_t i = 0; i < m.n_params; i++)
        m.params[i] += 0.2f * pl_rng_normal(&r);
    int tokens[12], targets[12], last[2] = {5, 3};
    random_tokens(tokens, 12, cfg.vocab_size, &r);
    random_tokens(targets, 12, cfg.vocab_size, &r);
    targets[0] = targets[7] = -1;
    float wh[2] = {0.7f, -1.3f};
    struct gpt_batch b = {.B = 2, .T = 6, .tokens = tokens, .targets = targets, .last = last};

    gpt_zero_grad(&m);
    objective(&m, &b, wh);
    gpt_backward_lm(&m, 1.0f);
    gpt_backward(&m, NULL, wh);

    double worst = 0;
    int checked = 0;
    for (int k = 0; k < m.n_tensors; k++) {
        const struct gpt_param *p = &m.table[k];
        /* A handful of elements per tensor, spread over it. */
        for (size_t e = 0; e < p->numel; e += p->numel / 5 + 1) {
            float *x = m.params + p->offset + e;
            float save = *x, h = 1e-2f;
            *x = save + h;
            double jp = objective(&m, &b, wh);
            *x = save - h;
            double jm = objective(&m, &b, wh);
            *x = save;
            double num = (jp - jm) / (2 * h), ana = m.grads[p->offset + e];
            double rel = fabs(num - ana) / (fabs(num) + fabs(ana) + 1e-3);
            if (rel > worst)
                worst = rel;
            checked++;
        }
    }
    tap_ok(worst < 2e-2, "whole-model gradients match finite differences (%d elements, worst %.2g)",
           checked, worst);
    gpt_release(&m);
    tap_ok(m.params == NULL && m.grads == NULL && m.acts == NULL && m.n_params == 0,
           "release leaves the model zeroed");
    gpt_release(&m);
    tap_ok(m.params == NULL, "and releasing it again is harmless");
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
    struct gpt_batch packed = {.B = 1, .T = 7, .tokens = tokens, .targets = targets, .pos = pos,
                               .seg = seg};
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
    struct gpt_adamw hp = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                           .weight_decay = 0.0f};
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
    test_gradients();
    test_packing();
    test_frozen_matches();
    test_overfit();
    test_bad_input();
    test_alloc_failure();
    return tap_done();
}
