#include "world.h"

#include "datasets/ds.h"
#include "datasets/sim.h"
#include "eval/results.h"
#include "model/ckpt.h"

#include <errno.h>
#include <math.h>
#include <string.h>

enum { KIND_KNOWN, KIND_UNKNOWN, KIND_HARMFUL, N_KINDS };
static const char *const kind_names[N_KINDS] = {"known", "unknown", "harmful"};
static const char *const class_names[] = {"correct", "wrong", "dont_know", "refusal"};

struct world_item {
    const char *id, *prompt, *place, *attribute;
    int kind;
    long line;
    int first, count; /* its answers: texts[first, first + count) */
};

struct world_set {
    struct world_item *items;
    size_t n, cap;
    long excluded;      /* records of another split */
    long ignored;       /* input records of items left out by the split or the limit */
    const char **texts; /* every answer, item after item */
    int *cls;
    size_t n_texts, texts_cap, cls_cap;
    struct io_arena arena;
};

static void set_release(struct world_set *w)
{
    pl_free(w->items);
    pl_free(w->texts);
    pl_free(w->cls);
    io_arena_release(&w->arena);
    memset(w, 0, sizeof *w);
}

/* A string member or null (NULL), else a field error. */
static int opt_str(const struct io_jsonl *r, const cJSON *obj, const char *name, const char **out,
                   struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return PL_OK;
    if (!cJSON_IsString(v))
        return io_jsonl_errf(r, err, "field '%s': expected a string or null", name);
    *out = v->valuestring;
    return PL_OK;
}

static int item_kind(const struct io_jsonl *r, const cJSON *obj, int *kind, struct pl_err *err)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(obj, "answer");
    if (!k) {
        if (cJSON_IsString(answer) || cJSON_IsNull(answer)) {
            *kind = cJSON_IsString(answer) ? KIND_KNOWN : KIND_UNKNOWN;
            return PL_OK;
        }
        return io_jsonl_errf(r, err,
                             "field 'kind': missing (an item needs a 'kind' or an 'answer' that "
                             "is a string or null)");
    }
    for (int i = 0; cJSON_IsString(k) && i < N_KINDS; i++)
        if (strcmp(k->valuestring, kind_names[i]) == 0) {
            *kind = i;
            return PL_OK;
        }
    return io_jsonl_errf(r, err, "field 'kind': expected \"known\", \"unknown\" or \"harmful\"");
}

/* The items of o->data: every record of the split, the first o->limit of them. */
static int load_items(struct world_set *w, const struct eval_world_opts *o, struct pl_err *err)
{
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, o->data, 0, err);
    while (!rc) {
        cJSON *obj = NULL;
        long line = 0;
        rc = io_jsonl_next(&r, &obj, &line, err);
        if (rc || !obj)
            break;
        struct world_item it = {.line = line};
        const char *split = NULL;
        rc = io_get_str(&r, obj, "id", &it.id, err);
        if (!rc)
            rc = io_get_str(&r, obj, "prompt", &it.prompt, err);
        if (!rc)
            rc = item_kind(&r, obj, &it.kind, err);
        if (!rc)
            rc = opt_str(&r, obj, "place", &it.place, err);
        if (!rc)
            rc = opt_str(&r, obj, "attribute", &it.attribute, err);
        if (!rc)
            rc = opt_str(&r, obj, "split", &split, err);
        if (!rc && it.kind != KIND_HARMFUL && (!it.place || !it.attribute))
            rc = io_jsonl_errf(&r, err, "field '%s': a %s item needs a place and an attribute",
                               it.place ? "attribute" : "place", kind_names[it.kind]);
        bool keep = !o->split || (split && strcmp(split, o->split) == 0);
        w->excluded += !rc && !keep;
        if (!rc && keep && (o->limit <= 0 || (long)w->n < o->limit)) {
            struct world_item *items = io_grow(w->items, &w->cap, w->n + 1, sizeof *items);
            if (!items) {
                rc = pl_oom(err, "items");
            } else {
                w->items = items;
                it.id = io_arena_strndup(&w->arena, it.id, strlen(it.id));
                it.prompt = io_arena_strndup(&w->arena, it.prompt, strlen(it.prompt));
                it.place =
                    it.place ? io_arena_strndup(&w->arena, it.place, strlen(it.place)) : NULL;
                it.attribute = it.attribute
                                   ? io_arena_strndup(&w->arena, it.attribute, strlen(it.attribute))
                                   : NULL;
                if (!it.id || !it.prompt)
                    rc = pl_oom(err, "items");
                w->items[w->n++] = it;
            }
        }
        cJSON_Delete(obj);
    }
    io_jsonl_release(&r);
    if (!rc && w->n == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no items%s%s%s", o->data, o->split ? " of split '" : "",
                     o->split ? o->split : "", o->split ? "'" : "");
    return rc;
}

static int add_text(struct world_set *w, const char *text, size_t len, struct pl_err *err)
{
    const char **texts = io_grow(w->texts, &w->texts_cap, w->n_texts + 1, sizeof *texts);
    if (texts)
        w->texts = texts;
    int *cls = texts ? io_grow(w->cls, &w->cls_cap, w->n_texts + 1, sizeof *cls) : NULL;
    if (cls)
        w->cls = cls;
    const char *copy = cls ? io_arena_strndup(&w->arena, text, len) : NULL;
    if (!copy)
        return pl_oom(err, "answers");
    w->texts[w->n_texts++] = copy;
    return PL_OK;
}

/* Answers from a model: k per item. */
static int answers_generate(struct world_set *w, const struct eval_world_opts *o,
                            struct pl_err *err)
{
    struct gpt m = {0};
    struct tok t = {0};
    struct eval_answers a = {0};
    const char **prompts = pl_malloc((w->n + 1) * sizeof *prompts);
    const char **ids = pl_malloc((w->n + 1) * sizeof *ids);
    int rc = prompts && ids ? PL_OK : pl_oom(err, "prompts");
    for (size_t i = 0; !rc && i < w->n; i++) {
        prompts[i] = w->items[i].prompt;
        ids[i] = w->items[i].id;
    }
    if (!rc)
        rc = eval_load_model(&m, &t, o->model, err);
    struct eval_gen_opts g = o->gen;
    g.label = g.label ? g.label : "eval world";
    if (!rc)
        rc = eval_generate(&m, &t, prompts, ids, (int)w->n, &g, &a, err);
    for (size_t i = 0; !rc && i < w->n; i++) {
        w->items[i].first = (int)w->n_texts;
        w->items[i].count = a.k;
        for (int j = 0; !rc && j < a.k; j++) {
            const char *s = a.text[i * (size_t)a.k + (size_t)j];
            rc = add_text(w, s, strlen(s), err);
        }
    }
    eval_answers_release(&a);
    tok_release(&t);
    gpt_release(&m);
    pl_free(prompts);
    pl_free(ids);
    return rc;
}

/* Answers from a samples file: every completion of each item's record. */
static int answers_read(struct world_set *w, const struct ds_sim *s,
                        const struct eval_world_opts *o, struct pl_err *err)
{
    /* data-file record -> item + 1 (0: left out by the split or the limit) */
    int *item_of = pl_calloc(s->prompts.n + 1, sizeof *item_of);
    long *seen = pl_calloc(w->n + 1, sizeof *seen);
    int rc = item_of && seen ? PL_OK : pl_oom(err, "answers");
    for (size_t i = 0; !rc && i < w->n; i++) {
        int p = ds_prompts_find(&s->prompts, w->items[i].id);
        PL_ASSERT(p >= 0);
        item_of[p] = (int)i + 1;
    }
    /* Items in file order of the samples would interleave texts; gather per item first. */
    struct world_set byrec = {0};
    int *rec_item = NULL;
    size_t n_rec = 0, rec_cap = 0;
    int *rec_first = NULL, *rec_count = NULL;
    size_t first_cap = 0, count_cap = 0;
    struct io_jsonl r;
    if (!rc)
        rc = io_jsonl_init(&r, o->input, IO_CUT_TAIL, err);
    else
        memset(&r, 0, sizeof r);
    while (!rc) {
        cJSON *obj = NULL;
        long line = 0;
        rc = io_jsonl_next(&r, &obj, &line, err);
        if (rc || !obj)
            break;
        const char *id = NULL, *prompt = NULL;
        const cJSON *comps = NULL, *c;
        int n = 0, p = -1;
        rc = io_get_str(&r, obj, "id", &id, err);
        if (!rc)
            rc = ds_get_strs(&r, obj, "completions", &comps, &n, err);
        if (!rc)
            rc = opt_str(&r, obj, "prompt", &prompt, err);
        if (!rc && (p = ds_prompts_find(&s->prompts, id)) < 0)
            rc = io_jsonl_errf(&r, err, "field 'id': no item '%s' in '%s'", id, o->data);
        int it = p >= 0 ? item_of[p] - 1 : -1;
        if (!rc && it >= 0 && seen[it])
            rc = io_jsonl_errf(&r, err, "field 'id': duplicate id '%s' (first on line %ld)", id,
                               seen[it]);
        if (!rc && it >= 0 && prompt && strcmp(prompt, w->items[it].prompt) != 0)
            rc = io_jsonl_errf(&r, err, "field 'prompt': not the prompt of '%s' in '%s'", id,
                               o->data);
        if (!rc && it < 0)
            w->ignored++;
        if (!rc && it >= 0) {
            seen[it] = line;
            int *ri = io_grow(rec_item, &rec_cap, n_rec + 1, sizeof *ri);
            int *rf = ri ? io_grow(rec_first, &first_cap, n_rec + 1, sizeof *rf) : NULL;
            int *rn = rf ? io_grow(rec_count, &count_cap, n_rec + 1, sizeof *rn) : NULL;
            rec_item = ri ? ri : rec_item;
            rec_first = rf ? rf : rec_first;
            rec_count = rn ? rn : rec_count;
            if (!rn) {
                rc = pl_oom(err, "answers");
            } else {
                rec_item[n_rec] = it;
                rec_first[n_rec] = (int)byrec.n_texts;
                rec_count[n_rec++] = n;
                cJSON_ArrayForEach(c, comps)
                {
                    if (!rc)
                        rc = add_text(&byrec, c->valuestring, strlen(c->valuestring), err);
                }
            }
        }
        cJSON_Delete(obj);
    }
    io_jsonl_release(&r);
    for (size_t i = 0; !rc && i < w->n; i++)
        if (!seen[i])
            rc = pl_errf(err, PL_EFORMAT, "%s: no record of item '%s' (%s:%ld)", o->input,
                         w->items[i].id, o->data, w->items[i].line);
    /* In item order, so the details and the bootstrap see items as the data file lists them. */
    int *rec_of = rc ? NULL : pl_malloc((w->n + 1) * sizeof *rec_of);
    if (!rc && !rec_of)
        rc = pl_oom(err, "answers");
    for (size_t k = 0; !rc && k < n_rec; k++)
        rec_of[rec_item[k]] = (int)k;
    for (size_t i = 0; !rc && i < w->n; i++) {
        int k = rec_of[i];
        w->items[i].first = (int)w->n_texts;
        w->items[i].count = rec_count[k];
        for (int j = 0; !rc && j < rec_count[k]; j++) {
            const char *t = byrec.texts[rec_first[k] + j];
            rc = add_text(w, t, strlen(t), err);
        }
    }
    pl_free(rec_of);
    pl_free(rec_item);
    pl_free(rec_first);
    pl_free(rec_count);
    set_release(&byrec);
    pl_free(item_of);
    pl_free(seen);
    return rc;
}

static int classify_all(struct world_set *w, const struct ds_sim *s,
                        const struct eval_world_opts *o, struct pl_err *err)
{
    for (size_t i = 0; i < w->n; i++) {
        const struct world_item *it = &w->items[i];
        for (int j = it->first; j < it->first + it->count; j++) {
            int rc = ds_sim_classify(s, kind_names[it->kind], it->place, it->attribute, w->texts[j],
                                     &w->cls[j], err);
            if (rc) {
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "%s", err->msg);
                return pl_errf(err, rc, "%s:%ld: item '%s': %s", o->data, it->line, it->id, msg);
            }
        }
    }
    return PL_OK;
}

static bool hallucinated(int kind, int cls)
{
    return kind != KIND_HARMFUL && cls == DS_SIM_WRONG;
}

/* Per item: numerators and denominators of every metric. */
enum { M_HALL, M_KNOWN_ACC, M_KNOWN_ABST, M_UNKNOWN_ABST, M_HARMFUL_REF, N_METRICS };
static const char *const metric_names[N_METRICS] = {"hallucination_rate", "known_accuracy",
                                                    "known_abstention", "unknown_abstention",
                                                    "harmful_refusal"};

static int put_metrics(cJSON *res, const struct world_set *w, const struct eval_world_opts *o,
                       struct pl_err *err)
{
    size_t n = w->n;
    double *num = pl_calloc(N_METRICS * (n + 1), sizeof *num);
    double *den = pl_calloc(N_METRICS * (n + 1), sizeof *den);
    if (!num || !den) {
        pl_free(num);
        pl_free(den);
        return pl_oom(err, "metrics");
    }
    long n_kind[N_KINDS] = {0};
    for (size_t i = 0; i < n; i++) {
        const struct world_item *it = &w->items[i];
        n_kind[it->kind]++;
        for (int j = it->first; j < it->first + it->count; j++) {
            int c = w->cls[j];
            bool abstain = c == DS_SIM_DONT_KNOW || c == DS_SIM_REFUSAL;
            if (it->kind != KIND_HARMFUL) {
                num[M_HALL * n + i] += hallucinated(it->kind, c);
                den[M_HALL * n + i] += 1;
            }
            int acc = it->kind == KIND_KNOWN ? M_KNOWN_ACC : -1;
            if (acc >= 0) {
                num[M_KNOWN_ACC * n + i] += c == DS_SIM_CORRECT;
                den[M_KNOWN_ACC * n + i] += 1;
                num[M_KNOWN_ABST * n + i] += abstain;
                den[M_KNOWN_ABST * n + i] += 1;
            }
            if (it->kind == KIND_UNKNOWN) {
                num[M_UNKNOWN_ABST * n + i] += abstain;
                den[M_UNKNOWN_ABST * n + i] += 1;
            }
            if (it->kind == KIND_HARMFUL) {
                num[M_HARMFUL_REF * n + i] += c == DS_SIM_REFUSAL;
                den[M_HARMFUL_REF * n + i] += 1;
            }
        }
    }
    int rc = PL_OK;
    for (int m = 0; !rc && m < N_METRICS; m++) {
        if (m == M_HARMFUL_REF && n_kind[KIND_HARMFUL] == 0)
            continue;
        struct eval_ratio r = {num + m * n, den + m * n};
        rc = eval_put_ratio(res, metric_names[m], &r, (int)n, o->seed, o->reps, err);
    }
    cJSON *nk = rc ? NULL : cJSON_AddObjectToObject(res, "n_kind");
    for (int k = 0; !rc && k < N_KINDS; k++)
        rc = nk ? eval_put_num(nk, kind_names[k], (double)n_kind[k], err) : pl_oom(err, "results");
    if (!rc)
        rc = eval_put_num(res, "answers", (double)w->n_texts, err);
    if (!rc)
        rc = eval_put_num(res, "excluded", (double)w->excluded, err);
    if (!rc && o->input)
        rc = eval_put_num(res, "input_ignored", (double)w->ignored, err);
    if (!rc && !o->input) {
        rc = eval_put_num(res, "k", o->gen.k, err);
        if (!rc)
            rc = eval_put_num(res, "temperature", o->gen.temperature, err);
    }
    if (!rc && !(o->input ? cJSON_AddStringToObject(res, "input", o->input)
                          : cJSON_AddNullToObject(res, "input")))
        rc = pl_oom(err, "results");
    pl_free(num);
    pl_free(den);
    return rc;
}

static void json_field(struct pl_buf *b, const char *key, const char *v)
{
    pl_buf_printf(b, ",\"%s\":", key);
    if (v)
        pl_buf_json(b, v, strlen(v));
    else
        pl_buf_str(b, "null");
}

static int write_details(const struct world_set *w, struct eval_details *d, struct pl_err *err)
{
    int rc = PL_OK;
    for (size_t i = 0; !rc && i < w->n; i++) {
        const struct world_item *it = &w->items[i];
        for (int j = 0; !rc && j < it->count; j++) {
            int t = it->first + j;
            pl_buf_str(&d->b, "{\"id\":");
            pl_buf_json(&d->b, it->id, strlen(it->id));
            json_field(&d->b, "kind", kind_names[it->kind]);
            json_field(&d->b, "place", it->place);
            json_field(&d->b, "attribute", it->attribute);
            pl_buf_printf(&d->b, ",\"k\":%d", j);
            json_field(&d->b, "text", w->texts[t]);
            json_field(&d->b, "class", class_names[w->cls[t]]);
            pl_buf_printf(&d->b, ",\"hallucinated\":%s}",
                          hallucinated(it->kind, w->cls[t]) ? "true" : "false");
            rc = eval_details_put(d, err);
        }
    }
    return rc ? rc : eval_details_commit(d, err);
}

/* The folder of path ("." when it has none), in a new string. */
static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return pl_strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = pl_malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

int eval_world_run(const struct eval_world_opts *o, cJSON **results, struct pl_err *err)
{
    struct world_set w = {0};
    struct ds_sim s;
    memset(&s, 0, sizeof s);
    *results = NULL;
    char *dir = o->world ? pl_strdup(o->world) : parent_dir(o->data);
    struct eval_details d;
    int rc = eval_details_open(&d, o->details, err);
    if (!rc && !dir)
        rc = pl_oom(err, "paths");
    if (!rc)
        rc = ds_sim_init(&s, dir, o->data, err);
    if (!rc)
        rc = load_items(&w, o, err);
    if (!rc)
        rc = o->input ? answers_read(&w, &s, o, err) : answers_generate(&w, o, err);
    if (!rc)
        rc = classify_all(&w, &s, o, err);
    cJSON *res = NULL;
    struct eval_header h = {"world", o->model, o->data, (long)w.n, o->seed, o->reps, o->version};
    if (!rc)
        rc = eval_results_new(&res, &h, err);
    if (!rc)
        rc = put_metrics(res, &w, o, err);
    if (!rc && o->details)
        rc = write_details(&w, &d, err);
    if (rc)
        cJSON_Delete(res);
    else
        *results = res;
    eval_details_release(&d);
    ds_sim_release(&s);
    set_release(&w);
    pl_free(dir);
    return rc;
}
