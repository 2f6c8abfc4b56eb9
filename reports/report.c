/* realpath */
#define _XOPEN_SOURCE 700
#include "report.h"

#include "eval/results.h"
#include "svg.h"
#include "text.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_DEPTH = 5, BOOT_SEED = 1, MAX_CATS = 64 };

/* The walk's state: which --runs folder, the output folder to skip, and details files waiting
 * for their results file. */
struct loader {
    int dir;
    char skip[PATH_MAX];
    bool has_skip;
    char **details;
    int n_details;
    size_t cap_details;
};

static char *str(struct report *r, const char *s)
{
    return s ? io_arena_strndup(&r->arena, s, strlen(s)) : NULL;
}

/* Grow *items (of `size` bytes each, *cap of them) to hold one more after *n. */
static int grow(void *items, size_t *cap, int n, size_t size, struct pl_err *err)
{
    void **p = items;
    void *q = io_grow(*p, cap, (size_t)n + 1, size);
    if (!q)
        return pl_oom(err, "the report");
    *p = q;
    return PL_OK;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static double file_time(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    return (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
}

const char *report_mark_name(int mark)
{
    switch (mark) {
    case REPORT_BETTER:
        return "better";
    case REPORT_WORSE:
        return "worse";
    case REPORT_SAME:
        return "~";
    case REPORT_REF:
        return "ref";
    default:
        return "";
    }
}

static const char *json_str(const cJSON *o, const char *name);
static const char *run_policy(const cJSON *run);

/* ---- models ---- */

/* The model named `name` by a file of modification time t: found by resolved path, or added. */
static int model_of(struct report *r, const struct loader *L, const char *name, double t, int *out,
                    struct pl_err *err)
{
    char buf[PATH_MAX];
    const char *id = realpath(name, buf) ? buf : name;
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i].id, id) == 0) {
            struct report_model *m = &r->models[i];
            if (L->dir < m->dir || (L->dir == m->dir && t < m->time))
                m->dir = L->dir, m->time = t;
            *out = i;
            return PL_OK;
        }
    int rc = grow(&r->models, &r->cap_models, r->n_models, sizeof *r->models, err);
    if (rc)
        return rc;
    struct report_model *m = &r->models[r->n_models];
    *m = (struct report_model){str(r, id), str(r, name), NULL, L->dir, 0, t};
    if (!m->id || !m->name)
        return pl_oom(err, "the report");
    *out = r->n_models++;
    return PL_OK;
}

/* A model's label: its last path component without .json/.jsonl, or more of its path when two
 * models would share one. */
static const char *label_tail(const char *id, int parts)
{
    const char *end = id + strlen(id), *p = end;
    while (p > id && p[-1] == '/')
        p--;
    for (int k = 0; k < parts && p > id; k++) {
        p--;
        while (p > id && p[-1] != '/')
            p--;
    }
    return p;
}

static int set_label(struct report *r, struct report_model *m, int parts, struct pl_err *err)
{
    const char *t = label_tail(m->id, parts);
    size_t n = strlen(t);
    while (n && t[n - 1] == '/')
        n--;
    if (n > 6 && strncmp(t + n - 6, ".jsonl", 6) == 0)
        n -= 6;
    else if (n > 5 && strncmp(t + n - 5, ".json", 5) == 0)
        n -= 5;
    m->label = io_arena_strndup(&r->arena, t, n);
    return m->label ? PL_OK : pl_oom(err, "the report");
}

/* Each label one path component long, longer only for models whose labels clash. */
static int label_models(struct report *r, struct pl_err *err)
{
    int *parts = pl_calloc((size_t)(r->n_models ? r->n_models : 1), sizeof *parts);
    if (!parts)
        return pl_oom(err, "the report");
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_models; i++)
        rc = set_label(r, &r->models[i], parts[i] = 1, err);
    for (int round = 0; !rc && round < 16; round++) {
        bool clash = false;
        for (int i = 0; !rc && i < r->n_models; i++) {
            bool mine = false;
            for (int j = 0; j < r->n_models; j++)
                mine |= j != i && strcmp(r->models[i].label, r->models[j].label) == 0;
            clash |= mine;
            if (mine)
                parts[i]++;
        }
        for (int i = 0; !rc && clash && i < r->n_models; i++)
            rc = set_label(r, &r->models[i], parts[i], err);
        if (!clash)
            break;
    }
    pl_free(parts);
    return rc;
}

/* How many training runs lie behind a model folder: its run.json's "model" (or PPO's
 * "policy"), that folder's, and so on; 0 for a folder without run.json. */
static int lineage(const char *dir)
{
    char cur[PATH_MAX];
    snprintf(cur, sizeof cur, "%s", dir);
    int depth = 0;
    for (; depth < 32; depth++) {
        char *p = io_path_join(cur, "run.json");
        cJSON *run = NULL;
        struct pl_err ignored;
        bool ok = p && io_json_load(p, &run, &ignored) == PL_OK;
        pl_free(p);
        const char *parent = ok ? json_str(run, "model") : NULL;
        if (ok && !parent)
            parent = run_policy(run);
        if (parent)
            snprintf(cur, sizeof cur, "%s", parent);
        cJSON_Delete(run);
        if (!parent)
            break;
    }
    return depth;
}

/* Order models by folder, then by lineage (a model after the one it was trained or sampled
 * from), then by age; renumber every reference to them. */
static int order_models(struct report *r, struct pl_err *err)
{
    int n = r->n_models;
    for (int i = 0; i < n; i++)
        r->models[i].depth = lineage(r->models[i].id);
    for (int i = 0; i < r->n_answers; i++) {
        const struct report_answers *a = &r->answers[i];
        if (a->bon && a->policy >= 0)
            r->models[a->model].depth = 1 + r->models[a->policy].depth;
    }
    int *order = pl_malloc((size_t)(n ? n : 1) * sizeof *order * 2);
    struct report_model *sorted = pl_malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!order || !sorted) {
        pl_free(order);
        pl_free(sorted);
        return pl_oom(err, "the report");
    }
    int *where = order + n;
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            const struct report_model *a = &r->models[order[j - 1]], *b = &r->models[order[j]];
            if (a->dir != b->dir       ? a->dir < b->dir
                : a->depth != b->depth ? a->depth < b->depth
                                       : a->time <= b->time)
                break;
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        sorted[i] = r->models[order[i]];
        where[order[i]] = i;
    }
    if (n > 0) /* r->models is NULL when no file named a model */
        memcpy(r->models, sorted, (size_t)n * sizeof *sorted);
    for (int i = 0; i < r->n_results; i++)
        r->results[i].model = where[r->results[i].model];
    for (int i = 0; i < r->n_answers; i++) {
        struct report_answers *a = &r->answers[i];
        a->model = where[a->model];
        if (a->policy >= 0)
            a->policy = where[a->policy];
    }
    pl_free(order);
    pl_free(sorted);
    return PL_OK;
}

/* ---- run folders ---- */

const struct report_series *report_series_find(const struct report_run *run, const char *key)
{
    for (int i = 0; i < run->n_series; i++)
        if (strcmp(run->series[i].key, key) == 0)
            return &run->series[i];
    return NULL;
}

static int add_point(struct report *r, struct report_run *run, const char *key, double x, double y,
                     struct pl_err *err)
{
    struct report_series *s = (struct report_series *)report_series_find(run, key);
    if (!s) {
        int rc = grow(&run->series, &run->cap, run->n_series, sizeof *run->series, err);
        if (rc)
            return rc;
        s = &run->series[run->n_series++];
        *s = (struct report_series){str(r, key), NULL, NULL, 0, 0};
        if (!s->key)
            return pl_oom(err, "the report");
    }
    size_t cap = s->cap;
    int rc = grow(&s->x, &cap, s->n, sizeof *s->x, err);
    if (!rc)
        rc = grow(&s->y, &s->cap, s->n, sizeof *s->y, err);
    if (rc)
        return rc;
    s->x[s->n] = x;
    s->y[s->n++] = y;
    return PL_OK;
}

static int load_metrics(struct report *r, struct report_run *run, const char *path,
                        struct pl_err *err)
{
    struct io_jsonl j;
    int rc = io_jsonl_init(&j, path, IO_CUT_TAIL, err);
    if (rc == PL_ENOTFOUND) {
        io_jsonl_release(&j);
        return PL_OK;
    }
    while (!rc) {
        cJSON *o = NULL;
        rc = io_jsonl_next(&j, &o, NULL, err);
        if (rc || !o)
            break;
        long step = 0;
        rc = io_get_int(&j, o, "step", &step, err);
        for (const cJSON *c = o->child; !rc && c; c = c->next) {
            if (strcmp(c->string, "step") == 0 || strcmp(c->string, "time") == 0)
                continue;
            if (cJSON_IsNumber(c))
                rc = add_point(r, run, c->string, (double)step, c->valuedouble, err);
            else if (cJSON_IsNull(c))
                rc = add_point(r, run, c->string, (double)step, NAN, err);
        }
        cJSON_Delete(o);
    }
    io_jsonl_release(&j);
    return rc;
}

static int load_run(struct report *r, const char *dir, struct pl_err *err)
{
    int rc = grow(&r->runs, &r->cap_runs, r->n_runs, sizeof *r->runs, err);
    if (rc)
        return rc;
    struct report_run *run = &r->runs[r->n_runs++];
    *run = (struct report_run){0};
    run->path = run->label = str(r, dir);
    char *p = io_path_join(dir, "run.json"), *m = io_path_join(dir, "metrics.jsonl");
    if (!run->path || !p || !m)
        rc = pl_oom(err, "the report");
    if (!rc)
        rc = io_json_load(p, &run->run, err);
    if (!rc && !cJSON_IsObject(run->run))
        rc = pl_errf(err, PL_EFORMAT, "%s: expected a JSON object", p);
    if (!rc)
        rc = load_metrics(r, run, m, err);
    pl_free(p);
    pl_free(m);
    return rc;
}

/* ---- results files ---- */

static bool num_or_null(const cJSON *c)
{
    return cJSON_IsNumber(c) || cJSON_IsNull(c);
}

static int check_results(const char *path, const cJSON *res, struct pl_err *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(res, "metrics");
    if (!cJSON_IsObject(m))
        return pl_errf(err, PL_EFORMAT, "%s: field 'metrics': expected an object", path);
    for (const cJSON *c = m->child; c; c = c->next) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "value");
        const cJSON *ci = cJSON_GetObjectItemCaseSensitive(c, "ci95");
        if (!cJSON_IsObject(c) || !num_or_null(v) || !cJSON_IsArray(ci) ||
            cJSON_GetArraySize(ci) != 2 || !num_or_null(ci->child) || !num_or_null(ci->child->next))
            return pl_errf(err, PL_EFORMAT,
                           "%s: metric '%s': expected {\"value\": number, \"ci95\": [lo, hi]}",
                           path, c->string);
    }
    return PL_OK;
}

static const char *json_str(const cJSON *o, const char *name)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* The model that wrote a samples file evaluated with --input (its first record's "model"), in
 * a new pl_malloc string; NULL for a best-of-n file, which is a model of its own, or a file
 * that cannot be read (the results file still names it). */
static int input_model(const char *input, char **out, struct pl_err *err)
{
    *out = NULL;
    struct io_jsonl j;
    struct pl_err ignored;
    cJSON *o = NULL;
    int rc = io_jsonl_init(&j, input, IO_CUT_TAIL, &ignored);
    if (!rc)
        rc = io_jsonl_next(&j, &o, NULL, &ignored);
    io_jsonl_release(&j);
    const char *m = json_str(o, "model");
    if (m && !cJSON_GetObjectItemCaseSensitive(o, "candidates") && !(*out = pl_strdup(m)))
        rc = pl_oom(err, "the report");
    else
        rc = rc == PL_ENOMEM ? pl_oom(err, "the report") : PL_OK;
    cJSON_Delete(o);
    return rc;
}

static int add_result(struct report *r, const struct loader *L, const char *path, const char *suite,
                      const cJSON *res, struct pl_err *err)
{
    int rc = check_results(path, res, err);
    if (!rc)
        rc = grow(&r->results, &r->cap_results, r->n_results, sizeof *r->results, err);
    if (rc)
        return rc;
    const char *model = json_str(res, "model"), *input = json_str(res, "input");
    char *sampled = NULL;
    if (!model && input)
        rc = input_model(input, &sampled, err);
    if (rc)
        return rc;
    if (!model)
        model = sampled ? sampled : input;
    const char *own = json_str(res, "suite");
    struct report_result *x = &r->results[r->n_results];
    *x = (struct report_result){str(r, path), str(r, own ? own : suite), res, 0, NULL};
    if (!x->path || !x->suite)
        return pl_oom(err, "the report");
    rc = model_of(r, L, model ? model : path, file_time(path), &x->model, err);
    pl_free(sampled);
    if (!rc)
        r->n_results++;
    return rc;
}

static int add_doc(struct report *r, const char *path, int kind, cJSON *json, long records,
                   struct pl_err *err)
{
    int rc = grow(&r->docs, &r->cap_docs, r->n_docs, sizeof *r->docs, err);
    if (rc) {
        cJSON_Delete(json);
        return rc;
    }
    r->docs[r->n_docs++] = (struct report_doc){str(r, path), kind, json, records};
    return r->docs[r->n_docs - 1].path ? PL_OK : pl_oom(err, "the report");
}

static int load_json(struct report *r, const struct loader *L, const char *path, struct pl_err *err)
{
    cJSON *j = NULL;
    int rc = io_json_load(path, &j, err);
    if (rc)
        return rc;
    const char *suite = json_str(j, "suite");
    if (suite) {
        /* add_doc owns j from here, and frees it when it fails. */
        rc = add_doc(r, path, REPORT_DOC_RESULTS, j, 0, err);
        if (rc)
            return rc;
        const cJSON *suites = cJSON_GetObjectItemCaseSensitive(j, "suites");
        if (strcmp(suite, "all") == 0 && cJSON_IsObject(suites)) {
            for (const cJSON *c = suites->child; !rc && c; c = c->next)
                if (cJSON_IsObject(c))
                    rc = add_result(r, L, path, c->string, c, err);
        } else {
            rc = add_result(r, L, path, suite, j, err);
        }
        return rc;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "pairs") &&
        cJSON_GetObjectItemCaseSensitive(j, "accuracy") &&
        cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "kinds")))
        return add_doc(r, path, REPORT_DOC_RM_EVAL, j, 0, err);
    if (strcmp(base_name(path), "summary.json") == 0 && cJSON_IsObject(j))
        return add_doc(r, path, REPORT_DOC_SUMMARY, j, 0, err);
    cJSON_Delete(j);
    return PL_OK;
}

/* ---- answer files, details, traces ---- */

static bool is_answers(const cJSON *o)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "completions");
    return json_str(o, "prompt") && cJSON_IsArray(c) && cJSON_GetArraySize(c) == 1 &&
           !cJSON_GetObjectItemCaseSensitive(o, "ranking") &&
           !cJSON_GetObjectItemCaseSensitive(o, "annotator");
}

static bool details_name(const char *path)
{
    return io_has_suffix(path, ".details.jsonl") || io_has_suffix(path, ".d.jsonl");
}

static double mean_of(const cJSON *a)
{
    double s = 0;
    int n = 0;
    for (const cJSON *c = cJSON_IsArray(a) ? a->child : NULL; c; c = c->next)
        if (cJSON_IsNumber(c))
            s += c->valuedouble, n++;
    return n ? s / n : NAN;
}

/* One answer of a record: an answer file's completion (with its reward), or a details line's
 * text (with its class). A record without them is a data error. */
static int read_answer(struct report *r, const struct io_jsonl *j, const cJSON *o, bool details,
                       struct report_answer *a, struct pl_err *err)
{
    const char *id, *text = NULL;
    int rc = io_get_str(j, o, "id", &id, err);
    if (!rc && details)
        rc = io_get_str(j, o, "text", &text, err);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "completions");
    if (!rc && !details) {
        if (!cJSON_IsArray(c) || !cJSON_IsString(c->child))
            return io_jsonl_errf(j, err, "field 'completions': expected an array of strings");
        text = c->child->valuestring;
    }
    if (rc)
        return rc;
    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(o, "rewards");
    const cJSON *cand = cJSON_GetObjectItemCaseSensitive(o, "candidates");
    char note[64] = "";
    if (cJSON_IsArray(cand))
        snprintf(note, sizeof note, "best of %d", cJSON_GetArraySize(cand));
    else if (json_str(o, "class"))
        snprintf(note, sizeof note, "%s", json_str(o, "class"));
    *a = (struct report_answer){
        str(r, id),
        str(r, json_str(o, "prompt")),
        str(r, text),
        cJSON_IsArray(rw) && cJSON_IsNumber(rw->child) ? rw->child->valuedouble : NAN,
        mean_of(cJSON_GetObjectItemCaseSensitive(o, "candidate_rewards")),
        note[0] ? str(r, note) : NULL};
    if (!a->id || !a->text || (note[0] && !a->note))
        return pl_oom(err, "the report");
    return PL_OK;
}

/* Read a whole answer or details file; model < 0: the records' "model" names it. */
static int load_answers(struct report *r, const struct loader *L, const char *path, int model,
                        struct pl_err *err)
{
    int rc = grow(&r->answers, &r->cap_answers, r->n_answers, sizeof *r->answers, err);
    if (rc)
        return rc;
    struct report_answers *s = &r->answers[r->n_answers++];
    *s = (struct report_answers){str(r, path), str(r, base_name(path)), model, -1, false, NULL, 0};
    if (!s->path || !s->label)
        return pl_oom(err, "the report");
    bool details = model >= 0;
    size_t cap = 0;
    struct io_jsonl j;
    rc = io_jsonl_init(&j, path, IO_CUT_TAIL, err);
    while (!rc) {
        cJSON *o = NULL;
        rc = io_jsonl_next(&j, &o, NULL, err);
        if (rc || !o)
            break;
        const char *id = json_str(o, "id");
        bool again = details && s->n && id && strcmp(s->items[s->n - 1].id, id) == 0;
        if (!again) {
            rc = grow(&s->items, &cap, s->n, sizeof *s->items, err);
            if (!rc)
                rc = read_answer(r, &j, o, details, &s->items[s->n], err);
            if (!rc)
                s->n++;
        }
        if (!rc && s->n == 1 && !details) {
            s->bon = cJSON_GetObjectItemCaseSensitive(o, "candidates") != NULL;
            const char *m = json_str(o, "model");
            double t = file_time(path);
            rc = model_of(r, L, s->bon || !m ? path : m, t, &s->model, err);
            if (!rc && s->bon && m)
                rc = model_of(r, L, m, t, &s->policy, err);
        }
        cJSON_Delete(o);
    }
    io_jsonl_release(&j);
    return rc;
}

static int load_trace(struct report *r, const char *path, struct pl_err *err)
{
    cJSON *shown = cJSON_CreateArray();
    if (!shown)
        return pl_oom(err, "the report");
    long n = 0;
    struct io_jsonl j;
    int rc = io_jsonl_init(&j, path, IO_CUT_TAIL, err);
    while (!rc) {
        cJSON *o = NULL;
        rc = io_jsonl_next(&j, &o, NULL, err);
        if (rc || !o)
            break;
        if (!cJSON_GetObjectItemCaseSensitive(o, "draft") ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "rounds")))
            rc = io_jsonl_errf(&j, err, "field 'rounds': expected a critique trace record");
        if (!rc && n++ < REPORT_TRACE_SHOWN) {
            cJSON_AddItemToArray(shown, o);
            o = NULL;
        }
        cJSON_Delete(o);
    }
    io_jsonl_release(&j);
    if (rc) {
        cJSON_Delete(shown);
        return rc;
    }
    return add_doc(r, path, REPORT_DOC_TRACE, shown, n, err);
}

/* Classify a JSONL file by its first record; read it whole only when it is one we show. */
static int load_jsonl(struct report *r, struct loader *L, const char *path, struct pl_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size == 0)
        return PL_OK;
    struct io_jsonl j;
    cJSON *o = NULL;
    int rc = io_jsonl_init(&j, path, IO_CUT_TAIL, err);
    if (!rc)
        rc = io_jsonl_next(&j, &o, NULL, err);
    io_jsonl_release(&j);
    if (rc || !o)
        return rc;
    bool trace = cJSON_GetObjectItemCaseSensitive(o, "draft") &&
                 cJSON_GetObjectItemCaseSensitive(o, "rounds");
    bool answers = is_answers(o);
    bool details = details_name(path) && json_str(o, "id") && json_str(o, "text");
    cJSON_Delete(o);
    if (trace)
        return load_trace(r, path, err);
    if (answers)
        return load_answers(r, L, path, -1, err);
    if (details) {
        rc = grow(&L->details, &L->cap_details, L->n_details, sizeof *L->details, err);
        if (!rc && !(L->details[L->n_details++] = str(r, path)))
            rc = pl_oom(err, "the report");
    }
    return rc;
}

/* Details files whose STEM.json is a results file we read. */
static int match_details(struct report *r, const struct loader *L, struct pl_err *err)
{
    int rc = PL_OK;
    for (int d = 0; !rc && d < L->n_details; d++) {
        char *p = L->details[d];
        size_t stem = strlen(p) - (io_has_suffix(p, ".d.jsonl") ? 8 : 14);
        for (int i = 0; i < r->n_results; i++) {
            struct report_result *x = &r->results[i];
            if (strncmp(x->path, p, stem) == 0 && strcmp(x->path + stem, ".json") == 0 &&
                !x->details) {
                x->details = p;
                rc = load_answers(r, L, p, x->model, err);
                break;
            }
        }
    }
    return rc;
}

/* ---- the walk ---- */

static int walk(struct report *r, struct loader *L, const char *dir, int depth, struct pl_err *err)
{
    char real[PATH_MAX];
    if (L->has_skip && realpath(dir, real) && strcmp(real, L->skip) == 0)
        return PL_OK;
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0)
        return pl_errf(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "cannot read folder '%s': %s",
                       dir, strerror(errno));
    int rc = PL_OK;
    for (int i = 0; !rc && i < n; i++)
        if (strcmp(ents[i]->d_name, "run.json") == 0)
            rc = load_run(r, dir, err);
    for (int i = 0; !rc && i < n; i++) {
        const char *name = ents[i]->d_name;
        if (name[0] == '.')
            continue;
        char *path = io_path_join(dir, name);
        struct stat st;
        if (!path)
            rc = pl_oom(err, "the report");
        else if (stat(path, &st) != 0)
            ; /* a dangling link or a file removed while we read: nothing to show */
        else if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH)
            rc = walk(r, L, path, depth + 1, err);
        else if (!S_ISREG(st.st_mode) || strcmp(name, "run.json") == 0 ||
                 strcmp(name, "metrics.jsonl") == 0)
            ;
        else if (io_has_suffix(name, ".json"))
            rc = load_json(r, L, path, err);
        else if (io_has_suffix(name, ".jsonl"))
            rc = load_jsonl(r, L, path, err);
        pl_free(path);
    }
    for (int i = 0; i < n; i++)
        free(ents[i]);
    free(ents);
    return rc;
}

/* ---- the summary ---- */

static const struct {
    const char *name;
    int better; /* +1 higher, -1 lower, 2 closer to target */
    double target;
} directions[] = {
    {"hallucination_rate", -1, 0},
    {"known_accuracy", 1, 0},
    {"known_abstention", -1, 0},
    {"unknown_abstention", 1, 0},
    {"harmful_refusal", 1, 0},
    {"mc1", 1, 0},
    {"mc2", 1, 0},
    {"accuracy", 1, 0},
    {"acc", 1, 0},
    {"accuracy_amb", 1, 0},
    {"accuracy_disamb", 1, 0},
    {"ece", -1, 0},
    {"ece_em", -1, 0},
    {"mce", -1, 0},
    {"brier", -1, 0},
    {"nll", -1, 0},
    {"ece_heldout", -1, 0},
    {"ece_scaled", -1, 0},
    {"pct_stereotype", 2, 0.5},
    {"likelihood_diff", -1, 0},
    {"amb_bias_score", 2, 0},
    {"disamb_bias_score", 2, 0},
    {"rougeL_acc", 1, 0},
    {"rougeL_max", 1, 0},
    {"rougeL_diff", 1, 0},
    {"reward", 1, 0},
    {"eval/reward", 1, 0},
};

/* BBQ's per-category metrics are NAME_CATEGORY; every suite's may be NAME/CATEGORY. */
static const char *const bbq_bases[] = {"accuracy_amb", "accuracy_disamb", "amb_bias_score",
                                        "disamb_bias_score"};

/* The category of metric `name` when it is base's per-category figure, else NULL. */
static const char *category_of(const char *suite, const char *name, const char *base)
{
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0 || !name[n] || !name[n + 1])
        return NULL;
    if (name[n] == '/' || (name[n] == '_' && strstr(suite, "bbq")))
        return name + n + 1;
    return NULL;
}

static bool per_category(const char *suite, const char *name)
{
    if (strchr(name, '/'))
        return true;
    for (size_t i = 0; strstr(suite, "bbq") && i < sizeof bbq_bases / sizeof *bbq_bases; i++)
        if (category_of(suite, name, bbq_bases[i]))
            return true;
    return false;
}

/* The summary's order of groups: what the issue asks first (hallucination with accuracy,
 * TruthfulQA, calibration, bias), then reward and KL; suites it does not know in between. */
enum { RANK_OTHER = 50, RANK_REWARD = 90, RANK_PPO = 91 };
static int suite_rank(const char *suite)
{
    static const char *const order[] = {"world", "truthfulqa", "truthfulqa-gen",
                                        "mc",    "crows",      "bbq"};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++)
        if (strcmp(suite, order[i]) == 0)
            return i;
    return RANK_OTHER;
}

/* The first model with a figure in row i's group. */
static int group_first(const struct report *r, int i)
{
    int first = r->n_models;
    for (int k = 0; k < r->n_rows; k++)
        for (int m = 0; m < first && strcmp(r->rows[k].group, r->rows[i].group) == 0; m++)
            if (isfinite(r->rows[k].cells[m].v))
                first = m;
    return first;
}

/* Rows in group rank order, among groups of one rank those with the earliest model first (the
 * reference's data before others'), the rest as they came. */
static void sort_rows(struct report *r)
{
    for (int i = 0; i < r->n_rows; i++)
        r->rows[i].rank = r->rows[i].rank * (r->n_models + 1) + group_first(r, i);
    for (int i = 1; i < r->n_rows; i++)
        for (int j = i; j > 0 && r->rows[j - 1].rank > r->rows[j].rank; j--) {
            struct report_row t = r->rows[j];
            r->rows[j] = r->rows[j - 1];
            r->rows[j - 1] = t;
        }
}

static const char *result_group(struct report *r, const struct report_result *x)
{
    const char *data = json_str(x->obj, "dataset");
    char buf[1024];
    if (data)
        snprintf(buf, sizeof buf, "%s \xc2\xb7 %s", x->suite, base_name(data));
    else
        snprintf(buf, sizeof buf, "%s", x->suite);
    return str(r, buf);
}

static int find_model(const struct report *r, const char *name)
{
    char buf[PATH_MAX];
    const char *id = realpath(name, buf) ? buf : name;
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i].id, id) == 0)
            return i;
    return -1;
}

/* The row (group, metric), made after the group's last row when new. */
static int row_of(struct report *r, const char *group, const char *metric, int rank,
                  struct report_row **out, struct pl_err *err)
{
    int last = -1;
    for (int i = 0; i < r->n_rows; i++) {
        if (strcmp(r->rows[i].group, group) != 0)
            continue;
        if (strcmp(r->rows[i].metric, metric) == 0) {
            *out = &r->rows[i];
            return PL_OK;
        }
        last = i;
    }
    int rc = grow(&r->rows, &r->cap_rows, r->n_rows, sizeof *r->rows, err);
    if (rc)
        return rc;
    int at = last < 0 ? r->n_rows : last + 1;
    memmove(&r->rows[at + 1], &r->rows[at], (size_t)(r->n_rows - at) * sizeof *r->rows);
    r->n_rows++;
    struct report_row *row = &r->rows[at];
    *row = (struct report_row){str(r, group), str(r, metric), 0, 0, rank, NULL};
    row->cells = pl_malloc((size_t)(r->n_models ? r->n_models : 1) * sizeof *row->cells);
    if (!row->group || !row->metric || !row->cells)
        return pl_oom(err, "the report");
    for (int m = 0; m < r->n_models; m++)
        row->cells[m] = (struct report_cell){NAN, NAN, NAN, REPORT_NONE, -1};
    for (size_t i = 0; i < sizeof directions / sizeof *directions; i++)
        if (strcmp(directions[i].name, metric) == 0) {
            row->better = directions[i].better;
            row->target = directions[i].target;
        }
    *out = row;
    return PL_OK;
}

static double num(const cJSON *c)
{
    return cJSON_IsNumber(c) ? c->valuedouble : NAN;
}

/* Set a cell unless an earlier file gave it already. */
static void put_cell(struct report_row *row, int model, double v, double lo, double hi, int src)
{
    struct report_cell *c = &row->cells[model];
    if (isfinite(c->v) || !isfinite(v))
        return;
    *c = (struct report_cell){v, lo, hi, REPORT_NONE, src};
}

static int results_rows(struct report *r, struct pl_err *err)
{
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_results; i++) {
        const struct report_result *x = &r->results[i];
        const char *group = result_group(r, x);
        if (!group)
            return pl_oom(err, "the report");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(x->obj, "metrics");
        for (const cJSON *c = m->child; !rc && c; c = c->next) {
            if (per_category(x->suite, c->string))
                continue;
            struct report_row *row;
            rc = row_of(r, group, c->string, suite_rank(x->suite), &row, err);
            const cJSON *ci = cJSON_GetObjectItemCaseSensitive(c, "ci95");
            if (!rc)
                put_cell(row, x->model, num(cJSON_GetObjectItemCaseSensitive(c, "value")),
                         num(ci->child), num(ci->child->next), i);
        }
    }
    return rc;
}

/* The mean of x[0, n) with its bootstrap interval over the items. */
static int mean_ci(const double *x, int n, double out[3], struct pl_err *err)
{
    double *one = pl_malloc((size_t)(n ? n : 1) * sizeof *one);
    if (!one)
        return pl_oom(err, "the report");
    double s = 0;
    for (int i = 0; i < n; i++)
        one[i] = 1, s += x[i];
    struct eval_ratio ratio = {x, one};
    out[0] = n ? s / n : NAN;
    int rc =
        eval_bootstrap(n, eval_ratio_stat, &ratio, BOOT_SEED, REPORT_BOOTSTRAP_REPS, out + 1, err);
    pl_free(one);
    return rc;
}

static bool holds(const struct report_answers *a, const char *id)
{
    for (int k = 0; k < a->n; k++)
        if (strcmp(a->items[k].id, id) == 0)
            return true;
    return false;
}

/* The same prompts, in any order (files are written as batches finish). */
static bool same_ids(const struct report_answers *a, const struct report_answers *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (!holds(b, a->items[i].id))
            return false;
    return true;
}

/* Best-of-n files: the kept answers' mean score for the file's own column, all candidates'
 * mean (what one sample scores) for the model it sampled; files on the same prompts share a
 * group. */
static int bon_rows(struct report *r, struct pl_err *err)
{
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_answers; i++) {
        const struct report_answers *a = &r->answers[i];
        if (!a->bon)
            continue;
        /* Named after the earliest model's file, so every file of the set finds one group. */
        int first = i;
        for (int k = 0; k < r->n_answers; k++)
            if (r->answers[k].bon && r->answers[k].model < r->answers[first].model &&
                same_ids(&r->answers[k], a))
                first = k;
        char group[1024];
        snprintf(group, sizeof group, "reward-model score \xc2\xb7 %d prompts of %s", a->n,
                 r->answers[first].label);
        double *x = pl_malloc((size_t)(a->n ? a->n : 1) * 2 * sizeof *x), best[3], one[3];
        if (!x)
            return pl_oom(err, "the report");
        int nb = 0, nc = 0;
        for (int k = 0; k < a->n; k++) {
            if (isfinite(a->items[k].reward))
                x[nb++] = a->items[k].reward;
            if (isfinite(a->items[k].candidates))
                x[a->n + nc++] = a->items[k].candidates;
        }
        rc = mean_ci(x, nb, best, err);
        if (!rc)
            rc = mean_ci(x + a->n, nc, one, err);
        pl_free(x);
        struct report_row *row;
        if (!rc)
            rc = row_of(r, group, "reward", RANK_REWARD, &row, err);
        if (!rc) {
            put_cell(row, a->model, best[0], best[1], best[2], -1);
            if (a->policy >= 0)
                put_cell(row, a->policy, one[0], one[1], one[2], -1);
        }
    }
    return rc;
}

static double last_finite(const struct report_series *s)
{
    for (int i = s ? s->n - 1 : -1; i >= 0; i--)
        if (isfinite(s->y[i]))
            return s->y[i];
    return NAN;
}

static const char *run_policy(const cJSON *run)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(run, "policy");
    return cJSON_IsString(p) ? p->valuestring : json_str(p, "out");
}

/* PPO runs: the held-out reward and KL at the end for the run's column, at step 0 for the
 * policy it started from. */
static int ppo_rows(struct report *r, struct pl_err *err)
{
    static const char *const keys[] = {"eval/reward", "eval/kl"};
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_runs; i++) {
        const struct report_run *run = &r->runs[i];
        if (!report_series_find(run, "eval/reward"))
            continue;
        int me = find_model(r, run->path);
        const char *policy = run_policy(run->run);
        int start = policy ? find_model(r, policy) : -1;
        char group[1024];
        snprintf(group, sizeof group, "PPO held-out prompts \xc2\xb7 %s", run->path);
        for (int k = 0; !rc && k < 2; k++) {
            const struct report_series *s = report_series_find(run, keys[k]);
            struct report_row *row;
            if (!s)
                continue;
            rc = row_of(r, group, keys[k], RANK_PPO, &row, err);
            if (!rc && me >= 0)
                put_cell(row, me, last_finite(s), NAN, NAN, -1);
            if (!rc && start >= 0 && s->n && s->x[0] == 0)
                put_cell(row, start, s->y[0], NAN, NAN, -1);
        }
    }
    return rc;
}

/* The distance of [lo, hi] to t as an interval. */
static void distance(double lo, double hi, double t, double *dlo, double *dhi)
{
    double a = fabs(lo - t), b = fabs(hi - t);
    *dhi = fmax(a, b);
    *dlo = lo <= t && t <= hi ? 0 : fmin(a, b);
}

static int mark_of(const struct report_row *row, const struct report_cell *ref,
                   const struct report_cell *c)
{
    if (!row->better || !isfinite(c->lo) || !isfinite(c->hi) || !isfinite(ref->lo) ||
        !isfinite(ref->hi))
        return REPORT_NONE;
    double clo = c->lo, chi = c->hi, rlo = ref->lo, rhi = ref->hi;
    int sign = row->better;
    if (row->better == 2) {
        distance(c->lo, c->hi, row->target, &clo, &chi);
        distance(ref->lo, ref->hi, row->target, &rlo, &rhi);
        sign = -1;
    }
    if (clo > rhi)
        return sign > 0 ? REPORT_BETTER : REPORT_WORSE;
    if (chi < rlo)
        return sign > 0 ? REPORT_WORSE : REPORT_BETTER;
    return REPORT_SAME;
}

static void mark_rows(struct report *r)
{
    for (int i = 0; i < r->n_rows; i++) {
        struct report_row *row = &r->rows[i];
        int ref = -1;
        for (int m = 0; m < r->n_models; m++) {
            struct report_cell *c = &row->cells[m];
            if (!isfinite(c->v))
                continue;
            if (ref < 0) {
                ref = m;
                c->mark = REPORT_REF;
            } else {
                c->mark = mark_of(row, &row->cells[ref], c);
            }
        }
    }
}

/* ---- answers shown side by side ---- */

static int sample_groups(struct report *r, struct pl_err *err)
{
    for (int i = 0; i < r->n_answers; i++) {
        const struct report_answers *a = &r->answers[i];
        if (!a->n)
            continue;
        struct report_sample_group *g = NULL;
        for (int k = 0; k < r->n_groups && !g; k++) {
            const struct report_answers *f = &r->answers[r->groups[k].sources[0]];
            if (holds(f, a->items[0].id) || holds(a, f->items[0].id))
                g = &r->groups[k];
        }
        if (!g) {
            int rc = grow(&r->groups, &r->cap_groups, r->n_groups, sizeof *r->groups, err);
            if (rc)
                return rc;
            g = &r->groups[r->n_groups++];
            *g = (struct report_sample_group){0};
        }
        /* Up to REPORT_SAMPLES_SHOWN ids, the first file's first, then the next file's. */
        for (int k = 0; k < a->n && g->n_ids < REPORT_SAMPLES_SHOWN; k++) {
            bool seen = false;
            for (int i2 = 0; i2 < g->n_ids && !seen; i2++)
                seen = strcmp(g->ids[i2], a->items[k].id) == 0;
            if (!seen)
                g->ids[g->n_ids++] = a->items[k].id;
        }
        int max = (int)(sizeof g->sources / sizeof *g->sources);
        if (g->n_sources == max)
            continue;
        /* In model order, so that columns read the same way as the summary's. */
        int at = g->n_sources;
        while (at > 0 && r->answers[g->sources[at - 1]].model > a->model) {
            g->sources[at] = g->sources[at - 1];
            at--;
        }
        g->sources[at] = i;
        g->n_sources++;
    }
    return PL_OK;
}

/* ---- charts ---- */

static int new_chart(struct report *r, int section, const char *title, const char *caption,
                     struct report_chart **out, struct pl_err *err)
{
    int rc = grow(&r->charts, &r->cap_charts, r->n_charts, sizeof *r->charts, err);
    if (rc)
        return rc;
    char file[64];
    snprintf(file, sizeof file, "chart-%02d.svg", r->n_charts + 1);
    struct report_chart *c = &r->charts[r->n_charts++];
    *c = (struct report_chart){section, str(r, title), str(r, caption), str(r, file), {0}};
    if (!c->title || !c->caption || !c->file)
        return pl_oom(err, "the report");
    *out = c;
    return PL_OK;
}

static const struct {
    const char *title, *ylabel;
    const char *keys[3];
} training_charts[] = {
    {"loss", "loss (nats per token)", {"train/loss", "eval/loss"}},
    {"reward-model accuracy", "pairwise accuracy", {"rm/accuracy", "eval/accuracy"}},
    {"PPO reward", "reward-model score", {"objective/scores", "eval/reward"}},
    {"KL to the reference", "nats per response", {"objective/kl", "eval/kl"}},
    {"KL coefficient", "beta", {"beta"}},
    {"entropy", "nats per response", {"objective/entropy"}},
    {"response length", "tokens", {"val/response_length"}},
};

static void run_caption(char *buf, size_t cap, const struct report_run *run)
{
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(run->run, "seed");
    const char *cmd = json_str(run->run, "command"), *v = json_str(run->run, "plumb_version");
    char s[32] = "?";
    if (cJSON_IsNumber(seed))
        snprintf(s, sizeof s, "%.0f", seed->valuedouble);
    snprintf(buf, cap, "%s/metrics.jsonl; plumb %s, seed %s, plumb version %s (run.json)",
             run->path, cmd ? cmd : "?", s, v ? v : "?");
}

static int training(struct report *r, struct pl_err *err)
{
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_runs; i++) {
        const struct report_run *run = &r->runs[i];
        for (size_t c = 0; !rc && c < sizeof training_charts / sizeof *training_charts; c++) {
            struct report_line lines[3];
            int n = 0;
            for (int k = 0; k < 3 && training_charts[c].keys[k]; k++) {
                const struct report_series *s = report_series_find(run, training_charts[c].keys[k]);
                if (s)
                    lines[n++] = (struct report_line){s->key, s->x, s->y, s->n};
            }
            if (!n)
                continue;
            char title[1024], caption[2048];
            snprintf(title, sizeof title, "%s: %s", run->label, training_charts[c].title);
            run_caption(caption, sizeof caption, run);
            struct report_chart *ch;
            rc = new_chart(r, REPORT_CHART_TRAINING, title, caption, &ch, err);
            if (!rc)
                report_svg_lines(&ch->svg, title, "step", training_charts[c].ylabel, lines, n);
        }
    }
    return rc;
}

static int reliability(struct report *r, struct pl_err *err)
{
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_results; i++) {
        const struct report_result *x = &r->results[i];
        const cJSON *bins = cJSON_GetObjectItemCaseSensitive(x->obj, "reliability");
        int n = cJSON_GetArraySize(bins);
        const char *group = result_group(r, x);
        if (!group)
            return pl_oom(err, "the report");
        bool again = false;
        for (int k = 0; k < i && !again; k++) {
            const char *g = result_group(r, &r->results[k]);
            again = !g || (r->results[k].model == x->model && strcmp(g, group) == 0 &&
                           cJSON_GetObjectItemCaseSensitive(r->results[k].obj, "reliability"));
        }
        if (!cJSON_IsArray(bins) || n == 0 || again)
            continue;
        double *d = pl_malloc((size_t)n * 4 * sizeof *d);
        long *count = pl_malloc((size_t)n * sizeof *count);
        if (!d || !count) {
            pl_free(d);
            pl_free(count);
            return pl_oom(err, "the report");
        }
        int k = 0;
        for (const cJSON *b = bins->child; b; b = b->next, k++) {
            d[k] = num(cJSON_GetObjectItemCaseSensitive(b, "lo"));
            d[n + k] = num(cJSON_GetObjectItemCaseSensitive(b, "hi"));
            d[2 * n + k] = num(cJSON_GetObjectItemCaseSensitive(b, "confidence"));
            d[3 * n + k] = num(cJSON_GetObjectItemCaseSensitive(b, "accuracy"));
            double c = num(cJSON_GetObjectItemCaseSensitive(b, "count"));
            count[k] = isfinite(c) ? (long)c : 0;
        }
        const cJSON *ece = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(x->obj, "metrics"), "ece");
        char title[1024], caption[2048], v[32];
        snprintf(title, sizeof title, "%s: reliability, %s", r->models[x->model].label, group);
        const char *data = json_str(x->obj, "dataset"), *sha = json_str(x->obj, "sha256");
        snprintf(caption, sizeof caption, "%s; data %s (sha256 %.12s); ECE %s", x->path,
                 data ? data : "?", sha ? sha : "?",
                 report_text_num(v, num(cJSON_GetObjectItemCaseSensitive(ece, "value"))));
        struct report_chart *ch;
        rc = new_chart(r, REPORT_CHART_RELIABILITY, title, caption, &ch, err);
        if (!rc)
            report_svg_reliability(&ch->svg, title, d, d + n, d + 2 * n, d + 3 * n, count, n);
        pl_free(d);
        pl_free(count);
    }
    return rc;
}

static const struct {
    const char *base;
    double ref;
} bias_metrics[] = {{"pct_stereotype", 0.5}, {"disamb_bias_score", 0}, {"amb_bias_score", 0}};

/* One bar chart: the per-category figures of `base` of the results of `group`, a series per
 * model. */
static int bias_chart(struct report *r, const char *group, int b, struct pl_err *err)
{
    const char *cats[MAX_CATS], *names[16];
    const struct report_result *src[16];
    int n_cats = 0, n_src = 0;
    for (int m = 0; m < r->n_models && n_src < 16; m++)
        for (int i = 0; i < r->n_results; i++) {
            const struct report_result *x = &r->results[i];
            const char *g = result_group(r, x);
            if (!g)
                return pl_oom(err, "the report");
            if (x->model != m || strcmp(g, group) != 0)
                continue;
            src[n_src] = x;
            names[n_src++] = r->models[m].label;
            break;
        }
    for (int s = 0; s < n_src; s++) {
        const cJSON *met = cJSON_GetObjectItemCaseSensitive(src[s]->obj, "metrics");
        for (const cJSON *c = met->child; c && n_cats < MAX_CATS; c = c->next) {
            const char *cat = category_of(src[s]->suite, c->string, bias_metrics[b].base);
            bool seen = false;
            for (int k = 0; cat && k < n_cats; k++)
                seen |= strcmp(cats[k], cat) == 0;
            if (cat && !seen)
                cats[n_cats++] = cat;
        }
    }
    if (!n_cats || !n_src)
        return PL_OK;
    double *v = pl_malloc((size_t)(n_src * n_cats) * 3 * sizeof *v);
    if (!v)
        return pl_oom(err, "the report");
    double *lo = v + n_src * n_cats, *hi = lo + n_src * n_cats;
    char key[512];
    for (int s = 0; s < n_src; s++)
        for (int k = 0; k < n_cats; k++) {
            const cJSON *all = cJSON_GetObjectItemCaseSensitive(src[s]->obj, "metrics");
            snprintf(key, sizeof key, "%s/%s", bias_metrics[b].base, cats[k]);
            const cJSON *met = cJSON_GetObjectItemCaseSensitive(all, key);
            if (!met) {
                snprintf(key, sizeof key, "%s_%s", bias_metrics[b].base, cats[k]);
                met = cJSON_GetObjectItemCaseSensitive(all, key);
            }
            const cJSON *ci = cJSON_GetObjectItemCaseSensitive(met, "ci95");
            int i = s * n_cats + k;
            v[i] = num(cJSON_GetObjectItemCaseSensitive(met, "value"));
            lo[i] = ci ? num(ci->child) : NAN;
            hi[i] = ci && ci->child ? num(ci->child->next) : NAN;
        }
    char title[1024], caption[2048];
    snprintf(title, sizeof title, "%s by category: %s", bias_metrics[b].base, group);
    const char *sha = json_str(src[0]->obj, "sha256");
    snprintf(caption, sizeof caption,
             "bars from %g (no bias) with 95%% intervals; %s (sha256 %.12s) and %d more",
             bias_metrics[b].ref, src[0]->path, sha ? sha : "?", n_src - 1);
    struct report_chart *ch;
    int rc = new_chart(r, REPORT_CHART_BIAS, title, caption, &ch, err);
    if (!rc)
        report_svg_bars(&ch->svg, title, cats, n_cats, names, n_src, v, lo, hi,
                        bias_metrics[b].ref);
    pl_free(v);
    return rc;
}

static int bias(struct report *r, struct pl_err *err)
{
    int rc = PL_OK;
    for (int i = 0; !rc && i < r->n_results; i++) {
        const char *g = result_group(r, &r->results[i]);
        if (!g)
            return pl_oom(err, "the report");
        bool done = false;
        for (int k = 0; k < i && !done; k++) {
            const char *h = result_group(r, &r->results[k]);
            done = !h || strcmp(g, h) == 0;
        }
        for (size_t b = 0; !rc && !done && b < sizeof bias_metrics / sizeof *bias_metrics; b++)
            rc = bias_chart(r, g, (int)b, err);
    }
    return rc;
}

/* ---- load, release ---- */

int report_load(struct report *r, const char *const *dirs, int n, const char *skip,
                struct pl_err *err)
{
    memset(r, 0, sizeof *r);
    struct loader L = {0};
    L.has_skip = skip && realpath(skip, L.skip);
    int rc = PL_OK;
    for (int i = 0; !rc && i < n; i++) {
        L.dir = i;
        rc = walk(r, &L, dirs[i], 0, err);
    }
    if (!rc)
        rc = match_details(r, &L, err);
    pl_free(L.details);
    for (int i = 0; !rc && i < r->n_runs; i++) {
        const struct report_run *run = &r->runs[i];
        const char *policy = run_policy(run->run);
        int m;
        L.dir = n;
        if (report_series_find(run, "eval/reward"))
            rc = model_of(r, &L, run->path, file_time(run->path), &m, err);
        if (!rc && policy && report_series_find(run, "eval/reward"))
            rc = model_of(r, &L, policy, file_time(run->path), &m, err);
    }
    if (!rc && !r->n_runs && !r->n_results && !r->n_answers)
        rc = pl_errf(err, PL_ENOTFOUND,
                     "no run folder (run.json), eval results or answers found under '%s'%s",
                     n ? dirs[0] : "", n > 1 ? " and the other folders" : "");
    if (!rc)
        rc = order_models(r, err);
    if (!rc)
        rc = label_models(r, err);
    if (!rc)
        rc = results_rows(r, err);
    if (!rc)
        rc = bon_rows(r, err);
    if (!rc)
        rc = ppo_rows(r, err);
    if (!rc) {
        sort_rows(r);
        mark_rows(r);
        rc = sample_groups(r, err);
    }
    if (!rc)
        rc = training(r, err);
    if (!rc)
        rc = reliability(r, err);
    if (!rc)
        rc = bias(r, err);
    for (int i = 0; !rc && i < r->n_charts; i++)
        if (r->charts[i].svg.oom)
            rc = pl_oom(err, "a chart");
    return rc;
}

void report_release(struct report *r)
{
    for (int i = 0; i < r->n_runs; i++) {
        cJSON_Delete(r->runs[i].run);
        for (int k = 0; k < r->runs[i].n_series; k++) {
            pl_free(r->runs[i].series[k].x);
            pl_free(r->runs[i].series[k].y);
        }
        pl_free(r->runs[i].series);
    }
    for (int i = 0; i < r->n_rows; i++)
        pl_free(r->rows[i].cells);
    for (int i = 0; i < r->n_answers; i++)
        pl_free(r->answers[i].items);
    for (int i = 0; i < r->n_docs; i++)
        cJSON_Delete(r->docs[i].json);
    for (int i = 0; i < r->n_charts; i++)
        pl_buf_release(&r->charts[i].svg);
    pl_free(r->runs);
    pl_free(r->models);
    pl_free(r->results);
    pl_free(r->rows);
    pl_free(r->answers);
    pl_free(r->docs);
    pl_free(r->charts);
    pl_free(r->groups);
    io_arena_release(&r->arena);
    memset(r, 0, sizeof *r);
}

/* ---- report.json ---- */

static cJSON *add_num(cJSON *o, const char *name, double v)
{
    return isfinite(v) ? cJSON_AddNumberToObject(o, name, v) : cJSON_AddNullToObject(o, name);
}

static cJSON *interval(double lo, double hi)
{
    cJSON *a = cJSON_CreateArray();
    cJSON *x = isfinite(lo) ? cJSON_CreateNumber(lo) : cJSON_CreateNull();
    cJSON *y = isfinite(hi) ? cJSON_CreateNumber(hi) : cJSON_CreateNull();
    if (!a || !x || !y || !cJSON_AddItemToArray(a, x) || !cJSON_AddItemToArray(a, y)) {
        cJSON_Delete(a);
        cJSON_Delete(x);
        cJSON_Delete(y);
        return NULL;
    }
    return a;
}

/* Adds item to parent (array when name is NULL); false when item is NULL or adding failed
 * (then item is freed). */
static bool put(cJSON *parent, const char *name, cJSON *item)
{
    if (!item)
        return false;
    bool ok = name ? cJSON_AddItemToObject(parent, name, item) : cJSON_AddItemToArray(parent, item);
    if (!ok)
        cJSON_Delete(item);
    return ok;
}

static bool json_summary(const struct report *r, cJSON *root)
{
    cJSON *rows = cJSON_AddArrayToObject(root, "summary");
    bool ok = rows != NULL;
    for (int i = 0; ok && i < r->n_rows; i++) {
        const struct report_row *row = &r->rows[i];
        cJSON *o = cJSON_CreateObject(), *cells = NULL;
        ok = put(rows, NULL, o) && cJSON_AddStringToObject(o, "group", row->group) &&
             cJSON_AddStringToObject(o, "metric", row->metric) &&
             cJSON_AddStringToObject(o, "better",
                                     row->better == 1    ? "higher"
                                     : row->better == -1 ? "lower"
                                     : row->better == 2  ? "closer to target"
                                                         : "none") &&
             (cells = cJSON_AddObjectToObject(o, "models"));
        if (ok && row->better == 2)
            ok = add_num(o, "target", row->target);
        for (int m = 0; ok && m < r->n_models; m++) {
            const struct report_cell *c = &row->cells[m];
            if (!isfinite(c->v))
                continue;
            cJSON *cell = cJSON_CreateObject();
            ok = put(cells, r->models[m].label, cell) && add_num(cell, "value", c->v) &&
                 put(cell, "ci95", interval(c->lo, c->hi)) &&
                 cJSON_AddStringToObject(cell, "mark", report_mark_name(c->mark)) &&
                 (c->source < 0 ||
                  cJSON_AddStringToObject(cell, "source", r->results[c->source].path));
        }
    }
    return ok;
}

static bool json_runs(const struct report *r, cJSON *root)
{
    cJSON *runs = cJSON_AddArrayToObject(root, "runs");
    bool ok = runs != NULL;
    for (int i = 0; ok && i < r->n_runs; i++) {
        const struct report_run *run = &r->runs[i];
        cJSON *o = cJSON_CreateObject(), *ms = NULL;
        ok = put(runs, NULL, o) && cJSON_AddStringToObject(o, "path", run->path) &&
             put(o, "run", cJSON_Duplicate(run->run, true)) &&
             (ms = cJSON_AddObjectToObject(o, "metrics"));
        for (int k = 0; ok && k < run->n_series; k++) {
            const struct report_series *s = &run->series[k];
            cJSON *so = cJSON_CreateObject(), *vals = NULL;
            ok = put(ms, s->key, so) && put(so, "step", cJSON_CreateDoubleArray(s->x, s->n)) &&
                 (vals = cJSON_AddArrayToObject(so, "value"));
            for (int p = 0; ok && p < s->n; p++)
                ok = put(vals, NULL,
                         isfinite(s->y[p]) ? cJSON_CreateNumber(s->y[p]) : cJSON_CreateNull());
        }
    }
    return ok;
}

static bool json_answers(const struct report *r, cJSON *root)
{
    cJSON *arr = cJSON_AddArrayToObject(root, "samples");
    bool ok = arr != NULL;
    for (int g = 0; ok && g < r->n_groups; g++) {
        const struct report_sample_group *grp = &r->groups[g];
        for (int s = 0; ok && s < grp->n_sources; s++) {
            const struct report_answers *a = &r->answers[grp->sources[s]];
            cJSON *o = cJSON_CreateObject(), *items = NULL;
            ok = put(arr, NULL, o) && cJSON_AddStringToObject(o, "path", a->path) &&
                 cJSON_AddStringToObject(o, "model", r->models[a->model].label) &&
                 (items = cJSON_AddArrayToObject(o, "answers"));
            for (int k = 0; ok && k < a->n; k++) {
                const struct report_answer *x = &a->items[k];
                bool shown = false;
                for (int i = 0; i < grp->n_ids; i++)
                    shown |= strcmp(grp->ids[i], x->id) == 0;
                if (!shown)
                    continue;
                cJSON *it = cJSON_CreateObject();
                ok = put(items, NULL, it) && cJSON_AddStringToObject(it, "id", x->id) &&
                     (!x->prompt || cJSON_AddStringToObject(it, "prompt", x->prompt)) &&
                     cJSON_AddStringToObject(it, "text", x->text) &&
                     add_num(it, "reward", x->reward) &&
                     (!x->note || cJSON_AddStringToObject(it, "note", x->note));
            }
        }
    }
    return ok;
}

int report_json(const struct report *r, const struct report_page *page, struct pl_buf *out,
                struct pl_err *err)
{
    cJSON *root = cJSON_CreateObject(), *models = NULL, *results = NULL, *src = NULL;
    bool ok = root && cJSON_AddStringToObject(root, "title", page->title) &&
              cJSON_AddStringToObject(root, "plumb_version", page->version) &&
              (src = cJSON_AddArrayToObject(root, "sources"));
    for (int i = 0; ok && i < page->n_sources; i++)
        ok = put(src, NULL, cJSON_CreateString(page->sources[i]));
    ok = ok && (models = cJSON_AddArrayToObject(root, "models"));
    for (int m = 0; ok && m < r->n_models; m++) {
        cJSON *o = cJSON_CreateObject();
        ok = put(models, NULL, o) && cJSON_AddStringToObject(o, "label", r->models[m].label) &&
             cJSON_AddStringToObject(o, "name", r->models[m].name) &&
             cJSON_AddBoolToObject(o, "reference", m == 0);
    }
    ok = ok && json_summary(r, root) && json_runs(r, root) &&
         (results = cJSON_AddArrayToObject(root, "results"));
    for (int i = 0; ok && i < r->n_results; i++) {
        const struct report_result *x = &r->results[i];
        cJSON *o = cJSON_CreateObject();
        ok = put(results, NULL, o) && cJSON_AddStringToObject(o, "path", x->path) &&
             cJSON_AddStringToObject(o, "suite", x->suite) &&
             cJSON_AddStringToObject(o, "model", r->models[x->model].label) &&
             put(o, "results", cJSON_Duplicate(x->obj, true));
    }
    ok = ok && json_answers(r, root);
    static const char *const kinds[] = {NULL, "rm_evals", "summaries", "critique_traces"};
    for (int k = 1; ok && k < 4; k++) {
        cJSON *arr = cJSON_AddArrayToObject(root, kinds[k]);
        ok = arr != NULL;
        for (int i = 0; ok && i < r->n_docs; i++) {
            const struct report_doc *d = &r->docs[i];
            if (d->kind != k)
                continue;
            cJSON *o = cJSON_CreateObject();
            ok = put(arr, NULL, o) && cJSON_AddStringToObject(o, "path", d->path) &&
                 put(o, k == REPORT_DOC_TRACE ? "shown" : "data", cJSON_Duplicate(d->json, true)) &&
                 (k != REPORT_DOC_TRACE ||
                  cJSON_AddNumberToObject(o, "records", (double)d->records));
        }
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return pl_oom(err, "report.json");
    pl_buf_str(out, text);
    pl_buf_str(out, "\n");
    cJSON_free(text);
    return out->oom ? pl_oom(err, "report.json") : PL_OK;
}

const struct report_answer *report_answer_find(const struct report_answers *a, const char *id)
{
    for (int k = 0; k < a->n; k++)
        if (strcmp(a->items[k].id, id) == 0)
            return &a->items[k];
    return NULL;
}

const char *report_group_prompt(const struct report *r, const struct report_sample_group *g, int i)
{
    for (int s = 0; s < g->n_sources; s++) {
        const struct report_answer *x = report_answer_find(&r->answers[g->sources[s]], g->ids[i]);
        if (x && x->prompt)
            return x->prompt;
    }
    return NULL;
}

const char *report_str(const cJSON *o, const char *name)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

void report_json_value(struct pl_buf *b, const cJSON *v,
                       void (*esc)(struct pl_buf *b, const char *s))
{
    if (cJSON_IsString(v)) {
        esc(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        pl_buf_printf(b, "%.9g", v->valuedouble);
    } else {
        char *t = cJSON_PrintUnformatted(v);
        if (!t) {
            b->oom = true;
            return;
        }
        esc(b, t);
        cJSON_free(t);
    }
}
