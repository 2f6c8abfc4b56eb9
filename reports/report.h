/* report: what `plumb report` reads from run folders and eval results, gathered into one
 * document model that the writers (html.h, md.h) and report_json render.
 *
 * report_load walks each folder given (and its subfolders, 5 levels deep, in name order,
 * skipping hidden entries and the output folder) and takes:
 * - run folders (a folder with run.json): run.json and every numeric key of metrics.jsonl as a
 *   series over "step" (a null value is a gap);
 * - results files (`*.json` whose object has "suite", plumb eval's shape, eval/results.h; an
 *   `eval all` file counts as each of its suites) and their details (`STEM.details.jsonl` or
 *   `STEM.d.jsonl` beside `STEM.json`);
 * - reward-model evaluations (`*.json` with "pairs", "accuracy" and "kinds": plumb rm eval
 *   --json) and flat summaries (`summary.json`);
 * - answer files (`*.jsonl` whose records hold "prompt" and one "completions" entry: greedy
 *   answers, best-of-n files, which also hold "candidates" and "rewards") and critique traces
 *   (`*.jsonl` whose records hold "draft" and "rounds").
 * Other files are not read beyond their first line (JSONL) or their object (JSON).
 *
 * Models are what results and answer files name: a results file's "model" (when null, the
 * model that wrote its "input" samples file, or a best-of-n input file itself), a best-of-n file
 * itself, an answer file's "model"; two names of the same existing path
 * are one model. Models are ordered by the folder given first, then by lineage (a model after
 * the one its run.json says it was trained from, a best-of-n file after its policy: base, sft,
 * ppo), then by the oldest file naming them; the first is the summary's reference.
 *
 * Errors: a file that cannot be read (PL_EIO, PL_ENOTFOUND); a `*.json` that is not valid JSON,
 * a metrics line that is not an object or lacks an integer "step", a results file without
 * "metrics" or with a metric that is not {"value", "ci95": [lo, hi]} (PL_EFORMAT, "PATH:LINE:
 * ..." or "PATH: field 'NAME': ..."); no run folder, results or answers found (PL_ENOTFOUND);
 * PL_ENOMEM. */
#ifndef REPORT_H
#define REPORT_H

#include "model/io.h"
#include "model/pl.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

/* One metrics key of a run: n points (x = step, y = value, NAN for null). */
struct report_series {
    char *key;
    double *x, *y;
    int n;
    size_t cap;
};

struct report_run {
    char *path, *label;
    cJSON *run; /* run.json */
    struct report_series *series;
    int n_series;
    size_t cap;
};

struct report_model {
    char *id;    /* the resolved path, or the name as written when it does not exist */
    char *name;  /* as the first file wrote it */
    char *label; /* short, unique among the models */
    int dir;     /* index of the --runs folder it was found in first */
    int depth;   /* training runs behind it (run.json's "model", "policy", ...) */
    double time; /* modification time of the oldest file naming it */
};

struct report_result {
    char *path;       /* the file */
    char *suite;      /* the object's "suite" ("mc" also inside an `eval all` file) */
    const cJSON *obj; /* the results object (inside an entry of report.docs) */
    int model;        /* index into models */
    char *details;    /* the details file beside it, or NULL */
};

/* A figure of the summary: NAN when the model has none; lo, hi NAN without an interval. */
enum { REPORT_WORSE = -1, REPORT_SAME = 0, REPORT_BETTER = 1, REPORT_REF = 2, REPORT_NONE = 3 };
struct report_cell {
    double v, lo, hi;
    int mark;   /* against the row's reference (its first model with a value): REPORT_* */
    int source; /* results index, or -1 (a figure from an answer file or a run) */
};
struct report_row {
    char *group;  /* "world · prompts_test.jsonl" */
    char *metric; /* "hallucination_rate" */
    int better;   /* +1 higher is better, -1 lower, 0 no direction; 2: closer to target */
    double target;
    int rank;                  /* of its group in the summary's order (lower first) */
    struct report_cell *cells; /* [n_models] */
};

/* One answer of an answer or details file. */
struct report_answer {
    char *id, *prompt, *text;
    double reward;     /* the kept answer's reward-model score; NAN when the file has none */
    double candidates; /* best-of-n: the mean score of all candidates (one sample's); or NAN */
    char *note;        /* "correct", "best of 4", ... or NULL */
};
struct report_answers {
    char *path, *label;
    int model;  /* a best-of-n file is its own model */
    int policy; /* best-of-n: the model sampled from; else -1 */
    bool bon;   /* a best-of-n file (its answers are the kept ones) */
    struct report_answer *items;
    int n;
};

/* A JSON document read whole: results files, rm evaluations, summaries; a critique trace's
 * first records. */
enum { REPORT_DOC_RESULTS, REPORT_DOC_RM_EVAL, REPORT_DOC_SUMMARY, REPORT_DOC_TRACE };
struct report_doc {
    char *path;
    int kind;
    cJSON *json;  /* a trace: an array of its first REPORT_TRACE_SHOWN records */
    long records; /* a trace: how many it holds */
};
enum { REPORT_TRACE_SHOWN = 3, REPORT_SAMPLES_SHOWN = 4 };
/* The intervals report_load computes itself (best-of-n rewards): percentile bootstrap over
 * prompts, eval/results.h's, with this many resamples and seed 1. */
enum { REPORT_BOOTSTRAP_REPS = 1000 };

/* A rendered chart: SVG text, where it came from, and a file name for report.md. */
enum { REPORT_CHART_TRAINING, REPORT_CHART_RELIABILITY, REPORT_CHART_BIAS };
struct report_chart {
    int section;
    char *title, *caption, *file;
    struct pl_buf svg;
};

/* A group of answer files on the same prompts (one holds the other's first id) and the ids
 * shown for it: the first file's first ones, then the next file's. */
struct report_sample_group {
    int sources[16]; /* indices into answers */
    int n_sources;
    char *ids[REPORT_SAMPLES_SHOWN];
    int n_ids;
};

struct report {
    struct io_arena arena; /* every string above */
    struct report_run *runs;
    int n_runs;
    struct report_model *models;
    int n_models;
    struct report_result *results;
    int n_results;
    struct report_row *rows;
    int n_rows;
    struct report_answers *answers;
    int n_answers;
    struct report_doc *docs;
    int n_docs;
    struct report_chart *charts;
    int n_charts;
    struct report_sample_group *groups;
    int n_groups;
    size_t cap_runs, cap_models, cap_results, cap_rows, cap_answers, cap_docs, cap_charts,
        cap_groups;
};

/* Read dirs[0, n) (skipping the folder `skip`, may be NULL) into r, build the summary rows,
 * the sample groups and the charts. r is releasable even on failure. */
int report_load(struct report *r, const char *const *dirs, int n, const char *skip,
                struct pl_err *err);
void report_release(struct report *r);

/* What a written report says about itself. */
struct report_page {
    const char *title;
    const char *version;        /* plumb's */
    const char *const *sources; /* the folders read */
    int n_sources;
};

/* Every figure as JSON text (report.json): models, the summary with intervals and marks, each
 * run's run.json and metrics, each results object, the shown answers, the traces' shown
 * records, the rm evaluations and summaries. Errors: PL_ENOMEM. */
int report_json(const struct report *r, const struct report_page *page, struct pl_buf *out,
                struct pl_err *err);

/* A run's series of `key`, or NULL. */
const struct report_series *report_series_find(const struct report_run *run, const char *key);

/* The string field `name` of o, or NULL when o has none. */
const char *report_str(const cJSON *o, const char *name);

/* v as text through esc (report_text_html_str or report_text_md_str): a string as it is, a
 * number as %.9g, anything else as compact JSON. A failed allocation sets b->oom. */
void report_json_value(struct pl_buf *b, const cJSON *v,
                       void (*esc)(struct pl_buf *b, const char *s));

/* The answer with this id in a, or NULL. */
const struct report_answer *report_answer_find(const struct report_answers *a, const char *id);

/* The prompt of row i of a samples group: the first of its files that answers that id has it. */
const char *report_group_prompt(const struct report *r, const struct report_sample_group *g, int i);

/* The text a mark is shown as ("better", "worse", "~", "ref", ""). */
const char *report_mark_name(int mark);

#endif
