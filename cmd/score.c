#include "score.h"

#include "args.h"

#include "model/ckpt.h"
#include "model/io.h"
#include "model/score.h"
#include "model/tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- output: stdout, or --out written whole or not at all ---- */

struct sink {
    FILE *f;
    const char *name; /* for messages */
    struct io_out out;
};

static int sink_open(struct sink *s, const char *path, struct pl_err *err)
{
    memset(s, 0, sizeof *s);
    s->f = stdout;
    s->name = "standard output";
    if (!path)
        return PL_OK;
    int rc = io_out_open(&s->out, path, err);
    s->f = s->out.f;
    s->name = path;
    return rc;
}

/* A write error seen so far, named. */
static int sink_check(const struct sink *s, struct pl_err *err)
{
    if (!ferror(s->f))
        return PL_OK;
    return pl_errf(err, PL_EIO, "cannot write '%s': %s", s->name, strerror(errno));
}

/* Commit --out when rc is PL_OK, else drop it so that an earlier file there stays as it was. */
static int sink_close(struct sink *s, int rc, struct pl_err *err)
{
    if (!s->out.path) {
        if (rc == PL_OK && fflush(stdout) != 0)
            rc = pl_errf(err, PL_EIO, "cannot write the standard output: %s", strerror(errno));
        return rc;
    }
    if (rc != PL_OK) {
        io_out_abort(&s->out);
        return rc;
    }
    return io_out_commit(&s->out, err);
}

/* ---- plumb score ---- */

/* Up to a batch of input lines, tokenised, waiting to be scored together. */
struct pending {
    const int **seqs; /* [B] each pointing at T ids of `ids` */
    int *lens;        /* [B] */
    int *ids;         /* [B * T] */
    float **lp;       /* [B] each pointing at T floats of `lpbuf` */
    float *lpbuf;     /* [B * T] */
    int n;
};

static int pending_init(struct pending *p, int B, int T, struct pl_err *err)
{
    memset(p, 0, sizeof *p);
    p->seqs = pl_calloc((size_t)B, sizeof *p->seqs);
    p->lens = pl_calloc((size_t)B, sizeof *p->lens);
    p->ids = pl_malloc(sizeof(int) * (size_t)B * T);
    p->lp = pl_calloc((size_t)B, sizeof *p->lp);
    p->lpbuf = pl_malloc(sizeof(float) * (size_t)B * T);
    if (!p->seqs || !p->lens || !p->ids || !p->lp || !p->lpbuf)
        return pl_oom(err, "scoring buffers");
    for (int i = 0; i < B; i++) {
        p->seqs[i] = p->ids + (size_t)i * T;
        p->lp[i] = p->lpbuf + (size_t)i * T;
    }
    return PL_OK;
}

static void pending_release(struct pending *p)
{
    pl_free(p->seqs);
    pl_free(p->lens);
    pl_free(p->ids);
    pl_free(p->lp);
    pl_free(p->lpbuf);
    memset(p, 0, sizeof *p);
}

/* Tokens of one record: {"text"} through the tokenizer, or {"tokens"} checked. */
static int record_tokens(const struct io_jsonl *r, const cJSON *obj, const struct tok *t, int vocab,
                         struct tok_buf *buf, struct pl_err *err)
{
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, "text");
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
    buf->n = 0;
    if (text) {
        if (!cJSON_IsString(text))
            return io_jsonl_errf(r, err, "field 'text': expected a string");
        return tok_encode(t, buf, text->valuestring, strlen(text->valuestring), 0, err);
    }
    if (!cJSON_IsArray(toks))
        return io_jsonl_errf(r, err, "expected a field 'text' (string) or 'tokens' (array)");
    int *ids = io_grow(buf->ids, &buf->cap, (size_t)cJSON_GetArraySize(toks), sizeof *buf->ids);
    if (!ids)
        return pl_oom(err, "token buffer");
    buf->ids = ids;
    const cJSON *x;
    cJSON_ArrayForEach(x, toks)
    {
        double v = cJSON_IsNumber(x) ? x->valuedouble : -1.0;
        if (v != floor(v) || v < 0 || v >= vocab)
            return io_jsonl_errf(r, err, "field 'tokens': expected ids from 0 to %d", vocab - 1);
        buf->ids[buf->n++] = (int)v;
    }
    return PL_OK;
}

static void write_scores(FILE *out, const int *ids, int n, const float *lp)
{
    double sum = 0.0;
    fputs("{\"tokens\":[", out);
    for (int i = 0; i < n; i++)
        fprintf(out, i ? ",%d" : "%d", ids[i]);
    fputs("],\"logprobs\":[", out);
    for (int i = 0; i < n - 1; i++) {
        fprintf(out, i ? ",%.9g" : "%.9g", lp[i]);
        sum += lp[i];
    }
    fprintf(out, "],\"sum\":%.9g,\"ppl\":", sum);
    if (n > 1)
        fprintf(out, "%.9g}\n", exp(-sum / (n - 1)));
    else
        fputs("null}\n", out);
}

/* Score the pending sequences as one batch and write them in order. */
static int flush_batch(struct score_ctx *s, struct pending *p, struct sink *out, struct pl_err *err)
{
    int rc = score_seqs(s, p->seqs, p->lens, p->n, p->lp, NULL, err);
    for (int i = 0; i < p->n && !rc; i++)
        write_scores(out->f, p->seqs[i], p->lens[i], p->lp[i]);
    p->n = 0;
    return rc ? rc : sink_check(out, err);
}

/* Each line of in_path is {"text": "..."} (tokenised with t) or {"tokens": [ids]}; each writes
 * one line {"tokens", "logprobs", "sum", "ppl"} in input order, batched as the model allows. */
static int score_file(struct score_ctx *s, const struct tok *t, const char *in_path,
                      struct sink *out, struct pl_err *err)
{
    int B = s->m->opts.max_batch, T = s->m->opts.max_seq;
    struct io_jsonl r;
    struct tok_buf buf = {0};
    struct pending p;
    int rc = pending_init(&p, B, T, err);
    int rc_open = io_jsonl_init(&r, in_path, 0, err);
    rc = rc ? rc : rc_open;
    cJSON *obj = NULL;
    long line = 0;
    while (!rc && !(rc = io_jsonl_next(&r, &obj, &line, err)) && obj) {
        rc = record_tokens(&r, obj, t, s->m->cfg.vocab_size, &buf, err);
        cJSON_Delete(obj);
        if (!rc && (buf.n < 1 || (int)buf.n > T))
            rc = pl_errf(err, PL_EFORMAT, "%s:%ld: %zu tokens; the model scores 1 to %d", in_path,
                         line, buf.n, T);
        if (rc)
            break;
        memcpy(p.ids + (size_t)p.n * T, buf.ids, sizeof(int) * buf.n);
        p.lens[p.n++] = (int)buf.n;
        if (p.n == B)
            rc = flush_batch(s, &p, out, err);
    }
    if (!rc && p.n)
        rc = flush_batch(s, &p, out, err);
    io_jsonl_release(&r);
    tok_buf_release(&buf);
    pending_release(&p);
    return rc;
}

/* A model folder (weights, config and tokenizer) as a frozen model scoring `batch` sequences of
 * up to its context at once. */
static int load_frozen(const char *dir, int batch, struct gpt *m, struct tok *t, struct pl_err *err)
{
    struct gpt_config cfg;
    int rc = ckpt_config_read(dir, &cfg, err);
    if (rc)
        return rc;
    struct gpt_opts o = {.max_batch = batch, .max_seq = cfg.n_positions};
    return ckpt_load_model(m, t, dir, &o, err);
}

struct score_args {
    const char *model, *input, *out;
    int batch;
    bool force;
    struct cmd_engine engine;
};

/* A line plumb score writes. */
static bool score_line(const cJSON *v, const void *ctx)
{
    (void)ctx;
    return cJSON_HasObjectItem(v, "tokens") && cJSON_HasObjectItem(v, "logprobs") &&
           cJSON_HasObjectItem(v, "sum");
}

int cmd_score(int argc, char **argv)
{
    struct score_args a = {.batch = 8};
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a.model, 0, 0, "DIR", "model folder", true},
        {"--input", CMD_STR, &a.input, 0, 0, "FILE",
         "JSONL, one {\"text\": \"...\"} or {\"tokens\": [ids]} a line", true},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE",
         "write the scores there, whole or not at all (default: standard output)", false},
        {"--batch", CMD_INT, &a.batch, 1, 4096, "N", "sequences scored at once (8)", false},
        {"--force", CMD_FLAG, &a.force, 0, 0, NULL,
         "replace an --out file that holds something other than scores", false},
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "score",
        .summary = "log-probability of every token of every line",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (a.out && io_same_file(a.input, a.out))
        return cmd_usage(&spec, "--out '%s' is the --input file; write the scores elsewhere",
                         a.out);
    if (a.out && !cmd_may_replace(&spec, a.out, a.force, score_line, NULL))
        return 1;
    if ((rc = cmd_engine_start(&a.engine)))
        return rc;
    struct pl_err err = {0};
    struct gpt m = {0};
    struct tok t = {0};
    struct score_ctx s = {0};
    struct sink out;
    rc = load_frozen(a.model, a.batch, &m, &t, &err);
    if (!rc)
        rc = score_init(&s, &m, &err);
    if (!rc && !(rc = sink_open(&out, a.out, &err))) {
        rc = score_file(&s, &t, a.input, &out, &err);
        rc = sink_close(&out, rc, &err);
    }
    score_release(&s);
    tok_release(&t);
    gpt_release(&m);
    return cmd_fail(&err, rc);
}

/* ---- plumb tokenize ---- */

/* Parse json[0 .. len) as ids (an array, or an object with field "tokens") into out, replacing
 * its contents. where prefixes messages. */
static int parse_ids(const struct tok *t, struct tok_buf *out, const char *json, size_t len,
                     const char *where, struct pl_err *err)
{
    cJSON *root = NULL;
    int rc = io_json_parse(json, len, &root);
    if (rc == PL_ENOMEM)
        return pl_oom(err, "token ids");
    if (rc)
        return pl_errf(err, PL_EFORMAT, "%s: not valid JSON", where);
    const cJSON *a = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "tokens") : root;
    out->n = 0;
    int *ids = NULL;
    if (!cJSON_IsArray(a))
        rc = pl_errf(err, PL_EFORMAT, "%s: expected an array of token ids or {\"tokens\": [...]}",
                     where);
    else if (!(ids = io_grow(out->ids, &out->cap, (size_t)cJSON_GetArraySize(a), sizeof *ids)))
        rc = pl_oom(err, "token ids");
    else
        out->ids = ids;
    for (const cJSON *it = ids ? a->child : NULL; it && !rc; it = it->next) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v != floor(v))
            rc = pl_errf(err, PL_EFORMAT, "%s: expected an array of integer token ids", where);
        else if (v < 0 || v >= t->vocab_size)
            rc = pl_errf(err, PL_EFORMAT, "%s: token id %.0f out of range (vocab size %d)", where,
                         v, t->vocab_size);
        else
            out->ids[out->n++] = (int)v;
    }
    cJSON_Delete(root);
    return rc;
}

static void put_ids(FILE *f, const int *ids, size_t n)
{
    putc('[', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, i ? ",%d" : "%d", ids[i]);
    fputs("]\n", f);
}

/* --text S: one line of ids. */
static int encode_text(const struct tok *t, FILE *out, const char *text, unsigned flags,
                       struct pl_err *err)
{
    struct tok_buf b = {0};
    int rc = tok_encode(t, &b, text, strlen(text), flags, err);
    if (!rc)
        put_ids(out, b.ids, b.n);
    tok_buf_release(&b);
    return rc;
}

/* --text IDS --decode: the raw text and a newline, for a terminal or a pipe. */
static int decode_text(const struct tok *t, FILE *out, const char *json, struct pl_err *err)
{
    struct tok_buf b = {0};
    char *text = NULL;
    size_t len;
    int rc = parse_ids(t, &b, json, strlen(json), "--text", err);
    if (!rc)
        rc = tok_decode(t, &text, &len, b.ids, b.n, err);
    if (!rc) {
        fwrite(text, 1, len, out);
        putc('\n', out);
    }
    pl_free(text);
    tok_buf_release(&b);
    return rc;
}

/* --input FILE: each record {"text": "..."} gives one line of ids. */
static int encode_file(const struct tok *t, struct sink *out, const char *path, unsigned flags,
                       struct pl_err *err)
{
    struct tok_buf b = {0};
    struct io_jsonl in;
    cJSON *obj = NULL;
    const char *text;
    int rc = io_jsonl_init(&in, path, 0, err);
    while (!rc && !(rc = io_jsonl_next(&in, &obj, NULL, err)) && obj) {
        b.n = 0;
        rc = io_get_str(&in, obj, "text", &text, err);
        if (!rc)
            rc = tok_encode(t, &b, text, strlen(text), flags, err);
        if (!rc)
            put_ids(out->f, b.ids, b.n);
        cJSON_Delete(obj);
        if (!rc)
            rc = sink_check(out, err);
    }
    io_jsonl_release(&in);
    tok_buf_release(&b);
    return rc;
}

/* --input FILE --decode: each line of ids gives {"text": "..."}, valid UTF-8 whatever the bytes
 * (pl_buf_json). */
static int decode_file(const struct tok *t, struct sink *out, const char *path, struct pl_err *err)
{
    struct tok_buf b = {0};
    struct io_lines in;
    struct pl_buf where = {0}, line_out = {0};
    const char *line;
    char *text = NULL;
    size_t len, text_len;
    int rc = io_lines_init(&in, path, err);
    while (!rc && !(rc = io_lines_next(&in, &line, &len, err)) && line) {
        if (io_blank(line, len))
            continue;
        where.len = line_out.len = 0;
        pl_buf_printf(&where, "%s:%ld", path, in.lineno);
        if (where.oom)
            rc = pl_oom(err, "file name");
        if (!rc)
            rc = parse_ids(t, &b, line, len, where.p, err);
        if (!rc)
            rc = tok_decode(t, &text, &text_len, b.ids, b.n, err);
        if (rc)
            break;
        pl_buf_str(&line_out, "{\"text\":");
        pl_buf_json(&line_out, text, text_len);
        pl_buf_str(&line_out, "}\n");
        pl_free(text);
        text = NULL;
        if (line_out.oom)
            rc = pl_oom(err, "decoded text");
        else
            fwrite(line_out.p, 1, line_out.len, out->f);
        if (!rc)
            rc = sink_check(out, err);
    }
    io_lines_release(&in);
    pl_buf_release(&where);
    pl_buf_release(&line_out);
    tok_buf_release(&b);
    return rc;
}

struct tokenize_args {
    const char *model, *text, *input, *out;
    bool decode, special, force;
};

/* A line plumb tokenize writes: an array of ids, or {"text"} alone. */
static bool tokenize_line(const cJSON *v, const void *ctx)
{
    (void)ctx;
    if (cJSON_IsArray(v)) {
        for (const cJSON *id = v->child; id; id = id->next)
            if (!cJSON_IsNumber(id))
                return false;
        return true;
    }
    return cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1 &&
           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "text"));
}

static const char *tokenize_check(void *ctx)
{
    const struct tokenize_args *a = ctx;
    if (!a->text == !a->input)
        return "give one of --text and --input";
    if (a->decode && a->special)
        return "--special applies to encoding only";
    return NULL;
}

int cmd_tokenize(int argc, char **argv)
{
    struct tokenize_args a = {0};
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a.model, 0, 0, "DIR", "model folder whose tokenizer to use", true},
        {"--text", CMD_STR, &a.text, 0, 0, "S",
         "the text to encode (with --decode: a JSON array of ids)", false},
        {"--input", CMD_STR, &a.input, 0, 0, "FILE",
         "JSONL: {\"text\": \"...\"} a line (with --decode: an array of ids a line)", false},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE",
         "write there, whole or not at all (default: standard output)", false},
        {"--decode", CMD_FLAG, &a.decode, 0, 0, NULL, "token ids back to text", false},
        {"--special", CMD_FLAG, &a.special, 0, 0, NULL,
         "encode \"<|endoftext|>\" in the text as the end-of-text id", false},
        {"--force", CMD_FLAG, &a.force, 0, 0, NULL,
         "replace an --out file that holds something other than ids or texts", false},
    };
    const struct cmd_spec spec = {
        .name = "tokenize",
        .summary = "text to token ids, or with --decode ids to text",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = tokenize_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (a.out && a.input && io_same_file(a.input, a.out))
        return cmd_usage(&spec, "--out '%s' is the --input file; write elsewhere", a.out);
    if (a.out && !cmd_may_replace(&spec, a.out, a.force, tokenize_line, NULL))
        return 1;
    struct pl_err err = {0};
    struct tok t = {0};
    struct sink out;
    unsigned flags = a.special ? TOK_SPECIAL : 0;
    rc = tok_load(&t, a.model, &err);
    if (!rc && !(rc = sink_open(&out, a.out, &err))) {
        if (a.decode)
            rc = a.text ? decode_text(&t, out.f, a.text, &err)
                        : decode_file(&t, &out, a.input, &err);
        else
            rc = a.text ? encode_text(&t, out.f, a.text, flags, &err)
                        : encode_file(&t, &out, a.input, flags, &err);
        rc = sink_close(&out, rc ? rc : sink_check(&out, &err), &err);
    }
    tok_release(&t);
    return cmd_fail(&err, rc);
}
