/* gpt: GPT-2 exactly as Hugging Face's GPT2LMHeadModel (DESIGN.md section 4),
 * with an optional scalar head (score.weight, GPT2ForSequenceClassification).
 *
 * Parameters, gradients, AdamW moments and activations are each ONE
 * allocation, made by gpt_init for a maximum batch shape; nothing allocates
 * in forward, backward or the update. A frozen model (opts.trainable false)
 * has no gradient, moment or backward memory. Several models may live in one
 * process (policy, reference, value, reward). */
#ifndef GPT_H
#define GPT_H

#include "pl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gpt_config {
    int vocab_size;
    int n_positions;
    int n_embd;
    int n_layer;
    int n_head;
    float layer_norm_epsilon;
    int bos_token_id;
    int eos_token_id;
    char activation_function[32]; /* only "gelu_new" (and its aliases) is supported */
    char tokenizer[16];           /* "byte" or "gpt2" */
    /* A scalar head (score.weight): saved as HF's GPT2ForSequenceClassification with
     * num_labels 1. gpt_init gives a model one when this or opts.score_head is set. */
    bool score_head;
    /* The reward normalisation a reward model was saved with: consumers use
     * (head - reward_mean) / reward_std; the model itself never applies it. Default 0 and 1. */
    double reward_mean, reward_std;
};

/* GPT-2 124M's shape with the byte tokenizer's ids left to the caller; no head. */
void gpt_config_gpt2(struct gpt_config *cfg);
/* Whether the shape is usable: positive sizes, n_embd divisible by n_head, supported
 * activation, tokenizer "byte" or "gpt2", no more than the byte tokenizer's 257 ids with
 * "byte" (an id past 256 would have no text), a finite reward_mean and a positive finite
 * reward_std. PL_EINVAL with a message naming the field. */
int gpt_config_check(const struct gpt_config *cfg, struct pl_err *err);

struct gpt_opts {
    bool trainable; /* allocate gradients, AdamW moments and backward caches */
    /* Allocate score.weight [1, n_embd] even when cfg.score_head is false (an LM read as a
     * reward or value model). After gpt_init, m->opts.score_head and m->cfg.score_head both
     * say whether the model has a head. */
    bool score_head;
    bool head_only; /* a reward or value model: no LM logits memory, targets must be NULL */
    int max_batch;  /* largest B passed to gpt_forward */
    int max_seq;    /* largest T passed to gpt_forward (<= n_positions) */
};

/* One named parameter tensor, with its Hugging Face name and shape. */
struct gpt_param {
    char name[48];
    int ndim;
    int shape[2];
    size_t offset; /* in floats, into params (and grads, m, v) */
    size_t numel;
    bool decay; /* AdamW weight decay applies (matrices and embeddings only) */
};

/* Views into one parameter-sized block (params or grads). */
struct gpt_layer_w {
    float *ln1w, *ln1b;         /* [C] */
    float *qkvw, *qkvb;         /* [C, 3C], [3C] */
    float *attprojw, *attprojb; /* [C, C], [C] */
    float *ln2w, *ln2b;         /* [C] */
    float *fcw, *fcb;           /* [C, 4C], [4C] */
    float *fcprojw, *fcprojb;   /* [4C, C], [C] */
};
struct gpt_weights {
    float *wte;            /* [V, C] */
    float *wpe;            /* [P, C] */
    struct gpt_layer_w *h; /* [L] */
    float *lnfw, *lnfb;    /* [C] */
    float *score;          /* [1, C], NULL without a scalar head */
};

/* One forward batch. tokens [B,T] are required; the rest may be NULL.
 *
 * Lifetime: gpt_forward keeps the array pointers, and gpt_backward (and gpt_backward_lm) of
 * that forward reads tokens, targets, pos and last again, so those arrays must stay alive and
 * unchanged until the backward is done. seg is read by the forward only (attention keeps its
 * probabilities), and the struct itself may go once gpt_forward returns. */
struct gpt_batch {
    int B, T;
    const int *tokens;  /* [B,T] token ids */
    const int *targets; /* [B,T] next-token ids, < 0 = no log-prob wanted here; NULL: no LM head */
    const int *pos;     /* [B,T] position ids; NULL = 0..T-1 in every row */
    const int *seg;     /* [B,T] document ids; attention stays inside one; NULL = one per row */
    const int *last; /* [B] index of each row's last real token, for the scalar head; NULL = T-1 */
    /* Where the scalar head is read: false, at each row's last real token (a reward: m->head
     * and dhead are [B]); true, at every position (values for PPO: m->head and dhead are
     * [B*T], row-major like tokens; last is then unused). */
    bool head_all;
    /* The LM head's log-probabilities are of softmax(logits / temperature), as PPO samples its
     * rollouts; 0 or 1: the model's own distribution. */
    float temperature;
};

struct gpt {
    struct gpt_config cfg;
    struct gpt_opts opts;
    int n_tensors;
    struct gpt_param *table;       /* [n_tensors] */
    size_t n_params;               /* floats */
    float *params, *grads, *m, *v; /* grads, m, v NULL when frozen */
    struct gpt_weights w, g;       /* views into params and grads */
    struct gpt_layer_w *w_layers, *g_layers;

    /* Outputs of the last gpt_forward. */
    float *logp;   /* [B*T]: log p(targets) (0 where no target) */
    float *head;   /* scalar head: [B] at each row's last real token, or [B*T] (head_all) */
    float *hidden; /* [B,T,C]: final LayerNorm output */
    float loss;    /* mean of -logp over positions with a target; 0 if none */
    int n_targets;

    /* Internal: activation storage sized for opts.max_batch x opts.max_seq. */
    float *acts;
    size_t acts_floats;
    int B, T; /* shape of the last forward */
    const int *tokens_, *targets_, *pos_, *last_;
    bool head_all_;
    float inv_temp_; /* 1 / the last forward's temperature */
    int logit_rows;  /* rows of the logits buffer: B*T when trainable, else a chunk */
    long adam_t;     /* AdamW step count */
    int att_threads; /* threads the attention backward scratch was sized for */
};

/* Bytes gpt_init allocates for cfg and opts: parameters (times four when trainable:
 * gradients and AdamW moments), activations and tables. Computed without overflow:
 * UINT64_MAX when the count does not fit in 64 bits. cfg must pass gpt_config_check. */
uint64_t gpt_memory_bytes(const struct gpt_config *cfg, const struct gpt_opts *opts);

/* Allocate for cfg. Leaves m releasable on failure. Weights are zero: call
 * gpt_init_weights or load a checkpoint. A shape needing more memory than the machine has
 * (gpt_memory_bytes against physical memory) is refused before anything is allocated:
 * PL_ENOMEM "model too large: it needs N bytes of memory (...) and the machine has M".
 * Errors: PL_EINVAL (config, or a batch shape beyond the context or 2^31 - 1 positions),
 * PL_ENOMEM. */
int gpt_init(struct gpt *m, const struct gpt_config *cfg, const struct gpt_opts *opts,
             struct pl_err *err);
void gpt_release(struct gpt *m);

/* GPT-2 initialisation: N(0, 0.02) for matrices and embeddings, residual
 * projections (attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2*n_layer), LayerNorm
 * weight 1, biases 0, score head N(0, 0.02) as HF does. Same seed, same weights. */
void gpt_init_weights(struct gpt *m, uint64_t seed);

/* The parameter tensor with this HF name, or NULL. */
const struct gpt_param *gpt_param_find(const struct gpt *m, const char *name);
/* Copy weights between two models of the same config (head copied when both have one). */
void gpt_copy_weights(struct gpt *dst, const struct gpt *src);

/* Forward. Fills m->logp and m->loss when b->targets, m->head when the model
 * has a scalar head (where b->head_all says), m->hidden always. Errors: PL_EINVAL for a
 * shape beyond opts or a token/position id out of range. */
int gpt_forward(struct gpt *m, const struct gpt_batch *b, struct pl_err *err);

/* Logits of the last forward for row r (0 <= r < B*T), divided by its temperature, written to
 * out[V].
 * Cheap for trainable models (stored); recomputed from hidden otherwise. */
void gpt_logits_row(struct gpt *m, int r, float *out);

/* Backward of the last forward (trainable models only), reading that forward's batch arrays
 * (see gpt_batch). dlogp [B*T]: d objective / d logp (NULL = no LM term); dhead: d objective
 * / d head, shaped as m->head was ([B], or [B*T] with head_all; NULL = none). Gradients
 * ACCUMULATE into m->grads: call gpt_zero_grad between steps. For the plain LM loss use
 * gpt_backward_lm. */
void gpt_backward(struct gpt *m, const float *dlogp, const float *dhead);
/* Backward of m->loss (mean negative log-likelihood), scaled by `scale`
 * (1 / gradient-accumulation steps, say). */
void gpt_backward_lm(struct gpt *m, float scale);
void gpt_zero_grad(struct gpt *m);

/* Global L2 norm of the gradients; when max_norm > 0 and the norm exceeds it,
 * scale the gradients down to max_norm. Returns the norm before clipping. */
float gpt_clip_grad(struct gpt *m, float max_norm);

struct gpt_adamw {
    float lr, beta1, beta2, eps, weight_decay;
};
/* One AdamW step (decoupled weight decay, none on LayerNorm and biases). */
void gpt_adamw_step(struct gpt *m, const struct gpt_adamw *hp);

/* Training FLOPs per step for B x T tokens, nanoGPT/PaLM convention:
 * 6*(12*L*C^2 + V*C)*B*T + 12*L*T*C*B*T. */
double gpt_train_flops(const struct gpt_config *cfg, int B, int T);

#endif
