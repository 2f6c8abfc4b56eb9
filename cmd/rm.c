#include "rm.h"

#include "args.h"
#include "train.h"

#include "model/io.h"
#include "reward/rm.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- plumb rm train ---- */

static int rm_train_command(int argc, char **argv)
{
    struct rm_opts o;
    rm_opts_default(&o);
    o.train.version = CMD_VERSION;
    o.train.log = stderr;
    struct cmd_list data = {0}, eval_data = {0};
    struct cmd_engine e = {0};
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &o.model, 0, 0, "DIR", "starting model folder (base, SFT or reward)",
         true},
        {"--data", CMD_LIST, &data, 0, 0, "FILE",
         "preferences: labels, pairs, soft pairs or HH-RLHF (JSONL)", true},
        {"--epochs", CMD_REAL, &o.epochs, 1e-6, 1e6, "X",
         "passes over the groups when --steps is not given (1)", false},
        {"--batch", CMD_INT, &o.batch, 1, 1 << 16, "N",
         "groups (a ranking or a pair, all its completions) per micro-batch (8)", false},
        {"--seq", CMD_INT, &o.seq, 1, 1 << 20, "N",
         "tokens a sequence keeps, cut from the left (the model's context)", false},
        {"--center-coef", CMD_REAL, &o.center_coef, 0, 1e6, "X",
         "weight of (r_chosen + r_rejected)^2 in the loss (0)", false},
        {"--norm-data", CMD_STR, &o.norm_data, 0, 0, "FILE",
         "{\"prompt\", \"response\"} references that score mean 0, std 1 after training "
         "(default: the better texts of --data)",
         false},
        {"--eval-data", CMD_LIST, &eval_data, 0, 0, "FILE", "held-out preferences", false},
        {"--eval-frac", CMD_REAL, &o.eval_frac, 0, 0.99, "X",
         "share of --data's groups held out without --eval-data (0.05)", false},
        {"--eval-every", CMD_LONG, &o.train.eval_every, 0, 1e12, "N",
         "held-out loss and accuracy every N steps, 0: never (100)", false},
        {"--seed", CMD_U64, &o.seed, 0, 0, "N", "group order (1337)", false},
        {"--skip-bad-lines", CMD_FLAG, &o.skip_bad_lines, 0, 0, NULL,
         "skip and count malformed records", false},
        CMD_RUN_OPTS(&o.train),
        CMD_OPTIM_OPTS(&o.optim),
        CMD_ENGINE_OPTS(&e),
    };
    const struct cmd_spec spec = {"rm train", "train a reward model on rankings and pairs",
                                  opts,       sizeof opts / sizeof *opts,
                                  NULL,       NULL};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if ((rc = cmd_engine_start(&e)))
        return rc;
    o.data = data.v;
    o.n_data = data.n;
    o.eval_data = eval_data.v;
    o.n_eval_data = eval_data.n;
    struct pl_err err = {0};
    struct rm_result res;
    rc = rm_run(&o, &res, &err);
    if (res.skipped)
        fprintf(stderr, "rm: skipped %ld malformed records\n", res.skipped);
    if (rc)
        return cmd_fail(&err, rc);
    const struct train_result *t = &res.train;
    printf("%s: step %ld", o.train.out, t->steps);
    if (!isnan(t->eval_last))
        printf(", held-out loss %.4f -> %.4f", t->eval_first, t->eval_last);
    if (res.normalised)
        printf(", rewards normalised by mean %.6g and std %.6g", res.reward_mean, res.reward_std);
    printf(", %.1f s\n", t->seconds);
    return 0;
}

/* ---- plumb rm eval ---- */

static void print_row(const char *what, const char *name, const struct rm_stats *s)
{
    char label[64];
    snprintf(label, sizeof label, "%s%s%.*s", what, name ? " " : "", name ? 40 : 0,
             name ? name : "");
    printf("%-24s %8.0f %9.4f %9.4f %9.4f %9.4f\n", label, s->pairs, rm_stats_accuracy(s),
           rm_stats_mean(s, s->margin), rm_stats_mean(s, s->chosen), rm_stats_mean(s, s->rejected));
}

static void json_num(struct pl_buf *b, const char *key, double v)
{
    pl_buf_printf(b, "\"%s\":", key);
    if (isfinite(v))
        pl_buf_printf(b, "%.9g", v);
    else
        pl_buf_str(b, "null");
}

static void json_stats(struct pl_buf *b, const struct rm_stats *s)
{
    pl_buf_printf(b, "\"pairs\":%.0f,", s->pairs);
    json_num(b, "accuracy", rm_stats_accuracy(s));
    pl_buf_str(b, ",");
    json_num(b, "margin", rm_stats_mean(s, s->margin));
    pl_buf_str(b, ",");
    json_num(b, "chosen", rm_stats_mean(s, s->chosen));
    pl_buf_str(b, ",");
    json_num(b, "rejected", rm_stats_mean(s, s->rejected));
}

static void json_slices(struct pl_buf *b, const char *key, const struct rm_slice *s, int n)
{
    pl_buf_printf(b, ",\"%s\":{", key);
    for (int i = 0; i < n; i++) {
        pl_buf_str(b, i ? "," : "");
        pl_buf_json(b, s[i].name, strlen(s[i].name));
        pl_buf_str(b, ":{");
        json_stats(b, &s[i].st);
        pl_buf_str(b, "}");
    }
    pl_buf_str(b, "}");
}

static int print_json(const struct rm_eval *e)
{
    struct pl_buf b = {0};
    pl_buf_printf(&b, "{\"groups\":%zu,", e->groups);
    json_stats(&b, &e->all);
    json_slices(&b, "kinds", e->kinds, e->n_kinds);
    json_slices(&b, "annotators", e->annotators, e->n_annotators);
    pl_buf_printf(&b, ",\"groups_without_pairs\":%ld,\"cut\":%ld,\"skipped\":%ld,", e->dropped,
                  e->cut, e->skipped);
    json_num(&b, "reward_mean", e->mean);
    pl_buf_str(&b, ",");
    json_num(&b, "reward_std", e->std);
    pl_buf_str(&b, "}\n");
    int rc = b.oom ? PL_ENOMEM : PL_OK;
    if (!rc)
        fputs(b.p, stdout);
    pl_buf_release(&b);
    return rc;
}

static void print_table(const struct rm_eval *e)
{
    printf("%-24s %8s %9s %9s %9s %9s\n", "", "pairs", "accuracy", "margin", "chosen", "rejected");
    print_row("all", NULL, &e->all);
    for (int i = 0; i < e->n_kinds; i++)
        print_row("kind", e->kinds[i].name, &e->kinds[i].st);
    for (int i = 0; i < e->n_annotators; i++)
        print_row("annotator", e->annotators[i].name, &e->annotators[i].st);
    printf("%zu groups; rewards normalised by mean %.6g and std %.6g", e->groups, e->mean, e->std);
    if (e->dropped)
        printf("; %ld groups without a pair left out", e->dropped);
    if (e->cut)
        printf("; %ld sequences cut to the context", e->cut);
    printf("\n");
}

static int rm_eval_command(int argc, char **argv)
{
    const char *model = NULL;
    struct cmd_list data = {0};
    bool json = false, skip = false;
    int batch = 16;
    struct cmd_engine e = {0};
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &model, 0, 0, "DIR", "reward model folder", true},
        {"--data", CMD_LIST, &data, 0, 0, "FILE", "preferences to evaluate on", true},
        {"--json", CMD_FLAG, &json, 0, 0, NULL, "one JSON object instead of a table", false},
        {"--batch", CMD_INT, &batch, 1, 4096, "N", "sequences scored at once (16)", false},
        {"--skip-bad-lines", CMD_FLAG, &skip, 0, 0, NULL, "skip and count malformed records",
         false},
        CMD_ENGINE_OPTS(&e),
    };
    const struct cmd_spec spec = {"rm eval",
                                  "pairwise accuracy, margin, chosen and rejected means of a "
                                  "reward model, overall, per kind and per annotator",
                                  opts,
                                  sizeof opts / sizeof *opts,
                                  NULL,
                                  NULL};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if ((rc = cmd_engine_start(&e)))
        return rc;
    struct pl_err err = {0};
    struct rm_eval ev;
    rc = rm_eval_files(model, data.v, data.n, skip ? IO_SKIP_BAD_LINES : 0, batch, &ev, &err);
    if (rc == PL_OK && ev.skipped)
        fprintf(stderr, "rm eval: skipped %ld malformed records\n", ev.skipped);
    if (rc == PL_OK && json)
        rc = print_json(&ev) ? pl_oom(&err, "JSON output") : PL_OK;
    else if (rc == PL_OK)
        print_table(&ev);
    if (rc == PL_OK && fflush(stdout) != 0)
        rc = pl_errf(&err, PL_EIO, "cannot write the standard output");
    rm_eval_release(&ev);
    return cmd_fail(&err, rc);
}

/* ---- plumb rm score ---- */

/* Records read but not yet scored, with their texts (borrowed from the records). */
struct pending {
    cJSON **recs;
    int *n_texts; /* per record; -1: a single "response", 0 or more: "completions" */
    size_t n, cap_recs, cap_counts;
    const char **prompts, **responses;
    double *reward;
    size_t n_texts_all, cap_p, cap_r, cap_w;
};

static void pending_release(struct pending *p)
{
    for (size_t i = 0; i < p->n; i++)
        cJSON_Delete(p->recs[i]);
    pl_free(p->recs);
    pl_free(p->n_texts);
    pl_free(p->prompts);
    pl_free(p->responses);
    pl_free(p->reward);
    memset(p, 0, sizeof *p);
}

static int pending_text(struct pending *p, const char *prompt, const char *response,
                        struct pl_err *err)
{
    size_t need = p->n_texts_all + 1;
    const char **pr = io_grow(p->prompts, &p->cap_p, need, sizeof *pr);
    if (pr)
        p->prompts = pr;
    const char **rs = pr ? io_grow(p->responses, &p->cap_r, need, sizeof *rs) : NULL;
    if (rs)
        p->responses = rs;
    double *w = rs ? io_grow(p->reward, &p->cap_w, need, sizeof *w) : NULL;
    if (!w)
        return pl_oom(err, "pending texts");
    p->reward = w;
    p->prompts[p->n_texts_all] = prompt;
    p->responses[p->n_texts_all++] = response;
    return PL_OK;
}

/* Take ownership of obj (deleted on failure too) and queue its texts. */
static int pending_add(struct pending *p, const struct io_jsonl *r, cJSON *obj, struct pl_err *err)
{
    cJSON **recs = io_grow(p->recs, &p->cap_recs, p->n + 1, sizeof *recs);
    if (recs)
        p->recs = recs;
    int *counts = recs ? io_grow(p->n_texts, &p->cap_counts, p->n + 1, sizeof *counts) : NULL;
    if (!counts) {
        cJSON_Delete(obj);
        return pl_oom(err, "pending records");
    }
    p->n_texts = counts;
    p->recs[p->n] = obj;
    p->n_texts[p->n++] = -1;
    const char *prompt, *response;
    int rc = io_get_str(r, obj, "prompt", &prompt, err);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, "completions");
    if (rc == PL_OK && c) {
        if (!cJSON_IsArray(c))
            return io_jsonl_errf(r, err, "field 'completions': expected an array of strings");
        p->n_texts[p->n - 1] = 0;
        for (const cJSON *x = c->child; rc == PL_OK && x; x = x->next) {
            if (!cJSON_IsString(x))
                return io_jsonl_errf(r, err, "field 'completions': expected an array of strings");
            rc = pending_text(p, prompt, x->valuestring, err);
            p->n_texts[p->n - 1]++;
        }
    } else if (rc == PL_OK) {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(obj, "response")))
            return io_jsonl_errf(r, err,
                                 "expected a field 'response' (string) or 'completions' (array "
                                 "of strings)");
        rc = io_get_str(r, obj, "response", &response, err);
        if (rc == PL_OK)
            rc = pending_text(p, prompt, response, err);
    }
    return rc;
}

/* A reward as JSON prints it: 7 significant digits, enough for a float's score. */
static double shown(double v)
{
    char s[32];
    snprintf(s, sizeof s, "%.7g", v);
    return strtod(s, NULL);
}

/* Score every pending text and write the records with "reward" (replacing one there). */
static int pending_flush(struct pending *p, struct rm_scorer *s, struct gpt *m, const struct tok *t,
                         FILE *out, struct pl_err *err)
{
    int rc = rm_score_texts(s, m, t, p->prompts, p->responses, p->n_texts_all, p->reward, err);
    size_t k = 0;
    for (size_t i = 0; rc == PL_OK && i < p->n; i++) {
        cJSON *obj = p->recs[i], *reward;
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "reward");
        if (p->n_texts[i] < 0) {
            reward = cJSON_CreateNumber(shown(p->reward[k++]));
        } else {
            reward = cJSON_CreateArray();
            for (int j = 0; reward && j < p->n_texts[i]; j++) {
                cJSON *x = cJSON_CreateNumber(shown(p->reward[k++]));
                if (!x || !cJSON_AddItemToArray(reward, x)) {
                    cJSON_Delete(x);
                    cJSON_Delete(reward);
                    reward = NULL;
                }
            }
        }
        char *text = NULL;
        if (!reward || !cJSON_AddItemToObject(obj, "reward", reward) ||
            !(text = cJSON_PrintUnformatted(obj))) {
            if (reward && !cJSON_GetObjectItemCaseSensitive(obj, "reward"))
                cJSON_Delete(reward);
            rc = pl_oom(err, "output record");
        } else if (fprintf(out, "%s\n", text) < 0) {
            rc = pl_errf(err, PL_EIO, "cannot write the output");
        }
        cJSON_free(text);
    }
    for (size_t i = 0; i < p->n; i++)
        cJSON_Delete(p->recs[i]);
    p->n = 0;
    p->n_texts_all = 0;
    return rc;
}

static int score_file(const char *dir, const char *in, const char *out_path, int batch,
                      struct pl_err *err)
{
    struct gpt m;
    struct tok t;
    struct rm_scorer s = {0};
    struct pending p = {0};
    struct io_jsonl r = {0};
    struct io_out out = {0};
    int rc = rm_load(&m, &t, dir, batch, 0, err);
    if (rc == PL_OK)
        rc = rm_scorer_init(&s, batch, m.opts.max_seq, t.eos, err);
    if (rc == PL_OK)
        rc = io_jsonl_init(&r, in, 0, err);
    if (rc == PL_OK)
        rc = io_out_open(&out, out_path, err);
    cJSON *obj = NULL;
    while (rc == PL_OK && (rc = io_jsonl_next(&r, &obj, NULL, err)) == PL_OK && obj) {
        rc = pending_add(&p, &r, obj, err);
        if (rc == PL_OK && p.n_texts_all >= (size_t)batch)
            rc = pending_flush(&p, &s, &m, &t, out.f, err);
    }
    if (rc == PL_OK && p.n)
        rc = pending_flush(&p, &s, &m, &t, out.f, err);
    if (rc == PL_OK)
        rc = io_out_commit(&out, err);
    io_out_abort(&out);
    io_jsonl_release(&r);
    pending_release(&p);
    rm_scorer_release(&s);
    tok_release(&t);
    gpt_release(&m);
    return rc;
}

/* A record plumb rm score writes. */
static bool scored_record(const cJSON *v, const void *ctx)
{
    (void)ctx;
    return cJSON_HasObjectItem(v, "reward");
}

static int rm_score_command(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *out = NULL;
    int batch = 16;
    bool force = false;
    struct cmd_engine e = {0};
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &model, 0, 0, "DIR", "reward model folder", true},
        {"--input", CMD_STR, &input, 0, 0, "FILE",
         "JSONL: {\"prompt\", \"response\"} or samples {\"prompt\", \"completions\": [...]}", true},
        {"--out", CMD_STR, &out, 0, 0, "FILE",
         "the records with \"reward\" added, written whole or not at all", true},
        {"--batch", CMD_INT, &batch, 1, 4096, "N", "sequences scored at once (16)", false},
        {"--force", CMD_FLAG, &force, 0, 0, NULL,
         "replace an --out file that holds something other than scored records", false},
        CMD_ENGINE_OPTS(&e),
    };
    const struct cmd_spec spec = {
        "rm score", "add a reward model's normalised \"reward\" to each record",
        opts,       sizeof opts / sizeof *opts,
        NULL,       NULL};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (io_same_file(input, out))
        return cmd_usage(&spec, "--out '%s' is the --input file; write the rewards elsewhere", out);
    if (!cmd_may_replace(&spec, out, force, scored_record, NULL))
        return 1;
    if ((rc = cmd_engine_start(&e)))
        return rc;
    struct pl_err err = {0};
    rc = score_file(model, input, out, batch, &err);
    return cmd_fail(&err, rc);
}

/* ---- plumb rm ---- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommands[] = {
    {"train", rm_train_command, "train a reward model on rankings and pairs"},
    {"eval", rm_eval_command, "accuracy, margin, chosen and rejected means on preferences"},
    {"score", rm_score_command, "add \"reward\" to each record of a JSONL file"},
};
#define N_SUB (int)(sizeof subcommands / sizeof *subcommands)

static void rm_usage(FILE *f)
{
    fprintf(f, "plumb rm: the reward model\n\nusage: plumb rm SUBCOMMAND [options]\n\n"
               "subcommands:\n");
    for (int i = 0; i < N_SUB; i++)
        fprintf(f, "  %-6s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "\n'plumb rm SUBCOMMAND --help' lists its options.\n");
}

int cmd_rm(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        rm_usage(stdout);
        return 0;
    }
    for (int i = 0; argc >= 2 && i < N_SUB; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    if (argc < 2)
        rm_usage(stderr);
    else
        fprintf(stderr, "plumb rm: '%s' is not a subcommand (see 'plumb rm --help')\n", argv[1]);
    return 2;
}
