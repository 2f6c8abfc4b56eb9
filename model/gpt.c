#include "gpt.h"

#include "ops.h"
#include "tensor.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void gpt_config_gpt2(struct gpt_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = 50257;
    cfg->n_positions = 1024;
    cfg->n_embd = 768;
    cfg->n_layer = 12;
    cfg->n_head = 12;
    cfg->layer_norm_epsilon = 1e-5f;
    cfg->bos_token_id = 50256;
    cfg->eos_token_id = 50256;
    snprintf(cfg->activation_function, sizeof cfg->activation_function, "gelu_new");
    snprintf(cfg->tokenizer, sizeof cfg->tokenizer, "gpt2");
    cfg->reward_std = 1.0;
}

int gpt_config_check(const struct gpt_config *cfg, struct pl_err *err)
{
    const struct {
        const char *name;
        int value;
    } sizes[] = {{"vocab_size", cfg->vocab_size},
                 {"n_positions", cfg->n_positions},
                 {"n_embd", cfg->n_embd},
                 {"n_layer", cfg->n_layer},
                 {"n_head", cfg->n_head}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (sizes[i].value <= 0)
            return pl_errf(err, PL_EINVAL,
                           "config: field '%s': expected a positive integer, got %d", sizes[i].name,
                           sizes[i].value);
    if (cfg->n_embd % cfg->n_head != 0)
        return pl_errf(err, PL_EINVAL, "config: field 'n_head': %d does not divide n_embd %d",
                       cfg->n_head, cfg->n_embd);
    if (!(cfg->layer_norm_epsilon > 0.0f) || !isfinite(cfg->layer_norm_epsilon))
        return pl_errf(err, PL_EINVAL,
                       "config: field 'layer_norm_epsilon': expected a positive number");
    const char *act = cfg->activation_function;
    if (strcmp(act, "gelu_new") != 0 && strcmp(act, "gelu_pytorch_tanh") != 0 &&
        strcmp(act, "gelu_fast") != 0)
        return pl_errf(err, PL_EINVAL,
                       "config: field 'activation_function': '%s' is not supported (use gelu_new)",
                       act);
    if (cfg->eos_token_id < 0 || cfg->eos_token_id >= cfg->vocab_size)
        return pl_errf(err, PL_EINVAL, "config: field 'eos_token_id': %d is outside the vocabulary",
                       cfg->eos_token_id);
    bool byte = strcmp(cfg->tokenizer, "byte") == 0;
    if (!byte && strcmp(cfg->tokenizer, "gpt2") != 0)
        return pl_errf(err, PL_EINVAL, "config: field 'tokenizer': expected \"byte\" or \"gpt2\"");
    if (byte && cfg->vocab_size > 257)
        return pl_errf(err, PL_EINVAL,
                       "config: field 'vocab_size': %d is more than the byte tokenizer's 257 ids",
                       cfg->vocab_size);
    if (!isfinite(cfg->reward_mean))
        return pl_errf(err, PL_EINVAL, "config: field 'reward_mean': expected a finite number");
    if (!(cfg->reward_std > 0.0) || !isfinite(cfg->reward_std))
        return pl_errf(err, PL_EINVAL, "config: field 'reward_std': expected a positive number");
    return PL_OK;
}

/* Saturating size arithmetic: SIZE_MAX stands for "does not fit", so that a huge shape is
 * measured and refused instead of wrapping around to a small allocation. */
static size_t sz_mul(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t sz_add(size_t a, size_t b)
{
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* ---- parameter table ---- */

static void add_param(struct gpt *m, const char *name, int rows, int cols, bool decay)
{
    struct gpt_param *p = &m->table[m->n_tensors++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 0;
    p->numel = (size_t)rows * (cols > 0 ? cols : 1);
    p->offset = m->n_params;
    p->decay = decay;
    m->n_params += p->numel;
}

/* HF names and shapes in HF's order; matrices and embeddings decay. */
static void build_table(struct gpt *m)
{
    int C = m->cfg.n_embd, V = m->cfg.vocab_size, P = m->cfg.n_positions;
    char name[48];
    add_param(m, "wte.weight", V, C, true);
    add_param(m, "wpe.weight", P, C, true);
    static const struct {
        const char *suffix;
        int rows_mul, cols_mul; /* in units of C; cols_mul 0 = a vector */
        bool decay;
    } layer[] = {{"ln_1.weight", 1, 0, false},       {"ln_1.bias", 1, 0, false},
                 {"attn.c_attn.weight", 1, 3, true}, {"attn.c_attn.bias", 3, 0, false},
                 {"attn.c_proj.weight", 1, 1, true}, {"attn.c_proj.bias", 1, 0, false},
                 {"ln_2.weight", 1, 0, false},       {"ln_2.bias", 1, 0, false},
                 {"mlp.c_fc.weight", 1, 4, true},    {"mlp.c_fc.bias", 4, 0, false},
                 {"mlp.c_proj.weight", 4, 1, true},  {"mlp.c_proj.bias", 1, 0, false}};
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (size_t i = 0; i < sizeof layer / sizeof *layer; i++) {
            snprintf(name, sizeof name, "h.%d.%s", l, layer[i].suffix);
            add_param(m, name, layer[i].rows_mul * C, layer[i].cols_mul * C, layer[i].decay);
        }
    add_param(m, "ln_f.weight", C, 0, false);
    add_param(m, "ln_f.bias", C, 0, false);
    if (m->opts.score_head)
        add_param(m, "score.weight", 1, C, true);
}

/* Point views at a parameter-sized block, in build_table's order. */
static void bind_weights(const struct gpt *m, float *base, struct gpt_weights *w,
                         struct gpt_layer_w *layers)
{
    const struct gpt_param *t = m->table;
    int k = 0;
    w->wte = base + t[k++].offset;
    w->wpe = base + t[k++].offset;
    w->h = layers;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        float **f[] = {&layers[l].ln1w, &layers[l].ln1b,     &layers[l].qkvw,
                       &layers[l].qkvb, &layers[l].attprojw, &layers[l].attprojb,
                       &layers[l].ln2w, &layers[l].ln2b,     &layers[l].fcw,
                       &layers[l].fcb,  &layers[l].fcprojw,  &layers[l].fcprojb};
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            *f[i] = base + t[k++].offset;
    }
    w->lnfw = base + t[k++].offset;
    w->lnfb = base + t[k++].offset;
    w->score = m->opts.score_head ? base + t[k++].offset : NULL;
}

/* ---- activations: one block, carved into named views ---- */

struct layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* [BT,C], [BT], [BT] */
    float *qkv;                       /* [BT,3C] */
    float *atty;                      /* [BT,C] */
    float *att;                       /* [B,NH,T,T] */
    float *res2;                      /* [BT,C] */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu; /* [BT,4C] */
    float *res3;           /* [BT,C] */
};

/* Sizes of one layer's activations for BT rows and B x NH x T x T scores: layer_views' 16
 * [BT, C]-sized views, 4 of [BT] and the scores. */
static size_t layer_floats(size_t BT, size_t BHTT, size_t C)
{
    return sz_add(sz_mul(BT, sz_add(sz_mul(16, C), 4)), BHTT);
}

/* Carve layer l's views. Frozen models keep one layer's storage and reuse it:
 * nothing needs the activations after the layer is done. */
static void layer_views(const struct gpt *m, int l, struct layer_acts *a)
{
    size_t BT = (size_t)m->opts.max_batch * m->opts.max_seq, C = m->cfg.n_embd;
    size_t BHTT = (size_t)m->opts.max_batch * m->cfg.n_head * m->opts.max_seq * m->opts.max_seq;
    int stored = m->opts.trainable ? l : 0;
    float *p = m->acts + BT * C + (size_t)stored * layer_floats(BT, BHTT, C);
    float **seq[] = {&a->ln1,  &a->ln1_mean, &a->ln1_rstd, &a->qkv,      &a->atty,
                     &a->att,  &a->res2,     &a->ln2,      &a->ln2_mean, &a->ln2_rstd,
                     &a->fch,  &a->fch_gelu, &a->res3};
    size_t len[] = {BT * C, BT,     BT, BT * 3 * C, BT * C,     BHTT,  BT * C,
                    BT * C, BT,     BT, BT * 4 * C, BT * 4 * C, BT * C};
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        *seq[i] = p;
        p += len[i];
    }
}

/* Views after the layers: final LayerNorm, logits and outputs. */
struct top_acts {
    float *lnf_mean, *lnf_rstd, *lse, *logits;
    /* backward scratch (trainable only) */
    float *dres, *dln, *dqkv, *datty, *dfch_gelu, *dlogp, *att_scratch;
};

static size_t layers_stored(const struct gpt *m)
{
    return m->opts.trainable ? m->cfg.n_layer : 1;
}

/* op_attention_scratch's size. Its arithmetic is in long, which a shape about to be refused
 * could overflow: such a shape measures as SIZE_MAX instead. */
static size_t scratch_floats(const struct gpt *m)
{
    size_t T = (size_t)m->opts.max_seq;
    if (sz_mul(sz_mul(T, T), (size_t)(m->att_threads > 0 ? m->att_threads : 1)) > LONG_MAX)
        return SIZE_MAX;
    return (size_t)op_attention_scratch(m->opts.max_seq, m->att_threads);
}

/* Lay out (or just measure, with m->acts NULL) everything after the layers. The arithmetic
 * saturates: gpt_init measures before it allocates, and refuses SIZE_MAX. */
static size_t top_layout(const struct gpt *m, struct top_acts *t, float **hidden, float **logp,
                         float **head)
{
    size_t BT = sz_mul((size_t)m->opts.max_batch, (size_t)m->opts.max_seq);
    size_t BTC = sz_mul(BT, (size_t)m->cfg.n_embd);
    size_t BHTT = sz_mul(sz_mul(BT, (size_t)m->cfg.n_head), (size_t)m->opts.max_seq);
    size_t off = sz_add(BTC, sz_mul(layers_stored(m), layer_floats(BT, BHTT, m->cfg.n_embd)));
    float *base = m->acts;
#define CARVE(ptr, n)                                                                              \
    do {                                                                                           \
        if (base)                                                                                  \
            (ptr) = base + off;                                                                    \
        off = sz_add(off, (n));                                                                    \
    } while (0)
    CARVE(*hidden, BTC);
    CARVE(t->lnf_mean, BT);
    CARVE(t->lnf_rstd, BT);
    CARVE(*logp, BT);
    CARVE(t->lse, BT);
    CARVE(*head, BT);
    CARVE(t->logits, sz_mul((size_t)m->logit_rows, (size_t)m->cfg.vocab_size));
    if (m->opts.trainable) {
        CARVE(t->dres, BTC);
        CARVE(t->dln, BTC);
        CARVE(t->dqkv, sz_mul(BTC, 3));
        CARVE(t->datty, BTC);
        CARVE(t->dfch_gelu, sz_mul(BTC, 4));
        CARVE(t->dlogp, BT);
        CARVE(t->att_scratch, scratch_floats(m));
    }
#undef CARVE
    return off;
}

static struct top_acts top_views(const struct gpt *m)
{
    struct top_acts t;
    float *hidden, *logp, *head;
    top_layout(m, &t, &hidden, &logp, &head);
    return t;
}

/* ---- memory ---- */

/* Parameters build_table lays out, counted without overflow. */
static size_t count_params(const struct gpt_config *c, bool head)
{
    size_t C = (size_t)c->n_embd;
    size_t layer = sz_add(sz_mul(sz_mul(C, C), 12), sz_mul(C, 13));
    size_t n = sz_mul((size_t)c->vocab_size + (size_t)c->n_positions, C);
    n = sz_add(n, sz_mul((size_t)c->n_layer, layer));
    return sz_add(n, sz_mul(C, head ? 3 : 2));
}

/* Set what the allocation depends on besides cfg and opts (already in m): attention threads,
 * logit rows and the activation size. max_batch x max_seq must fit in an int. */
static void plan(struct gpt *m)
{
    m->att_threads = omp_get_max_threads();
    int BT = m->opts.max_batch * m->opts.max_seq;
    if (m->opts.head_only)
        m->logit_rows = 0;
    else
        /* A frozen model's LM head runs in chunks of rows: BLIS packs all of wte on every call,
         * so a chunk of 256 rows ran at 88 GFLOP/s on one thread and one of 512 at 98 (1024:
         * 101, for twice the memory: 206 MB at GPT-2's vocabulary). */
        m->logit_rows = m->opts.trainable ? BT : (BT < 512 ? BT : 512);
    struct top_acts t;
    float *hidden, *logp, *head;
    m->acts_floats = top_layout(m, &t, &hidden, &logp, &head);
}

/* What gpt_init allocates for a planned m: UINT64_MAX when it does not fit in 64 bits. */
static uint64_t memory_bytes(const struct gpt *m)
{
    size_t L = (size_t)m->cfg.n_layer;
    size_t params = sz_mul(count_params(&m->cfg, m->opts.score_head), sizeof(float));
    size_t total = sz_mul(params, m->opts.trainable ? 4 : 1);
    total = sz_add(total, sz_mul(m->acts_floats, sizeof(float)));
    total = sz_add(total, sz_mul(sz_add(sz_mul(L, 12), 5), sizeof(struct gpt_param)));
    total = sz_add(total, sz_mul(sz_mul(L, 2), sizeof(struct gpt_layer_w)));
    return total == SIZE_MAX ? UINT64_MAX : (uint64_t)total;
}

uint64_t gpt_memory_bytes(const struct gpt_config *cfg, const struct gpt_opts *opts)
{
    if ((long long)opts->max_batch * opts->max_seq > INT_MAX)
        return UINT64_MAX;
    struct gpt m = {.cfg = *cfg, .opts = *opts};
    m.opts.score_head = opts->score_head || cfg->score_head;
    plan(&m);
    return memory_bytes(&m);
}

/* Physical memory, or 0 when the system does not say. */
static uint64_t machine_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? sz_mul((size_t)pages, (size_t)size) : 0;
}

/* Refuse a shape the machine cannot hold before allocating any of it: touching 20 GB page by
 * page takes minutes before the kernel kills the process. */
static int check_memory(const struct gpt *m, struct pl_err *err)
{
    uint64_t need = memory_bytes(m), have = machine_bytes();
    if (need != UINT64_MAX && (have == 0 || need <= have))
        return PL_OK;
    const struct gpt_config *c = &m->cfg;
    char what[160];
    snprintf(what, sizeof what,
             "n_layer %d, n_embd %d, vocab_size %d, n_positions %d, batch %d x %d%s", c->n_layer,
             c->n_embd, c->vocab_size, c->n_positions, m->opts.max_batch, m->opts.max_seq,
             m->opts.trainable ? ", trainable" : "");
    if (need == UINT64_MAX)
        return pl_errf(err, PL_ENOMEM,
                       "model too large: it needs more than 2^64 bytes of memory (%s) and the "
                       "machine has %llu",
                       what, (unsigned long long)have);
    return pl_errf(err, PL_ENOMEM,
                   "model too large: it needs %llu bytes of memory (%.1f GiB; %s) and the machine "
                   "has %llu (%.1f GiB)",
                   (unsigned long long)need, (double)need / 1073741824.0, what,
                   (unsigned long long)have, (double)have / 1073741824.0);
}

int gpt_init(struct gpt *m, const struct gpt_config *cfg, const struct gpt_opts *opts,
             struct pl_err *err)
{
    memset(m, 0, sizeof *m);
    int rc = gpt_config_check(cfg, err);
    if (rc)
        return rc;
    if (opts->max_batch <= 0 || opts->max_seq <= 0 || opts->max_seq > cfg->n_positions)
        return pl_errf(err, PL_EINVAL,
                       "model shape: batch %d x sequence %d does not fit (context is %d)",
                       opts->max_batch, opts->max_seq, cfg->n_positions);
    /* Forward counts positions in an int. */
    if ((long long)opts->max_batch * opts->max_seq > INT_MAX)
        return pl_errf(err, PL_EINVAL,
                       "model shape: batch %d x sequence %d is more than %d positions",
                       opts->max_batch, opts->max_seq, INT_MAX);
    m->cfg = *cfg;
    m->opts = *opts;
    m->opts.score_head = m->cfg.score_head = opts->score_head || cfg->score_head;
    plan(m);
    if ((rc = check_memory(m, err)))
        return gpt_release(m), rc;
    m->table = pl_calloc((size_t)cfg->n_layer * 12 + 5, sizeof *m->table);
    m->w_layers = pl_calloc((size_t)cfg->n_layer, sizeof *m->w_layers);
    m->g_layers = pl_calloc((size_t)cfg->n_layer, sizeof *m->g_layers);
    if (!m->table || !m->w_layers || !m->g_layers)
        return gpt_release(m), pl_oom(err, "model tables");
    build_table(m);
    PL_ASSERT(m->n_params == count_params(&m->cfg, m->opts.score_head));

    size_t pbytes = m->n_params * sizeof(float);
    m->params = pl_alloc_big(pbytes);
    if (!m->params)
        return gpt_release(m), pl_oom(err, "model parameters");
    bind_weights(m, m->params, &m->w, m->w_layers);
    if (opts->trainable) {
        m->grads = pl_alloc_big(pbytes);
        m->m = m->grads ? pl_alloc_big(pbytes) : NULL;
        m->v = m->m ? pl_alloc_big(pbytes) : NULL;
        if (!m->v)
            return gpt_release(m), pl_oom(err, "gradients and optimizer state");
        bind_weights(m, m->grads, &m->g, m->g_layers);
    }

    struct top_acts t;
    m->acts = pl_alloc_big(m->acts_floats * sizeof(float));
    if (!m->acts)
        return gpt_release(m), pl_oom(err, "model activations");
    top_layout(m, &t, &m->hidden, &m->logp, &m->head);
    return PL_OK;
}

void gpt_release(struct gpt *m)
{
    size_t pbytes = m->n_params * sizeof(float);
    pl_free_big(m->params, pbytes);
    pl_free_big(m->grads, pbytes);
    pl_free_big(m->m, pbytes);
    pl_free_big(m->v, pbytes);
    pl_free_big(m->acts, m->acts_floats * sizeof(float));
    pl_free(m->table);
    pl_free(m->w_layers);
    pl_free(m->g_layers);
    memset(m, 0, sizeof *m);
}

void gpt_init_weights(struct gpt *m, uint64_t seed)
{
    struct pl_rng rng;
    pl_rng_seed(&rng, seed);
    float proj_std = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const struct gpt_param *p = &m->table[i];
        float *x = m->params + p->offset;
        const char *n = p->name;
        size_t len = strlen(n);
        bool is_bias = len > 5 && strcmp(n + len - 5, ".bias") == 0;
        bool is_ln = strstr(n, "ln_") != NULL;
        if (is_bias) {
            memset(x, 0, p->numel * sizeof *x);
        } else if (is_ln) {
            for (size_t j = 0; j < p->numel; j++)
                x[j] = 1.0f;
        } else {
            float std = strstr(n, "c_proj.weight") ? proj_std : 0.02f;
            for (size_t j = 0; j < p->numel; j++)
                x[j] = std * pl_rng_normal(&rng);
        }
    }
}

const struct gpt_param *gpt_param_find(const struct gpt *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->table[i].name, name) == 0)
            return &m->table[i];
    return NULL;
}

void gpt_copy_weights(struct gpt *dst, const struct gpt *src)
{
    PL_ASSERT(dst->cfg.n_embd == src->cfg.n_embd && dst->cfg.n_layer == src->cfg.n_layer &&
              dst->cfg.vocab_size == src->cfg.vocab_size &&
              dst->cfg.n_positions == src->cfg.n_positions);
    size_t body = src->w.lnfb - src->params + (size_t)src->cfg.n_embd;
    memcpy(dst->params, src->params, body * sizeof(float));
    if (dst->w.score && src->w.score)
        memcpy(dst->w.score, src->w.score, (size_t)src->cfg.n_embd * sizeof(float));
}

/* ---- forward ---- */

static int check_batch(const struct gpt *m, const struct gpt_batch *b, struct pl_err *err)
{
    if (b->B <= 0 || b->T <= 0 || b->B > m->opts.max_batch || b->T > m->opts.max_seq)
        return pl_errf(err, PL_EINVAL, "batch %d x %d exceeds the model's %d x %d", b->B, b->T,
                       m->opts.max_batch, m->opts.max_seq);
    if (!(b->temperature >= 0.0f) || !isfinite(b->temperature))
        return pl_errf(err, PL_EINVAL, "temperature %g is not a finite number >= 0",
                       (double)b->temperature);
    if (b->targets && m->opts.head_only)
        return pl_errf(err, PL_EINVAL, "a head-only model has no language-model head");
    int N = b->B * b->T, V = m->cfg.vocab_size;
    for (int i = 0; i < N; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= V)
            return pl_errf(err, PL_EINVAL,
                           "token id %d at position %d is outside the vocabulary (%d)",
                           b->tokens[i], i, V);
        if (b->targets && b->targets[i] >= V)
            return pl_errf(err, PL_EINVAL,
                           "target id %d at position %d is outside the vocabulary (%d)",
                           b->targets[i], i, V);
        if (b->pos && (b->pos[i] < 0 || b->pos[i] >= m->cfg.n_positions))
            return pl_errf(err, PL_EINVAL, "position id %d at %d is outside the context (%d)",
                           b->pos[i], i, m->cfg.n_positions);
    }
    for (int r = 0; b->last && r < b->B; r++)
        if (b->last[r] < 0 || b->last[r] >= b->T)
            return pl_errf(err, PL_EINVAL, "last index %d of row %d is outside 0..%d", b->last[r],
                           r, b->T - 1);
    return PL_OK;
}

/* LM head over all rows, a chunk of logit_rows at a time: logits, then the
 * log-probability of each target. */
static void lm_head_fwd(struct gpt *m, const int *targets, int N)
{
    struct top_acts t = top_views(m);
    int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    for (int r0 = 0; r0 < N; r0 += m->logit_rows) {
        int rows = N - r0 < m->logit_rows ? N - r0 : m->logit_rows;
        tensor_gemm(false, true, rows, V, C, m->inv_temp_, m->hidden + (size_t)r0 * C, C, m->w.wte,
                    C, 0.0f, t.logits, V);
        op_xent_fwd(m->logp + r0, t.lse + r0, t.logits, targets + r0, rows, V);
    }
    double sum = 0.0;
    int n = 0;
    for (int i = 0; i < N; i++)
        if (targets[i] >= 0) {
            sum -= m->logp[i];
            n++;
        }
    m->n_targets = n;
    m->loss = n ? (float)(sum / n) : 0.0f;
}

/* Rows where the scalar head is read, and the hidden-state row of head value i. */
static int head_rows(const struct gpt *m)
{
    return m->head_all_ ? m->B * m->T : m->B;
}

static size_t head_row(const struct gpt *m, int i)
{
    if (m->head_all_)
        return (size_t)i;
    return (size_t)i * m->T + (m->last_ ? m->last_[i] : m->T - 1);
}

int gpt_forward(struct gpt *m, const struct gpt_batch *b, struct pl_err *err)
{
    int rc = check_batch(m, b, err);
    if (rc)
        return rc;
    int B = b->B, T = b->T, N = B * T, C = m->cfg.n_embd, NH = m->cfg.n_head;
    float eps = m->cfg.layer_norm_epsilon;
    m->B = B;
    m->T = T;
    m->tokens_ = b->tokens;
    m->targets_ = b->targets;
    m->pos_ = b->pos;
    m->last_ = b->last;
    m->head_all_ = b->head_all;
    m->inv_temp_ = b->temperature > 0.0f ? 1.0f / b->temperature : 1.0f;

    float *encoded = m->acts;
    op_embed_fwd(encoded, b->tokens, b->pos, m->w.wte, m->w.wpe, N, T, C);
    const float *res = encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        struct layer_acts a;
        layer_views(m, l, &a);
        const struct gpt_layer_w *w = &m->w.h[l];
        op_layernorm_fwd(a.ln1, a.ln1_mean, a.ln1_rstd, res, w->ln1w, w->ln1b, N, C, eps);
        op_matmul_fwd(a.qkv, a.ln1, w->qkvw, w->qkvb, N, C, 3 * C);
        op_attention_fwd(a.atty, a.att, a.qkv, b->seg, B, T, C, NH);
        op_matmul_residual_fwd(a.res2, res, a.atty, w->attprojw, w->attprojb, N, C, C);
        op_layernorm_fwd(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, w->ln2w, w->ln2b, N, C, eps);
        op_matmul_fwd(a.fch, a.ln2, w->fcw, NULL, N, C, 4 * C);
        op_bias_gelu_fwd(a.fch, a.fch_gelu, w->fcb, N, 4 * C);
        op_matmul_residual_fwd(a.res3, a.res2, a.fch_gelu, w->fcprojw, w->fcprojb, N, 4 * C, C);
        res = a.res3;
    }
    struct top_acts t = top_views(m);
    op_layernorm_fwd(m->hidden, t.lnf_mean, t.lnf_rstd, res, m->w.lnfw, m->w.lnfb, N, C, eps);

    m->loss = 0.0f;
    m->n_targets = 0;
    if (b->targets)
        lm_head_fwd(m, b->targets, N);
    if (m->w.score)
        for (int i = 0; i < head_rows(m); i++) {
            const float *h = m->hidden + head_row(m, i) * C;
            float s = 0.0f;
            for (int c = 0; c < C; c++)
                s += h[c] * m->w.score[c];
            m->head[i] = s;
        }
    return PL_OK;
}

void gpt_logits_row(struct gpt *m, int r, float *out)
{
    int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    PL_ASSERT(r >= 0 && r < m->B * m->T && !m->opts.head_only);
    tensor_gemm(false, true, 1, V, C, m->inv_temp_, m->hidden + (size_t)r * C, C, m->w.wte, C, 0.0f,
                out, V);
}

/* ---- backward ---- */

static void zero(float *p, size_t n)
{
#pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i += 4096)
        memset(p + i, 0, sizeof(float) * (n - i < 4096 ? n - i : 4096));
}

/* d hidden from the LM head: logits become d logits, then two products. */
static void lm_head_bwd(struct gpt *m, struct top_acts *t, const float *dlogp, float *dhidden)
{
    int N = m->B * m->T, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    op_xent_bwd(t->logits, t->lse, m->targets_, dlogp, N, V);
    /* logits = inv_temp * hidden wte^T: the temperature scales both products' gradients. */
    tensor_gemm(false, false, N, C, V, m->inv_temp_, t->logits, V, m->w.wte, C, 1.0f, dhidden, C);
    tensor_gemm(true, false, V, C, N, m->inv_temp_, t->logits, V, m->hidden, C, 1.0f, m->g.wte,
                C);
}

static void score_head_bwd(struct gpt *m, const float *dhead, float *dhidden)
{
    int C = m->cfg.n_embd;
    for (int i = 0; i < head_rows(m); i++) {
        size_t row = head_row(m, i);
        const float *h = m->hidden + row * C;
        float *dh = dhidden + row * C;
        for (int c = 0; c < C; c++) {
            dh[c] += dhead[i] * m->w.score[c];
            m->g.score[c] += dhead[i] * h[c];
        }
    }
}

static void layer_bwd(struct gpt *m, int l, struct top_acts *t, const float *res_in)
{
    int B = m->B, T = m->T, N = B * T, C = m->cfg.n_embd, NH = m->cfg.n_head;
    struct layer_acts a;
    layer_views(m, l, &a);
    const struct gpt_layer_w *w = &m->w.h[l];
    struct gpt_layer_w *g = &m->g.h[l];
    /* t->dres holds d res3 on entry and d res_in on exit. */
    zero(t->dfch_gelu, (size_t)N * 4 * C);
    op_matmul_bwd(t->dfch_gelu, g->fcprojw, g->fcprojb, t->dres, a.fch_gelu, w->fcprojw, N, 4 * C,
                  C);
    op_bias_gelu_bwd(t->dfch_gelu, g->fcb, a.fch, N, 4 * C); /* now d fch */
    zero(t->dln, (size_t)N * C);
    op_matmul_bwd(t->dln, g->fcw, NULL, t->dfch_gelu, a.ln2, w->fcw, N, C, 4 * C);
    op_layernorm_bwd(t->dres, g->ln2w, g->ln2b, t->dln, a.res2, w->ln2w, a.ln2_mean, a.ln2_rstd, N,
                     C);
    zero(t->datty, (size_t)N * C);
    op_matmul_bwd(t->datty, g->attprojw, g->attprojb, t->dres, a.atty, w->attprojw, N, C, C);
    zero(t->dqkv, (size_t)N * 3 * C);
    op_attention_bwd(t->dqkv, t->att_scratch, m->att_threads, t->datty, a.att, a.qkv, B, T, C, NH);
    zero(t->dln, (size_t)N * C);
    op_matmul_bwd(t->dln, g->qkvw, g->qkvb, t->dqkv, a.ln1, w->qkvw, N, C, 3 * C);
    op_layernorm_bwd(t->dres, g->ln1w, g->ln1b, t->dln, res_in, w->ln1w, a.ln1_mean, a.ln1_rstd, N,
                     C);
}

void gpt_backward(struct gpt *m, const float *dlogp, const float *dhead)
{
    PL_ASSERT(m->opts.trainable && m->B > 0);
    PL_ASSERT(!dlogp || m->targets_);
    PL_ASSERT(!dhead || m->w.score);
    int N = m->B * m->T, C = m->cfg.n_embd, L = m->cfg.n_layer;
    struct top_acts t = top_views(m);

    zero(t.dln, (size_t)N * C);
    if (dlogp)
        lm_head_bwd(m, &t, dlogp, t.dln);
    if (dhead)
        score_head_bwd(m, dhead, t.dln);
    struct layer_acts last;
    layer_views(m, L - 1, &last);
    zero(t.dres, (size_t)N * C);
    op_layernorm_bwd(t.dres, m->g.lnfw, m->g.lnfb, t.dln, last.res3, m->w.lnfw, t.lnf_mean,
                     t.lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        struct layer_acts prev;
        if (l > 0)
            layer_views(m, l - 1, &prev);
        layer_bwd(m, l, &t, l > 0 ? prev.res3 : m->acts);
    }
    op_embed_bwd(m->g.wte, m->g.wpe, t.dres, m->tokens_, m->pos_, N, m->T, C);
}

void gpt_backward_lm(struct gpt *m, float scale)
{
    struct top_acts t = top_views(m);
    int N = m->B * m->T;
    float g = m->n_targets ? -scale / (float)m->n_targets : 0.0f;
    for (int i = 0; i < N; i++)
        t.dlogp[i] = m->targets_[i] >= 0 ? g : 0.0f;
    gpt_backward(m, t.dlogp, NULL);
}

void gpt_zero_grad(struct gpt *m)
{
    if (m->grads)
        zero(m->grads, m->n_params);
}

/* ---- optimiser ---- */

float gpt_clip_grad(struct gpt *m, float max_norm)
{
    double ss = 0.0;
    const float *g = m->grads;
    long n = (long)m->n_params;
#pragma omp parallel for simd reduction(+ : ss)
    for (long i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        float s = max_norm / norm;
#pragma omp parallel for simd
        for (long i = 0; i < n; i++)
            m->grads[i] *= s;
    }
    return norm;
}

/* AdamW over floats a block: the moments and the update are plain loops GCC vectorises; the
 * square roots are one instruction for the block. sqrtf itself may set errno, which keeps GCC
 * from vectorising any loop that calls it (the whole update ran at scalar speed, 7% of a
 * GPT-2 124M step on one thread); the vector square root rounds as sqrtf does, so the update
 * is the same bits either way. */
#define ADAM_BLOCK 16

static void sqrt_block(float *x)
{
#ifdef __AVX512F__
    _mm512_storeu_ps(x, _mm512_sqrt_ps(_mm512_loadu_ps(x)));
#elif defined(__AVX__)
    _mm256_storeu_ps(x, _mm256_sqrt_ps(_mm256_loadu_ps(x)));
    _mm256_storeu_ps(x + 8, _mm256_sqrt_ps(_mm256_loadu_ps(x + 8)));
#else
    for (int j = 0; j < ADAM_BLOCK; j++)
        x[j] = sqrtf(x[j]);
#endif
}

struct adam_step {
    float b1, b2, c1, c2, lr, eps, wd;
};

/* One block of n <= ADAM_BLOCK parameters. */
static inline void adam_block(float *x, const float *g, float *mm, float *vv, int n,
                              const struct adam_step *a)
{
    float den[ADAM_BLOCK];
    for (int j = 0; j < n; j++) {
        mm[j] = a->b1 * mm[j] + (1.0f - a->b1) * g[j];
        vv[j] = a->b2 * vv[j] + (1.0f - a->b2) * g[j] * g[j];
        den[j] = vv[j] / a->c2;
    }
    if (n == ADAM_BLOCK)
        sqrt_block(den);
    else
        for (int j = 0; j < n; j++)
            den[j] = sqrtf(den[j]);
    for (int j = 0; j < n; j++) {
        float mh = mm[j] / a->c1;
        x[j] -= a->lr * (mh / (den[j] + a->eps) + a->wd * x[j]);
    }
}

void gpt_adamw_step(struct gpt *m, const struct gpt_adamw *hp)
{
    PL_ASSERT(m->opts.trainable);
    m->adam_t++;
    float b1 = hp->beta1, b2 = hp->beta2;
    float c1 = 1.0f - powf(b1, (float)m->adam_t), c2 = 1.0f - powf(b2, (float)m->adam_t);
    for (int k = 0; k < m->n_tensors; k++) {
        const struct gpt_param *p = &m->table[k];
        struct adam_step a = {b1, b2, c1, c2, hp->lr, hp->eps, p->decay ? hp->weight_decay : 0.0f};
        float *x = m->params + p->offset, *g = m->grads + p->offset;
        float *mm = m->m + p->offset, *vv = m->v + p->offset;
        long n = (long)p->numel;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long i = 0; i < n; i += ADAM_BLOCK)
            adam_block(x + i, g + i, mm + i, vv + i,
                       n - i < ADAM_BLOCK ? (int)(n - i) : ADAM_BLOCK, &a);
    }
}

double gpt_train_flops(const struct gpt_config *cfg, int B, int T)
{
    double L = cfg->n_layer, C = cfg->n_embd, V = cfg->vocab_size;
    return 6.0 * (12.0 * L * C * C + V * C) * B * T + 12.0 * L * T * C * B * T;
}
