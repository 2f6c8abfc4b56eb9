/* fixture: what many test programs build: tiny byte-level model shapes, a temporary folder with
 * paths inside it, small files. */
#ifndef TAP_FIXTURE_H
#define TAP_FIXTURE_H

#include "model/gpt.h"

/* A byte-tokenizer GPT-2 shape (vocab 257, end token 256) of the given size. */
struct gpt_config tap_byte_config(int n_positions, int n_embd, int n_layer, int n_head);

/* Make a fresh folder /tmp/plumb-TAG-XXXXXX for this program (skip_all when that fails) and
 * return it; later calls return the same folder. */
const char *tap_tmpdir(const char *tag);
/* tap_tmpdir's folder + "/" + name; the last 64 results stay valid. */
const char *tap_tmp(const char *name);

/* Write text to path; a failure is a TAP diagnostic (the test that reads it then fails). */
void tap_write_file(const char *path, const char *text);

#endif
