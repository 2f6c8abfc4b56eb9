/* train: `plumb pretrain` and `plumb sft`, the language-modelling runs of trainer/lm.h. Each
 * takes argv[0] = its name and returns the exit status (args.h): 1 for a data or runtime error
 * (nothing to train on, a resume mismatch, a non-empty --out without --resume or --force), 2 for
 * a usage error naming the option. trainer/README.md lists the options. */
#ifndef CMD_TRAIN_H
#define CMD_TRAIN_H

#include "cmd/args.h"

/* Option rows every trainer command takes, for its cmd_opt table: the optimizer and schedule
 * (a struct train_optim *) and the run (a struct train_opts *), with the defaults of
 * trainer/train.h. */
#define CMD_OPTIM_OPTS(optim)                                                                       \
    {"--lr", CMD_FLOAT, &(optim)->lr, 1e-12, 10, "X", "peak learning rate (3e-4)", false},          \
        {"--min-lr-frac",                                                                           \
         CMD_FLOAT,                                                                                 \
         &(optim)->min_lr_frac,                                                                     \
         0,                                                                                         \
         1,                                                                                         \
         "X",                                                                                       \
         "final learning rate as a share of --lr (0.1)",                                            \
         false},                                                                                    \
        {"--warmup", CMD_LONG, &(optim)->warmup, 0, 1e12, "N", "linear warmup steps (100)", false}, \
        {"--weight-decay",           CMD_FLOAT, &(optim)->weight_decay, 0, 10, "X",                 \
         "AdamW weight decay (0.1)", false},                                                        \
    {                                                                                               \
        "--clip", CMD_FLOAT, &(optim)->clip, 0, 1e9, "X", "gradient norm limit, 0: none (1)",       \
            false                                                                                   \
    }
#define CMD_RUN_OPTS(run)                                                                          \
    {"--out", CMD_STR, &(run)->out, 0, 0, "DIR", "run and model folder", true},                    \
        {"--steps", CMD_LONG, &(run)->steps, 1, 1e12, "N", "optimizer steps (from --epochs)",      \
         false},                                                                                   \
        {"--grad-accum", CMD_INT, &(run)->grad_accum,           1,                                 \
         1 << 16,        "N",     "micro-batches per step (1)", false},                            \
        {"--save-every",                                                                           \
         CMD_LONG,                                                                                 \
         &(run)->save_every,                                                                       \
         0,                                                                                        \
         1e12,                                                                                     \
         "N",                                                                                      \
         "checkpoint every N steps, 0: only at the end (500)",                                     \
         false},                                                                                   \
        {"--resume",                                                                               \
         CMD_FLAG,                                                                                 \
         &(run)->resume,                                                                           \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         "continue --out's run (or extend it to a larger --steps)",                                \
         false},                                                                                   \
    {                                                                                              \
        "--force", CMD_FLAG, &(run)->force, 0, 0, NULL,                                            \
            "train into a non-empty --out, removing an older run's files", false                   \
    }

int cmd_pretrain(int argc, char **argv);
int cmd_sft(int argc, char **argv);

#endif
