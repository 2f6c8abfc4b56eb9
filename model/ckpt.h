/* ckpt: checkpoints (DESIGN.md section 4) and safetensors files.
 *
 * A checkpoint is a folder with config.json (Hugging Face GPT2Config field
 * names plus plumb's "tokenizer"), model.safetensors (HF tensor names, F32) and,
 * for the "gpt2" tokenizer, its vocabulary (vocab.json + merges.txt, or
 * encoder.json + vocab.bpe). A model with a scalar head is saved as HF's
 * GPT2ForSequenceClassification (architectures, num_labels 1, body tensors
 * under "transformer.", score.weight), one without as GPT2LMHeadModel.
 * Loading accepts what HF writes: a "transformer." prefix, the old
 * h.N.attn.bias / h.N.attn.masked_bias mask buffers (ignored), a tied
 * lm_head.weight (ignored when it equals wte.weight) and F16 / BF16 tensors
 * (converted to F32). Every file is validated completely before any of it is
 * trusted, and every file is written atomically (path.tmp, fsync, rename,
 * fsync of the folder), so a crash never leaves a half-written file.
 *
 * Error messages name the file first: "run/config.json: field 'n_head':
 * expected a positive integer", "run/model.safetensors: tensor
 * 'h.0.attn.c_attn.weight': expected shape [32, 96], got [96, 32]".
 * Codes: PL_EIO (cannot read or write), PL_EFORMAT (malformed content),
 * PL_ESHAPE (a tensor of the wrong shape), PL_ENOMEM, PL_EINVAL (bad
 * arguments), and PL_ENOTFOUND only as described at ckpt_weights_load and
 * ckpt_load_model. */
#ifndef CKPT_H
#define CKPT_H

#include "gpt.h"
#include "pl.h"
#include "tok.h"

#include <stddef.h>
#include <stdint.h>

/* ---- safetensors: any named tensors ----
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value", ...}}, then the data; offsets count from
 * the first byte after the header. Data is little-endian. */

enum ckpt_dtype {
    CKPT_F32,
    CKPT_F16,
    CKPT_BF16,
    CKPT_F64,
    CKPT_I64,
    CKPT_U64,
    CKPT_I32,
    CKPT_U32,
    CKPT_I16,
    CKPT_U16,
    CKPT_I8,
    CKPT_U8,
    CKPT_BOOL,
    CKPT_F8_E5M2,
    CKPT_F8_E4M3,
};

/* Bytes per element, and the safetensors name ("F32", "BF16", ...). */
size_t ckpt_dtype_size(enum ckpt_dtype dtype);
const char *ckpt_dtype_name(enum ckpt_dtype dtype);

#define CKPT_MAX_DIM 8

/* One tensor: `data` holds numel * ckpt_dtype_size(dtype) bytes, little-endian.
 * When read from a file, name and data point into the ckpt_file and data may
 * be unaligned (read it with ckpt_file_get or memcpy). */
struct ckpt_tensor {
    const char *name;
    enum ckpt_dtype dtype;
    int ndim; /* 0 (a scalar) to CKPT_MAX_DIM */
    int64_t shape[CKPT_MAX_DIM];
    const void *data;
};

/* Product of the shape (1 for a scalar). */
size_t ckpt_tensor_numel(const struct ckpt_tensor *t);

/* Write list[0..n) to path atomically, in the given order, with no gaps
 * between tensors, the header padded with spaces to a multiple of 8 bytes.
 * metadata_json: NULL or a JSON object whose values are strings (safetensors
 * allows nothing else), e.g. {"step": "1200"}; stored as "__metadata__".
 * Names must be unique and not "__metadata__". Borrowed: everything.
 * Errors: PL_EINVAL (bad list or metadata), PL_EIO, PL_ENOMEM. */
int ckpt_write_tensors(const char *path, const struct ckpt_tensor *list, int n,
                       const char *metadata_json, struct pl_err *err);

/* A safetensors file mapped read-only and fully validated: the header length
 * lies inside the file, the header is JSON, every dtype is known, shape x
 * dtype size equals end - begin, every tensor lies inside the data area (a
 * truncated file fails here), no two overlap and no name repeats. */
struct ckpt_file {
    int n;
    struct ckpt_tensor *tensors; /* [n], sorted by name */
    /* Internal. */
    char *path_;
    void *map_;
    size_t size_;
    struct cJSON *json_;
};

/* Open and validate path. Leaves f releasable on failure.
 * Errors: PL_EIO, PL_EFORMAT, PL_ENOMEM. */
int ckpt_file_open(struct ckpt_file *f, const char *path, struct pl_err *err);
/* Safe on a zeroed struct and twice. */
void ckpt_file_release(struct ckpt_file *f);

/* The tensor with this exact name, or NULL. */
const struct ckpt_tensor *ckpt_file_find(const struct ckpt_file *f, const char *name);
/* The string value of __metadata__[key], or NULL. Valid until release. */
const char *ckpt_file_meta(const struct ckpt_file *f, const char *key);

/* Copy tensor `name` into out[numel] as `dtype`. CKPT_F32 accepts F32, F16
 * and BF16 tensors (converted); any other dtype must match exactly. The
 * tensor must hold exactly numel elements (its shape is not checked further).
 * Errors: PL_ENOTFOUND (no such tensor), PL_EFORMAT (dtype), PL_ESHAPE. */
int ckpt_file_get(const struct ckpt_file *f, const char *name, enum ckpt_dtype dtype, void *out,
                  size_t numel, struct pl_err *err);

/* Exact conversions of one IEEE binary16 / bfloat16 value (given as its bits)
 * to float, subnormals, infinities and NaN payloads included. */
float ckpt_f16_to_f32(uint16_t h);
float ckpt_bf16_to_f32(uint16_t h);

/* ---- config.json ---- */

/* Parse config.json text; source_name starts every message. Required
 * positive integers: vocab_size, n_embd, n_layer, n_head and n_positions (or
 * HF's older n_ctx). Optional, with GPT2Config's defaults: layer_norm_epsilon
 * (1e-5), activation_function ("gelu_new"), bos_token_id and eos_token_id
 * (50256, or 256 with the byte tokenizer, whose <|endoftext|> is 256). plumb's
 * "tokenizer" is "byte" or "gpt2", default "gpt2" when vocab_size is 50257
 * and "byte" otherwise; "byte" needs vocab_size 257 exactly. A scalar head:
 * "architectures" holding "GPT2ForSequenceClassification" sets cfg->score_head,
 * with one label (num_labels, or the size of HF's id2label; default 1), and
 * plumb's "reward_mean" (default 0) and "reward_std" (default 1, positive).
 * A null optional field counts as missing. Settings
 * that change GPT-2's arithmetic (model_type other than "gpt2", n_inner other
 * than 4 * n_embd, scale_attn_weights false, scale_attn_by_inverse_layer_idx
 * true, tie_word_embeddings false, add_cross_attention true) are rejected;
 * other fields are ignored.
 * Ends with gpt_config_check. Errors: PL_EFORMAT. */
int ckpt_config_parse(const char *json_text, const char *source_name, struct gpt_config *cfg,
                      struct pl_err *err);
/* Read dir/config.json. Errors: PL_ENOTFOUND (no such file), PL_EIO, PL_EFORMAT, PL_ENOMEM. */
int ckpt_config_read(const char *dir, struct gpt_config *cfg, struct pl_err *err);
/* Write dir/config.json (atomically) that HF loads: model_type "gpt2",
 * architectures ("GPT2LMHeadModel", or with cfg->score_head
 * "GPT2ForSequenceClassification", num_labels 1, reward_mean, reward_std),
 * n_ctx = n_positions, plus "tokenizer". Refuses what ckpt_config_parse would
 * refuse. The folder must exist. Errors: PL_EINVAL (gpt_config_check, a byte
 * tokenizer without 257 ids), PL_EIO, PL_ENOMEM. */
int ckpt_config_write(const char *dir, const struct gpt_config *cfg, struct pl_err *err);

/* ---- model weights ---- */

/* Write every parameter of m to path as F32 with HF names, metadata
 * {"format": "pt"}. With a scalar head, as GPT2ForSequenceClassification
 * names them: "transformer.wte.weight", ..., "score.weight". */
int ckpt_weights_save(const struct gpt *m, const char *path, struct pl_err *err);

/* Load path into m's parameters by name. Every tensor of m must be present
 * with its exact shape and a float dtype (F32, F16, BF16); a missing,
 * misshapen, repeated or unknown tensor is an error naming it, and then no
 * weight of m has changed. A score.weight in the file is ignored when m has
 * no scalar head (reading a reward model as a plain LM).
 * Returns PL_ENOTFOUND in exactly one case: m has a scalar head and the file
 * has no score.weight (an LM checkpoint read as a reward or value model);
 * then every other weight IS loaded and m->w.score is left as it was, for
 * the caller to initialise or to treat as an error. */
int ckpt_weights_load(struct gpt *m, const char *path, struct pl_err *err);

/* mkdir -p dir, then write dir/model.safetensors and dir/config.json, each
 * atomically (the weights first: a folder without config.json is visibly
 * unfinished). */
int ckpt_save(const struct gpt *m, const char *dir, struct pl_err *err);

/* Read dir/config.json, gpt_init(m, cfg, opts), load dir/model.safetensors.
 * The model has a scalar head when opts->score_head or config.json says so.
 * m is initialised (zeroed first) and releasable with gpt_release on every
 * return, success or not. PL_ENOTFOUND as for ckpt_weights_load (m usable,
 * head zero), only when the head was asked for by opts alone; a head that
 * config.json names must be in the file (PL_EFORMAT). The model alone: to
 * run it on text use ckpt_load_model. */
int ckpt_load(struct gpt *m, const char *dir, const struct gpt_opts *opts, struct pl_err *err);

/* Load model folder dir whole: config.json, its tokenizer and the weights, as
 * every command that runs a model on text does. Checked before any weight is
 * read: the folder's tokenizer is the one config.json names ("gpt2": its
 * vocabulary files must be there, PL_ENOTFOUND naming them; "byte": no
 * vocabulary files), the model's vocab_size equals the tokenizer's (an id
 * without text, or text without an embedding, is refused; PL_EFORMAT naming
 * the folder and both sizes), and eos_token_id is the tokenizer's
 * <|endoftext|>. Then as ckpt_load, PL_ENOTFOUND included (m and t usable).
 * m and t are zeroed first and releasable (gpt_release, tok_release) on
 * every return. Errors: those of ckpt_load and tok_load, and the above. */
int ckpt_load_model(struct gpt *m, struct tok *t, const char *dir, const struct gpt_opts *opts,
                    struct pl_err *err);

/* The first half of ckpt_load_model, for callers that size the model from the tokenised data:
 * *cfg from dir/config.json and t from dir, with the same checks; then ckpt_load. t is zeroed
 * first and releasable on every return. */
int ckpt_load_tokenizer(struct tok *t, struct gpt_config *cfg, const char *dir, struct pl_err *err);

#endif
