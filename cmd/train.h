/* train: `plumb pretrain` and `plumb sft`, the language-modelling runs of trainer/lm.h. Each
 * takes argv[0] = its name and returns the exit status (args.h): 1 for a data or runtime error
 * (nothing to train on, a resume mismatch, a non-empty --out without --resume or --force), 2 for
 * a usage error naming the option. trainer/README.md lists the options. */
#ifndef CMD_TRAIN_H
#define CMD_TRAIN_H

int cmd_pretrain(int argc, char **argv);
int cmd_sft(int argc, char **argv);

#endif
