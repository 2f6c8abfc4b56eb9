/* score: the commands that read token sequences without generating. `plumb score` writes the
 * log-probability of every token of every input line; `plumb tokenize` turns text into token ids
 * and back. Both write --out atomically (nothing, or the whole result) and refuse an --out that
 * is also the --input. Each takes argv[0] = its name and returns the exit status (args.h). */
#ifndef CMD_SCORE_H
#define CMD_SCORE_H

int cmd_score(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#endif
