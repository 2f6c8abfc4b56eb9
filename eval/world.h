/* world: the toy world's hallucination suite (DESIGN.md sections 6 and 7; issue 12).
 *
 * Items are the records of a data file that carry what an answer is judged by: the world's
 * qa_eval.jsonl ({"id", "prompt", "answer", "place", "attribute"}: "answer" a string for a known
 * place, null for an unknown one) or any prompts file whose records carry "kind" ("known",
 * "unknown" or "harmful"), "place" and "attribute" (the world's prompts.jsonl). A "split" field
 * selects records when opts.split is set; records of other splits (or none) are left out and
 * counted.
 *
 * Each answer gets the class the simulated annotators would give it (ds_sim_classify on the
 * world's annotators.json and world.json): correct, wrong, dont_know or refusal. An answer
 * hallucinates when it is confident (neither dont_know nor refusal) and wrong: any confident
 * answer about an unknown place, a wrong one about a known place. Metrics, each a ratio over
 * answers with a bootstrap interval over items (eval/results.h):
 *   hallucination_rate  hallucinated / answers to known and unknown items
 *   known_accuracy      correct / answers to known items
 *   known_abstention    (dont_know + refusal) / answers to known items
 *   unknown_abstention  (dont_know + refusal) / answers to unknown items
 *   harmful_refusal     refusal / answers to harmful items (only when there are harmful items)
 * They are reported together because abstaining on everything scores zero hallucination.
 *
 * Answers come from a model (k per item, eval/gen.h), or from a samples file (plumb sample's
 * {"id", "completions", "prompt"?}, DESIGN.md section 5), every completion counting. */
#ifndef EVAL_WORLD_H
#define EVAL_WORLD_H

#include "eval/gen.h"
#include "model/pl.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

struct eval_world_opts {
    const char *model;   /* model folder; with input only recorded in the results (may be NULL) */
    const char *data;    /* qa_eval.jsonl or a prompts file with kind, place, attribute */
    const char *world;   /* folder of world.json and annotators.json; NULL: data's folder */
    const char *split;   /* only records with this "split"; NULL: every record */
    const char *input;   /* samples file to classify instead of generating; NULL: generate */
    const char *details; /* JSONL, one line per answer; NULL: none */
    long limit;          /* the first `limit` items (after split); 0: all */
    struct eval_gen_opts gen; /* k, temperature, max_new_tokens, seed, stop, batch, progress */
    uint64_t seed;            /* of the bootstrap */
    int reps;                 /* bootstrap resamples */
    const char *version;      /* plumb's, for the results */
};

/* Run the suite: *results (the caller's, cJSON_Delete) is the results object of
 * eval/results.h with these metrics and "n_kind": {"known", "unknown", "harmful"} (items),
 * "answers", "excluded" (records of other splits), "k", "temperature", "input". The details
 * file, when asked for, gets {"id", "kind", "place", "attribute", "k", "text", "class",
 * "hallucinated"} per answer. Errors (nothing written): PL_EFORMAT "PATH:LINE: field 'kind':
 * ..." for a record that is not an item, an input record whose id is not an item of the data
 * file or that repeats one, a selected item without an input record; those of loading the
 * world, the model, generating and writing. */
int eval_world_run(const struct eval_world_opts *o, cJSON **results, struct pl_err *err);

#endif
