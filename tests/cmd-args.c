/* cmd-args: option tables parse every form, refuse every bad one with a message naming the option
 * and the value, print --help from the table, and map errors to exit statuses. */
#include "cmd/args.h"
#include "tests/tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char captured[8192];

/* The options of one test command, reset before each parse. */
static struct {
    const char *model, *out;
    int threads;
    long steps;
    uint64_t seed;
    double lr;
    float temp;
    bool resume;
    struct cmd_list stop;
    const char *hidden;
    bool conflict;
} v;

static const char *check(void *ctx)
{
    (void)ctx;
    return v.conflict && v.resume ? "--conflict and --resume exclude each other" : NULL;
}

static const struct cmd_opt opts[] = {
    {"--model", CMD_STR, &v.model, 0, 0, "DIR", "model folder", true},
    {"--out", CMD_STR, &v.out, 0, 0, "DIR", "output folder", false},
    {"--threads", CMD_INT, &v.threads, 1, 4096, "N", "threads", false},
    {"--steps", CMD_LONG, &v.steps, 1, 1e9, "N", "steps to reach", false},
    {"--seed", CMD_U64, &v.seed, 0, 0, "N", "seed", false},
    {"--lr", CMD_REAL, &v.lr, 1e-12, 10, "LR", "peak learning rate", false},
    {"--temperature", CMD_FLOAT, &v.temp, 0, 1e6, "T", "temperature", false},
    {"--resume", CMD_FLAG, &v.resume, 0, 0, NULL, "continue the run", false},
    {"--stop", CMD_LIST, &v.stop, 0, 0, "S", "stop string", false},
    {"--hidden", CMD_STR, &v.hidden, 0, 0, "X", NULL, false},
    {"--conflict", CMD_FLAG, &v.conflict, 0, 0, NULL, "a flag --resume excludes", false},
    {"-k", CMD_INT, &v.threads, 1, 100, "K", "a short option", false},
};
static const struct cmd_spec spec = {
    "sft", "fine-tune", opts, sizeof opts / sizeof *opts, check, NULL,
};

/* Run cmd_parse on the words of line (split at spaces; argv[0] is "sft") with stdout and stderr
 * captured into `captured`. */
static int parse(const char *line)
{
    static char buf[4096];
    char *argv[64];
    int argc = 0;
    argv[argc++] = "sft";
    snprintf(buf, sizeof buf, "%s", line);
    for (char *w = strtok(buf, " "); w && argc < 63; w = strtok(NULL, " "))
        argv[argc++] = w;
    argv[argc] = NULL;
    memset(&v, 0, sizeof v);
    fflush(stdout);
    fflush(stderr);
    char path[] = "/tmp/plumb-args-XXXXXX";
    int fd = mkstemp(path), out = dup(1), err = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    int rc = cmd_parse(&spec, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(err, 2);
    close(out);
    close(err);
    ssize_t n = pread(fd, captured, sizeof captured - 1, 0);
    captured[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static void said(const char *want, const char *what)
{
    if (!tap_ok(strstr(captured, want) != NULL, "%s: says \"%s\"", what, want))
        tap_diag("it said: %s", captured);
}

static void test_forms(void)
{
    int rc = parse("--model m --threads 3 --steps=70 --seed 18446744073709551615 --lr 3e-4 "
                   "--temperature=0.5 --resume --out=o");
    tap_is_int(rc, CMD_PARSED, "every type, both forms");
    tap_ok(strcmp(v.model, "m") == 0 && strcmp(v.out, "o") == 0 && v.threads == 3 &&
               v.steps == 70 && v.seed == UINT64_MAX && v.lr == 3e-4 && v.temp == 0.5f && v.resume,
           "values stored");
    tap_is_str(captured, "", "nothing printed");
    rc = parse("--model a --threads 2 --model b --threads=5");
    tap_ok(rc == CMD_PARSED && strcmp(v.model, "b") == 0 && v.threads == 5,
           "a repeated option: the last wins");
    rc = parse("--model m --stop a --stop=b --stop c");
    tap_ok(rc == CMD_PARSED && v.stop.n == 3 && strcmp(v.stop.v[0], "a") == 0 &&
               strcmp(v.stop.v[2], "c") == 0,
           "a list option appends each value");
    rc = parse("--model m --stop -- --stop=--model");
    tap_ok(rc == CMD_PARSED && v.stop.n == 2 && strcmp(v.stop.v[0], "--") == 0 &&
               strcmp(v.stop.v[1], "--model") == 0,
           "values that start with a dash: any but an option's name, or with '='");
    rc = parse("--model= -k 7");
    tap_ok(rc == CMD_PARSED && strcmp(v.model, "") == 0 && v.threads == 7,
           "an empty value with '=' and a short option");
}

static void test_errors(void)
{
    tap_is_int(parse("--model m --stpes 3"), 2, "unknown option: exit 2");
    tap_is_str(captured, "plumb sft: unknown option '--stpes' (see 'plumb sft --help')\n",
               "unknown option: the message");
    tap_is_int(parse("--model m --stpes=3"), 2, "unknown option with '='");
    said("unknown option '--stpes'", "unknown option with '='");
    tap_is_int(parse("--model"), 2, "a missing value at the end");
    said("plumb sft: option '--model' needs a value", "missing value");
    tap_is_int(parse("--model --lr 1"), 2, "a missing value before another option");
    said("option '--model' needs a value", "missing value before an option");
    tap_is_int(parse("--model m --threads -5"), 2, "--threads -5 as the last option");
    said("option '--threads': '-5' is not an integer in [1, 4096]", "negative threads");
    tap_is_int(parse("--model m --threads 4097"), 2, "above the range");
    tap_is_int(parse("--model m --threads 2x"), 2, "trailing junk");
    said("'2x' is not an integer", "trailing junk");
    tap_is_int(parse("--model m --threads 99999999999999999999"), 2, "integer overflow");
    tap_is_int(parse("--model m --lr 100"), 2, "--lr 100");
    said("plumb sft: option '--lr': '100' is not a number in [1e-12, 10]", "--lr 100");
    tap_is_int(parse("--model m --lr nan"), 2, "NaN refused");
    tap_is_int(parse("--model m --temperature inf"), 2, "infinity refused");
    tap_is_int(parse("--model m --steps 0"), 2, "a long below its range");
    said("option '--steps': '0' is not an integer in [1, 1000000000]", "bounds as integers");
    tap_is_int(parse("--model m --seed -1"), 2, "a negative seed");
    said("option '--seed': '-1' is not a non-negative integer", "negative seed");
    tap_is_int(parse("--model m --seed 18446744073709551616"), 2, "a seed past 2^64 - 1");
    tap_is_int(parse("--model m --resume=yes"), 2, "a flag given a value");
    said("option '--resume' takes no value", "flag with a value");
    tap_is_int(parse("--out o"), 2, "a required option missing");
    said("option '--model' is required", "required option");
    tap_is_int(parse("--model m stray"), 2, "a stray argument");
    said("unexpected argument 'stray'", "stray argument");
    tap_is_int(parse("--model m --resume --conflict"), 2, "the command's own check");
    said("plumb sft: --conflict and --resume exclude each other", "check message");

    char line[1024] = "--model m";
    for (int i = 0; i < CMD_LIST_MAX; i++)
        strcat(line, " --stop x");
    tap_is_int(parse(line), CMD_PARSED, "a list holds CMD_LIST_MAX values");
    strcat(line, " --stop y");
    tap_is_int(parse(line), 2, "one more is refused");
    said("option '--stop': at most 16 values", "list overflow");
    tap_ok(parse("--stop a b --model m c") == 2 && strstr(captured, "unexpected argument 'c'"),
           "a list takes the words after it up to the next option, no further");
    tap_ok(parse("--stop a b --model m --stop c") == CMD_PARSED && v.stop.n == 3 &&
               strcmp(v.stop.v[1], "b") == 0 && strcmp(v.stop.v[2], "c") == 0,
           "a list's values: after it and repeated");
}

static void test_help(void)
{
    tap_is_int(parse("--help"), 0, "--help: exit 0");
    const char *top = "plumb sft: fine-tune\n\nusage: plumb sft --model DIR [options]\n";
    if (!tap_ok(strncmp(captured, top, strlen(top)) == 0,
                "usage starts with the summary and the required options"))
        tap_diag("it said: %s", captured);
    said("  --lr LR ", "--help");
    said("peak learning rate", "--help");
    said("model folder (required)", "--help");
    said("stop string (one or more)", "--help");
    said("  --resume ", "--help");
    said("-h, --help", "--help");
    tap_ok(!strstr(captured, "--hidden"), "an option without help is not listed");
    tap_is_int(parse("--model m -h --stpes"), 0, "-h wins over what follows");
    tap_is_int(parse("--stpes --help"), 2, "an error before --help is reported");
}

static void test_fail(void)
{
    struct pl_err err = {0};
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    tap_is_int(cmd_fail(&err, pl_errf(&err, PL_EUSAGE, "bad")), 2, "PL_EUSAGE exits 2");
    tap_is_int(cmd_fail(&err, pl_errf(&err, PL_EINVAL, "resume mismatch")), 1, "PL_EINVAL exits 1");
    tap_is_int(cmd_fail(&err, PL_EFORMAT), 1, "PL_EFORMAT exits 1");
    tap_is_int(cmd_fail(NULL, PL_EIO), 1, "PL_EIO exits 1");
    tap_is_int(cmd_fail(NULL, PL_ENOMEM), 1, "PL_ENOMEM exits 1");
    tap_is_int(cmd_fail(&err, PL_OK), 0, "PL_OK exits 0");
    tap_is_int(cmd_usage(&spec, "--out '%s' is the input", "x"), 2, "cmd_usage exits 2");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(null);
}

static void test_dataset_path(void)
{
    char p[64];
    unsetenv("PLUMB_SHARED_DATASETS");
    tap_ok(cmd_dataset_path(p, sizeof p, "gpt2-bpe") &&
               strcmp(p, "../shared/datasets/gpt2-bpe") == 0,
           "default datasets folder: %s", p);
    setenv("PLUMB_SHARED_DATASETS", "/data/sets", 1);
    tap_ok(cmd_dataset_path(p, sizeof p, "tinyshakespeare/input.txt") &&
               strcmp(p, "/data/sets/tinyshakespeare/input.txt") == 0,
           "PLUMB_SHARED_DATASETS: %s", p);
    tap_ok(!cmd_dataset_path(p, 12, "tinyshakespeare/input.txt"), "too long for the buffer");
    unsetenv("PLUMB_SHARED_DATASETS");
}

int main(void)
{
    tap_plan(64);
    test_forms();
    test_errors();
    test_help();
    test_fail();
    test_dataset_path();
    return tap_done();
}
