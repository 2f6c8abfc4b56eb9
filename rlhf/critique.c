#include "critique.h"

#include "model/ckpt.h"

#include <math.h>
#include <string.h>

/* ---- pure parts ---- */

int critique_accept(int broken_current, int broken_revision, bool same_text, bool scored,
                    double score_current, double score_revision, bool ties)
{
    if (same_text || broken_revision > broken_current)
        return CRITIQUE_REJECTED;
    if (broken_revision == broken_current && !ties)
        return CRITIQUE_REJECTED;
    if (scored && !(score_revision >= score_current))
        return CRITIQUE_REJECTED;
    return broken_revision < broken_current ? CRITIQUE_KEPT_RULES : CRITIQUE_KEPT_CRITIQUE;
}

static void add_stripped(struct pl_buf *b, const char *s)
{
    size_t from = 0, to = strlen(s);
    ds_strip(s, &from, &to);
    pl_buf_add(b, s + from, to - from);
}

void critique_choice_text(struct pl_buf *b, const char *prompt, const char *a, const char *b_text,
                          const char *critique_request)
{
    pl_buf_str(b, prompt);
    pl_buf_str(b, "\n(A) ");
    add_stripped(b, a);
    pl_buf_str(b, "\n(B) ");
    add_stripped(b, b_text);
    pl_buf_str(b, "\nQuestion: ");
    pl_buf_str(b, critique_request);
    pl_buf_str(b, " Which answer is better?\nAnswer:");
}

double critique_choice(double logp_a, double logp_b)
{
    /* 1 / (1 + exp(lb - la)), in the form that never overflows. */
    double d = logp_b - logp_a;
    return d > 0 ? exp(-d) / (1 + exp(-d)) : 1 / (1 + exp(d));
}

static double clamp(double p, double lo, double hi)
{
    return p < lo ? lo : p > hi ? hi : p;
}

double critique_preference(const double *lp, int n, double lo, double hi)
{
    double sum = 0;
    for (int k = 0; k < n; k++) {
        sum += clamp(critique_choice(lp[4 * k], lp[4 * k + 1]), lo, hi);
        sum += clamp(critique_choice(lp[4 * k + 3], lp[4 * k + 2]), lo, hi);
    }
    return sum / (2.0 * n);
}

void critique_opts_default(struct critique_opts *o)
{
    *o = (struct critique_opts){
        .rounds = 1,
        .max_new_tokens = 48,
        .temperature = 1,
        .seed = 1,
        .batch = 16,
        .clamp_lo = 0,
        .clamp_hi = 1,
    };
}

void critique_trace_release(struct critique_trace *t)
{
    for (int i = 0; t->rounds && i < t->n_rounds; i++) {
        pl_free(t->rounds[i].critique);
        pl_free(t->rounds[i].revision);
        pl_free(t->rounds[i].broken_rules);
    }
    pl_free(t->rounds);
    pl_free(t->draft);
    pl_free(t->draft_rules);
    memset(t, 0, sizeof *t);
}

const char *critique_trace_final(const struct critique_trace *t)
{
    return t->final_round >= 0 ? t->rounds[t->final_round].revision : t->draft;
}

/* ---- the run ---- */

int critique_run_init(struct critique_run *r, const char *model_dir, const char *reward_dir,
                      const char *few_shot, const struct ds_constitution *c,
                      const struct critique_opts *o, struct pl_err *err)
{
    memset(r, 0, sizeof *r);
    r->c = c;
    r->o = *o;
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = ckpt_load_model(&r->m, &r->t, model_dir, &go, err);
    int ctx = r->m.cfg.n_positions;
    if (!rc && o->max_new_tokens >= ctx - 1)
        rc = pl_errf(err, PL_EINVAL,
                     "--max-new-tokens %d leaves no context in the model's window of %d tokens",
                     o->max_new_tokens, ctx);
    if (!rc) {
        static const char *const stop[] = {"\n"};
        struct sample_opts so;
        sample_opts_default(&so);
        so.max_new_tokens = o->max_new_tokens;
        so.temperature = o->temperature;
        so.seed = o->seed;
        so.stop = stop;
        so.n_stop = 1;
        so.batch = o->batch;
        so.max_len = ctx;
        rc = sample_init(&r->s, &r->m, &r->t, &so, err);
    }
    if (!rc && reward_dir) {
        rc = rm_load(&r->rm, &r->rm_tok, reward_dir, o->batch, 0, err);
        if (!rc)
            rc = rm_scorer_init(&r->scorer, o->batch, r->rm.cfg.n_positions, tok_eos(&r->rm_tok),
                                err);
        r->scored = rc == PL_OK;
    }
    if (!rc && few_shot) {
        size_t len;
        rc = io_read_file(few_shot, &r->few_shot, &len, err);
    }
    if (!rc)
        rc = kv_init(&r->kv, &r->m, 2, ctx, 2 * ctx, err);
    if (!rc) {
        r->logp = pl_malloc(sizeof *r->logp * (size_t)ctx);
        rc = r->logp ? PL_OK : pl_oom(err, "critique");
    }
    if (rc)
        critique_run_release(r);
    return rc;
}

void critique_run_release(struct critique_run *r)
{
    sample_release(&r->s);
    gpt_release(&r->m);
    tok_release(&r->t);
    rm_scorer_release(&r->scorer);
    gpt_release(&r->rm);
    tok_release(&r->rm_tok);
    kv_release(&r->kv);
    tok_buf_release(&r->ids);
    pl_free(r->few_shot);
    pl_free(r->logp);
    memset(r, 0, sizeof *r);
}

/* ---- generation of one step for many prompts ---- */

struct step_out {
    char **texts; /* [n] stripped completions, pl_malloc'd */
};

static int step_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    (void)n;
    struct step_out *o = user;
    size_t from = 0, to = c[0].text_len;
    ds_strip(c[0].text, &from, &to);
    char *s = pl_malloc(to - from + 1);
    if (!s)
        return pl_oom(err, "a completion");
    memcpy(s, c[0].text + from, to - from);
    s[to - from] = '\0';
    o->texts[c[0].prompt] = s;
    return PL_OK;
}

/* One completion of each context[i] (its last n_positions - max_new_tokens tokens), drawn with
 * the RNG of (seed, seq[i]), into out[i] (stripped, pl_malloc'd). */
static int generate(struct critique_run *r, const char *const *context, const long *seq, int n,
                    char **out, struct pl_err *err)
{
    int keep = r->m.cfg.n_positions - r->o.max_new_tokens;
    size_t *start = pl_malloc(sizeof *start * ((size_t)n + 1));
    struct sample_prompt *p = pl_malloc(sizeof *p * (size_t)n);
    int rc = start && p ? PL_OK : pl_oom(err, "critique contexts");
    r->ids.n = 0;
    for (int i = 0; !rc && i < n; i++) {
        start[i] = r->ids.n;
        rc = tok_encode(&r->t, &r->ids, context[i], strlen(context[i]), 0, err);
        size_t len = r->ids.n - start[i];
        if (!rc && len > (size_t)keep) {
            memmove(r->ids.ids + start[i], r->ids.ids + r->ids.n - keep, sizeof(int) * keep);
            r->ids.n = start[i] + (size_t)keep;
        }
    }
    for (int i = 0; !rc && i < n; i++) {
        size_t end = i + 1 < n ? start[i + 1] : r->ids.n;
        p[i] = (struct sample_prompt){r->ids.ids + start[i], (int)(end - start[i]), seq[i]};
    }
    if (!rc) {
        struct step_out so = {out};
        struct sample_hooks hooks = {.user = &so, .done = step_done};
        rc = sample_generate(&r->s, p, n, &hooks, err);
    }
    pl_free(start);
    pl_free(p);
    return rc;
}

/* Rewards of (prompts[i], " " texts[i]) into score[i]. */
static int score_texts(struct critique_run *r, const char *const *prompts, char *const *texts,
                       int n, double *score, struct pl_err *err)
{
    char **resp = pl_calloc((size_t)n, sizeof *resp);
    int rc = resp ? PL_OK : pl_oom(err, "responses");
    for (int i = 0; !rc && i < n; i++) {
        size_t len = strlen(texts[i]);
        resp[i] = pl_malloc(len + 2);
        if (!resp[i]) {
            rc = pl_oom(err, "responses");
            break;
        }
        resp[i][0] = ' ';
        memcpy(resp[i] + 1, texts[i], len + 1);
    }
    if (!rc)
        rc = rm_score_texts(&r->scorer, &r->rm, &r->rm_tok, prompts, (const char *const *)resp,
                            (size_t)n, score, err);
    for (int i = 0; resp && i < n; i++)
        pl_free(resp[i]);
    pl_free(resp);
    return rc;
}

/* The few-shot text and the step's context of prompt i, as a pl_malloc'd string. */
static char *step_context(const struct critique_run *r, const char *prompt, const char *response,
                          const struct ds_principle *p, const char *critique)
{
    struct pl_buf b = {0};
    if (r->few_shot)
        pl_buf_str(&b, r->few_shot);
    ds_critique_text(&b, prompt, response, p->critique_request, critique, p->revision_request);
    if (b.oom) {
        pl_buf_release(&b);
        return NULL;
    }
    return b.p;
}

static void free_all(char **s, int n)
{
    for (int i = 0; s && i < n; i++) {
        pl_free(s[i]);
        s[i] = NULL;
    }
}

static const char *current(const struct critique_trace *t)
{
    return critique_trace_final(t);
}

/* The critique of the first rule of principle p that the response breaks (broken: [n_rules])
 * and that carries one; NULL when there is none. */
static const char *rule_critique(const struct ds_constitution *c, int p, const bool *broken)
{
    for (int k = 0; k < c->n_rules; k++)
        if (c->rules[k].principle == p && broken[k] && c->rules[k].critique)
            return c->rules[k].critique;
    return NULL;
}

/* The principle of each round of the prompt at place index. */
static int draw_principle(const struct critique_run *r, struct pl_rng *rng)
{
    int n = r->o.principles ? r->o.n_principles : r->c->n_principles;
    int k = (int)(pl_rng_next(rng) % (uint64_t)n);
    return r->o.principles ? r->o.principles[k] : k;
}

/* Round k of every trace: critique, revision, rules, reward, verdict. */
static int revise_round(struct critique_run *r, const char *const *prompts, const long *index,
                        int n, int k, struct critique_trace *tr, char **ctx, long *seq,
                        char **texts, double *score, struct pl_err *err)
{
    int steps = 1 + 2 * r->o.rounds, rc = PL_OK;
    for (int i = 0; !rc && i < n; i++) {
        struct critique_round *rd = &tr[i].rounds[k];
        ctx[i] =
            step_context(r, prompts[i], current(&tr[i]), &r->c->principles[rd->principle], NULL);
        seq[i] = index[i] * steps + 1 + 2 * k;
        rc = ctx[i] ? PL_OK : pl_oom(err, "critique contexts");
    }
    if (!rc)
        rc = generate(r, (const char *const *)ctx, seq, n, texts, err);
    for (int i = 0; !rc && i < n; i++) {
        struct critique_trace *t = &tr[i];
        struct critique_round *rd = &t->rounds[k];
        const char *said = rule_critique(
            r->c, rd->principle,
            t->final_round >= 0 ? t->rounds[t->final_round].broken_rules : t->draft_rules);
        rd->rule_critique = said != NULL;
        rd->critique = said ? pl_strdup(said) : texts[i];
        if (said)
            pl_free(texts[i]);
        texts[i] = NULL;
        if (!rd->critique) {
            rc = pl_oom(err, "critiques");
            break;
        }
        pl_free(ctx[i]);
        ctx[i] = step_context(r, prompts[i], current(&tr[i]), &r->c->principles[rd->principle],
                              rd->critique);
        seq[i]++;
        rc = ctx[i] ? PL_OK : pl_oom(err, "revision contexts");
    }
    if (!rc)
        rc = generate(r, (const char *const *)ctx, seq, n, texts, err);
    for (int i = 0; !rc && i < n; i++) {
        tr[i].rounds[k].revision = texts[i];
        texts[i] = NULL;
    }
    if (!rc && r->scored) {
        for (int i = 0; i < n; i++)
            texts[i] = tr[i].rounds[k].revision;
        rc = score_texts(r, prompts, texts, n, score, err);
        memset(texts, 0, sizeof *texts * (size_t)n);
    }
    for (int i = 0; !rc && i < n; i++) {
        struct critique_trace *t = &tr[i];
        struct critique_round *rd = &t->rounds[k];
        rc = ds_constitution_check(r->c, prompts[i], rd->revision, rd->broken_rules, &rd->broken,
                                   err);
        rd->score = r->scored ? score[i] : NAN;
        int cur_broken = t->final_round >= 0 ? t->rounds[t->final_round].broken : t->draft_broken;
        double cur_score = t->final_round >= 0 ? t->rounds[t->final_round].score : t->draft_score;
        if (!rc) {
            rd->verdict =
                critique_accept(cur_broken, rd->broken, strcmp(rd->revision, current(t)) == 0,
                                r->scored, cur_score, rd->score, r->o.ties);
            if (rd->verdict != CRITIQUE_REJECTED)
                t->final_round = k;
        }
    }
    free_all(ctx, n);
    return rc;
}

static int alloc_traces(const struct critique_run *r, struct critique_trace *tr, const long *index,
                        int n, struct pl_err *err)
{
    for (int i = 0; i < n; i++) {
        struct critique_trace *t = &tr[i];
        t->final_round = -1;
        t->draft_score = NAN;
        t->rounds = pl_calloc((size_t)r->o.rounds, sizeof *t->rounds);
        t->draft_rules = pl_calloc((size_t)r->c->n_rules + 1, sizeof *t->draft_rules);
        if (!t->rounds || !t->draft_rules)
            return pl_oom(err, "critique traces");
        t->n_rounds = r->o.rounds;
        struct pl_rng rng;
        pl_rng_seed(&rng, r->o.seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(index[i] + 1)));
        for (int k = 0; k < r->o.rounds; k++) {
            t->rounds[k].principle = draw_principle(r, &rng);
            t->rounds[k].broken_rules =
                pl_calloc((size_t)r->c->n_rules + 1, sizeof *t->rounds[k].broken_rules);
            if (!t->rounds[k].broken_rules)
                return pl_oom(err, "critique traces");
        }
    }
    return PL_OK;
}

int critique_revise(struct critique_run *r, const char *const *prompts, const long *index, int n,
                    struct critique_trace *tr, struct pl_err *err)
{
    char **ctx = pl_calloc((size_t)n, sizeof *ctx);
    char **texts = pl_calloc((size_t)n, sizeof *texts);
    long *seq = pl_malloc(sizeof *seq * (size_t)n);
    double *score = pl_malloc(sizeof *score * (size_t)n);
    int rc = ctx && texts && seq && score ? PL_OK : pl_oom(err, "critique");
    if (!rc)
        rc = alloc_traces(r, tr, index, n, err);
    int steps = 1 + 2 * r->o.rounds;
    for (int i = 0; !rc && i < n; i++)
        seq[i] = index[i] * steps;
    if (!rc)
        rc = generate(r, prompts, seq, n, texts, err);
    for (int i = 0; !rc && i < n; i++) {
        tr[i].draft = texts[i];
        texts[i] = NULL;
        rc = ds_constitution_check(r->c, prompts[i], tr[i].draft, tr[i].draft_rules,
                                   &tr[i].draft_broken, err);
    }
    if (!rc && r->scored) {
        for (int i = 0; i < n; i++)
            texts[i] = tr[i].draft;
        rc = score_texts(r, prompts, texts, n, score, err);
        memset(texts, 0, sizeof *texts * (size_t)n);
        for (int i = 0; !rc && i < n; i++)
            tr[i].draft_score = score[i];
    }
    for (int k = 0; !rc && k < r->o.rounds; k++)
        rc = revise_round(r, prompts, index, n, k, tr, ctx, seq, texts, score, err);
    free_all(ctx, n);
    free_all(texts, n);
    pl_free(ctx);
    pl_free(texts);
    pl_free(seq);
    pl_free(score);
    return rc;
}

/* ---- AI preference ---- */

int critique_score_choices(struct critique_run *r, const char *context, const char *const *conts,
                           int n, double *out, struct pl_err *err)
{
    struct kv_cache *kv = &r->kv;
    int ctx = r->m.cfg.n_positions;
    struct tok_buf *ids = &r->ids;
    ids->n = 0;
    int rc = PL_OK, longest = 0;
    size_t *start = pl_malloc(sizeof *start * ((size_t)n + 1));
    if (!start)
        return pl_oom(err, "choices");
    for (int i = 0; !rc && i < n; i++) {
        start[i] = ids->n;
        rc = tok_encode(&r->t, ids, conts[i], strlen(conts[i]), 0, err);
        int len = (int)(ids->n - start[i]);
        if (!rc && len < 1)
            rc = pl_errf(err, PL_EINVAL, "choice %d is empty", i + 1);
        longest = len > longest ? len : longest;
    }
    start[n] = ids->n;
    size_t c0 = ids->n;
    if (!rc)
        rc = tok_encode(&r->t, ids, context, strlen(context), 0, err);
    int keep = ctx - longest;
    if (!rc && keep < 1)
        rc = pl_errf(err, PL_EINVAL, "a choice of %d tokens leaves no context", longest);
    int nc = rc ? 0 : (int)(ids->n - c0);
    if (!rc && nc < 1)
        rc = pl_errf(err, PL_EINVAL, "the question is empty");
    const int *c = ids->ids + c0;
    if (!rc && nc > keep) {
        c += nc - keep;
        nc = keep;
    }
    kv->len[0] = 0;
    int slot0 = 0, slot1 = 1;
    if (!rc && nc > 1) {
        int count = nc - 1;
        rc = kv_extend(kv, 1, &slot0, &count, c, err);
    }
    int *tokens = pl_malloc(sizeof *tokens * (size_t)(longest + 1) * 2);
    if (!rc && !tokens)
        rc = pl_oom(err, "choices");
    for (int i = 0; !rc && i < n; i++) {
        int m = (int)(start[i + 1] - start[i]);
        const int *x = ids->ids + start[i];
        int *targets = tokens + longest + 1;
        tokens[0] = c[nc - 1];
        for (int j = 0; j < m; j++) {
            targets[j] = x[j];
            if (j + 1 < m)
                tokens[j + 1] = x[j];
        }
        kv_fork(kv, slot1, slot0);
        rc = kv_extend_logp(kv, 1, &slot1, &m, tokens, targets, r->logp, err);
        double sum = 0;
        for (int j = 0; !rc && j < m; j++)
            sum += r->logp[j];
        out[i] = sum;
    }
    kv->len[0] = kv->len[1] = 0;
    pl_free(tokens);
    pl_free(start);
    return rc;
}

int critique_compare(struct critique_run *r, const char *prompt, const char *x, const char *y,
                     double *p, struct pl_err *err)
{
    int n = r->o.principles ? r->o.n_principles : r->c->n_principles;
    double *lp = pl_malloc(sizeof *lp * 4 * (size_t)n);
    static const char *const conts[] = {CRITIQUE_CHOICE_A, CRITIQUE_CHOICE_B};
    struct pl_buf b = {0};
    int rc = lp ? PL_OK : pl_oom(err, "preferences");
    for (int k = 0; !rc && k < n; k++) {
        const struct ds_principle *pr = &r->c->principles[r->o.principles ? r->o.principles[k] : k];
        for (int order = 0; !rc && order < 2; order++) {
            b.len = 0;
            if (r->few_shot)
                pl_buf_str(&b, r->few_shot);
            critique_choice_text(&b, prompt, order ? y : x, order ? x : y, pr->critique_request);
            rc = b.oom ? pl_oom(err, "a question") : PL_OK;
            if (!rc)
                rc = critique_score_choices(r, b.p, conts, 2, lp + 4 * k + 2 * order, err);
        }
    }
    if (!rc)
        *p = critique_preference(lp, n, r->o.clamp_lo, r->o.clamp_hi);
    pl_buf_release(&b);
    pl_free(lp);
    return rc;
}
