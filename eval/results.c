#include "results.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- SHA-256 (FIPS 180-4) ---- */

struct sha256 {
    uint32_t h[8];
    uint8_t block[64];
    size_t fill;
    uint64_t bytes;
};

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha_block(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(v, s->h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = v[7] + (rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25)) +
                      ((v[4] & v[5]) ^ (~v[4] & v[6])) + sha_k[i] + w[i];
        uint32_t t2 = (rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22)) +
                      ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof *v);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        s->h[i] += v[i];
}

static void sha_init(struct sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->fill = 0;
    s->bytes = 0;
}

static void sha_add(struct sha256 *s, const uint8_t *p, size_t n)
{
    s->bytes += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == 64) {
            sha_block(s, s->block);
            s->fill = 0;
        }
    }
}

static void sha_hex(struct sha256 *s, char hex[65])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80}, len[8];
    size_t padn = (s->fill < 56 ? 56 : 120) - s->fill;
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_add(s, pad, padn);
    sha_add(s, len, 8);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

void eval_sha256(const void *data, size_t n, char hex[65])
{
    struct sha256 s;
    sha_init(&s);
    sha_add(&s, data, n);
    sha_hex(&s, hex);
}

int eval_sha256_file(const char *path, char hex[65], struct pl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pl_errf(err, errno == ENOENT ? PL_ENOTFOUND : PL_EIO, "cannot open '%s': %s", path,
                       strerror(errno));
    struct sha256 s;
    sha_init(&s);
    uint8_t buf[1 << 16];
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            return pl_errf(err, PL_EIO, "cannot read '%s': %s", path, strerror(e));
        }
        sha_add(&s, buf, (size_t)got);
    }
    close(fd);
    sha_hex(&s, hex);
    return PL_OK;
}

/* ---- bootstrap ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0, n), interpolated linearly between order statistics. */
static double quantile(const double *v, int n, double q)
{
    double at = q * (n - 1);
    int lo = (int)floor(at);
    int hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (at - lo) * (v[hi] - v[lo]);
}

int eval_bootstrap(int n, eval_stat_fn f, const void *ctx, uint64_t seed, int reps, double ci[2],
                   struct pl_err *err)
{
    ci[0] = ci[1] = NAN;
    if (n <= 0 || reps <= 0)
        return PL_OK;
    int *idx = pl_malloc((size_t)n * sizeof *idx);
    double *stat = pl_malloc((size_t)reps * sizeof *stat);
    if (!idx || !stat) {
        pl_free(idx);
        pl_free(stat);
        return pl_oom(err, "bootstrap");
    }
    struct pl_rng r;
    pl_rng_seed(&r, seed);
    int kept = 0;
    for (int b = 0; b < reps; b++) {
        for (int i = 0; i < n; i++)
            idx[i] = (int)(pl_rng_next(&r) % (uint64_t)n);
        double v = f(ctx, idx, n);
        if (isfinite(v))
            stat[kept++] = v;
    }
    if (kept > 0) {
        qsort(stat, (size_t)kept, sizeof *stat, cmp_double);
        ci[0] = quantile(stat, kept, 0.025);
        ci[1] = quantile(stat, kept, 0.975);
    }
    pl_free(idx);
    pl_free(stat);
    return PL_OK;
}

double eval_ratio_stat(const void *ratio, const int *idx, int n)
{
    const struct eval_ratio *r = ratio;
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += r->num[idx[i]];
        den += r->den[idx[i]];
    }
    return den != 0 ? num / den : NAN;
}

/* ---- the results object ---- */

static cJSON *num_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

int eval_put_num(cJSON *obj, const char *name, double v, struct pl_err *err)
{
    cJSON *x = num_or_null(v);
    if (!x || !cJSON_AddItemToObject(obj, name, x)) {
        cJSON_Delete(x);
        return pl_oom(err, "results");
    }
    return PL_OK;
}

int eval_results_new(cJSON **out, const struct eval_header *h, struct pl_err *err)
{
    char hex[65];
    *out = NULL;
    int rc = eval_sha256_file(h->data, hex, err);
    if (rc)
        return rc;
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "suite", h->suite) &&
              (h->model ? cJSON_AddStringToObject(o, "model", h->model) != NULL
                        : cJSON_AddNullToObject(o, "model") != NULL) &&
              cJSON_AddStringToObject(o, "dataset", h->data) &&
              cJSON_AddStringToObject(o, "sha256", hex) && cJSON_AddNumberToObject(o, "n", h->n) &&
              cJSON_AddObjectToObject(o, "metrics") &&
              cJSON_AddNumberToObject(o, "seed", (double)h->seed) &&
              cJSON_AddNumberToObject(o, "bootstrap", h->reps) &&
              cJSON_AddStringToObject(o, "plumb_version", h->version ? h->version : "");
    if (!ok) {
        cJSON_Delete(o);
        return pl_oom(err, "results");
    }
    *out = o;
    return PL_OK;
}

int eval_put_metric(cJSON *results, const char *name, double value, const double ci[2],
                    struct pl_err *err)
{
    cJSON *metrics = cJSON_GetObjectItemCaseSensitive(results, "metrics");
    cJSON *m = cJSON_CreateObject(), *bounds = cJSON_CreateArray();
    cJSON *v = num_or_null(value), *lo = num_or_null(ci[0]), *hi = num_or_null(ci[1]);
    bool ok = metrics && m && bounds && v && lo && hi;
    if (ok) {
        cJSON_AddItemToArray(bounds, lo);
        cJSON_AddItemToArray(bounds, hi);
        cJSON_AddItemToObject(m, "value", v);
        cJSON_AddItemToObject(m, "ci95", bounds);
        return cJSON_AddItemToObject(metrics, name, m) ? PL_OK : pl_oom(err, "results");
    }
    cJSON_Delete(m);
    cJSON_Delete(bounds);
    cJSON_Delete(v);
    cJSON_Delete(lo);
    cJSON_Delete(hi);
    return pl_oom(err, "results");
}

int eval_put_stat(cJSON *results, const char *name, eval_stat_fn f, const void *ctx, int n,
                  uint64_t seed, int reps, struct pl_err *err)
{
    double ci[2];
    int *all = pl_malloc((size_t)(n > 0 ? n : 1) * sizeof *all);
    if (!all)
        return pl_oom(err, "results");
    for (int i = 0; i < n; i++)
        all[i] = i;
    double value = n > 0 ? f(ctx, all, n) : NAN;
    pl_free(all);
    int rc = eval_bootstrap(n, f, ctx, seed, reps, ci, err);
    return rc ? rc : eval_put_metric(results, name, value, ci, err);
}

int eval_put_ratio(cJSON *results, const char *name, const struct eval_ratio *r, int n,
                   uint64_t seed, int reps, struct pl_err *err)
{
    return eval_put_stat(results, name, eval_ratio_stat, r, n, seed, reps, err);
}

int eval_results_write(struct io_out *o, const cJSON *obj, struct pl_err *err)
{
    char *text = cJSON_Print(obj);
    if (!text)
        return pl_oom(err, "results");
    size_t n = strlen(text);
    int rc = PL_OK;
    if (fwrite(text, 1, n, o->f) != n || fputc('\n', o->f) == EOF)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", o->path, strerror(errno));
    if (!rc)
        rc = io_out_commit(o, err);
    cJSON_free(text);
    return rc;
}

/* ---- details ---- */

int eval_details_open(struct eval_details *d, const char *path, struct pl_err *err)
{
    memset(d, 0, sizeof *d);
    if (!path)
        return PL_OK;
    d->on = true;
    return io_out_open(&d->out, path, err);
}

int eval_details_put(struct eval_details *d, struct pl_err *err)
{
    int rc = PL_OK;
    pl_buf_str(&d->b, "\n");
    if (d->b.oom)
        rc = pl_oom(err, "details");
    else if (d->on && fwrite(d->b.p, 1, d->b.len, d->out.f) != d->b.len)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", d->out.path, strerror(errno));
    d->b.len = 0;
    return rc;
}

int eval_details_commit(struct eval_details *d, struct pl_err *err)
{
    return d->on ? io_out_commit(&d->out, err) : PL_OK;
}

void eval_details_release(struct eval_details *d)
{
    io_out_abort(&d->out);
    pl_buf_release(&d->b);
}

int eval_details_finish(struct eval_details *d, cJSON *res, cJSON **results, int rc,
                        struct pl_err *err)
{
    if (!rc)
        rc = eval_details_commit(d, err);
    if (rc)
        cJSON_Delete(res);
    else
        *results = res;
    eval_details_release(d);
    return rc;
}
