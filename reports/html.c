#include "html.h"

#include "text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char style[] =
    "body{font-family:sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222;"
    "line-height:1.4}\n"
    "h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}\n"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}\n"
    "th,td{border:1px solid #ccc;padding:0.25em 0.5em;vertical-align:top;text-align:left}\n"
    "td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\n"
    "tr.group th{background:#f0f0f0}\n"
    ".ci{color:#666;font-size:0.85em}.better{color:#1a7f37;font-weight:bold}"
    ".worse{color:#c62828;font-weight:bold}.ref{color:#555;font-size:0.8em}\n"
    ".text{white-space:pre-wrap;font-family:monospace;font-size:0.9em}\n"
    "figure{display:inline-block;margin:0.5em;vertical-align:top}"
    "figcaption{font-size:0.8em;color:#555;max-width:640px}\n"
    "nav a{margin-right:1em}.none{color:#777;font-style:italic}\n"
    ".broken{color:#c62828}code{font-size:0.9em}\n";

static void esc(struct pl_buf *b, const char *s)
{
    report_text_html_str(b, s);
}

static void section(struct pl_buf *b, const char *id, const char *title, const char *intro)
{
    pl_buf_printf(b, "<section id=\"%s\">\n<h2>%s</h2>\n", id, title);
    if (intro)
        pl_buf_printf(b, "<p>%s</p>\n", intro);
}

static void none(struct pl_buf *b, const char *what)
{
    pl_buf_printf(b, "<p class=\"none\">No %s in these runs.</p>\n", what);
}

/* A JSON value as text: strings as they are, numbers %.9g, anything else as compact JSON. */
static const char *pairs(char *buf, double v)
{
    snprintf(buf, 32, "%.0f", v);
    return buf;
}

/* ---- summary ---- */

static const char *arrow(int mark)
{
    switch (mark) {
    case REPORT_BETTER:
        return " <span class=\"better\" title=\"better than the reference\">&#9650; better</span>";
    case REPORT_WORSE:
        return " <span class=\"worse\" title=\"worse than the reference\">&#9660; worse</span>";
    case REPORT_SAME:
        return " <span class=\"ref\" title=\"the 95% intervals overlap\">~</span>";
    case REPORT_REF:
        return " <span class=\"ref\">ref</span>";
    default:
        return "";
    }
}

static void summary(struct pl_buf *b, const struct report *r)
{
    section(b, "summary", "Summary",
            "Each figure with its 95% interval (percentile bootstrap over items). Against the "
            "reference (the row's first model with a figure): <span class=\"better\">&#9650; "
            "better</span> or <span class=\"worse\">&#9660; worse</span> when the two intervals "
            "do not overlap, ~ when they do; bias figures are better closer to their no-bias "
            "value. Reward and KL of a PPO run are its last held-out evaluation; its starting "
            "model's are the run's step 0.");
    if (!r->n_rows) {
        none(b, "eval results");
        pl_buf_str(b, "</section>\n");
        return;
    }
    pl_buf_str(b, "<table class=\"summary\" id=\"summary-table\">\n<thead><tr><th>metric</th>");
    for (int m = 0; m < r->n_models; m++) {
        pl_buf_str(b, "<th title=\"");
        esc(b, r->models[m].name);
        pl_buf_str(b, "\">");
        esc(b, r->models[m].label);
        pl_buf_str(b, "</th>");
    }
    pl_buf_str(b, "</tr></thead>\n<tbody>\n");
    char v[32], lo[32], hi[32];
    for (int i = 0; i < r->n_rows; i++) {
        const struct report_row *row = &r->rows[i];
        if (i == 0 || strcmp(row->group, r->rows[i - 1].group) != 0) {
            pl_buf_printf(b, "<tr class=\"group\"><th colspan=\"%d\">", r->n_models + 1);
            esc(b, row->group);
            pl_buf_str(b, "</th></tr>\n");
        }
        pl_buf_str(b, "<tr><td>");
        esc(b, row->metric);
        pl_buf_printf(b, "%s</td>",
                      row->better == 1    ? " <span class=\"ref\">(higher is better)</span>"
                      : row->better == -1 ? " <span class=\"ref\">(lower is better)</span>"
                      : row->better == 2  ? " <span class=\"ref\">(closer to no bias)</span>"
                                          : "");
        for (int m = 0; m < r->n_models; m++) {
            const struct report_cell *c = &row->cells[m];
            pl_buf_str(b, "<td class=\"num\">");
            if (isfinite(c->v)) {
                pl_buf_str(b, report_text_num(v, c->v));
                if (isfinite(c->lo) && isfinite(c->hi))
                    pl_buf_printf(b, " <span class=\"ci\">[%s, %s]</span>",
                                  report_text_num(lo, c->lo), report_text_num(hi, c->hi));
                pl_buf_str(b, arrow(c->mark));
            }
            pl_buf_str(b, "</td>");
        }
        pl_buf_str(b, "</tr>\n");
    }
    pl_buf_str(b, "</tbody></table>\n</section>\n");
}

/* ---- charts ---- */

static void charts(struct pl_buf *b, const struct report *r, int kind, const char *id,
                   const char *title, const char *intro, const char *what)
{
    section(b, id, title, intro);
    int shown = 0;
    for (int i = 0; i < r->n_charts; i++) {
        const struct report_chart *c = &r->charts[i];
        if (c->section != kind)
            continue;
        pl_buf_str(b, "<figure class=\"chart\">\n");
        pl_buf_add(b, c->svg.p, c->svg.len);
        pl_buf_str(b, "<figcaption>");
        esc(b, c->caption);
        pl_buf_str(b, "</figcaption></figure>\n");
        shown++;
    }
    if (!shown)
        none(b, what);
    pl_buf_str(b, "</section>\n");
}

/* ---- answers ---- */

static void samples(struct pl_buf *b, const struct report *r)
{
    section(b, "samples", "Sample responses",
            "The same held-out prompts answered by each model (answer files, best-of-n files "
            "and eval details), the first prompts of each file.");
    if (!r->n_groups)
        none(b, "answer files");
    char v[32];
    for (int g = 0; g < r->n_groups; g++) {
        const struct report_sample_group *grp = &r->groups[g];
        pl_buf_str(b, "<table class=\"samples\">\n<thead><tr><th>prompt</th>");
        for (int s = 0; s < grp->n_sources; s++) {
            const struct report_answers *a = &r->answers[grp->sources[s]];
            pl_buf_str(b, "<th>");
            esc(b, r->models[a->model].label);
            pl_buf_str(b, "<br><span class=\"ref\">");
            esc(b, a->path);
            pl_buf_str(b, "</span></th>");
        }
        pl_buf_str(b, "</tr></thead>\n<tbody>\n");
        for (int i = 0; i < grp->n_ids; i++) {
            const char *prompt = report_group_prompt(r, grp, i);
            pl_buf_str(b, "<tr><td><span class=\"ref\">");
            esc(b, grp->ids[i]);
            pl_buf_str(b, "</span><div class=\"text\">");
            esc(b, prompt);
            pl_buf_str(b, "</div></td>");
            for (int s = 0; s < grp->n_sources; s++) {
                const struct report_answer *x =
                    report_answer_find(&r->answers[grp->sources[s]], grp->ids[i]);
                pl_buf_str(b, "<td>");
                if (x) {
                    pl_buf_str(b, "<div class=\"text\">");
                    esc(b, x->text);
                    pl_buf_str(b, "</div>");
                    if (x->note || isfinite(x->reward)) {
                        pl_buf_str(b, "<span class=\"ref\">");
                        esc(b, x->note);
                        if (isfinite(x->reward))
                            pl_buf_printf(b, "%sreward %s", x->note ? ", " : "",
                                          report_text_num(v, x->reward));
                        pl_buf_str(b, "</span>");
                    }
                }
                pl_buf_str(b, "</td>");
            }
            pl_buf_str(b, "</tr>\n");
        }
        pl_buf_str(b, "</tbody></table>\n");
    }
    pl_buf_str(b, "</section>\n");
}

/* ---- critique traces ---- */

static void rules(struct pl_buf *b, const cJSON *broken, const cJSON *score)
{
    int n = cJSON_GetArraySize(broken);
    if (n) {
        pl_buf_str(b, " <span class=\"broken\">breaks ");
        report_json_value(b, broken, report_text_html_str);
        pl_buf_str(b, "</span>");
    } else {
        pl_buf_str(b, " <span class=\"ref\">breaks no rule</span>");
    }
    if (cJSON_IsNumber(score))
        pl_buf_printf(b, " <span class=\"ref\">score %.3f</span>", score->valuedouble);
}

static void critique(struct pl_buf *b, const struct report *r)
{
    section(b, "critique", "Constitution traces",
            "Draft, then each round's principle, critique and revision with the rules it "
            "breaks, its reward-model score and the verdict; the first prompts of each trace.");
    int shown = 0;
    for (int i = 0; i < r->n_docs; i++) {
        const struct report_doc *d = &r->docs[i];
        if (d->kind != REPORT_DOC_TRACE)
            continue;
        shown++;
        pl_buf_str(b, "<h3>");
        esc(b, d->path);
        pl_buf_printf(b, " <span class=\"ref\">(%ld prompts)</span></h3>\n", d->records);
        for (const cJSON *t = d->json->child; t; t = t->next) {
            pl_buf_str(b, "<div class=\"trace\"><p><b>");
            esc(b, report_str(t, "id"));
            pl_buf_str(b, "</b></p><div class=\"text\">");
            esc(b, report_str(t, "prompt"));
            pl_buf_str(b, "</div>\n<p>draft:</p><div class=\"text\">");
            esc(b, report_str(t, "draft"));
            pl_buf_str(b, "</div>");
            rules(b, cJSON_GetObjectItemCaseSensitive(t, "draft_broken"),
                  cJSON_GetObjectItemCaseSensitive(t, "draft_score"));
            pl_buf_str(b, "\n<ol>\n");
            const cJSON *rounds = cJSON_GetObjectItemCaseSensitive(t, "rounds");
            for (const cJSON *rd = rounds->child; rd; rd = rd->next) {
                pl_buf_str(b, "<li>principle <b>");
                esc(b, report_str(rd, "principle"));
                pl_buf_str(b, "</b>, verdict <b>");
                esc(b, report_str(rd, "verdict"));
                pl_buf_str(b, "</b><br>critique:<div class=\"text\">");
                esc(b, report_str(rd, "critique"));
                pl_buf_str(b, "</div>revision:<div class=\"text\">");
                esc(b, report_str(rd, "revision"));
                pl_buf_str(b, "</div>");
                rules(b, cJSON_GetObjectItemCaseSensitive(rd, "broken"),
                      cJSON_GetObjectItemCaseSensitive(rd, "score"));
                pl_buf_str(b, "</li>\n");
            }
            pl_buf_str(b, "</ol>\n<p>final response:</p><div class=\"text\">");
            esc(b, report_str(t, "response"));
            pl_buf_str(b, "</div></div>\n");
        }
    }
    if (!shown)
        none(b, "critique traces");
    pl_buf_str(b, "</section>\n");
}

/* ---- reward model evaluations, summaries ---- */

static void rm_evals(struct pl_buf *b, const struct report *r)
{
    section(b, "reward-model", "Reward model and stage summaries",
            "plumb rm eval --json files (pairwise accuracy overall and per prompt kind) and "
            "flat summary.json figures.");
    int shown = 0;
    char v[32];
    for (int i = 0; i < r->n_docs; i++) {
        const struct report_doc *d = &r->docs[i];
        if (d->kind == REPORT_DOC_RM_EVAL) {
            pl_buf_str(b, "<h3>");
            esc(b, d->path);
            pl_buf_str(b, "</h3>\n<table><thead><tr><th>prompts</th><th>pairs</th><th>accuracy"
                          "</th><th>margin</th></tr></thead><tbody>\n");
            const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(d->json, "kinds");
            for (const cJSON *k = d->json; k; k = k == d->json ? kinds->child : k->next) {
                pl_buf_str(b, "<tr><td>");
                esc(b, k == d->json ? "all" : k->string);
                pl_buf_str(b, "</td>");
                static const char *const f[] = {"pairs", "accuracy", "margin"};
                for (int j = 0; j < 3; j++) {
                    const cJSON *x = cJSON_GetObjectItemCaseSensitive(k, f[j]);
                    pl_buf_printf(b, "<td class=\"num\">%s</td>",
                                  !cJSON_IsNumber(x) ? "-"
                                  : j == 0           ? pairs(v, x->valuedouble)
                                                     : report_text_num(v, x->valuedouble));
                }
                pl_buf_str(b, "</tr>\n");
            }
            pl_buf_str(b, "</tbody></table>\n");
            shown++;
        } else if (d->kind == REPORT_DOC_SUMMARY) {
            pl_buf_str(b, "<h3>");
            esc(b, d->path);
            pl_buf_str(b, "</h3>\n<table><tbody>\n");
            for (const cJSON *k = d->json->child; k; k = k->next) {
                pl_buf_str(b, "<tr><td>");
                esc(b, k->string);
                pl_buf_str(b, "</td><td class=\"num\">");
                report_json_value(b, k, report_text_html_str);
                pl_buf_str(b, "</td></tr>\n");
            }
            pl_buf_str(b, "</tbody></table>\n");
            shown++;
        }
    }
    if (!shown)
        none(b, "reward-model evaluations or summaries");
    pl_buf_str(b, "</section>\n");
}

/* ---- provenance ---- */

static void provenance(struct pl_buf *b, const struct report *r, const char *version)
{
    section(b, "provenance", "Provenance",
            "What each figure came from: every training run's options as its run.json "
            "records them (command, seed, data, plumb version), and every results file's "
            "data, its SHA-256, seed, bootstrap and plumb version.");
    pl_buf_str(b, "<h3>Training runs</h3>\n");
    if (!r->n_runs)
        none(b, "run folders");
    for (int i = 0; i < r->n_runs; i++) {
        const struct report_run *run = &r->runs[i];
        pl_buf_str(b, "<details><summary><code>");
        esc(b, run->path);
        pl_buf_str(b, "</code>: plumb ");
        esc(b, report_str(run->run, "command"));
        const cJSON *seed = cJSON_GetObjectItemCaseSensitive(run->run, "seed");
        if (seed) {
            pl_buf_str(b, ", seed ");
            report_json_value(b, seed, report_text_html_str);
        }
        pl_buf_str(b, ", plumb version ");
        esc(b, report_str(run->run, "plumb_version"));
        pl_buf_str(b, "</summary>\n<table><tbody>\n");
        for (const cJSON *k = run->run->child; k; k = k->next) {
            pl_buf_str(b, "<tr><td>");
            esc(b, k->string);
            pl_buf_str(b, "</td><td>");
            report_json_value(b, k, report_text_html_str);
            pl_buf_str(b, "</td></tr>\n");
        }
        pl_buf_str(b, "</tbody></table></details>\n");
    }
    pl_buf_str(b, "<h3>Eval results</h3>\n");
    if (!r->n_results) {
        none(b, "eval results");
    } else {
        pl_buf_str(b, "<table id=\"results-table\"><thead><tr><th>file</th><th>suite</th>"
                      "<th>model</th><th>data</th><th>sha256</th><th>n</th><th>seed</th>"
                      "<th>bootstrap</th><th>plumb</th><th>other settings</th></tr></thead>"
                      "<tbody>\n");
        static const char *const head[] = {"suite", "model",     "dataset",       "sha256", "n",
                                           "seed",  "bootstrap", "plumb_version", "metrics"};
        for (int i = 0; i < r->n_results; i++) {
            const struct report_result *x = &r->results[i];
            pl_buf_str(b, "<tr><td>");
            esc(b, x->path);
            pl_buf_str(b, "</td><td>");
            esc(b, x->suite);
            pl_buf_str(b, "</td><td>");
            esc(b, r->models[x->model].label);
            for (int k = 2; k < 8; k++) {
                pl_buf_str(b, k == 3   ? "</td><td><code>"
                              : k == 4 ? "</code></td><td>"
                                       : "</td><td>");
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(x->obj, head[k]);
                if (v)
                    report_json_value(b, v, report_text_html_str);
            }
            pl_buf_str(b, "</td><td>");
            for (const cJSON *c = x->obj->child; c; c = c->next) {
                bool known = false;
                for (size_t k = 0; k < sizeof head / sizeof *head; k++)
                    known |= strcmp(c->string, head[k]) == 0;
                if (known || strcmp(c->string, "reliability") == 0 ||
                    strcmp(c->string, "suites") == 0)
                    continue;
                esc(b, c->string);
                pl_buf_str(b, " = ");
                report_json_value(b, c, report_text_html_str);
                pl_buf_str(b, "<br>");
            }
            pl_buf_str(b, "</td></tr>\n");
        }
        pl_buf_str(b, "</tbody></table>\n");
    }
    pl_buf_printf(b,
                  "<p>Intervals of best-of-n rewards: percentile bootstrap over prompts, "
                  "%d resamples, seed 1. Report written by plumb ",
                  REPORT_BOOTSTRAP_REPS);
    esc(b, version);
    pl_buf_str(b, ".</p>\n</section>\n");
}

int report_html(const struct report *r, const struct report_page *page, struct pl_buf *out,
                struct pl_err *err)
{
    const char *title = page->title;
    struct pl_buf *b = out;
    pl_buf_str(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                  "style-src 'unsafe-inline'\">\n<meta name=\"viewport\" "
                  "content=\"width=device-width, initial-scale=1\">\n<title>");
    esc(b, title);
    pl_buf_printf(b, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", style);
    esc(b, title);
    pl_buf_str(b, "</h1>\n<p>From ");
    for (int i = 0; i < page->n_sources; i++) {
        pl_buf_str(b, i ? ", <code>" : "<code>");
        esc(b, page->sources[i]);
        pl_buf_str(b, "</code>");
    }
    pl_buf_printf(b, ": %d training runs, %d eval results, %d models, the first the reference: ",
                  r->n_runs, r->n_results, r->n_models);
    for (int m = 0; m < r->n_models; m++) {
        pl_buf_str(b, m ? ", " : "");
        esc(b, r->models[m].label);
    }
    pl_buf_str(b, ".</p>\n<nav><a href=\"#summary\">summary</a><a href=\"#training\">training</a>"
                  "<a href=\"#reliability\">reliability</a><a href=\"#bias\">bias</a>"
                  "<a href=\"#samples\">samples</a><a href=\"#critique\">critique</a>"
                  "<a href=\"#reward-model\">reward model</a><a href=\"#provenance\">provenance"
                  "</a></nav>\n");
    summary(b, r);
    charts(b, r, REPORT_CHART_TRAINING, "training", "Training curves",
           "Loss and held-out loss, reward-model accuracy, and PPO's reward, KL, beta, entropy "
           "and response length, per step of each run's metrics.jsonl.",
           "training metrics");
    charts(b, r, REPORT_CHART_RELIABILITY, "reliability", "Reliability diagrams",
           "Accuracy against confidence in each confidence bin of a multiple-choice eval (bars: "
           "accuracy; dots: mean confidence; dashed: perfect calibration).",
           "multiple-choice calibration results");
    charts(b, r, REPORT_CHART_BIAS, "bias", "Bias by category",
           "Per-category bias figures of each model with their 95% intervals.",
           "per-category bias results");
    samples(b, r);
    critique(b, r);
    rm_evals(b, r);
    provenance(b, r, page->version);
    pl_buf_str(b, "</body>\n</html>\n");
    return b->oom ? pl_oom(err, "report.html") : PL_OK;
}
