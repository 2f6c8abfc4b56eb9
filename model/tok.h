/* tok: tokenizers. GPT-2 byte-level BPE (vocab.json + merges.txt, or OpenAI's
 * encoder.json + vocab.bpe) with GPT-2's exact pre-tokenization regex, and a
 * byte tokenizer (ids 0-255 are the bytes, 256 is <|endoftext|>) for tiny models.
 *
 * Both work on bytes: any byte string, invalid UTF-8 included, encodes and
 * decodes back to itself. Valid UTF-8 encodes exactly as OpenAI's GPT-2 encoder
 * does; bytes that are not valid UTF-8 match no regex branch, so each maximal run
 * of them is one pre-token and goes through BPE like any other.
 *
 * <|endoftext|> is the end-of-sequence id. In text it is ordinary characters
 * unless encode is given TOK_SPECIAL; decode always writes it as "<|endoftext|>". */
#ifndef TOK_H
#define TOK_H

#include "pl.h"

#include <stddef.h>
#include <stdint.h>

enum tok_kind { TOK_BYTE = 1, TOK_BPE = 2 };

/* Encode flag: "<|endoftext|>" in the text becomes the eos id. */
#define TOK_SPECIAL 1u

struct tok_merge;

/* Read-only after init/load, so one tok may serve several threads, each with
 * its own tok_buf. Fields are private except kind, vocab_size and eos. */
struct tok {
    int kind;         /* enum tok_kind; 0 on a zeroed or released struct */
    int vocab_size;   /* 257 for byte, 50257 for GPT-2 */
    int eos;          /* id of <|endoftext|> */
    int byte_id[256]; /* BPE: id of each single-byte token */
    char *text;       /* the bytes of every token, concatenated */
    uint32_t *offset; /* [vocab_size + 1]: token i is text[offset[i] .. offset[i + 1]) */
    int32_t *merges;  /* BPE: [n_merges][3] left, right and merged id, by rank */
    int n_merges;
    struct tok_merge *table; /* BPE: (left, right) -> rank and merged id */
    size_t table_mask;
    void *pcre_ctx; /* BPE: pcre2_general_context routing PCRE2 to pl_malloc */
    void *re;       /* BPE: the compiled pre-tokenization regex */
};

/* A growable, caller-owned id buffer that tok_encode appends to. Reusing one
 * buffer makes encoding allocation-free once it has grown. Zero-initialise it;
 * set n = 0 to reuse it; release it with tok_buf_release (safe twice). */
struct tok_buf {
    int *ids; /* [n] valid ids, room for cap */
    size_t n, cap;
    void *scratch; /* private: BPE work space */
    size_t scratch_cap;
    void *match; /* private: PCRE2 match data */
};

void tok_buf_release(struct tok_buf *b);

/* Fill t with the byte tokenizer. t is releasable even on failure (PL_ENOMEM). */
int tok_init_byte(struct tok *t, struct pl_err *err);

/* Load the tokenizer of model folder dir: BPE from dir/vocab.json + dir/merges.txt,
 * else dir/encoder.json + dir/vocab.bpe, else the byte tokenizer. Errors:
 * PL_ENOTFOUND (dir missing, or one file of a pair without the other), PL_EIO,
 * PL_EFORMAT with "path:line: why" (or "path: token 'x': why" inside JSON),
 * PL_ENOMEM. t is releasable even on failure. This reads the folder alone: a
 * command running a model loads both with ckpt_load_model, which also checks
 * the tokenizer against config.json (no byte fallback for a "gpt2" model). */
int tok_load(struct tok *t, const char *dir, struct pl_err *err);

/* Free everything t owns; safe on a zeroed struct and twice. */
void tok_release(struct tok *t);

/* Write t into dir (which must exist) so that tok_load(dir) gives it back:
 * BPE writes vocab.json and merges.txt (replacing them atomically); the byte
 * tokenizer writes nothing. PL_EIO names the file. */
int tok_save(const struct tok *t, const char *dir, struct pl_err *err);

/* Append the ids of text[0 .. len) to out->ids (text need not be NUL-terminated
 * and may hold any bytes); never more ids than len. flags: 0 or TOK_SPECIAL.
 * Time is O(len log len) even for one long unbroken word. Errors leave out->n as
 * it was: PL_ENOMEM; PL_EINVAL for a run of 2 GiB without a regex break;
 * PL_EFORMAT only if PCRE2 itself fails. */
int tok_encode(const struct tok *t, struct tok_buf *out, const char *text, size_t len,
               unsigned flags, struct pl_err *err);

/* The bytes of one token: returns a borrowed pointer to *len bytes (not
 * NUL-terminated), or NULL when id is out of range. For streaming output. */
const char *tok_piece(const struct tok *t, int id, size_t *len);

/* Decode ids[0 .. n) into a new NUL-terminated string *text of *len bytes
 * (embedded NULs possible); the caller frees it with pl_free. An id outside
 * [0, vocab_size) is PL_EINVAL; on failure *text is NULL. */
int tok_decode(const struct tok *t, char **text, size_t *len, const int *ids, size_t n,
               struct pl_err *err);

static inline int tok_vocab_size(const struct tok *t)
{
    return t->vocab_size;
}
static inline int tok_eos(const struct tok *t)
{
    return t->eos;
}

#endif
