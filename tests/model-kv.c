/* The KV cache: its kernels against their _ref twins, incremental logits against full
 * forwards, log-probs of forked continuations against full-sequence scoring (a random model
 * and the GPT-2 fixture), batch invariance above every size where a kernel used to change
 * path (128 rows in a pass, 64 sequences), bad input and allocation failure. */
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/kv.h"
#include "model/ops.h"
#include "model/pl.h"
#include "model/score.h"
#include "model/tensor.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- kernels ---- */

static void test_attention_kv(void)
{
    /* Three sequences: a long prefill, a short one on top of cached tokens, and a single
     * decode row. */
    enum { C = 32, NH = 4, T = 160, SLOTS = 4 };
    int slot[3] = {2, 0, 3}, past[3] = {0, 7, 20}, n[3] = {150, 5, 1}, N = 156;
    struct pl_rng r;
    pl_rng_seed(&r, 5);
    size_t cache = (size_t)SLOTS * T * C;
    float *qkv = pl_malloc(sizeof(float) * N * 3 * C), *out = pl_malloc(sizeof(float) * N * C);
    float *ref = pl_malloc(sizeof(float) * N * C), *k = pl_malloc(sizeof(float) * cache * 4);
    float *v = k + cache, *k2 = v + cache, *v2 = k2 + cache;
    float *scratch = pl_malloc(sizeof(float) * op_attention_kv_scratch(T, 4));
    tap_fill(qkv, (size_t)N * 3 * C, &r, 1.0f);
    tap_fill(k, cache * 2, &r, 1.0f);
    memcpy(k2, k, sizeof(float) * cache * 2);
    op_attention_kv_fwd(out, k, v, scratch, 4, qkv, slot, past, n, 3, T, C, NH);
    op_attention_kv_fwd_ref(ref, k2, v2, qkv, slot, past, n, 3, T, C, NH);
    double e = tap_nmse(out, ref, (size_t)N * C);
    tap_ok(e < 1e-10, "cached attention matches its _ref (nmse %.2g)", e);
    tap_ok(memcmp(k, k2, sizeof(float) * cache * 2) == 0, "and stores the same keys and values");
    pl_free(qkv);
    pl_free(out);
    pl_free(ref);
    pl_free(k);
    pl_free(scratch);
}

static void test_decode_matmul(void)
{
    /* Column tails (OC % 64), row tails (N % 6), and more rows than BLIS once took. */
    static const int shapes[][3] = {{1, 64, 192}, {5, 40, 200},  {7, 128, 64},
                                    {13, 24, 72}, {130, 32, 96}, {300, 48, 130}};
    struct pl_rng r;
    pl_rng_seed(&r, 6);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int N = shapes[s][0], IC = shapes[s][1], OC = shapes[s][2];
        float *inp = pl_malloc(sizeof(float) * N * IC), *w = pl_malloc(sizeof(float) * IC * OC);
        float *b = pl_malloc(sizeof(float) * OC), *out = pl_malloc(sizeof(float) * N * OC);
        float *ref = pl_malloc(sizeof(float) * N * OC);
        tap_fill(inp, (size_t)N * IC, &r, 1.0f);
        tap_fill(w, (size_t)IC * OC, &r, 0.1f);
        tap_fill(b, (size_t)OC, &r, 0.1f);
        op_matmul_fwd_decode(out, inp, w, s % 2 ? NULL : b, N, IC, OC);
        op_matmul_fwd_ref(ref, inp, w, s % 2 ? NULL : b, N, IC, OC);
        double e = tap_nmse(out, ref, (size_t)N * OC);
        tap_ok(e < 1e-10, "decode matmul %dx%d @ %dx%d matches op_matmul_fwd_ref (nmse %.2g)", N,
               IC, IC, OC, e);
        pl_free(inp);
        pl_free(w);
        pl_free(b);
        pl_free(out);
        pl_free(ref);
    }
}

static void test_logits(void)
{
    static const int shapes[][3] = {{1, 301, 64}, {3, 100, 40}, {70, 33, 16}, {131, 57, 24}};
    struct pl_rng r;
    pl_rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int N = shapes[s][0], V = shapes[s][1], C = shapes[s][2];
        float *h = pl_malloc(sizeof(float) * N * C), *wte = pl_malloc(sizeof(float) * V * C);
        float *out = pl_malloc(sizeof(float) * N * V), *ref = pl_malloc(sizeof(float) * N * V);
        tap_fill(h, (size_t)N * C, &r, 1.0f);
        tap_fill(wte, (size_t)V * C, &r, 0.5f);
        op_logits_fwd(out, h, wte, N, V, C);
        op_logits_fwd_ref(ref, h, wte, N, V, C);
        double e = tap_nmse(out, ref, (size_t)N * V);
        tap_ok(e < 1e-10, "LM head %d rows, V %d, C %d matches its _ref (nmse %.2g)", N, V, C, e);
        pl_free(h);
        pl_free(wte);
        pl_free(out);
        pl_free(ref);
    }
}

/* ---- models ---- */

static void random_tokens(int *t, int n, int V, struct pl_rng *r)
{
    for (int i = 0; i < n; i++)
        t[i] = (int)(pl_rng_next(r) % (uint64_t)V);
}

/* Largest |cache logits row - full forward logits at the sequence's end|. */
static double logits_gap(struct gpt *m, const float *row, const int *seq, int len)
{
    struct pl_err err;
    struct gpt_batch b = {.B = 1, .T = len, .tokens = seq};
    gpt_forward(m, &b, &err);
    int V = m->cfg.vocab_size;
    float full[V];
    gpt_logits_row(m, len - 1, full);
    double d = 0;
    for (int j = 0; j < V; j++)
        d = fmax(d, fabs(full[j] - row[j]));
    return d;
}

static void test_incremental(void)
{
    struct gpt_config cfg = tap_byte_config(96, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 21);
    struct kv_cache c;
    struct pl_err err = {0};
    tap_is_int(kv_init(&c, &m, 3, 96, 96, &err), PL_OK, "kv cache initialises");
    struct pl_rng r;
    pl_rng_seed(&r, 22);
    int seqs[3][96], lens[3] = {70, 9, 1};
    for (int i = 0; i < 3; i++)
        random_tokens(seqs[i], 96, 257, &r);
    /* Prefill all three (of different lengths) in one pass, then decode. */
    int slot[3] = {1, 2, 0}, tokens[96], n = 0;
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < lens[i]; t++)
            tokens[n++] = seqs[i][t];
    double worst = 0;
    int rc = kv_extend(&c, 3, slot, lens, tokens, &err);
    for (int i = 0; i < 3; i++)
        worst = fmax(worst, logits_gap(&m, c.logits + i * 257, seqs[i], lens[i]));
    for (int step = 0; step < 6 && !rc; step++) {
        int count[3] = {1, step % 2 ? 2 : 1, 1};
        n = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < count[i]; j++)
                tokens[n++] = seqs[i][lens[i] + j];
        rc = kv_extend(&c, 3, slot, count, tokens, &err);
        for (int i = 0; i < 3; i++) {
            lens[i] += count[i];
            worst = fmax(worst, logits_gap(&m, c.logits + i * 257, seqs[i], lens[i]));
        }
    }
    tap_is_int(rc, PL_OK, "prefill and decode steps run");
    tap_ok(worst < 1e-4,
           "incremental logits equal full forwards (batched, lengths 70/9/1; max diff %.2g)",
           worst);
    tap_is_int(c.len[1] + c.len[2] + c.len[0], lens[0] + lens[1] + lens[2],
               "each slot holds its tokens");

    /* Fork: one prefill of a prefix, three continuations. */
    c.len[0] = c.len[1] = c.len[2] = 0;
    long rows0 = c.rows;
    int pre = 12, one = 0;
    rc = kv_extend(&c, 1, &one, &pre, seqs[0], &err);
    kv_fork(&c, 1, 0);
    kv_fork(&c, 2, 0);
    int cont[3] = {5, 77, 200}, slots[3] = {0, 1, 2}, ones[3] = {1, 1, 1};
    rc = rc ? rc : kv_extend(&c, 3, slots, ones, cont, &err);
    worst = 0;
    for (int i = 0; i < 3; i++) {
        int seq[13];
        memcpy(seq, seqs[0], sizeof(int) * 12);
        seq[12] = cont[i];
        worst = fmax(worst, logits_gap(&m, c.logits + i * 257, seq, 13));
    }
    tap_ok(!rc && worst < 1e-4, "forked slots continue the shared prefix (max diff %.2g)", worst);
    tap_is_int(c.rows - rows0, pre + 3, "the prefix ran through the model once");

    int bad = 257, good = 3;
    float lp;
    tap_is_int(kv_extend(&c, 1, &one, ones, &bad, &err), PL_EINVAL,
               "an unknown token id is refused");
    tap_ok(strstr(err.msg, "257") != NULL, "naming it: %s", err.msg);
    tap_is_int(kv_extend_logp(&c, 1, &one, ones, &good, &bad, &lp, &err), PL_EINVAL,
               "so is an unknown target: %s", err.msg);
    int many = 96;
    tap_is_int(kv_extend(&c, 1, &one, &many, seqs[0], &err), PL_EINVAL,
               "a slot cannot pass max_len: %s", err.msg);
    tap_is_int(c.len[0], 13, "and a refused extend changes nothing");
    kv_release(&c);
    kv_release(&c);
    gpt_release(&m);
}

/* ---- scoring continuations ---- */

/* Continuations x[i] (lengths lens[i]) of one prefix P of np tokens: one prefill of P minus
 * its last token, a fork per continuation, one pass scoring them all; against score_seqs on
 * each whole sequence P + x[i]. */
static void check_forks(struct gpt *m, const char *name, const int *P, int np, const int *const *x,
                        const int *lens, int n)
{
    struct pl_err err = {0};
    struct kv_cache c;
    struct score_ctx sc;
    int most = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        most = lens[i] > most ? lens[i] : most;
        rows += lens[i];
    }
    int rc = kv_init(&c, m, n + 1, np + most, rows, &err);
    if (!rc)
        rc = score_init(&sc, m, &err);
    int *tokens = pl_malloc(sizeof(int) * rows), *targets = pl_malloc(sizeof(int) * rows);
    int *slot = pl_malloc(sizeof(int) * n), *seq = pl_malloc(sizeof(int) * (np + most));
    float *logp = pl_malloc(sizeof(float) * rows), *ref = pl_malloc(sizeof(float) * (np + most));
    int zero = 0, pre = np - 1;
    if (!rc)
        rc = kv_extend(&c, 1, &zero, &pre, P, &err);
    for (int i = 0, r = 0; i < n && !rc; i++) {
        slot[i] = i + 1;
        kv_fork(&c, i + 1, 0);
        tokens[r] = P[np - 1];
        memcpy(tokens + r + 1, x[i], sizeof(int) * (lens[i] - 1));
        memcpy(targets + r, x[i], sizeof(int) * lens[i]);
        r += lens[i];
    }
    long rows0 = c.rows;
    if (!rc)
        rc = kv_extend_logp(&c, n, slot, lens, tokens, targets, logp, &err);
    double worst = 0;
    for (int i = 0, r = 0; i < n && !rc; r += lens[i++]) {
        memcpy(seq, P, sizeof(int) * np);
        memcpy(seq + np, x[i], sizeof(int) * lens[i]);
        const int *seqs[1] = {seq};
        int len = np + lens[i];
        float *out[1] = {ref};
        rc = score_seqs(&sc, seqs, &len, 1, out, NULL, &err);
        for (int j = 0; j < lens[i] && !rc; j++)
            worst = fmax(worst, fabs((double)logp[r + j] - ref[np - 1 + j]));
    }
    tap_ok(!rc && worst < 1e-5,
           "%s: %d continuations of a %d-token prefix, scored from one prefill and forks, equal "
           "full-sequence scoring (max diff %.2g)%s%s",
           name, n, np, worst, rc ? ": " : "", rc ? err.msg : "");
    tap_is_int(c.rows - rows0 + pre, rows + pre, "%s: and the prefix ran once", name);

    /* Each continuation in a pass of its own: the same bits. */
    float *alone = pl_malloc(sizeof(float) * rows);
    for (int i = 0, r = 0; i < n && !rc; r += lens[i++]) {
        c.len[slot[i]] = pre;
        rc = kv_extend_logp(&c, 1, &slot[i], &lens[i], tokens + r, targets + r, alone + r, &err);
    }
    tap_ok(!rc && memcmp(alone, logp, sizeof(float) * rows) == 0,
           "%s: scored one by one, the log-probs are bit for bit the same", name);
    pl_free(alone);
    pl_free(tokens);
    pl_free(targets);
    pl_free(slot);
    pl_free(seq);
    pl_free(logp);
    pl_free(ref);
    score_release(&sc);
    kv_release(&c);
}

static void test_forks(void)
{
    struct gpt_config cfg = tap_byte_config(96, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 41);
    struct pl_rng r;
    pl_rng_seed(&r, 42);
    int P[20], a[1], b[4], d[9], e[30];
    random_tokens(P, 20, 257, &r);
    random_tokens(a, 1, 257, &r);
    random_tokens(b, 4, 257, &r);
    random_tokens(d, 9, 257, &r);
    random_tokens(e, 30, 257, &r);
    const int *x[4] = {a, b, d, e};
    int lens[4] = {1, 4, 9, 30};
    check_forks(&m, "a random model", P, 20, x, lens, 4);
    gpt_release(&m);

    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 32};
    if (ckpt_load(&m, "tests/data/tiny-gpt2", &go, &err)) {
        tap_ok(0, "the GPT-2 fixture loads: %s", err.msg);
        tap_skip(2, "no fixture");
        return;
    }
    int Q[12];
    random_tokens(Q, 12, m.cfg.vocab_size, &r);
    random_tokens(e, 20, m.cfg.vocab_size, &r);
    const int *y[3] = {e, e + 5, e + 12};
    int ylens[3] = {20, 2, 7};
    check_forks(&m, "tests/data/tiny-gpt2", Q, 12, y, ylens, 3);
    gpt_release(&m);
}

/* ---- batch invariance ---- */

/* One sequence alone, then inside passes of 80 sequences and over 128 rows, fed in one piece
 * and in three: its log-probs and logits must not change by a bit. */
static void test_invariance(void)
{
    enum { S = 80, LEN = 40, STEPS = 3, AT = 37 };
    struct gpt_config cfg = tap_byte_config(64, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 51);
    struct pl_err err = {0};
    struct kv_cache c;
    int rc = kv_init(&c, &m, S, 64, 1024, &err);
    struct pl_rng r;
    pl_rng_seed(&r, 52);
    int V = 257, a[LEN + STEPS + 1], len[S], tokens[1024], targets[1024];
    random_tokens(a, LEN + STEPS + 1, V, &r);
    float alone_lp[LEN], alone_z[STEPS + 1][257], lp[1024];

    /* Alone: the prompt in one pass (slot 3), then decode steps. */
    int slot = 3, n = LEN, one = 1;
    if (!rc)
        rc = kv_extend_logp(&c, 1, &slot, &n, a, a + 1, alone_lp, &err);
    if (!rc)
        memcpy(alone_z[0], c.logits, sizeof(float) * V);
    for (int s = 0; s < STEPS && !rc; s++) {
        rc = kv_extend(&c, 1, &slot, &one, a + LEN + s, &err);
        memcpy(alone_z[s + 1], c.logits, sizeof(float) * V);
    }

    /* In a crowd: 80 sequences of 1..10 tokens, ours the 38th (slot 37), in one pass. */
    int slots[S], rows = 0, ours = 0;
    for (int i = 0; i < S; i++) {
        slots[i] = i;
        c.len[i] = 0;
        len[i] = i == AT ? LEN : 1 + (int)(pl_rng_next(&r) % 10);
        if (i == AT) {
            ours = rows;
            memcpy(tokens + rows, a, sizeof(int) * LEN);
            memcpy(targets + rows, a + 1, sizeof(int) * LEN);
        } else {
            random_tokens(tokens + rows, len[i], V, &r);
            random_tokens(targets + rows, len[i], V, &r);
        }
        rows += len[i];
    }
    if (!rc)
        rc = kv_extend_logp(&c, S, slots, len, tokens, targets, lp, &err);
    tap_ok(!rc && rows > 128 && memcmp(lp + ours, alone_lp, sizeof alone_lp) == 0 &&
               memcmp(c.logits + (size_t)AT * V, alone_z[0], sizeof(float) * V) == 0,
           "a %d-token prompt alone and among %d sequences in a pass of %d rows: the same "
           "log-probs and logits, bit for bit",
           LEN, S, rows);
    int same = 1;
    for (int s = 0; s < STEPS && !rc; s++) {
        for (int i = 0; i < S; i++) {
            len[i] = 1;
            tokens[i] = i == AT ? a[LEN + s] : (int)(pl_rng_next(&r) % (uint64_t)V);
        }
        rc = kv_extend(&c, S, slots, len, tokens, &err);
        same &= memcmp(c.logits + (size_t)AT * V, alone_z[s + 1], sizeof(float) * V) == 0;
    }
    tap_ok(!rc && same, "decode steps of %d sequences (LM head over 64 rows): the same logits", S);

    /* Fed in three pieces, each beside other sequences' rows. */
    for (int i = 0; i < S; i++)
        c.len[i] = 0;
    int piece[3] = {13, 13, 14}, fed = 0;
    float split_lp[LEN];
    for (int p = 0; p < 3 && !rc; p++) {
        rows = 0;
        int pos = 0;
        for (int i = 0; i < S; i++) {
            len[i] = i == AT ? piece[p] : 1 + (int)(pl_rng_next(&r) % 3);
            if (i == AT) {
                pos = rows;
                memcpy(tokens + rows, a + fed, sizeof(int) * piece[p]);
                memcpy(targets + rows, a + fed + 1, sizeof(int) * piece[p]);
            } else {
                random_tokens(tokens + rows, len[i], V, &r);
                memset(targets + rows, 0xff, sizeof(int) * len[i]);
            }
            rows += len[i];
        }
        rc = kv_extend_logp(&c, S, slots, len, tokens, targets, lp, &err);
        memcpy(split_lp + fed, lp + pos, sizeof(float) * piece[p]);
        fed += piece[p];
    }
    tap_ok(!rc && memcmp(split_lp, alone_lp, sizeof alone_lp) == 0 &&
               memcmp(c.logits + (size_t)AT * V, alone_z[0], sizeof(float) * V) == 0,
           "fed in three pieces among other sequences: the same bits");
    if (rc)
        tap_diag("%s", err.msg);
    kv_release(&c);
    gpt_release(&m);
}

/* ---- the Hugging Face fixture ---- */

static double *json_doubles(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    double *x = pl_malloc(sizeof(double) * (*n ? *n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) x[i++] = e->valuedouble;
    return x;
}

/* Prefill half of each fixture row, decode the rest, and compare every logits row the
 * fixture records (float64 PyTorch) on the way. */
static void test_checkpoint(const char *dir)
{
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = ckpt_load(&m, dir, &go, &err);
    char path[256];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *x = NULL;
    if (!rc)
        rc = io_json_load(path, &x, &err);
    if (!tap_is_int(rc, PL_OK, "%s loads: %s", dir, err.msg)) {
        tap_skip(1, "no checkpoint");
        return;
    }
    int B = cJSON_GetObjectItem(x, "B")->valueint, T = cJSON_GetObjectItem(x, "T")->valueint;
    int V = m.cfg.vocab_size, n_tok, n_rows, n_log;
    double *tokd = json_doubles(cJSON_GetObjectItem(x, "tokens"), &n_tok);
    double *rowd = json_doubles(cJSON_GetObjectItem(x, "logits_rows"), &n_rows);
    double *logits = json_doubles(cJSON_GetObjectItem(x, "logits"), &n_log);
    struct kv_cache c;
    rc = kv_init(&c, &m, B, T, B * T, &err);
    int slot[2] = {0, 1}, count[2], tokens[64], half = T / 2;
    double worst = 0;
    int compared = 0;
    for (int at = 0; at < T && !rc;) {
        int step = at == 0 ? half : 1, n = 0;
        for (int b = 0; b < B; b++) {
            count[b] = step;
            for (int j = 0; j < step; j++)
                tokens[n++] = (int)tokd[b * T + at + j];
        }
        rc = kv_extend(&c, B, slot, count, tokens, &err);
        at += step;
        for (int b = 0; b < B; b++)
            for (int r = 0; r < n_rows; r++)
                if ((int)rowd[r] == b * T + at - 1) {
                    for (int j = 0; j < V; j++)
                        worst = fmax(worst, fabs(c.logits[b * V + j] - logits[(size_t)r * V + j]));
                    compared++;
                }
    }
    tap_ok(!rc && compared > 0 && worst < 1e-4,
           "%s: cached logits match PyTorch's at %d positions (max diff %.2g)", dir, compared,
           worst);
    kv_release(&c);
    pl_free(tokd);
    pl_free(rowd);
    pl_free(logits);
    cJSON_Delete(x);
    gpt_release(&m);
}

/* ---- allocation failure ---- */

static void test_alloc(void)
{
    struct gpt_config cfg = tap_byte_config(32, 64, 2, 4);
    struct gpt m;
    tap_model_perturbed(&m, &cfg, 61);
    struct kv_cache c;
    struct pl_err err = {0};
    pl_alloc_fail_at(-1);
    int rc = kv_init(&c, &m, 4, 32, 64, &err);
    long n = pl_alloc_count();
    kv_release(&c);
    int all = 1;
    for (long i = 0; i < n; i++) {
        pl_alloc_fail_at(i);
        int got = kv_init(&c, &m, 4, 32, 64, &err);
        all &= got == PL_ENOMEM && c.kv == NULL && c.len == NULL;
        kv_release(&c);
        kv_release(&c);
    }
    pl_alloc_fail_at(-1);
    tap_ok(!rc && n > 0 && all,
           "each of kv_init's %ld allocations failing gives PL_ENOMEM and a released cache", n);
    tap_is_int(kv_init(&c, &m, 4, 33, 64, &err), PL_EINVAL, "a cache past the context: %s",
               err.msg);
    kv_release(&c);
    gpt_release(&m);
}

int main(void)
{
    struct pl_err err;
    if (tensor_init(NULL, 0, &err))
        tap_skip_all(err.msg);
    tap_plan(2 + 6 + 4 + 11 + 6 + 3 + 2 * 3 + 2);
    test_attention_kv();
    test_decode_matmul();
    test_logits();
    test_incremental();
    test_forks();
    test_invariance();
    test_checkpoint("tests/data/tiny-gpt2");
    test_checkpoint("tests/data/tiny-gpt2-f16");
    test_checkpoint("tests/data/tiny-gpt2-bf16");
    test_alloc();
    return tap_done();
}
