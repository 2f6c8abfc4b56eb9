#include "gen.h"

#include "args.h"

#include "datasets/ds.h"
#include "model/ckpt.h"
#include "model/io.h"
#include "model/sample.h"
#include "model/tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- what both commands share ---- */

struct gen_args {
    const char *model, *prompt, *prompts, *out;
    struct sample_opts o;
    struct cmd_list stop;
    struct cmd_engine engine;
    char why[128]; /* gen_check's message */
};

/* The decoding options of both commands, into struct gen_args *a. */
#define GEN_DECODE_OPTS(a)                                                                         \
    {"--max-new-tokens",                                                                           \
     CMD_INT,                                                                                      \
     &(a)->o.max_new_tokens,                                                                       \
     1,                                                                                            \
     1 << 20,                                                                                      \
     "N",                                                                                          \
     "tokens to generate at most (64)",                                                            \
     false},                                                                                       \
        {"--temperature",                                                                          \
         CMD_FLOAT,                                                                                \
         &(a)->o.temperature,                                                                      \
         0,                                                                                        \
         1e6,                                                                                      \
         "T",                                                                                      \
         "sampling temperature; 0 is greedy (1)",                                                  \
         false},                                                                                   \
        {"--top-k",                                                                                \
         CMD_INT,                                                                                  \
         &(a)->o.top_k,                                                                            \
         0,                                                                                        \
         1 << 30,                                                                                  \
         "K",                                                                                      \
         "sample from the K likeliest tokens; 0 keeps all (0)",                                    \
         false},                                                                                   \
        {"--top-p",                                                                                \
         CMD_FLOAT,                                                                                \
         &(a)->o.top_p,                                                                            \
         1e-9,                                                                                     \
         1,                                                                                        \
         "P",                                                                                      \
         "sample from the fewest likeliest tokens holding mass P (1)",                             \
         false},                                                                                   \
        {"--beam",                                                                                 \
         CMD_INT,                                                                                  \
         &(a)->o.beam,                                                                             \
         0,                                                                                        \
         4096,                                                                                     \
         "N",                                                                                      \
         "beam search of width N instead of sampling; 0 samples (0)",                              \
         false},                                                                                   \
        {"--length-penalty",                                                                       \
         CMD_FLOAT,                                                                                \
         &(a)->o.length_penalty,                                                                   \
         -100,                                                                                     \
         100,                                                                                      \
         "X",                                                                                      \
         "beam search ranks by sum log p / length^X (1)",                                          \
         false},                                                                                   \
        {"--stop",                                                                                 \
         CMD_LIST,                                                                                 \
         &(a)->stop,                                                                               \
         0,                                                                                        \
         0,                                                                                        \
         "TEXT",                                                                                   \
         "end a completion where this text appears (cut before it)",                               \
         false},                                                                                   \
        {"--seed", CMD_U64, &(a)->o.seed, 0, 0, "S", "random seed (1)", false},                    \
    {                                                                                              \
        "--batch", CMD_INT, &(a)->o.batch, 1, 1 << 20, "B", "sequences decoded at once (32)",      \
            false                                                                                  \
    }

static const char *gen_check(void *ctx)
{
    struct gen_args *a = ctx;
    for (int i = 0; i < a->stop.n; i++)
        if (!a->stop.v[i][0])
            return "option '--stop' needs a non-empty text";
    if (a->o.beam > 0 && a->o.n > a->o.beam) {
        snprintf(a->why, sizeof a->why, "%d completions need a '--beam' of at least %d", a->o.n,
                 a->o.n);
        return a->why;
    }
    return NULL;
}

/* What parsing leaves to fill in: the stop strings, and a batch that holds at least one
 * prompt's sequences. */
static void gen_fit(struct gen_args *a)
{
    int width = a->o.beam > 0 ? a->o.beam : a->o.n;
    a->o.batch = a->o.batch < width ? width : a->o.batch;
    a->o.stop = a->stop.v;
    a->o.n_stop = a->stop.n;
}

/* The frozen model and tokenizer of dir; both releasable on failure. */
static int load_model(struct gpt *m, struct tok *t, const char *dir, struct pl_err *err)
{
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    return ckpt_load_model(m, t, dir, &go, err);
}

/* max_len for prompts of up to `longest` tokens, when the options leave it 0. */
static int fit_max_len(const struct sample_opts *o, const struct gpt_config *cfg, int longest)
{
    long want = (long)(longest ? longest : 1) + o->max_new_tokens;
    return o->max_len ? o->max_len : (int)(want < cfg->n_positions ? want : cfg->n_positions);
}

/* Why prompt ids[0..n) cannot be generated from (written to why), or NULL: ids the model lacks
 * (the tokenizer is not the model's), or no room left. */
static const char *prompt_problem(const int *ids, size_t n, const struct gpt_config *cfg, char *why,
                                  size_t cap)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= cfg->vocab_size) {
            snprintf(why, cap,
                     "token id %d from the tokenizer is outside the model's vocabulary (%d)",
                     ids[i], cfg->vocab_size);
            return why;
        }
    if ((n ? n : 1) >= (size_t)cfg->n_positions) {
        snprintf(why, cap,
                 "prompt of %zu tokens leaves no room to generate in the model's context of %d", n,
                 cfg->n_positions);
        return why;
    }
    return NULL;
}

/* ---- plumb generate ---- */

struct text_out {
    FILE *f;
    int n;        /* completions */
    size_t held;  /* bytes a stop string could still take back */
    size_t shown; /* bytes of completion 0 written */
    bool headed;  /* completion 0's header written */
};

static void text_header(struct text_out *t, int k)
{
    if (t->n > 1)
        fprintf(t->f, "--- completion %d of %d ---\n", k + 1, t->n);
}

/* Completion 0 as it grows, minus what a stop string could still cut. */
static void text_token(void *user, const struct sample_completion *c)
{
    struct text_out *t = user;
    if (c->k != 0)
        return;
    if (!t->headed)
        text_header(t, 0);
    t->headed = true;
    size_t upto = c->text_len > t->held ? c->text_len - t->held : 0;
    if (upto > t->shown) {
        pl_write_safe(t->f, c->text, c->text_len, t->shown, upto);
        fflush(t->f);
        t->shown = upto;
    }
}

static int text_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    struct text_out *t = user;
    for (int k = 0; k < n; k++) {
        size_t from = k == 0 ? t->shown : 0;
        if (k > 0 || !t->headed)
            text_header(t, k);
        pl_write_safe(t->f, c[k].text, c[k].text_len, from, c[k].text_len);
        fputc('\n', t->f);
    }
    fflush(t->f);
    return ferror(t->f) ? pl_errf(err, PL_EIO, "cannot write the output: %s", strerror(errno))
                        : PL_OK;
}

/* The o->n completions of one prompt to out, the first streamed as it is generated (a header
 * "--- completion k of n ---" before each when n > 1; beam search writes each when done). The
 * cache fits the prompt and the batch its sequences. */
static int generate_text(const char *dir, const char *prompt, const struct sample_opts *o,
                         FILE *out, struct pl_err *err)
{
    struct gpt m;
    struct tok t;
    struct tok_buf ids = {0};
    struct sample_ctx s = {0};
    int rc = load_model(&m, &t, dir, err);
    if (!rc)
        rc = tok_encode(&t, &ids, prompt, strlen(prompt), 0, err);
    char why[160];
    if (!rc && prompt_problem(ids.ids, ids.n, &m.cfg, why, sizeof why))
        rc = pl_errf(err, PL_EINVAL, "--prompt: %s", why);
    if (!rc) {
        struct sample_opts so = *o;
        so.max_len = fit_max_len(o, &m.cfg, (int)ids.n);
        int width = o->beam > 0 ? o->beam : o->n;
        so.batch = o->batch < width ? o->batch : width;
        rc = sample_init(&s, &m, &t, &so, err);
    }
    if (!rc) {
        size_t held = 0;
        for (int i = 0; i < o->n_stop; i++)
            held = strlen(o->stop[i]) - 1 > held ? strlen(o->stop[i]) - 1 : held;
        struct text_out to = {.f = out, .n = o->n, .held = held};
        struct sample_hooks hooks = {.user = &to, .token = text_token, .done = text_done};
        struct sample_prompt p = {.ids = ids.ids, .n = (int)ids.n};
        rc = sample_generate(&s, &p, 1, &hooks, err);
    }
    sample_release(&s);
    tok_buf_release(&ids);
    tok_release(&t);
    gpt_release(&m);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    struct gen_args a = {0};
    sample_opts_default(&a.o);
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a.model, 0, 0, "DIR", "model folder", true},
        {"--prompt", CMD_STR, &a.prompt, 0, 0, "TEXT", "the text to complete", true},
        {"--n", CMD_INT, &a.o.n, 1, 4096, "N", "completions (1)", false},
        GEN_DECODE_OPTS(&a),
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "generate",
        .summary = "complete a prompt, streaming the text as it is generated",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = gen_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    gen_fit(&a);
    if ((rc = cmd_engine_start(&a.engine)))
        return rc;
    struct pl_err err = {0};
    return cmd_fail(&err, generate_text(a.model, a.prompt, &a.o, stdout, &err));
}

/* ---- plumb sample: the prompts ---- */

/* Every prompt of the file, encoded and checked, and which already have a record. */
struct prompt_set {
    struct ds_prompts recs;
    struct tok_buf ids;
    size_t *start; /* [n + 1]: prompt i's tokens are ids[start[i] .. start[i + 1]) */
    bool *done;    /* [n] */
};

static void prompt_set_release(struct prompt_set *p)
{
    ds_prompts_release(&p->recs);
    tok_buf_release(&p->ids);
    pl_free(p->start);
    pl_free(p->done);
    memset(p, 0, sizeof *p);
}

static int prompts_load(struct prompt_set *p, const char *path, const struct tok *t,
                        const struct gpt_config *cfg, struct pl_err *err)
{
    memset(p, 0, sizeof *p);
    int rc = ds_prompts_init(&p->recs, path, 0, err);
    if (rc)
        return rc;
    size_t n = p->recs.n;
    p->start = pl_malloc(sizeof *p->start * (n + 1));
    p->done = pl_calloc(n ? n : 1, sizeof *p->done);
    if (!p->start || !p->done)
        return pl_oom(err, "prompts");
    p->start[0] = 0;
    char why[160];
    for (size_t i = 0; i < n && !rc; i++) {
        const struct ds_prompt_rec *r = &p->recs.recs[i];
        rc = tok_encode(t, &p->ids, r->prompt, strlen(r->prompt), 0, err);
        p->start[i + 1] = p->ids.n;
        if (!rc &&
            prompt_problem(p->ids.ids + p->start[i], p->ids.n - p->start[i], cfg, why, sizeof why))
            rc = pl_errf(err, PL_EFORMAT, "%s:%ld: %s", path, r->line, why);
    }
    return rc;
}

/* ---- plumb sample: the output ---- */

/* Whether a record's "model" names this run's model: the same text, or the same folder. */
static bool same_model(const char *recorded, const char *dir)
{
    return strcmp(recorded, dir) == 0 || io_same_file(recorded, dir);
}

/* One record of an existing output: from this model with k completions; marks its prompt. */
static int output_record(const char *path, long line, const char *text, size_t len,
                         struct prompt_set *p, const char *model, int k, struct pl_err *err)
{
    cJSON *obj = NULL;
    int rc = io_json_parse(text, len, &obj);
    if (rc == PL_ENOMEM)
        return pl_oom(err, path);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(obj, "model");
    const cJSON *comp = cJSON_GetObjectItemCaseSensitive(obj, "completions");
    if (rc || !cJSON_IsObject(obj))
        rc = pl_errf(err, PL_EFORMAT, "%s:%ld: not a JSON object", path, line);
    else if (!cJSON_IsString(id))
        rc = pl_errf(err, PL_EFORMAT, "%s:%ld: field 'id': expected a string", path, line);
    else if (!cJSON_IsString(by))
        rc = pl_errf(err, PL_EFORMAT, "%s:%ld: field 'model': expected a string", path, line);
    else if (!same_model(by->valuestring, model))
        rc = pl_errf(err, PL_EFORMAT,
                     "%s:%ld: written by model '%s', not '%s' (resume with that model, or write "
                     "to another --out)",
                     path, line, by->valuestring, model);
    else if (!cJSON_IsArray(comp))
        rc = pl_errf(err, PL_EFORMAT, "%s:%ld: field 'completions': expected an array", path, line);
    else if (cJSON_GetArraySize(comp) != k)
        rc = pl_errf(err, PL_EFORMAT,
                     "%s:%ld: %d completions a prompt, not -k %d (resume with -k %d, or write to "
                     "another --out)",
                     path, line, cJSON_GetArraySize(comp), k, cJSON_GetArraySize(comp));
    if (!rc) {
        int i = ds_prompts_find(&p->recs, id->valuestring);
        if (i >= 0)
            p->done[i] = true;
    }
    cJSON_Delete(obj);
    return rc;
}

/* Check every whole record path holds and mark their prompts done. A last line without its
 * newline was cut short by a crash: *keep is then the length to cut the file to, else -1. */
static int outputs_read(const char *path, struct prompt_set *p, const char *model, int k,
                        long *keep, struct pl_err *err)
{
    int rc = io_jsonl_tail(path, keep, err);
    if (rc)
        return rc;
    struct io_lines l;
    rc = io_lines_init(&l, path, err);
    if (rc == PL_ENOTFOUND) {
        *err = (struct pl_err){0};
        rc = PL_OK;
    } else {
        const char *line;
        size_t len;
        while (!rc && !(rc = io_lines_next(&l, &line, &len, err)) && line && !l.cut)
            if (!io_blank(line, len))
                rc = output_record(path, l.lineno, line, len, p, model, k, err);
    }
    io_lines_release(&l);
    return rc;
}

/* {"id", "prompt", "completions", "tokens", "logprobs", "finish", "model"} and a newline. */
static void record_line(struct pl_buf *b, const char *id, const char *prompt, const char *model,
                        const struct sample_completion *c, int n)
{
    b->len = 0;
    pl_buf_str(b, "{\"id\":");
    pl_buf_json(b, id, strlen(id));
    pl_buf_str(b, ",\"prompt\":");
    pl_buf_json(b, prompt, strlen(prompt));
    pl_buf_str(b, ",\"completions\":[");
    for (int k = 0; k < n; k++) {
        pl_buf_str(b, k ? "," : "");
        pl_buf_json(b, c[k].text, c[k].text_len);
    }
    pl_buf_str(b, "],\"tokens\":[");
    for (int k = 0; k < n; k++) {
        pl_buf_str(b, k ? ",[" : "[");
        for (int t = 0; t < c[k].n_tokens; t++)
            pl_buf_printf(b, t ? ",%d" : "%d", c[k].tokens[t]);
        pl_buf_str(b, "]");
    }
    pl_buf_str(b, "],\"logprobs\":[");
    for (int k = 0; k < n; k++) {
        pl_buf_str(b, k ? ",[" : "[");
        for (int t = 0; t < c[k].n_tokens; t++) {
            float lp = c[k].logp[t];
            pl_buf_str(b, t ? "," : "");
            if (isfinite(lp))
                pl_buf_printf(b, "%.9g", lp);
            else
                pl_buf_str(b, "null");
        }
        pl_buf_str(b, "]");
    }
    pl_buf_str(b, "],\"finish\":[");
    for (int k = 0; k < n; k++)
        pl_buf_printf(b, "%s\"%s\"", k ? "," : "", sample_finish_name(c[k].finish));
    pl_buf_str(b, "],\"model\":");
    pl_buf_json(b, model, strlen(model));
    pl_buf_str(b, "}\n");
}

struct file_out {
    int fd;
    const char *path, *model;
    const struct prompt_set *set;
    const int *which; /* position in the todo list -> prompt of the set */
    const struct sample_ctx *s;
    struct pl_buf b;
    struct io_progress bar;
};

/* One prompt's record in one write, then fsync: a crash loses at most this line, and a rerun
 * sees exactly what was written. */
static int file_done(void *user, const struct sample_completion *c, int n, struct pl_err *err)
{
    struct file_out *o = user;
    const struct ds_prompt_rec *r = &o->set->recs.recs[o->which[c[0].prompt]];
    record_line(&o->b, r->id, r->prompt, o->model, c, n);
    if (o->b.oom)
        return pl_oom(err, "a samples record");
    int rc = io_write_all(o->fd, o->b.p, o->b.len, o->path, err);
    if (!rc && fsync(o->fd) != 0)
        rc = pl_errf(err, PL_EIO, "cannot sync '%s': %s", o->path, strerror(errno));
    o->bar.done++;
    double dt = pl_now() - o->bar.t0;
    char note[48];
    snprintf(note, sizeof note, "%.0f tokens/s", dt > 0 ? o->s->tokens / dt : 0.0);
    io_progress_show(&o->bar, note, false);
    return rc;
}

/* Open path for appending (made durable when it is new), first cutting it to keep bytes when
 * keep >= 0. */
static int output_open(const char *path, long keep, int *fd, struct pl_err *err)
{
    int rc = keep >= 0 ? io_truncate(path, keep, err) : PL_OK;
    bool existed = access(path, F_OK) == 0;
    if (!rc && (*fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666)) < 0)
        rc = pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (!rc && !existed)
        rc = io_sync_parent(path, err);
    return rc;
}

/* Generate every prompt of set not yet done, appending to out_path. */
static int sample_todo(struct file_out *fo, const struct gpt *m, const struct tok *t,
                       const struct sample_opts *o, long keep, struct pl_err *err)
{
    const struct prompt_set *set = fo->set;
    size_t total = set->recs.n;
    struct sample_prompt *todo = pl_malloc(sizeof *todo * (total ? total : 1));
    int *which = pl_malloc(sizeof *which * (total ? total : 1));
    struct sample_ctx s = {0};
    int rc = todo && which ? PL_OK : pl_oom(err, "prompts"), n = 0, longest = 0;
    for (size_t i = 0; !rc && i < total; i++)
        if (!set->done[i]) {
            int len = (int)(set->start[i + 1] - set->start[i]);
            todo[n] = (struct sample_prompt){set->ids.ids + set->start[i], len, (long)i};
            which[n++] = (int)i;
            longest = len > longest ? len : longest;
        }
    if (!rc && n > 0) {
        struct sample_opts so = *o;
        so.max_len = fit_max_len(o, &m->cfg, longest);
        /* No more slots than the prompts left can fill (results do not depend on it). */
        long need = (long)n * (o->beam > 0 ? o->beam : o->n);
        so.batch = need < o->batch ? (int)need : o->batch;
        rc = sample_init(&s, m, t, &so, err);
    }
    /* Only now, with everything checked, touch the output. */
    if (!rc && (n > 0 || keep >= 0))
        rc = output_open(fo->path, keep, &fo->fd, err);
    io_progress_init(&fo->bar, fo->bar.f, "sample", "prompts", n);
    if (!rc && n > 0) {
        fo->s = &s;
        fo->which = which;
        struct sample_hooks hooks = {.user = fo, .done = file_done};
        rc = sample_generate(&s, todo, n, &hooks, err);
    }
    if (!rc) {
        double dt = pl_now() - fo->bar.t0;
        char note[48];
        snprintf(note, sizeof note, "%.0f tokens/s", dt > 0 ? s.tokens / dt : 0.0);
        io_progress_show(&fo->bar, note, true);
    }
    sample_release(&s);
    pl_free(todo);
    pl_free(which);
    return rc;
}

static int sample_file(const char *dir, const char *prompts_path, const char *out_path,
                       const struct sample_opts *o, FILE *progress, struct pl_err *err)
{
    struct gpt m;
    struct tok t;
    struct prompt_set set = {0};
    struct file_out fo = {.fd = -1, .path = out_path, .model = dir, .set = &set};
    fo.bar.f = progress;
    long keep = -1;
    int rc = load_model(&m, &t, dir, err);
    if (!rc)
        rc = sample_opts_check(o, &m.cfg, err);
    if (!rc)
        rc = prompts_load(&set, prompts_path, &t, &m.cfg, err);
    if (!rc)
        rc = outputs_read(out_path, &set, dir, o->n, &keep, err);
    if (!rc)
        rc = sample_todo(&fo, &m, &t, o, keep, err);
    if (fo.fd >= 0 && close(fo.fd) != 0 && !rc)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", out_path, strerror(errno));
    pl_buf_release(&fo.b);
    prompt_set_release(&set);
    tok_release(&t);
    gpt_release(&m);
    return rc;
}

int cmd_sample(int argc, char **argv)
{
    struct gen_args a = {0};
    sample_opts_default(&a.o);
    a.o.n = 4;
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a.model, 0, 0, "DIR", "model folder", true},
        {"--prompts", CMD_STR, &a.prompts, 0, 0, "FILE", "JSONL, one {\"id\", \"prompt\"} a line",
         true},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE",
         "samples JSONL: appended to, one line per prompt; a rerun resumes it", true},
        {"-k", CMD_INT, &a.o.n, 1, 4096, "K", "completions per prompt (4)", false},
        GEN_DECODE_OPTS(&a),
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "sample",
        .summary = "K completions of every prompt of a file, with their log-probs; resumable",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = gen_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (io_same_file(a.prompts, a.out))
        return cmd_usage(&spec, "--out '%s' is the --prompts file; write the samples elsewhere",
                         a.out);
    gen_fit(&a);
    if ((rc = cmd_engine_start(&a.engine)))
        return rc;
    struct pl_err err = {0};
    return cmd_fail(&err, sample_file(a.model, a.prompts, a.out, &a.o, stderr, &err));
}
