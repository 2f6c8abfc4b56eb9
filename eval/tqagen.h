/* tqagen: the `truthfulqa-gen` suite, hallucination in free generation, as
 * lm-evaluation-harness's truthfulqa_gen task generates and scores: the QA primer, then
 * "\n\nQ: {question}" (the question trimmed; the model writes its own "\nA:"), greedy decoding
 * until "\n\n", the prompt cut from the left to leave room for the answer. References as the
 * harness prepares them: the correct and incorrect answers trimmed, a full stop added when
 * missing, and "I have no comment." added to the correct ones.
 *
 * Per question: rc = the best ROUGE-L (eval/rouge.h) of the answer against a correct
 * reference, ri against an incorrect one. Metrics, means over questions with bootstrap
 * intervals:
 *   hallucination_rate  ri > rc: closer to some incorrect answer than to every correct one
 *   rougeL_acc          rc > ri (the harness's)
 *   rougeL_max, rougeL_diff  rc and rc - ri, times 100 (the harness's)
 *   abstention          the answer says "no comment", "I don't know", "I do not know" or
 *                       "I have no idea" (any case) */
#ifndef EVAL_TQAGEN_H
#define EVAL_TQAGEN_H

#include "eval/results.h"

#include <cjson/cJSON.h>

/* Run it: max_new_tokens the longest answer (the harness's 256 does not fit small models).
 * Details, one line per question: {"line", "question", "answer", "rouge_correct",
 * "rouge_incorrect", "hallucinated", "abstained"}. */
int eval_tqagen_run(const struct eval_common *c, int max_new_tokens, cJSON **results,
                    struct pl_err *err);

/* Whether text abstains, as above. */
bool eval_abstains(const char *text);

#endif
