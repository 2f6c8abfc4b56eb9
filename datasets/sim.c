#include "sim.h"

#include "model/io.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* An entry of a preference list: a class pattern's index (>= 0), or one of these. */
enum { RULE_REST = -1, RULE_CORRECT = -2 };
enum { MAX_ENTRIES = 16 };

struct sim_order {
    const char *name; /* the prompt kind, or "tone"; borrowed from the rules' document */
    int entry[MAX_ENTRIES];
    int n;
    int rest;         /* position of the entry that takes what no other matches */
    bool needs_truth; /* holds "correct" */
};

struct ds_sim_rules {
    cJSON *doc; /* annotators.json: the names below point into it */
    pcre2_general_context *ctx;
    pcre2_code **classes; /* [n_classes] */
    const char **class_names;
    int n_classes;
    pcre2_match_data *match;
    struct sim_order *orders; /* [n_orders], one per prompt kind */
    int n_orders;
    struct sim_order tone;
    bool has_tone;
};

/* PL_EFORMAT "PATH: message" about a whole-file JSON document. */
static int doc_errf(const char *path, struct pl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int doc_errf(const char *path, struct pl_err *err, const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pl_errf(err, PL_EFORMAT, "%s: %s", path, msg);
}

static int read_annotators(struct ds_sim *s, struct pl_err *err)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(s->rules->doc, "annotators"), *a;
    int n = cJSON_GetArraySize(list);
    if (!cJSON_IsArray(list) || n == 0)
        return doc_errf(s->rules_path, err,
                        "field 'annotators': expected a non-empty array of {\"id\", \"noise\"}");
    s->annotators = pl_calloc((size_t)n, sizeof *s->annotators);
    if (!s->annotators)
        return pl_oom(err, "annotators");
    cJSON_ArrayForEach(a, list)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *noise = cJSON_GetObjectItemCaseSensitive(a, "noise");
        int i = s->n_annotators;
        if (!cJSON_IsString(id) || !*id->valuestring || !cJSON_IsNumber(noise) ||
            !(noise->valuedouble >= 0 && noise->valuedouble <= 1))
            return doc_errf(s->rules_path, err,
                            "field 'annotators': entry %d: expected {\"id\": a name, \"noise\": a "
                            "number in [0, 1]}",
                            i + 1);
        /* "truth" labels are the noise-free ranking; an annotator of that name would pass for it.
         */
        if (strcmp(id->valuestring, "truth") == 0 || ds_sim_find(s, id->valuestring) >= 0)
            return doc_errf(s->rules_path, err, "field 'annotators': '%s' is %s", id->valuestring,
                            ds_sim_find(s, id->valuestring) >= 0
                                ? "listed twice"
                                : "kept for the noise-free ranking");
        s->annotators[i] = (struct ds_sim_annotator){id->valuestring, noise->valuedouble};
        s->n_annotators++;
    }
    return PL_OK;
}

static int read_classes(struct ds_sim *s, struct pl_err *err)
{
    struct ds_sim_rules *ru = s->rules;
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(ru->doc, "classes"), *c;
    if (!cJSON_IsObject(classes))
        return doc_errf(s->rules_path, err,
                        "field 'classes': expected an object of PCRE2 patterns");
    int n = cJSON_GetArraySize(classes);
    ru->ctx = pcre2_general_context_create(pl_malloc_hook, pl_free_hook, NULL);
    pcre2_compile_context *cc = ru->ctx ? pcre2_compile_context_create(ru->ctx) : NULL;
    ru->match = ru->ctx ? pcre2_match_data_create(1, ru->ctx) : NULL;
    ru->classes = pl_calloc((size_t)n + 1, sizeof *ru->classes);
    ru->class_names = pl_calloc((size_t)n + 1, sizeof *ru->class_names);
    int rc = cc && ru->match && ru->classes && ru->class_names ? PL_OK : pl_oom(err, "patterns");
    cJSON_ArrayForEach(c, classes)
    {
        if (rc)
            break;
        if (!cJSON_IsString(c)) {
            rc = doc_errf(s->rules_path, err, "class '%s': expected a PCRE2 pattern", c->string);
            break;
        }
        int code;
        PCRE2_SIZE at;
        /* MATCH_INVALID_UTF: model output may hold any bytes; invalid sequences match nothing. */
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)c->valuestring, PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, cc);
        if (!re && code == PCRE2_ERROR_HEAP_FAILED) {
            rc = pl_oom(err, "patterns");
        } else if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof msg);
            rc = doc_errf(s->rules_path, err, "class '%s': cannot compile the pattern: %s (at %zu)",
                          c->string, (const char *)msg, (size_t)at);
        } else {
            ru->classes[ru->n_classes] = re;
            ru->class_names[ru->n_classes++] = c->string;
        }
    }
    pcre2_compile_context_free(cc);
    return rc;
}

static int class_index(const struct ds_sim_rules *ru, const char *name)
{
    for (int i = 0; i < ru->n_classes; i++)
        if (strcmp(ru->class_names[i], name) == 0)
            return i;
    return -1;
}

static int read_order(struct ds_sim *s, const cJSON *list, struct sim_order *o, struct pl_err *err)
{
    const cJSON *e;
    int n = cJSON_GetArraySize(list), rests = 0;
    bool ok = cJSON_IsArray(list) && n >= 1 && n <= MAX_ENTRIES;
    cJSON_ArrayForEach(e, list) ok = ok && cJSON_IsString(e);
    if (!ok)
        return doc_errf(s->rules_path, err, "preference '%s': expected a list of 1 to %d classes",
                        list->string, MAX_ENTRIES);
    o->name = list->string;
    cJSON_ArrayForEach(e, list)
    {
        int c = class_index(s->rules, e->valuestring);
        if (c < 0)
            c = strcmp(e->valuestring, "correct") == 0 ? RULE_CORRECT : RULE_REST;
        if (c == RULE_REST) {
            o->rest = o->n;
            rests++;
        }
        o->needs_truth = o->needs_truth || c == RULE_CORRECT;
        o->entry[o->n++] = c;
    }
    if (rests != 1)
        return doc_errf(s->rules_path, err,
                        "preference '%s': %d classes without a pattern; exactly one takes the "
                        "completions that no other class matches",
                        o->name, rests);
    return PL_OK;
}

static int read_preference(struct ds_sim *s, struct pl_err *err)
{
    struct ds_sim_rules *ru = s->rules;
    const cJSON *pref = cJSON_GetObjectItemCaseSensitive(ru->doc, "preference"), *list;
    if (!cJSON_IsObject(pref))
        return doc_errf(s->rules_path, err,
                        "field 'preference': expected an object of lists of classes");
    ru->orders = pl_calloc((size_t)cJSON_GetArraySize(pref) + 1, sizeof *ru->orders);
    if (!ru->orders)
        return pl_oom(err, "annotator rules");
    cJSON_ArrayForEach(list, pref)
    {
        bool tone = strcmp(list->string, "tone") == 0;
        int rc = read_order(s, list, tone ? &ru->tone : &ru->orders[ru->n_orders], err);
        if (rc)
            return rc;
        ru->has_tone = ru->has_tone || tone;
        ru->n_orders += !tone;
    }
    return PL_OK;
}

int ds_sim_init(struct ds_sim *s, const char *dir, const char *prompts_path, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    s->rules_path = io_path_join(dir, "annotators.json");
    s->world_path = io_path_join(dir, "world.json");
    s->prompts_path = prompts_path ? pl_strdup(prompts_path) : io_path_join(dir, "prompts.jsonl");
    s->rules = pl_calloc(1, sizeof *s->rules);
    if (!s->rules_path || !s->world_path || !s->prompts_path || !s->rules)
        return pl_oom(err, "annotators");
    int rc = io_json_load(s->rules_path, &s->rules->doc, err);
    if (rc == PL_OK && !cJSON_IsObject(s->rules->doc))
        rc = doc_errf(s->rules_path, err, "expected a JSON object");
    if (rc == PL_OK)
        rc = read_annotators(s, err);
    if (rc == PL_OK)
        rc = read_classes(s, err);
    if (rc == PL_OK)
        rc = read_preference(s, err);
    if (rc == PL_OK)
        rc = io_json_load(s->world_path, &s->world, err);
    if (rc == PL_OK && !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(s->world, "places")))
        rc = doc_errf(s->world_path, err, "field 'places': expected an array");
    if (rc == PL_OK)
        rc = ds_prompts_init(&s->prompts, s->prompts_path, 0, err);
    return rc;
}

void ds_sim_release(struct ds_sim *s)
{
    struct ds_sim_rules *ru = s->rules;
    if (ru) {
        for (int i = 0; i < ru->n_classes; i++)
            pcre2_code_free(ru->classes[i]);
        pcre2_match_data_free(ru->match);
        pcre2_general_context_free(ru->ctx);
        pl_free(ru->classes);
        pl_free(ru->class_names);
        pl_free(ru->orders);
        cJSON_Delete(ru->doc);
        pl_free(ru);
    }
    pl_free(s->annotators);
    cJSON_Delete(s->world);
    ds_prompts_release(&s->prompts);
    pl_free(s->rules_path);
    pl_free(s->world_path);
    pl_free(s->prompts_path);
    memset(s, 0, sizeof *s);
}

int ds_sim_find(const struct ds_sim *s, const char *id)
{
    for (int i = 0; i < s->n_annotators; i++)
        if (strcmp(s->annotators[i].id, id) == 0)
            return i;
    return -1;
}

/* ---- ranking ---- */

/* The true value of place's attribute in world.json, or NULL. */
static const char *world_value(const cJSON *world, const char *place, const char *attribute)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(world, "places"))
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
        if (cJSON_IsString(name) && strcmp(name->valuestring, place) == 0) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, attribute);
            return cJSON_IsString(v) && *v->valuestring ? v->valuestring : NULL;
        }
    }
    return NULL;
}

/* Position in o of the first entry that text matches. */
static int order_pos(const struct ds_sim_rules *ru, const struct sim_order *o, const char *text,
                     const char *truth, int *pos, struct pl_err *err)
{
    for (int e = 0; e < o->n; e++) {
        int c = o->entry[e];
        bool hit = false;
        if (c == RULE_CORRECT) {
            hit = strstr(text, truth) != NULL;
        } else if (c >= 0) {
            int m =
                pcre2_match(ru->classes[c], (PCRE2_SPTR)text, strlen(text), 0, 0, ru->match, NULL);
            if (m == PCRE2_ERROR_NOMEMORY)
                return pl_oom(err, "pattern matching");
            if (m < 0 && m != PCRE2_ERROR_NOMATCH) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(m, msg, sizeof msg);
                return pl_errf(err, PL_EFORMAT, "class '%s': matching failed: %s",
                               ru->class_names[c], (const char *)msg);
            }
            hit = m >= 0;
        }
        if (hit) {
            *pos = e;
            return PL_OK;
        }
    }
    *pos = o->rest;
    return PL_OK;
}

int ds_sim_rank(const struct ds_sim *s, int p, const char *const *texts, int n, int *rank,
                int *level, struct pl_err *err)
{
    const struct ds_sim_rules *ru = s->rules;
    const struct ds_prompt_rec *pr = &s->prompts.recs[p];
    const struct sim_order *o = NULL;
    for (int i = 0; i < ru->n_orders && pr->kind; i++)
        if (strcmp(ru->orders[i].name, pr->kind) == 0)
            o = &ru->orders[i];
    if (!pr->kind)
        return pl_errf(err, PL_EFORMAT, "%s:%ld: prompt '%s' has no 'kind'", s->prompts_path,
                       pr->line, pr->id);
    if (!o)
        return pl_errf(err, PL_EFORMAT, "%s:%ld: prompt '%s': kind '%s' has no preference in '%s'",
                       s->prompts_path, pr->line, pr->id, pr->kind, s->rules_path);
    const char *truth = NULL;
    if (o->needs_truth || (ru->has_tone && ru->tone.needs_truth)) {
        truth = pr->place && pr->attribute ? world_value(s->world, pr->place, pr->attribute) : NULL;
        if (!truth)
            return pl_errf(err, PL_EFORMAT,
                           "%s:%ld: prompt '%s': no value of place '%s', attribute '%s' in '%s' "
                           "to tell a correct answer by",
                           s->prompts_path, pr->line, pr->id, pr->place ? pr->place : "",
                           pr->attribute ? pr->attribute : "", s->world_path);
    }
    int key[DS_PREF_MAX_TEXTS];
    for (int i = 0; i < n; i++) {
        int cls = 0, tone = 0;
        int rc = order_pos(ru, o, texts[i], truth, &cls, err);
        if (!rc && ru->has_tone)
            rc = order_pos(ru, &ru->tone, texts[i], truth, &tone, err);
        if (rc)
            return rc;
        key[i] = cls * MAX_ENTRIES + tone;
    }
    /* Insertion sort: stable, so equal keys keep their index order. */
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && key[rank[j - 1]] > key[i]; j--)
            rank[j] = rank[j - 1];
        rank[j] = i;
    }
    for (int i = 0; i < n; i++)
        level[i] = i == 0 ? 0 : level[i - 1] + (key[rank[i]] != key[rank[i - 1]]);
    return PL_OK;
}

/* Whether the class pattern named `name` (if annotators.json has one) matches text. */
static int class_matches(const struct ds_sim_rules *ru, const char *name, const char *text,
                         bool *hit, struct pl_err *err)
{
    struct sim_order one = {.n = 1, .rest = 1};
    int pos = 0;
    *hit = false;
    one.entry[0] = class_index(ru, name);
    if (one.entry[0] < 0)
        return PL_OK;
    int rc = order_pos(ru, &one, text, NULL, &pos, err);
    *hit = !rc && pos == 0;
    return rc;
}

int ds_sim_classify(const struct ds_sim *s, const char *kind, const char *place,
                    const char *attribute, const char *text, int *cls, struct pl_err *err)
{
    const struct ds_sim_rules *ru = s->rules;
    const struct sim_order *o = NULL;
    for (int i = 0; i < ru->n_orders && kind; i++)
        if (strcmp(ru->orders[i].name, kind) == 0)
            o = &ru->orders[i];
    if (!o)
        return pl_errf(err, PL_EFORMAT, "kind '%s' has no preference in '%s'", kind ? kind : "",
                       s->rules_path);
    const char *truth = NULL;
    if (o->needs_truth) {
        truth = place && attribute ? world_value(s->world, place, attribute) : NULL;
        if (!truth)
            return pl_errf(err, PL_EFORMAT,
                           "no value of place '%s', attribute '%s' in '%s' to tell a correct "
                           "answer by",
                           place ? place : "", attribute ? attribute : "", s->world_path);
    }
    int pos = 0;
    int rc = order_pos(ru, o, text, truth, &pos, err);
    if (rc)
        return rc;
    int e = o->entry[pos];
    const char *name = e >= 0 ? ru->class_names[e] : NULL;
    bool refusal = false, dont_know = false;
    if (e == RULE_CORRECT) {
        *cls = DS_SIM_CORRECT;
        return PL_OK;
    }
    if (name && strcmp(name, "refusal") == 0)
        refusal = true;
    else if (name && strcmp(name, "dont_know") == 0)
        dont_know = true;
    else if (!(rc = class_matches(ru, "refusal", text, &refusal, err)) && !refusal)
        rc = class_matches(ru, "dont_know", text, &dont_know, err);
    *cls = refusal ? DS_SIM_REFUSAL : dont_know ? DS_SIM_DONT_KNOW : DS_SIM_WRONG;
    return rc;
}

void ds_sim_noise(int *rank, int *level, int n, double noise, struct pl_rng *rng)
{
    int start[DS_PREF_MAX_TEXTS + 1], order[DS_PREF_MAX_TEXTS], out[DS_PREF_MAX_TEXTS];
    int groups = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || level[i] != level[i - 1])
            start[groups++] = i;
    start[groups] = n;
    for (int g = 0; g < groups; g++)
        order[g] = g;
    for (int g = 0; g + 1 < groups; g++) {
        if (pl_rng_uniform(rng) < noise) {
            int t = order[g];
            order[g] = order[g + 1];
            order[g + 1] = t;
        }
    }
    int m = 0;
    for (int g = 0; g < groups; g++) {
        for (int i = start[order[g]]; i < start[order[g] + 1]; i++) {
            out[m] = rank[i];
            level[m++] = g;
        }
    }
    memcpy(rank, out, (size_t)n * sizeof *rank);
}

/* ---- labelling a samples file ---- */

/* One label line (DESIGN.md section 5, plus "kind"). */
static void label_line(struct pl_buf *b, const char *id, const char *annotator, const int *rank,
                       const int *level, const cJSON *completions, const char *prompt,
                       const char *kind, const char *time)
{
    const cJSON *e;
    int n = cJSON_GetArraySize(completions);
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    pl_buf_json(b, id, strlen(id));
    pl_buf_str(b, ",\"annotator\":");
    pl_buf_json(b, annotator, strlen(annotator));
    pl_buf_str(b, ",\"ranking\":[");
    for (int i = 0; i < n; i++)
        pl_buf_printf(b, i ? ",%d" : "%d", rank[i]);
    pl_buf_str(b, "],\"ties\":[");
    bool first = true;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && level[j] == level[i])
            j++;
        if (j - i >= 2) {
            pl_buf_str(b, first ? "[" : ",[");
            for (int t = i; t < j; t++)
                pl_buf_printf(b, t > i ? ",%d" : "%d", rank[t]);
            pl_buf_str(b, "]");
            first = false;
        }
        i = j;
    }
    pl_buf_str(b, "],\"skipped\":false,\"time\":");
    pl_buf_json(b, time, strlen(time));
    pl_buf_str(b, ",\"completions\":[");
    first = true;
    cJSON_ArrayForEach(e, completions)
    {
        pl_buf_str(b, first ? "" : ",");
        pl_buf_json(b, e->valuestring, strlen(e->valuestring));
        first = false;
    }
    pl_buf_str(b, "],\"prompt\":");
    pl_buf_json(b, prompt, strlen(prompt));
    pl_buf_str(b, ",\"kind\":");
    pl_buf_json(b, kind, strlen(kind));
    pl_buf_str(b, "}\n");
}

struct label_run {
    const struct ds_sim *s;
    const struct ds_sim_opts *o;
    FILE *f;
    struct pl_rng *rngs; /* one per chosen annotator */
    long *first;         /* [prompts] line of the samples record that had the prompt, or 0 */
    struct pl_buf b;
    long n_labels;
};

static int label_record(struct label_run *lr, const struct io_jsonl *r, const cJSON *obj,
                        struct pl_err *err)
{
    const struct ds_sim *s = lr->s;
    const char *id = NULL, *prompt = NULL;
    const cJSON *completions = NULL, *e;
    int n = 0;
    int rc = io_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = ds_get_strs(r, obj, "completions", &completions, &n, err);
    if (rc)
        return rc;
    if (n < 1 || n > DS_PREF_MAX_TEXTS)
        return io_jsonl_errf(r, err, "field 'completions': %d completions (1 to %d can be ranked)",
                             n, DS_PREF_MAX_TEXTS);
    int p = ds_prompts_find(&s->prompts, id);
    if (p < 0)
        return io_jsonl_errf(r, err, "field 'id': no prompt '%s' in '%s'", id, s->prompts_path);
    if (lr->first[p])
        return io_jsonl_errf(r, err, "field 'id': duplicate id '%s' (first on line %ld)", id,
                             lr->first[p]);
    lr->first[p] = r->lines.lineno;
    if (strcmp(prompt, s->prompts.recs[p].prompt) != 0)
        return io_jsonl_errf(r, err, "field 'prompt': not the prompt of '%s' in '%s'", id,
                             s->prompts_path);
    const char *texts[DS_PREF_MAX_TEXTS];
    int truth[DS_PREF_MAX_TEXTS], truth_level[DS_PREF_MAX_TEXTS];
    int rank[DS_PREF_MAX_TEXTS], level[DS_PREF_MAX_TEXTS];
    int t = 0;
    cJSON_ArrayForEach(e, completions) texts[t++] = e->valuestring;
    rc = ds_sim_rank(s, p, texts, n, truth, truth_level, err);
    int n_ann = lr->o->truth ? 1 : lr->o->n_annotators;
    for (int j = 0; rc == PL_OK && j < n_ann; j++) {
        memcpy(rank, truth, (size_t)n * sizeof *rank);
        memcpy(level, truth_level, (size_t)n * sizeof *level);
        const char *who = "truth";
        if (!lr->o->truth) {
            const struct ds_sim_annotator *a = &s->annotators[lr->o->annotators[j]];
            ds_sim_noise(rank, level, n, a->noise, &lr->rngs[j]);
            who = a->id;
        }
        label_line(&lr->b, id, who, rank, level, completions, prompt, s->prompts.recs[p].kind,
                   lr->o->time);
        if (lr->b.oom)
            rc = pl_oom(err, "a label");
        else if (fwrite(lr->b.p, 1, lr->b.len, lr->f) != lr->b.len)
            rc = pl_errf(err, PL_EIO, "cannot write the labels: %s", strerror(errno));
        else
            lr->n_labels++;
    }
    return rc;
}

int ds_sim_label_file(const struct ds_sim *s, const char *samples_path, const struct ds_sim_opts *o,
                      FILE *f, long *n_labels, struct pl_err *err)
{
    struct ds_sim_opts all = *o;
    int *every = NULL;
    struct label_run lr = {.s = s, .o = &all, .f = f};
    *n_labels = 0;
    if (!o->annotators && !o->truth) {
        every = pl_malloc((size_t)s->n_annotators * sizeof *every);
        for (int i = 0; every && i < s->n_annotators; i++)
            every[i] = i;
        all.annotators = every;
        all.n_annotators = s->n_annotators;
    }
    lr.rngs = pl_malloc(((size_t)all.n_annotators + 1) * sizeof *lr.rngs);
    lr.first = pl_calloc(s->prompts.n + 1, sizeof *lr.first);
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, samples_path, 0, err);
    if (rc == PL_OK && (!lr.rngs || !lr.first || (!all.annotators && !all.truth)))
        rc = pl_oom(err, "labels");
    /* Annotator i's stream is the seed's (i+1)-th draw: independent of which others label. */
    for (int j = 0; rc == PL_OK && !all.truth && j < all.n_annotators; j++) {
        struct pl_rng base;
        pl_rng_seed(&base, o->seed);
        uint64_t seed = 0;
        for (int i = 0; i <= all.annotators[j]; i++)
            seed = pl_rng_next(&base);
        pl_rng_seed(&lr.rngs[j], seed);
    }
    while (rc == PL_OK) {
        cJSON *obj = NULL;
        rc = io_jsonl_next(&r, &obj, NULL, err);
        if (rc || !obj)
            break;
        rc = label_record(&lr, &r, obj, err);
        cJSON_Delete(obj);
    }
    *n_labels = lr.n_labels;
    io_jsonl_release(&r);
    pl_buf_release(&lr.b);
    pl_free(lr.first);
    pl_free(lr.rngs);
    pl_free(every);
    return rc;
}
