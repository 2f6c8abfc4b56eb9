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

#define DS_CHUNK ((size_t)64 * 1024)
#define DS_BLOCK ((size_t)64 * 1024)

/* ---- arena ---- */

struct ds_block {
    struct ds_block *next;
    size_t cap, used;
    char data[];
};

char *ds_arena_strndup(struct ds_arena *a, const char *s, size_t n)
{
    struct ds_block *b = a->head;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > DS_BLOCK ? n + 1 : DS_BLOCK;
        b = pl_malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = a->head;
        b->cap = cap;
        b->used = 0;
        a->head = b;
    }
    char *d = b->data + b->used;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    b->used += n + 1;
    return d;
}

void ds_arena_release(struct ds_arena *a)
{
    while (a->head) {
        struct ds_block *next = a->head->next;
        pl_free(a->head);
        a->head = next;
    }
}

/* Array growth by doubling: the (possibly moved) array with room for `need` items, or NULL
 * (the old array untouched) when out of memory. */
static void *grow(void *items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return items;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    if (n > SIZE_MAX / size)
        return NULL;
    void *p = pl_realloc(items, n * size);
    if (p)
        *cap = n;
    return p;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* ---- reading through zlib ---- */

static int open_gz(const char *path, gzFile *gz, struct pl_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return pl_errf(err, e == ENOENT ? PL_ENOTFOUND : PL_EIO, "cannot open '%s': %s", path,
                       strerror(e));
    }
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        close(fd);
        return pl_oom(err, "gzip reader");
    }
    return PL_OK;
}

/* gzread into buf[0..cap), *got bytes (0 at end). zlib reports a gzip stream that stops short
 * only through gzerror after the last read, so that is checked here too. */
static int read_chunk(gzFile gz, const char *path, char *buf, size_t cap, size_t *got,
                      struct pl_err *err)
{
    int errnum = Z_OK;
    int n = gzread(gz, buf, (unsigned)(cap > INT_MAX ? INT_MAX : cap));
    if (n < 0)
        return pl_errf(err, PL_EIO, "%s: read error: %s", path, gzerror(gz, &errnum));
    if (n == 0) {
        gzerror(gz, &errnum);
        if (errnum == Z_BUF_ERROR)
            return pl_errf(err, PL_EIO, "%s: unexpected end of compressed data", path);
    }
    *got = (size_t)n;
    return PL_OK;
}

/* The whole file in a NUL-terminated pl_malloc buffer. */
static int read_all(const char *path, char **data, size_t *len, struct pl_err *err)
{
    gzFile gz = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, got = 0;
    int rc = open_gz(path, &gz, err);
    while (rc == PL_OK) {
        char *p = grow(buf, &cap, n + DS_CHUNK + 1, 1);
        if (!p) {
            rc = pl_oom(err, "file contents");
            break;
        }
        buf = p;
        rc = read_chunk(gz, path, buf + n, cap - n - 1, &got, err);
        if (rc || got == 0)
            break;
        n += got;
    }
    if (gz)
        gzclose(gz);
    if (rc) {
        pl_free(buf);
        return rc;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return PL_OK;
}

/* ---- lines ---- */

int ds_lines_init(struct ds_lines *l, const char *path, struct pl_err *err)
{
    memset(l, 0, sizeof *l);
    l->path = pl_strdup(path);
    l->buf = pl_malloc(DS_CHUNK);
    if (!l->path || !l->buf)
        return pl_oom(err, "line reader");
    gzFile gz = NULL;
    int rc = open_gz(path, &gz, err);
    l->gz = gz;
    return rc;
}

/* Append s[0..n) to the current line, which holds `have` bytes. */
static int line_append(struct ds_lines *l, size_t have, const char *s, size_t n, struct pl_err *err)
{
    char *p = grow(l->line, &l->line_cap, have + n + 1, 1);
    if (!p)
        return pl_oom(err, "line buffer");
    l->line = p;
    memcpy(l->line + have, s, n);
    l->line[have + n] = '\0';
    return PL_OK;
}

int ds_lines_next(struct ds_lines *l, const char **line, size_t *len, struct pl_err *err)
{
    size_t n = 0;
    bool newline = false;
    *line = NULL;
    *len = 0;
    while (!newline) {
        if (l->buf_pos == l->buf_len) {
            if (l->eof)
                break;
            int rc = read_chunk(l->gz, l->path, l->buf, DS_CHUNK, &l->buf_len, err);
            if (rc)
                return rc;
            l->buf_pos = 0;
            l->eof = l->buf_len == 0;
            continue;
        }
        const char *start = l->buf + l->buf_pos;
        size_t avail = l->buf_len - l->buf_pos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        int rc = line_append(l, n, start, take, err);
        if (rc)
            return rc;
        n += take;
        l->buf_pos += take + (nl != NULL);
        newline = nl != NULL;
    }
    if (!newline && n == 0)
        return PL_OK;
    if (l->lineno == 0 && n >= 3 && memcmp(l->line, "\xef\xbb\xbf", 3) == 0) {
        n -= 3;
        memmove(l->line, l->line + 3, n + 1);
    }
    l->lineno++;
    *line = l->line;
    *len = n;
    return PL_OK;
}

void ds_lines_release(struct ds_lines *l)
{
    if (l->gz)
        gzclose(l->gz);
    pl_free(l->path);
    pl_free(l->buf);
    pl_free(l->line);
    memset(l, 0, sizeof *l);
}

/* ---- cJSON through pl_malloc ---- */

/* Set when cJSON's allocator fails, so that a NULL from cJSON_Parse can be told apart from bad
 * JSON. Per thread, because cJSON's hooks are global. */
static _Thread_local bool json_oom;
static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;

static void *json_malloc(size_t n)
{
    void *p = pl_malloc(n);
    if (!p)
        json_oom = true;
    return p;
}

static void json_hooks_install(void)
{
    cJSON_Hooks hooks = {json_malloc, pl_free};
    cJSON_InitHooks(&hooks);
}

/* cJSON_ParseWithOpts on a NUL-terminated text that must hold one value and nothing more:
 * PL_OK, PL_EFORMAT (bad JSON, *end at the fault) or PL_ENOMEM. */
static int json_parse(const char *text, cJSON **out, const char **end)
{
    pthread_once(&json_hooks_once, json_hooks_install);
    json_oom = false;
    *out = cJSON_ParseWithOpts(text, end, 1);
    if (*out)
        return PL_OK;
    return json_oom ? PL_ENOMEM : PL_EFORMAT;
}

/* ---- jsonl ---- */

int ds_jsonl_init(struct ds_jsonl *r, const char *path, unsigned flags, struct pl_err *err)
{
    memset(r, 0, sizeof *r);
    r->flags = flags;
    return ds_lines_init(&r->lines, path, err);
}

/* One line as a JSON object: PL_OK, PL_EFORMAT or PL_ENOMEM. */
static int parse_object(const char *text, size_t len, cJSON **obj)
{
    const char *end = NULL;
    *obj = NULL;
    /* cJSON stops at a NUL, which would silently drop the rest of the line. */
    if (memchr(text, '\0', len))
        return PL_EFORMAT;
    int rc = json_parse(text, obj, &end);
    if (rc == PL_OK && !cJSON_IsObject(*obj)) {
        cJSON_Delete(*obj);
        *obj = NULL;
        rc = PL_EFORMAT;
    }
    return rc;
}

int ds_jsonl_next(struct ds_jsonl *r, cJSON **obj, long *line, struct pl_err *err)
{
    *obj = NULL;
    for (;;) {
        const char *text;
        size_t len;
        int rc = ds_lines_next(&r->lines, &text, &len, err);
        if (rc)
            return rc;
        if (!text)
            break;
        if (is_blank(text, len))
            continue;
        rc = parse_object(text, len, obj);
        if (rc == PL_ENOMEM)
            return pl_oom(err, "JSON object");
        if (rc == PL_OK) {
            r->records++;
            if (line)
                *line = r->lines.lineno;
            return PL_OK;
        }
        if (!(r->flags & DS_SKIP_BAD_LINES))
            return ds_jsonl_errf(r, err, "not a JSON object");
        r->skipped++;
    }
    if (r->records == 0)
        return pl_errf(err, PL_EFORMAT, "%s: no records", r->lines.path);
    return PL_OK;
}

void ds_jsonl_release(struct ds_jsonl *r)
{
    ds_lines_release(&r->lines);
    memset(r, 0, sizeof *r);
}

int ds_jsonl_errf(const struct ds_jsonl *r, struct pl_err *err, const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pl_errf(err, PL_EFORMAT, "%s:%ld: %s", r->lines.path, r->lines.lineno, msg);
}

static int field_error(const struct ds_jsonl *r, const char *name, const char *what,
                       struct pl_err *err)
{
    return ds_jsonl_errf(r, err, "field '%s': expected %s", name, what);
}

int ds_get_str(const struct ds_jsonl *r, const cJSON *obj, const char *name, const char **out,
               struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(v))
        return field_error(r, name, "a string", err);
    *out = v->valuestring;
    return PL_OK;
}

int ds_get_num(const struct ds_jsonl *r, const cJSON *obj, const char *name, double *out,
               struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return field_error(r, name, "a number", err);
    *out = v->valuedouble;
    return PL_OK;
}

int ds_get_int(const struct ds_jsonl *r, const cJSON *obj, const char *name, long *out,
               struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    /* 2^53: beyond it a double no longer holds every integer. */
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 9007199254740992.0)
        return field_error(r, name, "an integer", err);
    *out = (long)v->valuedouble;
    return PL_OK;
}

int ds_json_load(const char *path, cJSON **out, struct pl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    const char *end = NULL;
    *out = NULL;
    int rc = read_all(path, &text, &len, err);
    if (rc)
        return rc;
    if (strspn(text, " \t\r\n") == len)
        rc = pl_errf(err, PL_EFORMAT, "%s: empty file", path);
    else if (memchr(text, '\0', len))
        rc = pl_errf(err, PL_EFORMAT, "%s: not valid JSON", path);
    else
        rc = json_parse(text, out, &end);
    if (rc == PL_ENOMEM) {
        pl_oom(err, "JSON document");
    } else if (rc == PL_EFORMAT && end) {
        long line = 1;
        for (const char *p = text; p < end; p++)
            line += *p == '\n';
        pl_errf(err, PL_EFORMAT, "%s:%ld: not valid JSON", path, line);
    }
    pl_free(text);
    return rc;
}

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
    const char **row = grow(c->row, &c->row_cap, c->row_n + 1, sizeof *c->row);
    if (!row) {
        c->rc = pl_oom(c->err, "CSV fields");
        return;
    }
    c->row = row;
    const char *s = ds_arena_strndup(&c->t->arena, field ? field : "", field ? len : 0);
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
        if (c->flags & DS_SKIP_BAD_LINES) {
            t->skipped++;
            return PL_OK;
        }
        return pl_errf(c->err, PL_EFORMAT, "%s:%ld: expected %zu fields, got %zu", t->path,
                       c->row_line, t->ncols, c->row_n);
    }
    const char **cells = grow(t->cells, &t->cells_cap, (t->nrows + 1) * t->ncols, sizeof *cells);
    if (!cells)
        return pl_oom(c->err, "CSV rows");
    t->cells = cells;
    long *lines = grow(t->lines, &t->lines_cap, t->nrows + 1, sizeof *lines);
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
static int csv_feed(struct csv_parser *p, struct ds_lines *l, struct csv_ctx *c)
{
    for (;;) {
        const char *text;
        size_t len;
        int rc = ds_lines_next(l, &text, &len, c->err);
        if (rc)
            return rc;
        if (!text)
            break;
        if (!c->in_row && !is_blank(text, len)) {
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
    struct ds_lines l;
    int rc = ds_lines_init(&l, path, err);
    if (rc == PL_OK)
        rc = csv_feed(&p, &l, &c);
    if (rc == PL_OK && t->nrows == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no records", path);
    ds_lines_release(&l);
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
    ds_arena_release(&t->arena);
    memset(t, 0, sizeof *t);
}

/* ---- record sets ---- */

/* Adds one record from a JSONL object to a set: PL_OK, PL_EFORMAT (a bad record, skippable)
 * or PL_ENOMEM. */
typedef int (*take_fn)(void *set, const struct ds_jsonl *r, const cJSON *obj, struct pl_err *err);

/* Read every object of a JSONL file into a set through take; *n is the set's record count. */
static int load_jsonl(const char *path, unsigned flags, take_fn take, void *set, const size_t *n,
                      long *skipped, struct pl_err *err)
{
    struct ds_jsonl r;
    int rc = ds_jsonl_init(&r, path, flags, err);
    while (rc == PL_OK) {
        cJSON *obj = NULL;
        rc = ds_jsonl_next(&r, &obj, NULL, err);
        if (rc || !obj)
            break;
        rc = take(set, &r, obj, err);
        cJSON_Delete(obj);
        if (rc == PL_EFORMAT && (flags & DS_SKIP_BAD_LINES)) {
            (*skipped)++;
            rc = PL_OK;
        }
    }
    *skipped += r.skipped;
    if (rc == PL_OK && *n == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no records", path);
    ds_jsonl_release(&r);
    return rc;
}

static const char *arena_dup(struct ds_arena *a, const char *s)
{
    return ds_arena_strndup(a, s, strlen(s));
}

static int sft_add(struct ds_sft *set, const char *prompt, const char *response, struct pl_err *err)
{
    struct ds_sft_rec *recs = grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
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

static int sft_take(void *set, const struct ds_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    const char *prompt = NULL, *response = NULL;
    int rc = ds_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = ds_get_str(r, obj, "response", &response, err);
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
    if (has_suffix(path, ".csv") || has_suffix(path, ".csv.gz"))
        return sft_from_csv(set, path, flags, err);
    return load_jsonl(path, flags, sft_take, set, &set->n, &set->skipped, err);
}

void ds_sft_release(struct ds_sft *set)
{
    pl_free(set->recs);
    ds_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

static int prompts_take(void *p, const struct ds_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    struct ds_prompts *set = p;
    const char *id = NULL, *prompt = NULL;
    int rc = ds_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = ds_get_str(r, obj, "prompt", &prompt, err);
    if (rc)
        return rc;
    struct ds_prompt_rec *recs = grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
    if (!recs)
        return pl_oom(err, "prompt records");
    set->recs = recs;
    struct ds_prompt_rec *rec = &set->recs[set->n];
    rec->id = arena_dup(&set->arena, id);
    rec->prompt = arena_dup(&set->arena, prompt);
    if (!rec->id || !rec->prompt)
        return pl_oom(err, "prompt records");
    set->n++;
    return PL_OK;
}

int ds_prompts_init(struct ds_prompts *set, const char *path, unsigned flags, struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    return load_jsonl(path, flags, prompts_take, set, &set->n, &set->skipped, err);
}

void ds_prompts_release(struct ds_prompts *set)
{
    pl_free(set->recs);
    ds_arena_release(&set->arena);
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
static int pair_margin(const struct ds_jsonl *r, const cJSON *obj, double *margin,
                       struct pl_err *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, "margin");
    *margin = 0;
    if (!m || cJSON_IsNull(m))
        return PL_OK;
    return ds_get_num(r, obj, "margin", margin, err);
}

static int pairs_take(void *p, const struct ds_jsonl *r, const cJSON *obj, struct pl_err *err)
{
    struct ds_pairs *set = p;
    const char *prompt = NULL, *chosen = NULL, *rejected = NULL;
    size_t plen = 0;
    double margin = 0;
    bool hh = !cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    int rc = hh ? PL_OK : ds_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = ds_get_str(r, obj, "chosen", &chosen, err);
    if (rc == PL_OK)
        rc = ds_get_str(r, obj, "rejected", &rejected, err);
    if (rc == PL_OK)
        rc = pair_margin(r, obj, &margin, err);
    if (rc)
        return rc;
    if (hh) {
        plen = ds_hh_prompt_len(chosen, rejected);
        if (plen == 0)
            return ds_jsonl_errf(r, err, "no shared prompt ending in '\\n\\nAssistant:'");
    }
    struct ds_pair_rec *recs = grow(set->recs, &set->cap, set->n + 1, sizeof *set->recs);
    if (!recs)
        return pl_oom(err, "pair records");
    set->recs = recs;
    struct ds_pair_rec *rec = &set->recs[set->n];
    rec->margin = margin;
    rec->prompt = hh ? ds_arena_strndup(&set->arena, chosen, plen) : arena_dup(&set->arena, prompt);
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
    ds_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

int ds_text_init(struct ds_text *t, const char *path, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    int rc = read_all(path, &t->data, &t->len, err);
    if (rc == PL_OK && t->len == 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: empty file", path);
    return rc;
}

void ds_text_release(struct ds_text *t)
{
    pl_free(t->data);
    memset(t, 0, sizeof *t);
}
