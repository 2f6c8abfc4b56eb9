/* results: what every eval suite shares (DESIGN.md section 6): the results object with its
 * header, metrics with seeded bootstrap confidence intervals, the data file's SHA-256, and the
 * details file.
 *
 * A results object is cJSON (cJSON's allocation hooks are plumb's once io.h has parsed JSON,
 * and eval_results_new makes sure of it):
 *   {"suite", "model", "dataset", "sha256", "n", "metrics": {NAME: {"value", "ci95": [lo, hi]},
 *    ...}, "seed", "bootstrap", "plumb_version", ...}
 * A value that cannot be computed (no items of a kind) is null, as are its bounds.
 *
 * Bootstrap: `reps` resamples of the n items with replacement, drawn from an RNG seeded with
 * `seed` alone, so a seed gives the same interval for the same data whatever else ran; the
 * interval is the 2.5th and 97.5th percentiles (linear interpolation) of the statistic over
 * the resamples whose statistic is finite. */
#ifndef EVAL_RESULTS_H
#define EVAL_RESULTS_H

#include "model/io.h"
#include "model/pl.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

enum { EVAL_BOOTSTRAP_REPS = 1000 };

/* The SHA-256 of a file's bytes as 64 lowercase hex digits in hex[65]. Errors: those of
 * opening and reading (PL_ENOTFOUND, PL_EIO). */
int eval_sha256_file(const char *path, char hex[65], struct pl_err *err);
/* The same of data[0, n). */
void eval_sha256(const void *data, size_t n, char hex[65]);

/* A statistic of the items idx[0, n) (indices may repeat); NAN when undefined. */
typedef double (*eval_stat_fn)(const void *ctx, const int *idx, int n);

/* The 95% percentile interval of f over `reps` resamples of items 0..n-1 (seeded as above) in
 * ci[0], ci[1]; NAN, NAN when n is 0 or no resample gives a finite value. Errors: PL_ENOMEM. */
int eval_bootstrap(int n, eval_stat_fn f, const void *ctx, uint64_t seed, int reps, double ci[2],
                   struct pl_err *err);

/* A ratio of sums over items: sum num[i] / sum den[i] (NAN when the denominators sum to 0). */
struct eval_ratio {
    const double *num, *den; /* [n items] */
};
double eval_ratio_stat(const void *ratio, const int *idx, int n);

/* What the header of a results object says. */
struct eval_header {
    const char *suite, *model; /* model may be NULL (written as null) */
    const char *data;          /* the data file: its path and SHA-256 are written */
    long n;                    /* items evaluated */
    uint64_t seed;
    int reps;            /* bootstrap resamples */
    const char *version; /* plumb's */
};
/* A new results object (*out, the caller's: cJSON_Delete) with h's fields and an empty
 * "metrics". Errors: those of eval_sha256_file; PL_ENOMEM. */
int eval_results_new(cJSON **out, const struct eval_header *h, struct pl_err *err);

/* Add metrics.NAME = {"value", "ci95": [lo, hi]}. Errors: PL_ENOMEM. */
int eval_put_metric(cJSON *results, const char *name, double value, const double ci[2],
                    struct pl_err *err);
/* Add metric NAME = sum num / sum den over n items with its bootstrap interval. */
int eval_put_ratio(cJSON *results, const char *name, const struct eval_ratio *r, int n,
                   uint64_t seed, int reps, struct pl_err *err);
/* Add metric NAME = f over all n items with its bootstrap interval. */
int eval_put_stat(cJSON *results, const char *name, eval_stat_fn f, const void *ctx, int n,
                  uint64_t seed, int reps, struct pl_err *err);

/* Add a number (null when not finite) or an object member. Errors: PL_ENOMEM. */
int eval_put_num(cJSON *obj, const char *name, double v, struct pl_err *err);

/* Write obj as indented JSON to o (opened with io_out_open before the work, so that an
 * unwritable path fails early) and commit it. Errors: PL_EIO, PL_ENOMEM. */
int eval_results_write(struct io_out *o, const cJSON *obj, struct pl_err *err);

/* What the scoring suites (mc, truthfulqa, crows, bbq, truthfulqa-gen) share. */
struct eval_common {
    const char *model;   /* model folder */
    const char *data;    /* the data file */
    const char *details; /* JSONL, one line per item; NULL: none */
    long limit;          /* the first `limit` items; 0: all */
    int batch;           /* KV slots, or rows of a full forward (>= 2) */
    int mode;            /* enum eval_score_mode (eval/choice.h) */
    uint64_t seed;       /* of the bootstrap */
    int reps;            /* bootstrap resamples */
    const char *version; /* plumb's */
    FILE *progress;      /* stderr, or NULL */
};

/* The details file: one JSON object a line, written whole or not at all (io_out). The zeroed
 * struct (path NULL) is a details file that writes nothing. */
struct eval_details {
    struct io_out out;
    struct pl_buf b; /* the line being built: callers add to it and end it with eval_details_put */
    bool on;
};
/* Open path (NULL: details off). */
int eval_details_open(struct eval_details *d, const char *path, struct pl_err *err);
/* Write d->b as one line and empty it. Errors: PL_ENOMEM (the line's growth failed), PL_EIO. */
int eval_details_put(struct eval_details *d, struct pl_err *err);
/* Commit the file (nothing when off). */
int eval_details_commit(struct eval_details *d, struct pl_err *err);
/* Drop an uncommitted file; safe twice and on a zeroed struct. */
void eval_details_release(struct eval_details *d);

/* The end of a suite's run: when rc is PL_OK, commit the details and hand res to *results (on a
 * failed commit, or any earlier error, res is freed instead); then release d. Returns the final
 * code. */
int eval_details_finish(struct eval_details *d, cJSON *res, cJSON **results, int rc,
                        struct pl_err *err);

#endif
