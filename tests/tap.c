#define _POSIX_C_SOURCE 200809L
#include "tap.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int planned = -1;
static int ran;
static int failed;
static const char *todo_why;

void tap_plan(int n)
{
    planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

void tap_skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fflush(stdout);
    exit(0);
}

static int vreport(int pass, const char *fmt, va_list ap)
{
    ran++;
    printf("%sok %d - ", pass ? "" : "not ", ran);
    vprintf(fmt, ap);
    if (todo_why)
        printf(" # TODO %s", todo_why);
    printf("\n");
    if (!pass && !todo_why)
        failed++;
    todo_why = NULL;
    fflush(stdout);
    return pass;
}

int tap_ok(int pass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(pass, fmt, ap);
    va_end(ap);
    return pass;
}

int tap_is_int(long got, long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int pass = vreport(got == want, fmt, ap);
    va_end(ap);
    if (!pass)
        tap_diag("     got: %ld\n    want: %ld", got, want);
    return pass;
}

int tap_is_str(const char *got, const char *want, const char *fmt, ...)
{
    int same = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);
    va_list ap;
    va_start(ap, fmt);
    int pass = vreport(same, fmt, ap);
    va_end(ap);
    if (!pass)
        tap_diag("     got: '%s'\n    want: '%s'", got ? got : "(null)", want ? want : "(null)");
    return pass;
}

int tap_is_float(double got, double want, double tol, const char *fmt, ...)
{
    int pass = isfinite(got) && fabs(got - want) <= tol;
    va_list ap;
    va_start(ap, fmt);
    vreport(pass, fmt, ap);
    va_end(ap);
    if (!pass)
        tap_diag("     got: %.9g\n    want: %.9g (tolerance %.3g)", got, want, tol);
    return pass;
}

void tap_skip(int n, const char *why)
{
    for (int i = 0; i < n; i++) {
        ran++;
        printf("ok %d # skip %s\n", ran, why);
    }
    fflush(stdout);
}

void tap_todo(const char *why)
{
    todo_why = why;
}

void tap_diag(const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        printf("# %s\n", line);
    fflush(stdout);
}

int tap_done(void)
{
    /* A program that ran nothing proves nothing: "1..0" would read as a skip to prove. */
    if (ran == 0)
        tap_ok(0, "the program ran at least one test");
    if (planned < 0)
        printf("1..%d\n", ran);
    else if (planned != ran)
        tap_diag("planned %d tests but ran %d", planned, ran);
    fflush(stdout);
    return failed || (planned >= 0 && planned != ran) ? 1 : 0;
}

const char *tap_shared_datasets(void)
{
    static char path[4096];
    const char *env = getenv("PLUMB_SHARED_DATASETS");
    const char *candidates[] = {env, "../shared/datasets", "../../shared/datasets"};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        struct stat st;
        if (candidates[i] && stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(path, sizeof path, "%s", candidates[i]);
            return path;
        }
    }
    return NULL;
}
