#include "score.h"

#include "datasets/ds.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

int score_init(struct score_ctx *s, struct gpt *m, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    size_t n = (size_t)m->opts.max_batch * m->opts.max_seq;
    s->tokens = pl_malloc(sizeof(int) * n);
    s->targets = pl_malloc(sizeof(int) * n);
    s->last = pl_malloc(sizeof(int) * (size_t)m->opts.max_batch);
    if (!s->tokens || !s->targets || !s->last) {
        score_release(s);
        return pl_oom(err, "scoring buffers");
    }
    return PL_OK;
}

void score_release(struct score_ctx *s)
{
    pl_free(s->tokens);
    pl_free(s->targets);
    pl_free(s->last);
    memset(s, 0, sizeof *s);
}

int score_seqs(struct score_ctx *s, const int *const *seqs, const int *lens, int n,
               float *const *logp, float *head, struct pl_err *err)
{
    struct gpt *m = s->m;
    if (n < 1 || n > m->opts.max_batch)
        return pl_errf(err, PL_EINVAL, "score: %d sequences in a batch of at most %d", n,
                       m->opts.max_batch);
    int T = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || lens[i] > m->opts.max_seq)
            return pl_errf(err, PL_EINVAL, "score: sequence %d has %d tokens (1 to %d allowed)", i,
                           lens[i], m->opts.max_seq);
        T = lens[i] > T ? lens[i] : T;
    }
    for (int i = 0; i < n; i++) {
        int *tok = s->tokens + (size_t)i * T, *tgt = s->targets + (size_t)i * T;
        memcpy(tok, seqs[i], sizeof(int) * (size_t)lens[i]);
        for (int t = 0; t < T; t++) {
            if (t >= lens[i])
                tok[t] = 0;
            tgt[t] = t + 1 < lens[i] ? seqs[i][t + 1] : -1;
        }
        s->last[i] = lens[i] - 1;
    }
    struct gpt_batch b = {.B = n, .T = T, .tokens = s->tokens, .last = s->last,
                          .targets = m->opts.head_only ? NULL : s->targets};
    int rc = gpt_forward(m, &b, err);
    if (rc)
        return rc;
    for (int i = 0; i < n && logp && !m->opts.head_only; i++)
        memcpy(logp[i], m->logp + (size_t)i * T, sizeof(float) * (size_t)(lens[i] - 1));
    if (head && m->head && m->w.score)
        memcpy(head, m->head, sizeof(float) * (size_t)n);
    return PL_OK;
}

/* ---- plumb score ---- */

/* Up to a batch of input lines, tokenised, waiting to be scored together. */
struct pending {
    const int **seqs; /* [B] each pointing at T ids of `ids` */
    int *lens;        /* [B] */
    int *ids;         /* [B * T] */
    float **lp;       /* [B] each pointing at T floats of `lpbuf` */
    float *lpbuf;     /* [B * T] */
    int n;
};

/* Tokens of one record: {"text"} through the tokenizer, or {"tokens"} checked. */
static int record_tokens(const struct ds_jsonl *r, const cJSON *obj, const struct tok *t,
                         int vocab, struct tok_buf *buf, struct pl_err *err)
{
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, "text");
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
    buf->n = 0;
    if (text) {
        if (!cJSON_IsString(text))
            return ds_jsonl_errf(r, err, "field 'text': expected a string");
        return tok_encode(t, buf, text->valuestring, strlen(text->valuestring), 0, err);
    }
    if (!cJSON_IsArray(toks))
        return ds_jsonl_errf(r, err, "expected a field 'text' (string) or 'tokens' (array)");
    const cJSON *x;
    cJSON_ArrayForEach(x, toks)
    {
        double v = cJSON_IsNumber(x) ? x->valuedouble : -1.0;
        if (v != floor(v) || v < 0 || v >= vocab)
            return ds_jsonl_errf(r, err, "field 'tokens': expected ids from 0 to %d", vocab - 1);
        if (buf->n == buf->cap) {
            size_t cap = buf->cap ? buf->cap * 2 : 64;
            int *ids = pl_realloc(buf->ids, cap * sizeof *ids);
            if (!ids)
                return pl_oom(err, "token buffer");
            buf->ids = ids;
            buf->cap = cap;
        }
        buf->ids[buf->n++] = (int)v;
    }
    return PL_OK;
}

static int write_result(FILE *out, const int *ids, int n, const float *lp)
{
    double sum = 0.0;
    fputs("{\"tokens\":[", out);
    for (int i = 0; i < n; i++)
        fprintf(out, i ? ",%d" : "%d", ids[i]);
    fputs("],\"logprobs\":[", out);
    for (int i = 0; i < n - 1; i++) {
        fprintf(out, i ? ",%.9g" : "%.9g", lp[i]);
        sum += lp[i];
    }
    fprintf(out, "],\"sum\":%.9g,\"ppl\":", sum);
    if (n > 1)
        fprintf(out, "%.9g}\n", exp(-sum / (n - 1)));
    else
        fputs("null}\n", out);
    return ferror(out) ? PL_EIO : PL_OK;
}

/* Score the pending sequences as one batch and write them in order. */
static int flush_batch(struct score_ctx *s, struct pending *p, FILE *out, struct pl_err *err)
{
    int rc = score_seqs(s, p->seqs, p->lens, p->n, p->lp, NULL, err);
    for (int i = 0; i < p->n && !rc; i++)
        if (write_result(out, p->seqs[i], p->lens[i], p->lp[i]))
            rc = pl_errf(err, PL_EIO, "cannot write the scores");
    p->n = 0;
    return rc;
}

static int pending_init(struct pending *p, int B, int T, struct pl_err *err)
{
    memset(p, 0, sizeof *p);
    p->seqs = pl_calloc((size_t)B, sizeof *p->seqs);
    p->lens = pl_calloc((size_t)B, sizeof *p->lens);
    p->ids = pl_malloc(sizeof(int) * (size_t)B * T);
    p->lp = pl_calloc((size_t)B, sizeof *p->lp);
    p->lpbuf = pl_malloc(sizeof(float) * (size_t)B * T);
    if (!p->seqs || !p->lens || !p->ids || !p->lp || !p->lpbuf)
        return pl_oom(err, "scoring buffers");
    for (int i = 0; i < B; i++) {
        p->seqs[i] = p->ids + (size_t)i * T;
        p->lp[i] = p->lpbuf + (size_t)i * T;
    }
    return PL_OK;
}

static void pending_release(struct pending *p)
{
    pl_free(p->seqs);
    pl_free(p->lens);
    pl_free(p->ids);
    pl_free(p->lp);
    pl_free(p->lpbuf);
}

int score_jsonl(struct score_ctx *s, const struct tok *t, const char *in_path, FILE *out,
                struct pl_err *err)
{
    int B = s->m->opts.max_batch, T = s->m->opts.max_seq;
    struct ds_jsonl r;
    struct tok_buf buf = {0};
    struct pending p;
    int rc = pending_init(&p, B, T, err);
    int rc_open = ds_jsonl_init(&r, in_path, 0, err);
    rc = rc ? rc : rc_open;
    cJSON *obj = NULL;
    long line = 0;
    while (!rc && !(rc = ds_jsonl_next(&r, &obj, &line, err)) && obj) {
        rc = record_tokens(&r, obj, t, s->m->cfg.vocab_size, &buf, err);
        cJSON_Delete(obj);
        if (!rc && (buf.n < 1 || (int)buf.n > T))
            rc = pl_errf(err, PL_EFORMAT, "%s:%ld: %zu tokens; the model scores 1 to %d",
                         in_path, line, buf.n, T);
        if (rc)
            break;
        memcpy(p.ids + (size_t)p.n * T, buf.ids, sizeof(int) * buf.n);
        p.lens[p.n++] = (int)buf.n;
        if (p.n == B)
            rc = flush_batch(s, &p, out, err);
    }
    if (!rc && p.n)
        rc = flush_batch(s, &p, out, err);
    ds_jsonl_release(&r);
    tok_buf_release(&buf);
    pending_release(&p);
    return rc;
}
