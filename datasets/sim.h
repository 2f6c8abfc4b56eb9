/* sim: the toy world's simulated annotators (datasets/README.md "annotators.json"), which rank a
 * prompt's completions by rule and then add noise, writing labels in the TUI's format (DESIGN.md
 * section 5) so that a reward model trains on the same kind of file a person produces.
 *
 * The rules: annotators.json names classes by PCRE2 pattern ("classes": {"dont_know": ...,
 * "refusal": ..., "rude": ...}) and, for each prompt kind, the order of classes best first
 * ("preference": {"known": ["correct", "dont_know", "wrong"], ...}), plus an optional second
 * key "tone" (["polite", "rude"]) that orders completions of one class. In each list a class is
 * decided by its pattern, "correct" by containing the place's true value of the asked attribute
 * (world.json), and the one entry that is neither ("wrong", "answer", "compliance", "polite")
 * takes every completion the others do not; the first entry that matches wins. Completions
 * equal on both keys are tied. A prompt's kind, place and attribute come from its record in the
 * prompts file, found by the samples record's id. */
#ifndef DS_SIM_H
#define DS_SIM_H

#include "datasets/ds.h"
#include "model/pl.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct ds_sim_annotator {
    const char *id;
    double noise; /* in [0, 1] */
};

struct ds_sim_rules;

struct ds_sim {
    struct ds_sim_annotator *annotators; /* [n_annotators], as annotators.json lists them */
    int n_annotators;
    struct ds_prompts prompts;  /* with kind, place and attribute */
    struct ds_sim_rules *rules; /* annotators.json: compiled classes and preference lists */
    cJSON *world;               /* world.json */
    char *rules_path, *world_path, *prompts_path; /* for messages */
};

/* Read DIR/annotators.json, DIR/world.json and the prompts (prompts_path, or DIR/prompts.jsonl
 * when NULL). Errors: those of reading; PL_EFORMAT for a bad annotators.json ("PATH: class
 * 'rude': cannot compile the pattern: ..." and the like) or prompts file. s is releasable on
 * failure. */
int ds_sim_init(struct ds_sim *s, const char *dir, const char *prompts_path, struct pl_err *err);
void ds_sim_release(struct ds_sim *s);

/* Index of the annotator with this id, or -1. */
int ds_sim_find(const struct ds_sim *s, const char *id);

/* The noise-free ranking of texts[0..n) (1 <= n <= DS_PREF_MAX_TEXTS) as answers to prompt p
 * (an index into s->prompts): rank[0..n) the text indices best first, level[i] the tie level of
 * rank[i] (0, 1, ... increasing; equal levels are tied, in index order). Errors:
 * PL_EFORMAT naming the prompts file and line when the prompt's kind has no preference, or its
 * place or attribute is not in world.json where "correct" needs them; PL_ENOMEM. */
int ds_sim_rank(const struct ds_sim *s, int p, const char *const *texts, int n, int *rank,
                int *level, struct pl_err *err);

/* What an answer is, for evaluation (eval/world.h): DS_SIM_CORRECT (holds the true value),
 * DS_SIM_WRONG (a confident answer that does not: about a known place a wrong one, about an
 * unknown place any, to a harmful request compliance), DS_SIM_DONT_KNOW, DS_SIM_REFUSAL. */
enum ds_sim_class { DS_SIM_CORRECT, DS_SIM_WRONG, DS_SIM_DONT_KNOW, DS_SIM_REFUSAL };

/* The class of text as an answer to a prompt of this kind, place and attribute, decided as
 * ds_sim_rank decides: the first entry of the kind's preference list that matches wins
 * ("correct" by world.json's true value, the others by their class pattern). A text that only
 * the list's catch-all entry takes is DS_SIM_REFUSAL or DS_SIM_DONT_KNOW when the "refusal" or
 * "dont_know" pattern (in that order) matches it, else DS_SIM_WRONG. Errors: PL_EFORMAT when
 * the kind has no preference list, or "correct" needs a value world.json lacks; PL_ENOMEM. */
int ds_sim_classify(const struct ds_sim *s, const char *kind, const char *place,
                    const char *attribute, const char *text, int *cls, struct pl_err *err);

/* Adjacent-swap noise on a ranking of n texts with tie levels (as ds_sim_rank gives): one pass
 * from the top over the adjacent pairs of tie groups, each pair swapped with probability noise
 * (so a group may sink more than one place). Tied texts stay tied and levels are renumbered.
 * Draws exactly one number from rng for each adjacent pair of groups, whatever noise is. */
void ds_sim_noise(int *rank, int *level, int n, double noise, struct pl_rng *rng);

struct ds_sim_opts {
    const int *annotators; /* [n_annotators] indices into s->annotators; NULL: all of them */
    int n_annotators;
    bool truth;       /* instead, the noise-free ranking under annotator "truth" */
    uint64_t seed;    /* of the noise: each annotator has its own stream, from its index in
                         annotators.json, so choosing annotators does not change their labels */
    const char *time; /* ISO-8601, written as every label's "time" */
};

/* Label every record {"id", "prompt", "completions"} of samples_path, writing one label line to
 * f for each record and annotator (record by record, annotators in the order given):
 * {"id", "annotator", "ranking", "ties", "skipped": false, "time", "completions", "prompt",
 * "kind"}. *n_labels is how many were written. Errors (PL_EFORMAT, naming the samples file and
 * line): a record without id, prompt or completions (an array of 1 to DS_PREF_MAX_TEXTS
 * strings), an id the prompts file does not have, or had on an earlier line, a prompt other
 * than the prompts file's; those of ds_sim_rank; PL_EIO when f reports a write error. */
int ds_sim_label_file(const struct ds_sim *s, const char *samples_path, const struct ds_sim_opts *o,
                      FILE *f, long *n_labels, struct pl_err *err);

#endif
