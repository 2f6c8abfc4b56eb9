/* tap: a small Test Anything Protocol library for `prove`. */
#ifndef TAP_H
#define TAP_H

void tap_plan(int n);
void tap_skip_all(const char *why);
/* Each returns its pass/fail as 1/0 and prints one TAP line. */
int tap_ok(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tap_is_int(long got, long want, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int tap_is_str(const char *got, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int tap_is_float(double got, double want, double tol, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Emit n "ok # skip why" lines. */
void tap_skip(int n, const char *why);
/* Mark the next test as TODO (its failure does not count). */
void tap_todo(const char *why);
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the plan if none was given; returns the exit status (0 when all passed). A program
 * that ran no test at all fails (tap_skip_all is the way to skip a whole program). */
int tap_done(void);

/* Directory of the shared public datasets (../shared/datasets from the repo
 * root, or $PLUMB_SHARED_DATASETS); NULL when absent. */
const char *tap_shared_datasets(void);

#endif
