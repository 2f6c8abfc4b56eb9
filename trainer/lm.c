#include "trainer/lm.h"

#include "trainer/dist.h"

#include "datasets/ds.h"
#include "model/ckpt.h"
#include "model/io.h"

#include <math.h>
#include <string.h>

/* ---- units: tokenised data cut to at most T + 1 tokens ---- */

static int units_append_ids(struct lm_units *u, const int *ids, size_t n, int end, size_t *start,
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

static int units_add(struct lm_units *u, size_t start, int len, int prompt, struct pl_err *err)
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

static void units_release(struct lm_units *u)
{
    pl_free(u->ids);
    pl_free(u->start);
    pl_free(u->len);
    pl_free(u->prompt);
    memset(u, 0, sizeof *u);
}

/* One document (ids, then the end token) as windows of T + 1 tokens that overlap by one, so
 * that every token after the first is predicted exactly once. */
static int units_add_document(struct lm_units *u, const int *ids, size_t n, int end, int T,
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

/* Whether text[i, end), a line with its newline, holds nothing but blanks. */
static bool blank_line(const char *text, size_t i, size_t end)
{
    size_t n = end - i;
    return io_blank(text + i, n && text[end - 1] == '\n' ? n - 1 : n);
}

/* Documents of text[0, len): runs of non-blank lines. */
static int units_from_text(struct lm_units *u, const struct tok *tok, struct tok_buf *buf,
                           const char *text, size_t len, int T, struct pl_err *err)
{
    size_t i = 0;
    int rc = PL_OK;
    while (rc == PL_OK && i < len) {
        size_t end = next_line(text, len, i);
        if (blank_line(text, i, end)) {
            i = end;
            continue;
        }
        size_t doc = i;
        while (i < len && !blank_line(text, i, end = next_line(text, len, i)))
            i = end;
        buf->n = 0;
        rc = tok_encode(tok, buf, text + doc, i - doc, 0, err);
        if (rc == PL_OK)
            rc = units_add_document(u, buf->ids, buf->n, tok->eos, T, err);
    }
    return rc;
}

/* Examples recs[0, n) as prompt + response + end token, cut to T + 1 tokens. */
static int units_from_sft(struct lm_units *u, long *truncated, const struct tok *tok,
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

static int load_text(struct lm_task *t, const struct tok *tok, struct tok_buf *buf,
                     const struct lm_opts *o, struct pl_err *err)
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

static int load_sft_file(struct lm_task *t, const struct tok *tok, struct tok_buf *buf,
                         const char *path, double eval_frac, const struct lm_opts *o,
                         struct pl_err *err)
{
    struct ds_sft set;
    int rc = ds_sft_init(&set, path, o->skip_bad_lines ? IO_SKIP_BAD_LINES : 0, err);
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

static int load_sft(struct lm_task *t, const struct tok *tok, struct tok_buf *buf,
                    const struct lm_opts *o, struct pl_err *err)
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
static void row_fill(struct row *r, const struct lm_units *u, const size_t *order, size_t n,
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
static void stream_fill(struct lm_stream *s, struct row *r)
{
    struct train_order *o = &s->order;
    for (;;) {
        row_fill(r, s->units, train_order_perm(o), s->units->n, &o->cursor[1]);
        if (o->cursor[1] < s->units->n)
            return;
        train_order_wrap(o);
    }
}

/* Whether training row k comes from the mixed-in corpus: spread evenly, whatever the batching. */
static bool corpus_row(const struct lm_task *t, uint64_t k)
{
    return t->mix.n && floor((double)(k + 1) * t->mix_frac) > floor((double)k * t->mix_frac);
}

/* ---- the language-modelling task ---- */

void lm_batch(const struct lm_task *t, int micro, struct gpt_batch *b)
{
    size_t off = ((size_t)micro * t->ranks + t->rank) * t->B * t->T;
    *b = (struct gpt_batch){.B = t->B,
                            .T = t->T,
                            .tokens = t->tokens + off,
                            .targets = t->targets + off,
                            .pos = t->pos + off,
                            .seg = t->seg + off};
}

static int lm_next(void *ctx, struct train_step *st, struct pl_err *err)
{
    (void)err;
    struct lm_task *t = ctx;
    /* Every rank packs the rows of all ranks (the stream is sequential) and trains on its own
     * B of each micro-batch's ranks x B: rank k's rows are k * B .. k * B + B - 1. */
    int rows = t->ranks * t->B;
    for (int i = 0; i < t->accum; i++) {
        st->weight[i] = 0.0;
        for (int b = 0; b < rows; b++) {
            struct row r =
                row_at(t->tokens, t->targets, t->pos, t->seg, (size_t)i * rows + b, t->T);
            stream_fill(corpus_row(t, t->rows[0]) ? &t->corpus : &t->data, &r);
            t->rows[0]++;
            int n = row_finish(&r, t->eos);
            if (b / t->B == t->rank)
                st->weight[i] += n;
        }
    }
    st->tokens = (long)t->accum * t->B * t->T;
    return PL_OK;
}

static int lm_backward(void *ctx, struct train_model *models, struct train_step *st, int micro,
                       float scale, double *loss, struct pl_err *err)
{
    (void)st;
    struct gpt *m = models[0].m;
    struct gpt_batch b;
    lm_batch(ctx, micro, &b);
    int rc = gpt_forward(m, &b, err);
    if (rc)
        return rc;
    *loss = m->loss;
    gpt_backward_lm(m, scale);
    return PL_OK;
}

/* Mean loss over every target of the packed held-out rows, and its perplexity. */
static int lm_eval(void *ctx, struct train_model *models, struct train_values *out,
                   struct pl_err *err)
{
    const struct lm_task *t = ctx;
    struct gpt *m = models[0].m;
    /* Shared out by rank, a batch of rows each in turn; the sums added up over the ranks. */
    double sum = 0.0, n = 0.0;
    for (int r0 = t->rank * t->B; r0 < t->n_eval_rows; r0 += t->ranks * t->B) {
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
    double v[2] = {sum, n};
    int rc = dist_sum_doubles(v, 2, err);
    if (rc)
        return rc;
    double loss = v[1] > 0.0 ? v[0] / v[1] : NAN;
    train_values_add(out, "eval/loss", loss);
    train_values_add(out, "eval/ppl", exp(loss));
    return PL_OK;
}

static void lm_fields(void *ctx, struct train_fields *keys, struct train_fields *info)
{
    const struct lm_task *t = ctx;
    const struct lm_opts *o = t->o;
    train_field_int(keys, "batch", t->B);
    train_field_int(keys, "seq", t->T);
    train_field_real(keys, "eval_frac", o->eval_frac);
    train_field_real(keys, "mix_frac", o->mix_corpus ? o->mix_frac : 0.0);
    train_field_u64(keys, "seed", o->seed);
    train_field_str(info, "model", o->model);
    train_field_str(info, "data", o->data);
    train_field_str(info, "eval_data", o->eval_data);
    train_field_str(info, "mix_corpus", o->mix_corpus);
    train_field_real(info, "epochs", o->epochs);
    train_field_int(info, "eval_rows", o->eval_rows);
    train_field_bool(info, "skip_bad_lines", o->skip_bad_lines);
}

void lm_as_task(struct lm_task *t, struct train_task *task)
{
    *task = (struct train_task){.label = t->kind == LM_SFT ? "sft" : "pretrain",
                                .ctx = t,
                                .next = lm_next,
                                .backward = lm_backward,
                                .eval = t->n_eval_rows ? lm_eval : NULL,
                                .fields = lm_fields,
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
static int pack_eval(struct lm_task *t, int eval_rows, struct pl_err *err)
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
static long count_epoch_rows(const struct lm_task *t)
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

static int check_lm_opts(const struct lm_opts *o, int T, int n_positions, struct pl_err *err)
{
    if (o->kind != LM_PRETRAIN && o->kind != LM_SFT)
        return pl_errf(err, PL_EINVAL, "training kind %d is not pretraining or sft", (int)o->kind);
    if (!o->data)
        return pl_errf(err, PL_EINVAL, "no training data given");
    if (o->batch <= 0 || o->train.grad_accum <= 0 || o->eval_rows <= 0)
        return pl_errf(err, PL_EINVAL, "batch, grad_accum and eval_rows must be positive");
    if (T <= 0 || T > n_positions)
        return pl_errf(err, PL_EINVAL, "sequence length %d does not fit the model's context %d", T,
                       n_positions);
    if (!(o->eval_frac >= 0.0 && o->eval_frac < 1.0))
        return pl_errf(err, PL_EINVAL, "eval_frac %g is outside [0, 1)", o->eval_frac);
    if (o->mix_corpus && !(o->mix_frac > 0.0 && o->mix_frac < 1.0))
        return pl_errf(err, PL_EINVAL, "mix_frac %g is outside (0, 1)", o->mix_frac);
    if (o->mix_corpus && o->kind != LM_SFT)
        return pl_errf(err, PL_EINVAL, "a mixed-in corpus is for sft only");
    return PL_OK;
}

/* SFT units whose every predicted token belongs to the prompt: the cut took their response. */
static size_t count_cut_off(const struct lm_units *u)
{
    size_t n = 0;
    for (size_t i = 0; i < u->n; i++)
        n += u->prompt[i] >= u->len[i];
    return n;
}

int lm_init(struct lm_task *t, const struct tok *tok, const struct lm_opts *o, int n_positions,
            struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    t->o = o;
    t->kind = o->kind;
    t->B = o->batch;
    t->rank = dist_rank();
    t->ranks = dist_size();
    t->T = o->seq ? o->seq : n_positions;
    t->accum = o->train.grad_accum;
    t->eos = tok->eos;
    t->mix_frac = o->mix_corpus ? (float)o->mix_frac : 0.0f;
    int rc = check_lm_opts(o, t->T, n_positions, err);
    if (rc)
        return rc;
    struct tok_buf buf = {0};
    rc = o->kind == LM_SFT ? load_sft(t, tok, &buf, o, err) : load_text(t, tok, &buf, o, err);
    tok_buf_release(&buf);
    size_t cut = t->kind == LM_SFT ? count_cut_off(&t->train) : 0;
    if (rc == PL_OK && t->train.n == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: nothing to train on", o->data);
    else if (rc == PL_OK && cut == t->train.n)
        rc = pl_errf(err, PL_EINVAL,
                     "%s: nothing to train on: all %zu training examples were cut to %d tokens "
                     "before their response (a longer seq keeps it)",
                     o->data, cut, t->T + 1);
    if (rc == PL_OK && o->mix_corpus && t->mix.n == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: nothing to mix in", o->mix_corpus);
    t->data.units = &t->train;
    t->corpus.units = &t->mix;
    if (rc == PL_OK)
        rc = train_order_init(&t->data.order, t->train.n, o->seed, err);
    /* Another purpose, another stream: the corpus order does not depend on the SFT order. */
    if (rc == PL_OK)
        rc = train_order_init(&t->corpus.order, t->mix.n, o->seed ^ 0x6a09e667f3bcc908ULL, err);
    int *p[4] = {0};
    if (rc == PL_OK)
        rc = alloc_rows(p, (size_t)t->accum * t->ranks * t->B * t->T, err);
    t->tokens = p[0];
    t->targets = p[1];
    t->pos = p[2];
    t->seg = p[3];
    if (rc == PL_OK)
        rc = pack_eval(t, o->eval_rows, err);
    if (rc) {
        lm_release(t);
        return rc;
    }
    t->epoch_rows = count_epoch_rows(t);
    struct train_var vars[] = {{"data.rng", TRAIN_U64, t->data.order.rng, 4},
                               {"data.cursor", TRAIN_U64, t->data.order.cursor, 2},
                               {"rows", TRAIN_U64, t->rows, 1},
                               {"mix.rng", TRAIN_U64, t->corpus.order.rng, 4},
                               {"mix.cursor", TRAIN_U64, t->corpus.order.cursor, 2}};
    t->n_vars = t->mix.n ? 5 : 3;
    memcpy(t->vars, vars, sizeof vars);
    return PL_OK;
}

void lm_release(struct lm_task *t)
{
    units_release(&t->train);
    units_release(&t->eval);
    units_release(&t->mix);
    train_order_release(&t->data.order);
    train_order_release(&t->corpus.order);
    int *bufs[] = {t->tokens,      t->targets,      t->pos,      t->seg,
                   t->eval_tokens, t->eval_targets, t->eval_pos, t->eval_seg};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        pl_free(bufs[i]);
    memset(t, 0, sizeof *t);
}

long lm_steps(const struct lm_task *t, const struct lm_opts *o)
{
    if (o->train.steps > 0)
        return o->train.steps;
    double rows = o->epochs * (double)t->epoch_rows / (1.0 - t->mix_frac);
    long steps = (long)ceil(rows / ((double)t->B * t->accum * t->ranks));
    return steps > 0 ? steps : 1;
}

void lm_opts_default(struct lm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = LM_PRETRAIN;
    o->eval_frac = 0.05;
    o->mix_frac = 0.25;
    o->epochs = 1.0;
    o->batch = 16;
    o->eval_rows = 256;
    o->seed = 1337;
    train_opts_default(&o->train);
    train_optim_default(&o->optim);
}

/* ---- pretrain and sft ---- */

static void log_data(FILE *f, const struct lm_task *t, long steps)
{
    const char *label = t->kind == LM_SFT ? "sft" : "pretrain";
    fprintf(f, "%s: %zu training units, %d held-out rows; %ld steps of %d x %d x %d tokens\n",
            label, t->train.n, t->n_eval_rows, steps, t->accum, t->ranks * t->B, t->T);
    if (t->skipped)
        fprintf(f, "%s: skipped %ld malformed records\n", label, t->skipped);
    if (t->truncated)
        fprintf(f, "%s: cut %ld examples to %d tokens\n", label, t->truncated, t->T + 1);
}

int lm_run(const struct lm_opts *o, struct lm_result *res, struct pl_err *err)
{
    struct tok tok = {0};
    struct lm_task t = {0};
    struct gpt m = {0};
    struct gpt_config cfg;
    *res = (struct lm_result){.train = {.train_loss = NAN, .eval_first = NAN, .eval_last = NAN}};
    int rc = ckpt_load_tokenizer(&tok, &cfg, o->model, err);
    if (rc == PL_OK)
        rc = lm_init(&t, &tok, o, cfg.n_positions, err);
    struct gpt_opts go = {.trainable = true, .max_batch = t.B, .max_seq = t.T};
    if (rc == PL_OK)
        rc = ckpt_load(&m, o->model, &go, err);
    if (rc == PL_OK) {
        struct train_opts run = o->train;
        run.steps = lm_steps(&t, o);
        if (run.log && t.rank == 0)
            log_data(run.log, &t, run.steps);
        struct train_task task;
        lm_as_task(&t, &task);
        struct train_model model = {.m = &m, .tok = &tok, .out = run.out, .optim = o->optim};
        rc = train_run(&model, 1, &task, &run, &res->train, err);
    }
    res->skipped = t.skipped;
    res->truncated = t.truncated;
    gpt_release(&m);
    lm_release(&t);
    tok_release(&tok);
    return rc;
}
