/* args: what every plumb command shares: declarative option tables, usage and `--help`, the
 * engine options, error reporting and exit status.
 *
 * The command layer (cmd/, prefix cmd_) is the only code that reads argv, prints errors and
 * picks an exit status: 0 ok, 1 a runtime or data error (whatever the command), 2 a usage error
 * (unknown option, missing or malformed value, missing required option), which names the
 * option: "plumb sft: unknown option '--stpes'", "plumb sft: option '--lr': '100' is not a
 * number in [1e-12, 10]", "plumb score: option '--model' needs a value". */
#ifndef CMD_ARGS_H
#define CMD_ARGS_H

#include "model/pl.h"

#include <stdbool.h>
#include <stdint.h>

enum cmd_type {
    CMD_STR,   /* const char ** */
    CMD_INT,   /* int *, an integer in [lo, hi] */
    CMD_LONG,  /* long *, an integer in [lo, hi] */
    CMD_U64,   /* uint64_t *, a non-negative integer (seeds) */
    CMD_REAL,  /* double *, a finite number in [lo, hi] */
    CMD_FLOAT, /* float *, a finite number in [lo, hi] */
    CMD_FLAG,  /* bool *, takes no value */
    CMD_LIST,  /* struct cmd_list *: "--data a b" or "--data a --data b", each value appended */
};

/* Values of a repeatable option (--stop S --stop T, --data A --data B). */
#define CMD_LIST_MAX 16
struct cmd_list {
    const char *v[CMD_LIST_MAX];
    int n;
};

struct cmd_opt {
    const char *name; /* "--steps", or a short "-k" */
    enum cmd_type type;
    void *dst; /* typed as above; written only when the option is given */
    double lo, hi;
    const char *meta; /* the value's name in usage: "N", "DIR", "FILE" */
    const char *help; /* one line; NULL hides the option from --help */
    bool required;
};

struct cmd_spec {
    const char *name;    /* "sft" */
    const char *summary; /* one line for `plumb help` and the top of --help */
    const struct cmd_opt *opts;
    int n_opts;
    /* Extra checks after parsing (one of two options, say): NULL, or a usage message. */
    const char *(*check)(void *ctx);
    void *ctx;
};

/* Parse argv[1..argc) (argv[0] is the command's name) against spec: "--name value",
 * "--name=value", flags alone. Returns CMD_PARSED, or the exit status the command returns at
 * once: 0 after printing usage to stdout for -h or --help, 2 after printing a usage error to
 * stderr. */
enum { CMD_PARSED = -1 };
int cmd_parse(const struct cmd_spec *spec, int argc, char **argv);

/* A usage error found after parsing (an output that is also an input, say): print "plumb
 * NAME: <message> (see 'plumb NAME --help')" to stderr and return 2. */
int cmd_usage(const struct cmd_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "plumb: <err->msg>" (or code's text) to stderr; the exit status for code: 2 for
 * PL_EUSAGE, 1 for every other error. */
int cmd_fail(const struct pl_err *err, int code);

/* --threads N and --blis-arch NAME, taken by every command that runs a model: put
 * CMD_ENGINE_OPTS(&e) in the option table and call cmd_engine_start(&e) after parsing. */
struct cmd_engine {
    int threads;      /* 0: all cores */
    const char *arch; /* NULL: the fastest kernel set the CPU runs (or PLUMB_BLIS_ARCH) */
};
#define CMD_ENGINE_OPTS(e)                                                                         \
    {"--threads", CMD_INT, &(e)->threads, 1, 4096, "N", "threads for BLIS and OpenMP (all cores)", \
     false},                                                                                       \
    {                                                                                              \
        "--blis-arch", CMD_STR, &(e)->arch, 0, 0, "NAME",                                          \
            "BLIS kernel set (default: the fastest the CPU runs)", false                           \
    }
/* Start BLIS with e's settings; 0, or an exit status after printing the error. */
int cmd_engine_start(const struct cmd_engine *e);

/* Existing outputs: a command replaces an output file whole (--out, --details) only when it is
 * missing or empty, when --force is given, or when it is recognisably the command's own earlier
 * output, so that a rerun (make) replaces it but a file of anything else is never lost: every
 * JSON value in it (one a line, or the whole file as one value) must pass `mine(value, ctx)`.
 * Otherwise this prints "plumb NAME: 'PATH' exists and is not plumb NAME's output; --force
 * replaces it" and returns false: the command exits 1. Appending commands (sample, critique,
 * label) resume their file instead and do not call this. */
struct cJSON;
bool cmd_may_replace(const struct cmd_spec *spec, const char *path, bool force,
                     bool (*mine)(const struct cJSON *value, const void *ctx), const void *ctx);

/* Path of a public dataset: $PLUMB_SHARED_DATASETS/rel, else ../shared/datasets/rel, in a
 * buffer of n bytes; false when it does not fit. */
bool cmd_dataset_path(char *out, size_t n, const char *rel);

/* plumb's version, for run.json and results files. */
#define CMD_VERSION "0.1.0"

#endif
