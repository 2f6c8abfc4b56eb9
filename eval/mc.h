/* mc: the multiple-choice suites, scored by log-likelihood (eval/choice.h) as
 * lm-evaluation-harness scores its multiple_choice tasks: each choice is the continuation
 * " " + choice of the question's prompt, and the prediction is the choice of the highest summed
 * log-likelihood (the first of equals).
 *
 * - `mc` (calibration): any multiple-choice file (datasets/evalsets.h ds_mc: {"question",
 *   "choices", "answer"} JSONL such as the toy world's mc_eval.jsonl, or TruthfulQA's MC1), the
 *   prompt a template with "{question}" in it (default "Q: {question}\nA:"); the metrics of
 *   eval/calib.h (accuracy, ece, ece_em, mce, brier, nll, each with a bootstrap interval), the
 *   reliability table, and temperature scaling: the temperature that minimises the NLL of the
 *   first half of the questions ("temperature", its interval from refitting on resamples of
 *   that half), with "ece_heldout" and "ece_scaled", the ECE of the second half before and
 *   after scaling.
 * - `truthfulqa`: TruthfulQA MC1 and MC2 exactly as the harness's truthfulqa_mc1 and
 *   truthfulqa_mc2 tasks: the fixed 6-shot QA primer, then "\n\nQ: {question}\nA:"; "mc1" is
 *   the share of questions whose most likely MC1 choice is the true one, "mc2" the mean over
 *   questions of the normalised probability mass of the true MC2 answers (eval_mc2). */
#ifndef EVAL_MC_H
#define EVAL_MC_H

#include "eval/results.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

/* The harness's TruthfulQA primer (six questions and answers, no trailing newline). */
extern const char eval_tqa_primer[];

/* MC2 of one question: sum over true choices of exp(ll) / sum over all of exp(ll), computed
 * with the largest log-likelihood subtracted (the harness exponentiates directly, which gives
 * 0/0 once every ll is below about -745; here it stays defined). */
double eval_mc2(const double *ll, const bool *is_true, int n);

struct eval_mc_opts {
    struct eval_common c;
    const char *template_text; /* with "{question}"; NULL: "Q: {question}\nA:" */
};

/* The `mc` suite. *results as eval/results.h, plus "reliability": [{"lo", "hi", "count",
 * "confidence", "accuracy"}, ...] (15 bins). Details, one line per question: {"id" (or null),
 * "line", "ll": [...], "ntok": [...], "pred", "answer", "confidence", "correct"}. Errors: those
 * of the loader, the model and scoring. */
int eval_mc_run(const struct eval_mc_opts *o, cJSON **results, struct pl_err *err);

/* The `truthfulqa` suite on mc_task.json or TruthfulQA.csv. Details, one line per question:
 * {"line", "question", "mc1_ll", "mc1_ntok", "mc1_pred", "mc1_answer", "mc2_ll", "mc2_ntok",
 * "mc2_true", "mc2"}. */
int eval_tqa_run(const struct eval_common *c, cJSON **results, struct pl_err *err);

#endif
