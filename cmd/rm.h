/* rm: `plumb rm train|eval|score`, the reward model of reward/rm.h.
 *
 * - `plumb rm train --model DIR --data FILE... --out DIR [options]` trains a reward model on
 *   preference files (labels, pairs, soft pairs, HH-RLHF; datasets/ds.h) with the one training
 *   loop's options, and normalises it at the end;
 * - `plumb rm eval --model DIR --data FILE... [--json]` prints pairwise accuracy (ties in the
 *   scores count half), mean margin and the chosen and rejected means, overall, per prompt kind
 *   and per annotator, in normalised rewards; with --json one object instead;
 * - `plumb rm score --model DIR --input FILE.jsonl --out FILE` writes each record with "reward"
 *   added: one number for {"prompt", "response"}, an array for samples records {"prompt",
 *   "completions": [...]}; --out is written whole or not at all and may not be the input.
 * A model folder without a score head given to eval or score is a data error (exit 1).
 * cmd_rm takes argv[0] = "rm", argv[1] = the subcommand, and returns the exit status (args.h). */
#ifndef CMD_RM_H
#define CMD_RM_H

int cmd_rm(int argc, char **argv);

#endif
