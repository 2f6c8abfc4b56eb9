#include "kv.h"

#include "ops.h"

#include <omp.h>
#include <string.h>

/* Rows kv_extend_logp runs through the LM head at a time: its logits buffer is this many rows
 * of the vocabulary, not max_rows of them (a GPT-2 prefill of 4096 rows would need 800 MB). */
#define KV_LOGP_ROWS 64

/* Views of the cache's activation block. */
struct kv_views {
    float *x, *ln, *qkv, *atty, *proj, *fch; /* [R,C] x2, [R,3C], [R,C] x2, [R,4C] */
    float *mean, *rstd;                      /* [R] */
    float *last, *hidden;                    /* [S,C]: each sequence's last row, then ln_f of it */
    float *lse;                              /* [chunk_rows] */
    float *scratch;                          /* attention scratch */
};

/* Lay out (or, with c->work NULL, only measure) the activation block. */
static size_t kv_layout(const struct kv_cache *c, struct kv_views *v)
{
    size_t R = (size_t)c->max_rows, S = (size_t)c->max_seqs, C = (size_t)c->m->cfg.n_embd;
    float **view[] = {&v->x,    &v->ln,   &v->qkv,  &v->atty,   &v->proj, &v->fch,
                      &v->mean, &v->rstd, &v->last, &v->hidden, &v->lse,  &v->scratch};
    size_t scratch = (size_t)op_attention_kv_scratch(c->max_len, c->threads);
    size_t len[] = {R * C,
                    R * C,
                    R * 3 * C,
                    R * C,
                    R * C,
                    R * 4 * C,
                    R,
                    R,
                    S * C,
                    S * C,
                    (size_t)c->chunk_rows,
                    scratch};
    size_t off = 0;
    for (size_t i = 0; i < sizeof view / sizeof *view; i++) {
        *view[i] = c->work ? c->work + off : NULL;
        off += len[i];
    }
    return off;
}

int kv_init(struct kv_cache *c, const struct gpt *m, int max_seqs, int max_len, int max_rows,
            struct pl_err *err)
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
    c->chunk_rows = max_rows < KV_LOGP_ROWS ? max_rows : KV_LOGP_ROWS;
    c->threads = omp_get_max_threads();
    c->kv_floats = (size_t)g->n_layer * 2 * max_seqs * max_len * g->n_embd;
    struct kv_views v;
    c->work_floats = kv_layout(c, &v);
    c->len = pl_calloc((size_t)max_seqs, sizeof *c->len);
    c->ibuf = pl_malloc(sizeof(int) * ((size_t)max_rows + (size_t)max_seqs));
    c->kv = pl_alloc_big(c->kv_floats * sizeof(float));
    c->work = pl_alloc_big(c->work_floats * sizeof(float));
    c->logits = pl_alloc_big((size_t)max_seqs * g->vocab_size * sizeof(float));
    c->chunk = pl_alloc_big((size_t)c->chunk_rows * g->vocab_size * sizeof(float));
    if (!c->len || !c->ibuf || !c->kv || !c->work || !c->logits || !c->chunk) {
        kv_release(c);
        return pl_oom(err, "kv cache");
    }
    return PL_OK;
}

void kv_release(struct kv_cache *c)
{
    pl_free(c->len);
    pl_free(c->ibuf);
    pl_free_big(c->kv, c->kv_floats * sizeof(float));
    pl_free_big(c->work, c->work_floats * sizeof(float));
    if (c->m) {
        size_t V = (size_t)c->m->cfg.vocab_size;
        pl_free_big(c->logits, (size_t)c->max_seqs * V * sizeof(float));
        pl_free_big(c->chunk, (size_t)c->chunk_rows * V * sizeof(float));
    }
    memset(c, 0, sizeof *c);
}

/* Keys (which = 0: [C/NH, max_len]) or values (1: [max_len, C/NH]) of layer l, slot s, head h. */
static float *kv_head(const struct kv_cache *c, int l, int which, int s, int h)
{
    size_t hs = (size_t)c->m->cfg.n_embd / c->m->cfg.n_head, NH = (size_t)c->m->cfg.n_head;
    return c->kv + ((((size_t)l * 2 + which) * c->max_seqs + s) * NH + h) * c->max_len * hs;
}

static int check_extend(const struct kv_cache *c, int n, const int *slot, const int *count,
                        const int *tokens, const int *targets, struct pl_err *err)
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
    for (long r = 0; r < rows; r++) {
        if (tokens[r] < 0 || tokens[r] >= V)
            return pl_errf(err, PL_EINVAL, "token id %d is outside the vocabulary (%d)", tokens[r],
                           V);
        if (targets && targets[r] >= V)
            return pl_errf(err, PL_EINVAL, "target id %d is outside the vocabulary (%d)",
                           targets[r], V);
    }
    return PL_OK;
}

/* The embeddings and the transformer blocks over the N new rows, into v->x: GPT-2's block,
 * with the attention reading each sequence's cached keys and values. Appends the rows to
 * their slots; returns N. */
static int kv_run(struct kv_cache *c, struct kv_views *v, int n, const int *slot, const int *count,
                  const int *tokens)
{
    const struct gpt *m = c->m;
    int C = m->cfg.n_embd, NH = m->cfg.n_head;
    float eps = m->cfg.layer_norm_epsilon;
    int *pos = c->ibuf, *past = pos + c->max_rows;
    int N = 0;
    for (int i = 0; i < n; i++) {
        past[i] = c->len[slot[i]];
        for (int j = 0; j < count[i]; j++)
            pos[N++] = past[i] + j;
    }
    kv_layout(c, v);
    op_embed_fwd(v->x, tokens, pos, m->w.wte, m->w.wpe, N, c->max_len, C);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const struct gpt_layer_w *w = &m->w.h[l];
        op_layernorm_fwd(v->ln, v->mean, v->rstd, v->x, w->ln1w, w->ln1b, N, C, eps);
        op_matmul_fwd_decode(v->qkv, v->ln, w->qkvw, w->qkvb, N, C, 3 * C);
        op_attention_kv_fwd(v->atty, kv_head(c, l, 0, 0, 0), kv_head(c, l, 1, 0, 0), v->scratch,
                            c->threads, v->qkv, slot, past, count, n, c->max_len, C, NH);
        op_matmul_fwd_decode(v->proj, v->atty, w->attprojw, w->attprojb, N, C, C);
        op_add_inplace(v->x, v->proj, (long)N * C);
        op_layernorm_fwd(v->ln, v->mean, v->rstd, v->x, w->ln2w, w->ln2b, N, C, eps);
        op_matmul_fwd_decode(v->fch, v->ln, w->fcw, w->fcb, N, C, 4 * C);
        op_gelu_fwd(v->fch, v->fch, (long)N * 4 * C);
        op_matmul_fwd_decode(v->proj, v->fch, w->fcprojw, w->fcprojb, N, 4 * C, C);
        op_add_inplace(v->x, v->proj, (long)N * C);
    }
    for (int i = 0; i < n; i++)
        c->len[slot[i]] += count[i];
    c->rows += N;
    return N;
}

int kv_extend(struct kv_cache *c, int n, const int *slot, const int *count, const int *tokens,
              struct pl_err *err)
{
    int rc = check_extend(c, n, slot, count, tokens, NULL, err);
    if (rc)
        return rc;
    const struct gpt *m = c->m;
    int C = m->cfg.n_embd;
    struct kv_views v;
    kv_run(c, &v, n, slot, count, tokens);
    /* Only each sequence's last row needs the final LayerNorm and the LM head. */
    for (int i = 0, r = 0; i < n; i++) {
        r += count[i];
        memcpy(v.last + (size_t)i * C, v.x + (size_t)(r - 1) * C, sizeof(float) * C);
    }
    op_layernorm_fwd(v.hidden, v.mean, v.rstd, v.last, m->w.lnfw, m->w.lnfb, n, C,
                     m->cfg.layer_norm_epsilon);
    op_logits_fwd(c->logits, v.hidden, m->w.wte, n, m->cfg.vocab_size, C);
    return PL_OK;
}

int kv_extend_logp(struct kv_cache *c, int n, const int *slot, const int *count, const int *tokens,
                   const int *targets, float *logp, struct pl_err *err)
{
    int rc = check_extend(c, n, slot, count, tokens, targets, err);
    if (rc)
        return rc;
    const struct gpt *m = c->m;
    int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    struct kv_views v;
    int N = kv_run(c, &v, n, slot, count, tokens);
    op_layernorm_fwd(v.ln, v.mean, v.rstd, v.x, m->w.lnfw, m->w.lnfb, N, C,
                     m->cfg.layer_norm_epsilon);
    /* The LM head a chunk of rows at a time; a sequence's last row also leaves its logits in
     * c->logits, the same bits kv_extend gives (the kernels are row by row). */
    int seq = 0, end = count[0];
    for (int r0 = 0; r0 < N; r0 += c->chunk_rows) {
        int rows = N - r0 < c->chunk_rows ? N - r0 : c->chunk_rows;
        op_logits_fwd(c->chunk, v.ln + (size_t)r0 * C, m->w.wte, rows, V, C);
        op_xent_fwd(logp + r0, v.lse, c->chunk, targets + r0, rows, V);
        while (seq < n && end <= r0 + rows) {
            memcpy(c->logits + (size_t)seq * V, c->chunk + (size_t)(end - 1 - r0) * V,
                   sizeof(float) * V);
            if (++seq < n)
                end += count[seq];
        }
    }
    return PL_OK;
}

void kv_fork(struct kv_cache *c, int dst, int src)
{
    PL_ASSERT(dst != src && dst >= 0 && src >= 0 && dst < c->max_seqs && src < c->max_seqs);
    size_t hs = (size_t)c->m->cfg.n_embd / c->m->cfg.n_head, len = (size_t)c->len[src];
    for (int l = 0; l < c->m->cfg.n_layer; l++)
        for (int h = 0; h < c->m->cfg.n_head; h++) {
            float *kd = kv_head(c, l, 0, dst, h), *ks = kv_head(c, l, 0, src, h);
            for (size_t d = 0; d < hs; d++)
                memcpy(kd + d * c->max_len, ks + d * c->max_len, sizeof(float) * len);
            memcpy(kv_head(c, l, 1, dst, h), kv_head(c, l, 1, src, h), sizeof(float) * hs * len);
        }
    c->len[dst] = c->len[src];
}
