/* calib: calibration of multiple-choice answers (DESIGN.md section 6): a question's confidence
 * is the softmax of its choices' log-likelihoods divided by a temperature, its prediction the
 * most likely choice (the first of equals), and then
 *   accuracy    share of questions predicted right
 *   ece         expected calibration error over 15 equal-width confidence bins (b/15, (b+1)/15]:
 *               sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|
 *   ece_em      the same over 10 equal-mass bins: questions sorted by confidence (stable) and cut
 *               into 10 runs of floor((b+1) n / 10) - floor(b n / 10) (HELM's ECE_em)
 *   mce         the largest |accuracy - confidence| of a non-empty equal-width bin
 *   brier       mean over questions of sum over choices (p_c - [c is the answer])^2
 *   nll         mean of -log p(answer)
 * Each statistic is an eval_stat_fn over a `struct eval_calib` (eval/results.h), so it takes a
 * bootstrap interval. */
#ifndef EVAL_CALIB_H
#define EVAL_CALIB_H

#include "model/pl.h"

enum { EVAL_ECE_BINS = 15, EVAL_ECE_EM_BINS = 10 };

/* Per question, at one temperature. */
struct eval_calib {
    int n;
    double *conf, *correct, *nll, *brier; /* [n] */
};

/* Questions i < n have choices ll[off[i], off[i + 1]) (log-likelihoods, >= 1 choice each) and
 * answer[i] in [0, off[i + 1] - off[i]). Fill c at temperature t > 0 (c zeroed first,
 * releasable on failure). Errors: PL_ENOMEM. */
int eval_calib_init(struct eval_calib *c, const double *ll, const int *off, const int *answer,
                    int n, double t, struct pl_err *err);
void eval_calib_release(struct eval_calib *c);

double eval_calib_accuracy(const void *calib, const int *idx, int n);
double eval_calib_ece(const void *calib, const int *idx, int n);
double eval_calib_ece_em(const void *calib, const int *idx, int n);
double eval_calib_mce(const void *calib, const int *idx, int n);
double eval_calib_brier(const void *calib, const int *idx, int n);
double eval_calib_nll(const void *calib, const int *idx, int n);

/* The reliability diagram over all questions: per equal-width bin b < EVAL_ECE_BINS, count[b],
 * mean confidence conf[b] and accuracy acc[b] (NAN for an empty bin). */
void eval_calib_reliability(const struct eval_calib *c, long count[EVAL_ECE_BINS],
                            double conf[EVAL_ECE_BINS], double acc[EVAL_ECE_BINS]);

/* The temperature in [1e-3, 1e3] that minimises the mean NLL of questions idx[0, n) (golden-
 * section search on log(1 / t): the NLL is convex in 1 / t), or 1 when n is 0. */
double eval_calib_fit_temperature(const double *ll, const int *off, const int *answer,
                                  const int *idx, int n);

/* Softmax of x[0, k) / t into p (max subtracted first). */
void eval_softmax(const double *x, int k, double t, double *p);

#endif
