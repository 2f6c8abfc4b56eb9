#include "trainer/train.h"

#include "trainer/dist.h"

#include "model/ckpt.h"
#include "model/io.h"
#include "model/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRAIN_PI 3.14159265358979323846

void train_optim_default(struct train_optim *o)
{
    *o = (struct train_optim){.lr = 3e-4f,
                              .min_lr_frac = 0.1f,
                              .warmup = 100,
                              .weight_decay = 0.1f,
                              .beta1 = 0.9f,
                              .beta2 = 0.95f,
                              .eps = 1e-8f,
                              .clip = 1.0f};
}

void train_opts_default(struct train_opts *o)
{
    *o = (struct train_opts){.grad_accum = 1, .eval_every = 100, .save_every = 500};
}

float train_lr(const struct train_optim *o, long horizon, long step)
{
    if (step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    double lo = (double)o->lr * o->min_lr_frac;
    long span = horizon - 1 - o->warmup;
    double p = span > 0 ? (double)(step - o->warmup) / (double)span : 1.0;
    if (p > 1.0)
        p = 1.0;
    return (float)(lo + 0.5 * ((double)o->lr - lo) * (1.0 + cos(TRAIN_PI * p)));
}

void train_values_add(struct train_values *v, const char *name, double value)
{
    PL_ASSERT(v->n < TRAIN_MAX_VALUES);
    v->name[v->n] = name;
    v->value[v->n++] = value;
}

/* ---- named fields ---- */

enum { FIELD_STR = 's', FIELD_NUM = 'n', FIELD_NULL = '0' };

static void field_add(struct train_fields *f, const char *prefix, const char *name, char kind,
                      const char *value)
{
    if (prefix)
        pl_buf_printf(&f->b, "%s.", prefix);
    pl_buf_add(&f->b, name, strlen(name) + 1);
    pl_buf_add(&f->b, &kind, 1);
    pl_buf_add(&f->b, value, strlen(value) + 1);
    f->n++;
}

/* Shortest decimal that reads back as exactly v (as a float when single). */
static void fmt_real(char *out, size_t n, double v, bool single)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        double back = strtod(out, NULL);
        if (single ? (float)back == (float)v : back == v)
            return;
    }
}

void train_field_str(struct train_fields *f, const char *name, const char *value)
{
    field_add(f, NULL, name, value ? FIELD_STR : FIELD_NULL, value ? value : "null");
}

void train_field_int(struct train_fields *f, const char *name, long long value)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", value);
    field_add(f, NULL, name, FIELD_NUM, s);
}

void train_field_u64(struct train_fields *f, const char *name, uint64_t value)
{
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)value);
    field_add(f, NULL, name, FIELD_NUM, s);
}

void train_field_bool(struct train_fields *f, const char *name, bool value)
{
    field_add(f, NULL, name, FIELD_NUM, value ? "true" : "false");
}

void train_field_real(struct train_fields *f, const char *name, double value)
{
    char s[40];
    fmt_real(s, sizeof s, value, false);
    field_add(f, NULL, name, FIELD_NUM, s);
}

void train_field_float(struct train_fields *f, const char *name, float value)
{
    char s[40];
    fmt_real(s, sizeof s, value, true);
    field_add(f, NULL, name, FIELD_NUM, s);
}

void train_fields_release(struct train_fields *f)
{
    pl_buf_release(&f->b);
    f->n = 0;
}

struct field {
    const char *name, *value;
    char kind;
};

/* The field after the one at *at (the first when *at is NULL). */
static struct field field_next(const struct train_fields *f, const char **at)
{
    const char *p = *at ? *at : f->b.p;
    struct field fd = {.name = p};
    p += strlen(p) + 1;
    fd.kind = *p++;
    fd.value = p;
    *at = p + strlen(p) + 1;
    return fd;
}

static void fields_json(struct pl_buf *b, const struct train_fields *f)
{
    const char *at = NULL;
    for (int i = 0; i < f->n; i++) {
        struct field fd = field_next(f, &at);
        pl_buf_str(b, ", ");
        pl_buf_json(b, fd.name, strlen(fd.name));
        pl_buf_str(b, ": ");
        if (fd.kind == FIELD_STR)
            pl_buf_json(b, fd.value, strlen(fd.value));
        else
            pl_buf_str(b, fd.value);
    }
}

static void optim_fields(struct train_fields *f, const char *prefix, const struct train_optim *o)
{
    const struct {
        const char *name;
        float value;
    } v[] = {{"lr", o->lr},
             {"min_lr_frac", o->min_lr_frac},
             {"weight_decay", o->weight_decay},
             {"beta1", o->beta1},
             {"beta2", o->beta2},
             {"eps", o->eps},
             {"clip", o->clip}};
    char s[40];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        fmt_real(s, sizeof s, v[i].value, true);
        field_add(f, prefix, v[i].name, FIELD_NUM, s);
    }
    snprintf(s, sizeof s, "%ld", o->warmup);
    field_add(f, prefix, "warmup", FIELD_NUM, s);
}

/* ---- the run ---- */

struct run {
    const struct train_opts *o;
    struct train_model *models;
    int n_models;
    const struct train_task *task;
    struct train_fields keys, info; /* resume keys (the task's and the loop's); run.json only */
    char *state_path, *metrics_path, *run_path;
    FILE *metrics;
    double *weight;   /* [grad_accum] */
    float *lr, *norm; /* [n_models] of the current step */
    long step;        /* steps taken */
    long horizon;     /* the step the learning-rate schedule ends at */
    long skipped;     /* steps the task skipped, over the whole run */
    long saved;       /* step of this call's last checkpoint; -1: none */
    long start_step;  /* step this call started from */
    bool resumed;
    bool *made;        /* [n_models + 1]: this call created the run folder / model i's folder */
    double t0;         /* pl_now() when this call started */
    double time0;      /* run time before this call (a resumed run's earlier part) */
    double eval_first; /* headline held-out value at step 0 */
    struct io_progress progress;
};

struct step_stats {
    double loss, tokens_per_s;
    bool skip, quiet;
    struct train_values metrics;
    char note[160]; /* the task's progress note, or empty */
};

/* "NAME" + sep + what, or what alone for an unnamed model, appended to b. */
static void model_name(struct pl_buf *b, const struct train_model *tm, const char *sep,
                       const char *what)
{
    if (tm->name)
        pl_buf_printf(b, "%s%s", tm->name, sep);
    pl_buf_add(b, what, strlen(what) + 1);
}

/* ---- state.safetensors ---- */

static int state_save(struct run *r, uint64_t metrics_bytes, struct pl_err *err)
{
    const struct train_task *task = r->task;
    int64_t step = r->step, horizon = r->horizon, skipped = r->skipped;
    double elapsed = r->time0 + pl_now() - r->t0;
    int cap = 4 * r->n_models + 6 + task->n_vars, n = 0;
    struct ckpt_tensor *list = pl_calloc((size_t)cap, sizeof *list);
    size_t *at = pl_calloc((size_t)cap, sizeof *at);
    int64_t *adam_t = pl_calloc((size_t)r->n_models, sizeof *adam_t);
    struct pl_buf names = {0}, meta = {0};
    int rc = PL_OK;
    if (!list || !at || !adam_t) {
        rc = pl_oom(err, "state tensors");
        goto done;
    }
    for (int i = 0; i < r->n_models; i++) {
        const struct train_model *tm = &r->models[i];
        const struct gpt *m = tm->m;
        int64_t np = (int64_t)m->n_params;
        adam_t[i] = m->adam_t;
        const struct {
            const char *what;
            enum ckpt_dtype dtype;
            int64_t numel;
            const void *data;
        } t[] = {{"params", CKPT_F32, np, m->params},
                 {"adam.m", CKPT_F32, np, m->m},
                 {"adam.v", CKPT_F32, np, m->v},
                 {"adam.t", CKPT_I64, 1, &adam_t[i]}};
        for (size_t k = 0; k < 4; k++, n++) {
            at[n] = names.len;
            model_name(&names, tm, ".", t[k].what);
            list[n] = (struct ckpt_tensor){NULL, t[k].dtype, 1, {t[k].numel}, t[k].data};
        }
    }
    const struct {
        const char *name;
        enum ckpt_dtype dtype;
        const void *data;
    } g[] = {{"step", CKPT_I64, &step},
             {"horizon", CKPT_I64, &horizon},
             {"skipped_steps", CKPT_I64, &skipped},
             {"metrics.bytes", CKPT_U64, &metrics_bytes},
             {"time", CKPT_F64, &elapsed},
             {"eval.first", CKPT_F64, &r->eval_first}};
    for (size_t k = 0; k < sizeof g / sizeof *g; k++, n++) {
        at[n] = names.len;
        pl_buf_add(&names, g[k].name, strlen(g[k].name) + 1);
        list[n] = (struct ckpt_tensor){NULL, g[k].dtype, 1, {1}, g[k].data};
    }
    for (int i = 0; i < task->n_vars; i++, n++) {
        const struct train_var *v = &task->vars[i];
        at[n] = names.len;
        pl_buf_printf(&names, "task.%s", v->name);
        pl_buf_add(&names, "", 1);
        list[n] = (struct ckpt_tensor){
            NULL, v->type == TRAIN_F64 ? CKPT_F64 : CKPT_U64, 1, {v->n}, v->data};
    }
    pl_buf_str(&meta, "{\"format\": \"plumb-train-state\"");
    const char *p = NULL;
    for (int i = 0; i < r->keys.n; i++) {
        struct field fd = field_next(&r->keys, &p);
        pl_buf_str(&meta, ", ");
        pl_buf_json(&meta, fd.name, strlen(fd.name));
        pl_buf_str(&meta, ": ");
        pl_buf_json(&meta, fd.value, strlen(fd.value));
    }
    pl_buf_str(&meta, "}");
    if (names.oom || meta.oom) {
        rc = pl_oom(err, "state tensors");
        goto done;
    }
    for (int i = 0; i < n; i++)
        list[i].name = names.p + at[i];
    rc = ckpt_write_tensors(r->state_path, list, n, meta.p, err);
done:
    pl_free(list);
    pl_free(at);
    pl_free(adam_t);
    pl_buf_release(&names);
    pl_buf_release(&meta);
    return rc;
}

/* Refuse to resume with options that would change the run. */
static int check_keys(const struct run *r, const struct ckpt_file *f, struct pl_err *err)
{
    const char *p = NULL;
    for (int i = 0; i < r->keys.n; i++) {
        struct field fd = field_next(&r->keys, &p);
        const char *was = ckpt_file_meta(f, fd.name);
        if (!was || strcmp(was, fd.value) != 0)
            return pl_errf(err, PL_EINVAL,
                           "cannot resume from '%s': option '%s' was %s there and is %s now",
                           r->state_path, fd.name, was ? was : "unset", fd.value);
    }
    /* dist: the key "ranks" exists only in runs of more than one rank. */
    const char *ranks = ckpt_file_meta(f, "ranks");
    if (ranks && dist_size() == 1)
        return pl_errf(err, PL_EINVAL,
                       "cannot resume from '%s': option 'ranks' was %s there and is 1 now "
                       "(mpirun -np %s)",
                       r->state_path, ranks, ranks);
    return PL_OK;
}

static int state_get(const struct ckpt_file *f, struct pl_buf *name, const struct train_model *tm,
                     const char *what, enum ckpt_dtype dtype, void *out, size_t numel,
                     struct pl_err *err)
{
    name->len = 0;
    model_name(name, tm, ".", what);
    if (name->oom)
        return pl_oom(err, "state tensor names");
    return ckpt_file_get(f, name->p, dtype, out, numel, err);
}

static int state_load(struct run *r, uint64_t *metrics_bytes, struct pl_err *err)
{
    struct ckpt_file f;
    struct pl_buf name = {0};
    int64_t step = 0, horizon = 0, skipped = 0;
    int rc = ckpt_file_open(&f, r->state_path, err);
    if (rc == PL_OK)
        rc = check_keys(r, &f, err);
    for (int i = 0; rc == PL_OK && i < r->n_models; i++) {
        struct train_model *tm = &r->models[i];
        struct gpt *m = tm->m;
        int64_t adam_t = 0;
        rc = state_get(&f, &name, tm, "params", CKPT_F32, m->params, m->n_params, err);
        if (rc == PL_OK)
            rc = state_get(&f, &name, tm, "adam.m", CKPT_F32, m->m, m->n_params, err);
        if (rc == PL_OK)
            rc = state_get(&f, &name, tm, "adam.v", CKPT_F32, m->v, m->n_params, err);
        if (rc == PL_OK)
            rc = state_get(&f, &name, tm, "adam.t", CKPT_I64, &adam_t, 1, err);
        if (rc == PL_OK && adam_t < 0)
            rc = pl_errf(err, PL_EFORMAT, "%s: a negative AdamW step count", r->state_path);
        m->adam_t = (long)adam_t;
    }
    const struct {
        const char *name;
        enum ckpt_dtype dtype;
        void *out;
    } g[] = {{"step", CKPT_I64, &step},
             {"horizon", CKPT_I64, &horizon},
             {"skipped_steps", CKPT_I64, &skipped},
             {"metrics.bytes", CKPT_U64, metrics_bytes},
             {"time", CKPT_F64, &r->time0},
             {"eval.first", CKPT_F64, &r->eval_first}};
    for (size_t i = 0; rc == PL_OK && i < sizeof g / sizeof *g; i++)
        rc = ckpt_file_get(&f, g[i].name, g[i].dtype, g[i].out, 1, err);
    for (int i = 0; rc == PL_OK && i < r->task->n_vars; i++) {
        const struct train_var *v = &r->task->vars[i];
        name.len = 0;
        pl_buf_printf(&name, "task.%s", v->name);
        rc = name.oom ? pl_oom(err, "state tensor names")
                      : ckpt_file_get(&f, name.p, v->type == TRAIN_F64 ? CKPT_F64 : CKPT_U64,
                                      v->data, (size_t)v->n, err);
    }
    if (rc == PL_OK && (step < 0 || horizon < 1 || skipped < 0 || skipped > step))
        rc = pl_errf(err, PL_EFORMAT,
                     "%s: step %lld, horizon %lld or skipped steps %lld is not "
                     "valid",
                     r->state_path, (long long)step, (long long)horizon, (long long)skipped);
    if (rc == PL_OK && step > r->o->steps)
        rc = pl_errf(err, PL_EINVAL,
                     "cannot resume from '%s': it is at step %lld, beyond the %ld steps asked for",
                     r->state_path, (long long)step, r->o->steps);
    ckpt_file_release(&f);
    pl_buf_release(&name);
    r->step = r->start_step = (long)step;
    r->horizon = (long)horizon;
    r->skipped = (long)skipped;
    return rc;
}

/* ---- run.json ---- */

static int run_json_write(const struct run *r, struct pl_err *err)
{
    const struct train_opts *o = r->o;
    struct pl_buf b = {0};
    pl_buf_printf(&b, "{\"plumb_version\": \"%s\"", o->version ? o->version : "unknown");
    pl_buf_str(&b, ", \"command\": ");
    pl_buf_json(&b, r->task->label, strlen(r->task->label));
    pl_buf_str(&b, ", \"out\": ");
    pl_buf_json(&b, o->out, strlen(o->out));
    /* The loop's keys come after the task's: for one unnamed model they are flat. */
    fields_json(&b, &r->keys);
    fields_json(&b, &r->info);
    for (int i = 0; i < r->n_models; i++) {
        const struct train_model *tm = &r->models[i];
        if (tm->name)
            pl_buf_printf(&b, ", \"%s\": {\"out\": ", tm->name);
        else
            pl_buf_str(&b, ", \"model_out\": ");
        pl_buf_json(&b, tm->out, strlen(tm->out));
        pl_buf_printf(&b, ", \"n_params\": %zu%s", tm->m->n_params, tm->name ? "}" : "");
    }
    pl_buf_printf(&b,
                  ", \"steps\": %ld, \"horizon\": %ld, \"eval_every\": %ld, \"save_every\": %ld, "
                  "\"resume\": %s, \"force\": %s, \"threads\": %d, \"start_step\": %ld}\n",
                  o->steps, r->horizon, o->eval_every, o->save_every, o->resume ? "true" : "false",
                  o->force ? "true" : "false", tensor_threads(), r->start_step);
    int rc = b.oom ? pl_oom(err, "run.json") : io_write_atomic(r->run_path, b.p, b.len, err);
    pl_buf_release(&b);
    return rc;
}

/* ---- metrics.jsonl ---- */

/* A resumed run cuts metrics.jsonl back to its checkpoint (the lines after it belong to steps
 * that run again), then drops a cut-short last line a kill may have left. */
static int metrics_open(struct run *r, uint64_t bytes, struct pl_err *err)
{
    int rc = PL_OK;
    struct stat st;
    if (r->resumed && stat(r->metrics_path, &st) == 0 && (uint64_t)st.st_size > bytes)
        rc = io_truncate(r->metrics_path, (long)bytes, err);
    long keep = -1;
    if (rc == PL_OK && r->resumed)
        rc = io_jsonl_tail(r->metrics_path, &keep, err);
    if (rc == PL_OK && keep >= 0)
        rc = io_truncate(r->metrics_path, keep, err);
    if (rc)
        return rc;
    r->metrics = fopen(r->metrics_path, r->resumed ? "a" : "w");
    if (!r->metrics)
        return pl_errf(err, PL_EIO, "cannot open '%s': %s", r->metrics_path, strerror(errno));
    return PL_OK;
}

static void json_num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.9g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

static void json_model_num(FILE *f, const struct train_model *tm, const char *key, double v)
{
    if (!tm->name) {
        json_num(f, key, v);
        return;
    }
    if (isfinite(v))
        fprintf(f, ", \"%s/%s\": %.9g", tm->name, key, v);
    else
        fprintf(f, ", \"%s/%s\": null", tm->name, key);
}

static void metrics_line(struct run *r, const struct step_stats *s, const struct train_values *ev)
{
    FILE *f = r->metrics;
    if (!f) /* dist: a rank other than 0 */
        return;
    fprintf(f, "{\"step\": %ld, \"time\": %.3f", r->step, r->time0 + pl_now() - r->t0);
    if (s) {
        json_num(f, "train/loss", s->loss);
        for (int i = 0; !s->skip && i < r->n_models; i++) {
            json_model_num(f, &r->models[i], "lr", r->lr[i]);
            json_model_num(f, &r->models[i], "grad_norm", r->norm[i]);
        }
        fprintf(f, ", \"tokens_per_s\": %.1f", s->tokens_per_s);
        for (int i = 0; i < s->metrics.n; i++)
            json_num(f, s->metrics.name[i], s->metrics.value[i]);
        if (r->skipped)
            fprintf(f, ", \"train/skipped_steps\": %ld", r->skipped);
    }
    for (int i = 0; ev && i < ev->n; i++)
        json_num(f, ev->name[i], ev->value[i]);
    fputs("}\n", f);
}

/* Flush metrics.jsonl to disk; *bytes is its length, which the checkpoint records. */
static int metrics_sync(struct run *r, uint64_t *bytes, struct pl_err *err)
{
    struct stat st;
    if (fflush(r->metrics) != 0 || fsync(fileno(r->metrics)) != 0 ||
        fstat(fileno(r->metrics), &st) != 0)
        return pl_errf(err, PL_EIO, "cannot write '%s': %s", r->metrics_path, strerror(errno));
    *bytes = (uint64_t)st.st_size;
    return PL_OK;
}

/* ---- steps, evaluation, checkpoints ---- */

static int evaluate(struct run *r, struct train_values *ev, struct pl_err *err)
{
    ev->n = 0;
    int rc = r->task->eval(r->task->ctx, r->models, ev, err);
    if (rc || ev->n == 0)
        return rc;
    struct pl_buf b = {0};
    for (int i = 0; i < ev->n; i++)
        pl_buf_printf(&b, "%s%s %.5g", i ? ", " : "", ev->name[i], ev->value[i]);
    if (!b.oom)
        io_progress_log(&r->progress, "step %ld: %s", r->step, b.p);
    pl_buf_release(&b);
    return PL_OK;
}

static int checkpoint(struct run *r, struct pl_err *err)
{
    uint64_t bytes = 0;
    int rc = PL_OK;
    /* dist: rank 0 alone writes; every rank holds the same weights (dist_check). */
    if (dist_rank() > 0) {
        r->saved = r->step;
        return PL_OK;
    }
    for (int i = 0; rc == PL_OK && i < r->n_models; i++) {
        const struct train_model *tm = &r->models[i];
        rc = ckpt_save(tm->m, tm->out, err);
        /* The tokenizer and run.json come with this call's first model, not before it. */
        if (rc == PL_OK && r->saved < 0 && tm->tok)
            rc = tok_save(tm->tok, tm->out, err);
    }
    if (rc == PL_OK && r->saved < 0)
        rc = run_json_write(r, err);
    if (rc == PL_OK)
        rc = metrics_sync(r, &bytes, err);
    /* Written last: until it is renamed into place the previous checkpoint stands. */
    if (rc == PL_OK)
        rc = state_save(r, bytes, err);
    if (rc == PL_OK)
        r->saved = r->step;
    return rc;
}

static int numeric_error(const struct run *r, double loss, struct pl_err *err)
{
    int bad = 0;
    while (bad < r->n_models - 1 && isfinite(r->norm[bad]))
        bad++;
    const char *name = r->models[bad].name;
    char last[64] = "no checkpoint was written";
    long saved = r->saved >= 0 ? r->saved : r->resumed ? r->start_step : -1;
    if (saved >= 0)
        snprintf(last, sizeof last, "the last good checkpoint is step %ld", saved);
    return pl_errf(err, PL_ENUMERIC,
                   "step %ld: training loss is %g and %s%sgradient norm %g: stopped before the "
                   "update (try a lower learning rate); %s%s%s%s",
                   r->step + 1, loss, name ? name : "", name ? "'s " : "", (double)r->norm[bad],
                   last, saved >= 0 ? " in '" : "", saved >= 0 ? r->o->out : "",
                   saved >= 0 ? "'" : "");
}

/* ---- dist: data parallel across ranks (trainer/dist.h) ---- */

/* After every rank's micro-batches: the loss and token count summed over the ranks, a skip by
 * any rank skips the step on all, and the gradients of the global batch (each rank's already
 * scaled by its share of the global weight) summed into every rank's copy. */
static int dist_step(struct run *r, struct train_step *st, double *loss, struct pl_err *err)
{
    if (dist_size() == 1)
        return PL_OK;
    double v[3] = {*loss, (double)st->tokens, st->skip ? 1.0 : 0.0};
    int rc = dist_sum_doubles(v, 3, err);
    *loss = v[0];
    st->tokens = (long)v[1];
    st->skip = v[2] > 0.0;
    for (int i = 0; rc == PL_OK && !st->skip && i < r->n_models; i++)
        rc = dist_sum_floats(r->models[i].m->grads, r->models[i].m->n_params, 1.0f, err);
    return rc;
}

#define DIST_CHECK_EVERY 100

/* When `now` (at the start, every DIST_CHECK_EVERY steps, at checkpoints): every rank holds the
 * same weights at the same step, or the run stops. */
static int dist_check(const struct run *r, bool now, struct pl_err *err)
{
    for (int i = 0; now && dist_size() > 1 && i < r->n_models; i++) {
        const struct train_model *tm = &r->models[i];
        char what[128];
        snprintf(what, sizeof what, "step %ld: %s%sweights", r->step, tm->name ? tm->name : "the",
                 tm->name ? "'s " : " ");
        uint64_t h = dist_hash(tm->m->params, tm->m->n_params) ^ (uint64_t)r->step;
        int rc = dist_same(h, what, err);
        if (rc)
            return rc;
    }
    return PL_OK;
}

/* ---- end of dist ---- */

/* One optimizer step: gradients over grad_accum micro-batches, then for each model clipping and
 * AdamW, unless the task skips the step. */
static int train_step(struct run *r, struct step_stats *s, struct pl_err *err)
{
    const struct train_task *task = r->task;
    const struct train_opts *o = r->o;
    double t = pl_now(), total = 0.0, loss = 0.0;
    struct train_step st = {.index = r->step,
                            .n_micro = o->grad_accum,
                            .weight = r->weight,
                            .log = o->log && dist_rank() == 0 ? &r->progress : NULL};
    for (int i = 0; i < r->n_models; i++)
        gpt_zero_grad(r->models[i].m);
    int rc = task->next(task->ctx, &st, err);
    for (int i = 0; rc == PL_OK && i < o->grad_accum; i++)
        total += r->weight[i];
    if (rc == PL_OK) /* dist: the weight of the global batch, all ranks' terms */
        rc = dist_sum_doubles(&total, 1, err);
    for (int i = 0; rc == PL_OK && i < o->grad_accum; i++) {
        double share = total > 0.0 ? r->weight[i] / total : 0.0, part;
        rc = task->backward(task->ctx, r->models, &st, i, (float)share, &part, err);
        loss += share * part;
    }
    if (rc == PL_OK)
        rc = dist_step(r, &st, &loss, err);
    if (rc)
        return rc;
    s->loss = loss;
    s->skip = st.skip;
    s->quiet = st.quiet;
    s->metrics = st.metrics;
    if (task->note)
        task->note(task->ctx, &st, s->note, sizeof s->note);
    if (st.skip) {
        r->skipped++;
    } else {
        bool finite = isfinite(loss);
        for (int i = 0; i < r->n_models; i++) {
            r->norm[i] = gpt_clip_grad(r->models[i].m, r->models[i].optim.clip);
            finite &= isfinite(r->norm[i]);
        }
        if (!finite)
            return numeric_error(r, loss, err);
        for (int i = 0; i < r->n_models; i++) {
            const struct train_optim *op = &r->models[i].optim;
            r->lr[i] = train_lr(op, r->horizon, r->step);
            struct gpt_adamw hp = {r->lr[i], op->beta1, op->beta2, op->eps, op->weight_decay};
            gpt_adamw_step(r->models[i].m, &hp);
        }
    }
    s->tokens_per_s = (double)st.tokens / (pl_now() - t);
    return PL_OK;
}

static bool due(long step, long every, long last)
{
    return (every > 0 && step % every == 0) || step == last;
}

static void show_step(struct run *r, const struct step_stats *s)
{
    char note[160];
    if (s->note[0])
        snprintf(note, sizeof note, "%s", s->note);
    else if (s->skip)
        snprintf(note, sizeof note, "step %ld skipped, %ld so far", r->step, r->skipped);
    else
        snprintf(note, sizeof note, "loss %.4f, lr %.3g, grad norm %.3g, %.1fk tok/s", s->loss,
                 r->lr[0], r->norm[0], s->tokens_per_s / 1e3);
    r->progress.done = r->step - r->start_step;
    io_progress_show(&r->progress, note, r->step == r->o->steps);
}

static int loop(struct run *r, struct train_result *res, struct pl_err *err)
{
    const struct train_opts *o = r->o;
    bool eval = r->task->eval && o->eval_every > 0;
    struct train_values ev = {0};
    int rc = PL_OK;
    if (eval && r->step == 0) {
        rc = evaluate(r, &ev, err);
        r->eval_first = ev.n ? ev.value[0] : NAN;
        if (rc == PL_OK)
            metrics_line(r, NULL, &ev);
        res->eval_last = r->eval_first;
    }
    while (rc == PL_OK && r->step < o->steps) {
        struct step_stats s = {0};
        if ((rc = train_step(r, &s, err)))
            break;
        r->step++;
        res->train_loss = s.loss;
        ev.n = 0;
        if (eval && due(r->step, o->eval_every, o->steps)) {
            if ((rc = evaluate(r, &ev, err)))
                break;
            res->eval_last = ev.n ? ev.value[0] : NAN;
        }
        if (!s.quiet || ev.n)
            metrics_line(r, &s, &ev);
        show_step(r, &s);
        bool save = due(r->step, o->save_every, o->steps);
        if ((rc = dist_check(r, save || r->step % DIST_CHECK_EVERY == 0, err)))
            break;
        if (save && (rc = checkpoint(r, err)))
            break;
        if (o->on_step && o->on_step(o->on_step_ctx, r->step)) {
            res->stopped = true;
            break;
        }
    }
    res->eval_first = r->eval_first;
    return rc;
}

static int check_optim(const struct train_model *tm, struct pl_err *err)
{
    const struct train_optim *o = &tm->optim;
    const char *name = tm->name ? tm->name : "the model";
    if (!tm->m || !tm->m->opts.trainable)
        return pl_errf(err, PL_EINVAL, "%s is not trainable", name);
    if (!tm->out)
        return pl_errf(err, PL_EINVAL, "no output folder given for %s", name);
    if (!(o->lr > 0.0f) || !isfinite(o->lr) || o->warmup < 0 || !(o->min_lr_frac >= 0.0f))
        return pl_errf(err, PL_EINVAL, "the learning rate schedule of %s is not valid", name);
    if (!(o->clip >= 0.0f) || !(o->weight_decay >= 0.0f) || !(o->eps > 0.0f) ||
        !(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f))
        return pl_errf(err, PL_EINVAL, "the AdamW settings of %s are not valid", name);
    return PL_OK;
}

static int check_run_opts(const struct train_model *models, int n_models,
                          const struct train_task *task, const struct train_opts *o,
                          struct pl_err *err)
{
    if (!o->out)
        return pl_errf(err, PL_EINVAL, "no output folder given");
    if (n_models < 1)
        return pl_errf(err, PL_EINVAL, "no model to train");
    if (!task->label || !task->next || !task->backward)
        return pl_errf(err, PL_EINVAL, "the task lacks a label, next or backward");
    if (o->steps <= 0 || o->grad_accum <= 0)
        return pl_errf(err, PL_EINVAL, "steps and grad_accum must be positive");
    if (o->eval_every < 0 || o->save_every < 0)
        return pl_errf(err, PL_EINVAL, "eval_every and save_every must not be negative");
    for (int i = 0; i < n_models; i++) {
        int rc = check_optim(&models[i], err);
        if (rc)
            return rc;
        if (!models[i].name && n_models > 1)
            return pl_errf(err, PL_EINVAL, "model %d of %d has no name", i, n_models);
        for (int j = 0; j < i; j++)
            if (models[i].name && strcmp(models[i].name, models[j].name) == 0)
                return pl_errf(err, PL_EINVAL, "two models are named '%s'", models[i].name);
    }
    return PL_OK;
}

static int remove_file(const char *path, struct pl_err *err)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return pl_errf(err, PL_EIO, "cannot remove '%s': %s", path, strerror(errno));
    return PL_OK;
}

/* Folder i: the run folder (i = 0) or model i - 1's. */
static const char *folder(const struct run *r, int i)
{
    return i == 0 ? r->o->out : r->models[i - 1].out;
}

/* Refuse a folder that holds something, unless the run resumes there or may replace it; then
 * create the folders, remembering which did not exist. */
static int prepare_folders(struct run *r, struct pl_err *err)
{
    int rc = PL_OK;
    for (int i = 0; rc == PL_OK && i <= r->n_models; i++) {
        bool empty = true;
        rc = io_dir_empty(folder(r, i), &empty, err);
        if (rc == PL_OK && !empty && !r->o->resume && !r->o->force)
            rc = pl_errf(err, PL_EINVAL,
                         "'%s' is not empty: resume the run there (--resume) or replace it "
                         "(--force)",
                         folder(r, i));
    }
    for (int i = 0; rc == PL_OK && i <= r->n_models; i++) {
        struct stat st;
        r->made[i] = stat(folder(r, i), &st) != 0;
        rc = io_mkdirs(folder(r, i), err);
    }
    return rc;
}

/* A run that fails before its first checkpoint leaves nothing behind but what was there. */
static void undo_fresh_run(struct run *r)
{
    if (r->metrics)
        unlink(r->metrics_path);
    for (int i = r->n_models; i >= 0; i--)
        if (r->made[i])
            rmdir(folder(r, i));
}

/* Resume from the checkpoint or start afresh, then open metrics.jsonl. */
static int run_open(struct run *r, struct pl_err *err)
{
    const struct train_opts *o = r->o;
    uint64_t bytes = 0;
    r->state_path = io_path_join(o->out, "state.safetensors");
    r->metrics_path = io_path_join(o->out, "metrics.jsonl");
    r->run_path = io_path_join(o->out, "run.json");
    if (!r->state_path || !r->metrics_path || !r->run_path)
        return pl_oom(err, "paths");
    /* dist: rank 0 alone prepares and writes the folders; every rank reads a checkpoint. */
    int rc = dist_rank() == 0 ? prepare_folders(r, err) : PL_OK;
    if (rc)
        return rc;
    struct stat st;
    r->resumed = o->resume && stat(r->state_path, &st) == 0;
    if (r->resumed) {
        rc = state_load(r, &bytes, err);
    } else if (dist_rank() == 0) {
        /* Nothing of an older run may pass for part of this one. */
        rc = remove_file(r->state_path, err);
        if (rc == PL_OK)
            rc = remove_file(r->run_path, err);
    }
    if (rc == PL_OK && r->resumed)
        io_progress_log(&r->progress, "resuming from step %ld", r->step);
    else if (rc == PL_OK && o->resume)
        io_progress_log(&r->progress, "no checkpoint in '%s': starting afresh", o->out);
    if (rc == PL_OK && dist_rank() == 0)
        rc = metrics_open(r, bytes, err);
    if (rc == PL_OK)
        rc = dist_check(r, true, err);
    return rc;
}

static int run_keys(struct run *r, struct pl_err *err)
{
    const struct train_task *task = r->task;
    field_add(&r->keys, NULL, "task", FIELD_STR, task->label);
    if (task->fields)
        task->fields(task->ctx, &r->keys, &r->info);
    char s[32];
    snprintf(s, sizeof s, "%d", r->o->grad_accum);
    field_add(&r->keys, NULL, "grad_accum", FIELD_NUM, s);
    for (int i = 0; i < r->n_models; i++)
        optim_fields(&r->keys, r->models[i].name, &r->models[i].optim);
    if (dist_size() > 1) { /* dist: the global batch is the ranks' batches */
        snprintf(s, sizeof s, "%d", dist_size());
        field_add(&r->keys, NULL, "ranks", FIELD_NUM, s);
    }
    return r->keys.b.oom || r->info.b.oom ? pl_oom(err, "run options") : PL_OK;
}

int train_run(struct train_model *models, int n_models, const struct train_task *task,
              const struct train_opts *o, struct train_result *res, struct pl_err *err)
{
    struct run r = {.o = o,
                    .models = models,
                    .n_models = n_models,
                    .task = task,
                    .saved = -1,
                    .horizon = o->steps,
                    .t0 = pl_now(),
                    .eval_first = NAN};
    *res = (struct train_result){.train_loss = NAN, .eval_first = NAN, .eval_last = NAN};
    int rc = check_run_opts(models, n_models, task, o, err);
    if (rc)
        return rc;
    io_progress_init(&r.progress, dist_rank() == 0 ? o->log : NULL, task->label, "steps", o->steps);
    r.weight = pl_malloc((size_t)o->grad_accum * sizeof *r.weight);
    r.lr = pl_calloc((size_t)n_models, sizeof *r.lr);
    r.norm = pl_calloc((size_t)n_models, sizeof *r.norm);
    r.made = pl_calloc((size_t)n_models + 1, sizeof *r.made);
    rc = r.weight && r.lr && r.norm && r.made ? run_keys(&r, err) : pl_oom(err, "step buffers");
    if (rc == PL_OK)
        rc = run_open(&r, err);
    if (rc == PL_OK) {
        r.progress.total = o->steps - r.start_step;
        rc = loop(&r, res, err);
    }
    if (rc && r.made && !r.resumed && r.saved < 0)
        undo_fresh_run(&r);
    if (r.metrics && fclose(r.metrics) != 0 && rc == PL_OK)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", r.metrics_path, strerror(errno));
    res->start_step = r.start_step;
    res->steps = r.step;
    res->skipped_steps = r.skipped;
    res->seconds = pl_now() - r.t0;
    train_fields_release(&r.keys);
    train_fields_release(&r.info);
    pl_free(r.state_path);
    pl_free(r.metrics_path);
    pl_free(r.run_path);
    pl_free(r.weight);
    pl_free(r.lr);
    pl_free(r.norm);
    pl_free(r.made);
    return rc;
}

/* ---- data order ---- */

int train_order_init(struct train_order *o, size_t n, uint64_t seed, struct pl_err *err)
{
    memset(o, 0, sizeof *o);
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    memcpy(o->rng, r.s, sizeof o->rng);
    o->n = n;
    o->perm_epoch = -1;
    o->perm = pl_malloc((n ? n : 1) * sizeof *o->perm);
    return o->perm ? PL_OK : pl_oom(err, "data order");
}

void train_order_release(struct train_order *o)
{
    pl_free(o->perm);
    memset(o, 0, sizeof *o);
    o->perm_epoch = -1;
}

const size_t *train_order_perm(struct train_order *o)
{
    if (o->perm_epoch == (long)o->cursor[0])
        return o->perm;
    memcpy(o->live.s, o->rng, sizeof o->rng);
    for (size_t i = 0; i < o->n; i++)
        o->perm[i] = i;
    for (size_t i = o->n; i > 1; i--) {
        size_t j = (size_t)(pl_rng_next(&o->live) % i), k = o->perm[i - 1];
        o->perm[i - 1] = o->perm[j];
        o->perm[j] = k;
    }
    o->perm_epoch = (long)o->cursor[0];
    return o->perm;
}

void train_order_wrap(struct train_order *o)
{
    memcpy(o->rng, o->live.s, sizeof o->rng);
    o->cursor[0]++;
    o->cursor[1] = 0;
}

size_t train_order_next(struct train_order *o)
{
    size_t item = train_order_perm(o)[o->cursor[1]++];
    if (o->cursor[1] == o->n)
        train_order_wrap(o);
    return item;
}
