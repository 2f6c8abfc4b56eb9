/* agree: agreement between annotators who ranked the same completions (`plumb agree`).
 *
 * A unit is one item as its labels show it: the same id, prompt and completions. Labels are read
 * as datasets/ds.h's preference loader reads them (each annotator's last unretracted label of an
 * id in a file counts, skips count for nothing), except that a ranking that ties everything is
 * kept: it says something about agreement, though nothing a reward model can learn from. Each
 * annotator's ranking of a unit is read as a level per completion, 1 + the number of completions
 * it ranks strictly better (tied completions share a level). For each pair of annotators, over
 * the units both ranked:
 * - pairwise agreement: of the completion pairs that both annotators order strictly (ties are
 *   left out), the share they order the same way (InstructGPT's inter-annotator agreement);
 * - Kendall's tau-b between the two rankings of a unit, (concordant - discordant) /
 *   sqrt((P - ties_a) (P - ties_b)) with P = K(K-1)/2, averaged over the units where it is
 *   defined (neither ranking ties everything);
 * - Krippendorff's alpha with the ordinal metric over the levels, each (unit, completion) a
 *   unit of analysis (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").
 * Overall: agreement and tau pooled over every pair of annotators, alpha over all annotators at
 * once. */
#ifndef TUI_AGREE_H
#define TUI_AGREE_H

#include "model/io.h"
#include "model/pl.h"

#include <stddef.h>

/* Kendall's tau-b of two rankings of k completions given as levels (smaller is better); NaN
 * when either ranking ties every pair. */
double tui_agree_tau_b(const int *la, const int *lb, int k);

/* Completion pairs both rankings order strictly (*pairs), and of them those ordered alike
 * (*agree); both are added to. */
void tui_agree_pairs(const int *la, const int *lb, int k, long *pairs, long *agree);

/* Krippendorff's alpha, ordinal metric, of a reliability matrix v[u * n_coders + c] (the value
 * coder c gave unit u; NaN when c gave none). Units with fewer than two values do not count.
 * *alpha is NaN when nothing is pairable or every pairable value is the same. Errors:
 * PL_ENOMEM. */
int tui_agree_alpha(const double *v, size_t n_units, int n_coders, double *alpha,
                    struct pl_err *err);

/* Rankings read from label files. */
struct tui_agree_rating {
    const char *annotator, *id, *prompt; /* in the set's arena */
    const char **texts;                  /* [k] */
    int *level;                          /* [k] */
    int k;
};
struct tui_agree_set {
    struct tui_agree_rating *r; /* [n], in file order */
    size_t n, cap;
    struct io_arena arena;
};

/* Add the live labels of one label file to set (zero-initialise it first). Records other than
 * labels (pairs) are passed over. Errors: PL_EFORMAT "PATH:LINE: field 'ranking': ..." and the
 * like for a label the preference loader would refuse too (run ds_prefs_load on the file first
 * for its exact messages); those of reading; PL_ENOMEM. */
int tui_agree_load(struct tui_agree_set *set, const char *path, struct pl_err *err);
void tui_agree_set_release(struct tui_agree_set *set);

struct tui_agree_row {
    const char *a, *b; /* annotators; both NULL for the overall row */
    long units;        /* units both ranked (overall: unit and annotator pairs) */
    long pairs, agree; /* completion pairs ordered strictly by both, and alike */
    double tau;        /* mean tau-b, NaN when no unit had one */
    long tau_units;    /* units the mean is over */
    double alpha;      /* NaN when undefined */
};

struct tui_agree {
    char **annotators; /* [n_annotators], in order of first appearance */
    int n_annotators;
    long n_units;  /* distinct units */
    long replaced; /* rankings of a unit by an annotator that a later file's replaced */
    struct tui_agree_row *rows; /* [n_rows]: each pair of annotators with a unit in common, then
                                   the overall row */
    int n_rows;
};

/* Agreement over the rankings of set. Errors: PL_ENOMEM. */
int tui_agree_init(struct tui_agree *g, const struct tui_agree_set *set, struct pl_err *err);
void tui_agree_release(struct tui_agree *g);

#endif
