#define PCRE2_CODE_UNIT_WIDTH 8
#include "constitution.h"

#include <pcre2.h>
#include <stdarg.h>
#include <string.h>

static const char *const kind_names[] = {
    [DS_RULE_FORBID] = "forbid_regex",
    [DS_RULE_REQUIRE] = "require_regex",
    [DS_RULE_MAX_WORDS] = "max_words",
    [DS_RULE_REFUSE_IF] = "refuse_if_regex",
};
#define N_KINDS ((int)(sizeof kind_names / sizeof *kind_names))

/* Where an error is: the file, then the principle by name once it has one, else by number. */
struct where {
    const char *path;
    const char *name;
    int index;
};

__attribute__((format(printf, 3, 4))) static int bad(const struct where *w, struct pl_err *err,
                                                     const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (w->name)
        return pl_errf(err, PL_EFORMAT, "%s: principle '%s': %s", w->path, w->name, what);
    if (w->index >= 0)
        return pl_errf(err, PL_EFORMAT, "%s: principle %d: %s", w->path, w->index + 1, what);
    return pl_errf(err, PL_EFORMAT, "%s: %s", w->path, what);
}

/* Member name of obj as a non-empty string copied into the arena, in *out. */
static int get_text(struct ds_constitution *c, const struct where *w, const cJSON *obj,
                    const char *name, const char **out, struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return bad(w, err, "field '%s': expected a non-empty string", name);
    *out = io_arena_strndup(&c->strings, v->valuestring, strlen(v->valuestring));
    return *out ? PL_OK : pl_oom(err, "constitution");
}

static int compile(struct ds_constitution *c, const struct where *w, int rule, const char *field,
                   const char *src, void **out, struct pl_err *err)
{
    pcre2_compile_context *cc = pcre2_compile_context_create(c->gctx);
    if (!cc)
        return pl_oom(err, "constitution patterns");
    int code;
    PCRE2_SIZE at;
    /* MATCH_INVALID_UTF: model output may hold any bytes; invalid sequences match nothing. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, cc);
    pcre2_compile_context_free(cc);
    if (!re && code == PCRE2_ERROR_HEAP_FAILED)
        return pl_oom(err, "constitution patterns");
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return bad(w, err, "rule %d: field '%s': cannot compile the pattern: %s (at %zu)", rule,
                   field, (const char *)msg, (size_t)at);
    }
    *out = re;
    return PL_OK;
}

static int get_pattern(struct ds_constitution *c, const struct where *w, int rule, const cJSON *obj,
                       const char *field, const char **src, void **re, struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!cJSON_IsString(v))
        return bad(w, err, "rule %d: field '%s': expected a PCRE2 pattern", rule, field);
    *src = io_arena_strndup(&c->strings, v->valuestring, strlen(v->valuestring));
    if (!*src)
        return pl_oom(err, "constitution");
    return compile(c, w, rule, field, *src, re, err);
}

/* Rule number `number` (1-based) of the principle, into r. */
static int read_rule(struct ds_constitution *c, const struct where *w, const cJSON *obj, int number,
                     struct ds_rule *r, struct pl_err *err)
{
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(obj, "kind");
    if (!cJSON_IsObject(obj))
        return bad(w, err, "rule %d: expected an object", number);
    r->kind = 0;
    for (int k = 1; k < N_KINDS && cJSON_IsString(kind); k++)
        if (strcmp(kind->valuestring, kind_names[k]) == 0)
            r->kind = k;
    if (!r->kind)
        return bad(w, err,
                   "rule %d: field 'kind': expected \"forbid_regex\", \"require_regex\", "
                   "\"max_words\" or \"refuse_if_regex\"",
                   number);
    char label[512];
    snprintf(label, sizeof label, "%s/%s:%d", w->name, kind_names[r->kind], number);
    r->label = io_arena_strndup(&c->strings, label, strlen(label));
    if (!r->label)
        return pl_oom(err, "constitution");
    const cJSON *said = cJSON_GetObjectItemCaseSensitive(obj, "critique");
    if (said && (!cJSON_IsString(said) || !said->valuestring[0]))
        return bad(w, err, "rule %d: field 'critique': expected a non-empty string", number);
    if (said && !(r->critique = io_arena_strndup(&c->strings, said->valuestring,
                                                 strlen(said->valuestring))))
        return pl_oom(err, "constitution");
    if (r->kind == DS_RULE_MAX_WORDS) {
        const cJSON *max = cJSON_GetObjectItemCaseSensitive(obj, "max");
        if (!cJSON_IsNumber(max) || max->valuedouble < 0 || max->valuedouble > 1e9 ||
            max->valuedouble != (double)(long)max->valuedouble)
            return bad(w, err, "rule %d: field 'max': expected a whole number of words", number);
        r->max_words = (long)max->valuedouble;
        return PL_OK;
    }
    int rc = get_pattern(c, w, number, obj, "pattern", &r->pattern, &r->re, err);
    if (!rc && r->kind == DS_RULE_REFUSE_IF)
        rc = get_pattern(c, w, number, obj, "refusal", &r->refusal, &r->re_refusal, err);
    return rc;
}

static int read_principle(struct ds_constitution *c, int i, const cJSON *obj, const char *path,
                          struct pl_err *err)
{
    struct ds_principle *p = &c->principles[i];
    struct where w = {path, NULL, i};
    if (!cJSON_IsObject(obj))
        return bad(&w, err, "expected an object");
    int rc = get_text(c, &w, obj, "name", &p->name, err);
    if (rc)
        return rc;
    w.name = p->name;
    for (int j = 0; j < i; j++)
        if (strcmp(c->principles[j].name, p->name) == 0)
            return bad(&w, err, "field 'name': the same name as principle %d", j + 1);
    rc = get_text(c, &w, obj, "critique_request", &p->critique_request, err);
    if (!rc)
        rc = get_text(c, &w, obj, "revision_request", &p->revision_request, err);
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(obj, "rules"), *r;
    if (!rc && rules && !cJSON_IsArray(rules))
        rc = bad(&w, err, "field 'rules': expected an array of rules");
    p->first_rule = c->n_rules;
    int number = 0;
    cJSON_ArrayForEach(r, rules)
    {
        if (rc)
            break;
        struct ds_rule *rule = &c->rules[c->n_rules];
        rule->principle = i;
        rc = read_rule(c, &w, r, ++number, rule, err);
        c->n_rules++; /* counted even when half read, so that release frees what it compiled */
    }
    p->n_rules = c->n_rules - p->first_rule;
    return rc;
}

static int read_doc(struct ds_constitution *c, const cJSON *doc, const char *path,
                    struct pl_err *err)
{
    const struct where top = {path, NULL, -1};
    const cJSON *principles = cJSON_GetObjectItemCaseSensitive(doc, "principles"), *p;
    if (!cJSON_IsArray(principles) || cJSON_GetArraySize(principles) == 0)
        return bad(&top, err, "field 'principles': expected a non-empty array");
    int n = cJSON_GetArraySize(principles), n_rules = 0;
    cJSON_ArrayForEach(p, principles)
    {
        n_rules += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "rules"));
    }
    c->principles = pl_calloc((size_t)n, sizeof *c->principles);
    c->rules = pl_calloc((size_t)n_rules + 1, sizeof *c->rules);
    c->gctx = pcre2_general_context_create(pl_malloc_hook, pl_free_hook, NULL);
    c->match = c->gctx ? pcre2_match_data_create(1, c->gctx) : NULL;
    if (!c->principles || !c->rules || !c->match)
        return pl_oom(err, "constitution");
    int i = 0, rc = PL_OK;
    cJSON_ArrayForEach(p, principles)
    {
        if (rc)
            break;
        c->n_principles = i + 1;
        rc = read_principle(c, i++, p, path, err);
    }
    return rc;
}

int ds_constitution_load(struct ds_constitution *c, const char *path, struct pl_err *err)
{
    memset(c, 0, sizeof *c);
    cJSON *doc = NULL;
    int rc = io_json_load(path, &doc, err);
    if (!rc)
        rc = read_doc(c, doc, path, err);
    cJSON_Delete(doc);
    if (rc)
        ds_constitution_release(c);
    return rc;
}

void ds_constitution_release(struct ds_constitution *c)
{
    for (int r = 0; c->rules && r < c->n_rules; r++) {
        pcre2_code_free(c->rules[r].re);
        pcre2_code_free(c->rules[r].re_refusal);
    }
    pcre2_match_data_free(c->match);
    pcre2_general_context_free(c->gctx);
    pl_free(c->rules);
    pl_free(c->principles);
    io_arena_release(&c->strings);
    memset(c, 0, sizeof *c);
}

int ds_constitution_find(const struct ds_constitution *c, const char *name)
{
    for (int i = 0; i < c->n_principles; i++)
        if (strcmp(c->principles[i].name, name) == 0)
            return i;
    return -1;
}

static int matches(const struct ds_constitution *c, const struct ds_rule *r, void *re,
                   const char *text, bool *hit, struct pl_err *err)
{
    int m = pcre2_match(re, (PCRE2_SPTR)text, strlen(text), 0, 0, c->match, NULL);
    if (m == PCRE2_ERROR_NOMEMORY || m == PCRE2_ERROR_HEAP_FAILED)
        return pl_oom(err, "rule matching");
    if (m < 0 && m != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(m, msg, sizeof msg);
        return pl_errf(err, PL_EINVAL, "rule '%s': matching failed: %s", r->label,
                       (const char *)msg);
    }
    *hit = m >= 0;
    return PL_OK;
}

static long count_words(const char *s)
{
    long n = 0;
    for (bool in = false; *s; s++) {
        bool space = strchr(" \t\r\n\f\v", *s) != NULL;
        n += !space && !in;
        in = !space;
    }
    return n;
}

static int rule_broken(const struct ds_constitution *c, const struct ds_rule *r, const char *prompt,
                       const char *response, bool *out, struct pl_err *err)
{
    bool hit = false;
    int rc = PL_OK;
    switch (r->kind) {
    case DS_RULE_FORBID:
        rc = matches(c, r, r->re, response, &hit, err);
        *out = hit;
        break;
    case DS_RULE_REQUIRE:
        rc = matches(c, r, r->re, response, &hit, err);
        *out = !hit;
        break;
    case DS_RULE_MAX_WORDS:
        *out = count_words(response) > r->max_words;
        break;
    default:
        PL_ASSERT(r->kind == DS_RULE_REFUSE_IF);
        rc = matches(c, r, r->re, prompt, &hit, err);
        *out = false;
        if (!rc && hit) {
            rc = matches(c, r, r->re_refusal, response, &hit, err);
            *out = !hit;
        }
    }
    return rc;
}

int ds_constitution_check(const struct ds_constitution *c, const char *prompt, const char *response,
                          bool *broken, int *n_broken, struct pl_err *err)
{
    *n_broken = 0;
    for (int r = 0; r < c->n_rules; r++) {
        bool b;
        int rc = rule_broken(c, &c->rules[r], prompt, response, &b, err);
        if (rc)
            return rc;
        if (broken)
            broken[r] = b;
        *n_broken += b;
    }
    return PL_OK;
}

void ds_strip(const char *s, size_t *from, size_t *to)
{
    while (*from < *to && strchr(" \t\r\n", s[*from]))
        (*from)++;
    while (*to > *from && strchr(" \t\r\n", s[*to - 1]))
        (*to)--;
}

static void add_stripped(struct pl_buf *b, const char *s)
{
    size_t from = 0, to = strlen(s);
    ds_strip(s, &from, &to);
    pl_buf_add(b, s + from, to - from);
}

void ds_critique_text(struct pl_buf *b, const char *prompt, const char *response,
                      const char *critique_request, const char *critique,
                      const char *revision_request)
{
    pl_buf_str(b, prompt);
    pl_buf_str(b, " ");
    add_stripped(b, response);
    pl_buf_str(b, "\nCritique Request: ");
    pl_buf_str(b, critique_request);
    pl_buf_str(b, "\nCritique:");
    if (!critique)
        return;
    pl_buf_str(b, " ");
    add_stripped(b, critique);
    pl_buf_str(b, "\nRevision Request: ");
    pl_buf_str(b, revision_request);
    pl_buf_str(b, "\nRevision:");
}
