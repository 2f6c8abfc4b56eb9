#include "rlhf/bon.h"

#include "datasets/ds.h"
#include "model/ckpt.h"
#include "model/io.h"
#include "model/sample.h"
#include "reward/rm.h"

#include <math.h>
#include <string.h>

void bon_opts_default(struct bon_opts *o)
{
    *o = (struct bon_opts){
        .n = 4, .temperature = 1.0f, .max_new_tokens = 48, .seed = 1, .batch = 32};
}

struct bon {
    const struct bon_opts *o;
    struct gpt policy, reward;
    struct tok tok, rtok;
    struct ds_prompts prompts;
    struct rm_scorer sc;
    struct io_out out;
    struct io_progress progress;
    const char **texts_p, **texts_r;
    double *rewards;
    struct pl_buf line;
    double sum_best, sum_all;
    long done;
};

/* All n completions of a prompt: score them, keep the best, write the record. */
static int on_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    struct bon *b = user;
    const struct ds_prompt_rec *rec = &b->prompts.recs[c[0].prompt];
    for (int k = 0; k < n; k++) {
        b->texts_p[k] = rec->prompt;
        b->texts_r[k] = c[k].text;
    }
    int rc = rm_score_texts(&b->sc, &b->reward, &b->rtok, b->texts_p, b->texts_r, (size_t)n,
                            b->rewards, err);
    if (rc)
        return rc;
    int best = 0;
    for (int k = 0; k < n; k++) {
        if (!isfinite(b->rewards[k]))
            return pl_errf(err, PL_ENUMERIC, "prompt '%s': a reward is %g", rec->id,
                           b->rewards[k]);
        best = b->rewards[k] > b->rewards[best] ? k : best;
        b->sum_all += b->rewards[k];
    }
    b->sum_best += b->rewards[best];
    struct pl_buf *l = &b->line;
    l->len = 0;
    pl_buf_str(l, "{\"id\": ");
    pl_buf_json(l, rec->id, strlen(rec->id));
    pl_buf_str(l, ", \"prompt\": ");
    pl_buf_json(l, rec->prompt, strlen(rec->prompt));
    pl_buf_str(l, ", \"completions\": [");
    pl_buf_json(l, c[best].text, c[best].text_len);
    pl_buf_printf(l, "], \"rewards\": [%.9g], \"best\": %d, \"candidates\": [", b->rewards[best],
                  best);
    for (int k = 0; k < n; k++) {
        pl_buf_str(l, k ? ", " : "");
        pl_buf_json(l, c[k].text, c[k].text_len);
    }
    pl_buf_str(l, "], \"candidate_rewards\": [");
    for (int k = 0; k < n; k++)
        pl_buf_printf(l, "%s%.9g", k ? ", " : "", b->rewards[k]);
    pl_buf_str(l, "], \"model\": ");
    pl_buf_json(l, b->o->policy, strlen(b->o->policy));
    pl_buf_str(l, "}\n");
    if (l->oom)
        return pl_oom(err, "a record");
    if (fwrite(l->p, 1, l->len, b->out.f) != l->len)
        return pl_errf(err, PL_EIO, "cannot write '%s'", b->o->out);
    b->done++;
    b->progress.done = b->done;
    io_progress_show(&b->progress, NULL, b->done == (long)b->prompts.n);
    return PL_OK;
}

static int load(struct bon *b, struct pl_err *err)
{
    const struct bon_opts *o = b->o;
    if (!o->policy || !o->reward || !o->prompts || !o->out)
        return pl_errf(err, PL_EINVAL, "a policy, a reward model, prompts and an output are needed");
    if (o->n < 1 || !(o->temperature > 0.0f) || o->max_new_tokens < 1 || o->batch < 1)
        return pl_errf(err, PL_EINVAL, "n, temperature, new tokens and batch must be positive");
    struct gpt_opts fo = {.max_batch = 1, .max_seq = 1};
    int rc = ckpt_load_model(&b->policy, &b->tok, o->policy, &fo, err);
    if (rc == PL_OK)
        rc = rm_load(&b->reward, &b->rtok, o->reward, o->n, 0, err);
    if (rc == PL_OK)
        rc = rm_scorer_init(&b->sc, o->n, b->reward.cfg.n_positions, b->reward.cfg.eos_token_id,
                            err);
    if (rc == PL_OK)
        rc = ds_prompts_init(&b->prompts, o->prompts, o->skip_bad_lines ? IO_SKIP_BAD_LINES : 0,
                             err);
    if (rc == PL_OK && b->prompts.n == 0)
        rc = pl_errf(err, PL_EINVAL, "%s: no prompts", o->prompts);
    b->texts_p = pl_calloc((size_t)o->n, sizeof *b->texts_p);
    b->texts_r = pl_calloc((size_t)o->n, sizeof *b->texts_r);
    b->rewards = pl_calloc((size_t)o->n, sizeof *b->rewards);
    if (rc == PL_OK && (!b->texts_p || !b->texts_r || !b->rewards))
        rc = pl_oom(err, "best-of-n");
    return rc;
}

static int generate(struct bon *b, struct pl_err *err)
{
    const struct bon_opts *o = b->o;
    struct sample_opts so;
    sample_opts_default(&so);
    so.n = o->n;
    so.temperature = o->temperature;
    so.max_new_tokens = o->max_new_tokens;
    so.seed = o->seed;
    so.stop = o->stop;
    so.n_stop = o->n_stop;
    so.batch = (o->batch + o->n - 1) / o->n * o->n;
    size_t n = b->prompts.n;
    struct sample_ctx s = {0};
    struct tok_buf ids = {0};
    struct sample_prompt *sp = pl_calloc(n, sizeof *sp);
    size_t *start = pl_calloc(n, sizeof *start);
    int rc = sp && start ? sample_init(&s, &b->policy, &b->tok, &so, err)
                         : pl_oom(err, "the prompts");
    for (size_t i = 0; rc == PL_OK && i < n; i++) {
        start[i] = ids.n;
        const char *text = b->prompts.recs[i].prompt;
        rc = tok_encode(&b->tok, &ids, text, strlen(text), 0, err);
    }
    for (size_t i = 0; rc == PL_OK && i < n; i++) {
        size_t end = i + 1 < n ? start[i + 1] : ids.n;
        sp[i] = (struct sample_prompt){ids.ids + start[i], (int)(end - start[i]), (long)i};
    }
    if (rc == PL_OK) {
        io_progress_init(&b->progress, o->log, "bon", "prompts", (long)n);
        struct sample_hooks hooks = {.user = b, .done = on_done};
        rc = sample_generate(&s, sp, (int)n, &hooks, err);
    }
    sample_release(&s);
    tok_buf_release(&ids);
    pl_free(sp);
    pl_free(start);
    return rc;
}

int bon_run(const struct bon_opts *o, struct bon_result *res, struct pl_err *err)
{
    double t0 = pl_now();
    *res = (struct bon_result){.best = NAN, .sample = NAN};
    struct bon b = {.o = o};
    int rc = load(&b, err);
    if (rc == PL_OK)
        rc = io_out_open(&b.out, o->out, err);
    if (rc == PL_OK)
        rc = generate(&b, err);
    if (rc == PL_OK)
        rc = io_out_commit(&b.out, err);
    io_out_abort(&b.out);
    if (rc == PL_OK && b.done) {
        res->prompts = b.done;
        res->best = b.sum_best / (double)b.done;
        res->sample = b.sum_all / ((double)b.done * o->n);
    }
    res->seconds = pl_now() - t0;
    gpt_release(&b.policy);
    gpt_release(&b.reward);
    tok_release(&b.tok);
    tok_release(&b.rtok);
    ds_prompts_release(&b.prompts);
    rm_scorer_release(&b.sc);
    pl_free(b.texts_p);
    pl_free(b.texts_r);
    pl_free(b.rewards);
    pl_buf_release(&b.line);
    return rc;
}
