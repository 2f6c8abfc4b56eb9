#include "calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void eval_softmax(const double *x, int k, double t, double *p)
{
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < k; i++)
        max = x[i] > max ? x[i] : max;
    for (int i = 0; i < k; i++)
        sum += p[i] = exp((x[i] - max) / t);
    for (int i = 0; i < k; i++)
        p[i] /= sum;
}

/* -log softmax(x / t)[a], computed in log space. */
static double nll_of(const double *x, int k, double t, int a)
{
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < k; i++)
        max = x[i] / t > max ? x[i] / t : max;
    for (int i = 0; i < k; i++)
        sum += exp(x[i] / t - max);
    return max + log(sum) - x[a] / t;
}

int eval_calib_init(struct eval_calib *c, const double *ll, const int *off, const int *answer,
                    int n, double t, struct pl_err *err)
{
    memset(c, 0, sizeof *c);
    int kmax = 1;
    for (int i = 0; i < n; i++)
        kmax = off[i + 1] - off[i] > kmax ? off[i + 1] - off[i] : kmax;
    size_t m = (size_t)(n > 0 ? n : 1);
    c->conf = pl_malloc(4 * m * sizeof *c->conf);
    double *p = pl_malloc((size_t)kmax * sizeof *p);
    if (!c->conf || !p) {
        pl_free(p);
        return pl_oom(err, "calibration");
    }
    c->correct = c->conf + m;
    c->nll = c->correct + m;
    c->brier = c->nll + m;
    c->n = n;
    for (int i = 0; i < n; i++) {
        int k = off[i + 1] - off[i];
        const double *x = ll + off[i];
        eval_softmax(x, k, t, p);
        int pred = 0;
        double brier = 0;
        for (int j = 0; j < k; j++) {
            pred = p[j] > p[pred] ? j : pred;
            double y = j == answer[i];
            brier += (p[j] - y) * (p[j] - y);
        }
        c->conf[i] = p[pred];
        c->correct[i] = pred == answer[i];
        c->nll[i] = nll_of(x, k, t, answer[i]);
        c->brier[i] = brier;
    }
    pl_free(p);
    return PL_OK;
}

void eval_calib_release(struct eval_calib *c)
{
    pl_free(c->conf);
    memset(c, 0, sizeof *c);
}

static double mean_of(const double *v, const int *idx, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[idx[i]];
    return n > 0 ? s / n : NAN;
}

double eval_calib_accuracy(const void *calib, const int *idx, int n)
{
    return mean_of(((const struct eval_calib *)calib)->correct, idx, n);
}

double eval_calib_brier(const void *calib, const int *idx, int n)
{
    return mean_of(((const struct eval_calib *)calib)->brier, idx, n);
}

double eval_calib_nll(const void *calib, const int *idx, int n)
{
    return mean_of(((const struct eval_calib *)calib)->nll, idx, n);
}

static int width_bin(double conf)
{
    int b = (int)ceil(conf * EVAL_ECE_BINS) - 1;
    return b < 0 ? 0 : b >= EVAL_ECE_BINS ? EVAL_ECE_BINS - 1 : b;
}

/* Equal-width bins: sums of confidence and correctness and counts. */
static void width_sums(const struct eval_calib *c, const int *idx, int n, double *conf, double *acc,
                       double *count)
{
    for (int b = 0; b < EVAL_ECE_BINS; b++)
        conf[b] = acc[b] = count[b] = 0;
    for (int i = 0; i < n; i++) {
        int b = width_bin(c->conf[idx[i]]);
        conf[b] += c->conf[idx[i]];
        acc[b] += c->correct[idx[i]];
        count[b] += 1;
    }
}

double eval_calib_ece(const void *calib, const int *idx, int n)
{
    double conf[EVAL_ECE_BINS], acc[EVAL_ECE_BINS], count[EVAL_ECE_BINS], e = 0;
    if (n == 0)
        return NAN;
    width_sums(calib, idx, n, conf, acc, count);
    for (int b = 0; b < EVAL_ECE_BINS; b++)
        e += fabs(acc[b] - conf[b]) / n;
    return e;
}

double eval_calib_mce(const void *calib, const int *idx, int n)
{
    double conf[EVAL_ECE_BINS], acc[EVAL_ECE_BINS], count[EVAL_ECE_BINS], e = 0;
    if (n == 0)
        return NAN;
    width_sums(calib, idx, n, conf, acc, count);
    for (int b = 0; b < EVAL_ECE_BINS; b++)
        if (count[b] > 0)
            e = fmax(e, fabs(acc[b] - conf[b]) / count[b]);
    return e;
}

struct by_conf {
    double conf, correct;
    int i;
};

static int cmp_conf(const void *a, const void *b)
{
    const struct by_conf *x = a, *y = b;
    if (x->conf != y->conf)
        return x->conf < y->conf ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

double eval_calib_ece_em(const void *calib, const int *idx, int n)
{
    const struct eval_calib *c = calib;
    if (n == 0)
        return NAN;
    struct by_conf *v = pl_malloc((size_t)n * sizeof *v);
    if (!v)
        return NAN;
    for (int i = 0; i < n; i++)
        v[i] = (struct by_conf){c->conf[idx[i]], c->correct[idx[i]], i};
    qsort(v, (size_t)n, sizeof *v, cmp_conf);
    double e = 0;
    for (int b = 0; b < EVAL_ECE_EM_BINS; b++) {
        long lo = (long)b * n / EVAL_ECE_EM_BINS, hi = (long)(b + 1) * n / EVAL_ECE_EM_BINS;
        double conf = 0, acc = 0;
        for (long i = lo; i < hi; i++) {
            conf += v[i].conf;
            acc += v[i].correct;
        }
        e += fabs(acc - conf) / n;
    }
    pl_free(v);
    return e;
}

void eval_calib_reliability(const struct eval_calib *c, long count[EVAL_ECE_BINS],
                            double conf[EVAL_ECE_BINS], double acc[EVAL_ECE_BINS])
{
    double cnt[EVAL_ECE_BINS];
    for (int b = 0; b < EVAL_ECE_BINS; b++)
        conf[b] = acc[b] = cnt[b] = 0;
    for (int i = 0; i < c->n; i++) {
        int b = width_bin(c->conf[i]);
        conf[b] += c->conf[i];
        acc[b] += c->correct[i];
        cnt[b] += 1;
    }
    for (int b = 0; b < EVAL_ECE_BINS; b++) {
        count[b] = (long)cnt[b];
        conf[b] = cnt[b] > 0 ? conf[b] / cnt[b] : NAN;
        acc[b] = cnt[b] > 0 ? acc[b] / cnt[b] : NAN;
    }
}

static double mean_nll(const double *ll, const int *off, const int *answer, const int *idx, int n,
                       double t)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        int q = idx[i];
        s += nll_of(ll + off[q], off[q + 1] - off[q], t, answer[q]);
    }
    return s / n;
}

double eval_calib_fit_temperature(const double *ll, const int *off, const int *answer,
                                  const int *idx, int n)
{
    if (n == 0)
        return 1;
    /* u = log(1 / t) in [log 1e-3, log 1e3]. */
    const double g = (sqrt(5.0) - 1) / 2;
    double a = log(1e-3), b = log(1e3);
    double x1 = b - g * (b - a), x2 = a + g * (b - a);
    double f1 = mean_nll(ll, off, answer, idx, n, exp(-x1));
    double f2 = mean_nll(ll, off, answer, idx, n, exp(-x2));
    for (int it = 0; it < 80; it++) {
        if (f1 <= f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = mean_nll(ll, off, answer, idx, n, exp(-x1));
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = mean_nll(ll, off, answer, idx, n, exp(-x2));
        }
    }
    return exp(-(a + b) / 2);
}
