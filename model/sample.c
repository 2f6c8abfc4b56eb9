#include "sample.h"

#include "ckpt.h"
#include "datasets/ds.h"
#include "ops.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the KV cache ---- */

/* Views of the cache's activation block. */
struct cache_views {
    float *x, *ln, *qkv, *atty, *proj, *fch; /* [R,C] x2, [R,3C], [R,C] x2, [R,4C] */
    float *mean, *rstd;                      /* [R] */
    float *last, *hidden;                    /* [S,C]: each sequence's last row, then ln_f of it */
    float *scratch;                          /* attention scratch */
};

/* Lay out (or, with c->work NULL, only measure) the activation block. */
static size_t cache_layout(const struct sample_cache *c, struct cache_views *v)
{
    size_t R = (size_t)c->max_rows, S = (size_t)c->max_seqs, C = (size_t)c->m->cfg.n_embd;
    float **view[] = {&v->x,    &v->ln,   &v->qkv,  &v->atty,   &v->proj,   &v->fch,
                      &v->mean, &v->rstd, &v->last, &v->hidden, &v->scratch};
    size_t scratch = (size_t)op_attention_kv_scratch(c->max_len, c->threads);
    size_t len[] = {R * C, R * C, R * 3 * C, R * C, R * C, R * 4 * C, R, R, S * C, S * C, scratch};
    size_t off = 0;
    for (size_t i = 0; i < sizeof view / sizeof *view; i++) {
        *view[i] = c->work ? c->work + off : NULL;
        off += len[i];
    }
    return off;
}

int sample_cache_init(struct sample_cache *c, const struct gpt *m, int max_seqs, int max_len,
                      int max_rows, struct pl_err *err)
{
    memset(c, 0, sizeof *c);
    const struct gpt_config *g = &m->cfg;
    if (max_seqs <= 0 || max_len <= 0 || max_len > g->n_positions || max_rows < max_seqs)
        return pl_errf(err, PL_EINVAL,
                       "kv cache: %d sequences of %d tokens, %d rows a pass: does not fit "
                       "(context %d)",
                       max_seqs, max_len, max_rows, g->n_positions);
    c->m = m;
    c->max_seqs = max_seqs;
    c->max_len = max_len;
    c->max_rows = max_rows;
    c->threads = omp_get_max_threads();
    c->kv_floats = (size_t)g->n_layer * 2 * max_seqs * max_len * g->n_embd;
    struct cache_views v;
    c->work_floats = cache_layout(c, &v);
    c->len = pl_calloc((size_t)max_seqs, sizeof *c->len);
    c->ibuf = pl_malloc(sizeof(int) * ((size_t)max_rows + (size_t)max_seqs));
    c->kv = pl_alloc_big(c->kv_floats * sizeof(float));
    c->work = pl_alloc_big(c->work_floats * sizeof(float));
    c->logits = pl_alloc_big((size_t)max_seqs * g->vocab_size * sizeof(float));
    if (!c->len || !c->ibuf || !c->kv || !c->work || !c->logits) {
        sample_cache_release(c);
        return pl_oom(err, "kv cache");
    }
    return PL_OK;
}

void sample_cache_release(struct sample_cache *c)
{
    pl_free(c->len);
    pl_free(c->ibuf);
    pl_free_big(c->kv, c->kv_floats * sizeof(float));
    pl_free_big(c->work, c->work_floats * sizeof(float));
    if (c->m)
        pl_free_big(c->logits, (size_t)c->max_seqs * c->m->cfg.vocab_size * sizeof(float));
    memset(c, 0, sizeof *c);
}

/* Keys (which = 0: [C/NH, max_len]) or values (1: [max_len, C/NH]) of layer
 * l, slot s, head h. */
static float *cache_head(const struct sample_cache *c, int l, int which, int s, int h)
{
    size_t hs = (size_t)c->m->cfg.n_embd / c->m->cfg.n_head, NH = (size_t)c->m->cfg.n_head;
    return c->kv + ((((size_t)l * 2 + which) * c->max_seqs + s) * NH + h) * c->max_len * hs;
}

static int check_extend(const struct sample_cache *c, int n, const int *slot, const int *count,
                        const int *tokens, struct pl_err *err)
{
    int V = c->m->cfg.vocab_size;
    if (n <= 0 || n > c->max_seqs)
        return pl_errf(err, PL_EINVAL, "kv cache: %d sequences (1..%d allowed)", n, c->max_seqs);
    long rows = 0;
    for (int i = 0; i < n; i++) {
        if (slot[i] < 0 || slot[i] >= c->max_seqs || count[i] <= 0)
            return pl_errf(err, PL_EINVAL, "kv cache: sequence %d: slot %d, %d tokens", i, slot[i],
                           count[i]);
        for (int j = 0; j < i; j++)
            if (slot[j] == slot[i])
                return pl_errf(err, PL_EINVAL, "kv cache: slot %d appears twice", slot[i]);
        if (c->len[slot[i]] + count[i] > c->max_len)
            return pl_errf(err, PL_EINVAL, "kv cache: slot %d would hold %d tokens (max %d)",
                           slot[i], c->len[slot[i]] + count[i], c->max_len);
        rows += count[i];
    }
    if (rows > c->max_rows)
        return pl_errf(err, PL_EINVAL, "kv cache: %ld tokens in one pass (max %d)", rows,
                       c->max_rows);
    for (long r = 0; r < rows; r++)
        if (tokens[r] < 0 || tokens[r] >= V)
            return pl_errf(err, PL_EINVAL, "token id %d is outside the vocabulary (%d)", tokens[r],
                           V);
    return PL_OK;
}

/* The transformer blocks over N new rows in v->x: GPT-2's block, with the
 * attention reading each sequence's cached keys and values. */
static void cache_blocks(struct sample_cache *c, struct cache_views *v, int n, const int *slot,
                         const int *past, const int *count, int N)
{
    const struct gpt *m = c->m;
    int C = m->cfg.n_embd, NH = m->cfg.n_head;
    float eps = m->cfg.layer_norm_epsilon;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const struct gpt_layer_w *w = &m->w.h[l];
        op_layernorm_fwd(v->ln, v->mean, v->rstd, v->x, w->ln1w, w->ln1b, N, C, eps);
        op_matmul_fwd_decode(v->qkv, v->ln, w->qkvw, w->qkvb, N, C, 3 * C);
        op_attention_kv_fwd(v->atty, cache_head(c, l, 0, 0, 0), cache_head(c, l, 1, 0, 0),
                            v->scratch, c->threads, v->qkv, slot, past, count, n, c->max_len, C,
                            NH);
        op_matmul_fwd_decode(v->proj, v->atty, w->attprojw, w->attprojb, N, C, C);
        op_add_inplace(v->x, v->proj, (long)N * C);
        op_layernorm_fwd(v->ln, v->mean, v->rstd, v->x, w->ln2w, w->ln2b, N, C, eps);
        op_matmul_fwd_decode(v->fch, v->ln, w->fcw, w->fcb, N, C, 4 * C);
        op_gelu_fwd(v->fch, v->fch, (long)N * 4 * C);
        op_matmul_fwd_decode(v->proj, v->fch, w->fcprojw, w->fcprojb, N, 4 * C, C);
        op_add_inplace(v->x, v->proj, (long)N * C);
    }
}

int sample_cache_extend(struct sample_cache *c, int n, const int *slot, const int *count,
                        const int *tokens, struct pl_err *err)
{
    int rc = check_extend(c, n, slot, count, tokens, err);
    if (rc)
        return rc;
    const struct gpt *m = c->m;
    int C = m->cfg.n_embd;
    int *pos = c->ibuf, *past = pos + c->max_rows;
    int N = 0;
    for (int i = 0; i < n; i++) {
        past[i] = c->len[slot[i]];
        for (int j = 0; j < count[i]; j++)
            pos[N++] = past[i] + j;
    }
    struct cache_views v;
    cache_layout(c, &v);
    op_embed_fwd(v.x, tokens, pos, m->w.wte, m->w.wpe, N, c->max_len, C);
    cache_blocks(c, &v, n, slot, past, count, N);
    /* Only each sequence's last row needs the final LayerNorm and the LM head. */
    for (int i = 0, r = 0; i < n; i++) {
        r += count[i];
        memcpy(v.last + (size_t)i * C, v.x + (size_t)(r - 1) * C, sizeof(float) * C);
        c->len[slot[i]] += count[i];
    }
    op_layernorm_fwd(v.hidden, v.mean, v.rstd, v.last, m->w.lnfw, m->w.lnfb, n, C,
                     m->cfg.layer_norm_epsilon);
    op_logits_fwd(c->logits, v.hidden, m->w.wte, n, m->cfg.vocab_size, C);
    c->rows += N;
    return PL_OK;
}

void sample_cache_fork(struct sample_cache *c, int dst, int src)
{
    PL_ASSERT(dst != src && dst >= 0 && src >= 0 && dst < c->max_seqs && src < c->max_seqs);
    size_t hs = (size_t)c->m->cfg.n_embd / c->m->cfg.n_head, len = (size_t)c->len[src];
    for (int l = 0; l < c->m->cfg.n_layer; l++)
        for (int h = 0; h < c->m->cfg.n_head; h++) {
            float *kd = cache_head(c, l, 0, dst, h), *ks = cache_head(c, l, 0, src, h);
            for (size_t d = 0; d < hs; d++)
                memcpy(kd + d * c->max_len, ks + d * c->max_len, sizeof(float) * len);
            memcpy(cache_head(c, l, 1, dst, h), cache_head(c, l, 1, src, h),
                   sizeof(float) * hs * len);
        }
    c->len[dst] = c->len[src];
}

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
    rc = sample_cache_init(&s->cache, m, slots, s->o.max_len, (int)rows, err);
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
    sample_cache_release(&s->cache);
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
        sample_cache_fork(&s->cache, base + where[i], base + kid[i].parent);
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
                sample_cache_fork(&s->cache, base + k, base);
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
        rc = sample_cache_extend(&s->cache, n, s->steps, s->steps + slots, s->steps + 3 * slots,
                                 err);
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

/* ---- plumb generate ---- */

/* Load the frozen model and tokenizer of dir; both releasable on failure. */
static int load_model(struct gpt *m, struct tok *t, const char *dir, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = ckpt_load(m, dir, &go, err);
    return rc ? rc : tok_load(t, dir, err);
}

/* max_len for prompts of up to `longest` tokens, when the options leave it 0. */
static int fit_max_len(const struct sample_opts *o, const struct gpt_config *cfg, int longest)
{
    long want = (long)(longest ? longest : 1) + o->max_new_tokens;
    return o->max_len ? o->max_len : (int)(want < cfg->n_positions ? want : cfg->n_positions);
}

struct text_out {
    FILE *f;
    int n;        /* completions */
    size_t held;  /* bytes a stop string could still take back */
    size_t shown; /* bytes of completion 0 written */
    bool headed;  /* completion 0's header written */
};

static void text_header(struct text_out *t, int k)
{
    if (t->n > 1)
        fprintf(t->f, "--- completion %d of %d ---\n", k + 1, t->n);
}

/* Completion 0 as it grows, minus what a stop string could still cut. */
static void text_token(void *user, const struct sample_completion *c)
{
    struct text_out *t = user;
    if (c->k != 0)
        return;
    if (!t->headed)
        text_header(t, 0);
    t->headed = true;
    size_t upto = c->text_len > t->held ? c->text_len - t->held : 0;
    if (upto > t->shown) {
        pl_write_safe(t->f, c->text, c->text_len, t->shown, upto);
        fflush(t->f);
        t->shown = upto;
    }
}

static int text_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    struct text_out *t = user;
    for (int k = 0; k < n; k++) {
        size_t from = k == 0 ? t->shown : 0;
        if (k > 0 || !t->headed)
            text_header(t, k);
        pl_write_safe(t->f, c[k].text, c[k].text_len, from, c[k].text_len);
        fputc('\n', t->f);
    }
    fflush(t->f);
    return ferror(t->f) ? pl_errf(err, PL_EIO, "cannot write the output: %s", strerror(errno))
                        : PL_OK;
}

/* Why prompt ids[0..n) cannot be generated from (written to why), or NULL:
 * ids the model lacks (the tokenizer is not the model's), or no room left. */
static const char *prompt_problem(const int *ids, size_t n, const struct gpt_config *cfg, char *why,
                                  size_t cap)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= cfg->vocab_size) {
            snprintf(why, cap,
                     "token id %d from the tokenizer is outside the model's vocabulary (%d)",
                     ids[i], cfg->vocab_size);
            return why;
        }
    if ((n ? n : 1) >= (size_t)cfg->n_positions) {
        snprintf(why, cap,
                 "prompt of %zu tokens leaves no room to generate in the model's context of %d", n,
                 cfg->n_positions);
        return why;
    }
    return NULL;
}

int sample_text(const char *dir, const char *prompt, const struct sample_opts *o, FILE *out,
                struct pl_err *err)
{
    struct gpt m;
    struct tok t;
    struct tok_buf ids = {0};
    struct sample_ctx s = {0};
    int rc = load_model(&m, &t, dir, err);
    if (!rc)
        rc = tok_encode(&t, &ids, prompt, strlen(prompt), 0, err);
    char why[160];
    if (!rc && prompt_problem(ids.ids, ids.n, &m.cfg, why, sizeof why))
        rc = pl_errf(err, PL_EINVAL, "%s", why);
    if (!rc) {
        struct sample_opts so = *o;
        so.max_len = fit_max_len(o, &m.cfg, (int)ids.n);
        /* One prompt never fills more slots than its own sequences. */
        int width = o->beam > 0 ? o->beam : o->n;
        so.batch = o->batch < width ? o->batch : width;
        rc = sample_init(&s, &m, &t, &so, err);
    }
    if (!rc) {
        size_t held = 0;
        for (int i = 0; i < o->n_stop; i++)
            held = strlen(o->stop[i]) - 1 > held ? strlen(o->stop[i]) - 1 : held;
        struct text_out to = {.f = out, .n = o->n, .held = held};
        struct sample_hooks hooks = {.user = &to, .token = text_token, .done = text_done};
        struct sample_prompt p = {.ids = ids.ids, .n = (int)ids.n};
        rc = sample_generate(&s, &p, 1, &hooks, err);
    }
    sample_release(&s);
    tok_buf_release(&ids);
    tok_release(&t);
    gpt_release(&m);
    return rc;
}

/* ---- plumb sample: the prompts ---- */

/* Every prompt of a file, its tokens, and an id -> index table. */
struct prompt_set {
    struct ds_arena arena;   /* ids and texts */
    const char **id, **text; /* [n] */
    long *line;              /* [n] */
    size_t *start;           /* [n + 1]: prompt i's tokens are ids[start[i] .. start[i + 1]) */
    bool *done;              /* [n] already in the output */
    int n, cap;
    struct tok_buf ids;
    int *table; /* open addressing: index + 1, 0 empty */
    size_t mask;
};

static void prompt_set_release(struct prompt_set *p)
{
    ds_arena_release(&p->arena);
    pl_free(p->id);
    pl_free(p->text);
    pl_free(p->line);
    pl_free(p->start);
    pl_free(p->done);
    tok_buf_release(&p->ids);
    pl_free(p->table);
    memset(p, 0, sizeof *p);
}

static size_t hash_str(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

/* Index of the prompt with this id, or -1. */
static int prompt_find(const struct prompt_set *p, const char *id, size_t len)
{
    if (!p->table)
        return -1;
    for (size_t h = hash_str(id, len) & p->mask;; h = (h + 1) & p->mask) {
        int i = p->table[h] - 1;
        if (i < 0)
            return -1;
        if (strlen(p->id[i]) == len && memcmp(p->id[i], id, len) == 0)
            return i;
    }
}

/* Room for one more prompt: the arrays double, the table stays under half full. */
static int prompt_grow(struct prompt_set *p)
{
    if (p->n + 1 < p->cap)
        return PL_OK;
    int cap = p->cap ? 2 * p->cap : 64;
    const char **id = pl_realloc(p->id, sizeof *id * cap);
    if (id)
        p->id = id;
    const char **text = pl_realloc(p->text, sizeof *text * cap);
    if (text)
        p->text = text;
    long *line = pl_realloc(p->line, sizeof *line * cap);
    if (line)
        p->line = line;
    size_t *start = pl_realloc(p->start, sizeof *start * (cap + 1));
    if (start)
        p->start = start;
    int *table = pl_calloc((size_t)cap * 2, sizeof *table);
    if (!id || !text || !line || !start || !table)
        return pl_free(table), PL_ENOMEM;
    pl_free(p->table);
    p->table = table;
    p->mask = (size_t)cap * 2 - 1;
    p->cap = cap;
    for (int i = 0; i < p->n; i++) {
        size_t h = hash_str(p->id[i], strlen(p->id[i])) & p->mask;
        while (p->table[h])
            h = (h + 1) & p->mask;
        p->table[h] = i + 1;
    }
    return PL_OK;
}

/* Add one record: id unique, prompt encoded and fit for the model. */
static int prompt_add(struct prompt_set *p, const struct ds_jsonl *r, long line, const char *id,
                      const char *text, const struct tok *t, const struct gpt_config *cfg,
                      struct pl_err *err)
{
    int dup = prompt_find(p, id, strlen(id));
    if (dup >= 0)
        return ds_jsonl_errf(r, err, "duplicate id '%s' (first on line %ld)", id, p->line[dup]);
    if (prompt_grow(p))
        return pl_oom(err, "prompts");
    size_t before = p->ids.n;
    int rc = tok_encode(t, &p->ids, text, strlen(text), 0, err);
    if (rc)
        return rc;
    char why[160];
    if (prompt_problem(p->ids.ids + before, p->ids.n - before, cfg, why, sizeof why))
        return ds_jsonl_errf(r, err, "%s", why);
    p->id[p->n] = ds_arena_strndup(&p->arena, id, strlen(id));
    p->text[p->n] = ds_arena_strndup(&p->arena, text, strlen(text));
    if (!p->id[p->n] || !p->text[p->n])
        return pl_oom(err, "prompts");
    p->line[p->n] = line;
    p->start[p->n] = before;
    p->start[p->n + 1] = p->ids.n;
    size_t h = hash_str(id, strlen(id)) & p->mask;
    while (p->table[h])
        h = (h + 1) & p->mask;
    p->table[h] = ++p->n;
    return PL_OK;
}

/* Read and check every {"id", "prompt"} of path. */
static int prompts_load(struct prompt_set *p, const char *path, const struct tok *t,
                        const struct gpt_config *cfg, struct pl_err *err)
{
    memset(p, 0, sizeof *p);
    struct ds_jsonl r;
    int rc = ds_jsonl_init(&r, path, 0, err);
    cJSON *obj = NULL;
    long line = 0;
    while (!rc && !(rc = ds_jsonl_next(&r, &obj, &line, err)) && obj) {
        const char *id, *text;
        rc = ds_get_str(&r, obj, "id", &id, err);
        if (!rc)
            rc = ds_get_str(&r, obj, "prompt", &text, err);
        if (!rc)
            rc = prompt_add(p, &r, line, id, text, t, cfg, err);
        cJSON_Delete(obj);
    }
    ds_jsonl_release(&r);
    if (!rc) {
        p->done = pl_calloc((size_t)p->n, sizeof *p->done);
        rc = p->done ? PL_OK : pl_oom(err, "prompts");
    }
    return rc;
}

/* ---- plumb sample: the output ---- */

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r", s[i]))
            return false;
    return true;
}

/* The whole of path in *buf (pl_free it), *len bytes. */
static int slurp(const char *path, FILE *f, char **buf, size_t *len, struct pl_err *err)
{
    size_t cap = 0;
    *buf = NULL;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 65536;
            char *p = pl_realloc(*buf, cap);
            if (!p)
                return pl_oom(err, path);
            *buf = p;
        }
        size_t got = fread(*buf + *len, 1, cap - *len, f);
        *len += got;
        if (got == 0)
            break;
    }
    return ferror(f) ? pl_errf(err, PL_EIO, "cannot read '%s': %s", path, strerror(errno)) : PL_OK;
}

/* Mark the prompts path already holds a record of. A last line without its
 * newline was cut short by a crash: *keep is then the file's length without
 * it, else -1. */
static int outputs_read(struct prompt_set *p, const char *path, long *keep, struct pl_err *err)
{
    *keep = -1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT
                   ? PL_OK
                   : pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    char *buf;
    size_t len, at = 0;
    int rc = slurp(path, f, &buf, &len, err);
    fclose(f);
    for (long line = 1; !rc && at < len; line++) {
        char *nl = memchr(buf + at, '\n', len - at);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (buf + at));
        if (!blank(buf + at, n)) {
            cJSON *obj = cJSON_ParseWithLength(buf + at, n);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
            int i =
                cJSON_IsString(id) ? prompt_find(p, id->valuestring, strlen(id->valuestring)) : -1;
            if (!cJSON_IsString(id))
                rc = pl_errf(err, PL_EFORMAT,
                             "%s:%ld: expected a samples record with a string 'id'", path, line);
            else if (i >= 0)
                p->done[i] = true;
            cJSON_Delete(obj);
        }
        at = (size_t)(nl + 1 - buf);
    }
    if (!rc && at < len)
        *keep = (long)at;
    pl_free(buf);
    return rc;
}

/* {"id", "prompt", "completions", "tokens", "logprobs", "finish", "model"} and a newline. */
static void record_line(struct pl_buf *b, const char *id, const char *prompt, const char *model,
                      const struct sample_completion *c, int n)
{
    char num[32];
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    pl_buf_json(b, id, strlen(id));
    pl_buf_str(b, ",\"prompt\":");
    pl_buf_json(b, prompt, strlen(prompt));
    pl_buf_str(b, ",\"completions\":[");
    for (int k = 0; k < n; k++) {
        pl_buf_str(b, k ? "," : "");
        pl_buf_json(b, c[k].text, c[k].text_len);
    }
    pl_buf_str(b, "],\"tokens\":[");
    for (int k = 0; k < n; k++) {
        pl_buf_str(b, k ? ",[" : "[");
        for (int t = 0; t < c[k].n_tokens; t++) {
            snprintf(num, sizeof num, t ? ",%d" : "%d", c[k].tokens[t]);
            pl_buf_str(b, num);
        }
        pl_buf_str(b, "]");
    }
    pl_buf_str(b, "],\"logprobs\":[");
    for (int k = 0; k < n; k++) {
        pl_buf_str(b, k ? ",[" : "[");
        for (int t = 0; t < c[k].n_tokens; t++) {
            float lp = c[k].logp[t];
            if (isfinite(lp))
                snprintf(num, sizeof num, t ? ",%.9g" : "%.9g", lp);
            else
                snprintf(num, sizeof num, t ? ",null" : "null");
            pl_buf_str(b, num);
        }
        pl_buf_str(b, "]");
    }
    pl_buf_str(b, "],\"finish\":[");
    for (int k = 0; k < n; k++) {
        snprintf(num, sizeof num, "%s\"%s\"", k ? "," : "", sample_finish_name(c[k].finish));
        pl_buf_str(b, num);
    }
    pl_buf_str(b, "],\"model\":");
    pl_buf_json(b, model, strlen(model));
    pl_buf_str(b, "}\n");
}

static int write_all(int fd, const char *p, size_t n, const char *path, struct pl_err *err)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return pl_errf(err, PL_EIO, "cannot write '%s': %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return PL_OK;
}

/* Open path for appending, first cutting it to keep bytes when keep >= 0. */
static int output_open(const char *path, long keep, int *fd, struct pl_err *err)
{
    *fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (*fd < 0)
        return pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (keep >= 0 && (ftruncate(*fd, (off_t)keep) != 0 || fsync(*fd) != 0))
        return pl_errf(err, PL_EIO, "cannot drop the cut-short last line of '%s': %s", path,
                       strerror(errno));
    return PL_OK;
}

struct progress {
    FILE *f;
    bool tty;
    double t0, shown;
    long done, total;
};

/* "done/total prompts, tokens/s, ETA": redrawn in place at most ten times a
 * second on a terminal, a line every five seconds otherwise; always at last. */
static void progress_show(struct progress *p, long tokens, bool last)
{
    double now = pl_now(), dt = now - p->t0;
    if (!p->f || (!last && now - p->shown < (p->tty ? 0.1 : 5.0)))
        return;
    p->shown = now;
    long eta = p->done ? (long)(dt / p->done * (p->total - p->done) + 0.5) : 0;
    char bar[24] = "";
    if (p->tty) {
        int fill = p->total ? (int)(20 * p->done / p->total) : 20;
        for (int i = 0; i < 20; i++)
            bar[i + 1] = i < fill ? '#' : '.';
        bar[0] = '[';
        bar[21] = ']';
        bar[22] = ' ';
    }
    fprintf(p->f, "%ssample %s%ld/%ld prompts, %.0f tokens/s, ETA %ld:%02ld:%02ld%s",
            p->tty ? "\r" : "", bar, p->done, p->total, dt > 0 ? tokens / dt : 0.0, eta / 3600,
            eta / 60 % 60, eta % 60, p->tty && !last ? "" : "\n");
    fflush(p->f);
}

struct file_out {
    int fd;
    const char *path, *model;
    const struct prompt_set *set;
    const int *which; /* position in the todo list -> prompt of the set */
    const struct sample_ctx *s;
    struct pl_buf b;
    struct progress bar;
};

/* One prompt's record: one write, then fsync, so that a crash loses at most
 * this line, and a rerun sees exactly what was written. */
static int file_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    struct file_out *o = user;
    int i = o->which[c[0].prompt];
    record_line(&o->b, o->set->id[i], o->set->text[i], o->model, c, n);
    if (o->b.oom)
        return pl_oom(err, "a samples record");
    int rc = write_all(o->fd, o->b.p, o->b.len, o->path, err);
    if (!rc && fsync(o->fd) != 0)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", o->path, strerror(errno));
    o->bar.done++;
    progress_show(&o->bar, o->s->tokens, false);
    return rc;
}

/* Generate for every prompt of set not yet done, appending to the open fd. */
static int sample_todo(struct file_out *fo, const struct gpt *m, const struct tok *t,
                       const struct sample_opts *o, struct pl_err *err)
{
    const struct prompt_set *set = fo->set;
    struct sample_prompt *todo = pl_malloc(sizeof *todo * (set->n ? set->n : 1));
    int *which = pl_malloc(sizeof *which * (set->n ? set->n : 1));
    struct sample_ctx s = {0};
    int rc = todo && which ? PL_OK : pl_oom(err, "prompts"), n = 0, longest = 0;
    for (int i = 0; !rc && i < set->n; i++)
        if (!set->done[i]) {
            int len = (int)(set->start[i + 1] - set->start[i]);
            todo[n] = (struct sample_prompt){set->ids.ids + set->start[i], len, i};
            which[n++] = i;
            longest = len > longest ? len : longest;
        }
    fo->bar.total = n;
    if (!rc && n > 0) {
        struct sample_opts so = *o;
        so.max_len = fit_max_len(o, &m->cfg, longest);
        /* No more slots than the prompts left can fill (results do not depend on it). */
        long need = (long)n * (o->beam > 0 ? o->beam : o->n);
        so.batch = need < o->batch ? (int)need : o->batch;
        rc = sample_init(&s, m, t, &so, err);
        fo->s = &s;
        fo->which = which;
        struct sample_hooks hooks = {.user = fo, .done = file_done};
        if (!rc)
            rc = sample_generate(&s, todo, n, &hooks, err);
        progress_show(&fo->bar, s.tokens, true);
    } else if (!rc) {
        progress_show(&fo->bar, 0, true);
    }
    sample_release(&s);
    pl_free(todo);
    pl_free(which);
    return rc;
}

int sample_file(const char *dir, const char *prompts_path, const char *out_path,
                const struct sample_opts *o, FILE *progress, struct pl_err *err)
{
    struct gpt m;
    struct tok t;
    struct prompt_set set = {0};
    struct file_out fo = {.fd = -1, .path = out_path, .model = dir, .set = &set};
    fo.bar = (struct progress){.f = progress,
                               .tty = progress && isatty(fileno(progress)),
                               .t0 = pl_now(),
                               .shown = pl_now()};
    long keep = -1;
    int rc = load_model(&m, &t, dir, err);
    if (!rc)
        rc = sample_opts_check(o, &m.cfg, err);
    if (!rc)
        rc = prompts_load(&set, prompts_path, &t, &m.cfg, err);
    if (!rc)
        rc = outputs_read(&set, out_path, &keep, err);
    if (!rc)
        rc = output_open(out_path, keep, &fo.fd, err);
    if (!rc)
        rc = sample_todo(&fo, &m, &t, o, err);
    if (fo.fd >= 0 && close(fo.fd) != 0 && !rc)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", out_path, strerror(errno));
    pl_buf_release(&fo.b);
    prompt_set_release(&set);
    tok_release(&t);
    gpt_release(&m);
    return rc;
}
