/* Tests for model/ckpt: config.json, safetensors reading and writing, model
 * checkpoints. Malformed files are built here, in a temporary folder. */
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "model/tok.h"
#include "tests/tap.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/plumb-ckpt-XXXXXX";

/* tmpdir/name in a rotating static buffer (two paths may be live at once). */
static const char *tmp(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void expect(int rc, const struct pl_err *err, int code, const char *needle, const char *what)
{
    int pass = rc == code && strstr(err->msg, needle) != NULL;
    tap_ok(pass, "%s", what);
    if (!pass)
        tap_diag("     got: %d '%s'\n    want: %d '...%s...'", rc, err->msg, code, needle);
}

static const struct gpt_opts frozen = {.max_batch = 1, .max_seq = 4};
static const struct gpt_opts frozen_head = {.score_head = true, .max_batch = 1, .max_seq = 4};

/* A tiny byte-tokenizer model: V 257, context 16, 2 layers, 32 wide, 4 heads. */
static void tiny_config(struct gpt_config *cfg)
{
    gpt_config_gpt2(cfg);
    cfg->vocab_size = 257;
    cfg->n_positions = 16;
    cfg->n_embd = 32;
    cfg->n_layer = 2;
    cfg->n_head = 4;
    cfg->bos_token_id = cfg->eos_token_id = 256;
    snprintf(cfg->tokenizer, sizeof cfg->tokenizer, "byte");
}

static int tiny_model(struct gpt *m, const struct gpt_opts *opts, uint64_t seed, struct pl_err *err)
{
    struct gpt_config cfg;
    tiny_config(&cfg);
    int rc = gpt_init(m, &cfg, opts, err);
    if (!rc)
        gpt_init_weights(m, seed);
    return rc;
}

/* The model's tensors as a list, with room for `extra` more. */
static struct ckpt_tensor *model_list(const struct gpt *m, int extra)
{
    struct ckpt_tensor *list = calloc((size_t)(m->n_tensors + extra), sizeof *list);
    for (int i = 0; i < m->n_tensors; i++) {
        const struct gpt_param *p = &m->table[i];
        list[i].name = p->name;
        list[i].dtype = CKPT_F32;
        list[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++)
            list[i].shape[d] = p->shape[d];
        list[i].data = m->params + p->offset;
    }
    return list;
}

static int list_find(const struct ckpt_tensor *list, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i].name, name) == 0)
            return i;
    return -1;
}

/* A raw safetensors file: length, header text, data. */
static void write_raw(const char *path, uint64_t hlen, const char *header, const void *data,
                      size_t n)
{
    FILE *f = fopen(path, "wb");
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n)
        fwrite(data, 1, n, f);
    fclose(f);
}

static void write_header(const char *path, const char *header, size_t data_bytes)
{
    static const unsigned char zeros[64];
    write_raw(path, strlen(header), header, zeros, data_bytes);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* F16 bits of a float that F16 represents exactly as a normal number or zero. */
static uint16_t f16_exact(float f)
{
    uint32_t u = bits_of(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    if ((u & 0x7fffffff) == 0)
        return sign;
    int exp = (int)((u >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(sign | exp << 10 | ((u >> 13) & 0x3ff));
}

static void test_f16_bf16(void)
{
    /* Every F16 value against the definition: (-1)^s 2^(e-15) (1 + m/1024), or 2^-14 m/1024. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 10) & 0x1f, mant = h & 0x3ff;
        float want;
        if (e == 31)
            want = mant ? NAN : INFINITY;
        else if (e == 0)
            want = (float)ldexp((double)mant, -24);
        else
            want = (float)ldexp(1024.0 + mant, (int)e - 25);
        if (h & 0x8000)
            want = -want;
        float got = ckpt_f16_to_f32((uint16_t)h);
        bool same = isnan(want) ? isnan(got) && (bits_of(got) >> 13 & 0x3ff) == mant &&
                                      (bits_of(got) >> 31) == (h >> 15)
                                : bits_of(got) == bits_of(want);
        bad += !same;
    }
    tap_is_int(bad, 0, "f16: all 65536 values match the definition");
    tap_ok(ckpt_f16_to_f32(0x3c00) == 1.0f && ckpt_f16_to_f32(0xc000) == -2.0f &&
               ckpt_f16_to_f32(0x7bff) == 65504.0f && ckpt_f16_to_f32(0x3555) == 0.333251953125f,
           "f16: 1, -2, 65504, 0.33325");
    tap_ok(ckpt_f16_to_f32(0x0001) == 5.9604644775390625e-08f &&
               ckpt_f16_to_f32(0x03ff) == 6.097555160522461e-05f &&
               ckpt_f16_to_f32(0x0400) == 6.103515625e-05f,
           "f16: smallest and largest subnormal, smallest normal");
    tap_ok(bits_of(ckpt_f16_to_f32(0x8000)) == 0x80000000u && ckpt_f16_to_f32(0x7c00) == INFINITY &&
               ckpt_f16_to_f32(0xfc00) == -INFINITY && isnan(ckpt_f16_to_f32(0x7e00)) &&
               isnan(ckpt_f16_to_f32(0x7c01)),
           "f16: -0, +-inf, quiet and signalling NaN");
    tap_ok(ckpt_bf16_to_f32(0x3f80) == 1.0f && ckpt_bf16_to_f32(0xc049) == -3.140625f &&
               ckpt_bf16_to_f32(0x4780) == 65536.0f &&
               ckpt_bf16_to_f32(0x0001) == (float)ldexp(1.0, -133) &&
               bits_of(ckpt_bf16_to_f32(0x8000)) == 0x80000000u &&
               ckpt_bf16_to_f32(0x7f80) == INFINITY && ckpt_bf16_to_f32(0xff80) == -INFINITY &&
               isnan(ckpt_bf16_to_f32(0x7fc0)),
           "bf16: 1, -3.140625, 65536, subnormal, -0, +-inf, NaN");
}

static bool same_config(const struct gpt_config *a, const struct gpt_config *b)
{
    return a->vocab_size == b->vocab_size && a->n_positions == b->n_positions &&
           a->n_embd == b->n_embd && a->n_layer == b->n_layer && a->n_head == b->n_head &&
           bits_of(a->layer_norm_epsilon) == bits_of(b->layer_norm_epsilon) &&
           a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id &&
           strcmp(a->activation_function, b->activation_function) == 0 &&
           strcmp(a->tokenizer, b->tokenizer) == 0 && a->score_head == b->score_head &&
           a->reward_mean == b->reward_mean && a->reward_std == b->reward_std;
}

static bool same_params(const struct gpt *a, const struct gpt *b)
{
    return a->n_params == b->n_params &&
           memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0;
}

/* Any *.tmp left in the folder means a write was not cleaned up. */
static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_round_trip(void)
{
    struct pl_err err = {0};
    struct gpt a, b, c;
    int rc = tiny_model(&a, &frozen_head, 42, &err);
    tap_is_int(rc, PL_OK, "tiny model with a scalar head");
    a.cfg.layer_norm_epsilon = 1e-6f;
    a.cfg.reward_mean = -0.1234567890123;
    a.cfg.reward_std = 2.5;
    char dir[512]; /* tmp's buffers rotate */
    snprintf(dir, sizeof dir, "%s", tmp("run/nested/rm"));
    rc = ckpt_save(&a, dir, &err);
    tap_is_int(rc, PL_OK, "ckpt_save into a new nested folder");
    if (rc)
        tap_diag("%s", err.msg);
    tap_is_int(count_tmp_files(dir), 0, "no .tmp file left behind");

    rc = ckpt_load(&b, dir, &frozen_head, &err);
    tap_is_int(rc, PL_OK, "ckpt_load");
    tap_ok(same_config(&a.cfg, &b.cfg) && b.cfg.score_head,
           "config round trip is exact, head and reward normalisation included");
    tap_ok(same_params(&a, &b), "weights round trip is bit-exact (score head included)");

    char *text = NULL;
    FILE *f = fopen(tmp("run/nested/rm/config.json"), "rb");
    char buf[2048] = {0};
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        text = buf;
    }
    tap_ok(text && strstr(text, "\"model_type\": \"gpt2\"") &&
               strstr(text, "\"architectures\": [\n    \"GPT2ForSequenceClassification\"\n  ]") &&
               strstr(text, "\"num_labels\": 1,") && strstr(text, "\"n_ctx\": 16") &&
               strstr(text, "\"layer_norm_epsilon\": 1e-06,") &&
               strstr(text, "\"reward_mean\": -0.1234567890123,") &&
               strstr(text, "\"reward_std\": 2.5,") && strstr(text, "\"tokenizer\": \"byte\""),
           "config.json names HF's GPT2ForSequenceClassification with one label, prints numbers "
           "shortest");

    struct ckpt_file cf;
    rc = ckpt_file_open(&cf, tmp("run/nested/rm/model.safetensors"), &err);
    const struct ckpt_tensor *t =
        rc ? NULL : ckpt_file_find(&cf, "transformer.h.1.mlp.c_fc.weight");
    tap_ok(t && t->dtype == CKPT_F32 && t->ndim == 2 && t->shape[0] == 32 && t->shape[1] == 128 &&
               ckpt_file_find(&cf, "score.weight") && !ckpt_file_find(&cf, "wte.weight") &&
               cf.n == a.n_tensors,
           "model.safetensors holds every tensor as F32 with GPT2ForSequenceClassification's "
           "names");
    const char *fmt = rc ? NULL : ckpt_file_meta(&cf, "format");
    tap_is_str(fmt, "pt", "metadata format is pt");
    ckpt_file_release(&cf);
    ckpt_file_release(&cf);
    FILE *raw = fopen(tmp("run/nested/rm/model.safetensors"), "rb");
    unsigned char len[8] = {0};
    if (raw) {
        if (fread(len, 1, 8, raw) != 8)
            memset(len, 0, sizeof len);
        fclose(raw);
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)len[i] << (8 * i);
    tap_ok(hlen > 0 && hlen % 8 == 0, "header padded to a multiple of 8 bytes");

    /* An LM checkpoint read as a reward model: everything but the head loads. */
    gpt_release(&b);
    tiny_model(&b, &frozen, 43, &err);
    char lm[512];
    snprintf(lm, sizeof lm, "%s", tmp("lm"));
    rc = ckpt_save(&b, lm, &err);
    f = fopen(tmp("lm/config.json"), "rb");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[got] = '\0';
    if (f)
        fclose(f);
    tap_ok(strstr(buf, "\"GPT2LMHeadModel\"") && !strstr(buf, "num_labels") &&
               !strstr(buf, "reward_"),
           "a model without a head is a GPT2LMHeadModel");
    rc = rc ? rc : ckpt_file_open(&cf, tmp("lm/model.safetensors"), &err);
    tap_ok(rc == PL_OK && ckpt_file_find(&cf, "wte.weight") && !ckpt_file_find(&cf, "score.weight"),
           "... with unprefixed names");
    ckpt_file_release(&cf);
    rc = rc ? rc : ckpt_load(&c, lm, &frozen_head, &err);
    expect(rc, &err, PL_ENOTFOUND, "model.safetensors: tensor 'score.weight' missing",
           "LM checkpoint into a head model: PL_ENOTFOUND naming score.weight");
    bool zero_head = c.w.score != NULL;
    for (int i = 0; zero_head && i < c.cfg.n_embd; i++)
        zero_head = c.w.score[i] == 0.0f;
    tap_ok(zero_head && memcmp(c.params, b.params, b.n_params * sizeof(float)) == 0,
           "... and the rest is loaded, head left zero");
    gpt_release(&b);
    gpt_release(&c);
    gpt_release(&c);

    rc = ckpt_load(&c, dir, &frozen, &err);
    tap_ok(rc == PL_OK && c.w.score && memcmp(c.w.score, a.w.score, 32 * sizeof(float)) == 0,
           "a reward checkpoint has its head whatever the options: config.json says so (%s)",
           rc ? err.msg : "ok");
    gpt_release(&c);

    /* A config.json that promises a head its weights lack is broken, not an LM. */
    struct gpt_config head_cfg;
    rc = ckpt_config_read(lm, &head_cfg, &err);
    head_cfg.score_head = true;
    rc = rc ? rc : ckpt_config_write(lm, &head_cfg, &err);
    rc = rc ? rc : ckpt_load(&c, lm, &frozen, &err);
    expect(rc, &err, PL_EFORMAT,
           "lm/model.safetensors: tensor 'score.weight' missing (config.json says "
           "GPT2ForSequenceClassification)",
           "a head in config.json but not in the weights: PL_EFORMAT");
    gpt_release(&c);
    gpt_release(&a);
    gpt_release(&b);
}

/* HF conventions: transformer. prefix, mask buffers, tied lm_head; F16 and BF16 tensors. */
static void test_hf_variants(void)
{
    struct pl_err err = {0};
    struct gpt a, b;
    tiny_model(&a, &frozen, 7, &err);
    /* Values exact in F16 and BF16, so conversion must reproduce them bit for bit. */
    for (size_t i = 0; i < a.n_params; i++)
        a.params[i] = (float)((int)(i % 29) - 14) / 8.0f;
    tiny_model(&b, &frozen, 8, &err);

    int n = a.n_tensors;
    struct ckpt_tensor *list = model_list(&a, 8);
    static char names[64][64];
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "transformer.%s", list[i].name);
        list[i].name = names[i];
    }
    static float mask[16 * 16];
    static const float masked_bias = -1e4f;
    const struct ckpt_tensor extra[] = {
        {"transformer.h.0.attn.bias", CKPT_F32, 4, {1, 1, 16, 16}, mask},
        {"transformer.h.1.attn.bias", CKPT_F32, 4, {1, 1, 16, 16}, mask},
        {"transformer.h.0.attn.masked_bias", CKPT_F32, 0, {0}, &masked_bias},
        {"lm_head.weight", CKPT_F32, 2, {257, 32}, a.w.wte},
    };
    memcpy(list + n, extra, sizeof extra);
    int rc = ckpt_write_tensors(tmp("hf.safetensors"), list, n + 4, NULL, &err);
    tap_is_int(rc, PL_OK, "write an HF-style file");
    rc = ckpt_weights_load(&b, tmp("hf.safetensors"), &err);
    tap_is_int(rc, PL_OK, "transformer. prefix, attn.bias, attn.masked_bias, tied lm_head");
    if (rc)
        tap_diag("%s", err.msg);
    tap_ok(same_params(&a, &b), "... loaded exactly");

    /* F16 */
    uint16_t *half = calloc(a.n_params, sizeof *half);
    for (size_t i = 0; i < a.n_params; i++)
        half[i] = f16_exact(a.params[i]);
    for (int i = 0; i < n; i++) {
        list[i].dtype = CKPT_F16;
        list[i].data = half + a.table[i].offset;
    }
    rc = ckpt_write_tensors(tmp("f16.safetensors"), list, n, NULL, &err);
    memset(b.params, 0, b.n_params * sizeof(float));
    if (!rc)
        rc = ckpt_weights_load(&b, tmp("f16.safetensors"), &err);
    tap_ok(rc == PL_OK && same_params(&a, &b), "F16 checkpoint converts exactly");

    /* BF16 */
    for (size_t i = 0; i < a.n_params; i++)
        half[i] = (uint16_t)(bits_of(a.params[i]) >> 16);
    for (int i = 0; i < n; i++)
        list[i].dtype = CKPT_BF16;
    rc = ckpt_write_tensors(tmp("bf16.safetensors"), list, n, NULL, &err);
    memset(b.params, 0, b.n_params * sizeof(float));
    if (!rc)
        rc = ckpt_weights_load(&b, tmp("bf16.safetensors"), &err);
    tap_ok(rc == PL_OK && same_params(&a, &b), "BF16 checkpoint converts exactly");

    free(half);
    free(list);
    gpt_release(&a);
    gpt_release(&b);
}

static void test_config(void)
{
    struct pl_err err = {0};
    struct gpt_config cfg;
    int rc = ckpt_config_parse("{\"vocab_size\": 50257, \"n_ctx\": 1024, \"n_embd\": 768, "
                               "\"n_layer\": 12, \"n_head\": 12, \"bos_token_id\": null}",
                               "config.json", &cfg, &err);
    tap_ok(rc == PL_OK && cfg.n_positions == 1024 && cfg.bos_token_id == 50256 &&
               cfg.eos_token_id == 50256 && cfg.layer_norm_epsilon == 1e-5f &&
               strcmp(cfg.activation_function, "gelu_new") == 0 &&
               strcmp(cfg.tokenizer, "gpt2") == 0,
           "HF GPT-2 defaults, n_ctx fallback, null as missing");
    rc = ckpt_config_parse("{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, "
                           "\"n_layer\": 1, \"n_head\": 2}",
                           "config.json", &cfg, &err);
    tap_ok(rc == PL_OK && strcmp(cfg.tokenizer, "byte") == 0 && cfg.bos_token_id == 256 &&
               cfg.eos_token_id == 256,
           "vocab 257 defaults to the byte tokenizer with <|endoftext|> 256");
    tap_ok(!cfg.score_head && cfg.reward_mean == 0.0 && cfg.reward_std == 1.0,
           "no head, reward normalisation 0 and 1 by default");
    rc = ckpt_config_parse("{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, "
                           "\"n_layer\": 1, \"n_head\": 2, \"architectures\": "
                           "[\"GPT2ForSequenceClassification\"], "
                           "\"id2label\": {\"0\": \"LABEL_0\"}, \"reward_mean\": 0.5, "
                           "\"reward_std\": 3}",
                           "config.json", &cfg, &err);
    tap_ok(rc == PL_OK && cfg.score_head && cfg.reward_mean == 0.5 && cfg.reward_std == 3.0,
           "GPT2ForSequenceClassification with HF's one-entry id2label: a scalar head");
    /* The crash of issue 7: 300 ids on a 257-id tokenizer. */
    const char *b300 = "{\"n_layer\":1,\"n_embd\":64,\"n_head\":2,\"vocab_size\":300,"
                       "\"n_positions\":64,\"tokenizer\":\"byte\"}";
    rc = ckpt_config_parse(b300, "--config", &cfg, &err);
    expect(rc, &err, PL_EFORMAT,
           "--config: field 'vocab_size': the byte tokenizer has 257 ids (256 bytes and "
           "<|endoftext|>), got 300",
           "a byte model of 300 ids is refused");
    gpt_config_gpt2(&cfg);
    cfg.n_layer = 1;
    cfg.n_embd = 64;
    cfg.n_head = 2;
    cfg.vocab_size = 300;
    cfg.n_positions = 64;
    cfg.bos_token_id = cfg.eos_token_id = 256;
    snprintf(cfg.tokenizer, sizeof cfg.tokenizer, "byte");
    rc = gpt_config_check(&cfg, &err);
    expect(rc, &err, PL_EINVAL, "field 'vocab_size': 300 is more than the byte tokenizer's 257",
           "... by gpt_config_check too");
    rc = ckpt_config_write(tmpdir, &cfg, &err);
    expect(rc, &err, PL_EINVAL, "field 'vocab_size'", "... and by ckpt_config_write");
    cfg.vocab_size = 256;
    cfg.bos_token_id = cfg.eos_token_id = 255;
    rc = ckpt_config_write(tmpdir, &cfg, &err);
    expect(rc, &err, PL_EINVAL, "the byte tokenizer has 257 ids",
           "a byte model file has exactly 257 ids");
    tap_ok(access(tmp("config.json"), F_OK) != 0, "and nothing is written");

    static const struct {
        const char *json, *needle, *what;
    } bad[] = {
        {"{\n\"n_layer\": 2,\n", "config.json:3: invalid JSON", "bad JSON names file and line"},
        {"[1]", "config.json: expected a JSON object", "not an object"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1}",
         "config.json: field 'n_head' missing", "missing field"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": \"2\"}",
         "config.json: field 'n_head': expected a positive integer", "string for an integer"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2.5}",
         "config.json: field 'n_head': expected a positive integer", "fraction for an integer"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 0, "
         "\"n_head\": 2}",
         "config.json: field 'n_layer': expected a positive integer", "zero layers"},
        {"{\"vocab_size\": 257, \"n_embd\": 32, \"n_layer\": 1, \"n_head\": 2}",
         "config.json: field 'n_positions' missing", "no n_positions nor n_ctx"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 5}",
         "config.json: field 'n_head'", "n_head not dividing n_embd (gpt_config_check)"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"layer_norm_epsilon\": -1}",
         "config.json: field 'layer_norm_epsilon': expected a positive number", "negative eps"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"tokenizer\": \"bpe\"}",
         "config.json: field 'tokenizer'", "unknown tokenizer"},
        {"{\"vocab_size\": 200, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"tokenizer\": \"byte\"}",
         "config.json: field 'vocab_size': the byte tokenizer", "byte vocabulary too small"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"model_type\": \"llama\"}",
         "config.json: field 'model_type'", "other model type"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"n_inner\": 100}",
         "config.json: field 'n_inner'", "n_inner other than 4C"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"scale_attn_by_inverse_layer_idx\": true}",
         "config.json: field 'scale_attn_by_inverse_layer_idx'", "unsupported attention scaling"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"eos_token_id\": 300}",
         "config.json: field 'eos_token_id'", "eos outside the vocabulary"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"activation_function\": \"relu\"}",
         "config.json: field 'activation_function'", "unsupported activation"},
        {"{\"vocab_size\": 300, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2}",
         "config.json: field 'vocab_size': the byte tokenizer has 257 ids",
         "300 ids default to the byte tokenizer, which has 257"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"architectures\": \"GPT2LMHeadModel\"}",
         "config.json: field 'architectures': expected an array of strings",
         "architectures not an array"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"architectures\": [\"GPT2ForSequenceClassification\"], "
         "\"num_labels\": 2}",
         "config.json: field 'num_labels': 2 labels; only a scalar head (1) is supported",
         "two labels"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"architectures\": [\"GPT2ForSequenceClassification\"], "
         "\"id2label\": {\"0\": \"NEG\", \"1\": \"POS\"}}",
         "config.json: field 'num_labels': 2 labels", "two labels in HF's id2label"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"reward_std\": 0}",
         "config.json: field 'reward_std': expected a positive number", "reward_std 0"},
        {"{\"vocab_size\": 257, \"n_positions\": 64, \"n_embd\": 32, \"n_layer\": 1, "
         "\"n_head\": 2, \"reward_mean\": \"0\"}",
         "config.json: field 'reward_mean': expected a number", "reward_mean a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = ckpt_config_parse(bad[i].json, "config.json", &cfg, &err);
        expect(rc, &err, PL_EFORMAT, bad[i].needle, bad[i].what);
    }
    rc = ckpt_config_read(tmp("no-such-run"), &cfg, &err);
    expect(rc, &err, PL_ENOTFOUND, "no-such-run/config.json", "missing config.json: PL_ENOTFOUND");
}

/* Malformed safetensors files, each with its code and message. */
static void test_malformed(void)
{
    struct pl_err err = {0};
    struct ckpt_file f;
    const char *p = tmp("bad.safetensors");
    static const struct {
        const char *header, *needle, *what;
        size_t data;
    } bad[] = {
        {"{\"a\": ", "invalid header JSON", "header JSON invalid", 0},
        {"{\"a\": {}} x", "invalid header JSON: data after the object", "junk after JSON", 0},
        {"[1, 2]", "header is not a JSON object", "header not an object", 0},
        {"{\"a\": {\"dtype\": \"Q4\", \"shape\": [2], \"data_offsets\": [0, 1]}}",
         "tensor 'a': unknown dtype 'Q4'", "unknown dtype", 8},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}",
         "tensor 'a': field 'shape'", "negative dimension", 8},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2]}}", "tensor 'a': field 'data_offsets'",
         "no data_offsets", 8},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}",
         "tensor 'a': field 'data_offsets'", "begin after end", 8},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8",
         "shape and offsets disagree", 16},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
         "tensor 'a': data_offsets [8, 16] run past the end of the data (8 bytes",
         "offsets beyond the data", 8},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         "tensors 'a' and 'b' overlap", "overlapping tensors", 16},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
         "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         "tensor 'a' appears twice", "repeated name", 8},
        {"{\"__metadata__\": {\"step\": 3}}", "header field '__metadata__'", "non-string metadata",
         0},
        {"{\"a\": [1]}", "tensor 'a': expected an object", "entry not an object", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_header(p, bad[i].header, bad[i].data);
        int rc = ckpt_file_open(&f, p, &err);
        expect(rc, &err, PL_EFORMAT, bad[i].needle, bad[i].what);
        ckpt_file_release(&f);
    }

    write_raw(p, 1000, "{}      ", NULL, 0);
    int rc = ckpt_file_open(&f, p, &err);
    expect(rc, &err, PL_EFORMAT, "header length 1000 runs past the end of the file (16 bytes)",
           "header length larger than the file");
    ckpt_file_release(&f);
    FILE *tiny = fopen(p, "wb");
    fwrite("abc", 1, 3, tiny);
    fclose(tiny);
    rc = ckpt_file_open(&f, p, &err);
    expect(rc, &err, PL_EFORMAT, "too short", "3-byte file");
    ckpt_file_release(&f);
    rc = ckpt_file_open(&f, tmp("absent.safetensors"), &err);
    expect(rc, &err, PL_EIO, "cannot open", "missing file: PL_EIO");
    ckpt_file_release(&f);
    rc = ckpt_file_open(&f, tmpdir, &err);
    expect(rc, &err, PL_EIO, "not a regular file", "a folder: PL_EIO");
    ckpt_file_release(&f);

    /* A good model file cut short. */
    struct gpt a;
    tiny_model(&a, &frozen, 3, &err);
    const char *cut = tmp("cut.safetensors");
    ckpt_weights_save(&a, cut, &err);
    FILE *g = fopen(cut, "rb");
    fseek(g, 0, SEEK_END);
    long size = ftell(g);
    fclose(g);
    rc = truncate(cut, size - 100);
    rc = rc ? rc : ckpt_weights_load(&a, cut, &err);
    expect(rc, &err, PL_EFORMAT, "truncated file?", "truncated data");
    gpt_release(&a);
}

/* Files that are valid safetensors but do not fit the model. */
static void test_model_mismatch(void)
{
    struct pl_err err = {0};
    struct gpt a, b;
    tiny_model(&a, &frozen, 11, &err);
    tiny_model(&b, &frozen, 12, &err);
    float *before = malloc(b.n_params * sizeof(float));
    memcpy(before, b.params, b.n_params * sizeof(float));
    int n = a.n_tensors;
    struct ckpt_tensor *list = model_list(&a, 2);
    const char *p = tmp("mismatch.safetensors");
    int rc;

    int k = list_find(list, n, "h.0.attn.c_attn.weight");
    list[k].shape[0] = 96;
    list[k].shape[1] = 32;
    ckpt_write_tensors(p, list, n, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_ESHAPE,
           "mismatch.safetensors: tensor 'h.0.attn.c_attn.weight': expected shape [32, 96], got "
           "[96, 32]",
           "misshapen tensor: PL_ESHAPE with both shapes");
    tap_ok(memcmp(before, b.params, b.n_params * sizeof(float)) == 0, "... and no weight changed");
    list[k].shape[0] = 32;
    list[k].shape[1] = 96;

    k = list_find(list, n, "ln_f.bias");
    static const double dbl[32];
    list[k].dtype = CKPT_F64;
    list[k].data = dbl;
    ckpt_write_tensors(p, list, n, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_EFORMAT, "tensor 'ln_f.bias': dtype F64 not supported",
           "F64 model tensor rejected");
    list[k].dtype = CKPT_F32;
    list[k].data = a.w.lnfb;

    struct ckpt_tensor moved = list[n - 3];
    list[n - 3] = list[n - 1];
    ckpt_write_tensors(p, list, n - 1, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_EFORMAT, "tensor 'h.1.mlp.c_proj.bias' missing", "missing tensor");
    list[n - 3] = moved;

    static const float junk[4];
    list[n] = (struct ckpt_tensor){"h.0.attn.rotary", CKPT_F32, 1, {4}, junk};
    ckpt_write_tensors(p, list, n + 1, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_EFORMAT, "tensor 'h.0.attn.rotary': not a parameter of this model",
           "unknown tensor");

    list[n] = (struct ckpt_tensor){"transformer.wte.weight", CKPT_F32, 2, {257, 32}, a.w.wte};
    ckpt_write_tensors(p, list, n + 1, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_EFORMAT, "tensor 'wte.weight' appears twice", "same tensor with prefix");

    list[n] = (struct ckpt_tensor){"lm_head.weight", CKPT_F32, 2, {257, 32}, b.w.wte};
    ckpt_write_tensors(p, list, n + 1, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_EFORMAT, "tensor 'lm_head.weight' differs from 'wte.weight'",
           "untied lm_head rejected");
    list[n] = (struct ckpt_tensor){"lm_head.weight", CKPT_F32, 2, {32, 257}, a.w.wte};
    ckpt_write_tensors(p, list, n + 1, NULL, &err);
    rc = ckpt_weights_load(&b, p, &err);
    expect(rc, &err, PL_ESHAPE, "tensor 'lm_head.weight': expected shape [257, 32]",
           "misshapen lm_head rejected");

    tap_ok(memcmp(before, b.params, b.n_params * sizeof(float)) == 0,
           "no failed load changed a weight");
    free(before);
    free(list);
    gpt_release(&a);
    gpt_release(&b);
}

/* The generic tensor API the trainer uses for state.safetensors. */
static void test_generic(void)
{
    struct pl_err err = {0};
    const float m[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7};
    const int64_t step = 1200;
    const uint64_t rng[4] = {1, 0xffffffffffffffffull, 3, 1ull << 63};
    const struct ckpt_tensor list[] = {
        {"adam.m", CKPT_F32, 2, {2, 3}, m},
        {"step", CKPT_I64, 0, {0}, &step},
        {"rng.data", CKPT_U64, 1, {4}, rng},
        {"empty", CKPT_F32, 1, {0}, NULL},
    };
    const char *p = tmp("state.safetensors");
    int rc =
        ckpt_write_tensors(p, list, 4, "{\"kind\": \"state\", \"note\": \"a \\\"q\\\"\\n\"}", &err);
    tap_is_int(rc, PL_OK, "write F32, I64 scalar, U64, empty tensors with metadata");
    struct ckpt_file f;
    rc = ckpt_file_open(&f, p, &err);
    tap_is_int(rc, PL_OK, "read them back");
    if (rc)
        tap_diag("%s", err.msg);
    float m2[6];
    int64_t step2 = 0;
    uint64_t rng2[4] = {0};
    rc = ckpt_file_get(&f, "adam.m", CKPT_F32, m2, 6, &err);
    rc = rc ? rc : ckpt_file_get(&f, "step", CKPT_I64, &step2, 1, &err);
    rc = rc ? rc : ckpt_file_get(&f, "rng.data", CKPT_U64, rng2, 4, &err);
    rc = rc ? rc : ckpt_file_get(&f, "empty", CKPT_F32, NULL, 0, &err);
    tap_ok(rc == PL_OK && memcmp(m, m2, sizeof m) == 0 && step2 == 1200 &&
               memcmp(rng, rng2, sizeof rng) == 0,
           "values are exact");
    tap_is_str(ckpt_file_meta(&f, "kind"), "state", "metadata value");
    tap_is_str(ckpt_file_meta(&f, "note"), "a \"q\"\n", "metadata escaping");
    tap_ok(ckpt_file_meta(&f, "absent") == NULL, "absent metadata is NULL");
    const struct ckpt_tensor *t = ckpt_file_find(&f, "step");
    tap_ok(t && t->ndim == 0 && ckpt_tensor_numel(t) == 1, "scalar tensor has rank 0");
    rc = ckpt_file_get(&f, "step", CKPT_F32, m2, 1, &err);
    expect(rc, &err, PL_EFORMAT, "tensor 'step': dtype I64, expected F32", "dtype checked");
    rc = ckpt_file_get(&f, "adam.m", CKPT_F32, m2, 5, &err);
    expect(rc, &err, PL_ESHAPE, "tensor 'adam.m': expected 5 elements, got 6 (shape [2, 3])",
           "element count checked");
    rc = ckpt_file_get(&f, "adam.v", CKPT_F32, m2, 6, &err);
    expect(rc, &err, PL_ENOTFOUND, "state.safetensors: tensor 'adam.v' missing",
           "missing tensor: PL_ENOTFOUND");
    ckpt_file_release(&f);

    rc = ckpt_write_tensors(p, list, 4, "{\"step\": 3}", &err);
    expect(rc, &err, PL_EINVAL, "metadata: expected a JSON object of strings",
           "non-string metadata refused");
    const struct ckpt_tensor twice[] = {list[0], list[0]};
    rc = ckpt_write_tensors(p, twice, 2, NULL, &err);
    expect(rc, &err, PL_EINVAL, "tensor 'adam.m' given twice", "repeated name refused");
    rc = ckpt_write_tensors(tmp("no/such/dir/x.safetensors"), list, 4, NULL, &err);
    expect(rc, &err, PL_EIO, "cannot create", "unwritable path: PL_EIO");
    tap_is_int(count_tmp_files(tmpdir), 0, "no .tmp file left behind");
    rc = io_mkdirs("", &err);
    expect(rc, &err, PL_EINVAL, "empty name", "mkdir -p of an empty name: PL_EINVAL");
    rc = io_mkdirs(tmp("state.safetensors/sub"), &err);
    expect(rc, &err, PL_EIO, "cannot create folder", "mkdir -p under a file: PL_EIO");
}

/* One save + load cycle through every allocating path. */
static int alloc_scenario(struct pl_err *err)
{
    struct gpt a, b = {0};
    struct tok t = {0};
    int rc = tiny_model(&a, &frozen_head, 5, err);
    if (!rc)
        rc = ckpt_save(&a, tmp("oom"), err);
    gpt_release(&a);
    if (!rc)
        rc = ckpt_load(&b, tmp("oom"), &frozen_head, err);
    gpt_release(&b);
    if (!rc)
        rc = ckpt_load_model(&b, &t, tmp("oom"), &frozen, err);
    gpt_release(&b);
    tok_release(&t);
    struct ckpt_file f = {0};
    if (!rc)
        rc = ckpt_file_open(&f, tmp("oom/model.safetensors"), err);
    ckpt_file_release(&f);
    struct gpt_config cfg;
    if (!rc)
        rc = ckpt_config_read(tmp("oom"), &cfg, err);
    return rc;
}

/* Count the scenario's allocations, then fail each one in turn. */
static void test_alloc_failure(void)
{
    struct pl_err err = {0};
    int wrong = 0;
    pl_alloc_fail_at(-1);
    int rc = alloc_scenario(&err);
    long n = pl_alloc_count();
    tap_ok(rc == PL_OK && n > 5, "the scenario runs with %ld allocations (%s)", n,
           rc ? err.msg : "ok");
    for (long i = 0; i < n; i++) {
        pl_alloc_fail_at(i);
        err.msg[0] = '\0';
        rc = alloc_scenario(&err);
        if (rc != PL_ENOMEM || !strstr(err.msg, "out of memory")) {
            tap_diag("allocation %ld: %d '%s'", i, rc, err.msg);
            wrong++;
        }
    }
    pl_alloc_fail_at(-1);
    tap_is_int(wrong, 0, "allocation failure N for each N < %ld gives PL_ENOMEM", n);
    tap_is_int(count_tmp_files(tmp("oom")), 0, "no .tmp file left behind");
}

/* Checkpoints written by PyTorch (tests/data, from another helper) load, whatever their dtype. */
static void test_pytorch_fixtures(void)
{
    static const char *const dirs[] = {"tests/data/tiny-gpt2", "tests/data/tiny-gpt2-f16",
                                       "tests/data/tiny-gpt2-bf16"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char cfg[256];
        snprintf(cfg, sizeof cfg, "%s/config.json", dirs[i]);
        if (access(cfg, R_OK) != 0) {
            tap_ok(0, "PyTorch fixture %s is there", dirs[i]);
            tap_ok(0, "and loads");
            continue;
        }
        struct pl_err err = {0};
        struct gpt m;
        int rc = ckpt_load(&m, dirs[i], &frozen, &err);
        tap_is_int(rc, PL_OK, "%s loads", dirs[i]);
        if (rc)
            tap_diag("%s", err.msg);
        gpt_release(&m);
        /* tools/gen_fixtures.py gives every fixture a score.weight. */
        rc = ckpt_load(&m, dirs[i], &frozen_head, &err);
        bool head = rc == PL_OK && m.w.score;
        for (int c = 0; head && c < m.cfg.n_embd && m.w.score[c] == 0.0f; c++)
            head = c + 1 < m.cfg.n_embd;
        tap_ok(head, "%s loads with its scalar head (%s)", dirs[i], rc ? err.msg : "ok");
        gpt_release(&m);
    }
}

/* Copy file `name` of folder `from` into folder `to`. */
static void copy_file(const char *from, const char *to, const char *name)
{
    char src[512], dst[512], *data = NULL;
    size_t len = 0;
    struct pl_err err = {0};
    snprintf(src, sizeof src, "%s/%s", from, name);
    snprintf(dst, sizeof dst, "%s/%s", to, name);
    if (io_read_file(src, &data, &len, &err) || io_write_atomic(dst, data, len, &err))
        tap_diag("%s", err.msg);
    pl_free(data);
}

/* A saved model with the tiny shape and the given vocabulary; the BPE fixture's files beside
 * it when bpe_files. */
static void save_with(const char *dir, const char *tokenizer, int vocab, int eos, bool bpe_files)
{
    struct gpt_config cfg;
    tiny_config(&cfg);
    snprintf(cfg.tokenizer, sizeof cfg.tokenizer, "%s", tokenizer);
    cfg.vocab_size = vocab;
    cfg.bos_token_id = cfg.eos_token_id = eos;
    struct gpt m;
    struct pl_err err = {0};
    int rc = gpt_init(&m, &cfg, &frozen, &err);
    if (!rc) {
        gpt_init_weights(&m, 1);
        rc = ckpt_save(&m, dir, &err);
    }
    if (rc)
        tap_diag("%s", err.msg);
    gpt_release(&m);
    if (bpe_files) {
        copy_file("tests/data/tiny-gpt2", dir, "vocab.json");
        copy_file("tests/data/tiny-gpt2", dir, "merges.txt");
    }
}

/* ckpt_load_model: the model and the tokenizer of a folder, checked against each other. */
static void test_load_model(void)
{
    struct pl_err err = {0};
    struct gpt m;
    struct tok t;
    save_with(tmp("byte"), "byte", 257, 256, false);
    int rc = ckpt_load_model(&m, &t, tmp("byte"), &frozen, &err);
    tap_ok(rc == PL_OK && t.kind == TOK_BYTE && t.vocab_size == 257 && m.cfg.vocab_size == 257 &&
               m.params,
           "a byte-level model loads with the byte tokenizer (%s)", rc ? err.msg : "ok");
    gpt_release(&m);
    tok_release(&t);
    rc = ckpt_load_model(&m, &t, "tests/data/tiny-gpt2", &frozen, &err);
    tap_ok(rc == PL_OK && t.kind == TOK_BPE && t.vocab_size == 300 && m.cfg.vocab_size == 300,
           "the BPE fixture loads with its vocabulary (%s)", rc ? err.msg : "ok");
    gpt_release(&m);
    tok_release(&t);
    rc = ckpt_load_model(&m, &t, tmp("byte"), &frozen_head, &err);
    tap_ok(rc == PL_ENOTFOUND && strstr(err.msg, "'score.weight' missing") && m.params &&
               t.kind == TOK_BYTE,
           "a head asked for but absent: PL_ENOTFOUND, model and tokenizer usable");
    gpt_release(&m);
    tok_release(&t);

    static const struct {
        const char *dir, *tokenizer;
        int vocab, eos;
        bool files;
        int code;
        const char *needle, *what;
    } bad[] = {
        {"nofiles", "gpt2", 300, 299, false, PL_ENOTFOUND,
         "nofiles: config.json names the \"gpt2\" tokenizer but the folder has neither "
         "vocab.json + merges.txt nor encoder.json + vocab.bpe",
         "\"gpt2\" without vocabulary files names the files, no byte fallback"},
        {"v310", "gpt2", 310, 299, true, PL_EFORMAT,
         "v310: the model's vocab_size 310 exceeds the tokenizer's 300 ids (ids from 300 on "
         "would have no text)",
         "more ids than the tokenizer: refused, naming folder and sizes"},
        {"v290", "gpt2", 290, 289, true, PL_EFORMAT,
         "v290: the model's vocab_size 290 is below the tokenizer's 300 ids (ids from 290 on "
         "would have no embedding)",
         "fewer ids than the tokenizer: refused"},
        {"eos", "gpt2", 300, 298, true, PL_EFORMAT,
         "eos: config.json's eos_token_id 298 is not the tokenizer's <|endoftext|> 299",
         "eos_token_id other than the tokenizer's"},
        {"bytebpe", "byte", 257, 256, true, PL_EFORMAT,
         "bytebpe: config.json names the \"byte\" tokenizer but the folder holds GPT-2 "
         "vocabulary files",
         "\"byte\" beside vocabulary files"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        save_with(tmp(bad[i].dir), bad[i].tokenizer, bad[i].vocab, bad[i].eos, bad[i].files);
        rc = ckpt_load_model(&m, &t, tmp(bad[i].dir), &frozen, &err);
        expect(rc, &err, bad[i].code, bad[i].needle, bad[i].what);
        tap_ok(m.params == NULL, "... before any weight is read");
        gpt_release(&m);
        tok_release(&t);
    }

    /* The folder `plumb init` wrote before issue 7: 300 ids on the byte tokenizer. */
    save_with(tmp("b300"), "byte", 257, 256, false);
    const char b300[] = "{\"n_layer\":1,\"n_embd\":64,\"n_head\":2,\"vocab_size\":300,"
                        "\"n_positions\":64,\"tokenizer\":\"byte\"}";
    rc = io_write_atomic(tmp("b300/config.json"), b300, sizeof b300 - 1, &err);
    rc = rc ? rc : ckpt_load_model(&m, &t, tmp("b300"), &frozen, &err);
    expect(rc, &err, PL_EFORMAT, "b300/config.json: field 'vocab_size': the byte tokenizer has 257",
           "a byte model of 300 ids does not load");
    gpt_release(&m);
    tok_release(&t);
}

/* plumb init, through the binary of this build (PLUMB_BIN, set by make test). */
static void test_plumb_init(void)
{
    const char *bin = getenv("PLUMB_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        tap_skip(5, "PLUMB_BIN not set");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s init --config '{\"n_layer\":2,\"n_embd\":64,\"n_head\":4,\"vocab_size\":257,"
             "\"n_positions\":32,\"tokenizer\":\"byte\"}' --out %s --seed 9 --score-head "
             ">/dev/null",
             bin, tmp("init"));
    int st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "plumb init exits 0");
    struct pl_err err = {0};
    struct gpt m;
    int rc = ckpt_load(&m, tmp("init"), &frozen_head, &err);
    tap_ok(rc == PL_OK && m.cfg.n_embd == 64 && m.cfg.eos_token_id == 256 &&
               strcmp(m.cfg.tokenizer, "byte") == 0 && m.w.score && m.w.score[0] != 0.0f &&
               m.w.h[0].ln1w[0] == 1.0f,
           "its folder loads with a random scalar head");
    gpt_release(&m);
    snprintf(cmd, sizeof cmd, "%s init --config '{\"n_layer\":2}' --out %s 2>/dev/null", bin,
             tmp("init2"));
    st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "a bad --config exits 2");
    snprintf(cmd, sizeof cmd, "%s init --out %s 2>/dev/null", bin, tmp("init2"));
    st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "no --config exits 2");
    snprintf(cmd, sizeof cmd,
             "%s init --config '{\"n_layer\":1,\"n_embd\":64,\"n_head\":2,\"vocab_size\":300,"
             "\"n_positions\":64,\"tokenizer\":\"byte\"}' --out %s 2>/dev/null",
             bin, tmp("init300"));
    st = system(cmd);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2 && access(tmp("init300"), F_OK) != 0,
           "a byte model of 300 ids is refused and nothing is written");
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        tap_skip_all("cannot create a temporary folder");
    tap_plan(129);
    test_f16_bf16();
    test_round_trip();
    test_hf_variants();
    test_config();
    test_malformed();
    test_model_mismatch();
    test_generic();
    test_alloc_failure();
    test_load_model();
    test_pytorch_fixtures();
    test_plumb_init();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmpdir);
    return tap_done();
}
