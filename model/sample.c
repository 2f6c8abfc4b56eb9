#include "sample.h"

#include "ops.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- options ---- */

const char *sample_finish_name(int finish)
{
    switch (finish) {
    case SAMPLE_EOS:
        return "eos";
    case SAMPLE_STOP:
        return "stop";
    case SAMPLE_LENGTH:
        return "length";
    default:
        return "running";
    }
}

void sample_opts_default(struct sample_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n = 1;
    o->max_new_tokens = 64;
    o->temperature = 1.0f;
    o->top_p = 1.0f;
    o->beam = 0;
    o->length_penalty = 1.0f;
    o->seed = 1;
    o->eos = SAMPLE_EOS_MODEL;
    o->batch = 32;
}

int sample_opts_check(const struct sample_opts *o, const struct gpt_config *cfg, struct pl_err *err)
{
    if (o->n < 1)
        return pl_errf(err, PL_EINVAL, "option 'n': expected at least 1 completion, got %d", o->n);
    if (o->max_new_tokens < 1)
        return pl_errf(err, PL_EINVAL, "option 'max_new_tokens': expected at least 1, got %d",
                       o->max_new_tokens);
    if (!(o->temperature >= 0.0f) || !isfinite(o->temperature))
        return pl_errf(err, PL_EINVAL, "option 'temperature': expected a number >= 0");
    if (o->top_k < 0)
        return pl_errf(err, PL_EINVAL, "option 'top_k': expected 0 (off) or more, got %d",
                       o->top_k);
    if (!(o->top_p > 0.0f && o->top_p <= 1.0f))
        return pl_errf(err, PL_EINVAL, "option 'top_p': expected a number in (0, 1]");
    if (o->beam < 0 || (o->beam > 0 && o->n > o->beam))
        return pl_errf(err, PL_EINVAL, "option 'beam': expected 0 (off) or at least n (%d), got %d",
                       o->n, o->beam);
    if (!isfinite(o->length_penalty))
        return pl_errf(err, PL_EINVAL, "option 'length_penalty': expected a finite number");
    if (o->eos >= cfg->vocab_size)
        return pl_errf(err, PL_EINVAL, "option 'eos': %d is outside the vocabulary (%d)", o->eos,
                       cfg->vocab_size);
    for (int i = 0; i < o->n_stop; i++)
        if (!o->stop[i][0])
            return pl_errf(err, PL_EINVAL, "option 'stop': a stop string is empty");
    int width = o->beam > 0 ? o->beam : o->n;
    if (o->batch < width)
        return pl_errf(err, PL_EINVAL,
                       "option 'batch': %d cannot hold the %d sequences of a prompt", o->batch,
                       width);
    if (o->max_len < 0 || o->max_len > cfg->n_positions)
        return pl_errf(err, PL_EINVAL, "option 'max_len': expected 0..%d, got %d", cfg->n_positions,
                       o->max_len);
    return PL_OK;
}

/* ---- generation state ---- */

/* The tokens, log-probabilities and text of one sequence. */
struct sample_seq {
    int *tokens;
    float *logp;
    char *text;
    int n;
    size_t text_len;
    int finish;
    double sum;   /* of logp */
    double score; /* beam hypotheses: the ranking score */
};

struct sample_slot {
    struct sample_seq q;
    struct pl_rng rng;
    int pending; /* token to feed in the next pass, -1 none */
    int row;     /* row of the cache's logits to choose from in this step, -1 none */
    bool active; /* holds a sequence being generated (or, sampling, one finished) */
};

/* One prompt being decoded on `width` consecutive slots. */
struct sample_lane {
    int prompt; /* position in the prompts array, -1 idle */
    long index;
    const int *ids;
    int n_ids, fed;         /* prompt tokens, and how many are in the cache */
    bool done;              /* beam search finished */
    struct sample_seq *hyp; /* [width] finished beams */
    int n_hyp;
};

/* A token to sample from (top-k / top-p). */
struct cand {
    float p;
    int id;
};

/* A beam's possible next token. */
struct beam_cand {
    double score; /* the beam's sum of log p with this token's */
    float lp, z;
    int id, parent; /* parent: the beam's slot within the lane */
};

/* A sequence's share of the buffer block, a multiple of 8 bytes so that
 * the next one's tokens stay aligned. */
static size_t seq_bytes(const struct sample_ctx *s)
{
    return ((sizeof(int) + sizeof(float)) * (size_t)s->o.max_new_tokens + s->text_cap + 7) / 8 * 8;
}

/* Point q at its share of the buffer block p. */
static char *seq_bind(const struct sample_ctx *s, struct sample_seq *q, char *p)
{
    q->tokens = (int *)p;
    q->logp = (float *)(p + sizeof(int) * s->o.max_new_tokens);
    q->text = s->text_cap ? p + (sizeof(int) + sizeof(float)) * s->o.max_new_tokens : NULL;
    return p + seq_bytes(s);
}

static void seq_reset(struct sample_seq *q)
{
    q->n = 0;
    q->text_len = 0;
    q->finish = SAMPLE_RUNNING;
    q->sum = q->score = 0.0;
    if (q->text)
        q->text[0] = '\0';
}

static void seq_copy(struct sample_seq *dst, const struct sample_seq *src)
{
    memcpy(dst->tokens, src->tokens, sizeof(int) * src->n);
    memcpy(dst->logp, src->logp, sizeof(float) * src->n);
    if (src->text)
        memcpy(dst->text, src->text, src->text_len + 1);
    dst->n = src->n;
    dst->text_len = src->text_len;
    dst->finish = src->finish;
    dst->sum = src->sum;
    dst->score = src->score;
}

/* Longest piece of text one token can add. */
static size_t max_piece(const struct tok *t)
{
    size_t most = 0, len;
    for (int id = 0; id < t->vocab_size; id++)
        if (tok_piece(t, id, &len) && len > most)
            most = len;
    return most;
}

/* Slots, lanes, sequence buffers, distributions and the step plan. */
static int ctx_alloc(struct sample_ctx *s)
{
    int slots = s->lanes * s->width, V = s->m->cfg.vocab_size, W = s->width;
    bool beam = s->o.beam > 0, cut = !beam && (s->o.top_k > 0 || s->o.top_p < 1.0f);
    s->slots = pl_calloc((size_t)slots, sizeof *s->slots);
    s->lane = pl_calloc((size_t)s->lanes, sizeof *s->lane);
    s->comp = pl_calloc((size_t)W, sizeof *s->comp);
    size_t seqs = (size_t)slots + (beam ? (size_t)slots : 0);
    s->mem = pl_malloc(seqs * seq_bytes(s));
    s->probs = pl_alloc_big((size_t)slots * V * sizeof(float));
    s->lse = pl_malloc(sizeof(float) * slots);
    s->steps = pl_malloc(sizeof(int) * (3 * (size_t)slots + s->cache.max_rows));
    if (beam)
        s->scratch = pl_malloc(sizeof(struct beam_cand) * 3 * (size_t)W * W * s->lanes);
    else if (cut)
        s->scratch = pl_malloc(sizeof(struct cand) * (size_t)V * slots);
    if (beam)
        for (int l = 0; l < s->lanes && s->lane; l++)
            s->lane[l].hyp = pl_calloc((size_t)W, sizeof(struct sample_seq));
    if (!s->slots || !s->lane || !s->comp || !s->mem || !s->probs || !s->lse || !s->steps ||
        ((beam || cut) && !s->scratch))
        return PL_ENOMEM;
    char *p = s->mem;
    for (int i = 0; i < slots; i++)
        p = seq_bind(s, &s->slots[i].q, p);
    for (int l = 0; beam && l < s->lanes; l++) {
        if (!s->lane[l].hyp)
            return PL_ENOMEM;
        for (int k = 0; k < W; k++)
            p = seq_bind(s, &s->lane[l].hyp[k], p);
    }
    return PL_OK;
}

int sample_init(struct sample_ctx *s, const struct gpt *m, const struct tok *tok,
                const struct sample_opts *o, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    int rc = sample_opts_check(o, &m->cfg, err);
    if (rc)
        return rc;
    if (o->n_stop > 0 && !tok)
        return pl_errf(err, PL_EINVAL, "option 'stop': stop strings need a tokenizer");
    if (tok && tok->vocab_size < m->cfg.vocab_size)
        return pl_errf(err, PL_EINVAL,
                       "the tokenizer has %d tokens, fewer than the model's vocabulary of %d: "
                       "ids %d and up have no text",
                       tok->vocab_size, m->cfg.vocab_size, tok->vocab_size);
    s->m = m;
    s->tok = tok;
    s->o = *o;
    if (s->o.eos == SAMPLE_EOS_MODEL)
        s->o.eos = m->cfg.eos_token_id;
    if (!s->o.max_len)
        s->o.max_len = m->cfg.n_positions;
    s->bos = m->cfg.bos_token_id;
    s->width = o->beam > 0 ? o->beam : o->n;
    s->lanes = o->batch / s->width;
    int slots = s->lanes * s->width;
    /* Room to prefill every lane's prompt in one pass, within reason. */
    long rows = (long)s->lanes * s->o.max_len;
    rows = rows > 4096 ? 4096 : rows;
    rows = rows < slots ? slots : rows;
    rc = kv_init(&s->cache, m, slots, s->o.max_len, (int)rows, err);
    if (rc)
        return sample_release(s), rc;
    s->text_cap = tok ? max_piece(tok) * (size_t)o->max_new_tokens + 1 : 0;
    if (ctx_alloc(s)) {
        sample_release(s);
        return pl_oom(err, "generation buffers");
    }
    return PL_OK;
}

void sample_release(struct sample_ctx *s)
{
    kv_release(&s->cache);
    for (int l = 0; s->lane && l < s->lanes; l++)
        pl_free(s->lane[l].hyp);
    size_t V = s->m ? (size_t)s->m->cfg.vocab_size : 0;
    pl_free_big(s->probs, (size_t)s->lanes * s->width * V * sizeof(float));
    pl_free(s->slots);
    pl_free(s->lane);
    pl_free(s->comp);
    pl_free(s->mem);
    pl_free(s->lse);
    pl_free(s->steps);
    pl_free(s->scratch);
    memset(s, 0, sizeof *s);
}

/* ---- choosing tokens ---- */

/* Where text[0..len) first holds a stop string that ends past `from` (the
 * bytes already checked), or -1. */
static long stop_at(const struct sample_opts *o, const char *text, size_t from, size_t len)
{
    long best = -1;
    for (int i = 0; i < o->n_stop; i++) {
        size_t sl = strlen(o->stop[i]);
        size_t q = from + 1 > sl ? from + 1 - sl : 0;
        for (; q + sl <= len; q++)
            if (memcmp(text + q, o->stop[i], sl) == 0) {
                if (best < 0 || (long)q < best)
                    best = (long)q;
                break;
            }
    }
    return best;
}

/* Write token id's bytes after q's text and return the text's length with
 * them; q->text_len is left to the caller, so a beam can try a token out. */
static size_t append_piece(const struct sample_ctx *s, struct sample_seq *q, int id)
{
    size_t len;
    const char *piece = tok_piece(s->tok, id, &len);
    memcpy(q->text + q->text_len, piece, len);
    q->text[q->text_len + len] = '\0';
    return q->text_len + len;
}

/* Record token id (log-probability lp) as q's next; finish q when it ends it
 * (end token, stop string, max_new_tokens, or max_len with n_ids prompt
 * tokens). Returns whether q goes on. */
static bool seq_push(const struct sample_ctx *s, struct sample_seq *q, int n_ids, int id, float lp)
{
    q->tokens[q->n] = id;
    q->logp[q->n] = lp;
    q->n++;
    q->sum += lp;
    if (id == s->o.eos) {
        q->finish = SAMPLE_EOS;
    } else if (s->tok) {
        size_t from = q->text_len;
        q->text_len = append_piece(s, q, id);
        long cut = stop_at(&s->o, q->text, from, q->text_len);
        if (cut >= 0) {
            q->text_len = (size_t)cut;
            q->text[cut] = '\0';
            q->finish = SAMPLE_STOP;
        }
    }
    if (!q->finish && (q->n >= s->o.max_new_tokens || n_ids + q->n >= s->o.max_len))
        q->finish = SAMPLE_LENGTH;
    return !q->finish;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

/* The tokens top-k / top-p may keep, most likely first, in c; returns how
 * many. The few likeliest tokens usually hold the mass asked for, so look
 * above a threshold t first: at most 1/t tokens lie above it. */
static int candidates(const float *p, int V, int top_k, float top_p, struct cand *c)
{
    static const float thresholds[] = {1.0f / 64, 1.0f / 1024, 1.0f / 16384, 0.0f};
    int n = 0;
    for (size_t t = 0; t < sizeof thresholds / sizeof *thresholds; t++) {
        double mass = 0.0;
        n = 0;
        for (int j = 0; j < V; j++)
            if (p[j] >= thresholds[t]) {
                c[n++] = (struct cand){p[j], j};
                mass += p[j];
            }
        if (top_k > 0 ? n >= top_k : mass >= top_p)
            break;
    }
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    n = top_k > 0 && n > top_k ? top_k : n;
    if (top_p < 1.0f) {
        /* Top-p applies to top-k's renormalised distribution, else to all of p. */
        double total = top_k > 0 ? 0.0 : 1.0, cum = 0.0;
        for (int i = 0; top_k > 0 && i < n; i++)
            total += c[i].p;
        for (int i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= top_p * total) {
                n = i + 1;
                break;
            }
        }
    }
    return n;
}

/* Draw from the distribution p[V] (summing to 1 up to rounding) with u in [0, 1). */
static int draw_exact(const float *p, int V, double u)
{
    double cum = 0.0;
    int last = 0;
    for (int j = 0; j < V; j++)
        if (p[j] > 0.0f) {
            last = j;
            cum += p[j];
            if (cum > u)
                return j;
        }
    return last;
}

/* The next token of slot i from logits row r; its log-probability in *lp. */
static int choose(struct sample_ctx *s, int i, int r, float *lp)
{
    int V = s->m->cfg.vocab_size;
    const float *z = s->cache.logits + (size_t)r * V, *p = s->probs + (size_t)r * V;
    float lse = s->lse[r];
    if (s->o.temperature == 0.0f) {
        int best = 0;
        for (int j = 1; j < V; j++)
            best = z[j] > z[best] ? j : best;
        *lp = z[best] - lse;
        return best;
    }
    float scale = 1.0f / s->o.temperature;
    double u = pl_rng_uniform(&s->slots[i].rng);
    if (s->o.top_k == 0 && s->o.top_p >= 1.0f) {
        int id = draw_exact(p, V, u);
        *lp = scale * z[id] - lse;
        return id;
    }
    struct cand *c = (struct cand *)s->scratch + (size_t)i * V;
    int n = candidates(p, V, s->o.top_k, s->o.top_p, c);
    double kept = 0.0, cum = 0.0;
    for (int k = 0; k < n; k++)
        kept += c[k].p;
    int pick = n - 1;
    for (int k = 0; k < n; k++) {
        cum += c[k].p;
        if (cum > u * kept) {
            pick = k;
            break;
        }
    }
    *lp = (float)(scale * z[c[pick].id] - lse - log(kept));
    return c[pick].id;
}

/* ---- beam search ---- */

static int beam_cmp(const void *a, const void *b)
{
    const struct beam_cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->parent != y->parent)
        return x->parent - y->parent;
    return x->id - y->id;
}

/* The k largest logits of z[V], largest first (ties: lower id), into c. */
static int top_logits(const float *z, int V, int k, struct beam_cand *c)
{
    int n = 0;
    for (int j = 0; j < V; j++) {
        if (n == k && !(z[j] > c[n - 1].z))
            continue;
        int at = n < k ? n++ : n - 1;
        while (at > 0 && z[j] > c[at - 1].z) {
            c[at] = c[at - 1];
            at--;
        }
        c[at] = (struct beam_cand){.z = z[j], .id = j};
    }
    return n;
}

static double beam_norm(const struct sample_ctx *s, double sum, int len)
{
    return sum / pow((double)len, s->o.length_penalty);
}

/* Keep `parent` + token c as a finished hypothesis of lane ln if it is among
 * the lane's best `width`. cut >= 0 cuts its text there (a stop string). */
static void hyp_add(struct sample_ctx *s, struct sample_lane *ln, const struct sample_seq *parent,
                    const struct beam_cand *c, int finish, long cut)
{
    double score = beam_norm(s, c->score, parent->n + 1);
    struct sample_seq *h;
    if (ln->n_hyp < s->width) {
        h = &ln->hyp[ln->n_hyp++];
    } else {
        h = &ln->hyp[0];
        for (int k = 1; k < ln->n_hyp; k++)
            h = ln->hyp[k].score < h->score ? &ln->hyp[k] : h;
        if (score <= h->score)
            return;
    }
    seq_copy(h, parent);
    h->tokens[h->n] = c->id;
    h->logp[h->n] = c->lp;
    h->n++;
    h->sum = c->score;
    h->score = score;
    h->finish = finish;
    if (s->tok && finish != SAMPLE_EOS) {
        h->text_len = cut >= 0 ? (size_t)cut : append_piece(s, h, c->id);
        h->text[h->text_len] = '\0';
    }
}

/* Move the chosen continuations into the lane's slots: a parent's first child
 * keeps its slot, the others fork into slots no child keeps. */
static void beam_reorder(struct sample_ctx *s, int l, const struct beam_cand *kid, int n_kids)
{
    int W = s->width, base = l * W, where[W];
    bool kept[W];
    memset(kept, 0, sizeof kept);
    for (int i = 0; i < n_kids; i++) {
        where[i] = kept[kid[i].parent] ? -1 : kid[i].parent;
        kept[kid[i].parent] = true;
    }
    int next_free = 0;
    for (int i = 0; i < n_kids; i++) {
        if (where[i] >= 0)
            continue;
        while (kept[next_free])
            next_free++;
        kept[next_free] = true;
        where[i] = next_free;
        kv_fork(&s->cache, base + where[i], base + kid[i].parent);
        seq_copy(&s->slots[base + where[i]].q, &s->slots[base + kid[i].parent].q);
    }
    for (int b = 0; b < W; b++)
        s->slots[base + b].active = false;
    for (int i = 0; i < n_kids; i++) {
        struct sample_slot *sl = &s->slots[base + where[i]];
        struct sample_seq *q = &sl->q;
        q->tokens[q->n] = kid[i].id;
        q->logp[q->n] = kid[i].lp;
        q->n++;
        q->sum = kid[i].score;
        if (s->tok)
            q->text_len = append_piece(s, q, kid[i].id);
        sl->active = true;
        sl->pending = kid[i].id;
    }
}

/* One step of lane l's beam search over its active slots' logits rows:
 * the best 2 * width continuations of all beams, as Hugging Face ranks
 * them; ending ones (end token, stop string) among the first width become
 * hypotheses, the best width others the next beams. Returns the number of
 * beams that go on. */
static int beam_step(struct sample_ctx *s, int l)
{
    struct sample_lane *ln = &s->lane[l];
    int W = s->width, base = l * W, V = s->m->cfg.vocab_size, n = 0, len = 0;
    struct beam_cand *all = (struct beam_cand *)s->scratch + (size_t)l * 3 * W * W;
    struct beam_cand *kid = all + 2 * W * W;
    for (int b = 0; b < W; b++) {
        struct sample_slot *sl = &s->slots[base + b];
        if (!sl->active || sl->row < 0)
            continue;
        const float *z = s->cache.logits + (size_t)sl->row * V;
        int got = top_logits(z, V, 2 * W, all + n);
        for (int k = n; k < n + got; k++) {
            all[k].lp = all[k].z - s->lse[sl->row];
            all[k].score = sl->q.sum + all[k].lp;
            all[k].parent = b;
        }
        n += got;
        len = sl->q.n + 1;
    }
    qsort(all, (size_t)n, sizeof *all, beam_cmp);
    int n_kids = 0;
    for (int r = 0; r < n && r < 2 * W && n_kids < W; r++) {
        struct sample_seq *parent = &s->slots[base + all[r].parent].q;
        long cut = -1;
        if (s->tok && all[r].id != s->o.eos)
            cut =
                stop_at(&s->o, parent->text, parent->text_len, append_piece(s, parent, all[r].id));
        if (all[r].id == s->o.eos || cut >= 0) {
            if (r < W)
                hyp_add(s, ln, parent, &all[r], cut >= 0 ? SAMPLE_STOP : SAMPLE_EOS, cut);
            continue;
        }
        kid[n_kids++] = all[r];
    }
    bool at_end = len >= s->o.max_new_tokens || ln->n_ids + len >= s->o.max_len;
    if (n_kids == 0) {
        ln->done = true;
    } else if (at_end) {
        for (int i = 0; i < n_kids; i++)
            hyp_add(s, ln, &s->slots[base + kid[i].parent].q, &kid[i], SAMPLE_LENGTH, -1);
        ln->done = true;
    } else if (ln->n_hyp == W) {
        /* Hugging Face's early_stopping=False: stop once the best running
         * beam, at its present length, cannot beat the worst hypothesis. */
        double worst = ln->hyp[0].score;
        for (int k = 1; k < W; k++)
            worst = ln->hyp[k].score < worst ? ln->hyp[k].score : worst;
        ln->done = worst >= beam_norm(s, kid[0].score, len);
    }
    if (ln->done)
        return 0;
    beam_reorder(s, l, kid, n_kids);
    return n_kids;
}

/* ---- the scheduler ---- */

static int check_prompts(const struct sample_ctx *s, const struct sample_prompt *p, int n,
                         struct pl_err *err)
{
    int V = s->m->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        if (p[i].n < 0)
            return pl_errf(err, PL_EINVAL, "prompt %d: negative length %d", i, p[i].n);
        for (int t = 0; t < p[i].n; t++)
            if (p[i].ids[t] < 0 || p[i].ids[t] >= V)
                return pl_errf(err, PL_EINVAL,
                               "prompt %d: token id %d at position %d is outside the vocabulary "
                               "(%d)",
                               i, p[i].ids[t], t, V);
        if ((p[i].n ? p[i].n : 1) >= s->o.max_len)
            return pl_errf(err, PL_EINVAL, "prompt %d: %d tokens leave no room to generate in %d",
                           i, p[i].n, s->o.max_len);
    }
    return PL_OK;
}

static void lane_start(struct sample_ctx *s, int l, const struct sample_prompt *p, int at)
{
    struct sample_lane *ln = &s->lane[l];
    ln->prompt = at;
    ln->index = p->index;
    ln->ids = p->n ? p->ids : &s->bos;
    ln->n_ids = p->n ? p->n : 1;
    ln->fed = 0;
    ln->done = false;
    ln->n_hyp = 0;
    for (int k = 0; k < s->width; k++) {
        struct sample_slot *sl = &s->slots[l * s->width + k];
        seq_reset(&sl->q);
        sl->pending = sl->row = -1;
        sl->active = false;
        s->cache.len[l * s->width + k] = 0;
        uint64_t stream = (uint64_t)p->index * (uint64_t)s->o.n + (uint64_t)k;
        pl_rng_seed(&sl->rng, s->o.seed ^ (0x9e3779b97f4a7c15ULL * (stream + 1)));
    }
}

/* This step's passes: one token for every sequence with one pending, then
 * prompt tokens of lanes still prefilling in what room is left. Fills
 * s->steps: slots [n], counts [n], lanes [n] (-1 for a decode), tokens. */
static int plan_step(struct sample_ctx *s)
{
    int slots = s->lanes * s->width, n = 0, rows = 0;
    int *slot = s->steps, *count = slot + slots, *lane = count + slots, *tokens = lane + slots;
    for (int i = 0; i < slots; i++) {
        s->slots[i].row = -1;
        if (s->slots[i].active && s->slots[i].pending >= 0) {
            slot[n] = i;
            count[n] = 1;
            lane[n++] = -1;
            tokens[rows++] = s->slots[i].pending;
        }
    }
    for (int l = 0; l < s->lanes && rows < s->cache.max_rows; l++) {
        struct sample_lane *ln = &s->lane[l];
        if (ln->prompt < 0 || ln->fed == ln->n_ids)
            continue;
        int c = ln->n_ids - ln->fed, room = s->cache.max_rows - rows;
        c = c < room ? c : room;
        slot[n] = l * s->width;
        count[n] = c;
        lane[n++] = l;
        memcpy(tokens + rows, ln->ids + ln->fed, sizeof(int) * c);
        rows += c;
    }
    return n;
}

/* Point every sequence that chooses a token this step at its logits row:
 * decodes at theirs, and a lane whose prompt is now all in the cache at its
 * last prompt row (sampling forks the prompt into every slot of the lane). */
static void assign_rows(struct sample_ctx *s, int n)
{
    int slots = s->lanes * s->width;
    const int *slot = s->steps, *count = slot + slots, *lane = count + slots;
    for (int e = 0; e < n; e++) {
        if (lane[e] < 0) {
            s->slots[slot[e]].row = e;
            continue;
        }
        struct sample_lane *ln = &s->lane[lane[e]];
        ln->fed += count[e];
        if (ln->fed < ln->n_ids)
            continue;
        int base = lane[e] * s->width, fan = s->o.beam > 0 ? 1 : s->width;
        for (int k = 0; k < fan; k++) {
            if (k > 0)
                kv_fork(&s->cache, base + k, base);
            s->slots[base + k].active = true;
            s->slots[base + k].row = e;
        }
    }
}

static struct sample_completion completion(const struct sample_ctx *s, int prompt, int k,
                                           const struct sample_seq *q)
{
    return (struct sample_completion){.prompt = prompt,
                                      .k = k,
                                      .tokens = q->tokens,
                                      .logp = q->logp,
                                      .n_tokens = q->n,
                                      .text = s->tok ? q->text : NULL,
                                      .text_len = q->text_len,
                                      .finish = q->finish,
                                      .score = s->o.beam > 0 ? q->score : q->sum};
}

/* Choose this step's tokens: sampling and greedy slot by slot in parallel
 * (each slot has its own RNG and scratch), beam search lane by lane. */
static void choose_all(struct sample_ctx *s, const struct sample_hooks *hooks)
{
    int slots = s->lanes * s->width;
    if (s->o.beam > 0) {
        for (int l = 0; l < s->lanes; l++)
            if (s->lane[l].prompt >= 0 && s->lane[l].fed == s->lane[l].n_ids && !s->lane[l].done)
                s->tokens += beam_step(s, l);
        return;
    }
    int jobs = 0;
    for (int i = 0; i < slots; i++)
        jobs += s->slots[i].row >= 0;
#pragma omp parallel for schedule(dynamic) if (jobs > 1)
    for (int i = 0; i < slots; i++) {
        struct sample_slot *sl = &s->slots[i];
        if (sl->row < 0)
            continue;
        float lp;
        int id = choose(s, i, sl->row, &lp);
        sl->pending = seq_push(s, &sl->q, s->lane[i / s->width].n_ids, id, lp) ? id : -1;
    }
    s->tokens += jobs;
    for (int i = 0; hooks && hooks->token && i < slots; i++)
        if (s->slots[i].row >= 0) {
            struct sample_completion c =
                completion(s, s->lane[i / s->width].prompt, i % s->width, &s->slots[i].q);
            hooks->token(hooks->user, &c);
        }
}

static bool lane_finished(const struct sample_ctx *s, int l)
{
    const struct sample_lane *ln = &s->lane[l];
    if (ln->prompt < 0 || ln->fed < ln->n_ids)
        return false;
    if (s->o.beam > 0)
        return ln->done;
    for (int k = 0; k < s->width; k++)
        if (s->slots[l * s->width + k].q.finish == SAMPLE_RUNNING)
            return false;
    return true;
}

static int hyp_cmp(const void *a, const void *b)
{
    const struct sample_seq *x = a, *y = b;
    return x->score > y->score ? -1 : x->score < y->score;
}

/* Hand every finished lane's completions to the done hook and free it. */
static int finish_lanes(struct sample_ctx *s, const struct sample_hooks *hooks, int *busy,
                        struct pl_err *err)
{
    for (int l = 0; l < s->lanes; l++) {
        if (!lane_finished(s, l))
            continue;
        struct sample_lane *ln = &s->lane[l];
        if (s->o.beam > 0)
            qsort(ln->hyp, (size_t)ln->n_hyp, sizeof *ln->hyp, hyp_cmp);
        int n = s->o.beam > 0 ? (ln->n_hyp < s->o.n ? ln->n_hyp : s->o.n) : s->width;
        for (int k = 0; k < n; k++)
            s->comp[k] = completion(s, ln->prompt, k,
                                    s->o.beam > 0 ? &ln->hyp[k] : &s->slots[l * s->width + k].q);
        ln->prompt = -1;
        --*busy;
        for (int k = 0; k < s->width; k++)
            s->slots[l * s->width + k].active = false;
        int rc = hooks && hooks->done ? hooks->done(hooks->user, s->comp, n, err) : PL_OK;
        if (rc)
            return rc;
    }
    return PL_OK;
}

int sample_generate(struct sample_ctx *s, const struct sample_prompt *prompts, int n_prompts,
                    const struct sample_hooks *hooks, struct pl_err *err)
{
    int rc = check_prompts(s, prompts, n_prompts, err);
    if (rc)
        return rc;
    for (int l = 0; l < s->lanes; l++)
        s->lane[l].prompt = -1;
    int next = 0, busy = 0, V = s->m->cfg.vocab_size;
    float scale = s->o.temperature > 0.0f && s->o.beam == 0 ? 1.0f / s->o.temperature : 1.0f;
    while (next < n_prompts || busy > 0) {
        for (int l = 0; l < s->lanes && next < n_prompts; l++)
            if (s->lane[l].prompt < 0) {
                lane_start(s, l, &prompts[next], next);
                next++;
                busy++;
            }
        int n = plan_step(s), slots = s->lanes * s->width;
        rc = kv_extend(&s->cache, n, s->steps, s->steps + slots, s->steps + 3 * slots, err);
        if (rc)
            return rc;
        op_softmax_fwd(s->probs, s->lse, s->cache.logits, scale, n, V);
        assign_rows(s, n);
        choose_all(s, hooks);
        rc = finish_lanes(s, hooks, &busy, err);
        if (rc)
            return rc;
    }
    return PL_OK;
}
