#include "gen.h"

#include "model/ckpt.h"
#include "model/sample.h"

#include <string.h>

int eval_load_model(struct gpt *m, struct tok *t, const char *dir, struct pl_err *err)
{
    /* The KV cache holds its own activations: the model needs none of its own. */
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    return ckpt_load_model(m, t, dir, &go, err);
}

struct gen_run {
    struct eval_answers *a;
    struct io_progress bar;
    const struct sample_ctx *s;
};

static int gen_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    struct gen_run *g = user;
    struct eval_answers *a = g->a;
    for (int j = 0; j < n; j++) {
        const char *text = io_arena_strndup(&a->arena, c[j].text, c[j].text_len);
        if (!text)
            return pl_oom(err, "answers");
        a->text[(size_t)c[j].prompt * (size_t)a->k + (size_t)c[j].k] = text;
    }
    g->bar.done++;
    char note[48];
    double dt = pl_now() - g->bar.t0;
    snprintf(note, sizeof note, "%.0f tokens/s", dt > 0 ? g->s->tokens / dt : 0.0);
    io_progress_show(&g->bar, note, false);
    return PL_OK;
}

int eval_generate(const struct gpt *m, const struct tok *t, const char *const *prompts,
                  const char *const *ids, int n, const struct eval_gen_opts *o,
                  struct eval_answers *a, struct pl_err *err)
{
    memset(a, 0, sizeof *a);
    a->n = n;
    a->k = o->k;
    struct tok_buf buf = {0};
    size_t *start = pl_malloc(((size_t)n + 1) * sizeof *start);
    struct sample_prompt *sp = pl_malloc(((size_t)n + 1) * sizeof *sp);
    a->text = pl_calloc((size_t)n * (size_t)o->k + 1, sizeof *a->text);
    struct sample_ctx s = {0};
    int rc = start && sp && a->text ? PL_OK : pl_oom(err, "prompts");
    int longest = 1;
    for (int i = 0; !rc && i < n; i++) {
        start[i] = buf.n;
        rc = tok_encode(t, &buf, prompts[i], strlen(prompts[i]), 0, err);
        int len = (int)(buf.n - start[i]), room = m->cfg.n_positions - o->max_new_tokens;
        if (!rc && o->cut_left && len > room && room >= 1) {
            memmove(buf.ids + start[i], buf.ids + buf.n - room, (size_t)room * sizeof *buf.ids);
            buf.n = start[i] + (size_t)room;
            len = room;
        }
        for (size_t j = start[i]; !rc && j < buf.n; j++)
            if (buf.ids[j] >= m->cfg.vocab_size)
                rc = pl_errf(err, PL_EINVAL,
                             "prompt '%s': token id %d is outside the model's vocabulary (%d)",
                             ids[i], buf.ids[j], m->cfg.vocab_size);
        if (!rc && len + 1 >= m->cfg.n_positions)
            rc = pl_errf(err, PL_EINVAL,
                         "prompt '%s': %d tokens leave no room to answer in the model's context "
                         "of %d",
                         ids[i], len, m->cfg.n_positions);
        longest = len > longest ? len : longest;
    }
    for (int i = 0; !rc && i < n; i++)
        sp[i] = (struct sample_prompt){buf.ids + start[i],
                                       (int)((i + 1 < n ? start[i + 1] : buf.n) - start[i]), i};
    struct sample_opts so;
    sample_opts_default(&so);
    so.n = o->k;
    so.temperature = o->temperature;
    so.max_new_tokens = o->max_new_tokens;
    so.seed = o->seed;
    so.stop = o->stop;
    so.n_stop = o->n_stop;
    long want = (long)longest + o->max_new_tokens;
    so.max_len = (int)(want < m->cfg.n_positions ? want : m->cfg.n_positions);
    long need = (long)n * o->k;
    so.batch = o->batch < o->k ? o->k : o->batch;
    so.batch = need > 0 && need < so.batch ? (int)need : so.batch;
    if (!rc && n > 0)
        rc = sample_init(&s, m, t, &so, err);
    struct gen_run g = {.a = a, .s = &s};
    io_progress_init(&g.bar, o->progress, o->label ? o->label : "generate", "prompts", n);
    if (!rc && n > 0) {
        struct sample_hooks hooks = {.user = &g, .done = gen_done};
        rc = sample_generate(&s, sp, n, &hooks, err);
    }
    if (!rc)
        io_progress_show(&g.bar, NULL, true);
    sample_release(&s);
    tok_buf_release(&buf);
    pl_free(start);
    pl_free(sp);
    return rc;
}

void eval_answers_release(struct eval_answers *a)
{
    pl_free(a->text);
    io_arena_release(&a->arena);
    memset(a, 0, sizeof *a);
}
