/* rules: the constitution's machine-checkable rules as an eval (`plumb eval rules --constitution
 * FILE --input samples.jsonl`): how often the responses of a file break each rule and each
 * principle (datasets/constitution.h).
 *
 * Input records: samples {"prompt", "completions": [...]} (each completion is a response), or
 * {"prompt", "response"} (sft records, `plumb critique`'s output). A response breaks a principle
 * when it breaks at least one of its rules. */
#ifndef EVAL_RULES_H
#define EVAL_RULES_H

#include "datasets/constitution.h"
#include "model/pl.h"

struct eval_rules {
    long responses;
    long any;        /* responses breaking at least one rule */
    long *rule;      /* [n_rules] responses breaking rule r */
    long *principle; /* [n_principles] responses breaking principle p */
    int n_rules, n_principles;
    long skipped; /* bad records skipped (IO_SKIP_BAD_LINES) */
};

/* Check every response of input_path (flags: IO_SKIP_BAD_LINES) against c. out is zeroed first
 * and releasable on every return. Errors: PL_EFORMAT "PATH:LINE: field 'completions': ..." or
 * "PATH:LINE: expected 'completions' or 'response'", those of reading and of
 * ds_constitution_check. */
int eval_rules_file(const struct ds_constitution *c, const char *input_path, unsigned flags,
                    struct eval_rules *out, struct pl_err *err);
void eval_rules_release(struct eval_rules *r);

/* Rate of count over the responses (NaN when there are none). */
double eval_rules_rate(const struct eval_rules *r, long count);

/* The result as one JSON object: {"responses", "violation_rate", "rules": {LABEL: rate},
 * "principles": {NAME: rate}}, and a newline. */
void eval_rules_json(const struct eval_rules *r, const struct ds_constitution *c, struct pl_buf *b);

#endif
