#include "md.h"

#include "text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void esc(struct pl_buf *b, const char *s)
{
    report_text_md_str(b, s);
}

static const char *pairs(char *buf, double v)
{
    snprintf(buf, 32, "%.0f", v);
    return buf;
}

static const char *mark_text(int mark)
{
    switch (mark) {
    case REPORT_BETTER:
        return " \xe2\x96\xb2 better";
    case REPORT_WORSE:
        return " \xe2\x96\xbc worse";
    case REPORT_SAME:
        return " ~";
    case REPORT_REF:
        return " (ref)";
    default:
        return "";
    }
}

static void summary(struct pl_buf *b, const struct report *r)
{
    pl_buf_str(b, "## Summary\n\nEach figure with its 95% interval. Against the reference (the "
                  "row's first model with a figure): \xe2\x96\xb2 better or \xe2\x96\xbc worse "
                  "when the intervals do not overlap, ~ when they do.\n\n");
    if (!r->n_rows) {
        pl_buf_str(b, "No eval results in these runs.\n\n");
        return;
    }
    pl_buf_str(b, "| metric |");
    for (int m = 0; m < r->n_models; m++) {
        pl_buf_str(b, " ");
        esc(b, r->models[m].label);
        pl_buf_str(b, " |");
    }
    pl_buf_str(b, "\n|---|");
    for (int m = 0; m < r->n_models; m++)
        pl_buf_str(b, "---:|");
    pl_buf_str(b, "\n");
    char v[32], lo[32], hi[32];
    for (int i = 0; i < r->n_rows; i++) {
        const struct report_row *row = &r->rows[i];
        if (i == 0 || strcmp(row->group, r->rows[i - 1].group) != 0) {
            pl_buf_str(b, "| **");
            esc(b, row->group);
            pl_buf_str(b, "** |");
            for (int m = 0; m < r->n_models; m++)
                pl_buf_str(b, " |");
            pl_buf_str(b, "\n");
        }
        pl_buf_str(b, "| ");
        esc(b, row->metric);
        pl_buf_str(b, row->better == 1    ? " (higher is better)"
                      : row->better == -1 ? " (lower is better)"
                      : row->better == 2  ? " (closer to no bias)"
                                          : "");
        pl_buf_str(b, " |");
        for (int m = 0; m < r->n_models; m++) {
            const struct report_cell *c = &row->cells[m];
            pl_buf_str(b, " ");
            if (isfinite(c->v)) {
                pl_buf_str(b, report_text_num(v, c->v));
                if (isfinite(c->lo) && isfinite(c->hi))
                    pl_buf_printf(b, " \\[%s, %s\\]", report_text_num(lo, c->lo),
                                  report_text_num(hi, c->hi));
                pl_buf_str(b, mark_text(c->mark));
            }
            pl_buf_str(b, " |");
        }
        pl_buf_str(b, "\n");
    }
    pl_buf_str(b, "\n");
}

static void charts(struct pl_buf *b, const struct report *r, int kind, const char *title)
{
    pl_buf_printf(b, "## %s\n\n", title);
    int shown = 0;
    for (int i = 0; i < r->n_charts; i++) {
        const struct report_chart *c = &r->charts[i];
        if (c->section != kind)
            continue;
        pl_buf_str(b, "![");
        esc(b, c->title);
        pl_buf_printf(b, "](%s)\n\n", c->file);
        esc(b, c->caption);
        pl_buf_str(b, "\n\n");
        shown++;
    }
    if (!shown)
        pl_buf_str(b, "None in these runs.\n\n");
}

static void samples(struct pl_buf *b, const struct report *r)
{
    pl_buf_str(b, "## Sample responses\n\n");
    if (!r->n_groups)
        pl_buf_str(b, "No answer files in these runs.\n\n");
    char v[32];
    for (int g = 0; g < r->n_groups; g++) {
        const struct report_sample_group *grp = &r->groups[g];
        pl_buf_str(b, "| prompt |");
        for (int s = 0; s < grp->n_sources; s++) {
            const struct report_answers *a = &r->answers[grp->sources[s]];
            pl_buf_str(b, " ");
            esc(b, r->models[a->model].label);
            pl_buf_str(b, " (");
            esc(b, a->label);
            pl_buf_str(b, ") |");
        }
        pl_buf_str(b, "\n|---|");
        for (int s = 0; s < grp->n_sources; s++)
            pl_buf_str(b, "---|");
        pl_buf_str(b, "\n");
        for (int i = 0; i < grp->n_ids; i++) {
            const char *prompt = report_group_prompt(r, grp, i);
            pl_buf_str(b, "| ");
            esc(b, grp->ids[i]);
            pl_buf_str(b, ": ");
            esc(b, prompt);
            pl_buf_str(b, " |");
            for (int s = 0; s < grp->n_sources; s++) {
                const struct report_answer *x =
                    report_answer_find(&r->answers[grp->sources[s]], grp->ids[i]);
                pl_buf_str(b, " ");
                if (x) {
                    esc(b, x->text);
                    if (x->note) {
                        pl_buf_str(b, " (");
                        esc(b, x->note);
                        pl_buf_str(b, ")");
                    }
                    if (isfinite(x->reward))
                        pl_buf_printf(b, " (reward %s)", report_text_num(v, x->reward));
                }
                pl_buf_str(b, " |");
            }
            pl_buf_str(b, "\n");
        }
        pl_buf_str(b, "\n");
    }
}

static void broken(struct pl_buf *b, const cJSON *rules, const cJSON *score)
{
    if (cJSON_GetArraySize(rules)) {
        pl_buf_str(b, " (breaks ");
        report_json_value(b, rules, report_text_md_str);
        pl_buf_str(b, ")");
    }
    if (cJSON_IsNumber(score))
        pl_buf_printf(b, " (score %.3f)", score->valuedouble);
}

static void critique(struct pl_buf *b, const struct report *r)
{
    pl_buf_str(b, "## Constitution traces\n\n");
    int shown = 0;
    for (int i = 0; i < r->n_docs; i++) {
        const struct report_doc *d = &r->docs[i];
        if (d->kind != REPORT_DOC_TRACE)
            continue;
        shown++;
        pl_buf_str(b, "### ");
        esc(b, d->path);
        pl_buf_printf(b, " (%ld prompts)\n\n", d->records);
        for (const cJSON *t = d->json->child; t; t = t->next) {
            pl_buf_str(b, "- **");
            esc(b, report_str(t, "id"));
            pl_buf_str(b, "**: ");
            esc(b, report_str(t, "prompt"));
            pl_buf_str(b, "\n  - draft: ");
            esc(b, report_str(t, "draft"));
            broken(b, cJSON_GetObjectItemCaseSensitive(t, "draft_broken"),
                   cJSON_GetObjectItemCaseSensitive(t, "draft_score"));
            const cJSON *rounds = cJSON_GetObjectItemCaseSensitive(t, "rounds");
            for (const cJSON *rd = rounds->child; rd; rd = rd->next) {
                pl_buf_str(b, "\n  - ");
                esc(b, report_str(rd, "principle"));
                pl_buf_str(b, ": critique: ");
                esc(b, report_str(rd, "critique"));
                pl_buf_str(b, "; revision: ");
                esc(b, report_str(rd, "revision"));
                broken(b, cJSON_GetObjectItemCaseSensitive(rd, "broken"),
                       cJSON_GetObjectItemCaseSensitive(rd, "score"));
                pl_buf_str(b, "; verdict ");
                esc(b, report_str(rd, "verdict"));
            }
            pl_buf_str(b, "\n  - final response: ");
            esc(b, report_str(t, "response"));
            pl_buf_str(b, "\n");
        }
        pl_buf_str(b, "\n");
    }
    if (!shown)
        pl_buf_str(b, "No critique traces in these runs.\n\n");
}

static void docs(struct pl_buf *b, const struct report *r)
{
    pl_buf_str(b, "## Reward model and stage summaries\n\n");
    char v[32];
    int shown = 0;
    for (int i = 0; i < r->n_docs; i++) {
        const struct report_doc *d = &r->docs[i];
        if (d->kind != REPORT_DOC_RM_EVAL && d->kind != REPORT_DOC_SUMMARY)
            continue;
        shown++;
        pl_buf_str(b, "### ");
        esc(b, d->path);
        pl_buf_str(b, "\n\n");
        if (d->kind == REPORT_DOC_RM_EVAL) {
            pl_buf_str(b, "| prompts | pairs | accuracy | margin |\n|---|---:|---:|---:|\n");
            const cJSON *kinds = cJSON_GetObjectItemCaseSensitive(d->json, "kinds");
            for (const cJSON *k = d->json; k; k = k == d->json ? kinds->child : k->next) {
                pl_buf_str(b, "| ");
                esc(b, k == d->json ? "all" : k->string);
                pl_buf_str(b, " |");
                static const char *const f[] = {"pairs", "accuracy", "margin"};
                for (int j = 0; j < 3; j++) {
                    const cJSON *x = cJSON_GetObjectItemCaseSensitive(k, f[j]);
                    pl_buf_printf(b, " %s |",
                                  !cJSON_IsNumber(x) ? "-"
                                  : j == 0           ? pairs(v, x->valuedouble)
                                                     : report_text_num(v, x->valuedouble));
                }
                pl_buf_str(b, "\n");
            }
        } else {
            pl_buf_str(b, "| key | value |\n|---|---:|\n");
            for (const cJSON *k = d->json->child; k; k = k->next) {
                pl_buf_str(b, "| ");
                esc(b, k->string);
                pl_buf_str(b, " | ");
                report_json_value(b, k, report_text_md_str);
                pl_buf_str(b, " |\n");
            }
        }
        pl_buf_str(b, "\n");
    }
    if (!shown)
        pl_buf_str(b, "None in these runs.\n\n");
}

static void provenance(struct pl_buf *b, const struct report *r, const char *version)
{
    pl_buf_str(b, "## Provenance\n\n### Training runs\n\n");
    if (!r->n_runs)
        pl_buf_str(b, "No run folders in these runs.\n\n");
    for (int i = 0; i < r->n_runs; i++) {
        const struct report_run *run = &r->runs[i];
        pl_buf_str(b, "- ");
        esc(b, run->path);
        pl_buf_str(b, " (run.json):");
        for (const cJSON *k = run->run->child; k; k = k->next) {
            pl_buf_str(b, k == run->run->child ? " " : ", ");
            esc(b, k->string);
            pl_buf_str(b, " = ");
            report_json_value(b, k, report_text_md_str);
        }
        pl_buf_str(b, "\n");
    }
    pl_buf_str(b, "\n### Eval results\n\n");
    if (!r->n_results)
        pl_buf_str(b, "No eval results in these runs.\n\n");
    else
        pl_buf_str(b, "| file | suite | model | data | sha256 | n | seed | bootstrap | plumb |\n"
                      "|---|---|---|---|---|---:|---:|---:|---|\n");
    static const char *const head[] = {"dataset", "sha256",    "n",
                                       "seed",    "bootstrap", "plumb_version"};
    for (int i = 0; i < r->n_results; i++) {
        const struct report_result *x = &r->results[i];
        pl_buf_str(b, "| ");
        esc(b, x->path);
        pl_buf_str(b, " | ");
        esc(b, x->suite);
        pl_buf_str(b, " | ");
        esc(b, r->models[x->model].label);
        for (int k = 0; k < 6; k++) {
            pl_buf_str(b, " | ");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(x->obj, head[k]);
            if (v)
                report_json_value(b, v, report_text_md_str);
        }
        pl_buf_str(b, " |\n");
    }
    pl_buf_printf(b,
                  "\nIntervals of best-of-n rewards: percentile bootstrap over prompts, %d "
                  "resamples, seed 1. Report written by plumb ",
                  REPORT_BOOTSTRAP_REPS);
    esc(b, version);
    pl_buf_str(b, ".\n");
}

int report_md(const struct report *r, const struct report_page *page, struct pl_buf *out,
              struct pl_err *err)
{
    struct pl_buf *b = out;
    pl_buf_str(b, "# ");
    esc(b, page->title);
    pl_buf_str(b, "\n\nFrom ");
    for (int i = 0; i < page->n_sources; i++) {
        pl_buf_str(b, i ? ", " : "");
        esc(b, page->sources[i]);
    }
    pl_buf_printf(b, ": %d training runs, %d eval results, %d models, the first the reference: ",
                  r->n_runs, r->n_results, r->n_models);
    for (int m = 0; m < r->n_models; m++) {
        pl_buf_str(b, m ? ", " : "");
        esc(b, r->models[m].label);
    }
    pl_buf_str(b, ".\n\n");
    summary(b, r);
    charts(b, r, REPORT_CHART_TRAINING, "Training curves");
    charts(b, r, REPORT_CHART_RELIABILITY, "Reliability diagrams");
    charts(b, r, REPORT_CHART_BIAS, "Bias by category");
    samples(b, r);
    critique(b, r);
    docs(b, r);
    provenance(b, r, page->version);
    return b->oom ? pl_oom(err, "report.md") : PL_OK;
}
