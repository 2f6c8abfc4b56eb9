/* gen: the commands that generate text with model/sample.h.
 *
 * `plumb generate` completes one --prompt, streaming the first completion to standard output
 * as it grows; model text reaches the terminal without its control characters (pl_write_safe).
 *
 * `plumb sample` writes -k completions of every {"id", "prompt"} of --prompts to --out, one
 * line per prompt: {"id", "prompt", "completions", "tokens", "logprobs", "finish", "model"}
 * (DESIGN.md section 5), the texts as valid UTF-8 (invalid bytes as U+FFFD; "tokens" keeps the
 * exact ids). Each line is written and fsync'd as its prompt finishes, so the file is
 * resumable: a rerun skips the prompts already there, drops a last line cut short by a crash
 * and redoes it, and writes exactly what an uninterrupted run would have (the RNG of a prompt
 * hangs on its place in --prompts, and a sequence's numbers do not depend on its batch). A
 * rerun refuses a file written by another model or with another -k, naming the file and line.
 * Every prompt and every existing record is read and checked before anything is written, so
 * bad input leaves --out as it was; an --out that is the --prompts file is a usage error.
 *
 * Each takes argv[0] = its name and returns the exit status (cmd/args.h). */
#ifndef CMD_GEN_H
#define CMD_GEN_H

int cmd_generate(int argc, char **argv);
int cmd_sample(int argc, char **argv);

#endif
