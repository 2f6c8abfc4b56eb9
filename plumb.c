/* plumb: argument parsing and dispatch only. This is the only code that prints
 * errors or exits; every command returns 0 (ok), 1 (runtime or data error) or
 * 2 (usage). */
#include "model/pl.h"
#include "model/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUMB_VERSION "0.1.0"

/* Print err (or code's text) as "plumb: <msg>" and map the code to an exit status. */
static int fail(const struct pl_err *err, int code)
{
    fprintf(stderr, "plumb: %s\n", err && err->msg[0] ? err->msg : pl_strerror(code));
    return code == PL_EUSAGE || code == PL_EINVAL ? 2 : 1;
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "plumb %s: %s (see 'plumb help')\n", cmd, msg);
    return 2;
}

/* Value of option `name` at argv[*i] ("--name value" or "--name=value"); NULL if argv[*i] is not it. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* Engine set-up shared by every command that runs a model. */
static int engine_start(const char *arch, int threads)
{
    struct pl_err err = {0};
    int rc = tensor_init(arch, threads, &err);
    return rc ? fail(&err, rc) : 0;
}

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"help", cmd_help, "show this list"},
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("plumb %s: align and evaluate small language models\n\nusage: plumb <command> "
           "[options]\n\ncommands:\n",
           PLUMB_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].help);
    printf("\ncommon options: --threads N (default: all cores), --blis-arch NAME (default: the "
           "fastest the CPU runs; also PLUMB_BLIS_ARCH)\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cmd_help(0, NULL), 2;
    if (strcmp(argv[1], "--version") == 0) {
        printf("plumb %s\n", PLUMB_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "plumb: '%s' is not a plumb command (see 'plumb help')\n", argv[1]);
    return 2;
}
