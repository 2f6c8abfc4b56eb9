/* io: the base I/O layer every plumb module and command shares (DESIGN.md section 3): reading
 * files line by line (plain or gzip), JSONL records with `path:line:` errors, string arenas,
 * paths and folders, atomic and durable writes, and the progress display.
 *
 * Errors follow pl.h: a file that cannot be opened is PL_ENOTFOUND (missing) or PL_EIO
 * "cannot open 'PATH': why"; bad data is PL_EFORMAT with a `PATH:LINE: ...` message, where LINE
 * is 1-based and counts every physical line, blank ones included. Memory comes from pl_malloc
 * and friends; the first JSON parse also points cJSON's (process-wide) allocation hooks at them,
 * so that allocation failure tests reach inside cJSON and a cJSON out-of-memory reads as
 * PL_ENOMEM, not as bad data.
 *
 * Every `io_x_init` fills caller storage and leaves it releasable even when it fails;
 * `io_x_release` is safe on a zeroed struct and twice. */
#ifndef IO_H
#define IO_H

#include "pl.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Loader flags. IO_SKIP_BAD_LINES: instead of failing on a malformed line or record, skip it and
 * count it (the trainers' --skip-bad-lines). Out-of-memory and I/O errors are never skipped.
 * IO_CUT_TAIL: the file is append-only (metrics.jsonl, labels, samples): a last line without
 * its newline that is not a JSON object is what a crash mid-write leaves, and is skipped and
 * counted in `cut` instead of failing. */
enum { IO_SKIP_BAD_LINES = 1, IO_CUT_TAIL = 2 };

/* ---- small helpers ---- */

/* Only spaces, tabs and '\r' (or nothing). */
bool io_blank(const char *s, size_t n);
bool io_has_suffix(const char *s, const char *suffix);

/* Text read as data must be well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * past U+10FFFF) without NUL bytes, which would silently cut a C string short. s[0..n) starts on
 * line `line` of path. PL_OK, or PL_EFORMAT "PATH:LINE: invalid UTF-8 (byte 0xff at column 3)"
 * or "PATH:LINE: NUL byte at column 3 (a binary file?)", LINE and COLUMN (1-based, in bytes)
 * counted from s. */
int io_text_check(const char *path, long line, const char *s, size_t n, struct pl_err *err);

/* Array growth by doubling: the (possibly moved) array with room for `need` items of `size`
 * bytes, *cap updated; NULL (the old array untouched) when out of memory. */
void *io_grow(void *items, size_t *cap, size_t need, size_t size);

/* "dir/name" (no doubled slash) in a new pl_malloc string, or NULL when out of memory. */
char *io_path_join(const char *dir, const char *name);

/* Owned string storage: blocks that never move, so a string's address stays valid until
 * release. Zero-initialise it. */
struct io_block;
struct io_arena {
    struct io_block *head;
};
/* Copy of s[0..n) with a terminating NUL, or NULL when out of memory. */
char *io_arena_strndup(struct io_arena *a, const char *s, size_t n);
void io_arena_release(struct io_arena *a);

/* ---- reading ---- */

/* The whole file (plain or gzip) in a new NUL-terminated pl_malloc buffer *data of *len bytes.
 * Errors: PL_ENOTFOUND, PL_EIO (also a truncated gzip stream), PL_ENOMEM. */
int io_read_file(const char *path, char **data, size_t *len, struct pl_err *err);

/* A plain or gzip text file read line by line. */
struct io_lines {
    char *path; /* owned copy, for messages */
    void *gz;   /* gzFile */
    char *buf;  /* read chunk */
    size_t buf_len, buf_pos;
    char *line; /* current line, NUL-terminated */
    size_t line_cap;
    long lineno; /* 1-based number of the current line */
    bool eof;
    bool cut; /* the last line returned had no newline after it */
};

int io_lines_init(struct io_lines *l, const char *path, struct pl_err *err);
/* Next line without its '\n' (a '\r' before it is kept), NUL-terminated in *line, length in
 * *len (the line may hold NUL bytes); valid until the next call. At end of file *line is NULL.
 * A leading UTF-8 byte order mark is dropped. Errors: PL_EIO (read error or a truncated gzip
 * stream), PL_ENOMEM. */
int io_lines_next(struct io_lines *l, const char **line, size_t *len, struct pl_err *err);
void io_lines_release(struct io_lines *l);

/* ---- JSON ---- */

/* Parse text[0..len) as exactly one JSON value (a NUL inside is bad JSON). *out is the
 * caller's (cJSON_Delete). PL_OK, PL_EFORMAT or PL_ENOMEM; no message is written. */
int io_json_parse(const char *text, size_t len, cJSON **out);

/* Whole-file JSON (config.json, constitution.json, world.json): *out is owned by the caller.
 * Errors: PL_EFORMAT "PATH:LINE: not valid JSON", "PATH: empty file" or io_text_check's; those
 * of reading. */
int io_json_load(const char *path, cJSON **out, struct pl_err *err);

/* One JSON object a line. */
struct io_jsonl {
    struct io_lines lines;
    unsigned flags;
    long records; /* objects returned so far */
    long skipped; /* bad lines skipped under IO_SKIP_BAD_LINES */
    long cut;     /* a cut-short last line skipped under IO_CUT_TAIL (0 or 1) */
};

int io_jsonl_init(struct io_jsonl *r, const char *path, unsigned flags, struct pl_err *err);
/* Next object in *obj (the caller owns it: cJSON_Delete) and its 1-based line in *line (may be
 * NULL); *obj is NULL at end of file. Blank lines (only spaces, tabs, '\r') are skipped. A line
 * that is not a JSON object gives PL_EFORMAT "PATH:LINE: not a JSON object", one that is not
 * UTF-8 or holds a NUL byte io_text_check's error (either is skipped and counted under
 * IO_SKIP_BAD_LINES); reaching the end without a single object gives PL_EFORMAT "PATH: no
 * records". */
int io_jsonl_next(struct io_jsonl *r, cJSON **obj, long *line, struct pl_err *err);
void io_jsonl_release(struct io_jsonl *r);

/* Fill err with PL_EFORMAT and "PATH:LINE: <message>" for the current line; returns
 * PL_EFORMAT. For loaders of record kinds built on io_jsonl. */
int io_jsonl_errf(const struct io_jsonl *r, struct pl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Member `name` of obj, borrowed from obj. Missing or of another type: PL_EFORMAT
 * "PATH:LINE: field 'NAME': expected a string" (a number, an integer). */
int io_get_str(const struct io_jsonl *r, const cJSON *obj, const char *name, const char **out,
               struct pl_err *err);
int io_get_num(const struct io_jsonl *r, const cJSON *obj, const char *name, double *out,
               struct pl_err *err);
int io_get_int(const struct io_jsonl *r, const cJSON *obj, const char *name, long *out,
               struct pl_err *err);

/* ---- writing ---- */

/* Write p[0..n) to fd, retrying short writes. PL_EIO "cannot write 'PATH': why". */
int io_write_all(int fd, const void *p, size_t n, const char *path, struct pl_err *err);

/* fsync the folder holding path, so that a rename or a new file in it survives a crash. */
int io_sync_parent(const char *path, struct pl_err *err);

/* mkdir -p (mode 0777 before the umask). Errors: PL_EINVAL (empty name), PL_EIO, PL_ENOMEM. */
int io_mkdirs(const char *dir, struct pl_err *err);

/* Whether dir is missing or holds no entry (*empty). Errors: PL_EIO (dir is a file, or
 * unreadable). */
int io_dir_empty(const char *dir, bool *empty, struct pl_err *err);

/* Whether a and b name the same existing file (same device and inode): an output that is also
 * an input. */
bool io_same_file(const char *a, const char *b);

/* An output file written whole or not at all: everything goes to "PATH.tmp" in the same
 * folder; commit flushes, fsyncs, renames it over PATH and syncs the folder; abort (or a
 * crash) leaves PATH as it was. `f` is a stdio stream on the temporary file for writers that
 * print. Zero-initialise before use. */
struct io_out {
    FILE *f;
    char *path, *tmp;
};
int io_out_open(struct io_out *o, const char *path, struct pl_err *err);
/* Errors: PL_EIO naming the path and why (a write error seen by the stream included). */
int io_out_commit(struct io_out *o, struct pl_err *err);
/* Drop the temporary file; safe on a zeroed, committed or aborted struct. */
void io_out_abort(struct io_out *o);

/* data[0..n) to path atomically and durably (io_out). Errors: PL_EIO, PL_ENOMEM. */
int io_write_atomic(const char *path, const void *data, size_t n, struct pl_err *err);

/* Append data[0..n) to an append-only record file (O_APPEND, created if missing) in one
 * write, then fsync: a crash keeps whole records and at most one cut-short last line. */
int io_append_durable(const char *path, const void *data, size_t n, struct pl_err *err);

/* For a JSONL file that a crash may have left with a cut-short last line (no newline): *keep
 * is the length without that line, or -1 when the file ends in a newline, is empty or is
 * missing. Truncate to it with io_truncate before appending again. */
int io_jsonl_tail(const char *path, long *keep, struct pl_err *err);
int io_truncate(const char *path, long size, struct pl_err *err);

/* ---- progress ---- */

/* A progress display on a stream (stderr): on a terminal one line redrawn in place at most ten
 * times a second ("LABEL [####....] done/total UNIT  RATE  ETA 0:01:02  NOTE"); otherwise a
 * plain line every `every` seconds (default 5). The last call (last = true) always draws and
 * ends the line. f may be NULL: then nothing is shown. */
struct io_progress {
    FILE *f;
    bool tty;
    const char *label, *unit; /* "sample", "prompts" */
    long done, total;
    double t0, shown, every;
};
void io_progress_init(struct io_progress *p, FILE *f, const char *label, const char *unit,
                      long total);
/* `note` (may be NULL) is appended, e.g. "812 tokens/s" or "loss 1.2345". */
void io_progress_show(struct io_progress *p, const char *note, bool last);
/* A whole log line ("LABEL: message"); on a terminal it first clears the progress line, which
 * the next show draws again. */
void io_progress_log(struct io_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
