#include "agree.h"

#include "datasets/ds.h"
#include "model/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

double tui_agree_tau_b(const int *la, const int *lb, int k)
{
    long n0 = 0, ta = 0, tb = 0, con = 0, dis = 0;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++) {
            int sa = sign(la[i] - la[j]), sb = sign(lb[i] - lb[j]);
            n0++;
            ta += sa == 0;
            tb += sb == 0;
            con += sa * sb > 0;
            dis += sa * sb < 0;
        }
    double d = sqrt((double)(n0 - ta) * (double)(n0 - tb));
    return d > 0 ? (double)(con - dis) / d : NAN;
}

void tui_agree_pairs(const int *la, const int *lb, int k, long *pairs, long *agree)
{
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++) {
            int sa = sign(la[i] - la[j]), sb = sign(lb[i] - lb[j]);
            if (sa && sb) {
                (*pairs)++;
                *agree += sa == sb;
            }
        }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Index of x among the sorted distinct values vals[0, n). */
static size_t value_index(const double *vals, size_t n, double x)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (vals[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int tui_agree_alpha(const double *v, size_t n_units, int n_coders, double *alpha,
                    struct pl_err *err)
{
    *alpha = NAN;
    size_t total = n_units * (size_t)n_coders, nv = 0;
    double *vals = pl_malloc((total ? total : 1) * sizeof *vals);
    if (!vals)
        return pl_oom(err, "agreement");
    for (size_t i = 0; i < total; i++)
        if (!isnan(v[i]))
            vals[nv++] = v[i];
    qsort(vals, nv, sizeof *vals, cmp_double);
    size_t nd = 0;
    for (size_t i = 0; i < nv; i++)
        if (nd == 0 || vals[i] != vals[nd - 1])
            vals[nd++] = vals[i];
    /* The coincidence matrix: each ordered pair of values within a unit of m values adds
     * 1 / (m - 1) (Krippendorff 2011, section "C"). */
    double *o = pl_calloc(nd * nd + 1, sizeof *o), *nc = pl_calloc(nd + 1, sizeof *nc);
    size_t *idx = pl_malloc(((size_t)n_coders + 1) * sizeof *idx);
    if (!o || !nc || !idx) {
        pl_free(vals);
        pl_free(o);
        pl_free(nc);
        pl_free(idx);
        return pl_oom(err, "agreement");
    }
    for (size_t u = 0; u < n_units; u++) {
        int m = 0;
        for (int c = 0; c < n_coders; c++)
            if (!isnan(v[u * (size_t)n_coders + c]))
                idx[m++] = value_index(vals, nd, v[u * (size_t)n_coders + c]);
        for (int i = 0; m >= 2 && i < m; i++)
            for (int j = 0; j < m; j++)
                if (i != j)
                    o[idx[i] * nd + idx[j]] += 1.0 / (m - 1);
    }
    double n = 0;
    for (size_t c = 0; c < nd; c++) {
        for (size_t k = 0; k < nd; k++)
            nc[c] += o[c * nd + k];
        n += nc[c];
    }
    /* Ordinal metric: delta(c, k) = (sum of n_g for g from c to k) - (n_c + n_k) / 2. */
    double d_o = 0, d_e = 0;
    for (size_t c = 0; c < nd; c++) {
        double run = 0;
        for (size_t k = c; k < nd; k++) {
            run += nc[k];
            double d = run - (nc[c] + nc[k]) / 2, d2 = d * d;
            if (k == c)
                continue;
            d_o += 2 * o[c * nd + k] * d2;
            d_e += 2 * nc[c] * nc[k] * d2;
        }
    }
    if (n > 1 && d_e > 0)
        *alpha = 1 - (n - 1) * d_o / d_e;
    pl_free(vals);
    pl_free(o);
    pl_free(nc);
    pl_free(idx);
    return PL_OK;
}

/* ---- reading label files ---- */

/* One label record of the file being read: what undo and supersession act on. */
struct file_label {
    const char *key; /* "<annotator>\n<id>" in the set's arena */
    long prev;       /* the previous record with this key, or -1 */
    long rating;     /* its rating in the set, or -1 for a skip */
    bool retracted;
};

static uint64_t mix(uint64_t h, const char *s)
{
    while (s && *s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

struct file_read {
    struct tui_agree_set *set;
    struct file_label *labels;
    size_t n, cap;
    long *table; /* key -> latest record, open addressing; [mask + 1] */
    size_t mask;
};

static size_t key_slot(const struct file_read *f, const char *key)
{
    size_t h = mix(1469598103934665603ull, key) & f->mask;
    while (f->table[h] >= 0 && strcmp(f->labels[f->table[h]].key, key) != 0)
        h = (h + 1) & f->mask;
    return h;
}

static bool key_fit(struct file_read *f)
{
    if (f->table && 2 * (f->n + 1) <= f->mask + 1)
        return true;
    size_t size = f->table ? 2 * (f->mask + 1) : 64;
    long *t = pl_malloc(size * sizeof *t), *old = f->table;
    if (!t)
        return false;
    for (size_t i = 0; i < size; i++)
        t[i] = -1;
    f->table = t;
    f->mask = size - 1;
    /* Every record with a key in the old table is reachable from its latest: keep only those. */
    if (old) {
        for (size_t i = 0; i < f->n; i++)
            f->table[key_slot(f, f->labels[i].key)] = (long)i;
    }
    pl_free(old);
    return true;
}

/* Levels from "ranking" and "ties": 1 + the position of the first of each run of tied ones. */
static int read_levels(const struct io_jsonl *r, const cJSON *obj, int k, int *level,
                       struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "ranking"), *e, *tie;
    int *rank = level + k, *pos = level + 2 * k, *cls = level + 3 * k, n = 0;
    for (int i = 0; i < k; i++)
        pos[i] = -1;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= k || n == k ||
            pos[(int)e->valuedouble] >= 0)
            return io_jsonl_errf(r, err, "field 'ranking': expected a permutation of 0..%d", k - 1);
        pos[(int)e->valuedouble] = n;
        rank[n++] = (int)e->valuedouble;
    }
    if (n != k)
        return io_jsonl_errf(r, err, "field 'ranking': expected a permutation of 0..%d", k - 1);
    for (int p = 0; p < k; p++)
        cls[p] = p;
    cJSON_ArrayForEach(tie, cJSON_GetObjectItemCaseSensitive(obj, "ties"))
    {
        int lo = k, hi = -1;
        cJSON_ArrayForEach(e, tie)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= k)
                return io_jsonl_errf(r, err, "field 'ties': expected arrays of indices");
            int p = pos[(int)e->valuedouble];
            lo = p < lo ? p : lo;
            hi = p > hi ? p : hi;
        }
        for (int p = lo + 1; p <= hi; p++)
            cls[p] = -1; /* tied with the one above */
    }
    for (int p = 0, first = 0; p < k; p++) {
        if (cls[p] >= 0)
            first = p;
        level[rank[p]] = first + 1;
    }
    return PL_OK;
}

static const char *dup_str(struct io_arena *a, const char *s)
{
    return io_arena_strndup(a, s, strlen(s));
}

/* A ranking into the set: *out is its index. */
static int rating_add(struct tui_agree_set *set, const struct io_jsonl *r, const cJSON *obj,
                      const char *annotator, const char *id, long *out, struct pl_err *err)
{
    const char *prompt;
    const cJSON *texts, *e;
    int k;
    int rc = io_get_str(r, obj, "prompt", &prompt, err);
    if (rc == PL_OK)
        rc = ds_get_strs(r, obj, "completions", &texts, &k, err);
    if (rc == PL_OK && (k < 1 || k > DS_PREF_MAX_TEXTS))
        rc = io_jsonl_errf(r, err, "field 'completions': %d completions (1 to %d can be ranked)", k,
                           DS_PREF_MAX_TEXTS);
    if (rc)
        return rc;
    struct tui_agree_rating *v = io_grow(set->r, &set->cap, set->n + 1, sizeof *v);
    if (!v)
        return pl_oom(err, "rankings");
    set->r = v;
    struct tui_agree_rating *x = &v[set->n];
    memset(x, 0, sizeof *x);
    x->k = k;
    /* One block: the texts, then the levels with room for read_levels' scratch. */
    x->texts = pl_malloc((size_t)k * (sizeof *x->texts + 4 * sizeof *x->level));
    if (!x->texts)
        return pl_oom(err, "rankings");
    set->n++;
    x->level = (int *)(x->texts + k);
    if ((rc = read_levels(r, obj, k, x->level, err)))
        return rc;
    x->annotator = dup_str(&set->arena, annotator);
    x->id = dup_str(&set->arena, id);
    x->prompt = dup_str(&set->arena, prompt);
    int i = 0;
    bool ok = x->annotator && x->id && x->prompt;
    cJSON_ArrayForEach(e, texts) ok = ok && (x->texts[i++] = dup_str(&set->arena, e->valuestring));
    *out = (long)set->n - 1;
    return ok ? PL_OK : pl_oom(err, "rankings");
}

static int record_take(struct file_read *f, const struct io_jsonl *r, const cJSON *obj,
                       struct pl_err *err)
{
#define HAS(name) cJSON_GetObjectItemCaseSensitive(obj, name)
    if (!HAS("ranking") && !HAS("skipped") && !HAS("undo"))
        return PL_OK;
    const cJSON *undo = HAS("undo"), *skipped = HAS("skipped");
#undef HAS
    const char *id, *annotator;
    int rc = io_get_str(r, obj, "id", &id, err);
    if (rc == PL_OK)
        rc = io_get_str(r, obj, "annotator", &annotator, err);
    if (rc)
        return rc;
    struct pl_buf b = {0};
    pl_buf_printf(&b, "%s\n%s", annotator, id);
    const char *key = b.oom ? NULL : dup_str(&f->set->arena, b.p);
    pl_buf_release(&b);
    if (!key || !key_fit(f))
        return pl_oom(err, "labels");
    size_t h = key_slot(f, key);
    if (undo) {
        long i = f->table[h];
        while (i >= 0 && f->labels[i].retracted)
            i = f->labels[i].prev;
        if (i < 0)
            return io_jsonl_errf(
                r, err, "field 'undo': annotator '%s' has no earlier label of '%s' to undo",
                annotator, id);
        f->labels[i].retracted = true;
        return PL_OK;
    }
    long rating = -1;
    if (!cJSON_IsTrue(skipped) && (rc = rating_add(f->set, r, obj, annotator, id, &rating, err)))
        return rc;
    struct file_label *l = io_grow(f->labels, &f->cap, f->n + 1, sizeof *l);
    if (!l)
        return pl_oom(err, "labels");
    f->labels = l;
    l[f->n] = (struct file_label){.key = key, .prev = f->table[h], .rating = rating};
    f->table[h] = (long)f->n++;
    return PL_OK;
}

static void rating_drop(struct tui_agree_rating *x)
{
    pl_free(x->texts);
    x->texts = NULL;
}

int tui_agree_load(struct tui_agree_set *set, const char *path, struct pl_err *err)
{
    struct file_read f = {.set = set};
    size_t first = set->n;
    struct io_jsonl r;
    int rc = io_jsonl_init(&r, path, 0, err);
    while (rc == PL_OK) {
        cJSON *obj = NULL;
        rc = io_jsonl_next(&r, &obj, NULL, err);
        if (rc || !obj)
            break;
        rc = record_take(&f, &r, obj, err);
        cJSON_Delete(obj);
    }
    io_jsonl_release(&r);
    /* Keep each key's live label; drop the ratings of the others. */
    for (size_t i = 0; rc == PL_OK && i < f.n; i++) {
        long live = f.table[key_slot(&f, f.labels[i].key)];
        while (live >= 0 && f.labels[live].retracted)
            live = f.labels[live].prev;
        if (live != (long)i && f.labels[i].rating >= 0)
            rating_drop(&set->r[f.labels[i].rating]);
    }
    size_t n = first;
    for (size_t i = first; i < set->n; i++) {
        if (set->r[i].texts)
            set->r[n++] = set->r[i];
        else if (rc)
            rating_drop(&set->r[i]);
    }
    set->n = n;
    pl_free(f.labels);
    pl_free(f.table);
    return rc;
}

void tui_agree_set_release(struct tui_agree_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        pl_free(set->r[i].texts);
    pl_free(set->r);
    io_arena_release(&set->arena);
    memset(set, 0, sizeof *set);
}

/* ---- units ---- */

static bool same_unit(const struct tui_agree_rating *x, const struct tui_agree_rating *y)
{
    if (x->k != y->k || strcmp(x->id, y->id) != 0 || strcmp(x->prompt, y->prompt) != 0)
        return false;
    for (int i = 0; i < x->k; i++)
        if (strcmp(x->texts[i], y->texts[i]) != 0)
            return false;
    return true;
}

static uint64_t unit_hash(const struct tui_agree_rating *x)
{
    uint64_t h = mix(mix(1469598103934665603ull, x->id), x->prompt);
    for (int i = 0; i < x->k; i++)
        h = mix(h, x->texts[i]);
    return h;
}

struct agree_build {
    const struct tui_agree_set *set;
    long *unit_of; /* [set->n] unit of each rating */
    long *first;   /* [n_units] a rating of each unit */
    long n_units;
    long *rating; /* [n_units * n_annotators] the rating of (unit, annotator), or -1 */
    int *ann;     /* [set->n] annotator of each rating */
    double *v;    /* reliability matrix */
};

static int annotator_of(struct tui_agree *g, const char *name, int *out)
{
    for (int i = 0; i < g->n_annotators; i++)
        if (strcmp(g->annotators[i], name) == 0) {
            *out = i;
            return PL_OK;
        }
    char **a = pl_realloc(g->annotators, ((size_t)g->n_annotators + 1) * sizeof *a);
    if (!a)
        return PL_ENOMEM;
    g->annotators = a;
    if (!(a[g->n_annotators] = pl_strdup(name)))
        return PL_ENOMEM;
    *out = g->n_annotators++;
    return PL_OK;
}

/* Units, annotators and each (unit, annotator)'s ranking. */
static int build_units(struct tui_agree *g, struct agree_build *b)
{
    const struct tui_agree_set *set = b->set;
    size_t cap = 64;
    while (cap < 2 * set->n)
        cap *= 2;
    long *table = pl_malloc(cap * sizeof *table);
    if (!table)
        return PL_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        table[i] = -1;
    int rc = PL_OK;
    for (size_t i = 0; rc == PL_OK && i < set->n; i++) {
        const struct tui_agree_rating *x = &set->r[i];
        rc = annotator_of(g, x->annotator, &b->ann[i]);
        size_t h = unit_hash(x) & (cap - 1);
        while (table[h] >= 0 && !same_unit(&set->r[b->first[table[h]]], x))
            h = (h + 1) & (cap - 1);
        if (table[h] < 0) {
            table[h] = b->n_units;
            b->first[b->n_units++] = (long)i;
        }
        b->unit_of[i] = table[h];
    }
    pl_free(table);
    if (rc)
        return rc;
    size_t cells = (size_t)b->n_units * (size_t)g->n_annotators;
    b->rating = pl_malloc((cells ? cells : 1) * sizeof *b->rating);
    if (!b->rating)
        return PL_ENOMEM;
    for (size_t i = 0; i < cells; i++)
        b->rating[i] = -1;
    for (size_t i = 0; i < set->n; i++) {
        long *r = &b->rating[(size_t)b->unit_of[i] * (size_t)g->n_annotators + (size_t)b->ann[i]];
        g->replaced += *r >= 0;
        *r = (long)i;
    }
    g->n_units = b->n_units;
    return PL_OK;
}

/* The row of annotators a and b (b < 0: every annotator, the overall row's alpha). */
static int agree_row(struct tui_agree *g, struct agree_build *b, int a, int c,
                     struct tui_agree_row *row)
{
    int na = g->n_annotators;
    int coders = c < 0 ? na : 2;
    size_t nv = 0;
    double tau_sum = 0;
    memset(row, 0, sizeof *row);
    for (long u = 0; u < b->n_units; u++) {
        int k = b->set->r[b->first[u]].k;
        const long *r = &b->rating[(size_t)u * (size_t)na];
        /* The pairs of annotators this row counts for this unit. */
        for (int x = c < 0 ? 0 : a; x < (c < 0 ? na : a + 1); x++)
            for (int y = c < 0 ? x + 1 : c; y < (c < 0 ? na : c + 1); y++) {
                if (r[x] < 0 || r[y] < 0)
                    continue;
                const int *la = b->set->r[r[x]].level, *lb = b->set->r[r[y]].level;
                row->units++;
                tui_agree_pairs(la, lb, k, &row->pairs, &row->agree);
                double t = tui_agree_tau_b(la, lb, k);
                if (!isnan(t)) {
                    tau_sum += t;
                    row->tau_units++;
                }
            }
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < coders; j++) {
                int who = c < 0 ? j : j == 0 ? a : c;
                double x = r[who] >= 0 ? b->set->r[r[who]].level[i] : NAN;
                b->v[nv * (size_t)coders + (size_t)j] = x;
            }
            nv++;
        }
    }
    row->tau = row->tau_units ? tau_sum / (double)row->tau_units : NAN;
    struct pl_err err;
    return tui_agree_alpha(b->v, nv, coders, &row->alpha, &err);
}

int tui_agree_init(struct tui_agree *g, const struct tui_agree_set *set, struct pl_err *err)
{
    memset(g, 0, sizeof *g);
    size_t n = set->n ? set->n : 1;
    struct agree_build b = {.set = set};
    b.unit_of = pl_malloc(n * sizeof *b.unit_of);
    b.first = pl_malloc(n * sizeof *b.first);
    b.ann = pl_malloc(n * sizeof *b.ann);
    int rc = b.unit_of && b.first && b.ann ? build_units(g, &b) : PL_ENOMEM;
    size_t cells = 0;
    for (long u = 0; rc == PL_OK && u < b.n_units; u++)
        cells += (size_t)set->r[b.first[u]].k;
    int na = g->n_annotators;
    if (rc == PL_OK) {
        b.v = pl_malloc((cells * (size_t)(na > 2 ? na : 2) + 1) * sizeof *b.v);
        g->rows = pl_malloc(((size_t)na * (size_t)na / 2 + 1) * sizeof *g->rows);
        rc = b.v && g->rows ? PL_OK : PL_ENOMEM;
    }
    for (int a = 0; rc == PL_OK && a < na; a++)
        for (int c = a + 1; rc == PL_OK && c < na; c++) {
            struct tui_agree_row *row = &g->rows[g->n_rows];
            rc = agree_row(g, &b, a, c, row);
            if (rc == PL_OK && row->units > 0) {
                row->a = g->annotators[a];
                row->b = g->annotators[c];
                g->n_rows++;
            }
        }
    if (rc == PL_OK)
        rc = agree_row(g, &b, 0, -1, &g->rows[g->n_rows++]);
    pl_free(b.unit_of);
    pl_free(b.first);
    pl_free(b.ann);
    pl_free(b.rating);
    pl_free(b.v);
    return rc ? pl_oom(err, "agreement") : PL_OK;
}

void tui_agree_release(struct tui_agree *g)
{
    for (int i = 0; g->annotators && i < g->n_annotators; i++)
        pl_free(g->annotators[i]);
    pl_free(g->annotators);
    pl_free(g->rows);
    memset(g, 0, sizeof *g);
}
