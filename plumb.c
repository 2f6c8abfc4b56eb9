/* plumb: argument parsing and dispatch only. This is the only code that prints
 * errors or exits; every command returns 0 (ok), 1 (runtime or data error) or
 * 2 (usage). */
#include "datasets/world.h"
#include "model/bench.h"
#include "model/ckpt.h"
#include "model/pl.h"
#include "model/sample.h"
#include "model/score.h"
#include "model/tensor.h"
#include "model/tok.h"
#include "trainer/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUMB_VERSION "0.1.0"

/* Print err (or code's text) as "plumb: <msg>" and map the code to an exit status. */
static int fail(const struct pl_err *err, int code)
{
    fprintf(stderr, "plumb: %s\n", err && err->msg[0] ? err->msg : pl_strerror(code));
    return code == PL_EUSAGE || code == PL_EINVAL ? 2 : 1;
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "plumb %s: %s (see 'plumb help')\n", cmd, msg);
    return 2;
}

/* Value of option `name` at argv[*i] ("--name value" or "--name=value"); NULL if argv[*i] is not it. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* Engine set-up shared by every command that runs a model. */
static int engine_start(const char *arch, int threads)
{
    struct pl_err err = {0};
    int rc = tensor_init(arch, threads, &err);
    return rc ? fail(&err, rc) : 0;
}

/* Parse a positive integer option value; 0 when it is not one. */
static int parse_count(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 && v < (1L << 30) ? (int)v : 0;
}

/* --threads and --blis-arch, accepted by every command that runs a model.
 * Returns 1 when argv[*i] was one of them (value in *threads / *arch). */
static int engine_option(int argc, char **argv, int *i, int *threads, const char **arch,
                         int *missing)
{
    const char *v;
    if ((v = opt_value(argc, argv, i, "--threads", missing))) {
        *threads = parse_count(v);
        if (!*threads)
            *missing = 1;
        return 1;
    }
    if ((v = opt_value(argc, argv, i, "--blis-arch", missing))) {
        *arch = v;
        return 1;
    }
    return 0;
}

/* The two shapes the README's speed figures use. */
static void bench_shape(struct gpt_config *c, bool small)
{
    gpt_config_gpt2(c);
    if (small) {
        c->n_layer = 4;
        c->n_embd = 256;
        c->n_head = 4;
        c->vocab_size = 256;
        c->bos_token_id = c->eos_token_id = 255;
        snprintf(c->tokenizer, sizeof c->tokenizer, "byte");
    }
}

static int cmd_bench(int argc, char **argv)
{
    const char *config = NULL, *arch = NULL;
    int threads = 0, batch = 4, seq = 256, steps = 3, json = 0, missing = 0, tok_given = 0;
    /* GPT-2's vocabulary and a corpus from the shared datasets, when they are there. */
    const char *tok_dir = "../shared/datasets/gpt2-bpe";
    const char *tok_text = "../shared/datasets/tinyshakespeare/input.txt";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (engine_option(argc, argv, &i, &threads, &arch, &missing))
            continue;
        else if ((v = opt_value(argc, argv, &i, "--config", &missing)))
            config = v;
        else if ((v = opt_value(argc, argv, &i, "--batch", &missing)))
            missing |= !(batch = parse_count(v));
        else if ((v = opt_value(argc, argv, &i, "--seq", &missing)))
            missing |= !(seq = parse_count(v));
        else if ((v = opt_value(argc, argv, &i, "--steps", &missing)))
            missing |= !(steps = parse_count(v));
        else if ((v = opt_value(argc, argv, &i, "--tok-dir", &missing)))
            tok_dir = v, tok_given = 1;
        else if ((v = opt_value(argc, argv, &i, "--tok-text", &missing)))
            tok_text = v, tok_given = 1;
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return usage_error("bench", "unknown option");
        if (missing)
            return usage_error("bench", "an option lacks a valid value");
    }
    int rc = engine_start(arch, threads);
    if (rc)
        return rc;
    struct gpt_config shapes[2];
    int n_shapes = 0;
    struct pl_err err = {0};
    if (config) {
        gpt_config_gpt2(&shapes[0]);
        if ((rc = ckpt_config_parse(config, "--config", &shapes[n_shapes++], &err)))
            return fail(&err, rc);
    } else {
        bench_shape(&shapes[n_shapes++], true);
        bench_shape(&shapes[n_shapes++], false);
    }
    if (json)
        printf("[");
    for (int s = 0; s < n_shapes; s++) {
        struct bench_opts o = {.cfg = shapes[s], .batch = batch, .seq = seq, .steps = steps};
        if (o.cfg.n_positions < seq)
            o.cfg.n_positions = seq;
        struct bench_result r;
        /* Generation is measured with GPT-2's vocabulary on the built-in shapes:
         * its LM head is most of a decode step's work. */
        struct bench_opts g = o;
        if (!config)
            g.cfg.vocab_size = 50257;
        if ((rc = bench_model(&o, &r, &err)) || (rc = bench_generate(&g, &r, &err)))
            return fail(&err, rc);
        char *out = json ? bench_json(&r) : bench_text(&r);
        if (!out)
            return fail(NULL, PL_ENOMEM);
        printf(json ? "%s%s" : "%s%s\n", json && s ? "," : "", out);
        fflush(stdout);
        pl_free(out);
    }
    double mb_s = 0.0;
    rc = bench_tokenizer(tok_dir, tok_text, steps, &mb_s, &err);
    if (rc && tok_given)
        return fail(&err, rc);
    if (rc)
        fprintf(stderr, "plumb bench: tokenizer not measured: %s\n", err.msg);
    else if (json)
        printf(",{\"tokenizer\":{\"kind\":\"gpt2-bpe\",\"mb_per_s\":%.3f}}", mb_s);
    else
        printf("tokenizer: GPT-2 BPE encodes %s at %.1f MB/s (one thread)\n", tok_text, mb_s);
    if (json)
        printf("]\n");
    return 0;
}

/* plumb init --config JSON --out DIR [--seed N] [--score-head]: a randomly initialised model. */
static int cmd_init(int argc, char **argv)
{
    const char *config = NULL, *out = NULL, *seed_text = NULL;
    int score_head = 0, missing = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--config", &missing)))
            config = v;
        else if ((v = opt_value(argc, argv, &i, "--out", &missing)))
            out = v;
        else if ((v = opt_value(argc, argv, &i, "--seed", &missing)))
            seed_text = v;
        else if (strcmp(argv[i], "--score-head") == 0)
            score_head = 1;
        else if (!missing)
            return usage_error("init", "unknown option");
        if (missing)
            return usage_error("init", "an option lacks a value");
    }
    if (!config || !out)
        return usage_error("init", "--config and --out are required");
    unsigned long long seed = 1337;
    if (seed_text) {
        char *end;
        seed = strtoull(seed_text, &end, 10);
        if (!*seed_text || *end || *seed_text == '-')
            return usage_error("init", "--seed expects a non-negative integer");
    }
    struct pl_err err = {0};
    struct gpt_config cfg;
    int rc = ckpt_config_parse(config, "--config", &cfg, &err);
    if (rc)
        return fail(&err, rc), 2; /* a bad --config is a usage error */
    struct gpt_opts opts = {.score_head = score_head, .max_batch = 1, .max_seq = 1};
    struct gpt m;
    rc = gpt_init(&m, &cfg, &opts, &err);
    size_t n_params = m.n_params;
    if (!rc) {
        gpt_init_weights(&m, seed);
        rc = ckpt_save(&m, out, &err);
    }
    gpt_release(&m);
    if (rc)
        return fail(&err, rc);
    printf("%s: %zu parameters\n", out, n_params);
    return 0;
}

/* plumb world --out DIR [--seed N]: the toy world of DESIGN.md section 7. */
static int cmd_world(int argc, char **argv)
{
    const char *out = NULL, *seed_text = NULL;
    int missing = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--out", &missing)))
            out = v;
        else if ((v = opt_value(argc, argv, &i, "--seed", &missing)))
            seed_text = v;
        else if (!missing)
            return usage_error("world", "unknown option");
        if (missing)
            return usage_error("world", "an option lacks a value");
    }
    if (!out)
        return usage_error("world", "--out is required");
    unsigned long long seed = 1;
    if (seed_text) {
        char *end;
        seed = strtoull(seed_text, &end, 10);
        if (!*seed_text || *end || *seed_text == '-')
            return usage_error("world", "--seed expects a non-negative integer");
    }
    struct pl_err err = {0};
    int rc = ds_world_write(out, seed, &err);
    if (rc)
        return fail(&err, rc);
    printf("%s: toy world, seed %llu\n", out, seed);
    return 0;
}

/* Load a model folder (weights, config and tokenizer) as a frozen model. */
static int load_frozen(const char *dir, int batch, struct gpt *m, struct tok *t,
                       struct pl_err *err)
{
    struct gpt_config cfg;
    int rc = ckpt_config_read(dir, &cfg, err);
    if (rc)
        return rc;
    struct gpt_opts o = {.max_batch = batch, .max_seq = cfg.n_positions};
    rc = ckpt_load(m, dir, &o, err);
    if (!rc)
        rc = tok_load(t, dir, err);
    return rc;
}

static int cmd_score(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *output = NULL, *arch = NULL;
    int threads = 0, batch = 8, missing = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (engine_option(argc, argv, &i, &threads, &arch, &missing))
            continue;
        else if ((v = opt_value(argc, argv, &i, "--model", &missing)))
            model = v;
        else if ((v = opt_value(argc, argv, &i, "--input", &missing)))
            input = v;
        else if ((v = opt_value(argc, argv, &i, "--out", &missing)))
            output = v;
        else if ((v = opt_value(argc, argv, &i, "--batch", &missing)))
            missing |= !(batch = parse_count(v));
        else
            return usage_error("score", "unknown option");
        if (missing)
            return usage_error("score", "an option lacks a valid value");
    }
    if (!model || !input)
        return usage_error("score", "--model DIR and --input FILE.jsonl are required");
    int rc = engine_start(arch, threads);
    if (rc)
        return rc;
    struct pl_err err = {0};
    struct gpt m = {0};
    struct tok t = {0};
    struct score_ctx s = {0};
    FILE *out = stdout;
    rc = load_frozen(model, batch, &m, &t, &err);
    if (!rc)
        rc = score_init(&s, &m, &err);
    if (!rc && output && !(out = fopen(output, "w")))
        rc = pl_errf(&err, PL_EIO, "cannot write '%s'", output);
    if (!rc)
        rc = score_jsonl(&s, &t, input, out, &err);
    if (out && out != stdout && fclose(out) && !rc)
        rc = pl_errf(&err, PL_EIO, "cannot write '%s'", output);
    score_release(&s);
    tok_release(&t);
    gpt_release(&m);
    return rc ? fail(&err, rc) : 0;
}

/* plumb tokenize --model DIR (--text S | --input FILE.jsonl) [--decode] [--special]: ids as
 * JSON arrays, or with --decode ids (an array, or {"tokens": [...]}) back to text. */
static int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *input = NULL;
    int decode = 0, special = 0, missing = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--model", &missing)))
            model = v;
        else if ((v = opt_value(argc, argv, &i, "--text", &missing)))
            text = v;
        else if ((v = opt_value(argc, argv, &i, "--input", &missing)))
            input = v;
        else if (strcmp(argv[i], "--decode") == 0)
            decode = 1;
        else if (strcmp(argv[i], "--special") == 0)
            special = 1;
        else if (!missing)
            return usage_error("tokenize", "unknown option");
        if (missing)
            return usage_error("tokenize", "an option lacks a value");
    }
    if (!model || !text == !input)
        return usage_error("tokenize",
                           "--model DIR and one of --text S, --input FILE are required");
    if (decode && special)
        return usage_error("tokenize", "--special applies to encoding only");
    struct pl_err err = {0};
    struct tok t = {0};
    unsigned flags = special ? TOK_SPECIAL : 0;
    int rc = tok_load(&t, model, &err);
    if (!rc && decode)
        rc = text ? tok_decode_text(&t, stdout, text, "--text", &err)
                  : tok_decode_jsonl(&t, stdout, input, &err);
    else if (!rc)
        rc = text ? tok_encode_text(&t, stdout, text, strlen(text), flags, &err)
                  : tok_encode_jsonl(&t, stdout, input, flags, &err);
    tok_release(&t);
    return rc ? fail(&err, rc) : 0;
}

/* Parse a number in [lo, hi]; 0 when it is not one. */
static int parse_real(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi))
        return 0;
    *out = v;
    return 1;
}

/* Parse an integer >= lo; 0 when it is not one. */
static int parse_long(const char *s, long lo, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo)
        return 0;
    *out = v;
    return 1;
}

/* plumb pretrain and plumb sft: the same options, `kind` picks the data format. */
static int train_command(const char *cmd, enum train_kind kind, int argc, char **argv)
{
    struct train_opts o;
    train_opts_default(&o);
    o.kind = kind;
    o.version = PLUMB_VERSION;
    o.log = stderr;
    const char *arch = NULL;
    int threads = 0, missing = 0;
    double lr = o.lr, min_lr_frac = o.min_lr_frac, weight_decay = o.weight_decay, clip = o.clip;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int ok = 1;
        if (engine_option(argc, argv, &i, &threads, &arch, &missing))
            continue;
        else if ((v = opt_value(argc, argv, &i, "--model", &missing)))
            o.model = v;
        else if ((v = opt_value(argc, argv, &i, "--data", &missing)))
            o.data = v;
        else if ((v = opt_value(argc, argv, &i, "--eval-data", &missing)))
            o.eval_data = v;
        else if ((v = opt_value(argc, argv, &i, "--out", &missing)))
            o.out = v;
        else if (kind == TRAIN_SFT && (v = opt_value(argc, argv, &i, "--mix-corpus", &missing)))
            o.mix_corpus = v;
        else if (kind == TRAIN_SFT && (v = opt_value(argc, argv, &i, "--mix-frac", &missing)))
            ok = parse_real(v, 1e-9, 1 - 1e-9, &o.mix_frac);
        else if ((v = opt_value(argc, argv, &i, "--steps", &missing)))
            ok = parse_long(v, 1, &o.steps);
        else if ((v = opt_value(argc, argv, &i, "--epochs", &missing)))
            ok = parse_real(v, 1e-9, 1e9, &o.epochs);
        else if ((v = opt_value(argc, argv, &i, "--batch", &missing)))
            ok = (o.batch = parse_count(v)) > 0;
        else if ((v = opt_value(argc, argv, &i, "--seq", &missing)))
            ok = (o.seq = parse_count(v)) > 0;
        else if ((v = opt_value(argc, argv, &i, "--grad-accum", &missing)))
            ok = (o.grad_accum = parse_count(v)) > 0;
        else if ((v = opt_value(argc, argv, &i, "--lr", &missing)))
            ok = parse_real(v, 1e-12, 10, &lr);
        else if ((v = opt_value(argc, argv, &i, "--min-lr-frac", &missing)))
            ok = parse_real(v, 0, 1, &min_lr_frac);
        else if ((v = opt_value(argc, argv, &i, "--warmup", &missing)))
            ok = parse_long(v, 0, &o.warmup);
        else if ((v = opt_value(argc, argv, &i, "--weight-decay", &missing)))
            ok = parse_real(v, 0, 10, &weight_decay);
        else if ((v = opt_value(argc, argv, &i, "--clip", &missing)))
            ok = parse_real(v, 0, 1e9, &clip);
        else if ((v = opt_value(argc, argv, &i, "--eval-every", &missing)))
            ok = parse_long(v, 0, &o.eval_every);
        else if ((v = opt_value(argc, argv, &i, "--eval-rows", &missing)))
            ok = (o.eval_rows = parse_count(v)) > 0;
        else if ((v = opt_value(argc, argv, &i, "--eval-frac", &missing)))
            ok = parse_real(v, 0, 0.99, &o.eval_frac);
        else if ((v = opt_value(argc, argv, &i, "--save-every", &missing)))
            ok = parse_long(v, 0, &o.save_every);
        else if ((v = opt_value(argc, argv, &i, "--log-every", &missing)))
            ok = parse_long(v, 1, &o.log_every);
        else if ((v = opt_value(argc, argv, &i, "--seed", &missing))) {
            char *end;
            o.seed = strtoull(v, &end, 10);
            ok = *v && !*end && *v != '-';
        } else if (strcmp(argv[i], "--resume") == 0)
            o.resume = true;
        else if (strcmp(argv[i], "--skip-bad-lines") == 0)
            o.skip_bad_lines = true;
        else if (!missing)
            return usage_error(cmd, "unknown option");
        if (missing || !ok)
            return usage_error(cmd, "an option lacks a valid value");
    }
    if (!o.model || !o.data || !o.out)
        return usage_error(cmd, "--model DIR, --data FILE and --out DIR are required");
    o.lr = (float)lr;
    o.min_lr_frac = (float)min_lr_frac;
    o.weight_decay = (float)weight_decay;
    o.clip = (float)clip;
    int rc = engine_start(arch, threads);
    if (rc)
        return rc;
    struct pl_err err = {0};
    struct train_result res;
    rc = train_lm(&o, &res, &err);
    if (rc)
        return fail(&err, rc);
    if (isnan(res.eval_last))
        printf("%s: step %ld, %.1f s\n", o.out, res.steps, res.seconds);
    else
        printf("%s: step %ld, held-out loss %.4f -> %.4f, %.1f s\n", o.out, res.steps,
               res.eval_first, res.eval_last, res.seconds);
    return 0;
}

/* plumb pretrain --model DIR --data corpus.txt --out DIR [options]: language modelling. */
static int cmd_pretrain(int argc, char **argv)
{
    return train_command("pretrain", TRAIN_PRETRAIN, argc, argv);
}

/* plumb sft --model DIR --data sft.jsonl|sft.csv --out DIR [options]: loss on responses only. */
static int cmd_sft(int argc, char **argv)
{
    return train_command("sft", TRAIN_SFT, argc, argv);
}

/* Most --stop strings a command takes. */
#define MAX_STOP 16

/* Decoding options shared by plumb generate and plumb sample; 1 when argv[*i]
 * was one. *bad is set when its value does not parse. */
static int decode_option(int argc, char **argv, int *i, struct sample_opts *o, const char **stop,
                         int *missing, int *bad)
{
    const char *v;
    double x;
    long n;
    if ((v = opt_value(argc, argv, i, "--max-new-tokens", missing)))
        *bad = !(o->max_new_tokens = parse_count(v));
    else if ((v = opt_value(argc, argv, i, "--temperature", missing)))
        *bad = !parse_real(v, 0, 1e6, &x) || ((o->temperature = (float)x), 0);
    else if ((v = opt_value(argc, argv, i, "--top-k", missing)))
        *bad = !parse_long(v, 0, &n) || n >= (1L << 30) || ((o->top_k = (int)n), 0);
    else if ((v = opt_value(argc, argv, i, "--top-p", missing)))
        *bad = !parse_real(v, 1e-9, 1, &x) || ((o->top_p = (float)x), 0);
    else if ((v = opt_value(argc, argv, i, "--beam", missing)))
        *bad = !(o->beam = parse_count(v));
    else if ((v = opt_value(argc, argv, i, "--length-penalty", missing)))
        *bad = !parse_real(v, -100, 100, &x) || ((o->length_penalty = (float)x), 0);
    else if ((v = opt_value(argc, argv, i, "--batch", missing)))
        *bad = !(o->batch = parse_count(v));
    else if ((v = opt_value(argc, argv, i, "--seed", missing))) {
        char *end;
        o->seed = strtoull(v, &end, 10);
        *bad = !*v || *end || *v == '-';
    } else if ((v = opt_value(argc, argv, i, "--stop", missing))) {
        *bad = o->n_stop == MAX_STOP || !*v;
        if (!*bad)
            stop[o->n_stop++] = v;
    } else {
        return 0;
    }
    return 1;
}

/* A batch that holds at least one prompt's sequences. */
static void decode_fit(struct sample_opts *o, const char **stop)
{
    int width = o->beam > 0 ? o->beam : o->n;
    o->batch = o->batch < width ? width : o->batch;
    o->stop = stop;
}

/* plumb generate --model DIR --prompt S [--n N] and plumb sample --model DIR
 * --prompts FILE -k K --out FILE take the same decoding options: generate
 * streams one prompt's completions, sample writes a whole file's. */
static int decode_command(const char *name, bool file, int argc, char **argv)
{
    struct sample_opts o;
    sample_opts_default(&o);
    if (file)
        o.n = 4;
    const char *model = NULL, *prompt = NULL, *out = NULL, *arch = NULL, *stop[MAX_STOP];
    const char *prompt_opt = file ? "--prompts" : "--prompt", *n_opt = file ? "-k" : "--n";
    int threads = 0, missing = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (engine_option(argc, argv, &i, &threads, &arch, &missing) ||
            decode_option(argc, argv, &i, &o, stop, &missing, &bad))
            ;
        else if ((v = opt_value(argc, argv, &i, "--model", &missing)))
            model = v;
        else if ((v = opt_value(argc, argv, &i, prompt_opt, &missing)))
            prompt = v;
        else if (file && (v = opt_value(argc, argv, &i, "--out", &missing)))
            out = v;
        else if ((v = opt_value(argc, argv, &i, n_opt, &missing)))
            bad = !(o.n = parse_count(v));
        else if (!missing)
            return usage_error(name, "unknown option");
        if (missing || bad)
            return usage_error(name, "an option lacks a valid value");
    }
    if (!model || !prompt || (file && !out))
        return usage_error(name, file ? "--model DIR, --prompts FILE and --out FILE are required"
                                      : "--model DIR and --prompt TEXT are required");
    decode_fit(&o, stop);
    int rc = engine_start(arch, threads);
    if (rc)
        return rc;
    struct pl_err err = {0};
    rc = file ? sample_file(model, prompt, out, &o, stderr, &err)
              : sample_text(model, prompt, &o, stdout, &err);
    return rc ? fail(&err, rc) : 0;
}

static int cmd_generate(int argc, char **argv) { return decode_command("generate", false, argc, argv); }

static int cmd_sample(int argc, char **argv) { return decode_command("sample", true, argc, argv); }

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"help", cmd_help, "show this list"},
    {"world", cmd_world, "write the toy world's datasets: --out DIR [--seed N]"},
    {"init", cmd_init, "write a random model: --config JSON --out DIR [--seed N] [--score-head]"},
    {"pretrain", cmd_pretrain,
     "train on plain text: --model DIR --data corpus.txt --out DIR [--steps N] [--resume] ..."},
    {"sft", cmd_sft,
     "fine-tune on prompt/response pairs: --model DIR --data sft.jsonl|.csv --out DIR ..."},
    {"score", cmd_score, "log-probability of each token of each line: --model DIR --input FILE.jsonl"},
    {"tokenize", cmd_tokenize,
     "text to token ids: --model DIR (--text S | --input FILE.jsonl) [--decode] [--special]"},
    {"generate", cmd_generate,
     "complete a prompt, streaming: --model DIR --prompt S [--n N] [--max-new-tokens M] "
     "[--temperature T] [--top-k K] [--top-p P] [--beam N] [--stop S] [--seed S]"},
    {"sample", cmd_sample,
     "K completions per prompt, resumable: --model DIR --prompts FILE.jsonl -k K --out "
     "FILE.jsonl [the options of generate] [--batch B]"},
    {"bench", cmd_bench,
     "speed against BLIS's own sgemm rate: [--config JSON] [--batch B --seq T --steps N] [--json]"},
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("plumb %s: align and evaluate small language models\n\nusage: plumb <command> "
           "[options]\n\ncommands:\n",
           PLUMB_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].help);
    printf("\ncommon options: --threads N (default: all cores), --blis-arch NAME (default: the "
           "fastest the CPU runs; also PLUMB_BLIS_ARCH)\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cmd_help(0, NULL), 2;
    if (strcmp(argv[1], "--version") == 0) {
        printf("plumb %s\n", PLUMB_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "plumb: '%s' is not a plumb command (see 'plumb help')\n", argv[1]);
    return 2;
}
