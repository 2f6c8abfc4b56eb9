#include "eval.h"

#include "args.h"

#include "eval/bias.h"
#include "eval/choice.h"
#include "eval/mc.h"
#include "eval/results.h"
#include "eval/rules.h"
#include "eval/tqagen.h"
#include "eval/world.h"
#include "model/io.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- what every suite shares ---- */

/* Print the metrics of a results object under its suite's name (or `name`): name, value,
 * interval. */
static void print_metrics(const cJSON *res, const char *name)
{
    const cJSON *m, *metrics = cJSON_GetObjectItemCaseSensitive(res, "metrics");
    const cJSON *suite = cJSON_GetObjectItemCaseSensitive(res, "suite");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(res, "n");
    printf("%s: %.0f items\n",
           name                    ? name
           : cJSON_IsString(suite) ? suite->valuestring
                                   : "eval",
           cJSON_IsNumber(n) ? n->valuedouble : 0.0);
    cJSON_ArrayForEach(m, metrics)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "value");
        const cJSON *ci = cJSON_GetObjectItemCaseSensitive(m, "ci95");
        const cJSON *lo = cJSON_GetArrayItem(ci, 0), *hi = cJSON_GetArrayItem(ci, 1);
        if (!cJSON_IsNumber(v)) {
            printf("  %-32s -\n", m->string);
            continue;
        }
        printf("  %-32s %9.4f", m->string, v->valuedouble);
        if (cJSON_IsNumber(lo) && cJSON_IsNumber(hi))
            printf("  [%.4f, %.4f]", lo->valuedouble, hi->valuedouble);
        printf("\n");
    }
}

/* Write the results and print them; the exit status. */
static int finish(cJSON *res, struct io_out *out, struct pl_err *err, int rc)
{
    if (!rc)
        rc = eval_results_write(out, res, err);
    if (!rc)
        print_metrics(res, NULL);
    io_out_abort(out);
    cJSON_Delete(res);
    return rc ? cmd_fail(err, rc) : 0;
}

/* A usage message when an output is one of the inputs (or the other output), else NULL. */
static const char *clash(const char *out, const char *details, const char *const *inputs,
                         int n_inputs, char *why, size_t cap)
{
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i])
            continue;
        if (out && io_same_file(out, inputs[i]))
            snprintf(why, cap, "--out '%s' is an input; write the results elsewhere", out);
        else if (details && io_same_file(details, inputs[i]))
            snprintf(why, cap, "--details '%s' is an input; write the details elsewhere", details);
        else
            continue;
        return why;
    }
    if (out && details && (strcmp(out, details) == 0 || io_same_file(out, details))) {
        snprintf(why, cap, "--out and --details name the same file '%s'", out);
        return why;
    }
    return NULL;
}

/* A results file of plumb eval (a suite's, all's, rules'), or a line of a details file. */
static bool eval_output(const cJSON *v, const void *ctx)
{
    (void)ctx;
    return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "suite")) ||
           cJSON_HasObjectItem(v, "violation_rate") ||
           cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(v, "line")) ||
           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "class"));
}

/* Whether --out and --details (either may be NULL) may be replaced (cmd_may_replace). */
static bool outputs_free(const struct cmd_spec *spec, const char *out, const char *details,
                         bool force)
{
    return (!out || cmd_may_replace(spec, out, force, eval_output, NULL)) &&
           (!details || cmd_may_replace(spec, details, force, eval_output, NULL));
}

#define FORCE_OPT(dst)                                                                             \
    {                                                                                              \
        "--force", CMD_FLAG, dst, 0, 0, NULL,                                                      \
            "replace an output file that holds something other than eval results", false           \
    }

/* ---- plumb eval world ---- */

struct world_args {
    struct eval_world_opts o;
    struct cmd_list stop;
    struct cmd_engine engine;
    const char *out;
    bool force;
    char why[160];
};

static const char *world_check(void *ctx)
{
    struct world_args *a = ctx;
    struct eval_world_opts *o = &a->o;
    bool gen_opts =
        o->gen.temperature >= 0 || o->gen.k > 0 || o->gen.max_new_tokens > 0 || a->stop.n > 0;
    if (o->input && gen_opts)
        return "--input classifies the completions it holds: -k, --temperature, "
               "--max-new-tokens and --stop do not apply";
    if (!o->input && !o->model)
        return "one of '--model' (generate the answers) or '--input' (classify a samples file) "
               "is needed";
    if (o->gen.k > 1 && !(o->gen.temperature > 0))
        return "-k above 1 needs a '--temperature' above 0 (greedy answers are all the same)";
    for (int i = 0; i < a->stop.n; i++)
        if (!a->stop.v[i][0])
            return "option '--stop' needs a non-empty text";
    const char *inputs[] = {o->data, o->input};
    return clash(a->out, o->details, inputs, 2, a->why, sizeof a->why);
}

static int world_command(int argc, char **argv)
{
    static const char *const newline[] = {"\n"};
    struct world_args a = {0};
    struct eval_world_opts *o = &a.o;
    o->gen.temperature = -1;
    o->seed = 1;
    o->reps = EVAL_BOOTSTRAP_REPS;
    o->gen.batch = 32;
    const struct cmd_opt opts[] = {
        {"--data", CMD_STR, &o->data, 0, 0, "FILE",
         "qa_eval.jsonl, or prompts with kind, place and attribute (prompts.jsonl)", true},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE", "results JSON (whole or not at all)", true},
        {"--model", CMD_STR, &o->model, 0, 0, "DIR", "model folder whose answers are judged",
         false},
        {"--input", CMD_STR, &o->input, 0, 0, "FILE",
         "judge these completions instead: plumb sample's {\"id\", \"completions\"} lines", false},
        {"--world", CMD_STR, &o->world, 0, 0, "DIR",
         "folder of world.json and annotators.json (--data's folder)", false},
        {"--split", CMD_STR, &o->split, 0, 0, "S", "only records whose \"split\" is S (all)",
         false},
        {"--details", CMD_STR, &o->details, 0, 0, "FILE", "JSONL, one line per answer", false},
        {"--temperature", CMD_FLOAT, &o->gen.temperature, 0, 1e6, "T",
         "sampling temperature; 0 is greedy (0)", false},
        {"-k", CMD_INT, &o->gen.k, 1, 4096, "N", "answers per prompt, sampled (1)", false},
        {"--max-new-tokens", CMD_INT, &o->gen.max_new_tokens, 1, 1 << 20, "N",
         "tokens an answer has at most (48)", false},
        {"--stop", CMD_LIST, &a.stop, 0, 0, "TEXT",
         "end an answer where this text appears (a newline)", false},
        {"--seed", CMD_U64, &o->seed, 0, 0, "S", "seed of the sampling and the bootstrap (1)",
         false},
        {"--limit", CMD_LONG, &o->limit, 1, 1e12, "N", "the first N items only (all)", false},
        {"--batch", CMD_INT, &o->gen.batch, 1, 1 << 20, "B", "sequences decoded at once (32)",
         false},
        {"--bootstrap", CMD_INT, &o->reps, 1, 1000000, "N",
         "bootstrap resamples for the 95% intervals (1000)", false},
        FORCE_OPT(&a.force),
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "eval world",
        .summary = "hallucination on the toy world: known accuracy, abstention, refusal",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = world_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    o->gen.temperature = o->gen.temperature < 0 ? 0 : o->gen.temperature;
    o->gen.k = o->gen.k > 0 ? o->gen.k : 1;
    o->gen.max_new_tokens = o->gen.max_new_tokens > 0 ? o->gen.max_new_tokens : 48;
    o->gen.stop = a.stop.n ? a.stop.v : newline;
    o->gen.n_stop = a.stop.n ? a.stop.n : 1;
    o->gen.seed = o->seed;
    o->gen.progress = stderr;
    o->version = CMD_VERSION;
    if (!outputs_free(&spec, a.out, o->details, a.force))
        return 1;
    if (!o->input && (rc = cmd_engine_start(&a.engine)))
        return rc;
    struct pl_err err = {0};
    struct io_out out = {0};
    cJSON *res = NULL;
    rc = io_out_open(&out, a.out, &err);
    if (!rc)
        rc = eval_world_run(o, &res, &err);
    return finish(res, &out, &err, rc);
}

/* ---- the scoring suites ---- */

struct common_args {
    struct eval_common c;
    struct cmd_engine engine;
    const char *out;
    bool full, force;
    char data_buf[4096];
    char why[160];
};

/* The options every scoring suite takes, into struct common_args *a. */
#define COMMON_OPTS(a, data_help)                                                                  \
    {"--model", CMD_STR, &(a)->c.model, 0, 0, "DIR", "model folder", true},                        \
        {"--data", CMD_STR, &(a)->c.data, 0, 0, "FILE", data_help, false},                         \
        {"--out", CMD_STR, &(a)->out, 0, 0, "FILE", "results JSON (whole or not at all)", true},   \
        {"--details", CMD_STR, &(a)->c.details, 0, 0, "FILE", "JSONL, one line per item", false},  \
        {"--limit", CMD_LONG, &(a)->c.limit, 1, 1e12, "N", "the first N items only (all)", false}, \
        {"--batch",                                                                                \
         CMD_INT,                                                                                  \
         &(a)->c.batch,                                                                            \
         2,                                                                                        \
         1 << 16,                                                                                  \
         "B",                                                                                      \
         "sequences scored at once: KV-cache slots, or rows of a full forward (32)",               \
         false},                                                                                   \
        {"--full-scoring",                                                                         \
         CMD_FLAG,                                                                                 \
         &(a)->full,                                                                               \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         "score each context + continuation whole instead of from a forked KV cache",              \
         false},                                                                                   \
        {"--seed", CMD_U64, &(a)->c.seed, 0, 0, "S", "seed of the bootstrap (1)", false},          \
        {"--bootstrap",                                                                            \
         CMD_INT,                                                                                  \
         &(a)->c.reps,                                                                             \
         1,                                                                                        \
         1000000,                                                                                  \
         "N",                                                                                      \
         "bootstrap resamples for the 95% intervals (1000)",                                       \
         false},                                                                                   \
        FORCE_OPT(&(a)->force), CMD_ENGINE_OPTS(&(a)->engine)

static void common_defaults(struct common_args *a)
{
    a->c.batch = 32;
    a->c.seed = 1;
    a->c.reps = EVAL_BOOTSTRAP_REPS;
    a->c.version = CMD_VERSION;
    a->c.progress = stderr;
}

/* After parsing: --data or the shared dataset at rel; the outputs checked; the engine. Returns
 * CMD_PARSED, or the exit status. */
static int common_start(struct common_args *a, const struct cmd_spec *spec, const char *rel)
{
    if (!a->c.data) {
        if (!rel || !cmd_dataset_path(a->data_buf, sizeof a->data_buf, rel))
            return cmd_usage(spec, "option '--data' is needed");
        a->c.data = a->data_buf;
    }
    const char *inputs[] = {a->c.data};
    const char *why = clash(a->out, a->c.details, inputs, 1, a->why, sizeof a->why);
    if (why)
        return cmd_usage(spec, "%s", why);
    if (!outputs_free(spec, a->out, a->c.details, a->force))
        return 1;
    a->c.mode = a->full ? EVAL_SCORE_FULL : EVAL_SCORE_KV;
    int rc = cmd_engine_start(&a->engine);
    return rc ? rc : CMD_PARSED;
}

typedef int (*common_fn)(const struct eval_common *c, cJSON **results, struct pl_err *err);

/* Open --out, run, write: the exit status. */
static int common_run(struct common_args *a, common_fn run)
{
    struct pl_err err = {0};
    struct io_out out = {0};
    cJSON *res = NULL;
    int rc = io_out_open(&out, a->out, &err);
    if (!rc)
        rc = run(&a->c, &res, &err);
    return finish(res, &out, &err, rc);
}

static const char *mc_template;

static int mc_run(const struct eval_common *c, cJSON **results, struct pl_err *err)
{
    struct eval_mc_opts o = {*c, mc_template};
    return eval_mc_run(&o, results, err);
}

static int mc_command(int argc, char **argv)
{
    struct common_args a = {0};
    common_defaults(&a);
    const struct cmd_opt opts[] = {
        COMMON_OPTS(&a, "{\"question\", \"choices\", \"answer\"} JSONL (mc_eval.jsonl), or "
                        "TruthfulQA's mc_task.json / TruthfulQA.csv for MC1 (required)"),
        {"--template", CMD_STR, &mc_template, 0, 0, "TEXT",
         "the prompt, with {question} in it (\"Q: {question}\\nA:\")", false},
    };
    const struct cmd_spec spec = {
        .name = "eval mc",
        .summary = "calibration of multiple-choice answers: accuracy, ECE, MCE, Brier, NLL, "
                   "temperature",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc == CMD_PARSED)
        rc = common_start(&a, &spec, NULL);
    return rc == CMD_PARSED ? common_run(&a, mc_run) : rc;
}

static int tqa_command(int argc, char **argv)
{
    struct common_args a = {0};
    common_defaults(&a);
    const struct cmd_opt opts[] = {
        COMMON_OPTS(&a, "mc_task.json or TruthfulQA.csv (the shared truthfulqa/mc_task.json)"),
    };
    const struct cmd_spec spec = {
        .name = "eval truthfulqa",
        .summary = "TruthfulQA MC1 and MC2 as lm-evaluation-harness scores them",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc == CMD_PARSED)
        rc = common_start(&a, &spec, "truthfulqa/mc_task.json");
    return rc == CMD_PARSED ? common_run(&a, eval_tqa_run) : rc;
}

static int crows_command(int argc, char **argv)
{
    struct common_args a = {0};
    common_defaults(&a);
    const struct cmd_opt opts[] = {
        COMMON_OPTS(&a, "crows_pairs_anonymized.csv or the toy world's bias_pairs.jsonl (the "
                        "shared crows-pairs/crows_pairs_anonymized.csv)"),
    };
    const struct cmd_spec spec = {
        .name = "eval crows",
        .summary = "CrowS-Pairs: pct_stereotype and likelihood_diff, per bias type",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc == CMD_PARSED)
        rc = common_start(&a, &spec, "crows-pairs/crows_pairs_anonymized.csv");
    return rc == CMD_PARSED ? common_run(&a, eval_crows_run) : rc;
}

static int tqagen_max_new = 64;

static int tqagen_run(const struct eval_common *c, cJSON **results, struct pl_err *err)
{
    return eval_tqagen_run(c, tqagen_max_new, results, err);
}

static int tqagen_command(int argc, char **argv)
{
    struct common_args a = {0};
    common_defaults(&a);
    const struct cmd_opt opts[] = {
        COMMON_OPTS(&a, "TruthfulQA.csv or mc_task.json (the shared truthfulqa/TruthfulQA.csv)"),
        {"--max-new-tokens", CMD_INT, &tqagen_max_new, 1, 1 << 20, "N",
         "tokens an answer has at most (64)", false},
    };
    const struct cmd_spec spec = {
        .name = "eval truthfulqa-gen",
        .summary = "TruthfulQA generation: hallucination by ROUGE-L, abstention",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc == CMD_PARSED)
        rc = common_start(&a, &spec, "truthfulqa/TruthfulQA.csv");
    return rc == CMD_PARSED ? common_run(&a, tqagen_run) : rc;
}

/* The BBQ files of the shared folder, sorted, into list (paths in buf). */
static int shared_bbq(struct cmd_list *list, char (*buf)[4096])
{
    char dir[3072];
    if (!cmd_dataset_path(dir, sizeof dir, "bbq"))
        return 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && list->n < CMD_LIST_MAX)
        if (io_has_suffix(e->d_name, ".jsonl")) {
            snprintf(buf[list->n], sizeof buf[0], "%s/%s", dir, e->d_name);
            list->v[list->n] = buf[list->n];
            list->n++;
        }
    if (d)
        closedir(d);
    for (int i = 1; i < list->n; i++)
        for (int j = i; j > 0 && strcmp(list->v[j - 1], list->v[j]) > 0; j--) {
            const char *t = list->v[j];
            list->v[j] = list->v[j - 1];
            list->v[j - 1] = t;
        }
    return list->n;
}

static struct cmd_list bbq_files;

static int bbq_run(const struct eval_common *c, cJSON **results, struct pl_err *err)
{
    return eval_bbq_run(c, bbq_files.v, bbq_files.n, results, err);
}

static int bbq_command(int argc, char **argv)
{
    static char found[CMD_LIST_MAX][4096];
    struct common_args a = {0};
    common_defaults(&a);
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a.c.model, 0, 0, "DIR", "model folder", true},
        {"--data", CMD_LIST, &bbq_files, 0, 0, "FILE",
         "BBQ JSONL files, one per category (every shared bbq/*.jsonl)", false},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE", "results JSON (whole or not at all)", true},
        {"--details", CMD_STR, &a.c.details, 0, 0, "FILE", "JSONL, one line per item", false},
        {"--limit", CMD_LONG, &a.c.limit, 1, 1e12, "N", "the first N questions of each file (all)",
         false},
        {"--batch", CMD_INT, &a.c.batch, 2, 1 << 16, "B",
         "sequences scored at once: KV-cache slots, or rows of a full forward (32)", false},
        {"--full-scoring", CMD_FLAG, &a.full, 0, 0, NULL,
         "score each context + continuation whole instead of from a forked KV cache", false},
        {"--seed", CMD_U64, &a.c.seed, 0, 0, "S", "seed of the bootstrap (1)", false},
        {"--bootstrap", CMD_INT, &a.c.reps, 1, 1000000, "N",
         "bootstrap resamples for the 95% intervals (1000)", false},
        FORCE_OPT(&a.force),
        CMD_ENGINE_OPTS(&a.engine),
    };
    const struct cmd_spec spec = {
        .name = "eval bbq",
        .summary = "BBQ: accuracy on ambiguous and disambiguated contexts, bias scores",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (bbq_files.n == 0 && shared_bbq(&bbq_files, found) == 0)
        return cmd_usage(&spec, "option '--data' is needed (no shared bbq/*.jsonl)");
    a.c.data = bbq_files.v[0];
    for (int i = 0; i < bbq_files.n; i++) {
        const char *inputs[] = {bbq_files.v[i]};
        const char *why = clash(a.out, a.c.details, inputs, 1, a.why, sizeof a.why);
        if (why)
            return cmd_usage(&spec, "%s", why);
    }
    if (!outputs_free(&spec, a.out, a.c.details, a.force))
        return 1;
    a.c.mode = a.full ? EVAL_SCORE_FULL : EVAL_SCORE_KV;
    if ((rc = cmd_engine_start(&a.engine)))
        return rc;
    return common_run(&a, bbq_run);
}

/* ---- plumb eval all ---- */

struct all_args {
    struct common_args a;
    const char *world, *details_dir;
    long bbq_limit;
    char path[1][4096]; /* the data path of the running suite */
    struct cmd_list bbq;
    char bbq_paths[CMD_LIST_MAX][4096];
};

/* Whether path names a readable file. */
static bool present(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* A suite of `plumb eval all`: its data (false when absent), then the run. */
struct all_suite {
    const char *name;
    bool (*find)(struct all_args *x);
    int (*run)(struct all_args *x, cJSON **res, struct pl_err *err);
};

static bool in_world(struct all_args *x, const char *file)
{
    return x->world &&
           snprintf(x->path[0], sizeof x->path[0], "%s/%s", x->world, file) <
               (int)sizeof x->path[0] &&
           present(x->path[0]);
}

static bool in_shared(struct all_args *x, const char *rel)
{
    return cmd_dataset_path(x->path[0], sizeof x->path[0], rel) && present(x->path[0]);
}

static bool find_world(struct all_args *x)
{
    return in_world(x, "prompts.jsonl");
}

static int run_world(struct all_args *x, cJSON **res, struct pl_err *err)
{
    static const char *const newline[] = {"\n"};
    struct eval_world_opts o = {
        .model = x->a.c.model,
        .data = x->path[0],
        .world = x->world,
        .split = "test",
        .details = x->a.c.details,
        .limit = x->a.c.limit,
        .gen = {.k = 1,
                .max_new_tokens = 48,
                .stop = newline,
                .n_stop = 1,
                .batch = 32,
                .progress = stderr},
        .seed = x->a.c.seed,
        .reps = x->a.c.reps,
        .version = CMD_VERSION,
    };
    return eval_world_run(&o, res, err);
}

static bool find_mc_world(struct all_args *x)
{
    return in_world(x, "mc_eval.jsonl");
}

static int run_mc_world(struct all_args *x, cJSON **res, struct pl_err *err)
{
    struct eval_mc_opts o = {x->a.c, "User: {question}\nAssistant:"};
    o.c.data = x->path[0];
    return eval_mc_run(&o, res, err);
}

static bool find_crows_world(struct all_args *x)
{
    return in_world(x, "bias_pairs.jsonl");
}

static int run_crows(struct all_args *x, cJSON **res, struct pl_err *err)
{
    struct eval_common c = x->a.c;
    c.data = x->path[0];
    return eval_crows_run(&c, res, err);
}

static bool find_tqa(struct all_args *x)
{
    return in_shared(x, "truthfulqa/mc_task.json");
}

static int run_tqa(struct all_args *x, cJSON **res, struct pl_err *err)
{
    struct eval_common c = x->a.c;
    c.data = x->path[0];
    return eval_tqa_run(&c, res, err);
}

static int run_mc_tqa(struct all_args *x, cJSON **res, struct pl_err *err)
{
    char tpl[4096];
    snprintf(tpl, sizeof tpl, "%s\n\nQ: {question}\nA:", eval_tqa_primer);
    struct eval_mc_opts o = {x->a.c, tpl};
    o.c.data = x->path[0];
    return eval_mc_run(&o, res, err);
}

static bool find_tqagen(struct all_args *x)
{
    return in_shared(x, "truthfulqa/TruthfulQA.csv");
}

static int run_tqagen(struct all_args *x, cJSON **res, struct pl_err *err)
{
    struct eval_common c = x->a.c;
    c.data = x->path[0];
    return eval_tqagen_run(&c, 64, res, err);
}

static bool find_crows(struct all_args *x)
{
    return in_shared(x, "crows-pairs/crows_pairs_anonymized.csv");
}

static bool find_bbq(struct all_args *x)
{
    x->bbq.n = 0;
    return shared_bbq(&x->bbq, x->bbq_paths) > 0;
}

static int run_bbq(struct all_args *x, cJSON **res, struct pl_err *err)
{
    struct eval_common c = x->a.c;
    c.limit = x->bbq_limit ? x->bbq_limit : c.limit;
    c.data = x->bbq.v[0];
    return eval_bbq_run(&c, x->bbq.v, x->bbq.n, res, err);
}

/* Every suite `plumb eval all` runs, in order; one more is one more line. */
static const struct all_suite all_suites[] = {
    {"world", find_world, run_world},
    {"mc-world", find_mc_world, run_mc_world},
    {"crows-world", find_crows_world, run_crows},
    {"truthfulqa", find_tqa, run_tqa},
    {"mc-truthfulqa", find_tqa, run_mc_tqa},
    {"truthfulqa-gen", find_tqagen, run_tqagen},
    {"crows", find_crows, run_crows},
    {"bbq", find_bbq, run_bbq},
};
#define N_ALL (int)(sizeof all_suites / sizeof *all_suites)

static int all_command(int argc, char **argv)
{
    static struct all_args x;
    struct common_args *a = &x.a;
    common_defaults(a);
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &a->c.model, 0, 0, "DIR", "model folder", true},
        {"--out", CMD_STR, &a->out, 0, 0, "FILE", "combined results JSON (whole or not at all)",
         true},
        {"--world", CMD_STR, &x.world, 0, 0, "DIR",
         "the toy world's folder: world (test split), mc-world, crows-world (none)", false},
        {"--details-dir", CMD_STR, &x.details_dir, 0, 0, "DIR",
         "write each suite's details to DIR/SUITE.jsonl", false},
        {"--limit", CMD_LONG, &a->c.limit, 1, 1e12, "N", "the first N items of each suite (all)",
         false},
        {"--bbq-limit", CMD_LONG, &x.bbq_limit, 1, 1e12, "N", "the first N BBQ questions (--limit)",
         false},
        {"--batch", CMD_INT, &a->c.batch, 2, 1 << 16, "B",
         "sequences scored at once: KV-cache slots, or rows of a full forward (32)", false},
        {"--full-scoring", CMD_FLAG, &a->full, 0, 0, NULL,
         "score each context + continuation whole instead of from a forked KV cache", false},
        {"--seed", CMD_U64, &a->c.seed, 0, 0, "S", "seed of the bootstrap (1)", false},
        {"--bootstrap", CMD_INT, &a->c.reps, 1, 1000000, "N",
         "bootstrap resamples for the 95% intervals (1000)", false},
        FORCE_OPT(&a->force),
        CMD_ENGINE_OPTS(&a->engine),
    };
    const struct cmd_spec spec = {
        .name = "eval all",
        .summary = "every suite whose data is present, into one results file",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    char details[4096];
    if (!outputs_free(&spec, a->out, NULL, a->force))
        return 1;
    for (int i = 0; x.details_dir && i < N_ALL; i++) {
        snprintf(details, sizeof details, "%s/%s.jsonl", x.details_dir, all_suites[i].name);
        if (!outputs_free(&spec, NULL, details, a->force))
            return 1;
    }
    a->c.mode = a->full ? EVAL_SCORE_FULL : EVAL_SCORE_KV;
    if ((rc = cmd_engine_start(&a->engine)))
        return rc;
    struct pl_err err = {0};
    struct io_out out = {0};
    cJSON *all = cJSON_CreateObject(), *suites = NULL, *secs = NULL, *skipped = NULL;
    rc = all && cJSON_AddStringToObject(all, "suite", "all") &&
                 cJSON_AddStringToObject(all, "model", a->c.model) &&
                 cJSON_AddNumberToObject(all, "seed", (double)a->c.seed) &&
                 cJSON_AddStringToObject(all, "plumb_version", CMD_VERSION) &&
                 (suites = cJSON_AddObjectToObject(all, "suites")) &&
                 (secs = cJSON_AddObjectToObject(all, "seconds")) &&
                 (skipped = cJSON_AddArrayToObject(all, "skipped"))
             ? PL_OK
             : pl_oom(&err, "results");
    if (!rc)
        rc = io_out_open(&out, a->out, &err);
    if (!rc && x.details_dir)
        rc = io_mkdirs(x.details_dir, &err);
    for (int i = 0; !rc && i < N_ALL; i++) {
        const struct all_suite *s = &all_suites[i];
        if (!s->find(&x)) {
            cJSON *name = cJSON_CreateString(s->name);
            if (!name || !cJSON_AddItemToArray(skipped, name)) {
                cJSON_Delete(name);
                rc = pl_oom(&err, "results");
            }
            fprintf(stderr, "eval all: %s: no data, skipped\n", s->name);
            continue;
        }
        a->c.details = NULL;
        if (x.details_dir) {
            snprintf(details, sizeof details, "%s/%s.jsonl", x.details_dir, s->name);
            a->c.details = details;
        }
        double t0 = pl_now();
        cJSON *res = NULL;
        rc = s->run(&x, &res, &err);
        double dt = pl_now() - t0;
        if (rc) {
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            pl_errf(&err, rc, "suite '%s': %s", s->name, msg);
            break;
        }
        cJSON_AddItemToObject(suites, s->name, res);
        rc = eval_put_num(secs, s->name, dt, &err);
        print_metrics(res, s->name);
        printf("  (%.1f s)\n", dt);
        fflush(stdout);
    }
    if (!rc)
        rc = eval_results_write(&out, all, &err);
    io_out_abort(&out);
    cJSON_Delete(all);
    return rc ? cmd_fail(&err, rc) : 0;
}

/* ---- plumb eval rules ---- */

/* The constitution's machine-checkable rules over a file of responses (eval/rules.h): the
 * violation rate overall, per rule and per principle, as JSON to --out or stdout. */
static int rules_command(int argc, char **argv)
{
    const char *constitution = NULL, *input = NULL, *out = NULL;
    bool skip_bad = false, force = false;
    const struct cmd_opt opts[] = {
        {"--constitution", CMD_STR, &constitution, 0, 0, "FILE", "constitution JSON", true},
        {"--input", CMD_STR, &input, 0, 0, "FILE",
         "samples {\"prompt\", \"completions\"} or sft {\"prompt\", \"response\"} records", true},
        {"--out", CMD_STR, &out, 0, 0, "FILE", "results JSON (default: the standard output)",
         false},
        {"--skip-bad-lines", CMD_FLAG, &skip_bad, 0, 0, NULL, "skip and count malformed records",
         false},
        FORCE_OPT(&force),
    };
    const struct cmd_spec spec = {
        .name = "eval rules",
        .summary = "how often responses break the constitution's machine-checkable rules",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    char why[160];
    const char *inputs[] = {constitution, input};
    if (clash(out, NULL, inputs, 2, why, sizeof why))
        return cmd_usage(&spec, "%s", why);
    if (!outputs_free(&spec, out, NULL, force))
        return 1;
    struct pl_err err = {0};
    struct ds_constitution c = {0};
    struct eval_rules r = {0};
    struct pl_buf b = {0};
    rc = ds_constitution_load(&c, constitution, &err);
    if (!rc)
        rc = eval_rules_file(&c, input, skip_bad ? IO_SKIP_BAD_LINES : 0, &r, &err);
    if (!rc) {
        eval_rules_json(&r, &c, &b);
        if (b.oom)
            rc = pl_oom(&err, "results");
    }
    if (!rc && r.skipped)
        fprintf(stderr, "eval rules: skipped %ld malformed records\n", r.skipped);
    if (!rc && out)
        rc = io_write_atomic(out, b.p, b.len, &err);
    else if (!rc && (fwrite(b.p, 1, b.len, stdout) != b.len || fflush(stdout) != 0))
        rc = pl_errf(&err, PL_EIO, "cannot write the standard output");
    pl_buf_release(&b);
    eval_rules_release(&r);
    ds_constitution_release(&c);
    return rc ? cmd_fail(&err, rc) : 0;
}

/* ---- plumb eval ---- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} suites[] = {
    {"world", world_command, "toy world: hallucination, known accuracy, abstention, refusal"},
    {"mc", mc_command, "calibration of multiple-choice answers (ECE, Brier, temperature)"},
    {"truthfulqa", tqa_command, "TruthfulQA MC1 and MC2 (lm-evaluation-harness's)"},
    {"truthfulqa-gen", tqagen_command, "TruthfulQA generation: hallucination by ROUGE-L"},
    {"crows", crows_command, "CrowS-Pairs bias probe: pct_stereotype, likelihood_diff"},
    {"bbq", bbq_command, "BBQ bias probe: accuracies and bias scores per category"},
    {"rules", rules_command, "the constitution's rules: violation rate per rule and principle"},
    {"all", all_command, "every suite whose data is present, one combined results file"},
};
#define N_SUITES (int)(sizeof suites / sizeof *suites)

static void eval_usage(FILE *f)
{
    fprintf(f, "plumb eval: evaluate a model; results with bootstrap 95%% intervals\n\n"
               "usage: plumb eval SUITE [options]\n\nsuites:\n");
    for (int i = 0; i < N_SUITES; i++)
        fprintf(f, "  %-14s %s\n", suites[i].name, suites[i].summary);
    fprintf(f, "\n'plumb eval SUITE --help' lists its options.\n");
}

int cmd_eval(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        eval_usage(stdout);
        return 0;
    }
    for (int i = 0; argc >= 2 && i < N_SUITES; i++)
        if (strcmp(argv[1], suites[i].name) == 0)
            return suites[i].run(argc - 1, argv + 1);
    if (argc < 2)
        eval_usage(stderr);
    else
        fprintf(stderr, "plumb eval: '%s' is not a suite (see 'plumb eval --help')\n", argv[1]);
    return 2;
}
