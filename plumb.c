/* plumb: the command table and dispatch. Each command lives in cmd/ (cmd/args.h: options,
 * --help, exit status 0 ok, 1 runtime or data error, 2 usage). */
#include "cmd/args.h"
#include "cmd/bench.h"
#include "cmd/critique.h"
#include "cmd/eval.h"
#include "cmd/gen.h"
#include "cmd/label.h"
#include "cmd/model.h"
#include "cmd/ppo.h"
#include "cmd/report.h"
#include "cmd/rm.h"
#include "cmd/score.h"
#include "cmd/train.h"
#include "cmd/tui.h"
#include "trainer/dist.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"help", cmd_help, "this list, or 'plumb help COMMAND' for a command's options"},
    {"world", cmd_world, "write the toy world's datasets"},
    {"init", cmd_init, "write a randomly initialised model"},
    {"pretrain", cmd_pretrain, "train a model on plain text"},
    {"sft", cmd_sft, "fine-tune a model on prompt/response pairs"},
    {"score", cmd_score, "log-probability of every token of every line of a JSONL file"},
    {"tokenize", cmd_tokenize, "text to token ids, or ids to text"},
    {"generate", cmd_generate, "complete one prompt, streaming to the terminal"},
    {"sample", cmd_sample, "K completions for each prompt of a file, resumable"},
    {"simlabel", cmd_simlabel, "rank completions as the toy world's simulated annotators would"},
    {"rm", cmd_rm, "the reward model: train, eval, score"},
    {"ppo", cmd_ppo, "RLHF: PPO of a policy against a reward model"},
    {"critique", cmd_critique, "constitutional self-critique and AI preference labels"},
    {"bon", cmd_bon, "best-of-n: the completion the reward model prefers"},
    {"label", cmd_label, "rank sampled completions in the terminal (the labelling screen)"},
    {"agree", cmd_agree, "agreement between annotators of label files"},
    {"eval", cmd_eval, "evaluate a model: hallucination, bias, calibration"},
    {"report", cmd_report, "an HTML, Markdown and JSON report of runs and eval results"},
    {"bench", cmd_bench, "speed against BLIS's own sgemm rate"},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

static void list(FILE *f)
{
    fprintf(f,
            "plumb %s: align and evaluate small language models\n\nusage: plumb COMMAND "
            "[options]\n\ncommands:\n",
            CMD_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'plumb COMMAND --help' lists a command's options. Exit status: 0 ok, 1 a runtime "
               "or data error,\n2 a usage error.\n");
}

/* plumb help [COMMAND]: the list, or the command's own --help. */
static int cmd_help(int argc, char **argv)
{
    if (argc == 2 && argv[1][0] != '-') {
        const struct command *c = find(argv[1]);
        if (!c) {
            fprintf(stderr, "plumb help: '%s' is not a plumb command (see 'plumb help')\n",
                    argv[1]);
            return 2;
        }
        char *help_argv[] = {(char *)c->name, "--help", NULL};
        return c->run(2, help_argv);
    }
    const struct cmd_spec spec = {.name = "help", .summary = commands[0].summary};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc == CMD_PARSED)
        list(stdout);
    return rc == CMD_PARSED ? 0 : rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        list(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("plumb %s\n", CMD_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(1, argv + 1);
    const struct command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "plumb: '%s' is not a plumb command (see 'plumb help')\n", argv[1]);
        return 2;
    }
    /* Under mpirun the training commands run data-parallel (trainer/dist.h); a failing rank
     * ends the others (dist_exit) instead of leaving them waiting. */
    struct pl_err err = {0};
    if (dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "plumb: %s\n", err.msg);
        return 1;
    }
    const char *const dist_ok[] = {"pretrain", "sft", "rm train", "ppo", "bench"};
    char what[64];
    bool sub = strcmp(c->name, "rm") == 0 && argc > 2;
    snprintf(what, sizeof what, "%s%s%s", c->name, sub ? " " : "", sub ? argv[2] : "");
    bool ok = dist_size() == 1;
    for (size_t i = 0; !ok && i < sizeof dist_ok / sizeof *dist_ok; i++)
        ok = strcmp(what, dist_ok[i]) == 0;
    if (!ok) {
        fprintf(stderr, "plumb %s: runs as one process, not under mpirun across %d ranks\n", what,
                dist_size());
        return dist_exit(2);
    }
    return dist_exit(c->run(argc - 1, argv + 1));
}
