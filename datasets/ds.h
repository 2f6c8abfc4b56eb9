/* ds: record loaders for JSONL (cJSON), CSV (libcsv) and plain text, plain or gzip-compressed.
 *
 * Every reader goes through zlib, which reads gzip and plain files alike, so `x.jsonl.gz` needs
 * no flag. Errors follow pl.h: a file that cannot be opened is PL_ENOTFOUND (missing) or PL_EIO
 * "cannot open 'PATH': why"; bad data is PL_EFORMAT with a `PATH:LINE: ...` message, where LINE
 * is 1-based and counts every physical line, blank ones included; a file without a single record
 * is PL_EFORMAT "PATH: no records". Memory comes from pl_malloc and friends; the first JSON
 * parse also points cJSON's (process-wide) allocation hooks at them, so that allocation failure
 * tests reach inside cJSON and a cJSON out-of-memory reads as PL_ENOMEM, not as bad data.
 *
 * Every `ds_x_init` fills caller storage and leaves it releasable even when it fails;
 * `ds_x_release` is safe on a zeroed struct and twice. Strings in a record set live in the set's
 * arena and stay valid until its release. */
#ifndef DS_H
#define DS_H

#include "model/pl.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Loader flags. DS_SKIP_BAD_LINES: instead of failing on a malformed line or record, skip it
 * and count it in the set's `skipped` (the trainer's --skip-bad-lines). Out-of-memory and I/O
 * errors are never skipped. */
enum { DS_SKIP_BAD_LINES = 1 };

/* Owned string storage: blocks that never move, so a string's address stays valid. */
struct ds_block;
struct ds_arena {
    struct ds_block *head;
};
/* Copy of s[0..n) with a terminating NUL, or NULL when out of memory. */
char *ds_arena_strndup(struct ds_arena *a, const char *s, size_t n);
void ds_arena_release(struct ds_arena *a);

/* ---- lines: a plain or gzip text file read line by line ---- */

struct ds_lines {
    char *path; /* owned copy, for messages */
    void *gz;   /* gzFile */
    char *buf;  /* read chunk */
    size_t buf_len, buf_pos;
    char *line; /* current line, NUL-terminated */
    size_t line_cap;
    long lineno; /* 1-based number of the current line */
    bool eof;
};

int ds_lines_init(struct ds_lines *l, const char *path, struct pl_err *err);
/* Next line without its '\n' (a '\r' before it is kept), NUL-terminated in *line, length in
 * *len (the line may hold NUL bytes); valid until the next call. At end of file *line is NULL.
 * A leading UTF-8 byte order mark is dropped. Errors: PL_EIO (read error or a truncated gzip
 * stream), PL_ENOMEM. */
int ds_lines_next(struct ds_lines *l, const char **line, size_t *len, struct pl_err *err);
void ds_lines_release(struct ds_lines *l);

/* ---- jsonl: one JSON object a line ---- */

struct ds_jsonl {
    struct ds_lines lines;
    unsigned flags;
    long records; /* objects returned so far */
    long skipped; /* bad lines skipped under DS_SKIP_BAD_LINES */
};

int ds_jsonl_init(struct ds_jsonl *r, const char *path, unsigned flags, struct pl_err *err);
/* Next object in *obj (the caller owns it: cJSON_Delete) and its 1-based line in *line (may be
 * NULL); *obj is NULL at end of file. Blank lines (only spaces, tabs, '\r') are skipped. A line
 * that is not a JSON object gives PL_EFORMAT "PATH:LINE: not a JSON object" (or is skipped and
 * counted); reaching the end without a single object gives PL_EFORMAT "PATH: no records". */
int ds_jsonl_next(struct ds_jsonl *r, cJSON **obj, long *line, struct pl_err *err);
void ds_jsonl_release(struct ds_jsonl *r);

/* Fill err with PL_EFORMAT and "PATH:LINE: <message>" for the current line; returns
 * PL_EFORMAT. For loaders of other record kinds built on ds_jsonl. */
int ds_jsonl_errf(const struct ds_jsonl *r, struct pl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Member `name` of obj, borrowed from obj. Missing or of another type: PL_EFORMAT
 * "PATH:LINE: field 'NAME': expected a string" (a number, an integer). */
int ds_get_str(const struct ds_jsonl *r, const cJSON *obj, const char *name, const char **out,
               struct pl_err *err);
int ds_get_num(const struct ds_jsonl *r, const cJSON *obj, const char *name, double *out,
               struct pl_err *err);
int ds_get_int(const struct ds_jsonl *r, const cJSON *obj, const char *name, long *out,
               struct pl_err *err);

/* Whole-file JSON (constitution.json, world.json): *out is owned by the caller (cJSON_Delete).
 * Errors: PL_EFORMAT "PATH:LINE: not valid JSON", or "PATH: empty file". */
int ds_json_load(const char *path, cJSON **out, struct pl_err *err);

/* ---- csv: a header row of column names, then records ---- */

struct ds_csv {
    char *path; /* owned copy, for messages */
    size_t ncols;
    const char **names; /* [ncols] column names from the header row */
    size_t nrows;
    const char **cells; /* [nrows * ncols], row-major */
    long *lines;        /* [nrows] line on which each row starts */
    long skipped;       /* rows skipped under DS_SKIP_BAD_LINES */
    size_t cells_cap, lines_cap;
    struct ds_arena arena;
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
    struct ds_arena arena;
};
/* {"prompt", "response"} from JSONL, or from CSV with those columns when the path ends in
 * ".csv" or ".csv.gz". Other fields and columns are ignored. */
int ds_sft_init(struct ds_sft *set, const char *path, unsigned flags, struct pl_err *err);
void ds_sft_release(struct ds_sft *set);

struct ds_prompt_rec {
    const char *id, *prompt;
};
struct ds_prompts {
    struct ds_prompt_rec *recs; /* [n] */
    size_t n, cap;
    long skipped;
    struct ds_arena arena;
};
/* {"id", "prompt"} (both strings) from JSONL; other fields are ignored. */
int ds_prompts_init(struct ds_prompts *set, const char *path, unsigned flags, struct pl_err *err);
void ds_prompts_release(struct ds_prompts *set);

struct ds_pair_rec {
    const char *prompt, *chosen, *rejected; /* chosen and rejected are the responses only */
    double margin;                          /* 0 when absent */
};
struct ds_pairs {
    struct ds_pair_rec *recs; /* [n] */
    size_t n, cap;
    long skipped;
    struct ds_arena arena;
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
