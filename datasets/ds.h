/* ds: record loaders for JSONL (cJSON), CSV (libcsv) and plain text, plain or gzip-compressed.
 *
 * Built on io.h's readers, which read gzip and plain files alike, so `x.jsonl.gz` needs no
 * flag; errors are io.h's (`PATH:LINE: ...` for bad data), and a file without a single record
 * is PL_EFORMAT "PATH: no records".
 *
 * Every `ds_x_init` fills caller storage and leaves it releasable even when it fails;
 * `ds_x_release` is safe on a zeroed struct and twice. Strings in a record set live in the set's
 * arena and stay valid until its release. */
#ifndef DS_H
#define DS_H

#include "model/io.h"
#include "model/pl.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Loaders take io.h's flags (IO_SKIP_BAD_LINES). */

/* ---- csv: a header row of column names, then records ---- */

struct ds_csv {
    char *path; /* owned copy, for messages */
    size_t ncols;
    const char **names; /* [ncols] column names from the header row */
    size_t nrows;
    const char **cells; /* [nrows * ncols], row-major */
    long *lines;        /* [nrows] line on which each row starts */
    long skipped;       /* rows skipped under IO_SKIP_BAD_LINES */
    size_t cells_cap, lines_cap;
    struct io_arena arena;
};

/* RFC 4180 CSV (quoted fields may hold commas, quotes and newlines). A row with another number
 * of fields than the header gives PL_EFORMAT "PATH:LINE: expected N fields, got M"; bad quoting
 * "PATH:LINE: malformed quoted field"; no data row "PATH: no records"; a line that is not UTF-8
 * or holds a NUL byte, io_text_check's error. */
int ds_csv_init(struct ds_csv *t, const char *path, unsigned flags, struct pl_err *err);
/* Index of column `name` in *col; PL_EFORMAT "PATH: missing column 'NAME'" if absent. */
int ds_csv_column(const struct ds_csv *t, const char *name, size_t *col, struct pl_err *err);
void ds_csv_release(struct ds_csv *t);

/* ---- record sets (DESIGN.md section 5) ---- */

struct ds_sft_rec {
    const char *prompt, *response;
};
struct ds_sft {
    struct ds_sft_rec *recs; /* [n] */
    size_t n, cap;
    long skipped;
    struct io_arena arena;
};
/* {"prompt", "response"} from JSONL, or from CSV with those columns when the path ends in
 * ".csv" or ".csv.gz". Other fields and columns are ignored. */
int ds_sft_init(struct ds_sft *set, const char *path, unsigned flags, struct pl_err *err);
void ds_sft_release(struct ds_sft *set);

struct ds_prompt_rec {
    const char *id, *prompt;
    const char *kind, *place, *attribute; /* the toy world's fields; NULL when absent or null */
    long line;                            /* where the record is in its file */
};
struct ds_prompts {
    struct ds_prompt_rec *recs; /* [n] */
    size_t n, cap;
    long skipped;
    struct io_arena arena;
    size_t *table, mask; /* id -> index + 1, open addressing */
};
/* {"id", "prompt"} (both strings) from JSONL, with "kind", "place" and "attribute" (strings or
 * null) when present; other fields are ignored. A repeated id is a bad record:
 * "PATH:LINE: field 'id': duplicate id 'x' (first on line N)". */
int ds_prompts_init(struct ds_prompts *set, const char *path, unsigned flags, struct pl_err *err);
/* Index of the record with this id, or -1. */
int ds_prompts_find(const struct ds_prompts *set, const char *id);
void ds_prompts_release(struct ds_prompts *set);

/* Length of the HH-RLHF prompt of a dialogue pair: the end of the last "\n\nAssistant:" that
 * lies wholly inside the common prefix of chosen and rejected; 0 when there is none. */
size_t ds_hh_prompt_len(const char *chosen, const char *rejected);

/* ---- preferences: rankings (labels) and pairs, for the reward model ----
 *
 * Every kind of preference record reduces to a group: one prompt, n completions, and the ordered
 * pairs (better, worse) the record asserts about them. A reward model forwards each completion
 * of a group once and scores all its pairs from those forwards (InstructGPT).
 *
 * Records are detected one by one, so a file may mix them:
 * - labels, the TUI's format (DESIGN.md section 5): {"id", "annotator", "ranking": [2,0,1,3],
 *   "ties": [[0,1]], "skipped", "time", "completions", "prompt", "kind"?, "likert"?, "flags"?}
 *   (a record with "ranking", "skipped" or "undo"): ranking is a permutation of 0..K-1 (K = the
 *   number of completions, 1 to DS_PREF_MAX_TEXTS), best first; each tie names two or more
 *   completions that are equally good and are ranked next to each other, and no pair is made
 *   between tied completions (ties are transitive: [[0,1],[1,2]] ties all three). A ranking
 *   yields every other ordered pair, C(K,2) without ties. {"id", "annotator", "undo": true,
 *   "time"} retracts that annotator's latest unretracted label of that id on an earlier line of
 *   the same file (an undo with none, another annotator's label included, is a bad record).
 *   Within a file only each annotator's last unretracted label of an id counts; a skipped label
 *   ("skipped": true; its other fields are not read) yields nothing, and so does a ranking
 *   whose completions are all tied; several annotators' labels of one id all count. Each file
 *   is its own history: labels of one id in two files both count.
 * - pairs: {"prompt", "chosen", "rejected", "margin"?} (margin: the chosen one should win by at
 *   least this much), or with a soft label "p" in [0, 1] instead of a margin, the probability
 *   that chosen is better (AI feedback); chosen and rejected must not be empty.
 * - HH-RLHF dialogue pairs {"chosen", "rejected"} without "prompt" (or with "prompt": null): the
 *   prompt is their shared prefix up to and including the last "\n\nAssistant:"
 *   (ds_hh_prompt_len), the responses what follows it; a pair without one is a bad record,
 *   "PATH:LINE: no shared prompt ending in '\n\nAssistant:'" (printed escaped).
 * Pairs records may carry "id", "annotator" and "kind" (strings) too. Bad records are
 * PL_EFORMAT naming the file, line and field ("labels.jsonl:17: field 'ranking': 4 is not an
 * index of the 4 completions"; datasets/README.md lists every message), or are skipped and
 * counted under IO_SKIP_BAD_LINES. */
enum { DS_PREF_MAX_TEXTS = 1024 };
struct ds_pref_pair {
    int better, worse; /* indices into the group's texts */
    double margin;     /* 0 unless a pairs record gives one */
    double p;          /* probability that `better` is better: 1 for rankings and hard pairs */
};
struct ds_pref_group {
    const char *prompt;
    const char **texts; /* [n_texts] completions (responses without the prompt) */
    int n_texts;
    struct ds_pref_pair *pairs; /* [n_pairs], n_pairs >= 1 */
    int n_pairs;
    const char *id, *annotator, *kind; /* from the record when present; else NULL */
    const char *path;                  /* the file and line the group comes from */
    long line;
};
struct ds_prefs {
    struct ds_pref_group *groups; /* [n], in file order of the records that made them */
    size_t n, cap;
    long skipped; /* bad records skipped under IO_SKIP_BAD_LINES */
    long ignored; /* labels that count for nothing: skipped, retracted, superseded, all tied */
    long n_pairs; /* pairs over all groups */
    struct io_arena arena; /* every string of every group */
};
/* Add the groups of every record of path to set (zero-initialise set before the first file;
 * call once per file). A file without a single good record is PL_EFORMAT "PATH: no records"; a
 * file whose every label counts for nothing (all skipped or retracted) is not an error. On
 * failure set stays releasable (it may hold groups of the failed file). */
int ds_prefs_load(struct ds_prefs *set, const char *path, unsigned flags, struct pl_err *err);
void ds_prefs_release(struct ds_prefs *set);

/* Member `name` of obj as an array of strings (borrowed from obj, *n members), for readers of
 * records with completions. Otherwise PL_EFORMAT "PATH:LINE: field 'NAME': expected an array of
 * strings". */
int ds_get_strs(const struct io_jsonl *r, const cJSON *obj, const char *name, const cJSON **arr,
                int *n, struct pl_err *err);

/* Plain text (corpus.txt), whole file in data[0..len) with a NUL after it. */
struct ds_text {
    char *data;
    size_t len;
};
/* Errors: PL_EFORMAT "PATH: empty file", or io_text_check's (invalid UTF-8, a NUL byte). */
int ds_text_init(struct ds_text *t, const char *path, struct pl_err *err);
void ds_text_release(struct ds_text *t);

#endif
