#include "ds.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ---- csv ---- */

/* State shared with libcsv's callbacks, which cannot return errors: the first one is kept in rc
 * and the feeding loop stops on it. */
struct csv_ctx {
    struct ds_csv *t;
    unsigned flags;
    const char **row; /* fields of the row being read */
    size_t row_n, row_cap;
    long row_line; /* line on which that row starts */
    bool in_row;
    int rc;
    struct pl_err *err;
};

static void csv_on_field(void *field, size_t len, void *data)
{
    struct csv_ctx *c = data;
    if (c->rc)
        return;
    const char **row = io_grow(c->row, &c->row_cap, c->row_n + 1, sizeof *c->row);
    if (!row) {
        c->rc = pl_oom(c->err, "CSV fields");
        return;
    }
    c->row = row;
    const char *s = io_arena_strndup(&c->t->arena, field ? field : "", field ? len : 0);
    if (!s) {
        c->rc = pl_oom(c->err, "CSV fields");
        return;
    }
    c->row[c->row_n++] = s;
}

static int csv_take_header(struct csv_ctx *c)
{
    struct ds_csv *t = c->t;
    t->names = pl_malloc(c->row_n * sizeof *t->names);
    if (!t->names)
        return pl_oom(c->err, "CSV header");
    memcpy(t->names, c->row, c->row_n * sizeof *t->names);
    t->ncols = c->row_n;
    return PL_OK;
}

static int csv_take_row(struct csv_ctx *c)
{
    struct ds_csv *t = c->t;
    if (c->row_n != t->ncols) {
        if (c->flags & IO_SKIP_BAD_LINES) {
            t->skipped++;
            return PL_OK;
        }
        return pl_errf(c->err, PL_EFORMAT, "%s:%ld: expected %zu fields, got %zu", t->path,
                       c->row_line, t->ncols, c->row_n);
    }
    const char **cells = io_grow(t->cells, &t->cells_cap, (t->nrows + 1) * t->ncols, sizeof *cells);
    if (!cells)
        return pl_oom(c->err, "CSV rows");
    t->cells = cells;
    long *lines = io_grow(t->lines, &t->lines_cap, t->nrows + 1, sizeof *lines);
    if (!lines)
        return pl_oom(c->err, "CSV rows");
    t->lines = lines;
    memcpy(t->cells + t->nrows * t->ncols, c->row, t->ncols * sizeof *t->cells);
    t->lines[t->nrows++] = c->row_line;
    return PL_OK;
}

static void csv_on_row(int terminator, void *data)
{
    (void)terminator;
    struct csv_ctx *c = data;
    if (c->rc)
        return;
    c->rc = c->t->names ? csv_take_row(c) : csv_take_header(c);
    c->row_n = 0;
    c->in_row = false;
}

/* libcsv's own trimming of unquoted spaces would change data (" answer" in an SFT response). */
static int csv_no_space(unsigned char ch)
{
    (void)ch;
    return 0;
}

/* Map a libcsv failure at line `line` to a plumb error. */
static int csv_fault(struct csv_parser *p, const char *path, long line, struct pl_err *err)
{
    if (csv_error(p) == CSV_EPARSE)
        return pl_errf(err, PL_EFORMAT, "%s:%ld: malformed quoted field", path, line);
    return pl_oom(err, "CSV field");
}

/* Feed the file to libcsv one line at a time, so that each row knows the line it starts on. */
static int csv_feed(struct csv_parser *p, struct io_lines *l, struct csv_ctx *c)
{
    for (;;) {
        const char *text;
        size_t len;
        int rc = io_lines_next(l, &text, &len, c->err);
        if (rc)
            return rc;
        if (!text)
            break;
        rc = io_text_check(l->path, l->lineno, text, len, c->err);
        if (rc)
            return rc;
        if (!c->in_row && !io_blank(text, len)) {
            c->row_line = l->lineno;
            c->in_row = true;
        }
        if (csv_parse(p, text, len, csv_on_field, csv_on_row, c) != len || c->rc)
            return c->rc ? c->rc : csv_fault(p, l->path, l->lineno, c->err);
        if (csv_parse(p, "\n", 1, csv_on_field, csv_on_row, c) != 1 || c->rc)
            return c->rc ? c->rc : csv_fault(p, l->path, l->lineno, c->err);
    }
    if (csv_fini(p, csv_on_field, csv_on_row, c) != 0 && !c->rc)
        return csv_fault(p, l->path, c->row_line, c->err);
    return c->rc;
}

int ds_csv_init(struct ds_csv *t, const char *path, unsigned flags, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    t->path = pl_strdup(path);
    if (!t->path)
        return pl_oom(err, "CSV path");
    struct csv_ctx c = {.t = t, .flags = flags, .err = err};
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return pl_oom(err, "CSV parser");
    csv_set_space_func(&p, csv_no_space);
    csv_set_realloc_func(&p, pl_realloc);
    csv_set_free_func(&p, pl_free);
    struct io_lines l;
    int rc = io_lines_init(&l, path, err);
    if (rc == PL_OK)
        rc = csv_feed(&p, &l, &c);
    if (rc == PL_OK && t->nrows == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no records", path);
    io_lines_release(&l);
    csv_free(&p);
    pl_free(c.row);
    return rc;
}

int ds_csv_column(const struct ds_csv *t, const char *name, size_t *col, struct pl_err *err)
{
    for (size_t i = 0; i < t->ncols; i++) {
        if (strcmp(t->names[i], name) == 0) {
            *col = i;
            return PL_OK;
        }
    }
    return pl_errf(err, PL_EFORMAT, "%s: missing column '%s'", t->path, name);
}

void ds_csv_release(struct ds_csv *t)
{
    pl_free(t->path);
    pl_free(t->names);
    pl_free(t->cells);
    pl_free(t->lines);
    io_arena_release(&t->arena);
    memset(t, 0, sizeof *t);
}

/* ---- record sets ---- */

/* Adds one record from a JSONL object to a set: PL_OK, PL_EFORMAT (a bad record, skippable)
 * or PL_ENOMEM. */
typedef int (*take_fn)(void *set, const struct io_jsonl *r, const cJSON *obj, struct pl_err *err);

/* Read every object of a JSONL file into a set through take; *n is the set's record count. */
static int load_jsonl(const char *path, unsigned flags, take_fn take, void *set, const size_t *n,
                      long *skipped, struct pl_err *err)
{
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, path, flags, err);
    while (rc == PL_OK) {
        cJSON *obj = NULL;
        rc = io_jsonl_next(&r, &obj, NULL, err);
        if (rc || !obj)
            break;
        rc = take(set, &r, obj, err);
        cJSON_Delete(obj);
        if (rc == PL_EFORMAT && (flags & IO_SKIP_BAD_LINES)) {
            (*skipped)++;
            rc = PL_OK;
        }
    }
    *skipped += r.skipped;
    if (rc == PL_OK && *n == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no records", path);
    io_jsonl_release(&r);
    return rc;
}

static const char *arena_dup(struct io_arena *a, const char *s)
{
    return io_arena_strndup(a, s, strlen(s));
}

static int sft_add(struct ds_sft *set, const char *prompt, const char *response, struct pl_err *err)
{
    struct ds_sft_rec *recs = io_grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
    if (!recs)
        return pl_oom(err, "sft records");
    set->recs = recs;
    struct ds_sft_rec *rec = &set->recs[set->n];
    rec->prompt = arena_dup(&set->arena, prompt);
    rec->response = arena_dup(&set->arena, response);
    if (!rec->prompt || !rec->response)
        return pl_oom(err, "sft records");
    set->n++;
    return PL_OK;
}

static int sft_take(void *set, const struct io_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    const char *prompt = NULL, *response = NULL;
    int rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "response", &response, err);
    return rc ? rc : sft_add(set, prompt, response, err);
}

static int sft_from_csv(struct ds_sft *set, const char *path, unsigned flags, struct pl_err *err)
{
    struct ds_csv t;
    size_t cp = 0, cr = 0;
    int rc = ds_csv_init(&t, path, flags, err);
    if (rc == PL_OK)
        rc = ds_csv_column(&t, "prompt", &cp, err);
    if (rc == PL_OK)
        rc = ds_csv_column(&t, "response", &cr, err);
    for (size_t i = 0; rc == PL_OK && i < t.nrows; i++)
        rc = sft_add(set, t.cells[i * t.ncols + cp], t.cells[i * t.ncols + cr], err);
    set->skipped = t.skipped;
    ds_csv_release(&t);
    return rc;
}

int ds_sft_init(struct ds_sft *set, const char *path, unsigned flags, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    if (io_has_suffix(path, ".csv") || io_has_suffix(path, ".csv.gz"))
        return sft_from_csv(set, path, flags, err);
    return load_jsonl(path, flags, sft_take, set, &set->n, &set->skipped, err);
}

void ds_sft_release(struct ds_sft *set)
{
    pl_free(set->recs);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

/* Index of records by a string key: open addressing over slots holding a record's index + 1,
 * kept at most half full. key_of(ctx, i) is record i's key; records with equal keys share a
 * slot, which holds the latest one added. */
typedef const char *(*key_fn)(const void *ctx, size_t i);

/* Slot of key: the one holding it, or the empty one where it would go. */
static size_t table_slot(const size_t *table, size_t mask, key_fn key_of, const void *ctx,
                         const char *key)
{
    size_t h = hash_id(key) & mask;
    while (table[h] && strcmp(key_of(ctx, table[h] - 1), key) != 0)
        h = (h + 1) & mask;
    return h;
}

/* Make room for record n, records 0..n-1 being in the table. */
static int table_fit(size_t **table, size_t *mask, size_t n, key_fn key_of, const void *ctx)
{
    if (*table && 2 * (n + 1) <= *mask + 1)
        return PL_OK;
    size_t cap = *table ? 2 * (*mask + 1) : 128;
    size_t *t = pl_calloc(cap, sizeof *t);
    if (!t)
        return PL_ENOMEM;
    pl_free(*table);
    *table = t;
    *mask = cap - 1;
    for (size_t i = 0; i < n; i++)
        t[table_slot(t, *mask, key_of, ctx, key_of(ctx, i))] = i + 1;
    return PL_OK;
}

static const char *prompt_key(const void *ctx, size_t i)
{
    return ((const struct ds_prompts *)ctx)->recs[i].id;
}

int ds_prompts_find(const struct ds_prompts *set, const char *id)
{
    if (!set->table)
        return -1;
    size_t h = table_slot(set->table, set->mask, prompt_key, set, id);
    return set->table[h] ? (int)set->table[h] - 1 : -1;
}

/* Member `name` when present and not null, else NULL; of another type, a bad record. */
static int opt_str(const struct io_jsonl *r, const cJSON *obj, const char *name, const char **out,
                   struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    return !v || cJSON_IsNull(v) ? PL_OK : io_get_str(r, obj, name, out, err);
}

/* A copy in the arena of s, or of NULL; false when out of memory. */
static bool arena_opt(struct io_arena *a, const char *s, const char **out)
{
    *out = s ? arena_dup(a, s) : NULL;
    return !s || *out;
}

static int prompts_take(void *p, const struct io_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    struct ds_prompts *set = p;
    const char *id = NULL, *prompt = NULL, *kind = NULL, *place = NULL, *attribute = NULL;
    int rc = io_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "kind", &kind, err);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "place", &place, err);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "attribute", &attribute, err);
    if (rc)
        return rc;
    int dup = ds_prompts_find(set, id);
    if (dup >= 0)
        return io_jsonl_errf(r, err, "field 'id': duplicate id '%s' (first on line %ld)", id,
                             set->recs[dup].line);
    if (table_fit(&set->table, &set->mask, set->n, prompt_key, set))
        return pl_oom(err, "prompt ids");
    struct ds_prompt_rec *recs = io_grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
    if (!recs)
        return pl_oom(err, "prompt records");
    set->recs = recs;
    struct ds_prompt_rec *rec = &set->recs[set->n];
    rec->id = arena_dup(&set->arena, id);
    rec->prompt = arena_dup(&set->arena, prompt);
    rec->line = r->lines.lineno;
    if (!rec->id || !rec->prompt || !arena_opt(&set->arena, kind, &rec->kind) ||
        !arena_opt(&set->arena, place, &rec->place) ||
        !arena_opt(&set->arena, attribute, &rec->attribute))
        return pl_oom(err, "prompt records");
    set->table[table_slot(set->table, set->mask, prompt_key, set, rec->id)] = ++set->n;
    return PL_OK;
}

int ds_prompts_init(struct ds_prompts *set, const char *path, unsigned flags, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    return load_jsonl(path, flags, prompts_take, set, &set->n, &set->skipped, err);
}

void ds_prompts_release(struct ds_prompts *set)
{
    pl_free(set->table);
    pl_free(set->recs);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

size_t ds_hh_prompt_len(const char *chosen, const char *rejected)
{
    static const char marker[] = "\n\nAssistant:";
    const size_t mlen = sizeof marker - 1;
    size_t common = 0, best = 0;
    while (chosen[common] && chosen[common] == rejected[common])
        common++;
    for (const char *p = strstr(chosen, marker); p && (size_t)(p - chosen) + mlen <= common;
         p = strstr(p + 1, marker))
        best = (size_t)(p - chosen) + mlen;
    return best;
}

/* ---- preferences ---- */

int ds_get_strs(const struct io_jsonl *r, const cJSON *obj, const char *name, const cJSON **arr,
                int *n, struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name), *e;
    bool ok = cJSON_IsArray(v);
    cJSON_ArrayForEach(e, v) ok = ok && cJSON_IsString(e);
    if (!ok)
        return io_jsonl_errf(r, err, "field '%s': expected an array of strings", name);
    *arr = v;
    *n = cJSON_GetArraySize(v);
    return PL_OK;
}

/* Member `name` when present and not null (a finite number), else dflt. */
static int opt_num(const struct io_jsonl *r, const cJSON *obj, const char *name, double dflt,
                   double *out, struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = dflt;
    return !v || cJSON_IsNull(v) ? PL_OK : io_get_num(r, obj, name, out, err);
}

/* One label of a file being loaded, in file order: what undo and supersession act on. */
struct pref_label {
    const char *key; /* (annotator, id) as one string: "<length of annotator>:<annotator><id>" */
    long prev;       /* the previous label with this key, or -1 */
    long group;      /* its group in the set, or -1 when it made none (skipped, all tied) */
    bool retracted;
};

/* The state of loading one file. */
struct pref_load {
    struct ds_prefs *set;
    const char *path; /* in the set's arena */
    size_t first;     /* the file's first group */
    size_t records;   /* good records */
    struct pref_label *labels;
    size_t n_labels, labels_cap;
    size_t *table, mask; /* key -> latest label with it */
};

static const char *label_key(const void *ctx, size_t i)
{
    return ((const struct pref_load *)ctx)->labels[i].key;
}

/* The label of key that counts now: the latest one not retracted; -1 if none. */
static long label_live(const struct pref_load *ld, const char *key)
{
    if (!ld->table)
        return -1;
    size_t h = table_slot(ld->table, ld->mask, label_key, ld, key);
    long i = (long)ld->table[h] - 1;
    while (i >= 0 && ld->labels[i].retracted)
        i = ld->labels[i].prev;
    return i;
}

/* A new group at the end of the set, with room for n_texts texts and n_pairs pairs, and its
 * record's strings copied; texts and pairs are the caller's to fill. */
static int group_new(struct pref_load *ld, const struct io_jsonl *r, const char *prompt,
                     size_t prompt_len, int n_texts, int n_pairs, const char *id,
                     const char *annotator, const char *kind, struct ds_pref_group **out,
                     struct pl_err *err)
{
    struct ds_prefs *set = ld->set;
    struct ds_pref_group *groups = io_grow(set->groups, &set->cap, set->n + 1, sizeof *groups);
    if (!groups)
        return pl_oom(err, "preference groups");
    set->groups = groups;
    struct ds_pref_group *g = &groups[set->n];
    memset(g, 0, sizeof *g);
    /* One block per group: the pairs, then the text pointers (both 8-byte aligned). */
    g->pairs = pl_malloc((size_t)n_pairs * sizeof *g->pairs + (size_t)n_texts * sizeof *g->texts);
    if (!g->pairs)
        return pl_oom(err, "preference groups");
    set->n++;
    g->texts = (const char **)(g->pairs + n_pairs);
    g->n_texts = n_texts;
    g->n_pairs = n_pairs;
    g->path = ld->path;
    g->line = r->lines.lineno;
    g->prompt = io_arena_strndup(&set->arena, prompt, prompt_len);
    if (!g->prompt || !arena_opt(&set->arena, id, &g->id) ||
        !arena_opt(&set->arena, annotator, &g->annotator) ||
        !arena_opt(&set->arena, kind, &g->kind))
        return pl_oom(err, "preference groups");
    set->n_pairs += n_pairs;
    *out = g;
    return PL_OK;
}

/* {"prompt"?, "chosen", "rejected", "margin"? | "p"?}: one group of two texts and one pair. */
static int pair_take(struct pref_load *ld, const struct io_jsonl *r, const cJSON *obj,
                     struct pl_err *err)
{
    const char *prompt = NULL, *chosen = NULL, *rejected = NULL, *id = NULL, *annotator = NULL,
               *kind = NULL;
    double margin = 0, p = 1;
    int rc = opt_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "chosen", &chosen, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "rejected", &rejected, err);
    if (rc == PL_OK)
        rc = opt_num(r, obj, "margin", 0, &margin, err);
    if (rc == PL_OK)
        rc = opt_num(r, obj, "p", 1, &p, err);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "annotator", &annotator, err);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "kind", &kind, err);
    if (rc)
        return rc;
    if (p < 0 || p > 1)
        return io_jsonl_errf(r, err, "field 'p': %g is not a probability in [0, 1]", p);
    if (margin != 0 && p != 1)
        return io_jsonl_errf(r, err, "field 'p': a soft label takes no margin");
    size_t plen = 0;
    if (!prompt) {
        plen = ds_hh_prompt_len(chosen, rejected);
        if (plen == 0)
            return io_jsonl_errf(r, err, "no shared prompt ending in '\\n\\nAssistant:'");
    }
    if (!chosen[plen])
        return io_jsonl_errf(r, err, "field 'chosen': empty response");
    if (!rejected[plen])
        return io_jsonl_errf(r, err, "field 'rejected': empty response");
    struct ds_pref_group *g;
    rc = group_new(ld, r, prompt ? prompt : chosen, prompt ? strlen(prompt) : plen, 2, 1, id,
                   annotator, kind, &g, err);
    if (rc)
        return rc;
    g->pairs[0] = (struct ds_pref_pair){.better = 0, .worse = 1, .margin = margin, .p = p};
    g->texts[0] = arena_dup(&ld->set->arena, chosen + plen);
    g->texts[1] = arena_dup(&ld->set->arena, rejected + plen);
    return g->texts[0] && g->texts[1] ? PL_OK : pl_oom(err, "preference groups");
}

/* An element that is an integer: true, and *x is it clamped to [-1, k]. */
static bool index_of(const cJSON *e, int k, long *x)
{
    if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble))
        return false;
    *x = e->valuedouble < 0 ? -1 : e->valuedouble >= k ? k : (long)e->valuedouble;
    return true;
}

/* "ranking": a permutation of 0..k-1 into rank[0..k), best first. */
static int read_ranking(const struct io_jsonl *r, const cJSON *obj, int k, int *rank,
                        struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "ranking"), *e;
    if (!cJSON_IsArray(v))
        return io_jsonl_errf(r, err, "field 'ranking': expected an array of integers");
    int pos[DS_PREF_MAX_TEXTS], n = 0;
    for (int i = 0; i < k; i++)
        pos[i] = -1;
    cJSON_ArrayForEach(e, v)
    {
        long x;
        if (!index_of(e, k, &x))
            return io_jsonl_errf(r, err, "field 'ranking': expected an array of integers");
        if (x < 0 || x >= k)
            return io_jsonl_errf(r, err,
                                 "field 'ranking': %g is not an index of the %d completions",
                                 e->valuedouble, k);
        if (pos[x] >= 0)
            return io_jsonl_errf(r, err, "field 'ranking': %ld is ranked twice", x);
        pos[x] = n;
        rank[n++] = (int)x;
    }
    for (int i = 0; i < k; i++)
        if (pos[i] < 0)
            return io_jsonl_errf(r, err,
                                 "field 'ranking': %d is not ranked (expected a permutation of "
                                 "0..%d)",
                                 i, k - 1);
    return PL_OK;
}

static int tie_root(int *parent, int i)
{
    while (parent[i] != i)
        i = parent[i] = parent[parent[i]];
    return i;
}

/* "ties" (optional) as a class per ranking position: cls[p] is shared by tied completions. Tied
 * completions must be ranked next to each other, or the ranking would contradict the tie. */
static int read_ties(const struct io_jsonl *r, const cJSON *obj, int k, const int *rank, int *cls,
                     struct pl_err *err)
{
    static const char shape[] = "field 'ties': expected an array of arrays of indices";
    int parent[DS_PREF_MAX_TEXTS];
    for (int i = 0; i < k; i++)
        parent[i] = i;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "ties"), *tie, *e;
    if (v && !cJSON_IsNull(v) && !cJSON_IsArray(v))
        return io_jsonl_errf(r, err, "%s", shape);
    cJSON_ArrayForEach(tie, v)
    {
        if (!cJSON_IsArray(tie))
            return io_jsonl_errf(r, err, "%s", shape);
        long first = -1, x;
        cJSON_ArrayForEach(e, tie)
        {
            if (!index_of(e, k, &x))
                return io_jsonl_errf(r, err, "%s", shape);
            if (x < 0 || x >= k)
                return io_jsonl_errf(r, err,
                                     "field 'ties': %g is not one of the %d ranked "
                                     "completions",
                                     e->valuedouble, k);
            if (first < 0)
                first = x;
            parent[tie_root(parent, (int)x)] = tie_root(parent, (int)first);
        }
        if (cJSON_GetArraySize(tie) < 2)
            return io_jsonl_errf(r, err, "field 'ties': a tie names at least two completions");
    }
    bool closed[DS_PREF_MAX_TEXTS] = {false};
    for (int p = 0; p < k; p++) {
        cls[p] = tie_root(parent, rank[p]);
        if (p == 0 || cls[p] == cls[p - 1])
            continue;
        closed[cls[p - 1]] = true;
        if (closed[cls[p]]) {
            int q = 0;
            while (cls[q] != cls[p])
                q++;
            return io_jsonl_errf(r, err,
                                 "field 'ties': %d and %d are tied but %d is ranked "
                                 "between them",
                                 rank[q], rank[p], rank[p - 1]);
        }
    }
    return PL_OK;
}

/* Record a label of (annotator, id) that made group g (-1 for none). */
static int label_push(struct pref_load *ld, const char *key, long g, struct pl_err *err)
{
    struct pref_label *labels =
        io_grow(ld->labels, &ld->labels_cap, ld->n_labels + 1, sizeof *labels);
    if (!labels)
        return pl_oom(err, "labels");
    ld->labels = labels;
    if (table_fit(&ld->table, &ld->mask, ld->n_labels, label_key, ld))
        return pl_oom(err, "labels");
    size_t h = table_slot(ld->table, ld->mask, label_key, ld, key);
    labels[ld->n_labels] = (struct pref_label){
        .key = key, .prev = (long)ld->table[h] - 1, .group = g, .retracted = false};
    ld->table[h] = ++ld->n_labels;
    return PL_OK;
}

/* (annotator, id) as one key in the arena; NULL when out of memory. */
static const char *key_new(struct io_arena *a, const char *annotator, const char *id)
{
    struct pl_buf b = {0};
    pl_buf_printf(&b, "%zu:%s%s", strlen(annotator), annotator, id);
    const char *key = b.oom ? NULL : arena_dup(a, b.p);
    pl_buf_release(&b);
    return key;
}

/* A label or an undo (DESIGN.md section 5). */
static int label_take(struct pref_load *ld, const struct io_jsonl *r, const cJSON *obj,
                      struct pl_err *err)
{
    const char *id = NULL, *annotator = NULL;
    int rc = io_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "annotator", &annotator, err);
    if (rc)
        return rc;
    const char *key = key_new(&ld->set->arena, annotator, id);
    if (!key)
        return pl_oom(err, "labels");
    const cJSON *undo = cJSON_GetObjectItemCaseSensitive(obj, "undo");
    if (undo) {
        if (!cJSON_IsTrue(undo))
            return io_jsonl_errf(r, err, "field 'undo': expected true");
        long live = label_live(ld, key);
        if (live < 0)
            return io_jsonl_errf(
                r, err, "field 'undo': annotator '%s' has no earlier label of '%s' to undo",
                annotator, id);
        ld->labels[live].retracted = true;
        return PL_OK;
    }
    const cJSON *skipped = cJSON_GetObjectItemCaseSensitive(obj, "skipped");
    if (skipped && !cJSON_IsBool(skipped) && !cJSON_IsNull(skipped))
        return io_jsonl_errf(r, err, "field 'skipped': expected true or false");
    if (cJSON_IsTrue(skipped))
        return label_push(ld, key, -1, err);

    const char *prompt = NULL, *kind = NULL;
    const cJSON *texts = NULL, *e;
    int k = 0, rank[DS_PREF_MAX_TEXTS], cls[DS_PREF_MAX_TEXTS];
    rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = ds_get_strs(r, obj, "completions", &texts, &k, err);
    if (rc == PL_OK && (k < 1 || k > DS_PREF_MAX_TEXTS))
        rc = io_jsonl_errf(r, err, "field 'completions': %d completions (1 to %d can be ranked)", k,
                           DS_PREF_MAX_TEXTS);
    if (rc == PL_OK)
        rc = opt_str(r, obj, "kind", &kind, err);
    if (rc == PL_OK)
        rc = read_ranking(r, obj, k, rank, err);
    if (rc == PL_OK)
        rc = read_ties(r, obj, k, rank, cls, err);
    if (rc)
        return rc;
    int n_pairs = 0;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            n_pairs += cls[i] != cls[j];
    if (n_pairs == 0)
        return label_push(ld, key, -1, err);
    struct ds_pref_group *g;
    rc = group_new(ld, r, prompt, strlen(prompt), k, n_pairs, id, annotator, kind, &g, err);
    if (rc)
        return rc;
    int n = 0, t = 0;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (cls[i] != cls[j])
                g->pairs[n++] = (struct ds_pref_pair){.better = rank[i], .worse = rank[j], .p = 1};
    cJSON_ArrayForEach(e, texts)
    {
        if (!(g->texts[t++] = arena_dup(&ld->set->arena, e->valuestring)))
            return pl_oom(err, "preference groups");
    }
    return label_push(ld, key, (long)(g - ld->set->groups), err);
}

static int pref_take(void *p, const struct io_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    struct pref_load *ld = p;
    int rc;
#define HAS(name) cJSON_GetObjectItemCaseSensitive(obj, name)
    if (HAS("ranking") || HAS("skipped") || HAS("undo"))
        rc = label_take(ld, r, obj, err);
    else if (HAS("chosen") || HAS("rejected"))
        rc = pair_take(ld, r, obj, err);
    else
        rc = io_jsonl_errf(r, err,
                           "neither a label (no field 'ranking') nor a pair (no field "
                           "'chosen')");
#undef HAS
    ld->records += rc == PL_OK;
    return rc;
}

/* Keep, of the file's labels, each key's live one; drop the groups of the others. */
static void labels_resolve(struct pref_load *ld)
{
    struct ds_prefs *set = ld->set;
    for (size_t i = 0; i < ld->n_labels; i++) {
        const struct pref_label *l = &ld->labels[i];
        bool live = label_live(ld, l->key) == (long)i;
        if (live && l->group >= 0)
            continue;
        set->ignored++;
        if (l->group >= 0) {
            struct ds_pref_group *g = &set->groups[l->group];
            set->n_pairs -= g->n_pairs;
            pl_free(g->pairs);
            g->pairs = NULL;
        }
    }
    size_t n = ld->first;
    for (size_t i = ld->first; i < set->n; i++)
        if (set->groups[i].pairs)
            set->groups[n++] = set->groups[i];
    set->n = n;
}

int ds_prefs_load(struct ds_prefs *set, const char *path, unsigned flags, struct pl_err *err)
{
    struct pref_load ld = {.set = set, .first = set->n, .path = arena_dup(&set->arena, path)};
    int rc = ld.path ? load_jsonl(path, flags, pref_take, &ld, &ld.records, &set->skipped, err)
                     : pl_oom(err, "file name");
    if (rc == PL_OK)
        labels_resolve(&ld);
    pl_free(ld.labels);
    pl_free(ld.table);
    return rc;
}

void ds_prefs_release(struct ds_prefs *set)
{
    for (size_t i = 0; i < set->n; i++)
        pl_free(set->groups[i].pairs);
    pl_free(set->groups);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

int ds_text_init(struct ds_text *t, const char *path, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    int rc = io_read_file(path, &t->data, &t->len, err);
    if (rc == PL_OK && t->len == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: empty file", path);
    if (rc == PL_OK)
        rc = io_text_check(path, 1, t->data, t->len, err);
    return rc;
}

void ds_text_release(struct ds_text *t)
{
    pl_free(t->data);
    memset(t, 0, sizeof *t);
}
