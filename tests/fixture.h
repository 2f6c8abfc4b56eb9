/* fixture: what many test programs build: tiny byte-level model shapes, a temporary folder with
 * paths inside it, small files. */
#ifndef TAP_FIXTURE_H
#define TAP_FIXTURE_H

#include "model/gpt.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* A byte-tokenizer GPT-2 shape (vocab 257, end token 256) of the given size. */
struct gpt_config tap_byte_config(int n_positions, int n_embd, int n_layer, int n_head);

/* A model of cfg (max batch 1, the whole context) with GPT-2's initial weights moved by N(0, 0.15)
 * noise, so that its distributions are peaked and its attention is not uniform; exits when it
 * cannot be allocated. */
void tap_model_perturbed(struct gpt *m, const struct gpt_config *cfg, uint64_t seed);

/* Every parameter of model folder dir in a new pl_malloc array of *n floats (the caller frees
 * it); NULL and *n = 0 when the folder does not load. */
float *tap_load_params(const char *dir, size_t *n);

/* x[0, n) = scale * N(0, 1) draws from r. */
void tap_fill(float *x, size_t n, struct pl_rng *r, float scale);

/* Normalised mean squared error of got against want (the plain error when want is all zero). */
double tap_nmse(const float *got, const float *want, size_t n);

/* Make a fresh folder /tmp/plumb-TAG-XXXXXX for this program (skip_all when that fails) and
 * return it; later calls return the same folder. */
const char *tap_tmpdir(const char *tag);
/* tap_tmpdir's folder + "/" + name; the last 64 results stay valid. */
const char *tap_tmp(const char *name);

/* Write text to path; a failure is a TAP diagnostic (the test that reads it then fails). */
void tap_write_file(const char *path, const char *text);

/* The first cap - 1 bytes of the file at path into buf, NUL-terminated (empty when it cannot be
 * read); the bytes read. */
size_t tap_read_into(const char *path, char *buf, size_t cap);

/* system(cmd)'s exit status, or -1 when the command did not exit (a signal). */
int tap_system(const char *cmd);

/* Run the shell command cmd in the current folder, its standard output and error going through
 * stdout.txt and stderr.txt there into out[cap_out] and err[cap_err]; tap_system's status. */
int tap_shell(const char *cmd, char *out, size_t cap_out, char *err, size_t cap_err);

/* The plumb binary of this build: $PLUMB_BIN made absolute (a test may then change folder), read
 * at the first call; the whole test is skipped when it is not set to an executable. */
const char *tap_plumb_bin(void);

/* Run "PLUMB ARGS" (ARGS formatted from fmt: a shell fragment) through tap_shell in the current
 * folder, standard input from /dev/null; tap_shell's status and outputs. */
__attribute__((format(printf, 5, 6))) int tap_plumb(char *out, size_t cap_out, char *err,
                                                    size_t cap_err, const char *fmt, ...);

/* The whole file's bytes, as they are (no gzip), in a new malloc buffer of *n bytes plus a NUL;
 * NULL (and *n 0) when it cannot be read. */
char *tap_read_whole(const char *path, size_t *n);

/* A program on a pseudo-terminal, as a person meets `plumb label`. */
struct tap_pty {
    int fd;               /* the terminal's master side */
    int pid;              /* the shell running the command */
    char screen[1 << 20]; /* what the program wrote to the terminal (from the start once full) */
    size_t n;
};

/* Run the shell command cmd (sh -c, in the current folder) on a new 80x24 pseudo-terminal, its
 * standard input and output the terminal, TERM=xterm and no LINES or COLUMNS; whether it
 * started. */
bool tap_pty_start(struct tap_pty *p, const char *cmd);

/* Read what the program writes for up to ms milliseconds, or until `want` is on the screen
 * (NULL: the whole time); whether it is. */
bool tap_pty_pump(struct tap_pty *p, const char *want, int ms);

/* Whether the files at a and b both exist and hold the same bytes. */
bool tap_same_file(const char *a, const char *b);

/* Run the command cmd as "NAME ARGS" (fmt and ap formatted, then split at spaces) in a child
 * process, its standard output into out[cap_out] and standard error into err[cap_err] (through
 * files in tap_tmpdir's folder); the exit status, or -1 when the child did not exit. */
int tap_run_cmdv(char *out, size_t cap_out, char *err, size_t cap_err, int (*cmd)(int, char **),
                 const char *name, const char *fmt, va_list ap);

#endif
