#include "evalsets.h"

#include <ctype.h>
#include <string.h>

static const char *dup(struct io_arena *a, const char *s)
{
    return io_arena_strndup(a, s, strlen(s));
}

static bool csv_path(const char *path)
{
    return io_has_suffix(path, ".csv") || io_has_suffix(path, ".csv.gz");
}

/* ---- TruthfulQA ---- */

void ds_tqa_release(struct ds_tqa *set)
{
    for (size_t i = 0; i < set->n; i++)
        pl_free(set->items[i].mem);
    pl_free(set->items);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

/* Room for an item's arrays: mc1 [n1], mc2 [n2], correct [nc], incorrect [ni], mc2_true [n2]. */
static int tqa_arrays(struct ds_tqa_item *it, int n1, int n2, int nc, int ni, struct pl_err *err)
{
    size_t ptrs = (size_t)n1 + (size_t)n2 + (size_t)nc + (size_t)ni;
    it->mem = pl_malloc(ptrs * sizeof(char *) + (size_t)n2 * sizeof(bool) + 1);
    if (!it->mem)
        return pl_oom(err, "TruthfulQA");
    const char **p = it->mem;
    it->mc1 = p;
    it->mc2 = p + n1;
    it->correct = p + n1 + n2;
    it->incorrect = p + n1 + n2 + nc;
    it->mc2_true = (bool *)(p + ptrs);
    return PL_OK;
}

static int tqa_add(struct ds_tqa *set, struct ds_tqa_item *it, struct pl_err *err)
{
    struct ds_tqa_item *items = io_grow(set->items, &set->cap, set->n + 1, sizeof *items);
    if (!items) {
        pl_free(it->mem);
        return pl_oom(err, "TruthfulQA");
    }
    set->items = items;
    set->items[set->n++] = *it;
    return PL_OK;
}

/* One of mc_task.json's target objects {choice: 0|1}; *n members. */
static int tqa_targets(const char *path, long item, const cJSON *doc, const char *name,
                       const cJSON **obj, int *n, struct pl_err *err)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, name), *c;
    *obj = t;
    *n = cJSON_GetArraySize(t);
    bool ok = cJSON_IsObject(t) && *n >= 2;
    cJSON_ArrayForEach(c, t) ok =
        ok && cJSON_IsNumber(c) && (c->valuedouble == 0 || c->valuedouble == 1);
    if (!ok)
        return pl_errf(err, PL_EFORMAT,
                       "%s: item %ld: field '%s': expected an object of 2 or more {choice: 0 or "
                       "1}",
                       path, item, name);
    return PL_OK;
}

static int tqa_json(struct ds_tqa *set, const char *path, struct pl_err *err)
{
    cJSON *doc = NULL, *e;
    int rc = io_json_load(path, &doc, err);
    if (!rc && !cJSON_IsArray(doc))
        rc = pl_errf(err, PL_EFORMAT, "%s: expected a JSON array of questions", path);
    long item = 0;
    cJSON_ArrayForEach(e, (rc ? NULL : doc))
    {
        item++;
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(e, "question"), *t1, *t2, *c;
        int n1 = 0, n2 = 0;
        if (!cJSON_IsString(q)) {
            rc = pl_errf(err, PL_EFORMAT, "%s: item %ld: field 'question': expected a string", path,
                         item);
            break;
        }
        rc = tqa_targets(path, item, e, "mc1_targets", &t1, &n1, err);
        if (!rc)
            rc = tqa_targets(path, item, e, "mc2_targets", &t2, &n2, err);
        int n_true = 0;
        cJSON_ArrayForEach(c, (rc ? NULL : t2)) n_true += c->valuedouble == 1;
        struct ds_tqa_item it = {.line = item,
                                 .n_mc1 = n1,
                                 .n_mc2 = n2,
                                 .mc1_answer = -1,
                                 .n_correct = n_true,
                                 .n_incorrect = n2 - n_true};
        if (!rc)
            rc = tqa_arrays(&it, n1, n2, n_true, n2 - n_true, err);
        it.question = rc ? NULL : dup(&set->arena, q->valuestring);
        int k = 0, ones = 0;
        cJSON_ArrayForEach(c, (rc ? NULL : t1))
        {
            if (c->valuedouble == 1) {
                it.mc1_answer = k;
                ones++;
            }
            it.mc1[k++] = dup(&set->arena, c->string);
        }
        int nc = 0, ni = 0;
        k = 0;
        cJSON_ArrayForEach(c, (rc ? NULL : t2))
        {
            const char *s = dup(&set->arena, c->string);
            ((bool *)it.mc2_true)[k] = c->valuedouble == 1;
            it.mc2[k++] = s;
            if (c->valuedouble == 1)
                it.correct[nc++] = s;
            else
                it.incorrect[ni++] = s;
        }
        if (!rc && ones != 1)
            rc = pl_errf(err, PL_EFORMAT,
                         "%s: item %ld: field 'mc1_targets': %d true answers (MC1 needs one)", path,
                         item, ones);
        if (!rc && (n_true == 0 || n_true == n2))
            rc = pl_errf(err, PL_EFORMAT,
                         "%s: item %ld: field 'mc2_targets': needs true and false answers", path,
                         item);
        if (!rc && !it.question)
            rc = pl_oom(err, "TruthfulQA");
        if (rc) {
            pl_free(it.mem);
            break;
        }
        rc = tqa_add(set, &it, err);
        if (rc)
            break;
    }
    cJSON_Delete(doc);
    if (!rc && set->n == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no records", path);
    return rc;
}

/* The ';'-separated answers of a CSV cell, trimmed, empty ones dropped: their count, and with
 * out, the answers copied into the arena. */
static int split_answers(struct io_arena *a, const char *cell, const char **out)
{
    int n = 0;
    for (const char *p = cell; *p;) {
        const char *end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            if (out)
                out[n] = io_arena_strndup(a, b, (size_t)(e - b));
            n++;
        }
        p = *end ? end + 1 : end;
    }
    return n;
}

static int tqa_csv(struct ds_tqa *set, const char *path, struct pl_err *err)
{
    struct ds_csv t;
    size_t cq, cb, cc, ci;
    int rc = ds_csv_init(&t, path, 0, err);
    if (!rc)
        rc = ds_csv_column(&t, "Question", &cq, err);
    if (!rc)
        rc = ds_csv_column(&t, "Best Answer", &cb, err);
    if (!rc)
        rc = ds_csv_column(&t, "Correct Answers", &cc, err);
    if (!rc)
        rc = ds_csv_column(&t, "Incorrect Answers", &ci, err);
    for (size_t r = 0; !rc && r < t.nrows; r++) {
        const char **row = t.cells + r * t.ncols;
        long line = t.lines[r];
        int nc = split_answers(NULL, row[cc], NULL), ni = split_answers(NULL, row[ci], NULL);
        const char *field = !*row[cq]   ? "Question"
                            : !*row[cb] ? "Best Answer"
                            : nc == 0   ? "Correct Answers"
                            : ni == 0   ? "Incorrect Answers"
                                        : NULL;
        if (field) {
            rc = pl_errf(err, PL_EFORMAT, "%s:%ld: field '%s': empty", path, line, field);
            break;
        }
        struct ds_tqa_item it = {
            .line = line, .n_mc1 = 1 + ni, .n_mc2 = nc + ni, .n_correct = nc, .n_incorrect = ni};
        rc = tqa_arrays(&it, 1 + ni, nc + ni, nc, ni, err);
        if (rc)
            break;
        it.question = dup(&set->arena, row[cq]);
        split_answers(&set->arena, row[cc], it.correct);
        split_answers(&set->arena, row[ci], it.incorrect);
        it.mc1[0] = dup(&set->arena, row[cb]);
        for (int i = 0; i < ni; i++)
            it.mc1[1 + i] = it.incorrect[i];
        for (int i = 0; i < nc + ni; i++) {
            it.mc2[i] = i < nc ? it.correct[i] : it.incorrect[i - nc];
            ((bool *)it.mc2_true)[i] = i < nc;
        }
        bool ok = it.question && it.mc1[0];
        for (int i = 0; i < nc + ni; i++)
            ok = ok && it.mc2[i];
        if (!ok) {
            pl_free(it.mem);
            rc = pl_oom(err, "TruthfulQA");
            break;
        }
        rc = tqa_add(set, &it, err);
    }
    ds_csv_release(&t);
    return rc;
}

int ds_tqa_init(struct ds_tqa *set, const char *path, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    return csv_path(path) ? tqa_csv(set, path, err) : tqa_json(set, path, err);
}

/* ---- generic multiple choice ---- */

void ds_mc_release(struct ds_mc *set)
{
    for (size_t i = 0; i < set->n; i++)
        pl_free(set->items[i].mem);
    pl_free(set->items);
    io_arena_release(&set->arena);
    ds_tqa_release(&set->tqa);
    memset(set, 0, sizeof *set);
}

static int mc_add(struct ds_mc *set, const struct ds_mc_item *it, struct pl_err *err)
{
    struct ds_mc_item *items = io_grow(set->items, &set->cap, set->n + 1, sizeof *items);
    if (!items) {
        pl_free(it->mem);
        return pl_oom(err, "questions");
    }
    set->items = items;
    set->items[set->n++] = *it;
    return PL_OK;
}

static int mc_record(struct ds_mc *set, const struct io_jsonl *r, const cJSON *obj, long line,
                     struct pl_err *err)
{
    const char *q = NULL;
    const cJSON *choices = NULL, *c, *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    int n = 0;
    long answer = 0;
    int rc = io_get_str(r, obj, "question", &q, err);
    if (!rc)
        rc = ds_get_strs(r, obj, "choices", &choices, &n, err);
    if (!rc && n < 2)
        rc = io_jsonl_errf(r, err, "field 'choices': %d choices (2 or more are needed)", n);
    if (!rc)
        rc = io_get_int(r, obj, "answer", &answer, err);
    if (!rc && (answer < 0 || answer >= n))
        rc = io_jsonl_errf(r, err, "field 'answer': %ld is not an index of the %d choices", answer,
                           n);
    if (rc)
        return rc;
    struct ds_mc_item it = {.n_choices = n, .answer = (int)answer, .line = line};
    it.mem = pl_malloc((size_t)n * sizeof *it.choices);
    if (!it.mem)
        return pl_oom(err, "questions");
    it.choices = it.mem;
    it.question = dup(&set->arena, q);
    it.id = cJSON_IsString(id) ? dup(&set->arena, id->valuestring) : NULL;
    bool ok = it.question && (it.id || !cJSON_IsString(id));
    int k = 0;
    cJSON_ArrayForEach(c, choices)
    {
        it.choices[k] = dup(&set->arena, c->valuestring);
        ok = ok && it.choices[k++];
    }
    if (!ok) {
        pl_free(it.mem);
        return pl_oom(err, "questions");
    }
    return mc_add(set, &it, err);
}

int ds_mc_init(struct ds_mc *set, const char *path, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    if (csv_path(path) || io_has_suffix(path, ".json")) {
        int rc = ds_tqa_init(&set->tqa, path, err);
        for (size_t i = 0; !rc && i < set->tqa.n; i++) {
            const struct ds_tqa_item *t = &set->tqa.items[i];
            struct ds_mc_item it = {.question = t->question,
                                    .choices = t->mc1,
                                    .n_choices = t->n_mc1,
                                    .answer = t->mc1_answer,
                                    .line = t->line};
            rc = mc_add(set, &it, err);
        }
        return rc;
    }
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, path, 0, err);
    while (!rc) {
        cJSON *obj = NULL;
        long line = 0;
        rc = io_jsonl_next(&r, &obj, &line, err);
        if (rc || !obj)
            break;
        rc = mc_record(set, &r, obj, line, err);
        cJSON_Delete(obj);
    }
    io_jsonl_release(&r);
    return rc;
}

/* ---- sentence pairs ---- */

void ds_pairs_release(struct ds_pairs *set)
{
    pl_free(set->items);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

static int pair_add(struct ds_pairs *set, const char *more, const char *less, const char *type,
                    long line, struct pl_err *err)
{
    struct ds_pair_item *items = io_grow(set->items, &set->cap, set->n + 1, sizeof *items);
    if (!items)
        return pl_oom(err, "pairs");
    set->items = items;
    struct ds_pair_item it = {dup(&set->arena, more), dup(&set->arena, less),
                              dup(&set->arena, type), line};
    if (!it.more || !it.less || !it.type)
        return pl_oom(err, "pairs");
    set->items[set->n++] = it;
    return PL_OK;
}

int ds_pairs_init(struct ds_pairs *set, const char *path, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    if (csv_path(path)) {
        struct ds_csv t;
        size_t cm, cl, ct;
        int rc = ds_csv_init(&t, path, 0, err);
        if (!rc)
            rc = ds_csv_column(&t, "sent_more", &cm, err);
        if (!rc)
            rc = ds_csv_column(&t, "sent_less", &cl, err);
        if (!rc)
            rc = ds_csv_column(&t, "bias_type", &ct, err);
        for (size_t r = 0; !rc && r < t.nrows; r++) {
            const char **row = t.cells + r * t.ncols;
            const char *field = !*row[cm]   ? "sent_more"
                                : !*row[cl] ? "sent_less"
                                : !*row[ct] ? "bias_type"
                                            : NULL;
            rc = field ? pl_errf(err, PL_EFORMAT, "%s:%ld: field '%s': empty", path, t.lines[r],
                                 field)
                       : pair_add(set, row[cm], row[cl], row[ct], t.lines[r], err);
        }
        ds_csv_release(&t);
        return rc;
    }
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, path, 0, err);
    while (!rc) {
        cJSON *obj = NULL;
        long line = 0;
        rc = io_jsonl_next(&r, &obj, &line, err);
        if (rc || !obj)
            break;
        const char *more = NULL, *less = NULL, *type = NULL;
        rc = io_get_str(&r, obj, "stereo", &more, err);
        if (!rc)
            rc = io_get_str(&r, obj, "anti", &less, err);
        if (!rc)
            rc = io_get_str(&r, obj, "trait", &type, err);
        if (!rc && (!*more || !*less))
            rc = io_jsonl_errf(&r, err, "field '%s': empty sentence", *more ? "anti" : "stereo");
        if (!rc)
            rc = pair_add(set, more, less, type, line, err);
        cJSON_Delete(obj);
    }
    io_jsonl_release(&r);
    return rc;
}

/* ---- BBQ ---- */

void ds_bbq_release(struct ds_bbq *set)
{
    for (size_t i = 0; i < set->n; i++)
        pl_free(set->items[i].mem);
    pl_free(set->items);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

/* One of two strings a field must be: *is_first says which. */
static int bbq_pick(const struct io_jsonl *r, const cJSON *obj, const char *name, const char *a,
                    const char *b, bool *is_first, struct pl_err *err)
{
    const char *s = NULL;
    int rc = io_get_str(r, obj, name, &s, err);
    if (rc)
        return rc;
    if (strcmp(s, a) != 0 && strcmp(s, b) != 0)
        return io_jsonl_errf(r, err, "field '%s': expected \"%s\" or \"%s\"", name, a, b);
    *is_first = strcmp(s, a) == 0;
    return PL_OK;
}

static int bbq_record(struct ds_bbq *set, const struct io_jsonl *r, const cJSON *obj,
                      const char *path, long line, struct pl_err *err)
{
    struct ds_bbq_item it = {.line = line};
    const char *context = NULL, *question = NULL, *category = NULL, *ans[3] = {0};
    long label = -1;
    bool ambig = false, neg = false;
    int rc = io_get_str(r, obj, "context", &context, err);
    if (!rc)
        rc = io_get_str(r, obj, "question", &question, err);
    if (!rc)
        rc = io_get_str(r, obj, "category", &category, err);
    static const char *const names[3] = {"ans0", "ans1", "ans2"};
    for (int i = 0; !rc && i < 3; i++)
        rc = io_get_str(r, obj, names[i], &ans[i], err);
    if (!rc)
        rc = io_get_int(r, obj, "label", &label, err);
    if (!rc && (label < 0 || label > 2))
        rc = io_jsonl_errf(r, err, "field 'label': %ld is not 0, 1 or 2", label);
    if (!rc)
        rc = bbq_pick(r, obj, "context_condition", "ambig", "disambig", &ambig, err);
    if (!rc)
        rc = bbq_pick(r, obj, "question_polarity", "neg", "nonneg", &neg, err);
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(obj, "answer_info");
    for (int i = 0; !rc && i < 3; i++) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(info, names[i]);
        const cJSON *g0 = cJSON_GetArrayItem(g, 0), *g1 = cJSON_GetArrayItem(g, 1);
        if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) != 2 || !cJSON_IsString(g0) ||
            !cJSON_IsString(g1))
            rc = io_jsonl_errf(r, err, "field 'answer_info': '%s' is not two strings", names[i]);
        else {
            it.info[i][0] = dup(&set->arena, g0->valuestring);
            it.info[i][1] = dup(&set->arena, g1->valuestring);
        }
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "additional_metadata");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(meta, "stereotyped_groups"), *s;
    int n = cJSON_GetArraySize(st);
    bool ok = cJSON_IsArray(st);
    cJSON_ArrayForEach(s, st) ok = ok && cJSON_IsString(s);
    if (!rc && !ok)
        rc = io_jsonl_errf(r, err,
                           "field 'additional_metadata': 'stereotyped_groups' is not an array of "
                           "strings");
    if (rc)
        return rc;
    it.mem = pl_malloc((size_t)(n + 1) * sizeof *it.stereotyped);
    if (!it.mem)
        return pl_oom(err, "BBQ");
    it.stereotyped = it.mem;
    it.n_stereotyped = n;
    int k = 0;
    ok = true;
    cJSON_ArrayForEach(s, st)
    {
        it.stereotyped[k] = dup(&set->arena, s->valuestring);
        ok = ok && it.stereotyped[k++];
    }
    it.context = dup(&set->arena, context);
    it.question = dup(&set->arena, question);
    it.category = dup(&set->arena, category);
    it.path = dup(&set->arena, path);
    for (int i = 0; i < 3; i++) {
        it.ans[i] = dup(&set->arena, ans[i]);
        ok = ok && it.ans[i] && it.info[i][0] && it.info[i][1];
    }
    it.label = (int)label;
    it.disambig = !ambig;
    it.neg = neg;
    struct ds_bbq_item *items = ok && it.context && it.question && it.category && it.path
                                    ? io_grow(set->items, &set->cap, set->n + 1, sizeof *items)
                                    : NULL;
    if (!items) {
        pl_free(it.mem);
        return pl_oom(err, "BBQ");
    }
    set->items = items;
    set->items[set->n++] = it;
    return PL_OK;
}

int ds_bbq_load(struct ds_bbq *set, const char *path, struct pl_err *err)
{
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, path, 0, err);
    while (!rc) {
        cJSON *obj = NULL;
        long line = 0;
        rc = io_jsonl_next(&r, &obj, &line, err);
        if (rc || !obj)
            break;
        rc = bbq_record(set, &r, obj, path, line, err);
        cJSON_Delete(obj);
    }
    io_jsonl_release(&r);
    return rc;
}
