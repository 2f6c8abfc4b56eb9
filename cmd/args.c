#include "args.h"

#include "model/io.h"
#include "model/tensor.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Options given so far are tracked in one word: a table is a few dozen options at most. */
#define MAX_OPTS 64

static void usage_errorv(const struct cmd_spec *spec, const char *fmt, va_list ap)
{
    fprintf(stderr, "plumb %s: ", spec->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'plumb %s --help')\n", spec->name);
}

int cmd_usage(const struct cmd_spec *spec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usage_errorv(spec, fmt, ap);
    va_end(ap);
    return 2;
}

/* A range bound as people write it: 4096, 0.99, 1e-12 (not 1e+09 for a billion). */
static void fmt_bound(char *out, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%g", v);
}

static const char *type_meta(const struct cmd_opt *o)
{
    if (o->meta)
        return o->meta;
    switch (o->type) {
    case CMD_INT:
    case CMD_LONG:
    case CMD_U64:
        return "N";
    case CMD_REAL:
    case CMD_FLOAT:
        return "X";
    default:
        return "VALUE";
    }
}

static void print_usage(const struct cmd_spec *spec)
{
    printf("plumb %s: %s\n\nusage: plumb %s", spec->name, spec->summary, spec->name);
    int width = (int)strlen("-h, --help");
    for (int i = 0; i < spec->n_opts; i++) {
        const struct cmd_opt *o = &spec->opts[i];
        int w = (int)strlen(o->name) + (o->type == CMD_FLAG ? 0 : 1 + (int)strlen(type_meta(o)));
        if (o->help && w > width)
            width = w;
        if (o->required)
            printf(" %s %s", o->name, type_meta(o));
    }
    printf(" [options]\n\noptions:\n");
    for (int i = 0; i < spec->n_opts; i++) {
        const struct cmd_opt *o = &spec->opts[i];
        if (!o->help)
            continue;
        char left[256];
        if (o->type == CMD_FLAG)
            snprintf(left, sizeof left, "%s", o->name);
        else
            snprintf(left, sizeof left, "%s %s", o->name, type_meta(o));
        printf("  %-*s  %s%s%s\n", width, left, o->help, o->required ? " (required)" : "",
               o->type == CMD_LIST ? " (one or more)" : "");
    }
    printf("  %-*s  show this help\n", width, "-h, --help");
}

static const struct cmd_opt *find_opt(const struct cmd_spec *spec, const char *name, size_t n)
{
    for (int i = 0; i < spec->n_opts; i++)
        if (strlen(spec->opts[i].name) == n && strncmp(spec->opts[i].name, name, n) == 0)
            return &spec->opts[i];
    return NULL;
}

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* Whether a is an option of spec or help: a value never is (give "--stop=--model" for that),
 * while "-5" or "-" can be one. */
static bool is_option(const struct cmd_spec *spec, const char *a)
{
    if (is_help(a))
        return true;
    if (a[0] != '-')
        return false;
    const char *eq = strchr(a, '=');
    return find_opt(spec, a, eq ? (size_t)(eq - a) : strlen(a)) != NULL;
}

static bool parse_integer(const char *v, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno == ERANGE)
        return false;
    *out = x;
    return true;
}

static bool parse_number(const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno == ERANGE || !isfinite(x))
        return false;
    *out = x;
    return true;
}

/* Store value v of option o: 0, or 2 after printing why it is not a valid value. */
static int set_value(const struct cmd_spec *spec, const struct cmd_opt *o, const char *v)
{
    char lo[32], hi[32];
    fmt_bound(lo, sizeof lo, o->lo);
    fmt_bound(hi, sizeof hi, o->hi);
    long n;
    double x;
    switch (o->type) {
    case CMD_STR:
        *(const char **)o->dst = v;
        return 0;
    case CMD_INT:
    case CMD_LONG:
        if (!parse_integer(v, &n) || n < o->lo || n > o->hi)
            return cmd_usage(spec, "option '%s': '%s' is not an integer in [%s, %s]", o->name, v,
                             lo, hi);
        if (o->type == CMD_INT)
            *(int *)o->dst = (int)n;
        else
            *(long *)o->dst = n;
        return 0;
    case CMD_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || *v == '-' || *v == '+' || errno == ERANGE)
            return cmd_usage(spec, "option '%s': '%s' is not a non-negative integer", o->name, v);
        *(uint64_t *)o->dst = (uint64_t)u;
        return 0;
    }
    case CMD_REAL:
    case CMD_FLOAT:
        if (!parse_number(v, &x) || x < o->lo || x > o->hi)
            return cmd_usage(spec, "option '%s': '%s' is not a number in [%s, %s]", o->name, v, lo,
                             hi);
        if (o->type == CMD_REAL)
            *(double *)o->dst = x;
        else
            *(float *)o->dst = (float)x;
        return 0;
    case CMD_LIST: {
        struct cmd_list *l = o->dst;
        if (l->n == CMD_LIST_MAX)
            return cmd_usage(spec, "option '%s': at most %d values", o->name, CMD_LIST_MAX);
        l->v[l->n++] = v;
        return 0;
    }
    case CMD_FLAG:
        *(bool *)o->dst = true;
        return 0;
    }
    pl_assert_fail("a known option type", __FILE__, __LINE__);
}

int cmd_parse(const struct cmd_spec *spec, int argc, char **argv)
{
    PL_ASSERT(spec->n_opts <= MAX_OPTS);
    uint64_t given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            print_usage(spec);
            return 0;
        }
        if (a[0] != '-')
            return cmd_usage(spec, "unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct cmd_opt *o = find_opt(spec, a, len);
        if (!o)
            return cmd_usage(spec, "unknown option '%.*s'", (int)len, a);
        given |= 1ull << (o - spec->opts);
        if (o->type == CMD_FLAG && eq)
            return cmd_usage(spec, "option '%s' takes no value", o->name);
        const char *v = eq ? eq + 1 : "";
        if (o->type != CMD_FLAG && !eq) {
            /* "--threads -5" is a bad value, "--model --input x" a missing one. */
            if (i + 1 == argc || is_option(spec, argv[i + 1]))
                return cmd_usage(spec, "option '%s' needs a value", o->name);
            v = argv[++i];
        }
        if (set_value(spec, o, v))
            return 2;
        /* A list takes the words after it too, up to the next option: "--data a.jsonl b.jsonl". */
        while (o->type == CMD_LIST && !eq && i + 1 < argc && argv[i + 1][0] != '-')
            if (set_value(spec, o, argv[++i]))
                return 2;
    }
    for (int i = 0; i < spec->n_opts; i++)
        if (spec->opts[i].required && !(given >> i & 1))
            return cmd_usage(spec, "option '%s' is required", spec->opts[i].name);
    const char *why = spec->check ? spec->check(spec->ctx) : NULL;
    if (why)
        return cmd_usage(spec, "%s", why);
    return CMD_PARSED;
}

int cmd_fail(const struct pl_err *err, int code)
{
    if (code == PL_OK)
        return 0;
    fprintf(stderr, "plumb: %s\n", err && err->msg[0] ? err->msg : pl_strerror(code));
    return code == PL_EUSAGE ? 2 : 1;
}

int cmd_engine_start(const struct cmd_engine *e)
{
    struct pl_err err = {0};
    return cmd_fail(&err, tensor_init(e->arch, e->threads, &err));
}

bool cmd_dataset_path(char *out, size_t n, const char *rel)
{
    const char *root = getenv("PLUMB_SHARED_DATASETS");
    if (!root || !*root)
        root = "../shared/datasets";
    int w = snprintf(out, n, "%s/%s", root, rel);
    return w >= 0 && (size_t)w < n;
}

/* Whether every JSON value of the file at path passes mine: one a line, else the whole file as
 * one value (a pretty-printed results file). Unreadable or not JSON: no. */
static bool all_mine(const char *path, bool (*mine)(const struct cJSON *, const void *),
                     const void *ctx)
{
    struct pl_err err;
    struct io_lines l;
    bool lines_ok = io_lines_init(&l, path, &err) == PL_OK, ok = lines_ok;
    const char *line;
    size_t len;
    while (ok && (ok = io_lines_next(&l, &line, &len, &err) == PL_OK) && line) {
        cJSON *v = NULL;
        if (io_blank(line, len))
            continue;
        ok = io_json_parse(line, len, &v) == PL_OK && mine(v, ctx);
        cJSON_Delete(v);
    }
    io_lines_release(&l);
    if (ok || !lines_ok)
        return ok;
    cJSON *whole = NULL;
    ok = io_json_load(path, &whole, &err) == PL_OK && mine(whole, ctx);
    cJSON_Delete(whole);
    return ok;
}

bool cmd_may_replace(const struct cmd_spec *spec, const char *path, bool force,
                     bool (*mine)(const struct cJSON *value, const void *ctx), const void *ctx)
{
    struct stat st;
    if (force || stat(path, &st) != 0 || (S_ISREG(st.st_mode) && st.st_size == 0))
        return true;
    if (S_ISREG(st.st_mode) && all_mine(path, mine, ctx))
        return true;
    fprintf(stderr, "plumb %s: '%s' exists and is not plumb %s's output; --force replaces it\n",
            spec->name, path, spec->name);
    return false;
}
