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

/* Slot of id in the set's table: the one holding it, or the empty one where it would go. */
static size_t prompts_slot(const struct ds_prompts *set, const char *id)
{
    size_t h = hash_id(id) & set->mask;
    while (set->table[h] && strcmp(set->recs[set->table[h] - 1].id, id) != 0)
        h = (h + 1) & set->mask;
    return h;
}

int ds_prompts_find(const struct ds_prompts *set, const char *id)
{
    if (!set->table)
        return -1;
    size_t h = prompts_slot(set, id);
    return set->table[h] ? (int)set->table[h] - 1 : -1;
}

/* Keep the id table under half full for one more record. */
static int prompts_table_fit(struct ds_prompts *set)
{
    if (set->table && 2 * (set->n + 1) <= set->mask + 1)
        return PL_OK;
    size_t cap = set->table ? 2 * (set->mask + 1) : 128;
    size_t *table = pl_calloc(cap, sizeof *table);
    if (!table)
        return PL_ENOMEM;
    pl_free(set->table);
    set->table = table;
    set->mask = cap - 1;
    for (size_t i = 0; i < set->n; i++)
        set->table[prompts_slot(set, set->recs[i].id)] = i + 1;
    return PL_OK;
}

static int prompts_take(void *p, const struct io_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    struct ds_prompts *set = p;
    const char *id = NULL, *prompt = NULL;
    int rc = io_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc)
        return rc;
    int dup = ds_prompts_find(set, id);
    if (dup >= 0)
        return io_jsonl_errf(r, err, "field 'id': duplicate id '%s' (first on line %ld)", id,
                             set->recs[dup].line);
    if (prompts_table_fit(set))
        return pl_oom(err, "prompt ids");
    struct ds_prompt_rec *recs = io_grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
    if (!recs)
        return pl_oom(err, "prompt records");
    set->recs = recs;
    struct ds_prompt_rec *rec = &set->recs[set->n];
    rec->id = arena_dup(&set->arena, id);
    rec->prompt = arena_dup(&set->arena, prompt);
    rec->line = r->lines.lineno;
    if (!rec->id || !rec->prompt)
        return pl_oom(err, "prompt records");
    set->table[prompts_slot(set, rec->id)] = ++set->n;
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

/* "margin" is optional; JSON null counts as absent. */
static int pair_margin(const struct io_jsonl *r, const cJSON *obj, double *margin,
                       struct pl_err *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "margin");
    *margin = 0;
    if (!m || cJSON_IsNull(m))
        return PL_OK;
    return io_get_num(r, obj, "margin", margin, err);
}

static int pairs_take(void *p, const struct io_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    struct ds_pairs *set = p;
    const char *prompt = NULL, *chosen = NULL, *rejected = NULL;
    size_t plen = 0;
    double margin = 0;
    bool hh = !cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    int rc = hh ? PL_OK : io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "chosen", &chosen, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "rejected", &rejected, err);
    if (rc == PL_OK)
        rc = pair_margin(r, obj, &margin, err);
    if (rc)
        return rc;
    if (hh) {
        plen = ds_hh_prompt_len(chosen, rejected);
        if (plen == 0)
            return io_jsonl_errf(r, err, "no shared prompt ending in '\\n\\nAssistant:'");
    }
    struct ds_pair_rec *recs = io_grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
    if (!recs)
        return pl_oom(err, "pair records");
    set->recs = recs;
    struct ds_pair_rec *rec = &set->recs[set->n];
    rec->margin = margin;
    rec->prompt = hh ? io_arena_strndup(&set->arena, chosen, plen) : arena_dup(&set->arena, prompt);
    rec->chosen = arena_dup(&set->arena, chosen + plen);
    rec->rejected = arena_dup(&set->arena, rejected + plen);
    if (!rec->prompt || !rec->chosen || !rec->rejected)
        return pl_oom(err, "pair records");
    set->n++;
    return PL_OK;
}

int ds_pairs_init(struct ds_pairs *set, const char *path, unsigned flags, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    return load_jsonl(path, flags, pairs_take, set, &set->n, &set->skipped, err);
}

void ds_pairs_release(struct ds_pairs *set)
{
    pl_free(set->recs);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

int ds_text_init(struct ds_text *t, const char *path, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    int rc = io_read_file(path, &t->data, &t->len, err);
    if (rc == PL_OK && t->len == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: empty file", path);
    return rc;
}

void ds_text_release(struct ds_text *t)
{
    pl_free(t->data);
    memset(t, 0, sizeof *t);
}
