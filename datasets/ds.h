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
 * "PATH:LINE: malformed quoted field"; no data row "PATH: no records". */
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
    long line; /* where the record is in its file */
};
struct ds_prompts {
    struct ds_prompt_rec *recs; /* [n] */
    size_t n, cap;
    long skipped;
    struct io_arena arena;
    size_t *table, mask; /* id -> index + 1, open addressing */
};
/* {"id", "prompt"} (both strings) from JSONL; other fields are ignored. A repeated id is a bad
 * record: "PATH:LINE: field 'id': duplicate id 'x' (first on line N)". */
int ds_prompts_init(struct ds_prompts *set, const char *path, unsigned flags, struct pl_err *err);
/* Index of the record with this id, or -1. */
int ds_prompts_find(const struct ds_prompts *set, const char *id);
void ds_prompts_release(struct ds_prompts *set);

struct ds_pair_rec {
    const char *prompt, *chosen, *rejected; /* chosen and rejected are the responses only */
    double margin;                          /* 0 when absent */
};
struct ds_pairs {
    struct ds_pair_rec *recs; /* [n] */
    size_t n, cap;
    long skipped;
    struct io_arena arena;
};
/* {"prompt", "chosen", "rejected", "margin"?} from JSONL. A record without "prompt" is read as
 * an HH-RLHF dialogue pair: the prompt is their shared prefix up to and including the last
 * "\n\nAssistant:" (ds_hh_prompt_len), chosen and rejected are what follows it; a pair without
 * one gives "PATH:LINE: no shared prompt ending in '\n\nAssistant:'" (printed escaped). */
int ds_pairs_init(struct ds_pairs *set, const char *path, unsigned flags, struct pl_err *err);
void ds_pairs_release(struct ds_pairs *set);

/* Length of the HH-RLHF prompt of a dialogue pair: the end of the last "\n\nAssistant:" that
 * lies wholly inside the common prefix of chosen and rejected; 0 when there is none. */
size_t ds_hh_prompt_len(const char *chosen, const char *rejected);

/* Plain text (corpus.txt), whole file in data[0..len) with a NUL after it. */
struct ds_text {
    char *data;
    size_t len;
};
/* Errors: PL_EFORMAT "PATH: empty file". */
int ds_text_init(struct ds_text *t, const char *path, struct pl_err *err);
void ds_text_release(struct ds_text *t);

#endif
