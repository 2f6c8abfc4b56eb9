#include "critique.h"

#include "args.h"

#include "datasets/constitution.h"
#include "datasets/ds.h"
#include "model/io.h"
#include "rlhf/critique.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct critique_args {
    const char *model, *constitution, *prompts, *compare, *out, *trace, *reward, *few_shot;
    const char *principles;
    bool clamp;
    struct critique_opts o;
    struct cmd_engine engine;
};

static const char *critique_check(void *ctx)
{
    const struct critique_args *a = ctx;
    if (!a->prompts == !a->compare)
        return "give one of '--prompts' (the SL stage) and '--compare' (AI feedback)";
    if (a->compare && (a->trace || a->reward))
        return "'--trace' and '--reward' belong to the SL stage ('--prompts')";
    return NULL;
}

/* ---- ids already written ---- */

struct id_set {
    char **v;
    size_t n, cap;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool id_set_has(const struct id_set *s, const char *id)
{
    return s->n && bsearch(&id, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
}

static void id_set_release(struct id_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        pl_free(s->v[i]);
    pl_free(s->v);
    memset(s, 0, sizeof *s);
}

/* One whole record of an existing output: its id into s, its model checked when model is set. */
static int written_record(const char *path, long line, const char *text, size_t len,
                          const char *model, struct id_set *s, struct pl_err *err)
{
    cJSON *obj = NULL;
    int rc = io_json_parse(text, len, &obj);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(obj, "model");
    if (rc == PL_ENOMEM)
        rc = pl_oom(err, path);
    else if (rc || !cJSON_IsObject(obj))
        rc = pl_errf(err, PL_EFORMAT, "%s:%ld: not a JSON object", path, line);
    else if (!cJSON_IsString(id))
        rc = pl_errf(err, PL_EFORMAT, "%s:%ld: field 'id': expected a string", path, line);
    else if (model && (!cJSON_IsString(by) || (strcmp(by->valuestring, model) != 0 &&
                                               !io_same_file(by->valuestring, model))))
        rc = pl_errf(err, PL_EFORMAT,
                     "%s:%ld: not written by model '%s' (resume with that model, or write to "
                     "another --out)",
                     path, line, model);
    char **grown = rc ? NULL : io_grow(s->v, &s->cap, s->n + 1, sizeof *s->v);
    if (!rc && grown) {
        s->v = grown;
        s->v[s->n] = pl_strdup(id->valuestring);
        rc = s->v[s->n] ? PL_OK : pl_oom(err, path);
        s->n += rc == PL_OK;
    } else if (!rc) {
        rc = pl_oom(err, path);
    }
    cJSON_Delete(obj);
    return rc;
}

/* The ids of the whole records of path (none when it is missing). *keep: the length to cut a
 * crash's cut-short last line to, or -1. */
static int written_ids(const char *path, const char *model, struct id_set *s, long *keep,
                       struct pl_err *err)
{
    int rc = io_jsonl_tail(path, keep, err);
    struct io_lines l = {0};
    if (!rc)
        rc = io_lines_init(&l, path, err);
    if (rc == PL_ENOTFOUND) {
        *err = (struct pl_err){0};
        rc = PL_OK;
    } else {
        const char *line;
        size_t len;
        while (!rc && !(rc = io_lines_next(&l, &line, &len, err)) && line && !l.cut)
            if (!io_blank(line, len))
                rc = written_record(path, l.lineno, line, len, model, s, err);
    }
    io_lines_release(&l);
    if (!rc && s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_str);
    return rc;
}

static int cut_tail(const char *path, long keep, struct pl_err *err)
{
    return keep >= 0 ? io_truncate(path, keep, err) : PL_OK;
}

static int append(const char *path, struct pl_buf *b, struct pl_err *err)
{
    return b->oom ? pl_oom(err, path) : io_append_durable(path, b->p, b->len, err);
}

/* ---- the SL stage ---- */

static void put_key(struct pl_buf *b, const char *key, const char *s)
{
    pl_buf_printf(b, ",\"%s\":", key);
    pl_buf_json(b, s, strlen(s));
}

static void put_score(struct pl_buf *b, const char *key, double v)
{
    if (isfinite(v))
        pl_buf_printf(b, ",\"%s\":%.6g", key, v);
    else
        pl_buf_printf(b, ",\"%s\":null", key);
}

static void put_broken(struct pl_buf *b, const char *key, const struct ds_constitution *c,
                       const bool *broken)
{
    pl_buf_printf(b, ",\"%s\":[", key);
    for (int r = 0, n = 0; r < c->n_rules; r++)
        if (broken[r]) {
            pl_buf_str(b, n++ ? "," : "");
            pl_buf_json(b, c->rules[r].label, strlen(c->rules[r].label));
        }
    pl_buf_str(b, "]");
}

/* The final response as an sft response: " TEXT\n", as the toy world writes them. */
static void put_response(struct pl_buf *b, const char *text)
{
    struct pl_buf r = {0};
    pl_buf_printf(&r, " %s\n", text);
    if (r.oom)
        b->oom = true;
    else
        put_key(b, "response", r.p);
    pl_buf_release(&r);
}

static void trace_line(struct pl_buf *b, const struct ds_prompt_rec *p,
                       const struct critique_trace *t, const struct ds_constitution *c,
                       const char *model)
{
    static const char *const verdicts[] = {"rejected", "rules", "critique"};
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    pl_buf_json(b, p->id, strlen(p->id));
    put_key(b, "prompt", p->prompt);
    put_key(b, "draft", t->draft);
    put_broken(b, "draft_broken", c, t->draft_rules);
    put_score(b, "draft_score", t->draft_score);
    pl_buf_str(b, ",\"rounds\":[");
    for (int k = 0; k < t->n_rounds; k++) {
        const struct critique_round *rd = &t->rounds[k];
        const char *name = c->principles[rd->principle].name;
        pl_buf_str(b, k ? ",{\"principle\":" : "{\"principle\":");
        pl_buf_json(b, name, strlen(name));
        put_key(b, "critique", rd->critique);
        put_key(b, "critique_by", rd->rule_critique ? "rule" : "model");
        put_key(b, "revision", rd->revision);
        put_broken(b, "broken", c, rd->broken_rules);
        put_score(b, "score", rd->score);
        put_key(b, "verdict", verdicts[rd->verdict]);
        pl_buf_str(b, "}");
    }
    pl_buf_str(b, "]");
    put_response(b, critique_trace_final(t));
    pl_buf_printf(b, ",\"revised\":%s", t->final_round >= 0 ? "true" : "false");
    put_key(b, "model", model);
    pl_buf_str(b, "}\n");
}

static void sft_line(struct pl_buf *b, const struct ds_prompt_rec *p,
                     const struct critique_trace *t)
{
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    pl_buf_json(b, p->id, strlen(p->id));
    put_key(b, "prompt", p->prompt);
    put_response(b, critique_trace_final(t));
    pl_buf_str(b, "}\n");
}

struct sl_counts {
    long prompts, draft_broken, final_broken, revised, by_rules, by_critique, rule_critiques;
};

/* A chunk of prompts (places idx[0, n) in the file): revise them, then append each one's sft
 * record (when revised and not written before) and trace line. */
static int sl_chunk(struct critique_run *r, const struct ds_prompts *set, const long *idx, int n,
                    const struct critique_args *a, const struct id_set *sft_done,
                    struct sl_counts *cnt, struct pl_err *err)
{
    const char *prompts[256];
    struct critique_trace tr[256];
    PL_ASSERT(n <= 256);
    memset(tr, 0, sizeof tr);
    for (int i = 0; i < n; i++)
        prompts[i] = set->recs[idx[i]].prompt;
    int rc = critique_revise(r, prompts, idx, n, tr, err);
    struct pl_buf b = {0};
    for (int i = 0; !rc && i < n; i++) {
        const struct ds_prompt_rec *p = &set->recs[idx[i]];
        const struct critique_trace *t = &tr[i];
        if (t->final_round >= 0 && !id_set_has(sft_done, p->id)) {
            sft_line(&b, p, t);
            rc = append(a->out, &b, err);
        }
        if (!rc) {
            trace_line(&b, p, t, r->c, a->model);
            rc = append(a->trace, &b, err);
        }
        cnt->prompts++;
        cnt->draft_broken += t->draft_broken > 0;
        cnt->revised += t->final_round >= 0;
        int fb = t->final_round >= 0 ? t->rounds[t->final_round].broken : t->draft_broken;
        cnt->final_broken += fb > 0;
        for (int k = 0; k < t->n_rounds; k++) {
            cnt->by_rules += t->rounds[k].verdict == CRITIQUE_KEPT_RULES;
            /* A tie kept after a rule's critique is the rule's doing, not the model's. */
            cnt->by_critique +=
                t->rounds[k].verdict == CRITIQUE_KEPT_CRITIQUE && !t->rounds[k].rule_critique;
            cnt->rule_critiques += t->rounds[k].rule_critique;
        }
    }
    pl_buf_release(&b);
    for (int i = 0; i < n; i++)
        critique_trace_release(&tr[i]);
    return rc;
}

static void sl_note(char *note, size_t cap, const struct sl_counts *c)
{
    snprintf(note, cap, "revised %ld (rules %ld, own critique %ld)", c->revised, c->by_rules,
             c->by_critique);
}

static int sl_stage(const struct critique_args *a, const struct ds_constitution *c,
                    struct pl_err *err)
{
    struct ds_prompts set = {0};
    struct id_set done = {0}, sft_done = {0};
    struct critique_run r = {0};
    long keep_trace = -1, keep_out = -1, *todo = NULL;
    int rc = ds_prompts_init(&set, a->prompts, 0, err);
    if (!rc)
        rc = written_ids(a->trace, a->model, &done, &keep_trace, err);
    if (!rc)
        rc = written_ids(a->out, NULL, &sft_done, &keep_out, err);
    size_t n = 0;
    if (!rc) {
        todo = pl_malloc(sizeof *todo * (set.n ? set.n : 1));
        rc = todo ? PL_OK : pl_oom(err, "prompts");
    }
    for (size_t i = 0; !rc && i < set.n; i++)
        if (!id_set_has(&done, set.recs[i].id))
            todo[n++] = (long)i;
    if (!rc && n > 0)
        rc = critique_run_init(&r, a->model, a->reward, a->few_shot, c, &a->o, err);
    /* Only now, with everything read and checked, touch the outputs. */
    if (!rc)
        rc = cut_tail(a->trace, keep_trace, err);
    if (!rc)
        rc = cut_tail(a->out, keep_out, err);
    struct io_progress bar;
    io_progress_init(&bar, stderr, "critique", "prompts", (long)n);
    struct sl_counts cnt = {0};
    char note[96];
    for (size_t i = 0; !rc && i < n; i += (size_t)a->o.batch) {
        int m = n - i < (size_t)a->o.batch ? (int)(n - i) : a->o.batch;
        rc = sl_chunk(&r, &set, todo + i, m, a, &sft_done, &cnt, err);
        bar.done += m;
        sl_note(note, sizeof note, &cnt);
        io_progress_show(&bar, note, false);
    }
    if (!rc) {
        sl_note(note, sizeof note, &cnt);
        io_progress_show(&bar, note, true);
        fprintf(stderr,
                "critique: %ld prompts (%zu done before): drafts breaking a rule %ld, final "
                "responses breaking one %ld; revised %ld, kept revisions: %ld for the rules, %ld "
                "for the model's own critique; critiques a rule wrote: %ld\n",
                cnt.prompts, done.n, cnt.draft_broken, cnt.final_broken, cnt.revised, cnt.by_rules,
                cnt.by_critique, cnt.rule_critiques);
    }
    critique_run_release(&r);
    pl_free(todo);
    id_set_release(&done);
    id_set_release(&sft_done);
    ds_prompts_release(&set);
    return rc;
}

/* ---- AI feedback ---- */

/* One comparison to make: texts borrowed from the record, which the caller keeps. */
struct comparison {
    char id[160];
    const char *prompt, *x, *y;
};

/* The comparisons of one input record: a pairs record's pair, or every two completions of a
 * samples record. *n of at most cap. */
static int record_pairs(const struct io_jsonl *in, const cJSON *obj, long line,
                        struct comparison *out, int cap, int *n, struct pl_err *err)
{
    const char *prompt;
    int rc = io_get_str(in, obj, "prompt", &prompt, err);
    if (rc)
        return rc;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    char base[128];
    if (cJSON_IsString(id))
        snprintf(base, sizeof base, "%s", id->valuestring);
    else
        snprintf(base, sizeof base, "line %ld", line);
    *n = 0;
    const cJSON *comp = cJSON_GetObjectItemCaseSensitive(obj, "completions");
    if (!comp) {
        const char *x, *y;
        rc = io_get_str(in, obj, "chosen", &x, err);
        if (!rc)
            rc = io_get_str(in, obj, "rejected", &y, err);
        if (!rc) {
            out[0] = (struct comparison){.prompt = prompt, .x = x, .y = y};
            snprintf(out[0].id, sizeof out[0].id, "%s", base);
            *n = 1;
        }
        return rc;
    }
    const cJSON *arr;
    int k;
    rc = ds_get_strs(in, obj, "completions", &arr, &k, err);
    for (int i = 0; !rc && i < k; i++)
        for (int j = i + 1; j < k; j++) {
            if (*n >= cap)
                return io_jsonl_errf(in, err, "field 'completions': more than %d pairs", cap);
            out[*n] = (struct comparison){.prompt = prompt,
                                          .x = cJSON_GetArrayItem(arr, i)->valuestring,
                                          .y = cJSON_GetArrayItem(arr, j)->valuestring};
            snprintf(out[*n].id, sizeof out[*n].id, "%s/%d-%d", base, i, j);
            (*n)++;
        }
    return rc;
}

static void pair_line(struct pl_buf *b, const struct comparison *c, double p, const char *model)
{
    bool swap = p < 0.5;
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    pl_buf_json(b, c->id, strlen(c->id));
    put_key(b, "prompt", c->prompt);
    put_key(b, "chosen", swap ? c->y : c->x);
    put_key(b, "rejected", swap ? c->x : c->y);
    pl_buf_printf(b, ",\"p\":%.6f", swap ? 1 - p : p);
    put_key(b, "annotator", "ai-feedback");
    put_key(b, "model", model);
    pl_buf_str(b, "}\n");
}

enum { MAX_PAIRS = 496 }; /* C(32, 2): every two of 32 completions */

/* Every comparison of the input, counted (*total) or made (run != NULL). */
static int compare_pass(const struct critique_args *a, struct critique_run *run,
                        const struct id_set *done, long *total, struct io_progress *bar,
                        struct pl_err *err)
{
    struct io_jsonl in;
    struct comparison *cmp = pl_malloc(sizeof *cmp * MAX_PAIRS);
    int rc = cmp ? io_jsonl_init(&in, a->compare, 0, err) : pl_oom(err, "pairs");
    struct pl_buf b = {0};
    *total = 0;
    cJSON *obj = NULL;
    long line;
    while (!rc && !(rc = io_jsonl_next(&in, &obj, &line, err)) && obj) {
        int n = 0;
        rc = record_pairs(&in, obj, line, cmp, MAX_PAIRS, &n, err);
        for (int i = 0; !rc && i < n; i++) {
            if (id_set_has(done, cmp[i].id))
                continue;
            ++*total;
            if (!run)
                continue;
            double p;
            rc = critique_compare(run, cmp[i].prompt, cmp[i].x, cmp[i].y, &p, err);
            if (!rc) {
                pair_line(&b, &cmp[i], p, a->model);
                rc = append(a->out, &b, err);
            }
            bar->done++;
            io_progress_show(bar, NULL, false);
        }
        cJSON_Delete(obj);
        obj = NULL;
    }
    cJSON_Delete(obj);
    if (cmp)
        io_jsonl_release(&in);
    pl_buf_release(&b);
    pl_free(cmp);
    return rc;
}

static int compare_stage(const struct critique_args *a, const struct ds_constitution *c,
                         struct pl_err *err)
{
    struct id_set done = {0};
    struct critique_run r = {0};
    long keep = -1, total = 0;
    int rc = written_ids(a->out, a->model, &done, &keep, err);
    if (!rc)
        rc = compare_pass(a, NULL, &done, &total, NULL, err);
    if (!rc && total > 0)
        rc = critique_run_init(&r, a->model, NULL, a->few_shot, c, &a->o, err);
    if (!rc)
        rc = cut_tail(a->out, keep, err);
    struct io_progress bar;
    io_progress_init(&bar, stderr, "compare", "pairs", total);
    if (!rc && total > 0)
        rc = compare_pass(a, &r, &done, &total, &bar, err);
    if (!rc)
        io_progress_show(&bar, NULL, true);
    critique_run_release(&r);
    id_set_release(&done);
    return rc;
}

/* ---- the command ---- */

/* --principles a,b as indices into c's principles, into idx[]. */
static int pick_principles(const struct ds_constitution *c, const char *list, int *idx, int *n,
                           struct pl_err *err)
{
    char *copy = pl_strdup(list);
    int rc = copy ? PL_OK : pl_oom(err, "principles");
    *n = 0;
    for (char *name = copy, *next; !rc && name; name = next) {
        next = strchr(name, ',');
        if (next)
            *next++ = '\0';
        int i = ds_constitution_find(c, name);
        if (i < 0)
            rc = pl_errf(err, PL_EUSAGE,
                         "option '--principles': the constitution has no "
                         "principle '%s'",
                         name);
        else if (*n < c->n_principles)
            idx[(*n)++] = i;
    }
    pl_free(copy);
    return rc;
}

static int run(struct critique_args *a, struct pl_err *err)
{
    struct ds_constitution c;
    int rc = ds_constitution_load(&c, a->constitution, err);
    int *idx = rc ? NULL : pl_malloc(sizeof *idx * (size_t)c.n_principles);
    if (!rc && !idx)
        rc = pl_oom(err, "principles");
    if (!rc && a->principles) {
        rc = pick_principles(&c, a->principles, idx, &a->o.n_principles, err);
        a->o.principles = idx;
    }
    if (!rc)
        rc = a->prompts ? sl_stage(a, &c, err) : compare_stage(a, &c, err);
    pl_free(idx);
    ds_constitution_release(&c);
    return rc;
}

int cmd_critique(int argc, char **argv)
{
    struct critique_args a = {0};
    critique_opts_default(&a.o);
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a.model, 0, 0, "DIR", "the model that drafts, critiques, revises",
         true},
        {"--constitution", CMD_STR, &a.constitution, 0, 0, "FILE",
         "principles and rules (constitution.json)", true},
        {"--prompts", CMD_STR, &a.prompts, 0, 0, "FILE",
         "SL stage: {\"id\", \"prompt\"} a line to draft, critique and revise", false},
        {"--compare", CMD_STR, &a.compare, 0, 0, "FILE",
         "AI feedback: pairs or samples records whose responses to compare", false},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE",
         "sft records of the revised prompts, or soft-label pairs (appended; resumable)", true},
        {"--trace", CMD_STR, &a.trace, 0, 0, "FILE",
         "SL stage: every prompt's trace (OUT with .trace.jsonl)", false},
        {"--rounds", CMD_INT, &a.o.rounds, 1, 64, "N", "critique-revision rounds a prompt (1)",
         false},
        {"--reward", CMD_STR, &a.reward, 0, 0, "DIR",
         "reward model: a revision must also score no lower", false},
        {"--few-shot", CMD_STR, &a.few_shot, 0, 0, "FILE",
         "text put before every critique, revision and comparison", false},
        {"--principles", CMD_STR, &a.principles, 0, 0, "A,B",
         "draw only from these principles (all)", false},
        {"--ties", CMD_FLAG, &a.o.ties, 0, 0, NULL,
         "also keep a revision that breaks as many rules (the model's own critique decides)",
         false},
        {"--clamp", CMD_FLAG, &a.clamp, 0, 0, NULL,
         "AI feedback: clamp each preference to [0.4, 0.6]", false},
        {"--max-new-tokens", CMD_INT, &a.o.max_new_tokens, 1, 1 << 20, "N",
         "tokens a draft, critique or revision may take (48)", false},
        {"--temperature", CMD_FLOAT, &a.o.temperature, 0, 1e6, "T",
         "sampling temperature of every step; 0 is greedy (1)", false},
        {"--seed", CMD_U64, &a.o.seed, 0, 0, "S", "random seed (1)", false},
        {"--batch", CMD_INT, &a.o.batch, 1, 256, "B", "prompts generated at once (16)", false},
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "critique",
        .summary = "constitutional self-critique (SL stage) and AI preference labels",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = critique_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    char trace[4096];
    if (a.prompts && !a.trace) {
        size_t len = strlen(a.out);
        size_t stem = io_has_suffix(a.out, ".jsonl") ? len - 6 : len;
        if (stem + 13 >= sizeof trace)
            return cmd_usage(&spec, "--out '%s': name too long", a.out);
        snprintf(trace, sizeof trace, "%.*s.trace.jsonl", (int)stem, a.out);
        a.trace = trace;
    }
    const char *inputs[] = {a.prompts, a.compare, a.constitution, a.few_shot};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
        if (inputs[i] &&
            (io_same_file(inputs[i], a.out) || (a.trace && io_same_file(inputs[i], a.trace))))
            return cmd_usage(&spec, "'%s' is an input and an output; write elsewhere", inputs[i]);
    if (a.trace && strcmp(a.trace, a.out) == 0)
        return cmd_usage(&spec, "--trace and --out are the same file");
    if (a.clamp) {
        a.o.clamp_lo = 0.4;
        a.o.clamp_hi = 0.6;
    }
    if ((rc = cmd_engine_start(&a.engine)))
        return rc;
    struct pl_err err = {0};
    return cmd_fail(&err, run(&a, &err));
}
