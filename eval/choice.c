#include "choice.h"

#include "model/ckpt.h"

#include <math.h>
#include <string.h>

/* One continuation to score: its context ids[ctx, ctx + nc) and its ids[cont, cont + m), the
 * first `cut` context tokens left out to fit the model. */
struct unit {
    int q;
    size_t ctx, cont;
    int nc, m, cut;
};

struct plan {
    struct unit *u; /* what is scored: each distinct continuation of a query once */
    size_t n, cap;
    int *unit_of; /* [continuations] the unit that scores each */
    size_t n_conts, of_cap;
    double *ll; /* [n] the units' log-likelihoods */
};

int eval_scorer_load(struct eval_scorer *s, const char *dir, int mode, int batch,
                     struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->batch = batch;
    if (batch < 2)
        return pl_errf(err, PL_EINVAL, "scoring: a batch of %d; 2 or more are needed", batch);
    struct gpt_config cfg;
    int rc = ckpt_load_tokenizer(&s->t, &cfg, dir, err);
    if (rc)
        return rc;
    /* The KV cache holds its own activations; a full forward needs the model's. */
    struct gpt_opts go = {.max_batch = mode == EVAL_SCORE_FULL ? batch : 1,
                          .max_seq = mode == EVAL_SCORE_FULL ? cfg.n_positions : 1};
    rc = ckpt_load(&s->m, dir, &go, err);
    if (!rc && mode == EVAL_SCORE_KV) {
        int P = s->m.cfg.n_positions;
        rc = kv_init(&s->kv, &s->m, batch, P, P > 1024 ? P : 1024, err);
    }
    return rc;
}

void eval_scorer_release(struct eval_scorer *s)
{
    kv_release(&s->kv);
    gpt_release(&s->m);
    tok_release(&s->t);
    tok_buf_release(&s->enc);
    pl_free(s->ibuf);
    pl_free(s->fbuf);
    memset(s, 0, sizeof *s);
}

/* ---- requests to tokens ---- */

/* Append a query's units to p, its tokens to s->enc (harness's _encode_pair). */
static int plan_query(struct eval_scorer *s, struct plan *p, const struct eval_query *q, int qi,
                      struct pl_err *err)
{
    const char *ctx = q->context;
    size_t clen = strlen(ctx), spaces = 0;
    while (spaces < clen && strchr(" \t\n\r\v\f", ctx[clen - 1 - spaces]))
        spaces++;
    /* Python's str.rstrip() strips all whitespace; the harness moves it to the continuation. */
    size_t keep = clen - spaces;
    size_t ctx_at = s->enc.n;
    int rc = PL_OK;
    if (clen == 0) {
        int *grown = io_grow(s->enc.ids, &s->enc.cap, s->enc.n + 1, sizeof *grown);
        if (!grown)
            return pl_oom(err, "tokens");
        s->enc.ids = grown;
        s->enc.ids[s->enc.n++] = s->t.eos;
    } else {
        rc = tok_encode(&s->t, &s->enc, ctx, keep, 0, err);
    }
    if (rc)
        return rc;
    int nc = (int)(s->enc.n - ctx_at);
    char *whole = NULL;
    size_t whole_cap = 0;
    int P = s->m.cfg.n_positions;
    for (int j = 0; !rc && j < q->n; j++) {
        int *of = io_grow(p->unit_of, &p->of_cap, p->n_conts + 1, sizeof *of);
        if (!of) {
            rc = pl_oom(err, "tokens");
            break;
        }
        p->unit_of = of;
        /* A choice the query already has (TruthfulQA's MC1 and MC2 share most) is the same
         * request: scored once. */
        int same = -1;
        for (int k = 0; k < j && same < 0; k++)
            same = strcmp(q->conts[k], q->conts[j]) == 0 ? p->unit_of[p->n_conts - j + k] : -1;
        if (same >= 0) {
            p->unit_of[p->n_conts++] = same;
            continue;
        }
        p->unit_of[p->n_conts++] = (int)p->n;
        size_t xlen = strlen(q->conts[j]);
        size_t cont_at = s->enc.n;
        if (clen == 0) {
            rc = tok_encode(&s->t, &s->enc, q->conts[j], xlen, 0, err);
        } else {
            size_t need = clen + xlen + 1;
            if (need > whole_cap) {
                pl_free(whole);
                whole = pl_malloc(need);
                whole_cap = whole ? need : 0;
                if (!whole) {
                    rc = pl_oom(err, "tokens");
                    break;
                }
            }
            memcpy(whole, ctx, clen);
            memcpy(whole + clen, q->conts[j], xlen);
            rc = tok_encode(&s->t, &s->enc, whole, clen + xlen, 0, err);
            /* Drop the first nc tokens of the whole, as the harness slices. */
            if (!rc) {
                size_t got = s->enc.n - cont_at;
                size_t drop = (size_t)nc < got ? (size_t)nc : got;
                memmove(s->enc.ids + cont_at, s->enc.ids + cont_at + drop,
                        (got - drop) * sizeof *s->enc.ids);
                s->enc.n -= drop;
            }
        }
        int m = (int)(s->enc.n - cont_at);
        if (!rc && m < 1)
            rc = pl_errf(err, PL_EINVAL, "query %d, continuation %d: no tokens", qi, j);
        if (!rc) {
            struct unit *u = io_grow(p->u, &p->cap, p->n + 1, sizeof *u);
            if (!u) {
                rc = pl_oom(err, "tokens");
                break;
            }
            p->u = u;
            int cut = nc + m - 1 - P;
            struct unit x = {qi, ctx_at, cont_at, nc, m, cut > 0 ? cut : 0};
            /* A continuation longer than the model's context: its first tokens become the
             * context of its last P (the harness has no answer here). */
            if (m > P)
                x = (struct unit){qi, cont_at, cont_at + (size_t)(m - P), m - P, P, m - P - 1};
            p->u[p->n++] = x;
        }
    }
    pl_free(whole);
    return rc;
}

static int grow_bufs(struct eval_scorer *s, size_t ints, size_t floats, struct pl_err *err)
{
    int *i = io_grow(s->ibuf, &s->ibuf_cap, ints, sizeof *i);
    if (i)
        s->ibuf = i;
    float *f = i ? io_grow(s->fbuf, &s->fbuf_cap, floats, sizeof *f) : NULL;
    if (f)
        s->fbuf = f;
    return f ? PL_OK : pl_oom(err, "scoring buffers");
}

/* ---- the KV way ---- */

/* The slot holding the stem: the token prefix every context of a scoring call shares (the
 * harness's few-shot primer), run through the model once for the whole call rather than once
 * per question. */
static int stem_slot(const struct eval_scorer *s)
{
    return s->kv.max_seqs - 1;
}

/* The tokens the cache runs for unit x's context: all but its last, after the cut. */
static const int *fed(const struct eval_scorer *s, const struct unit *x, int *len)
{
    *len = x->nc - 1 - x->cut;
    return s->enc.ids + x->ctx + x->cut;
}

/* Length of the prefix shared by every unit's fed context tokens; 0 when too short to pay for
 * its slot. Kept within one pass of the cache. */
static int stem_len(const struct eval_scorer *s, const struct unit *u, size_t n)
{
    if (n < 2)
        return 0;
    int S;
    const int *first = fed(s, &u[0], &S);
    for (size_t i = 1; i < n && S > 0; i++) {
        int L;
        const int *x = fed(s, &u[i], &L);
        int k = 0;
        while (k < S && k < L && x[k] == first[k])
            k++;
        S = k;
    }
    if (S > s->kv.max_rows)
        S = s->kv.max_rows;
    return S >= 8 ? S : 0;
}

/* Score units u[0, n) that fit the cache at once: contexts first (one slot per distinct
 * (query, cut)), then every continuation from a fork of its context's slot. */
static int kv_batch(struct eval_scorer *s, const struct unit *u, int n, double *ll,
                    struct pl_err *err)
{
    struct kv_cache *c = &s->kv;
    const int *ids = s->enc.ids;
    /* ibuf: each unit's group [n]; each group's query, cut and first unit [3n]; slot, count
     * [2n]; tokens, targets [2 rows] */
    size_t rows = 0;
    for (int i = 0; i < n; i++)
        rows += (size_t)u[i].nc + (size_t)u[i].m;
    int rc = grow_bufs(s, 8 * (size_t)n + 2 * rows + 8, rows + 8, err);
    if (rc)
        return rc;
    int *group = s->ibuf, *gq = group + n, *gcut = gq + n, *gctx = gcut + n, *slot = gctx + n;
    int *count = slot + n;
    int *tokens = count + n, *targets = tokens + rows;
    /* A context slot per distinct (context, cut); units of one query come together. */
    int G = 0;
    for (int i = 0; i < n; i++) {
        int g = G - 1;
        while (g >= 0 && gq[g] == u[i].q && (u[gctx[g]].ctx != u[i].ctx || gcut[g] != u[i].cut))
            g--;
        if (g < 0 || gq[g] != u[i].q) {
            g = G++;
            gq[g] = u[i].q;
            gcut[g] = u[i].cut;
            gctx[g] = i;
        }
        group[i] = g;
    }
    for (int k = 0; k < G + n; k++)
        c->len[k] = 0;
    /* Pass 1: each context but its last token, after the stem. */
    int np = 0;
    size_t r = 0;
    for (int g = 0; g < G; g++) {
        int L;
        const int *x = fed(s, &u[gctx[g]], &L);
        if (s->stem > 0)
            kv_fork(c, g, stem_slot(s));
        if (L <= s->stem)
            continue;
        slot[np] = g;
        count[np++] = L - s->stem;
        memcpy(tokens + r, x + s->stem, sizeof *tokens * (size_t)(L - s->stem));
        r += (size_t)(L - s->stem);
    }
    if (np > 0 && (rc = kv_extend(c, np, slot, count, tokens, err)))
        return rc;
    s->tokens += (long)r;
    /* Pass 2: each continuation after its context's last token. */
    r = 0;
    for (int i = 0; i < n; i++) {
        kv_fork(c, G + i, group[i]);
        slot[i] = G + i;
        count[i] = u[i].m;
        tokens[r] = ids[u[i].ctx + u[i].nc - 1];
        memcpy(tokens + r + 1, ids + u[i].cont, sizeof *tokens * (size_t)(u[i].m - 1));
        memcpy(targets + r, ids + u[i].cont, sizeof *targets * (size_t)u[i].m);
        r += (size_t)u[i].m;
    }
    if ((rc = kv_extend_logp(c, n, slot, count, tokens, targets, s->fbuf, err)))
        return rc;
    s->tokens += (long)r;
    r = 0;
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int j = 0; j < u[i].m; j++)
            sum += s->fbuf[r + (size_t)j];
        ll[i] = sum;
        r += (size_t)u[i].m;
    }
    return PL_OK;
}

/* How many units from u[0, n) fit one kv_batch. */
static int kv_take(const struct eval_scorer *s, const struct unit *u, int n)
{
    const struct kv_cache *c = &s->kv;
    int max_seqs = c->max_seqs - (s->stem > 0);
    int slots = 0, taken = 0;
    long pre = 0, post = 0;
    const struct unit *last = NULL;
    for (; taken < n; taken++) {
        const struct unit *x = &u[taken];
        /* A (context, cut) pair unlike the last unit's is counted as a new context slot (kv_batch
         * may find it shared with an earlier one: then a slot is left unused). */
        bool fresh = !last || x->ctx != last->ctx || x->cut != last->cut;
        int need = slots + 1 + fresh;
        long p = pre + (fresh ? x->nc - 1 - x->cut - s->stem : 0), q = post + x->m;
        if (taken > 0 && (need > max_seqs || p > c->max_rows || q > c->max_rows))
            break;
        slots = need;
        pre = p;
        post = q;
        last = x;
    }
    return taken;
}

/* ---- the full way ---- */

static int full_batch(struct eval_scorer *s, const struct unit *u, int n, double *ll,
                      struct pl_err *err)
{
    const int *ids = s->enc.ids;
    int T = 0;
    for (int i = 0; i < n; i++) {
        int len = u[i].nc - u[i].cut + u[i].m - 1;
        T = len > T ? len : T;
    }
    int rc = grow_bufs(s, 2 * (size_t)n * (size_t)T + 8, 8, err);
    if (rc)
        return rc;
    int *tokens = s->ibuf, *targets = tokens + (size_t)n * T;
    for (int i = 0; i < n; i++) {
        int *tk = tokens + (size_t)i * T, *tg = targets + (size_t)i * T;
        int nctx = u[i].nc - u[i].cut;
        for (int t = 0; t < T; t++) {
            tk[t] = 0;
            tg[t] = -1;
        }
        memcpy(tk, ids + u[i].ctx + u[i].cut, sizeof *tk * (size_t)nctx);
        memcpy(tk + nctx, ids + u[i].cont, sizeof *tk * (size_t)(u[i].m - 1));
        memcpy(tg + nctx - 1, ids + u[i].cont, sizeof *tg * (size_t)u[i].m);
    }
    struct gpt_batch b = {.B = n, .T = T, .tokens = tokens, .targets = targets};
    if ((rc = gpt_forward(&s->m, &b, err)))
        return rc;
    s->tokens += (long)n * T;
    for (int i = 0; i < n; i++) {
        double sum = 0;
        int from = u[i].nc - u[i].cut - 1;
        for (int j = 0; j < u[i].m; j++)
            sum += s->m.logp[(size_t)i * T + (size_t)(from + j)];
        ll[i] = sum;
    }
    return PL_OK;
}

int eval_score(struct eval_scorer *s, const struct eval_query *q, int n, double *ll, int *ntok,
               struct io_progress *progress, struct pl_err *err)
{
    struct plan p = {0};
    s->enc.n = 0;
    int rc = PL_OK;
    for (int i = 0; !rc && i < n; i++)
        rc = plan_query(s, &p, &q[i], i, err);
    if (!rc && !(p.ll = pl_malloc((p.n + 1) * sizeof *p.ll)))
        rc = pl_oom(err, "scores");
    s->stem = 0;
    if (!rc && s->mode == EVAL_SCORE_KV && s->kv.max_seqs > 2)
        s->stem = stem_len(s, p.u, p.n);
    if (s->stem > 0) {
        int slot = stem_slot(s), len;
        s->kv.len[slot] = 0;
        rc = kv_extend(&s->kv, 1, &slot, &s->stem, fed(s, &p.u[0], &len), err);
        s->tokens += s->stem;
    }
    size_t done = 0;
    while (!rc && done < p.n) {
        int left = p.n - done > (size_t)1 << 30 ? 1 << 30 : (int)(p.n - done);
        int take = s->mode == EVAL_SCORE_KV ? kv_take(s, p.u + done, left)
                                            : (left < s->batch ? left : s->batch);
        rc = s->mode == EVAL_SCORE_KV ? kv_batch(s, p.u + done, take, p.ll + done, err)
                                      : full_batch(s, p.u + done, take, p.ll + done, err);
        done += (size_t)take;
        if (progress) {
            /* A query is done when its last continuation is. */
            progress->done = done == p.n ? n : p.u[done].q;
            io_progress_show(progress, NULL, false);
        }
    }
    for (size_t c = 0; !rc && c < p.n_conts; c++) {
        ll[c] = p.ll[p.unit_of[c]];
        if (ntok)
            ntok[c] = p.u[p.unit_of[c]].m;
    }
    pl_free(p.u);
    pl_free(p.unit_of);
    pl_free(p.ll);
    return rc;
}

/* ---- scoring a whole suite ---- */

void eval_qset_release(struct eval_qset *s)
{
    pl_free(s->q);
    pl_free(s->conts);
    io_arena_release(&s->arena);
    memset(s, 0, sizeof *s);
}

int eval_qset_alloc(struct eval_qset *s, int n, int n_conts, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    s->q = pl_calloc((size_t)n + 1, sizeof *s->q);
    s->conts = pl_calloc((size_t)n_conts + 1, sizeof *s->conts);
    return s->q && s->conts ? PL_OK : pl_oom(err, "questions");
}

/* a + b + c in the arena (b, c may be NULL). */
const char *eval_cat3(struct io_arena *a, const char *x, const char *y, const char *z)
{
    struct pl_buf b = {0};
    pl_buf_str(&b, x);
    pl_buf_str(&b, y ? y : "");
    pl_buf_str(&b, z ? z : "");
    const char *s = b.oom ? NULL : io_arena_strndup(a, b.p, b.len);
    pl_buf_release(&b);
    return s;
}

/* Add question i: context and continuations " " + choice (delim prepended). */
int eval_qset_add(struct eval_qset *s, const char *context, const char *const *choices, int k,
                  const char *delim, struct pl_err *err)
{
    struct eval_query *q = &s->q[s->n++];
    q->context = context;
    q->conts = s->conts + s->n_conts;
    q->n = k;
    for (int j = 0; j < k; j++) {
        const char *c = eval_cat3(&s->arena, delim, choices[j], NULL);
        if (!c)
            return pl_oom(err, "questions");
        s->conts[s->n_conts++] = c;
    }
    return context ? PL_OK : pl_oom(err, "questions");
}

int eval_score_set(const struct eval_common *c, const char *label, const struct eval_query *q,
                   int n, int n_conts, double **ll, int **ntok, struct pl_err *err)
{
    struct eval_scorer s;
    *ll = pl_malloc(((size_t)n_conts + 1) * sizeof **ll);
    *ntok = pl_malloc(((size_t)n_conts + 1) * sizeof **ntok);
    int rc = eval_scorer_load(&s, c->model, c->mode, c->batch, err);
    if (!rc && (!*ll || !*ntok))
        rc = pl_oom(err, "scores");
    struct io_progress bar;
    io_progress_init(&bar, c->progress, label, "questions", n);
    double t0 = pl_now();
    if (!rc)
        rc = eval_score(&s, q, n, *ll, *ntok, &bar, err);
    if (!rc) {
        char note[64];
        double dt = pl_now() - t0;
        snprintf(note, sizeof note, "%.0f tokens/s", dt > 0 ? s.tokens / dt : 0.0);
        io_progress_show(&bar, note, true);
    }
    eval_scorer_release(&s);
    return rc;
}
