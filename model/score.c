#include "score.h"

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
    /* Without logp nobody wants the LM head: a reward read skips its V-wide product. */
    struct gpt_batch b = {.B = n,
                          .T = T,
                          .tokens = s->tokens,
                          .last = s->last,
                          .targets = m->opts.head_only || !logp ? NULL : s->targets};
    int rc = gpt_forward(m, &b, err);
    if (rc)
        return rc;
    for (int i = 0; i < n && logp && !m->opts.head_only; i++)
        memcpy(logp[i], m->logp + (size_t)i * T, sizeof(float) * (size_t)(lens[i] - 1));
    if (head && m->head && m->w.score)
        memcpy(head, m->head, sizeof(float) * (size_t)n);
    return PL_OK;
}
