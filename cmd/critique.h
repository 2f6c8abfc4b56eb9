/* critique: `plumb critique`, constitutional self-critique and AI feedback (rlhf/critique.h).
 *
 * - SL stage: `plumb critique --model DIR --constitution FILE --prompts FILE --out FILE
 *   [--trace FILE --rounds N --reward RM_DIR --few-shot FILE --principles A,B --ties ...]`
 *   appends to --out an sft record {"id", "prompt", "response"} for every prompt whose response
 *   a kept revision replaced, and to --trace (default: --out with ".trace.jsonl" for ".jsonl")
 *   one line per prompt with the whole trace: {"id", "prompt", "draft", "draft_broken",
 *   "draft_score", "rounds": [{"principle", "critique", "revision", "broken", "score",
 *   "verdict": "rejected"|"rules"|"critique"}], "response", "revised", "model"}.
 * - AI feedback: `plumb critique --compare FILE --model DIR --constitution FILE --out FILE
 *   [--clamp]` reads pairs records {"prompt", "chosen", "rejected"} or samples records
 *   {"id", "prompt", "completions"} (every two completions) and appends soft-label pairs
 *   {"id", "prompt", "chosen", "rejected", "p"}, chosen being the one the model prefers (p >=
 *   0.5), which `plumb rm train` reads.
 * Both append one fsync'd line per prompt or pair and resume: a rerun skips what is done, drops
 * a cut-short last line, writes nothing twice, and refuses a file another model wrote. Every
 * input is checked before anything is written. cmd_critique returns the exit status. */
#ifndef CMD_CRITIQUE_H
#define CMD_CRITIQUE_H

int cmd_critique(int argc, char **argv);

#endif
