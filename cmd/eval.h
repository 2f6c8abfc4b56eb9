/* eval: `plumb eval SUITE [options]`, the eval suite of eval/ (DESIGN.md section 6, issue 12).
 *
 * Every suite writes a results object (eval/results.h: suite, model, dataset and its SHA-256,
 * n, metrics as {"value", "ci95"}, seed, plumb version) to --out, whole or not at all, and with
 * --details one JSONL line per item or answer; it prints the metrics to stdout and a progress
 * line to stderr. An --out or --details that is one of the inputs is a usage error.
 *
 * - `plumb eval world --data FILE --out FILE [--model DIR | --input samples.jsonl] [--world DIR]
 *   [--split S] [--temperature T] [-k N] [--max-new-tokens N] [--stop TEXT] [--seed S]
 *   [--details FILE] [--limit N] [--batch B] [--bootstrap N] [--threads N]`: the toy world's
 *   hallucination suite (eval/world.h).
 * - `plumb eval mc|truthfulqa|truthfulqa-gen|crows|bbq --model DIR --out FILE [--data FILE]
 *   [--details FILE] [--limit N] [--batch B] [--full-scoring] [--seed S] [--bootstrap N]
 *   [--threads N]`: the scoring suites (eval/mc.h, eval/tqagen.h, eval/bias.h); mc takes
 *   --template, truthfulqa-gen --max-new-tokens, bbq several --data files. Without --data a
 *   suite reads its file under ../shared/datasets (cmd_dataset_path).
 * - `plumb eval all --model DIR --out FILE [--world DIR] [--details-dir DIR] [--bbq-limit N]
 *   ...`: every suite whose data is present (a table of its own), one combined file
 *   {"suite": "all", "suites": {...}, "seconds": {...}, "skipped": [...]}.
 *
 * The suites are a table: a suite is one more line in it. cmd_eval takes argv[0] = "eval",
 * argv[1] = the suite, and returns the exit status (args.h). */
#ifndef CMD_EVAL_H
#define CMD_EVAL_H

int cmd_eval(int argc, char **argv);

#endif
