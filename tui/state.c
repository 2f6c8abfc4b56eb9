#include "state.h"

#include "datasets/ds.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- the items ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* The slot of id in the table: the one holding it, or the empty one where it would go. */
static size_t id_slot(const struct tui_items *it, const char *id)
{
    size_t h = hash_str(id) & it->mask;
    while (it->table[h] && strcmp(it->v[it->table[h] - 1].id, id) != 0)
        h = (h + 1) & it->mask;
    return h;
}

/* Room in the table for one more id (kept at most half full). */
static bool id_table_fit(struct tui_items *it)
{
    if (it->table && 2 * (it->n + 1) <= it->mask + 1)
        return true;
    size_t size = it->table ? 2 * (it->mask + 1) : 64;
    size_t *old = it->table;
    it->table = pl_calloc(size, sizeof *it->table);
    if (!it->table) {
        it->table = old;
        return false;
    }
    it->mask = size - 1;
    for (size_t i = 0; i < it->n; i++)
        it->table[id_slot(it, it->v[i].id)] = i + 1;
    pl_free(old);
    return true;
}

long tui_items_find(const struct tui_items *it, const char *id)
{
    return it->table ? (long)it->table[id_slot(it, id)] - 1 : -1;
}

static int item_take(struct tui_items *it, const struct io_jsonl *r, const cJSON *obj,
                     struct pl_err *err)
{
    const char *id, *prompt, *kind = NULL;
    const cJSON *texts, *e, *k;
    int n;
    int rc = io_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = ds_get_strs(r, obj, "completions", &texts, &n, err);
    if (rc)
        return rc;
    if (n < TUI_MIN_K || n > TUI_MAX_K)
        return io_jsonl_errf(r, err,
                             "field 'completions': %d completion%s (plumb label ranks %d to %d)", n,
                             n == 1 ? "" : "s", TUI_MIN_K, TUI_MAX_K);
    if ((k = cJSON_GetObjectItemCaseSensitive(obj, "kind")) && !cJSON_IsNull(k)) {
        if (!cJSON_IsString(k))
            return io_jsonl_errf(r, err, "field 'kind': expected a string");
        kind = k->valuestring;
    }
    long dup = tui_items_find(it, id);
    if (dup >= 0)
        return io_jsonl_errf(r, err, "field 'id': duplicate id '%s' (first on line %ld)", id,
                             it->v[dup].line);
    struct tui_item *v = io_grow(it->v, &it->cap, it->n + 1, sizeof *v);
    if (!v)
        return pl_oom(err, "samples");
    it->v = v;
    if (!id_table_fit(it))
        return pl_oom(err, "samples");
    struct tui_item *item = &v[it->n];
    item->k = n;
    item->line = r->lines.lineno;
    item->id = io_arena_strndup(&it->arena, id, strlen(id));
    item->prompt = io_arena_strndup(&it->arena, prompt, strlen(prompt));
    item->kind = kind ? io_arena_strndup(&it->arena, kind, strlen(kind)) : NULL;
    item->completions = pl_malloc((size_t)n * sizeof *item->completions);
    if (!item->id || !item->prompt || (kind && !item->kind) || !item->completions) {
        pl_free(item->completions);
        return pl_oom(err, "samples");
    }
    int i = 0;
    cJSON_ArrayForEach(e, texts)
    {
        if (!(item->completions[i++] =
                  io_arena_strndup(&it->arena, e->valuestring, strlen(e->valuestring)))) {
            pl_free(item->completions);
            return pl_oom(err, "samples");
        }
    }
    it->table[id_slot(it, item->id)] = ++it->n;
    return PL_OK;
}

int tui_items_init(struct tui_items *it, const char *path, struct pl_err *err)
{
    memset(it, 0, sizeof *it);
    struct io_jsonl r;
    if (!(it->path = pl_strdup(path)))
        return pl_oom(err, "samples");
    int rc = io_jsonl_init(&r, path, IO_CUT_TAIL, err);
    while (rc == PL_OK) {
        cJSON *obj = NULL;
        rc = io_jsonl_next(&r, &obj, NULL, err);
        if (rc || !obj)
            break;
        rc = item_take(it, &r, obj, err);
        cJSON_Delete(obj);
    }
    it->cut = r.cut;
    io_jsonl_release(&r);
    return rc;
}

void tui_items_release(struct tui_items *it)
{
    for (size_t i = 0; i < it->n; i++)
        pl_free(it->v[i].completions);
    pl_free(it->v);
    pl_free(it->table);
    pl_free(it->path);
    io_arena_release(&it->arena);
    memset(it, 0, sizeof *it);
}

/* ---- the session ---- */

int tui_state_init(struct tui_state *s, const struct tui_items *items, const char *annotator,
                   bool shuffle, uint64_t seed, int overlap, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    s->items = items;
    s->annotator = annotator;
    s->overlap = overlap;
    s->cur = -1;
    s->page = 5;
    size_t n = items->n ? items->n : 1;
    s->order = pl_malloc(n * sizeof *s->order);
    s->seq = pl_malloc(n * sizeof *s->seq);
    s->annotators = pl_malloc(sizeof *s->annotators);
    s->latest = pl_malloc(n * sizeof *s->latest);
    if (!s->order || !s->seq || !s->annotators || !s->latest ||
        !(s->annotators[0] = pl_strdup(annotator)))
        return pl_oom(err, "the session");
    s->n_annotators = s->annotators_cap = 1;
    for (size_t i = 0; i < items->n; i++) {
        s->order[i] = (long)i;
        s->latest[i] = -1;
    }
    if (shuffle) {
        struct pl_rng r;
        pl_rng_seed(&r, seed);
        for (size_t i = items->n; i > 1; i--) {
            size_t j = pl_rng_next(&r) % i;
            long t = s->order[i - 1];
            s->order[i - 1] = s->order[j];
            s->order[j] = t;
        }
    }
    for (size_t i = 0; i < items->n; i++)
        s->seq[s->order[i]] = (long)i;
    return PL_OK;
}

void tui_state_release(struct tui_state *s)
{
    for (int i = 0; s->annotators && i < s->n_annotators; i++)
        pl_free(s->annotators[i]);
    pl_free(s->annotators);
    pl_free(s->order);
    pl_free(s->seq);
    pl_free(s->labels);
    pl_free(s->latest);
    pl_buf_release(&s->out);
    memset(s, 0, sizeof *s);
}

/* Index of annotator name, added when new; -1 when out of memory. */
static int annotator_index(struct tui_state *s, const char *name)
{
    for (int i = 0; i < s->n_annotators; i++)
        if (strcmp(s->annotators[i], name) == 0)
            return i;
    size_t n = s->items->n;
    char **names = s->annotators;
    if (s->n_annotators == s->annotators_cap) {
        size_t cap = (size_t)s->annotators_cap;
        names = io_grow(s->annotators, &cap, cap + 1, sizeof *names);
        if (!names)
            return -1;
        s->annotators = names;
        long *latest = pl_realloc(s->latest, cap * (n ? n : 1) * sizeof *latest);
        if (!latest)
            return -1;
        s->latest = latest;
        s->annotators_cap = (int)cap;
    }
    if (!(names[s->n_annotators] = pl_strdup(name)))
        return -1;
    for (size_t i = 0; i < n; i++)
        s->latest[(size_t)s->n_annotators * n + i] = -1;
    return s->n_annotators++;
}

static long *latest_of(const struct tui_state *s, int ann, long item)
{
    return &s->latest[(size_t)ann * s->items->n + (size_t)item];
}

/* The latest unretracted record of (ann, item), or -1. */
static long live_of(const struct tui_state *s, int ann, long item)
{
    long i = *latest_of(s, ann, item);
    while (i >= 0 && s->labels[i].retracted)
        i = s->labels[i].prev;
    return i;
}

const struct tui_label *tui_state_mine(const struct tui_state *s, long item, bool *skip)
{
    long i = live_of(s, 0, item);
    if (skip)
        *skip = i >= 0 && s->labels[i].skip;
    return i >= 0 && !s->labels[i].skip ? &s->labels[i] : NULL;
}

/* Other annotators with a label (not a skip) of item. */
static int others_labelled(const struct tui_state *s, long item)
{
    int n = 0;
    for (int a = 1; a < s->n_annotators; a++) {
        long i = live_of(s, a, item);
        n += i >= 0 && !s->labels[i].skip;
    }
    return n;
}

static __attribute__((format(printf, 4, 5))) int line_err(struct pl_err *err, const char *path,
                                                          long line, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pl_errf(err, PL_EFORMAT, "%s:%ld: %s", path, line, what);
}

/* An integer index in [0, k) from e, or -1. */
static int index_in(const cJSON *e, int k)
{
    if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= k ||
        e->valuedouble != (double)(int)e->valuedouble)
        return -1;
    return (int)e->valuedouble;
}

/* "ranking", "ties", "likert" and "flags" of a label of item into r. */
static int read_rank(const cJSON *obj, const struct tui_item *item, struct tui_rank *r,
                     const char *path, long line, struct pl_err *err)
{
    memset(r, 0, sizeof *r);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "ranking"), *e, *tie;
    int pos[TUI_MAX_K];
    for (int i = 0; i < item->k; i++)
        pos[i] = -1;
    cJSON_ArrayForEach(e, v)
    {
        int x = index_in(e, item->k);
        if (x < 0 || pos[x] >= 0 || r->n == item->k)
            break;
        pos[x] = r->n;
        r->order[r->n++] = x;
    }
    if (!cJSON_IsArray(v) || r->n != item->k || cJSON_GetArraySize(v) != item->k)
        return line_err(err, path, line,
                        "field 'ranking': expected a permutation of the %d completions of '%s'",
                        item->k, item->id);
    /* The loader has made sure that tied completions are ranked next to each other. */
    cJSON_ArrayForEach(tie, cJSON_GetObjectItemCaseSensitive(obj, "ties"))
    {
        int lo = item->k, hi = -1;
        cJSON_ArrayForEach(e, tie)
        {
            int x = index_in(e, item->k);
            if (x < 0)
                return line_err(err, path, line, "field 'ties': expected arrays of indices");
            lo = pos[x] < lo ? pos[x] : lo;
            hi = pos[x] > hi ? pos[x] : hi;
        }
        for (int p = lo + 1; p <= hi; p++)
            r->tie[p] = true;
    }
    const cJSON *lk = cJSON_GetObjectItemCaseSensitive(obj, "likert");
    if (cJSON_IsNumber(lk) && lk->valuedouble >= 1 && lk->valuedouble <= 7)
        r->likert = (int)lk->valuedouble;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(obj, "flags"))
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, "hallucination") == 0)
            r->flags |= TUI_FLAG_HALLUCINATION;
        if (cJSON_IsString(e) && strcmp(e->valuestring, "harmful") == 0)
            r->flags |= TUI_FLAG_HARMFUL;
    }
    return PL_OK;
}

/* A label's "completions", when it has them, must be its item's. */
static int same_item(const cJSON *obj, const struct tui_item *item, const struct tui_items *it,
                     const char *path, long line, struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "completions"), *e;
    if (!v)
        return PL_OK;
    bool same = cJSON_IsArray(v) && cJSON_GetArraySize(v) == item->k;
    int i = 0;
    cJSON_ArrayForEach(e, v) same =
        same && cJSON_IsString(e) && strcmp(e->valuestring, item->completions[i++]) == 0;
    return same ? PL_OK
                : line_err(err, path, line,
                           "the label of '%s' ranks other completions than %s:%ld (one labels "
                           "file per samples file)",
                           item->id, it->path, item->line);
}

int tui_state_take(struct tui_state *s, const char *text, size_t len, const char *path, long line,
                   bool mine, struct pl_err *err)
{
    if (io_blank(text, len))
        return PL_OK;
    cJSON *obj = NULL;
    int rc = io_json_parse(text, len, &obj);
    if (rc == PL_ENOMEM)
        return pl_oom(err, "labels");
    if (rc || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return line_err(err, path, line, "not a JSON object");
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    const cJSON *who = cJSON_GetObjectItemCaseSensitive(obj, "annotator");
    const cJSON *undo = cJSON_GetObjectItemCaseSensitive(obj, "undo");
    const cJSON *skipped = cJSON_GetObjectItemCaseSensitive(obj, "skipped");
    bool label = cJSON_GetObjectItemCaseSensitive(obj, "ranking") || skipped || undo;
    long item = label && cJSON_IsString(id) ? tui_items_find(s->items, id->valuestring) : -1;
    if (item < 0 || !cJSON_IsString(who) ||
        (!mine && strcmp(who->valuestring, s->annotator) == 0)) {
        cJSON_Delete(obj);
        return PL_OK;
    }
    int ann = annotator_index(s, who->valuestring);
    if (ann < 0) {
        cJSON_Delete(obj);
        return pl_oom(err, "labels");
    }
    if (undo) {
        long live = live_of(s, ann, item);
        if (live >= 0)
            s->labels[live].retracted = true;
        cJSON_Delete(obj);
        return PL_OK;
    }
    struct tui_label l = {
        .item = item, .ann = ann, .skip = cJSON_IsTrue(skipped), .prev = *latest_of(s, ann, item)};
    const struct tui_item *it = &s->items->v[item];
    rc = l.skip ? PL_OK : same_item(obj, it, s->items, path, line, err);
    if (rc == PL_OK && !l.skip)
        rc = read_rank(obj, it, &l.rank, path, line, err);
    cJSON_Delete(obj);
    if (rc)
        return rc;
    struct tui_label *labels = io_grow(s->labels, &s->labels_cap, s->n_labels + 1, sizeof *labels);
    if (!labels)
        return pl_oom(err, "labels");
    s->labels = labels;
    labels[s->n_labels] = l;
    *latest_of(s, ann, item) = (long)s->n_labels++;
    return PL_OK;
}

int tui_state_read(struct tui_state *s, const char *path, long *offset, long *lineno, bool mine,
                   struct pl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT
                   ? PL_OK
                   : pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    int rc = fseek(f, *offset, SEEK_SET)
                 ? pl_errf(err, PL_EIO, "cannot read '%s': %s", path, strerror(errno))
                 : PL_OK;
    /* What was appended since the last read, in one buffer; lines are taken from it. */
    struct pl_buf b = {0};
    char chunk[1 << 16];
    size_t got;
    while (rc == PL_OK && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        pl_buf_add(&b, chunk, got);
    if (rc == PL_OK && ferror(f))
        rc = pl_errf(err, PL_EIO, "cannot read '%s': %s", path, strerror(errno));
    if (rc == PL_OK && b.oom)
        rc = pl_oom(err, "labels");
    fclose(f);
    for (size_t at = 0; rc == PL_OK && at < b.len;) {
        char *nl = memchr(b.p + at, '\n', b.len - at);
        if (!nl)
            break;
        *nl = '\0';
        size_t len = (size_t)(nl - (b.p + at));
        /* Past the line even when it is bad: a later read goes on after it. */
        *offset += (long)len + 1;
        rc = tui_state_take(s, b.p + at, len, path, ++*lineno, mine, err);
        at += len + 1;
    }
    pl_buf_release(&b);
    return rc;
}

/* ---- navigation ---- */

/* Whether this annotator is served item: already theirs, or short of the overlap. */
static bool servable(const struct tui_state *s, long item)
{
    return s->overlap == 0 || live_of(s, 0, item) >= 0 || others_labelled(s, item) < s->overlap;
}

/* The item to do next: the first in order that this annotator has not touched (under an overlap,
 * items others have started first), else the oldest skip; -1 when none. */
static long next_item(const struct tui_state *s)
{
    long best = -1;
    bool best_started = false;
    for (size_t i = 0; i < s->items->n; i++) {
        long item = s->order[i];
        if (live_of(s, 0, item) >= 0 || !servable(s, item))
            continue;
        bool started = s->overlap > 0 && others_labelled(s, item) > 0;
        if (best < 0 || (started && !best_started)) {
            best = item;
            best_started = started;
        }
        if (s->overlap == 0 || started)
            break;
    }
    if (best >= 0)
        return best;
    long oldest = -1;
    for (size_t i = 0; i < s->items->n; i++) {
        long l = live_of(s, 0, (long)i);
        if (l >= 0 && s->labels[l].skip && (oldest < 0 || l < oldest))
            oldest = l;
    }
    return oldest >= 0 ? s->labels[oldest].item : -1;
}

static void show(struct tui_state *s, long item, double now)
{
    s->cur = item;
    s->mode = TUI_RANKING;
    s->focus = 0;
    memset(s->scroll, 0, sizeof s->scroll);
    memset(&s->rank, 0, sizeof s->rank);
    s->saved = false;
    s->shown = now;
    const struct tui_label *l = item >= 0 ? tui_state_mine(s, item, NULL) : NULL;
    if (l) {
        s->rank = l->rank;
        s->saved = true;
    }
}

void tui_state_start(struct tui_state *s, double now)
{
    show(s, next_item(s), now);
}

static void say(struct tui_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct tui_state *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
}

/* Browse to the item before (step -1) or after (+1) the shown one in order, among those served. */
static void browse(struct tui_state *s, int step, double now)
{
    long n = (long)s->items->n;
    long i = s->cur >= 0 ? s->seq[s->cur] + step : step < 0 ? n - 1 : n;
    while (i >= 0 && i < n && !servable(s, s->order[i]))
        i += step;
    if (i < 0 || i >= n) {
        say(s, step < 0 ? "this is the first item" : "this is the last item");
        return;
    }
    show(s, s->order[i], now);
}

/* ---- records ---- */

static void json_str(struct pl_buf *b, const char *s)
{
    pl_buf_json(b, s, strlen(s));
}

/* A label record (DESIGN.md section 5), as `plumb simlabel` writes it. */
static void label_line(struct pl_buf *b, const struct tui_item *item, const char *annotator,
                       const struct tui_rank *r, const char *time)
{
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    json_str(b, item->id);
    pl_buf_str(b, ",\"annotator\":");
    json_str(b, annotator);
    pl_buf_str(b, ",\"ranking\":[");
    for (int i = 0; i < r->n; i++)
        pl_buf_printf(b, i ? ",%d" : "%d", r->order[i]);
    pl_buf_str(b, "],\"ties\":[");
    bool first = true;
    for (int i = 0; i < r->n;) {
        int j = i + 1;
        while (j < r->n && r->tie[j])
            j++;
        if (j - i >= 2) {
            pl_buf_str(b, first ? "[" : ",[");
            for (int t = i; t < j; t++)
                pl_buf_printf(b, t > i ? ",%d" : "%d", r->order[t]);
            pl_buf_str(b, "]");
            first = false;
        }
        i = j;
    }
    pl_buf_str(b, "],\"skipped\":false,\"time\":");
    json_str(b, time);
    pl_buf_str(b, ",\"completions\":[");
    for (int i = 0; i < item->k; i++) {
        pl_buf_str(b, i ? "," : "");
        json_str(b, item->completions[i]);
    }
    pl_buf_str(b, "],\"prompt\":");
    json_str(b, item->prompt);
    if (item->kind) {
        pl_buf_str(b, ",\"kind\":");
        json_str(b, item->kind);
    }
    if (r->likert)
        pl_buf_printf(b, ",\"likert\":%d", r->likert);
    if (r->flags) {
        pl_buf_str(b, ",\"flags\":[");
        if (r->flags & TUI_FLAG_HALLUCINATION)
            pl_buf_str(b, "\"hallucination\"");
        if (r->flags & TUI_FLAG_HARMFUL)
            pl_buf_str(b, r->flags & TUI_FLAG_HALLUCINATION ? ",\"harmful\"" : "\"harmful\"");
        pl_buf_str(b, "]");
    }
    pl_buf_str(b, "}\n");
}

/* {"id", "annotator", "<field>": true, "time"}: a skip or an undo. */
static void mark_line(struct pl_buf *b, const char *id, const char *annotator, const char *field,
                      const char *time)
{
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    json_str(b, id);
    pl_buf_str(b, ",\"annotator\":");
    json_str(b, annotator);
    pl_buf_printf(b, ",\"%s\":true,\"time\":", field);
    json_str(b, time);
    pl_buf_str(b, "}\n");
}

/* Ask the caller to append s->out; nothing changes until it is on disk. */
static enum tui_act append(struct tui_state *s, int pending, long item)
{
    if (s->out.oom) {
        pl_buf_release(&s->out);
        say(s, "out of memory: nothing written");
        return TUI_NONE;
    }
    s->pending = pending;
    s->pending_item = item;
    return TUI_APPEND;
}

static enum tui_act submit(struct tui_state *s, const char *time)
{
    const struct tui_item *it = &s->items->v[s->cur];
    if (s->saved) {
        say(s, "unchanged: already labelled");
        return TUI_NONE;
    }
    if (s->rank.n < it->k - 1) {
        say(s, "rank at least %d of the %d completions first (%d placed)", it->k - 1, it->k,
            s->rank.n);
        return TUI_NONE;
    }
    struct tui_rank r = s->rank;
    if (r.n == it->k - 1) {
        bool placed[TUI_MAX_K] = {false};
        for (int i = 0; i < r.n; i++)
            placed[r.order[i]] = true;
        for (int c = 0; c < it->k; c++)
            if (!placed[c]) {
                r.tie[r.n] = false;
                r.order[r.n++] = c;
            }
    }
    s->pending_rank = r;
    label_line(&s->out, it, s->annotator, &r, time);
    return append(s, TUI_PENDING_LABEL, s->cur);
}

static enum tui_act skip(struct tui_state *s, const char *time)
{
    if (tui_state_mine(s, s->cur, NULL)) {
        say(s, "already labelled, not skipped: u undoes the last label");
        return TUI_NONE;
    }
    mark_line(&s->out, s->items->v[s->cur].id, s->annotator, "skipped", time);
    return append(s, TUI_PENDING_SKIP, s->cur);
}

/* This annotator's latest record that nothing has retracted, or -1. */
static long last_live(const struct tui_state *s)
{
    for (long i = (long)s->n_labels - 1; i >= 0; i--)
        if (s->labels[i].ann == 0 && live_of(s, 0, s->labels[i].item) == i)
            return i;
    return -1;
}

static enum tui_act undo(struct tui_state *s, const char *time)
{
    long l = last_live(s);
    if (l < 0) {
        say(s, "nothing to undo");
        return TUI_NONE;
    }
    long item = s->labels[l].item;
    mark_line(&s->out, s->items->v[item].id, s->annotator, "undo", time);
    s->pending_rank = s->labels[l].rank;
    return append(s, TUI_PENDING_UNDO, item);
}

void tui_state_appended(struct tui_state *s, double now)
{
    struct pl_err err;
    long item = s->pending_item;
    const char *id = s->items->v[item].id;
    int pending = s->pending;
    s->pending = TUI_PENDING_NONE;
    /* The line was written by this module and names an item of the samples: taking it fails only
     * when out of memory, and then the file still has it for the next start. */
    if (tui_state_take(s, s->out.p, s->out.len, "labels", 0, true, &err)) {
        say(s, "%s", err.msg);
        return;
    }
    if (pending == TUI_PENDING_LABEL) {
        s->submitted++;
        s->seconds += now - s->shown;
        say(s, "saved '%s'", id);
        show(s, next_item(s), now);
    } else if (pending == TUI_PENDING_SKIP) {
        say(s, "skipped '%s': it comes back after the others", id);
        show(s, next_item(s), now);
    } else {
        bool was_label = s->pending_rank.n > 0;
        show(s, item, now);
        if (was_label) {
            s->rank = s->pending_rank;
            s->saved = false;
        }
        say(s, "undid the %s of '%s'", was_label ? "label" : "skip", id);
    }
}

void tui_state_dropped(struct tui_state *s, const char *why)
{
    s->pending = TUI_PENDING_NONE;
    say(s, "not saved: %s", why);
}

/* ---- keys ---- */

static void place(struct tui_state *s, int c)
{
    const struct tui_item *it = &s->items->v[s->cur];
    if (c >= it->k) {
        say(s, "there are %d completions", it->k);
        return;
    }
    for (int i = 0; i < s->rank.n; i++)
        if (s->rank.order[i] == c) {
            say(s, "%d is placed already (Backspace takes back the last)", c + 1);
            return;
        }
    s->rank.tie[s->rank.n] = false;
    s->rank.order[s->rank.n++] = c;
    s->saved = false;
}

static void tie(struct tui_state *s)
{
    if (s->rank.n < 2) {
        say(s, "place two completions before tying them");
        return;
    }
    s->rank.tie[s->rank.n - 1] = !s->rank.tie[s->rank.n - 1];
    s->saved = false;
}

static void take_back(struct tui_state *s)
{
    if (s->rank.n == 0) {
        say(s, "nothing placed");
        return;
    }
    s->rank.n--;
    s->rank.tie[s->rank.n] = false;
    s->saved = false;
}

static void scroll(int *where, int by)
{
    *where += by;
    if (*where < 0)
        *where = 0;
}

/* A key while the help or the guidelines are shown: scroll them, or close them. */
static void overlay_key(struct tui_state *s, int key)
{
    if (key == TUI_KEY_UP || key == TUI_KEY_DOWN || key == TUI_KEY_PGUP || key == TUI_KEY_PGDN)
        scroll(&s->overlay_scroll, key == TUI_KEY_UP     ? -1
                                   : key == TUI_KEY_DOWN ? 1
                                   : key == TUI_KEY_PGUP ? -s->page
                                                         : s->page);
    else
        s->mode = TUI_RANKING;
}

enum tui_act tui_state_key(struct tui_state *s, int key, double now, const char *time)
{
    s->msg[0] = '\0';
    switch (s->mode) {
    case TUI_HELP:
    case TUI_GUIDE:
        overlay_key(s, key);
        return TUI_NONE;
    case TUI_CONFIRM_QUIT:
        s->mode = TUI_RANKING;
        return key == 'y' || key == 'q' ? TUI_QUIT : TUI_NONE;
    case TUI_LIKERT:
        s->mode = TUI_RANKING;
        if (key >= '1' && key <= '7') {
            s->rank.likert = key - '0';
            s->saved = false;
        } else if (key == '0' || key == TUI_KEY_BACKSPACE) {
            s->rank.likert = 0;
            s->saved = false;
        }
        return TUI_NONE;
    case TUI_RANKING:
        break;
    }
    switch (key) {
    case '?':
        s->mode = TUI_HELP;
        s->overlay_scroll = 0;
        return TUI_NONE;
    case 'g':
        s->mode = TUI_GUIDE;
        s->overlay_scroll = 0;
        return TUI_NONE;
    case 'q':
        if (s->cur >= 0 && s->rank.n > 0 && !s->saved) {
            s->mode = TUI_CONFIRM_QUIT;
            return TUI_NONE;
        }
        return TUI_QUIT;
    case 'u':
        return undo(s, time);
    case 'n':
    case 'p':
        browse(s, key == 'n' ? 1 : -1, now);
        return TUI_NONE;
    }
    if (s->cur < 0) {
        say(s, "every item is done: u undoes the last label, p goes back, q quits");
        return TUI_NONE;
    }
    const struct tui_item *it = &s->items->v[s->cur];
    switch (key) {
    case TUI_KEY_ENTER:
        return submit(s, time);
    case 's':
        return skip(s, time);
    case 't':
        tie(s);
        break;
    case TUI_KEY_BACKSPACE:
        take_back(s);
        break;
    case 'l':
        s->mode = TUI_LIKERT;
        break;
    case 'h':
    case 'x':
        s->rank.flags ^= key == 'h' ? TUI_FLAG_HALLUCINATION : TUI_FLAG_HARMFUL;
        s->saved = false;
        break;
    case TUI_KEY_TAB:
    case TUI_KEY_BTAB:
        s->focus = (s->focus + (key == TUI_KEY_TAB ? 1 : it->k - 1)) % it->k;
        break;
    case TUI_KEY_UP:
    case TUI_KEY_DOWN:
    case TUI_KEY_PGUP:
    case TUI_KEY_PGDN:
        scroll(&s->scroll[s->focus], key == TUI_KEY_UP     ? -1
                                     : key == TUI_KEY_DOWN ? 1
                                     : key == TUI_KEY_PGUP ? -s->page
                                                           : s->page);
        break;
    case TUI_KEY_HOME:
        s->scroll[s->focus] = 0;
        break;
    case TUI_KEY_ESC:
        break;
    default:
        if (key >= '1' && key <= '9')
            place(s, key - '1');
        else
            say(s, "? lists the keys");
    }
    return TUI_NONE;
}

void tui_state_progress(const struct tui_state *s, struct tui_progress *p)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < s->items->n; i++) {
        bool skipped;
        if (tui_state_mine(s, (long)i, &skipped))
            p->done++;
        else if (servable(s, (long)i))
            p->total++;
        p->skipped += skipped;
    }
    p->total += p->done;
    p->per_item = s->submitted ? s->seconds / (double)s->submitted : 0;
}
