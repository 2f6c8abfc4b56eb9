/* rouge: ROUGE-L as Google's rouge_score package computes it for lm-evaluation-harness's
 * truthfulqa_gen (RougeScorer without stemming): both texts lower-cased, every run of
 * characters other than a-z and 0-9 a separator, the F-measure of the longest common
 * subsequence of the two token lists (precision LCS / |candidate|, recall LCS / |reference|);
 * 0 when either text has no token. rougeLsum, which the harness reports, equals it for
 * one-sentence texts (it splits at newlines; the answers here end at one). */
#ifndef EVAL_ROUGE_H
#define EVAL_ROUGE_H

#include <stddef.h>

/* ROUGE-L F-measure of candidate against reference, in [0, 1]; -1 when out of memory. */
double eval_rouge_l(const char *reference, const char *candidate);

#endif
