#include "reward/rm.h"

#include "model/ckpt.h"
#include "model/io.h"
#include "trainer/dist.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- sequences and batches ---- */

int rm_seq(int *out, const int *prompt, int n_prompt, const int *response, int n_response, int eos,
           int ctx, bool *cut)
{
    long total = (long)n_prompt + n_response + 1, drop = total > ctx ? total - ctx : 0;
    int n = 0;
    for (long i = drop; i < n_prompt; i++)
        out[n++] = prompt[i];
    for (long i = drop > n_prompt ? drop - n_prompt : 0; i < n_response; i++)
        out[n++] = response[i];
    out[n++] = eos;
    if (cut)
        *cut = drop > 0;
    return n;
}

int rm_encode(const struct tok *t, int ctx, const char *prompt, const char *response,
              struct tok_buf *buf, bool *cut, struct pl_err *err)
{
    buf->n = 0;
    int rc = tok_encode(t, buf, prompt, strlen(prompt), 0, err);
    size_t n_prompt = buf->n;
    if (rc == PL_OK)
        rc = tok_encode(t, buf, response, strlen(response), 0, err);
    /* One more id for the end token; the sequence is built in place, which is safe because
     * rm_seq only ever moves ids towards the front. */
    int *ids = rc == PL_OK ? io_grow(buf->ids, &buf->cap, buf->n + 1, sizeof *ids) : NULL;
    if (rc)
        return rc;
    if (!ids)
        return pl_oom(err, "token ids");
    buf->ids = ids;
    size_t n_response = buf->n - n_prompt;
    if (buf->n >= INT_MAX)
        return pl_errf(err, PL_EINVAL, "a text of %zu tokens is too long to score", buf->n);
    buf->n =
        (size_t)rm_seq(ids, ids, (int)n_prompt, ids + n_prompt, (int)n_response, t->eos, ctx, cut);
    return PL_OK;
}

int rm_batch(int *tokens, int *last, const int *const *seqs, const int *lens, int n, int eos)
{
    int W = 1;
    for (int i = 0; i < n; i++)
        W = lens[i] > W ? lens[i] : W;
    for (int i = 0; i < n; i++) {
        int *row = tokens + (size_t)i * W;
        memcpy(row, seqs[i], (size_t)lens[i] * sizeof *row);
        for (int k = lens[i]; k < W; k++)
            row[k] = eos;
        last[i] = lens[i] - 1;
    }
    return W;
}

double rm_reward(const struct gpt_config *cfg, double head)
{
    return (head - cfg->reward_mean) / cfg->reward_std;
}

/* ---- the scorer ---- */

int rm_scorer_init(struct rm_scorer *s, int rows, int T, int eos, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    if (rows < 1 || T < 1)
        return pl_errf(err, PL_EINVAL, "a reward batch of %d x %d tokens", rows, T);
    s->rows = rows;
    s->T = T;
    s->eos = eos;
    s->tokens = pl_malloc((size_t)rows * T * sizeof *s->tokens);
    s->last = pl_malloc((size_t)rows * sizeof *s->last);
    s->seqs = pl_malloc((size_t)rows * sizeof *s->seqs);
    s->lens = pl_malloc((size_t)rows * sizeof *s->lens);
    if (!s->tokens || !s->last || !s->seqs || !s->lens)
        return pl_oom(err, "reward batch buffers");
    return PL_OK;
}

void rm_scorer_release(struct rm_scorer *s)
{
    pl_free(s->tokens);
    pl_free(s->last);
    pl_free(s->seqs);
    pl_free(s->lens);
    memset(s, 0, sizeof *s);
}

int rm_forward(struct rm_scorer *s, struct gpt *m, const int *const *seqs, const int *lens, int n,
               struct pl_err *err)
{
    PL_ASSERT(m->w.score && n >= 1 && n <= s->rows);
    for (int i = 0; i < n; i++)
        if (lens[i] < 1 || lens[i] > s->T)
            return pl_errf(err, PL_EINVAL, "a sequence of %d tokens in a reward batch of %d",
                           lens[i], s->T);
    int W = rm_batch(s->tokens, s->last, seqs, lens, n, s->eos);
    struct gpt_batch b = {.B = n, .T = W, .tokens = s->tokens, .last = s->last};
    return gpt_forward(m, &b, err);
}

int rm_score_seqs(struct rm_scorer *s, struct gpt *m, const int *const *seqs, const int *lens,
                  size_t n, double *raw, struct pl_err *err)
{
    int rows = s->rows < m->opts.max_batch ? s->rows : m->opts.max_batch;
    for (size_t i = 0; i < n; i += (size_t)rows) {
        int k = n - i < (size_t)rows ? (int)(n - i) : rows;
        int rc = rm_forward(s, m, seqs + i, lens + i, k, err);
        if (rc)
            return rc;
        for (int j = 0; j < k; j++)
            raw[i + (size_t)j] = m->head[j];
    }
    return PL_OK;
}

int rm_score_texts(struct rm_scorer *s, struct gpt *m, const struct tok *t,
                   const char *const *prompts, const char *const *responses, size_t n,
                   double *reward, struct pl_err *err)
{
    struct rm_data d = {0};
    int rc = PL_OK;
    for (size_t i = 0; rc == PL_OK && i < n; i++)
        rc = rm_data_add_text(&d, t, s->T, prompts[i], responses[i], err);
    if (rc == PL_OK)
        rc = rm_score_data(s, m, &d, reward, err);
    for (size_t i = 0; rc == PL_OK && i < n; i++)
        reward[i] = rm_reward(&m->cfg, reward[i]);
    rm_data_release(&d);
    return rc;
}

/* dir/config.json, refused unless it names a scalar head. */
static int config_with_head(const char *dir, struct gpt_config *cfg, struct pl_err *err)
{
    int rc = ckpt_config_read(dir, cfg, err);
    if (rc == PL_OK && !cfg->score_head)
        rc = pl_errf(err, PL_EINVAL,
                     "%s: no score head: its config.json describes a language model "
                     "(GPT2LMHeadModel), not a reward model (GPT2ForSequenceClassification)",
                     dir);
    return rc;
}

int rm_load(struct gpt *m, struct tok *t, const char *dir, int max_batch, int max_seq,
            struct pl_err *err)
{
    memset(m, 0, sizeof *m);
    memset(t, 0, sizeof *t);
    struct gpt_config cfg;
    int rc = config_with_head(dir, &cfg, err);
    if (rc)
        return rc;
    int T = max_seq > 0 && max_seq < cfg.n_positions ? max_seq : cfg.n_positions;
    struct gpt_opts o = {.head_only = true, .max_batch = max_batch, .max_seq = T};
    return ckpt_load_model(m, t, dir, &o, err);
}

/* ---- preference data ---- */

/* Room for one more sequence of up to ctx ids. */
static int data_reserve(struct rm_data *d, int ctx, struct pl_err *err)
{
    int *ids = io_grow(d->ids, &d->cap_ids, d->n_ids + (size_t)ctx, sizeof *ids);
    if (ids)
        d->ids = ids;
    size_t cap = d->cap_seqs;
    size_t *start = ids ? io_grow(d->start, &cap, d->n_seqs + 1, sizeof *start) : NULL;
    if (start)
        d->start = start;
    int *len = start ? io_grow(d->len, &d->cap_seqs, d->n_seqs + 1, sizeof *len) : NULL;
    if (!len)
        return pl_oom(err, "reward sequences");
    d->len = len;
    return PL_OK;
}

/* Encode into buf, then copy into d. */
static int data_add(struct rm_data *d, const struct tok *t, int ctx, const char *prompt,
                    const char *response, struct tok_buf *buf, struct pl_err *err)
{
    bool cut = false;
    int rc = rm_encode(t, ctx, prompt, response, buf, &cut, err);
    if (rc == PL_OK)
        rc = data_reserve(d, ctx, err);
    if (rc)
        return rc;
    memcpy(d->ids + d->n_ids, buf->ids, buf->n * sizeof *buf->ids);
    d->start[d->n_seqs] = d->n_ids;
    d->len[d->n_seqs++] = (int)buf->n;
    d->n_ids += buf->n;
    d->cut += cut;
    d->longest = (int)buf->n > d->longest ? (int)buf->n : d->longest;
    return PL_OK;
}

int rm_data_add_text(struct rm_data *d, const struct tok *t, int ctx, const char *prompt,
                     const char *response, struct pl_err *err)
{
    struct tok_buf buf = {0};
    int rc = data_add(d, t, ctx, prompt, response, &buf, err);
    tok_buf_release(&buf);
    return rc;
}

static int data_add_group(struct rm_data *d, const struct tok *t, int ctx,
                          const struct ds_pref_group *g, size_t src, struct tok_buf *buf,
                          struct pl_err *err)
{
    if (g->n_pairs == 0) {
        d->dropped++;
        return PL_OK;
    }
    struct rm_group *groups = io_grow(d->groups, &d->cap_groups, d->n_groups + 1, sizeof *groups);
    if (groups)
        d->groups = groups;
    struct ds_pref_pair *pairs =
        groups ? io_grow(d->pairs, &d->cap_pairs, d->n_pairs + (size_t)g->n_pairs, sizeof *pairs)
               : NULL;
    if (!pairs)
        return pl_oom(err, "reward groups");
    d->pairs = pairs;
    struct rm_group *r = &d->groups[d->n_groups];
    *r = (struct rm_group){.seq = d->n_seqs,
                           .n_seqs = g->n_texts,
                           .pair = d->n_pairs,
                           .n_pairs = g->n_pairs,
                           .src = src};
    int rc = PL_OK;
    for (int i = 0; rc == PL_OK && i < g->n_texts; i++)
        rc = data_add(d, t, ctx, g->prompt, g->texts[i], buf, err);
    if (rc) {
        d->n_seqs = r->seq;
        return rc;
    }
    memcpy(d->pairs + d->n_pairs, g->pairs, (size_t)g->n_pairs * sizeof *g->pairs);
    d->n_pairs += (size_t)g->n_pairs;
    d->n_groups++;
    d->most_texts = g->n_texts > d->most_texts ? g->n_texts : d->most_texts;
    return PL_OK;
}

int rm_data_add(struct rm_data *d, const struct tok *t, int ctx, const struct ds_pref_group *groups,
                size_t n, struct pl_err *err)
{
    struct tok_buf buf = {0};
    int rc = PL_OK;
    for (size_t i = 0; rc == PL_OK && i < n; i++)
        rc = data_add_group(d, t, ctx, &groups[i], i, &buf, err);
    tok_buf_release(&buf);
    return rc;
}

int rm_score_data(struct rm_scorer *s, struct gpt *m, const struct rm_data *d, double *raw,
                  struct pl_err *err)
{
    int rows = s->rows < m->opts.max_batch ? s->rows : m->opts.max_batch;
    for (size_t i = 0; i < d->n_seqs; i += (size_t)rows) {
        int k = d->n_seqs - i < (size_t)rows ? (int)(d->n_seqs - i) : rows;
        for (int j = 0; j < k; j++) {
            s->seqs[j] = d->ids + d->start[i + (size_t)j];
            s->lens[j] = d->len[i + (size_t)j];
        }
        int rc = rm_forward(s, m, s->seqs, s->lens, k, err);
        if (rc)
            return rc;
        for (int j = 0; j < k; j++)
            raw[i + (size_t)j] = m->head[j];
    }
    return PL_OK;
}

void rm_data_release(struct rm_data *d)
{
    pl_free(d->ids);
    pl_free(d->start);
    pl_free(d->len);
    pl_free(d->groups);
    pl_free(d->pairs);
    memset(d, 0, sizeof *d);
}

/* ---- loss and statistics ---- */

/* log sigmoid(x), without overflow for large |x|. */
static double log_sigmoid(double x)
{
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

static double sigmoid(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

double rm_pair_loss(double rb, double rw, double margin, double p, double center, double *d_rb,
                    double *d_rw)
{
    double d = rb - rw - margin, sum = rb + rw;
    double loss = -(p * log_sigmoid(d) + (1.0 - p) * log_sigmoid(-d)) + center * sum * sum;
    double dd = sigmoid(d) - p;
    if (d_rb)
        *d_rb = dd + 2.0 * center * sum;
    if (d_rw)
        *d_rw = -dd + 2.0 * center * sum;
    return loss;
}

void rm_stats_add(struct rm_stats *s, const struct ds_pref_pair *pr, double rb, double rw,
                  double center)
{
    double hi = pr->p >= 0.5 ? rb : rw, lo = pr->p >= 0.5 ? rw : rb;
    s->pairs += 1.0;
    s->loss += rm_pair_loss(rb, rw, pr->margin, pr->p, center, NULL, NULL);
    s->right += hi > lo ? 1.0 : hi == lo ? 0.5 : 0.0;
    s->margin += rb - rw;
    s->chosen += rb;
    s->rejected += rw;
}

double rm_stats_mean(const struct rm_stats *s, double sum)
{
    return s->pairs > 0 ? sum / s->pairs : NAN;
}

double rm_stats_accuracy(const struct rm_stats *s)
{
    return rm_stats_mean(s, s->right);
}

/* The five values under names[0..5) (literals: the loop keeps the pointers). */
static void stats_values(const struct rm_stats *s, const char *const names[5],
                         struct train_values *out)
{
    double v[5] = {rm_stats_mean(s, s->loss), rm_stats_accuracy(s), rm_stats_mean(s, s->margin),
                   rm_stats_mean(s, s->chosen), rm_stats_mean(s, s->rejected)};
    for (int i = 0; i < 5; i++)
        train_values_add(out, names[i], v[i]);
}

/* Add group g's pairs, scored scores[g's sequences], to s. */
static void group_stats(struct rm_stats *s, const struct rm_data *d, const struct rm_group *g,
                        const double *scores, double center)
{
    const double *r = scores + g->seq;
    for (int k = 0; k < g->n_pairs; k++) {
        const struct ds_pref_pair *pr = &d->pairs[g->pair + (size_t)k];
        rm_stats_add(s, pr, r[pr->better], r[pr->worse], center);
    }
}

/* ---- evaluation ---- */

/* The slice named `name` in *slices, added (with a copy of the name in e's arena) when new;
 * NULL when out of memory. */
static struct rm_stats *slice(struct rm_eval *e, struct rm_slice **slices, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*slices)[i].name, name) == 0)
            return &(*slices)[i].st;
    struct rm_slice *p = pl_realloc(*slices, (size_t)(*n + 1) * sizeof *p);
    if (p)
        *slices = p;
    const char *copy = p ? io_arena_strndup(&e->names, name, strlen(name)) : NULL;
    if (!copy)
        return NULL;
    p[*n] = (struct rm_slice){.name = copy};
    return &p[(*n)++].st;
}

int rm_evaluate(struct rm_scorer *s, struct gpt *m, const struct rm_data *d,
                const struct ds_pref_group *groups, struct rm_eval *out, struct pl_err *err)
{
    memset(out, 0, sizeof *out);
    out->groups = d->n_groups;
    out->dropped = d->dropped;
    out->cut = d->cut;
    out->mean = m->cfg.reward_mean;
    out->std = m->cfg.reward_std;
    double *r = pl_malloc((d->n_seqs ? d->n_seqs : 1) * sizeof *r);
    if (!r)
        return pl_oom(err, "reward scores");
    int rc = rm_score_data(s, m, d, r, err);
    for (size_t i = 0; rc == PL_OK && i < d->n_seqs; i++)
        r[i] = rm_reward(&m->cfg, r[i]);
    for (size_t i = 0; rc == PL_OK && i < d->n_groups; i++) {
        const struct rm_group *g = &d->groups[i];
        const struct ds_pref_group *src = &groups[g->src];
        group_stats(&out->all, d, g, r, 0.0);
        struct rm_stats *k = src->kind ? slice(out, &out->kinds, &out->n_kinds, src->kind) : NULL;
        struct rm_stats *a = src->annotator
                                 ? slice(out, &out->annotators, &out->n_annotators, src->annotator)
                                 : NULL;
        if ((src->kind && !k) || (src->annotator && !a))
            rc = pl_oom(err, "evaluation slices");
        if (k)
            group_stats(k, d, g, r, 0.0);
        if (a)
            group_stats(a, d, g, r, 0.0);
    }
    pl_free(r);
    return rc;
}

void rm_eval_release(struct rm_eval *e)
{
    pl_free(e->kinds);
    pl_free(e->annotators);
    io_arena_release(&e->names);
    memset(e, 0, sizeof *e);
}

int rm_eval_files(const char *dir, const char *const *paths, int n, unsigned flags, int batch,
                  struct rm_eval *out, struct pl_err *err)
{
    memset(out, 0, sizeof *out);
    struct ds_prefs set = {0};
    struct rm_data d = {0};
    struct rm_scorer s = {0};
    struct gpt m = {0};
    struct tok t = {0};
    struct gpt_config cfg;
    /* A language model is refused before the data is read: the wrong folder is the likelier
     * mistake, and reading a large file first would only delay saying so. */
    int rc = config_with_head(dir, &cfg, err);
    for (int i = 0; rc == PL_OK && i < n; i++)
        rc = ds_prefs_load(&set, paths[i], flags, err);
    if (rc == PL_OK)
        rc = ckpt_load_tokenizer(&t, &cfg, dir, err);
    if (rc == PL_OK)
        rc = rm_data_add(&d, &t, cfg.n_positions, set.groups, set.n, err);
    if (rc == PL_OK && d.n_groups == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: no pairs to evaluate (%zu groups, %ld without a pair)",
                     n > 0 ? paths[0] : "data", set.n, d.dropped);
    if (rc == PL_OK) {
        tok_release(&t);
        rc = rm_load(&m, &t, dir, batch, d.longest, err);
    }
    if (rc == PL_OK)
        rc = rm_scorer_init(&s, batch, d.longest, t.eos, err);
    if (rc == PL_OK)
        rc = rm_evaluate(&s, &m, &d, set.groups, out, err);
    out->skipped = set.skipped;
    rm_scorer_release(&s);
    gpt_release(&m);
    tok_release(&t);
    rm_data_release(&d);
    ds_prefs_release(&set);
    return rc;
}

/* ---- training ---- */

void rm_opts_default(struct rm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->eval_frac = 0.05;
    o->epochs = 1.0;
    o->batch = 8;
    o->seed = 1337;
    train_opts_default(&o->train);
    train_optim_default(&o->optim);
}

static int task_next(void *ctx, struct train_step *st, struct pl_err *err)
{
    (void)err;
    struct rm_task *t = ctx;
    st->tokens = 0;
    /* Every rank draws the groups of all ranks and keeps its own B of each micro-batch. */
    int rank = dist_rank(), ranks = dist_size();
    for (int i = 0; i < t->accum; i++) {
        st->weight[i] = 0.0;
        for (int b = 0; b < ranks * t->B; b++) {
            size_t g = train_order_next(&t->order);
            if (b / t->B != rank)
                continue;
            const struct rm_group *grp = &t->train.groups[g];
            t->step_groups[(size_t)i * t->B + b % t->B] = g;
            st->weight[i] += grp->n_pairs;
            for (int k = 0; k < grp->n_seqs; k++)
                st->tokens += t->train.len[grp->seq + (size_t)k];
        }
    }
    t->step = (struct rm_stats){0};
    return PL_OK;
}

static const char *const train_names[5] = {"rm/loss", "rm/accuracy", "rm/margin", "rm/chosen",
                                           "rm/rejected"};
static const char *const eval_names[5] = {"eval/loss", "eval/accuracy", "eval/margin",
                                          "eval/chosen", "eval/rejected"};

/* One forward of the micro-batch's groups, all their sequences as rows; the mean pair loss's
 * gradient, times scale, flows back through the head at each row's end token. */
static int task_backward(void *ctx, struct train_model *models, struct train_step *st, int micro,
                         float scale, double *loss, struct pl_err *err)
{
    struct rm_task *t = ctx;
    struct gpt *m = models[0].m;
    const struct rm_data *d = &t->train;
    const size_t *groups = t->step_groups + (size_t)micro * t->B;
    int rows = 0;
    double pairs = 0.0;
    for (int b = 0; b < t->B; b++) {
        const struct rm_group *g = &d->groups[groups[b]];
        for (int k = 0; k < g->n_seqs; k++, rows++) {
            t->sc.seqs[rows] = d->ids + d->start[g->seq + (size_t)k];
            t->sc.lens[rows] = d->len[g->seq + (size_t)k];
        }
        pairs += g->n_pairs;
    }
    int rc = rm_forward(&t->sc, m, t->sc.seqs, t->sc.lens, rows, err);
    if (rc)
        return rc;
    double sum = 0.0;
    int row0 = 0;
    for (int r = 0; r < rows; r++)
        t->grad[r] = 0.0;
    for (int b = 0; b < t->B; b++) {
        const struct rm_group *g = &d->groups[groups[b]];
        const float *r = m->head + row0;
        double *gr = t->grad + row0;
        for (int k = 0; k < g->n_pairs; k++) {
            const struct ds_pref_pair *pr = &d->pairs[g->pair + (size_t)k];
            double gb, gw;
            sum +=
                rm_pair_loss(r[pr->better], r[pr->worse], pr->margin, pr->p, t->center, &gb, &gw);
            gr[pr->better] += gb;
            gr[pr->worse] += gw;
            rm_stats_add(&t->step, pr, r[pr->better], r[pr->worse], t->center);
        }
        row0 += g->n_seqs;
    }
    for (int r = 0; r < rows; r++)
        t->dhead[r] = (float)(t->grad[r] * scale / pairs);
    gpt_backward(m, NULL, t->dhead);
    *loss = sum / pairs;
    if (micro < st->n_micro - 1)
        return PL_OK;
    /* The step's statistics over every rank's pairs. */
    struct rm_stats *s = &t->step;
    double v[6] = {s->pairs, s->loss, s->right, s->margin, s->chosen, s->rejected};
    if ((rc = dist_sum_doubles(v, 6, err)))
        return rc;
    *s = (struct rm_stats){v[0], v[1], v[2], v[3], v[4], v[5]};
    stats_values(s, train_names, &st->metrics);
    return PL_OK;
}

static int task_eval(void *ctx, struct train_model *models, struct train_values *out,
                     struct pl_err *err)
{
    struct rm_task *t = ctx;
    int rc = rm_score_data(&t->sc, models[0].m, &t->eval, t->eval_raw, err);
    if (rc)
        return rc;
    struct rm_stats s = {0};
    for (size_t i = 0; i < t->eval.n_groups; i++)
        group_stats(&s, &t->eval, &t->eval.groups[i], t->eval_raw, t->center);
    stats_values(&s, eval_names, out);
    return PL_OK;
}

/* Paths joined with ", " for run.json. */
static void field_paths(struct train_fields *f, const char *name, const char *const *paths, int n)
{
    struct pl_buf b = {0};
    for (int i = 0; i < n; i++) {
        pl_buf_str(&b, i ? ", " : "");
        pl_buf_str(&b, paths[i]);
    }
    train_field_str(f, name, n && !b.oom ? b.p : NULL);
    pl_buf_release(&b);
}

static void task_fields(void *ctx, struct train_fields *keys, struct train_fields *info)
{
    const struct rm_task *t = ctx;
    const struct rm_opts *o = t->o;
    train_field_int(keys, "batch", t->B);
    train_field_int(keys, "seq", t->T);
    train_field_real(keys, "eval_frac", o->n_eval_data ? 0.0 : o->eval_frac);
    train_field_real(keys, "center_coef", o->center_coef);
    train_field_u64(keys, "seed", o->seed);
    train_field_str(info, "model", o->model);
    field_paths(info, "data", o->data, o->n_data);
    field_paths(info, "eval_data", o->eval_data, o->n_eval_data);
    train_field_str(info, "norm_data", o->norm_data);
    train_field_real(info, "epochs", o->epochs);
    train_field_int(info, "train_groups", (long long)t->train.n_groups);
    train_field_int(info, "train_pairs", (long long)t->train.n_pairs);
    train_field_int(info, "eval_groups", (long long)t->eval.n_groups);
    train_field_bool(info, "skip_bad_lines", o->skip_bad_lines);
}

void rm_as_task(struct rm_task *t, struct train_task *task)
{
    *task = (struct train_task){.label = "rm",
                                .ctx = t,
                                .next = task_next,
                                .backward = task_backward,
                                .eval = t->eval.n_groups ? task_eval : NULL,
                                .fields = task_fields,
                                .vars = t->vars,
                                .n_vars = 2};
}

static int check_rm_opts(const struct rm_opts *o, int ctx, int n_positions, struct pl_err *err)
{
    if (o->batch <= 0 || o->train.grad_accum <= 0)
        return pl_errf(err, PL_EINVAL, "batch and grad_accum must be positive");
    if (ctx <= 0 || ctx > n_positions)
        return pl_errf(err, PL_EINVAL, "sequence length %d does not fit the model's context %d",
                       ctx, n_positions);
    if (!(o->eval_frac >= 0.0 && o->eval_frac < 1.0))
        return pl_errf(err, PL_EINVAL, "eval_frac %g is outside [0, 1)", o->eval_frac);
    if (!(o->center_coef >= 0.0 && isfinite(o->center_coef)))
        return pl_errf(err, PL_EINVAL, "center_coef %g is not a finite number >= 0",
                       o->center_coef);
    return PL_OK;
}

static int load_norm(struct rm_task *t, const struct tok *tok, const char *path, int ctx,
                     unsigned flags, struct pl_err *err)
{
    struct ds_sft set;
    int rc = ds_sft_init(&set, path, flags, err);
    for (size_t i = 0; rc == PL_OK && i < set.n; i++)
        rc = rm_data_add_text(&t->norm, tok, ctx, set.recs[i].prompt, set.recs[i].response, err);
    ds_sft_release(&set);
    return rc;
}

int rm_task_init(struct rm_task *t, const struct tok *tok, const struct rm_opts *o,
                 const struct ds_prefs *train, const struct ds_prefs *heldout, int n_positions,
                 struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    t->o = o;
    t->B = o->batch;
    t->accum = o->train.grad_accum;
    t->center = o->center_coef;
    int ctx = o->seq ? o->seq : n_positions;
    int rc = check_rm_opts(o, ctx, n_positions, err);
    if (rc)
        return rc;
    size_t n_eval = heldout ? 0 : (size_t)((double)train->n * o->eval_frac);
    size_t n_train = train->n - n_eval;
    rc = rm_data_add(&t->train, tok, ctx, train->groups, n_train, err);
    if (rc == PL_OK)
        rc = heldout ? rm_data_add(&t->eval, tok, ctx, heldout->groups, heldout->n, err)
                     : rm_data_add(&t->eval, tok, ctx, train->groups + n_train, n_eval, err);
    if (rc == PL_OK && o->norm_data)
        rc = load_norm(t, tok, o->norm_data, ctx, o->skip_bad_lines ? IO_SKIP_BAD_LINES : 0, err);
    if (rc == PL_OK && t->train.n_groups == 0)
        rc = pl_errf(err, PL_EINVAL,
                     "nothing to train on: %zu training groups and not one pair among them (a "
                     "ranking whose completions all tie, a skipped or a retracted label gives "
                     "none)",
                     n_train);
    if (rc == PL_OK && o->norm_data && t->norm.n_seqs == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: no reference responses to normalise with", o->norm_data);
    if (rc) {
        rm_task_release(t);
        return rc;
    }
    int longest = t->train.longest;
    longest = t->eval.longest > longest ? t->eval.longest : longest;
    t->T = t->norm.longest > longest ? t->norm.longest : longest;
    t->rows = t->B * t->train.most_texts;
    rc = rm_scorer_init(&t->sc, t->rows, t->T, tok->eos, err);
    if (rc == PL_OK)
        rc = train_order_init(&t->order, t->train.n_groups, o->seed, err);
    t->step_groups = pl_malloc((size_t)t->accum * t->B * sizeof *t->step_groups);
    t->grad = pl_malloc((size_t)t->rows * sizeof *t->grad);
    t->dhead = pl_malloc((size_t)t->rows * sizeof *t->dhead);
    t->eval_raw = pl_malloc((t->eval.n_seqs ? t->eval.n_seqs : 1) * sizeof *t->eval_raw);
    if (rc == PL_OK && (!t->step_groups || !t->grad || !t->dhead || !t->eval_raw))
        rc = pl_oom(err, "reward training buffers");
    if (rc) {
        rm_task_release(t);
        return rc;
    }
    t->vars[0] = (struct train_var){"order.rng", TRAIN_U64, t->order.rng, 4};
    t->vars[1] = (struct train_var){"order.cursor", TRAIN_U64, t->order.cursor, 2};
    return PL_OK;
}

void rm_task_release(struct rm_task *t)
{
    rm_data_release(&t->train);
    rm_data_release(&t->eval);
    rm_data_release(&t->norm);
    rm_scorer_release(&t->sc);
    train_order_release(&t->order);
    pl_free(t->step_groups);
    pl_free(t->grad);
    pl_free(t->dhead);
    pl_free(t->eval_raw);
    memset(t, 0, sizeof *t);
}

long rm_steps(const struct rm_task *t, const struct rm_opts *o)
{
    if (o->train.steps > 0)
        return o->train.steps;
    double groups = o->epochs * (double)t->train.n_groups;
    long steps = (long)ceil(groups / ((double)t->B * t->accum * dist_size()));
    return steps > 0 ? steps : 1;
}

int rm_normalise(struct rm_task *t, struct gpt *m, struct pl_err *err)
{
    const struct rm_data *d = t->norm.n_seqs ? &t->norm : &t->train;
    /* Without norm data: the texts that are the better side of some pair, each once. */
    size_t n = 0;
    const int **seqs = pl_malloc((d->n_seqs ? d->n_seqs : 1) * sizeof *seqs);
    int *lens = pl_malloc((d->n_seqs ? d->n_seqs : 1) * sizeof *lens);
    double *raw = pl_malloc((d->n_seqs ? d->n_seqs : 1) * sizeof *raw);
    bool *better = pl_calloc(d->n_seqs ? d->n_seqs : 1, sizeof *better);
    if (!seqs || !lens || !raw || !better) {
        pl_free(seqs);
        pl_free(lens);
        pl_free(raw);
        pl_free(better);
        return pl_oom(err, "normalisation scores");
    }
    for (size_t g = 0; d == &t->train && g < d->n_groups; g++)
        for (int k = 0; k < d->groups[g].n_pairs; k++)
            better[d->groups[g].seq + (size_t)d->pairs[d->groups[g].pair + (size_t)k].better] =
                true;
    for (size_t i = 0; i < d->n_seqs; i++)
        if (d != &t->train || better[i]) {
            seqs[n] = d->ids + d->start[i];
            lens[n++] = d->len[i];
        }
    int rc = rm_score_seqs(&t->sc, m, seqs, lens, n, raw, err);
    if (rc == PL_OK) {
        double mean = 0.0, var = 0.0;
        for (size_t i = 0; i < n; i++)
            mean += raw[i];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++)
            var += (raw[i] - mean) * (raw[i] - mean);
        double std = sqrt(var / (double)n);
        m->cfg.reward_mean = mean;
        /* One reference text, or all scoring alike, gives no scale: leave it alone. */
        m->cfg.reward_std = std > 1e-12 && isfinite(std) ? std : 1.0;
        if (!isfinite(mean))
            rc = pl_errf(err, PL_ENUMERIC, "the reference responses' mean score is %g", mean);
    }
    pl_free(seqs);
    pl_free(lens);
    pl_free(raw);
    pl_free(better);
    return rc;
}

static void log_data(FILE *f, const struct rm_task *t, long steps)
{
    fprintf(f,
            "rm: %zu training groups (%zu pairs), %zu held-out groups (%zu pairs); %ld steps of "
            "%d x %d groups, up to %d x %d tokens a forward\n",
            t->train.n_groups, t->train.n_pairs, t->eval.n_groups, t->eval.n_pairs, steps, t->accum,
            t->B, t->rows, t->T);
    long dropped = t->train.dropped + t->eval.dropped;
    if (dropped)
        fprintf(f, "rm: left out %ld groups without a pair (every completion tied)\n", dropped);
    long cut = t->train.cut + t->eval.cut + t->norm.cut;
    if (cut)
        fprintf(f, "rm: cut %ld sequences from the left to the context of %d tokens\n", cut,
                t->o->seq ? t->o->seq : t->T);
}

int rm_train(const struct rm_opts *o, const struct ds_prefs *train, const struct ds_prefs *heldout,
             struct rm_result *res, struct pl_err *err)
{
    struct tok tok = {0};
    struct rm_task t = {0};
    struct gpt m = {0};
    struct gpt_config cfg;
    *res = (struct rm_result){.train = {.train_loss = NAN, .eval_first = NAN, .eval_last = NAN},
                              .reward_mean = NAN,
                              .reward_std = NAN};
    int rc = ckpt_load_tokenizer(&tok, &cfg, o->model, err);
    if (rc == PL_OK)
        rc = rm_task_init(&t, &tok, o, train, heldout, cfg.n_positions, err);
    struct gpt_opts go = {.trainable = true,
                          .score_head = true,
                          .head_only = true,
                          .max_batch = t.rows,
                          .max_seq = t.T};
    /* A folder without score.weight (a base or SFT model) starts with a zero head: every
     * sequence scores 0, so the first held-out loss is exactly ln 2 and the accuracy 0.5, the
     * start depends on no seed, and there is no random initial preference to unlearn. The body
     * gets gradients from the second step on, once the head has moved. */
    if (rc == PL_OK && (rc = ckpt_load(&m, o->model, &go, err)) == PL_ENOTFOUND)
        rc = PL_OK;
    if (rc == PL_OK) {
        /* Training optimises raw scores; the checkpoints carry no normalisation until the end. */
        m.cfg.reward_mean = 0.0;
        m.cfg.reward_std = 1.0;
        struct train_opts run = o->train;
        run.steps = rm_steps(&t, o);
        if (run.log && dist_rank() == 0)
            log_data(run.log, &t, run.steps);
        struct train_task task;
        rm_as_task(&t, &task);
        struct train_model model = {.m = &m, .tok = &tok, .out = run.out, .optim = o->optim};
        rc = train_run(&model, 1, &task, &run, &res->train, err);
    }
    if (rc == PL_OK && !res->train.stopped && (rc = rm_normalise(&t, &m, err)) == PL_OK) {
        rc = dist_rank() == 0 ? ckpt_config_write(o->train.out, &m.cfg, err) : PL_OK;
        res->normalised = rc == PL_OK;
        res->reward_mean = m.cfg.reward_mean;
        res->reward_std = m.cfg.reward_std;
    }
    res->groups = t.train.n_groups;
    res->eval_groups = t.eval.n_groups;
    res->pairs = (long)t.train.n_pairs;
    res->dropped = t.train.dropped + t.eval.dropped;
    res->cut = t.train.cut + t.eval.cut + t.norm.cut;
    gpt_release(&m);
    rm_task_release(&t);
    tok_release(&tok);
    return rc;
}

int rm_run(const struct rm_opts *o, struct rm_result *res, struct pl_err *err)
{
    struct ds_prefs train = {0}, heldout = {0};
    unsigned flags = o->skip_bad_lines ? IO_SKIP_BAD_LINES : 0;
    int rc = PL_OK;
    for (int i = 0; rc == PL_OK && i < o->n_data; i++)
        rc = ds_prefs_load(&train, o->data[i], flags, err);
    for (int i = 0; rc == PL_OK && i < o->n_eval_data; i++)
        rc = ds_prefs_load(&heldout, o->eval_data[i], flags, err);
    if (rc == PL_OK && o->n_data == 0)
        rc = pl_errf(err, PL_EINVAL, "no training data given");
    if (rc == PL_OK)
        rc = rm_train(o, &train, o->n_eval_data ? &heldout : NULL, res, err);
    else
        *res = (struct rm_result){.train = {.train_loss = NAN}};
    res->skipped = train.skipped + heldout.skipped;
    ds_prefs_release(&train);
    ds_prefs_release(&heldout);
    return rc;
}
