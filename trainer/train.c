#include "trainer/train.h"

#include "datasets/ds.h"
#include "model/ckpt.h"
#include "model/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRAIN_PI 3.14159265358979323846
#define TRAIN_MAX_VARS 8

void train_opts_default(struct train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = TRAIN_PRETRAIN;
    o->eval_frac = 0.05;
    o->mix_frac = 0.25;
    o->epochs = 1.0;
    o->batch = 16;
    o->grad_accum = 1;
    o->lr = 3e-4f;
    o->min_lr_frac = 0.1f;
    o->warmup = 100;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->clip = 1.0f;
    o->eval_every = 100;
    o->eval_rows = 256;
    o->save_every = 500;
    o->log_every = 10;
    o->seed = 1337;
}

float train_lr(const struct train_opts *o, long step)
{
    if (step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    double lo = (double)o->lr * o->min_lr_frac;
    long span = o->steps - 1 - o->warmup;
    double p = span > 0 ? (double)(step - o->warmup) / (double)span : 1.0;
    if (p > 1.0)
        p = 1.0;
    return (float)(lo + 0.5 * ((double)o->lr - lo) * (1.0 + cos(TRAIN_PI * p)));
}

/* ---- units: tokenised data cut to at most T + 1 tokens ---- */

static int units_append_ids(struct train_units *u, const int *ids, size_t n, int end, size_t *start,
                            struct pl_err *err)
{
    size_t need = u->n_ids + n + 1;
    if (need > u->cap_ids) {
        size_t cap = u->cap_ids ? u->cap_ids : 4096;
        while (cap < need)
            cap *= 2;
        int *p = pl_realloc(u->ids, cap * sizeof *p);
        if (!p)
            return pl_oom(err, "token ids");
        u->ids = p;
        u->cap_ids = cap;
    }
    *start = u->n_ids;
    memcpy(u->ids + u->n_ids, ids, n * sizeof *ids);
    u->n_ids += n;
    u->ids[u->n_ids++] = end;
    return PL_OK;
}

static int units_add(struct train_units *u, size_t start, int len, int prompt, struct pl_err *err)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? 2 * u->cap : 256;
        size_t *s = pl_realloc(u->start, cap * sizeof *s);
        if (s)
            u->start = s;
        int *l = s ? pl_realloc(u->len, cap * sizeof *l) : NULL;
        if (l)
            u->len = l;
        int *p = l ? pl_realloc(u->prompt, cap * sizeof *p) : NULL;
        if (!p)
            return pl_oom(err, "data units");
        u->prompt = p;
        u->cap = cap;
    }
    u->start[u->n] = start;
    u->len[u->n] = len;
    u->prompt[u->n] = prompt;
    u->n++;
    return PL_OK;
}

static void units_release(struct train_units *u)
{
    pl_free(u->ids);
    pl_free(u->start);
    pl_free(u->len);
    pl_free(u->prompt);
    memset(u, 0, sizeof *u);
}

/* One document (ids, then the end token) as windows of T + 1 tokens that overlap by one, so
 * that every token after the first is predicted exactly once. */
static int units_add_document(struct train_units *u, const int *ids, size_t n, int end, int T,
                              struct pl_err *err)
{
    size_t start, total = n + 1, window = (size_t)T + 1;
    int rc = units_append_ids(u, ids, n, end, &start, err);
    for (size_t s = 0; rc == PL_OK && s + 1 < total; s += (size_t)T)
        rc = units_add(u, start + s, (int)(total - s < window ? total - s : window), 0, err);
    return rc;
}

static size_t next_line(const char *s, size_t len, size_t i)
{
    const char *nl = memchr(s + i, '\n', len - i);
    return nl ? (size_t)(nl - s) + 1 : len;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* Documents of text[0, len): runs of non-blank lines. */
static int units_from_text(struct train_units *u, const struct tok *tok, struct tok_buf *buf,
                           const char *text, size_t len, int T, struct pl_err *err)
{
    size_t i = 0;
    int rc = PL_OK;
    while (rc == PL_OK && i < len) {
        size_t end = next_line(text, len, i);
        if (is_blank(text + i, end - i)) {
            i = end;
            continue;
        }
        size_t doc = i;
        while (i < len && !is_blank(text + i, (end = next_line(text, len, i)) - i))
            i = end;
        buf->n = 0;
        rc = tok_encode(tok, buf, text + doc, i - doc, 0, err);
        if (rc == PL_OK)
            rc = units_add_document(u, buf->ids, buf->n, tok->eos, T, err);
    }
    return rc;
}

/* Examples recs[0, n) as prompt + response + end token, cut to T + 1 tokens. */
static int units_from_sft(struct train_units *u, long *truncated, const struct tok *tok,
                          struct tok_buf *buf, const struct ds_sft_rec *recs, size_t n, int T,
                          struct pl_err *err)
{
    int rc = PL_OK;
    for (size_t i = 0; rc == PL_OK && i < n; i++) {
        buf->n = 0;
        rc = tok_encode(tok, buf, recs[i].prompt, strlen(recs[i].prompt), 0, err);
        size_t prompt = buf->n;
        if (rc == PL_OK)
            rc = tok_encode(tok, buf, recs[i].response, strlen(recs[i].response), 0, err);
        size_t start, len = buf->n + 1;
        if (rc == PL_OK)
            rc = units_append_ids(u, buf->ids, buf->n, tok->eos, &start, err);
        if (rc || len < 2)
            continue;
        if (len > (size_t)T + 1) {
            len = (size_t)T + 1;
            (*truncated)++;
        }
        rc = units_add(u, start, (int)len, (int)(prompt < len ? prompt : len), err);
    }
    return rc;
}

/* Where the held-out tail of a text starts: the first line start in its last `frac`. */
static size_t split_point(const char *text, size_t len, double frac)
{
    size_t p = len - (size_t)((double)len * frac);
    while (p > 0 && p < len && text[p - 1] != '\n')
        p++;
    return p;
}

static int load_text(struct train_lm *t, const struct tok *tok, struct tok_buf *buf,
                     const struct train_opts *o, struct pl_err *err)
{
    struct ds_text text = {0};
    int rc = ds_text_init(&text, o->data, err);
    size_t cut = o->eval_data ? text.len : split_point(text.data, text.len, o->eval_frac);
    if (rc == PL_OK)
        rc = units_from_text(&t->train, tok, buf, text.data, cut, t->T, err);
    if (rc == PL_OK)
        rc = units_from_text(&t->eval, tok, buf, text.data + cut, text.len - cut, t->T, err);
    ds_text_release(&text);
    if (rc == PL_OK && o->eval_data) {
        rc = ds_text_init(&text, o->eval_data, err);
        if (rc == PL_OK)
            rc = units_from_text(&t->eval, tok, buf, text.data, text.len, t->T, err);
        ds_text_release(&text);
    }
    return rc;
}

static int load_sft_file(struct train_lm *t, const struct tok *tok, struct tok_buf *buf,
                         const char *path, double eval_frac, const struct train_opts *o,
                         struct pl_err *err)
{
    struct ds_sft set;
    int rc = ds_sft_init(&set, path, o->skip_bad_lines ? DS_SKIP_BAD_LINES : 0, err);
    t->skipped += set.skipped;
    size_t n_eval = (size_t)((double)set.n * eval_frac), n_train = set.n - n_eval;
    if (rc == PL_OK)
        rc = units_from_sft(&t->train, &t->truncated, tok, buf, set.recs, n_train, t->T, err);
    if (rc == PL_OK)
        rc = units_from_sft(&t->eval, &t->truncated, tok, buf, set.recs + n_train, n_eval, t->T,
                            err);
    ds_sft_release(&set);
    return rc;
}

static int load_sft(struct train_lm *t, const struct tok *tok, struct tok_buf *buf,
                    const struct train_opts *o, struct pl_err *err)
{
    int rc = load_sft_file(t, tok, buf, o->data, o->eval_data ? 0.0 : o->eval_frac, o, err);
    if (rc == PL_OK && o->eval_data)
        rc = load_sft_file(t, tok, buf, o->eval_data, 1.0, o, err);
    if (rc == PL_OK && o->mix_corpus) {
        struct ds_text text = {0};
        rc = ds_text_init(&text, o->mix_corpus, err);
        if (rc == PL_OK)
            rc = units_from_text(&t->mix, tok, buf, text.data, text.len, t->T, err);
        ds_text_release(&text);
    }
    return rc;
}

/* ---- streams and packing ---- */

static int stream_init(struct train_stream *s, const struct train_units *u, uint64_t seed,
                       struct pl_err *err)
{
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    memcpy(s->rng, r.s, sizeof s->rng);
    s->units = u;
    s->perm_epoch = -1;
    s->perm = pl_malloc((u->n ? u->n : 1) * sizeof *s->perm);
    return s->perm ? PL_OK : pl_oom(err, "data order");
}

/* Draw the current epoch's order unless it is drawn: a shuffle from the RNG state saved at the
 * epoch's start, so a resumed stream draws the same order. */
static void stream_order(struct train_stream *s)
{
    if (s->perm_epoch == (long)s->cursor[0])
        return;
    memcpy(s->live.s, s->rng, sizeof s->rng);
    size_t n = s->units->n;
    for (size_t i = 0; i < n; i++)
        s->perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(pl_rng_next(&s->live) % i), k = s->perm[i - 1];
        s->perm[i - 1] = s->perm[j];
        s->perm[j] = k;
    }
    s->perm_epoch = (long)s->cursor[0];
}

/* One row being packed. */
struct row {
    int *tok, *tgt, *pos, *seg; /* [T] */
    int T, used, docs;
};

static struct row row_at(int *tok, int *tgt, int *pos, int *seg, size_t index, int T)
{
    size_t off = index * (size_t)T;
    return (struct row){tok + off, tgt + off, pos + off, seg + off, T, 0, 0};
}

/* Append units order[*next], order[*next + 1], ... (identity order when order is NULL) while the
 * next one fits. */
static void row_fill(struct row *r, const struct train_units *u, const size_t *order, size_t n,
                     uint64_t *next)
{
    while (*next < n) {
        size_t k = order ? order[*next] : *next;
        int need = u->len[k] - 1;
        if (need > r->T - r->used)
            return;
        const int *ids = u->ids + u->start[k];
        for (int i = 0; i < need; i++) {
            int at = r->used + i;
            r->tok[at] = ids[i];
            r->tgt[at] = i + 1 >= u->prompt[k] ? ids[i + 1] : -1;
            r->pos[at] = i;
            r->seg[at] = r->docs;
        }
        r->used += need;
        r->docs++;
        (*next)++;
    }
}

/* Pad the rest of the row (a segment of its own, no targets); returns the row's target count. */
static int row_finish(struct row *r, int pad)
{
    for (int at = r->used; at < r->T; at++) {
        r->tok[at] = pad;
        r->tgt[at] = -1;
        r->pos[at] = at - r->used;
        r->seg[at] = r->docs;
    }
    int n = 0;
    for (int at = 0; at < r->used; at++)
        n += r->tgt[at] >= 0;
    return n;
}

/* Fill the row from the stream, crossing into the next epoch when this one runs out. */
static void stream_fill(struct train_stream *s, struct row *r)
{
    for (;;) {
        stream_order(s);
        row_fill(r, s->units, s->perm, s->units->n, &s->cursor[1]);
        if (s->cursor[1] < s->units->n)
            return;
        memcpy(s->rng, s->live.s, sizeof s->rng);
        s->cursor[0]++;
        s->cursor[1] = 0;
    }
}

/* Whether training row k comes from the mixed-in corpus: spread evenly, whatever the batching. */
static bool corpus_row(const struct train_lm *t, uint64_t k)
{
    return t->mix.n && floor((double)(k + 1) * t->mix_frac) > floor((double)k * t->mix_frac);
}

/* ---- the language-modelling task ---- */

void train_lm_batch(const struct train_lm *t, int micro, struct gpt_batch *b)
{
    size_t off = (size_t)micro * t->B * t->T;
    *b = (struct gpt_batch){.B = t->B,
                            .T = t->T,
                            .tokens = t->tokens + off,
                            .targets = t->targets + off,
                            .pos = t->pos + off,
                            .seg = t->seg + off};
}

static int lm_next(void *ctx, double *weight, long *tokens, struct pl_err *err)
{
    (void)err;
    struct train_lm *t = ctx;
    for (int i = 0; i < t->accum; i++) {
        weight[i] = 0.0;
        for (int b = 0; b < t->B; b++) {
            struct row r =
                row_at(t->tokens, t->targets, t->pos, t->seg, (size_t)i * t->B + b, t->T);
            stream_fill(corpus_row(t, t->rows[0]) ? &t->corpus : &t->data, &r);
            t->rows[0]++;
            weight[i] += row_finish(&r, t->eos);
        }
    }
    *tokens = (long)t->accum * t->B * t->T;
    return PL_OK;
}

static int lm_backward(void *ctx, struct gpt *m, int micro, float scale, double *loss,
                       struct pl_err *err)
{
    struct gpt_batch b;
    train_lm_batch(ctx, micro, &b);
    int rc = gpt_forward(m, &b, err);
    if (rc)
        return rc;
    *loss = m->loss;
    gpt_backward_lm(m, scale);
    return PL_OK;
}

/* Mean loss over every target of the packed held-out rows. */
static int lm_eval(void *ctx, struct gpt *m, double *loss, struct pl_err *err)
{
    const struct train_lm *t = ctx;
    double sum = 0.0;
    long n = 0;
    for (int r0 = 0; r0 < t->n_eval_rows; r0 += t->B) {
        int rows = t->n_eval_rows - r0 < t->B ? t->n_eval_rows - r0 : t->B;
        size_t off = (size_t)r0 * t->T;
        struct gpt_batch b = {.B = rows,
                              .T = t->T,
                              .tokens = t->eval_tokens + off,
                              .targets = t->eval_targets + off,
                              .pos = t->eval_pos + off,
                              .seg = t->eval_seg + off};
        int rc = gpt_forward(m, &b, err);
        if (rc)
            return rc;
        for (int i = 0; i < rows * t->T; i++)
            if (b.targets[i] >= 0) {
                sum -= m->logp[i];
                n++;
            }
    }
    *loss = n ? sum / (double)n : NAN;
    return PL_OK;
}

void train_lm_task(struct train_lm *t, struct train_task *task)
{
    *task = (struct train_task){.ctx = t,
                                .next = lm_next,
                                .backward = lm_backward,
                                .eval = t->n_eval_rows ? lm_eval : NULL,
                                .vars = t->vars,
                                .n_vars = t->n_vars};
}

static int alloc_rows(int **p, size_t n, struct pl_err *err)
{
    for (int i = 0; i < 4; i++)
        if (!(p[i] = pl_malloc(n * sizeof(int))))
            return pl_oom(err, "batch buffers");
    return PL_OK;
}

/* Pack the held-out units in file order, at most eval_rows rows. */
static int pack_eval(struct train_lm *t, int eval_rows, struct pl_err *err)
{
    size_t cap = t->eval.n < (size_t)eval_rows ? t->eval.n : (size_t)eval_rows;
    int **bufs[] = {&t->eval_tokens, &t->eval_targets, &t->eval_pos, &t->eval_seg};
    int *p[4] = {0};
    int rc = alloc_rows(p, (cap ? cap : 1) * (size_t)t->T, err);
    for (int i = 0; i < 4; i++)
        *bufs[i] = p[i];
    uint64_t next = 0;
    while (rc == PL_OK && next < t->eval.n && (size_t)t->n_eval_rows < cap) {
        struct row r = row_at(t->eval_tokens, t->eval_targets, t->eval_pos, t->eval_seg,
                              (size_t)t->n_eval_rows++, t->T);
        row_fill(&r, &t->eval, NULL, t->eval.n, &next);
        row_finish(&r, t->eos);
    }
    return rc;
}

/* Rows one pass over the training units fills, packed in file order; row 0 of the batch buffers
 * is the scratch space. */
static long count_epoch_rows(const struct train_lm *t)
{
    long rows = 0;
    uint64_t next = 0;
    while (next < t->train.n) {
        struct row r = row_at(t->tokens, t->targets, t->pos, t->seg, 0, t->T);
        row_fill(&r, &t->train, NULL, t->train.n, &next);
        rows++;
    }
    return rows;
}

static int check_lm_opts(const struct train_opts *o, int T, int n_positions, struct pl_err *err)
{
    if (o->kind != TRAIN_PRETRAIN && o->kind != TRAIN_SFT)
        return pl_errf(err, PL_EINVAL, "training kind %d is not pretraining or sft", (int)o->kind);
    if (!o->data)
        return pl_errf(err, PL_EINVAL, "no training data given");
    if (o->batch <= 0 || o->grad_accum <= 0 || o->eval_rows <= 0)
        return pl_errf(err, PL_EINVAL, "batch, grad_accum and eval_rows must be positive");
    if (T <= 0 || T > n_positions)
        return pl_errf(err, PL_EINVAL, "sequence length %d does not fit the model's context %d", T,
                       n_positions);
    if (!(o->eval_frac >= 0.0 && o->eval_frac < 1.0))
        return pl_errf(err, PL_EINVAL, "eval_frac %g is outside [0, 1)", o->eval_frac);
    if (o->mix_corpus && !(o->mix_frac > 0.0 && o->mix_frac < 1.0))
        return pl_errf(err, PL_EINVAL, "mix_frac %g is outside (0, 1)", o->mix_frac);
    if (o->mix_corpus && o->kind != TRAIN_SFT)
        return pl_errf(err, PL_EINVAL, "a mixed-in corpus is for sft only");
    return PL_OK;
}

int train_lm_init(struct train_lm *t, const struct tok *tok, const struct train_opts *o,
                  int n_positions, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    t->B = o->batch;
    t->T = o->seq ? o->seq : n_positions;
    t->accum = o->grad_accum;
    t->eos = tok->eos;
    t->mix_frac = o->mix_corpus ? (float)o->mix_frac : 0.0f;
    t->data.perm_epoch = t->corpus.perm_epoch = -1;
    int rc = check_lm_opts(o, t->T, n_positions, err);
    if (rc)
        return rc;
    struct tok_buf buf = {0};
    rc = o->kind == TRAIN_SFT ? load_sft(t, tok, &buf, o, err) : load_text(t, tok, &buf, o, err);
    tok_buf_release(&buf);
    if (rc == PL_OK && t->train.n == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: nothing to train on", o->data);
    if (rc == PL_OK && o->mix_corpus && t->mix.n == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: nothing to mix in", o->mix_corpus);
    if (rc == PL_OK)
        rc = stream_init(&t->data, &t->train, o->seed, err);
    /* Another purpose, another stream: the corpus order does not depend on the SFT order. */
    if (rc == PL_OK)
        rc = stream_init(&t->corpus, &t->mix, o->seed ^ 0x6a09e667f3bcc908ULL, err);
    int *p[4] = {0};
    if (rc == PL_OK)
        rc = alloc_rows(p, (size_t)t->accum * t->B * t->T, err);
    t->tokens = p[0];
    t->targets = p[1];
    t->pos = p[2];
    t->seg = p[3];
    if (rc == PL_OK)
        rc = pack_eval(t, o->eval_rows, err);
    if (rc) {
        train_lm_release(t);
        return rc;
    }
    t->epoch_rows = count_epoch_rows(t);
    struct train_var vars[] = {{"data.rng", t->data.rng, 4},
                               {"data.cursor", t->data.cursor, 2},
                               {"rows", t->rows, 1},
                               {"mix.rng", t->corpus.rng, 4},
                               {"mix.cursor", t->corpus.cursor, 2}};
    t->n_vars = t->mix.n ? 5 : 3;
    memcpy(t->vars, vars, sizeof vars);
    return PL_OK;
}

void train_lm_release(struct train_lm *t)
{
    units_release(&t->train);
    units_release(&t->eval);
    units_release(&t->mix);
    pl_free(t->data.perm);
    pl_free(t->corpus.perm);
    int *bufs[] = {t->tokens,      t->targets,      t->pos,      t->seg,
                   t->eval_tokens, t->eval_targets, t->eval_pos, t->eval_seg};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        pl_free(bufs[i]);
    memset(t, 0, sizeof *t);
}

long train_lm_steps(const struct train_lm *t, const struct train_opts *o)
{
    if (o->steps > 0)
        return o->steps;
    double rows = o->epochs * (double)t->epoch_rows / (1.0 - t->mix_frac);
    long steps = (long)ceil(rows / ((double)t->B * t->accum));
    return steps > 0 ? steps : 1;
}

/* ---- the loop ---- */

struct run {
    const struct train_opts *o;
    struct gpt *m;
    const struct train_task *task;
    char state_path[4096], metrics_path[4096], run_path[4096];
    FILE *metrics;
    double *weight;    /* [grad_accum] */
    long step;         /* steps taken */
    long saved;        /* step of the last checkpoint; -1: none */
    long start_step;   /* step this call started from */
    double t0;         /* pl_now() when this call started */
    double time0;      /* run time before this call (a resumed run's earlier part) */
    double eval_first; /* held-out loss at step 0 */
    double draw;       /* pl_now() of the last progress bar */
    bool tty;
};

struct step_stats {
    double loss, tokens_per_s;
    float lr, norm;
};

static int join(char *out, size_t n, const char *dir, const char *name, struct pl_err *err)
{
    if ((size_t)snprintf(out, n, "%s/%s", dir, name) >= n)
        return pl_errf(err, PL_EINVAL, "path too long: '%s/%s'", dir, name);
    return PL_OK;
}

/* Shortest decimal that reads back as exactly v. */
static void fmt_float(char *out, size_t n, double v, bool single)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        double back = strtod(out, NULL);
        if (single ? (float)back == (float)v : back == v)
            return;
    }
}

/* Options that shape the run and so must be the same when it resumes. */
struct shape_kv {
    const char *name;
    char value[40];
};

static int run_shape(const struct train_opts *o, struct shape_kv *kv)
{
    enum { INT, FLOAT, DOUBLE };
    const struct {
        const char *name;
        int type;
        double value;
    } opts[] = {{"kind", INT, o->kind},
                {"steps", INT, (double)o->steps},
                {"batch", INT, o->batch},
                {"seq", INT, o->seq},
                {"grad_accum", INT, o->grad_accum},
                {"lr", FLOAT, o->lr},
                {"min_lr_frac", FLOAT, o->min_lr_frac},
                {"warmup", INT, (double)o->warmup},
                {"weight_decay", FLOAT, o->weight_decay},
                {"beta1", FLOAT, o->beta1},
                {"beta2", FLOAT, o->beta2},
                {"eps", FLOAT, o->eps},
                {"clip", FLOAT, o->clip},
                {"eval_frac", DOUBLE, o->eval_frac},
                {"mix_frac", DOUBLE, o->mix_corpus ? o->mix_frac : 0.0}};
    int n = 0;
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++, n++) {
        kv[n].name = opts[i].name;
        if (opts[i].type == INT)
            snprintf(kv[n].value, sizeof kv[n].value, "%.0f", opts[i].value);
        else
            fmt_float(kv[n].value, sizeof kv[n].value, opts[i].value, opts[i].type == FLOAT);
    }
    kv[n].name = "seed";
    snprintf(kv[n].value, sizeof kv[n].value, "%llu", (unsigned long long)o->seed);
    return n + 1;
}

/* ---- state.safetensors ---- */

static int state_save(struct run *r, uint64_t metrics_bytes, struct pl_err *err)
{
    const struct train_task *task = r->task;
    struct gpt *m = r->m;
    int64_t step = r->step, adam_t = m->adam_t;
    double elapsed = r->time0 + pl_now() - r->t0;
    struct ckpt_tensor list[8 + TRAIN_MAX_VARS];
    char names[TRAIN_MAX_VARS][64];
    int n = 0;
    list[n++] = (struct ckpt_tensor){"params", CKPT_F32, 1, {(int64_t)m->n_params}, m->params};
    list[n++] = (struct ckpt_tensor){"adam.m", CKPT_F32, 1, {(int64_t)m->n_params}, m->m};
    list[n++] = (struct ckpt_tensor){"adam.v", CKPT_F32, 1, {(int64_t)m->n_params}, m->v};
    list[n++] = (struct ckpt_tensor){"step", CKPT_I64, 1, {1}, &step};
    list[n++] = (struct ckpt_tensor){"adam.t", CKPT_I64, 1, {1}, &adam_t};
    list[n++] = (struct ckpt_tensor){"metrics.bytes", CKPT_U64, 1, {1}, &metrics_bytes};
    list[n++] = (struct ckpt_tensor){"time", CKPT_F64, 1, {1}, &elapsed};
    list[n++] = (struct ckpt_tensor){"eval.first", CKPT_F64, 1, {1}, &r->eval_first};
    for (int i = 0; i < task->n_vars; i++) {
        snprintf(names[i], sizeof names[i], "task.%s", task->vars[i].name);
        list[n++] =
            (struct ckpt_tensor){names[i], CKPT_U64, 1, {task->vars[i].n}, task->vars[i].words};
    }
    struct shape_kv kv[32];
    int nkv = run_shape(r->o, kv);
    char meta[2048];
    size_t len = (size_t)snprintf(meta, sizeof meta, "{\"format\": \"plumb-train-state\"");
    for (int i = 0; i < nkv; i++)
        len += (size_t)snprintf(meta + len, sizeof meta - len, ", \"%s\": \"%s\"", kv[i].name,
                                kv[i].value);
    snprintf(meta + len, sizeof meta - len, "}");
    return ckpt_write_tensors(r->state_path, list, n, meta, err);
}

/* Refuse to resume with options that would change the run. */
static int check_shape(const struct ckpt_file *f, const char *path, const struct train_opts *o,
                       struct pl_err *err)
{
    struct shape_kv kv[32];
    int n = run_shape(o, kv);
    for (int i = 0; i < n; i++) {
        const char *was = ckpt_file_meta(f, kv[i].name);
        if (!was || strcmp(was, kv[i].value) != 0)
            return pl_errf(err, PL_EINVAL,
                           "cannot resume from '%s': option '%s' was %s there and is %s now", path,
                           kv[i].name, was ? was : "unset", kv[i].value);
    }
    return PL_OK;
}

static int state_load(struct run *r, uint64_t *metrics_bytes, struct pl_err *err)
{
    struct gpt *m = r->m;
    struct ckpt_file f;
    int64_t step = 0, adam_t = 0;
    int rc = ckpt_file_open(&f, r->state_path, err);
    if (rc == PL_OK)
        rc = check_shape(&f, r->state_path, r->o, err);
    const struct {
        const char *name;
        enum ckpt_dtype dtype;
        void *out;
        size_t n;
    } want[] = {{"params", CKPT_F32, m->params, m->n_params},
                {"adam.m", CKPT_F32, m->m, m->n_params},
                {"adam.v", CKPT_F32, m->v, m->n_params},
                {"step", CKPT_I64, &step, 1},
                {"adam.t", CKPT_I64, &adam_t, 1},
                {"metrics.bytes", CKPT_U64, metrics_bytes, 1},
                {"time", CKPT_F64, &r->time0, 1},
                {"eval.first", CKPT_F64, &r->eval_first, 1}};
    for (size_t i = 0; rc == PL_OK && i < sizeof want / sizeof *want; i++)
        rc = ckpt_file_get(&f, want[i].name, want[i].dtype, want[i].out, want[i].n, err);
    for (int i = 0; rc == PL_OK && i < r->task->n_vars; i++) {
        char name[64];
        snprintf(name, sizeof name, "task.%s", r->task->vars[i].name);
        rc = ckpt_file_get(&f, name, CKPT_U64, r->task->vars[i].words, (size_t)r->task->vars[i].n,
                           err);
    }
    if (rc == PL_OK && (step < 0 || step > r->o->steps || adam_t < 0))
        rc = pl_errf(err, PL_EFORMAT, "%s: step %lld is outside 0..%ld", r->state_path,
                     (long long)step, r->o->steps);
    ckpt_file_release(&f);
    r->step = r->saved = r->start_step = (long)step;
    m->adam_t = (long)adam_t;
    return rc;
}

/* ---- run.json ---- */

/* `"key": "value"` (null for NULL), escaped as JSON requires. */
static void key_str(struct pl_buf *b, const char *key, const char *s)
{
    pl_buf_printf(b, ", \"%s\": ", key);
    if (s)
        pl_buf_json(b, s, strlen(s));
    else
        pl_buf_str(b, "null");
}

static int run_json_write(const struct run *r, struct pl_err *err)
{
    const struct train_opts *o = r->o;
    const char *strs[][2] = {{"model", o->model},
                             {"data", o->data},
                             {"eval_data", o->eval_data},
                             {"mix_corpus", o->mix_corpus},
                             {"out", o->out}};
    struct pl_buf b = {0};
    pl_buf_printf(&b, "{\"plumb_version\": \"%s\"", o->version ? o->version : "unknown");
    key_str(&b, "command", o->kind == TRAIN_SFT ? "sft" : "pretrain");
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        key_str(&b, strs[i][0], strs[i][1]);
    struct shape_kv kv[32];
    int n = run_shape(o, kv);
    for (int i = 1; i < n; i++) /* kv[0] is the kind, written as "command" */
        pl_buf_printf(&b, ", \"%s\": %s", kv[i].name, kv[i].value);
    char epochs[40];
    fmt_float(epochs, sizeof epochs, o->epochs, false);
    pl_buf_printf(&b,
                  ", \"epochs\": %s, \"eval_every\": %ld, \"eval_rows\": %d, \"save_every\": "
                  "%ld, \"log_every\": %ld, \"resume\": %s, \"skip_bad_lines\": %s, "
                  "\"threads\": %d, \"n_params\": %zu, \"start_step\": %ld}\n",
                  epochs, o->eval_every, o->eval_rows, o->save_every, o->log_every,
                  o->resume ? "true" : "false", o->skip_bad_lines ? "true" : "false",
                  tensor_threads(), r->m->n_params, r->start_step);
    int rc = b.oom ? pl_oom(err, "run.json") : ckpt_write_atomic(r->run_path, b.p, b.len, err);
    pl_buf_release(&b);
    return rc;
}

/* ---- metrics.jsonl ---- */

static int metrics_open(struct run *r, bool resumed, uint64_t bytes, struct pl_err *err)
{
    /* Lines past the checkpoint belong to steps that will run again. */
    if (resumed && truncate(r->metrics_path, (off_t)bytes) != 0)
        return pl_errf(err, PL_EIO, "cannot truncate '%s': %s", r->metrics_path, strerror(errno));
    r->metrics = fopen(r->metrics_path, resumed ? "a" : "w");
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

static void metrics_line(struct run *r, const struct step_stats *s, double eval)
{
    FILE *f = r->metrics;
    fprintf(f, "{\"step\": %ld, \"time\": %.3f", r->step, r->time0 + pl_now() - r->t0);
    if (s) {
        json_num(f, "train/loss", s->loss);
        json_num(f, "lr", s->lr);
        json_num(f, "grad_norm", s->norm);
        fprintf(f, ", \"tokens_per_s\": %.1f", s->tokens_per_s);
    }
    if (!isnan(eval)) {
        json_num(f, "eval/loss", eval);
        json_num(f, "eval/ppl", exp(eval));
    }
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

/* ---- progress ---- */

static const char *run_label(const struct run *r)
{
    return r->o->kind == TRAIN_SFT ? "sft" : "pretrain";
}

static void fmt_duration(char *out, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, n, "%lds", t);
}

/* A whole line in the log; on a terminal it replaces the progress bar, which the next step
 * draws again. */
static void log_line(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(struct run *r, const char *fmt, ...)
{
    FILE *f = r->o->log;
    if (!f)
        return;
    if (r->tty)
        fputs("\r\033[K", f);
    fprintf(f, "%s: ", run_label(r));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

/* The progress bar on a terminal (at most ten times a second), else a line every log_every
 * steps. */
static void log_step(struct run *r, const struct step_stats *s)
{
    const struct train_opts *o = r->o;
    double now = pl_now();
    if (!o->log || (r->tty && now - r->draw < 0.1 && r->step < o->steps))
        return;
    if (!r->tty && r->step % (o->log_every > 0 ? o->log_every : 1) != 0 && r->step < o->steps)
        return;
    char eta[32];
    double per_step = (now - r->t0) / (double)(r->step - r->start_step);
    fmt_duration(eta, sizeof eta, per_step * (double)(o->steps - r->step));
    if (!r->tty) {
        log_line(r, "step %ld/%ld loss %.4f lr %.3g grad norm %.3g %.1fk tok/s eta %s", r->step,
                 o->steps, s->loss, s->lr, s->norm, s->tokens_per_s / 1e3, eta);
        return;
    }
    enum { WIDTH = 24 };
    int fill = (int)(WIDTH * r->step / o->steps);
    fprintf(o->log, "\r\033[K%s %ld/%ld [%.*s%*s] loss %.4f  %.1fk tok/s  ETA %s", run_label(r),
            r->step, o->steps, fill, "########################", WIDTH - fill, "", s->loss,
            s->tokens_per_s / 1e3, eta);
    if (r->step == o->steps)
        fputc('\n', o->log);
    fflush(o->log);
    r->draw = now;
}

/* ---- steps, evaluation, checkpoints ---- */

static int evaluate(struct run *r, double *loss, struct pl_err *err)
{
    int rc = r->task->eval(r->task->ctx, r->m, loss, err);
    if (rc == PL_OK)
        log_line(r, "step %ld: held-out loss %.4f, perplexity %.3f", r->step, *loss, exp(*loss));
    return rc;
}

static int checkpoint(struct run *r, struct pl_err *err)
{
    uint64_t bytes = 0;
    int rc = ckpt_save(r->m, r->o->out, err);
    if (rc == PL_OK)
        rc = metrics_sync(r, &bytes, err);
    /* Written last: until it is renamed into place the previous checkpoint stands. */
    if (rc == PL_OK)
        rc = state_save(r, bytes, err);
    if (rc == PL_OK)
        r->saved = r->step;
    return rc;
}

static int numeric_error(const struct run *r, double loss, float norm, struct pl_err *err)
{
    char last[4200];
    if (r->saved >= 0)
        snprintf(last, sizeof last, "the last good checkpoint is step %ld in '%s'", r->saved,
                 r->o->out);
    else
        snprintf(last, sizeof last, "no checkpoint was written");
    return pl_errf(err, PL_ENUMERIC,
                   "step %ld: training loss is %g and gradient norm %g: stopped before the "
                   "update (try a lower learning rate); %s",
                   r->step + 1, loss, (double)norm, last);
}

/* One optimizer step: gradients over grad_accum micro-batches, clipping, AdamW. */
static int train_step(struct run *r, struct step_stats *s, struct pl_err *err)
{
    const struct train_task *task = r->task;
    double t = pl_now(), total = 0.0, loss = 0.0;
    long tokens = 0;
    gpt_zero_grad(r->m);
    int rc = task->next(task->ctx, r->weight, &tokens, err);
    for (int i = 0; rc == PL_OK && i < r->o->grad_accum; i++)
        total += r->weight[i];
    for (int i = 0; rc == PL_OK && i < r->o->grad_accum; i++) {
        double share = total > 0.0 ? r->weight[i] / total : 0.0, part;
        rc = task->backward(task->ctx, r->m, i, (float)share, &part, err);
        loss += share * part;
    }
    if (rc)
        return rc;
    s->norm = gpt_clip_grad(r->m, r->o->clip);
    if (!isfinite(loss) || !isfinite(s->norm))
        return numeric_error(r, loss, s->norm, err);
    s->loss = loss;
    s->lr = train_lr(r->o, r->step);
    struct gpt_adamw hp = {s->lr, r->o->beta1, r->o->beta2, r->o->eps, r->o->weight_decay};
    gpt_adamw_step(r->m, &hp);
    s->tokens_per_s = (double)tokens / (pl_now() - t);
    return PL_OK;
}

static bool due(long step, long every, long last)
{
    return (every > 0 && step % every == 0) || step == last;
}

static int loop(struct run *r, struct train_result *res, struct pl_err *err)
{
    const struct train_opts *o = r->o;
    bool eval = r->task->eval && o->eval_every > 0;
    int rc = PL_OK;
    if (eval && r->step == 0) {
        rc = evaluate(r, &r->eval_first, err);
        if (rc == PL_OK)
            metrics_line(r, NULL, r->eval_first);
        res->eval_last = r->eval_first;
    }
    while (rc == PL_OK && r->step < o->steps) {
        struct step_stats s = {0};
        if ((rc = train_step(r, &s, err)))
            break;
        r->step++;
        res->train_loss = s.loss;
        double ev = NAN;
        if (eval && due(r->step, o->eval_every, o->steps)) {
            if ((rc = evaluate(r, &ev, err)))
                break;
            res->eval_last = ev;
        }
        metrics_line(r, &s, ev);
        log_step(r, &s);
        if (due(r->step, o->save_every, o->steps) && (rc = checkpoint(r, err)))
            break;
        if (o->on_step && o->on_step(o->on_step_ctx, r->step)) {
            res->stopped = true;
            break;
        }
    }
    res->eval_first = r->eval_first;
    return rc;
}

static int check_run_opts(const struct gpt *m, const struct train_task *task,
                          const struct train_opts *o, struct pl_err *err)
{
    if (!o->out)
        return pl_errf(err, PL_EINVAL, "no output folder given");
    if (!m->opts.trainable)
        return pl_errf(err, PL_EINVAL, "the model is not trainable");
    if (o->steps <= 0 || o->grad_accum <= 0)
        return pl_errf(err, PL_EINVAL, "steps and grad_accum must be positive");
    if (!(o->lr > 0.0f) || !isfinite(o->lr) || o->warmup < 0 || o->min_lr_frac < 0.0f)
        return pl_errf(err, PL_EINVAL, "the learning rate schedule is not valid");
    if (o->eval_every < 0 || o->save_every < 0)
        return pl_errf(err, PL_EINVAL, "eval_every and save_every must not be negative");
    PL_ASSERT(task->n_vars <= TRAIN_MAX_VARS);
    return PL_OK;
}

static void result_reset(struct train_result *res)
{
    *res = (struct train_result){.train_loss = NAN, .eval_first = NAN, .eval_last = NAN};
}

/* Open the run: resume from the checkpoint or start afresh, then write the tokenizer and
 * run.json and open metrics.jsonl. */
static int run_open(struct run *r, const struct tok *tok, struct pl_err *err)
{
    const struct train_opts *o = r->o;
    uint64_t bytes = 0;
    int rc = ckpt_mkdirs(o->out, err);
    if (rc == PL_OK)
        rc = join(r->state_path, sizeof r->state_path, o->out, "state.safetensors", err);
    if (rc == PL_OK)
        rc = join(r->metrics_path, sizeof r->metrics_path, o->out, "metrics.jsonl", err);
    if (rc == PL_OK)
        rc = join(r->run_path, sizeof r->run_path, o->out, "run.json", err);
    if (rc)
        return rc;
    struct stat st;
    bool resumed = o->resume && stat(r->state_path, &st) == 0;
    if (resumed)
        rc = state_load(r, &bytes, err);
    else if (unlink(r->state_path) != 0 && errno != ENOENT)
        rc = pl_errf(err, PL_EIO, "cannot remove '%s': %s", r->state_path, strerror(errno));
    if (rc == PL_OK && resumed)
        log_line(r, "resuming from step %ld", r->step);
    else if (rc == PL_OK && o->resume)
        log_line(r, "no checkpoint in '%s': starting afresh", o->out);
    if (rc == PL_OK)
        rc = tok_save(tok, o->out, err);
    if (rc == PL_OK)
        rc = run_json_write(r, err);
    if (rc == PL_OK)
        rc = metrics_open(r, resumed, bytes, err);
    return rc;
}

int train_run(struct gpt *m, const struct tok *tok, const struct train_task *task,
              const struct train_opts *o, struct train_result *res, struct pl_err *err)
{
    struct run r = {.o = o, .m = m, .task = task, .saved = -1, .t0 = pl_now(), .eval_first = NAN};
    result_reset(res);
    int rc = check_run_opts(m, task, o, err);
    if (rc)
        return rc;
    r.tty = o->log && isatty(fileno(o->log));
    r.weight = pl_malloc((size_t)o->grad_accum * sizeof *r.weight);
    rc = r.weight ? run_open(&r, tok, err) : pl_oom(err, "step weights");
    if (rc == PL_OK)
        rc = loop(&r, res, err);
    if (r.metrics && fclose(r.metrics) != 0 && rc == PL_OK)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", r.metrics_path, strerror(errno));
    pl_free(r.weight);
    res->start_step = r.start_step;
    res->steps = r.step;
    res->seconds = pl_now() - r.t0;
    return rc;
}

/* ---- pretrain and sft ---- */

static void log_data(FILE *f, const struct train_lm *t, const struct train_opts *o)
{
    const char *label = o->kind == TRAIN_SFT ? "sft" : "pretrain";
    fprintf(f, "%s: %zu training units, %d held-out rows; %ld steps of %d x %d x %d tokens\n",
            label, t->train.n, t->n_eval_rows, o->steps, o->grad_accum, t->B, t->T);
    if (t->skipped)
        fprintf(f, "%s: skipped %ld malformed records\n", label, t->skipped);
    if (t->truncated)
        fprintf(f, "%s: cut %ld examples to %d tokens\n", label, t->truncated, t->T + 1);
}

int train_lm(const struct train_opts *o, struct train_result *res, struct pl_err *err)
{
    struct tok tok = {0};
    struct train_lm t = {0};
    struct gpt m = {0};
    struct gpt_config cfg;
    result_reset(res);
    int rc = tok_load(&tok, o->model, err);
    if (rc == PL_OK)
        rc = ckpt_config_read(o->model, &cfg, err);
    if (rc == PL_OK && tok.vocab_size > cfg.vocab_size)
        rc = pl_errf(err, PL_EINVAL, "%s: the tokenizer has %d tokens, the model only %d", o->model,
                     tok.vocab_size, cfg.vocab_size);
    if (rc == PL_OK)
        rc = train_lm_init(&t, &tok, o, cfg.n_positions, err);
    struct gpt_opts go = {.trainable = true, .max_batch = t.B, .max_seq = t.T};
    if (rc == PL_OK)
        rc = ckpt_load(&m, o->model, &go, err);
    if (rc == PL_OK) {
        struct train_opts run = *o;
        run.seq = t.T;
        run.steps = train_lm_steps(&t, o);
        if (o->log)
            log_data(o->log, &t, &run);
        struct train_task task;
        train_lm_task(&t, &task);
        rc = train_run(&m, &tok, &task, &run, res, err);
    }
    res->skipped = t.skipped;
    res->truncated = t.truncated;
    gpt_release(&m);
    train_lm_release(&t);
    tok_release(&tok);
    return rc;
}
