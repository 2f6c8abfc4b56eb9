/* evalsets: loaders of the eval suite's data (eval/, issue 12): multiple-choice questions,
 * TruthfulQA, CrowS-Pairs style sentence pairs and BBQ. Built on ds.h's CSV reader and io.h's
 * JSON readers; bad records are PL_EFORMAT "PATH:LINE: field 'NAME': ..." (a whole-file JSON
 * document names the item: "PATH: item 17: field ..."), and nothing is skipped silently.
 *
 * Every `ds_x_init` fills caller storage and leaves it releasable even when it fails;
 * `ds_x_release` is safe on a zeroed struct and twice. Strings live in the set's arena. */
#ifndef DS_EVALSETS_H
#define DS_EVALSETS_H

#include "datasets/ds.h"
#include "model/io.h"
#include "model/pl.h"

#include <stdbool.h>

/* ---- TruthfulQA ---- */

struct ds_tqa_item {
    const char *question;
    const char **mc1; /* [n_mc1] MC1 choices, the one true answer at mc1_answer */
    int n_mc1, mc1_answer;
    const char **mc2; /* [n_mc2] MC2 choices; mc2_true[i] says whether choice i is true */
    const bool *mc2_true;
    int n_mc2;
    const char **correct, **incorrect; /* reference answers for generation */
    int n_correct, n_incorrect;
    long line; /* CSV line, or 1-based item number of mc_task.json */
    void *mem; /* owns the arrays */
};
struct ds_tqa {
    struct ds_tqa_item *items;
    size_t n, cap;
    struct io_arena arena;
};
/* TruthfulQA from mc_task.json (a JSON array of {"question", "mc1_targets": {choice: 0|1},
 * "mc2_targets": {...}}, choices in file order; MC1 needs exactly one 1) or from TruthfulQA.csv
 * (columns Question, Best Answer, Correct Answers, Incorrect Answers; the answer lists split at
 * ';' and trimmed): MC1 = the best answer then the incorrect answers, MC2 = the correct answers
 * (true) then the incorrect (false). References for generation: the CSV's lists, or MC2's true
 * and false choices. Which by the path's ending: ".csv" (or ".csv.gz") is the CSV. */
int ds_tqa_init(struct ds_tqa *set, const char *path, struct pl_err *err);
void ds_tqa_release(struct ds_tqa *set);

/* ---- generic multiple choice ---- */

struct ds_mc_item {
    const char *id; /* NULL when the record has none */
    const char *question;
    const char **choices; /* [n_choices], n_choices >= 2 */
    int n_choices, answer;
    long line;
    void *mem; /* owns choices (NULL when they belong to the TruthfulQA set) */
};
struct ds_mc {
    struct ds_mc_item *items;
    size_t n, cap;
    struct io_arena arena;
    struct ds_tqa tqa; /* when read through the TruthfulQA adapter */
};
/* {"question", "choices": [...], "answer": index} a line (the toy world's mc_eval.jsonl; "id"
 * kept when a string), or TruthfulQA's MC1 (a path ending in ".json", ".csv" or ".csv.gz": as
 * ds_tqa_init). Errors name the line and field: "PATH:3: field 'answer': 4 is not an index of
 * the 4 choices". */
int ds_mc_init(struct ds_mc *set, const char *path, struct pl_err *err);
void ds_mc_release(struct ds_mc *set);

/* ---- sentence pairs (CrowS-Pairs) ---- */

struct ds_pair_item {
    const char *more, *less; /* the more and the less stereotyping sentence */
    const char *type;        /* bias type (CrowS-Pairs) or trait (the toy world) */
    long line;
};
struct ds_pairs {
    struct ds_pair_item *items;
    size_t n, cap;
    struct io_arena arena;
};
/* crows_pairs_anonymized.csv (columns sent_more, sent_less, bias_type; a path ending in ".csv"
 * or ".csv.gz") or the toy world's bias_pairs.jsonl ({"stereo", "anti", "trait"}). Empty
 * sentences are bad records. */
int ds_pairs_init(struct ds_pairs *set, const char *path, struct pl_err *err);
void ds_pairs_release(struct ds_pairs *set);

/* ---- BBQ ---- */

struct ds_bbq_item {
    const char *context, *question, *category;
    const char *ans[3];
    const char *info[3][2];   /* answer_info: each answer's two group words ("" when absent) */
    const char **stereotyped; /* additional_metadata.stereotyped_groups */
    int n_stereotyped;
    int label;        /* 0..2 */
    bool disambig;    /* context_condition "disambig" (else "ambig") */
    bool neg;         /* question_polarity "neg" (else "nonneg") */
    const char *path; /* the file and line it comes from */
    long line;
    void *mem; /* owns stereotyped */
};
struct ds_bbq {
    struct ds_bbq_item *items;
    size_t n, cap;
    struct io_arena arena;
};
/* Add the records of one BBQ JSONL file (zero-initialise set before the first). Fields:
 * context, question, ans0-2, label (0-2), context_condition ("ambig" or "disambig"),
 * question_polarity ("neg" or "nonneg"), category, answer_info {"ans0": [group, group], ...},
 * additional_metadata.stereotyped_groups (strings). */
int ds_bbq_load(struct ds_bbq *set, const char *path, struct pl_err *err);
void ds_bbq_release(struct ds_bbq *set);

#endif
