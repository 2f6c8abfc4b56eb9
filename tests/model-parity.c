/* Numerical parity with PyTorch: checkpoints written by tools/gen_fixtures.py
 * (HF GPT-2 layout) must reproduce PyTorch's logits, loss, scalar head and
 * gradients within 1e-4 relative. */
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL 1e-4

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
}

static int *int_array(const cJSON *a)
{
    int n = cJSON_GetArraySize(a), i = 0;
    int *out = malloc(sizeof(int) * (size_t)(n ? n : 1));
    const cJSON *x;
    cJSON_ArrayForEach(x, a) out[i++] = x->valueint;
    return out;
}

/* Largest |got - want| over the array, relative to the largest |want|. */
static double rel_diff(const float *got, const cJSON *want, int stride, int *count)
{
    double maxd = 0, maxw = 1e-30;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, want)
    {
        double d = fabs(got[(size_t)i * stride] - x->valuedouble);
        maxd = d > maxd ? d : maxd;
        maxw = fabs(x->valuedouble) > maxw ? fabs(x->valuedouble) : maxw;
        i++;
    }
    *count = i;
    return maxd / maxw;
}

/* Compare each {"name","data"} gradient in `list` with the model's gradient. */
static void check_grads(const struct gpt *m, const cJSON *list, const char *what)
{
    if (cJSON_GetArraySize(list) == 0) {
        tap_ok(0, "the fixture has %s gradients", what);
        return;
    }
    const cJSON *g;
    cJSON_ArrayForEach(g, list)
    {
        const char *name = cJSON_GetObjectItem(g, "name")->valuestring;
        const struct gpt_param *p = gpt_param_find(m, name);
        if (!p) {
            tap_ok(0, "%s gradient of %s: no such tensor", what, name);
            continue;
        }
        int n;
        double d = rel_diff(m->grads + p->offset, cJSON_GetObjectItem(g, "data"), 1, &n);
        tap_ok(d < REL && (size_t)n == p->numel, "%s gradient of %s matches PyTorch (rel %.2g)",
               what, name, d);
    }
}

static void check_logits(struct gpt *m, const cJSON *exp, const char *label, double tol)
{
    int V = m->cfg.vocab_size;
    float *row = malloc(sizeof(float) * (size_t)V);
    const cJSON *rows = cJSON_GetObjectItem(exp, "logits_rows");
    const cJSON *all = cJSON_GetObjectItem(exp, "logits");
    double worst = 0, maxw = 1e-30;
    int k = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        gpt_logits_row(m, r->valueint, row);
        for (int j = 0; j < V; j++) {
            double w = cJSON_GetArrayItem(all, k * V + j)->valuedouble;
            worst = fmax(worst, fabs(row[j] - w));
            maxw = fmax(maxw, fabs(w));
        }
        k++;
    }
    tap_ok(worst / maxw < tol, "%s: logits match PyTorch (rel %.2g)", label, worst / maxw);
    free(row);
}

/* Load dir as a trainable model with a head and run the fixture's batch. */
static int load_and_run(const char *dir, struct gpt *m, cJSON **exp, int **buf)
{
    char path[512];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    *exp = read_json(path);
    /* A missing fixture fails: skipping it would let the whole parity check pass unseen. */
    if (!tap_ok(*exp != NULL, "%s is there (tools/gen_fixtures.py writes it)", path))
        return -1;
    int B = cJSON_GetObjectItem(*exp, "B")->valueint, T = cJSON_GetObjectItem(*exp, "T")->valueint;
    struct pl_err err = {0};
    struct gpt_opts o = {.trainable = true, .score_head = true, .max_batch = B, .max_seq = T};
    int rc = ckpt_load(m, dir, &o, &err);
    tap_is_int(rc, PL_OK, "%s loads (%s)", dir, rc ? err.msg : "ok");
    if (rc)
        return rc;
    int *tokens = int_array(cJSON_GetObjectItem(*exp, "tokens"));
    int *targets = int_array(cJSON_GetObjectItem(*exp, "targets"));
    int *last = int_array(cJSON_GetObjectItem(*exp, "last"));
    buf[0] = tokens, buf[1] = targets, buf[2] = last;
    struct gpt_batch b = {.B = B, .T = T, .tokens = tokens, .targets = targets, .last = last};
    return gpt_forward(m, &b, &err);
}

static void test_f32(const char *dir)
{
    struct gpt m = {0};
    cJSON *exp;
    int *buf[3] = {0};
    if (load_and_run(dir, &m, &exp, buf) != PL_OK) {
        gpt_release(&m);
        return;
    }
    check_logits(&m, exp, "F32", REL);
    int n;
    tap_ok(rel_diff(m.logp, cJSON_GetObjectItem(exp, "logp"), 1, &n) < REL, "log-probs match");
    double want = cJSON_GetObjectItem(exp, "loss")->valuedouble;
    tap_is_float(m.loss, want, REL * fabs(want), "loss matches PyTorch (%.6f)", want);
    tap_is_int(m.n_targets, cJSON_GetObjectItem(exp, "n_targets")->valueint,
               "ignored targets are ignored");
    tap_ok(rel_diff(m.head, cJSON_GetObjectItem(exp, "head"), 1, &n) < REL,
           "scalar head at each row's last token matches");

    gpt_zero_grad(&m);
    gpt_backward_lm(&m, 1.0f);
    check_grads(&m, cJSON_GetObjectItem(exp, "loss_grads"), "loss");
    gpt_zero_grad(&m);
    float ones[2] = {1.0f, 1.0f};
    gpt_backward(&m, NULL, ones);
    check_grads(&m, cJSON_GetObjectItem(exp, "head_grads"), "head");
    gpt_release(&m);
    cJSON_Delete(exp);
    free(buf[0]), free(buf[1]), free(buf[2]);
}

static void test_half(const char *dir, const char *label)
{
    struct gpt m = {0};
    cJSON *exp;
    int *buf[3] = {0};
    if (load_and_run(dir, &m, &exp, buf) == PL_OK) {
        check_logits(&m, exp, label, REL);
        double want = cJSON_GetObjectItem(exp, "loss")->valuedouble;
        tap_is_float(m.loss, want, REL * fabs(want), "%s: loss matches", label);
        cJSON_Delete(exp);
    }
    gpt_release(&m);
    free(buf[0]), free(buf[1]), free(buf[2]);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 2, &err))
        tap_skip_all(err.msg);
    tap_plan(23);
    test_f32("tests/data/tiny-gpt2");
    test_half("tests/data/tiny-gpt2-f16", "F16 with transformer. prefix and mask buffers");
    test_half("tests/data/tiny-gpt2-bf16", "BF16");
    return tap_done();
}
