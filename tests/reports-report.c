/* reports-report: a report of a fixture demo folder made here (run folders with run.json and
 * metrics.jsonl for pretraining, SFT, a reward model and PPO; world, mc, crows, bbq and
 * truthfulqa results; best-of-n files; eval details; a critique trace; an rm evaluation and a
 * summary) holds every section, orders models by lineage, compares them with marks, and escapes
 * a hostile string pushed through every field, folder name and JSON key; bad files fail with
 * their path and line; every allocation failure is a clean PL_ENOMEM. */
#include "reports/report.h"
#include "reports/html.h"
#include "reports/md.h"

#include "model/io.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* In JSON: a script element, quotes, an ampersand, C0 controls with a terminal escape, a C1
 * control. */
#define EVIL_JSON "<script>alert(1)</script> & \\\"q\\\" 'a' \\u0001\\u001b[2J\\u0085"
/* A folder name can hold most of it too. */
#define EVIL_DIR "<script>&'x"

static char root[512];

/* Write text to root/rel with "@R" replaced by root and "@E" by EVIL_JSON. */
static void tpl(const char *rel, const char *text)
{
    char path[1024], out[16384];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = strchr(path + strlen(root) + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        mkdir(path, 0777);
        *p = '/';
    }
    size_t n = 0;
    for (const char *s = text; *s && n < sizeof out - 600; s++) {
        if (s[0] == '@' && (s[1] == 'R' || s[1] == 'E')) {
            n += (size_t)snprintf(out + n, sizeof out - n, "%s", s[1] == 'R' ? root : EVIL_JSON);
            s++;
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
    tap_write_file(path, out);
}

static void fixture(void)
{
    tpl("base/run.json", "{\"plumb_version\": \"0.1.0\", \"command\": \"pretrain\", \"seed\": 7, "
                         "\"model\": \"@R/init\", \"data\": \"@E\"}\n");
    tpl("base/metrics.jsonl", "{\"step\": 0, \"time\": 0, \"eval/loss\": 5.5}\n"
                              "{\"step\": 1, \"train/loss\": 5.0}\n"
                              "{\"step\": 2, \"train/loss\": null}\n"
                              "{\"step\": 3, \"train/loss\": 3.0, \"eval/loss\": 3.5}\n");
    tpl("sft/run.json", "{\"plumb_version\": \"0.1.0\", \"command\": \"sft\", \"seed\": 1337, "
                        "\"model\": \"@R/base\", \"@E\": \"@E\"}\n");
    tpl("sft/metrics.jsonl", "{\"step\": 0, \"eval/loss\": 3.5}\n{\"step\": 1, \"train/loss\": "
                             "2.0}\n{\"step\": 2, \"train/loss\": 1.0, \"eval/loss\": 1.5}\n");
    tpl("rm/model/run.json", "{\"plumb_version\": \"0.1.0\", \"command\": \"rm\", \"seed\": 2, "
                             "\"model\": \"@R/sft\"}\n");
    tpl("rm/model/metrics.jsonl", "{\"step\": 1, \"train/loss\": 0.69, \"rm/accuracy\": 0.5}\n"
                                  "{\"step\": 2, \"train/loss\": 0.5, \"rm/accuracy\": 0.8}\n");
    tpl("ppo/run.json", "{\"plumb_version\": \"0.1.0\", \"command\": \"ppo\", \"seed\": 3, "
                        "\"policy\": \"@R/sft\", \"policy\": {\"out\": \"@R/ppo\"}}\n");
    tpl("ppo/metrics.jsonl",
        "{\"step\": 0, \"eval/reward\": 0.1, \"eval/kl\": 0}\n"
        "{\"step\": 1, \"objective/scores\": 0.2, \"objective/kl\": 0.5, \"objective/entropy\": "
        "9, \"val/response_length\": 12, \"beta\": 0.2}\n"
        "{\"step\": 2, \"objective/scores\": 0.6, \"objective/kl\": 1.5, \"objective/entropy\": "
        "8, \"val/response_length\": 10, \"beta\": 0.2, \"eval/reward\": 0.7, \"eval/kl\": 2}\n");
    tpl(EVIL_DIR "/run.json", "{\"plumb_version\": \"@E\", \"command\": \"@E\", \"seed\": 1, "
                              "\"model\": \"@R/sft\"}\n");
    tpl(EVIL_DIR "/metrics.jsonl", "{\"step\": 1, \"@E\": 1, \"train/loss\": 1}\n");
    tpl("rm/eval.json",
        "{\"groups\": 2, \"pairs\": 10, \"accuracy\": 0.8, \"margin\": 1, "
        "\"kinds\": {\"@E\": {\"pairs\": 4, \"accuracy\": 0.5, \"margin\": 0.1}}}\n");
    tpl("summary.json", "{\"@E\": \"@E\", \"rm.accuracy\": 0.8}\n");
    static const char *const world[][4] = {
        {"test_base.json", "@R/base", "0.9, \"ci95\": [0.8, 1.0]", "0.1, \"ci95\": [0.0, 0.2]"},
        {"test_sft.json", "@R/sft", "0.3, \"ci95\": [0.2, 0.4]", "0.15, \"ci95\": [0.05, 0.3]"},
        {"test_ppo.json", "@R/ppo", "0.25, \"ci95\": [0.1, 0.4]", "0.5, \"ci95\": [0.4, 0.6]"},
    };
    for (int i = 0; i < 3; i++) {
        char rel[64], text[2048];
        snprintf(rel, sizeof rel, "eval/%s", world[i][0]);
        snprintf(text, sizeof text,
                 "{\"suite\": \"world\", \"model\": \"%s\", \"dataset\": \"@R/prompts_test.jsonl\","
                 " \"sha256\": \"%064d\", \"n\": 100, \"metrics\": {\"hallucination_rate\": "
                 "{\"value\": %s}, \"known_accuracy\": {\"value\": %s}, \"@E\": {\"value\": 1, "
                 "\"ci95\": [0, 2]}}, \"seed\": 1, \"bootstrap\": 1000, \"plumb_version\": "
                 "\"0.1.0\", \"k\": 4, \"@E\": \"@E\"}\n",
                 world[i][1], i, world[i][2], world[i][3]);
        tpl(rel, text);
    }
    tpl("eval/test_sft.details.jsonl",
        "{\"id\": \"p1\", \"kind\": \"known\", \"k\": 0, \"text\": \"@E detail\", \"class\": "
        "\"@E\"}\n{\"id\": \"p1\", \"k\": 1, \"text\": \"second answer\", \"class\": \"wrong\"}\n"
        "{\"id\": \"p2\", \"text\": \"x\", \"class\": \"correct\"}\n");
    tpl("eval/bon_sft.jsonl",
        "{\"id\": \"p1\", \"prompt\": \"@E prompt\", \"completions\": [\"@E answer\"], "
        "\"rewards\": [1.5], \"best\": 1, \"candidates\": [\"a\", \"@E answer\"], "
        "\"candidate_rewards\": [0.5, 1.5], \"model\": \"@R/sft\"}\n"
        "{\"id\": \"p2\", \"prompt\": \"second\", \"completions\": [\"b\"], \"rewards\": [0.5], "
        "\"best\": 0, \"candidates\": [\"b\", \"c\"], \"candidate_rewards\": [0.5, 0.5], "
        "\"model\": \"@R/sft\"}\n");
    tpl("eval/bon_ppo.jsonl", /* the same prompts in another order */
        "{\"id\": \"p2\", \"prompt\": \"second\", \"completions\": [\"e\"], \"rewards\": [1], "
        "\"best\": 0, \"candidates\": [\"e\", \"f\"], \"candidate_rewards\": [1, 1], "
        "\"model\": \"@R/ppo\"}\n"
        "{\"id\": \"p1\", \"prompt\": \"@E prompt\", \"completions\": [\"ppo answer\"], "
        "\"rewards\": [2], \"best\": 0, \"candidates\": [\"ppo answer\", \"d\"], "
        "\"candidate_rewards\": [2, 1], \"model\": \"@R/ppo\"}\n");
    tpl("eval/test_bon.json",
        "{\"suite\": \"world\", \"model\": null, \"input\": \"@R/eval/bon_sft.jsonl\", "
        "\"dataset\": \"@R/prompts_test.jsonl\", \"sha256\": \"ab\", \"n\": 100, \"metrics\": "
        "{\"hallucination_rate\": {\"value\": 0.2, \"ci95\": [0.1, 0.3]}}, \"seed\": 1}\n");
    tpl("eval/mc_sft.json",
        "{\"suite\": \"mc\", \"model\": \"@R/sft\", \"dataset\": \"@E\", \"sha256\": \"cd\", "
        "\"n\": 10, \"metrics\": {\"ece\": {\"value\": 0.2, \"ci95\": [0.1, 0.3]}, \"brier\": "
        "{\"value\": 0.5, \"ci95\": [null, null]}}, \"reliability\": [{\"lo\": 0, \"hi\": 0.5, "
        "\"count\": 0, \"confidence\": null, \"accuracy\": null}, {\"lo\": 0.5, \"hi\": 1, "
        "\"count\": 10, \"confidence\": 0.8, \"accuracy\": 0.6}]}\n");
    for (int i = 0; i < 2; i++) {
        char rel[64], text[2048];
        snprintf(rel, sizeof rel, "eval/crows_%s.json", i ? "sft" : "base");
        snprintf(text, sizeof text,
                 "{\"suite\": \"crows\", \"model\": \"@R/%s\", \"dataset\": \"pairs.csv\", "
                 "\"sha256\": \"ef\", \"n\": 20, \"metrics\": {\"pct_stereotype\": {\"value\": "
                 "%s}, \"pct_stereotype/@E\": {\"value\": 0.7, \"ci95\": [0.6, 0.8]}, "
                 "\"pct_stereotype/age\": {\"value\": 0.4, \"ci95\": [0.3, 0.5]}}}\n",
                 i ? "sft" : "base",
                 i ? "0.52, \"ci95\": [0.5, 0.54]" : "0.7, \"ci95\": [0.65, 0.75]");
        tpl(rel, text);
    }
    tpl("eval/all_sft.json",
        "{\"suite\": \"all\", \"model\": \"@R/sft\", \"suites\": {\"bbq\": {\"suite\": \"bbq\", "
        "\"model\": \"@R/sft\", \"dataset\": \"Age.jsonl\", \"sha256\": \"01\", \"n\": 5, "
        "\"metrics\": {\"acc\": {\"value\": 0.4, \"ci95\": [0.3, 0.5]}, \"amb_bias_score\": "
        "{\"value\": 0.1, \"ci95\": [0, 0.2]}, \"amb_bias_score_Age\": {\"value\": 0.1, "
        "\"ci95\": [0, 0.2]}, \"amb_bias_score_@E\": {\"value\": -0.1, \"ci95\": [-0.2, 0]}}}, "
        "\"truthfulqa\": {\"suite\": \"truthfulqa\", \"model\": \"@R/sft\", \"dataset\": "
        "\"mc_task.json\", \"sha256\": \"02\", \"n\": 5, \"metrics\": {\"mc1\": {\"value\": 0.2, "
        "\"ci95\": [0.1, 0.3]}, \"mc2\": {\"value\": 0.4, \"ci95\": [0.3, 0.5]}}}}}\n");
    tpl("eval/evil.json", "{\"suite\": \"@E\", \"model\": \"@R/" EVIL_DIR "\", \"dataset\": "
                          "\"@E\", \"sha256\": \"@E\", \"metrics\": {\"@E\": {\"value\": 3, "
                          "\"ci95\": [2, 4]}}}\n");
    tpl("critique/trace.jsonl",
        "{\"id\": \"@E\", \"prompt\": \"@E\", \"draft\": \"@E\", \"draft_broken\": [\"@E\"], "
        "\"draft_score\": 0.5, \"rounds\": [{\"principle\": \"@E\", \"critique\": \"@E\", "
        "\"revision\": \"@E\", \"broken\": [], \"score\": 0.7, \"verdict\": \"@E\"}], "
        "\"response\": \"@E\", \"revised\": true, \"model\": \"@R/sft\"}\n"
        "{\"id\": \"c2\", \"prompt\": \"p\", \"draft\": \"d\", \"draft_broken\": [], "
        "\"draft_score\": null, \"rounds\": [], \"response\": \"d\", \"revised\": false}\n");
    tpl("critique/before.samples.jsonl", "{\"id\": \"p2\", \"prompt\": \"second\", "
                                         "\"completions\": [\"greedy\"], \"model\": \"@R/sft\"}\n");
    tpl("critique/before.world.json",
        "{\"suite\": \"world\", \"model\": null, \"input\": "
        "\"@R/critique/before.samples.jsonl\", \"dataset\": \"@R/prompts.jsonl\", \"metrics\": "
        "{\"hallucination_rate\": {\"value\": 0.4, \"ci95\": [0.3, 0.5]}}}\n");
    tpl("world/prompts.jsonl", "{\"id\": \"p1\", \"prompt\": \"x\"}\n");
    tpl("labels.jsonl", "{\"id\": \"p1\", \"prompt\": \"x\", \"completions\": [\"a\"], "
                        "\"ranking\": [0], \"annotator\": \"a\"}\n");
}

static int model_index(const struct report *r, const char *label)
{
    for (int m = 0; m < r->n_models; m++)
        if (strcmp(r->models[m].label, label) == 0)
            return m;
    return -1;
}

static const struct report_row *row(const struct report *r, const char *group_part,
                                    const char *metric)
{
    for (int i = 0; i < r->n_rows; i++)
        if (strstr(r->rows[i].group, group_part) && strcmp(r->rows[i].metric, metric) == 0)
            return &r->rows[i];
    return NULL;
}

/* No raw control byte but newline and tab, no C1 control, no script element. */
static bool safe_text(const char *s, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ||
            (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
             (unsigned char)s[i + 1] < 0xa0)) {
            tap_diag("%s: control byte 0x%02x at %zu", what, c, i);
            return false;
        }
        if (c == '<' && n - i >= 7 && strncasecmp(s + i, "<script", 7) == 0) {
            tap_diag("%s: a script element at %zu", what, i);
            return false;
        }
    }
    return true;
}

/* Every '&' in HTML starts an entity we write. */
static bool entities_only(const char *s)
{
    static const char *const ok[] = {"&amp;", "&lt;",    "&gt;",   "&quot;",
                                     "&#39;", "&#9650;", "&#9660;"};
    for (const char *p = s; (p = strchr(p, '&')); p++) {
        bool good = false;
        for (size_t k = 0; k < sizeof ok / sizeof *ok; k++)
            good |= strncmp(p, ok[k], strlen(ok[k])) == 0;
        if (!good) {
            tap_diag("a bare '&' before '%.12s'", p);
            return false;
        }
    }
    return true;
}

static void the_report(void)
{
    const char *dirs[] = {root};
    struct report r;
    struct pl_err err = {0};
    int rc = report_load(&r, dirs, 1, NULL, &err);
    if (!tap_is_int(rc, PL_OK, "the fixture loads"))
        tap_diag("%s", err.msg);
    tap_is_int(r.n_runs, 5, "5 run folders: base, sft, rm/model, ppo, the hostile one");
    tap_ok(r.n_models >= 6, "models: base, sft, ppo, two best-of-n files, the hostile one");
    tap_ok(r.n_models > 1 && strcmp(r.models[0].label, "base") == 0 &&
               strcmp(r.models[1].label, "sft") == 0,
           "lineage orders them: base (the reference), then sft");
    int base = model_index(&r, "base"), sft = model_index(&r, "sft"), ppo = model_index(&r, "ppo");
    int bon = model_index(&r, "bon_sft"), bonp = model_index(&r, "bon_ppo");
    tap_ok(ppo > sft && bon > sft && bonp > ppo, "ppo and best-of-n come after sft, bon_ppo after "
                                                 "ppo");
    const struct report_row *h = row(&r, "prompts_test", "hallucination_rate");
    tap_ok(h && base >= 0 && h->cells[base].mark == REPORT_REF && h->cells[base].v == 0.9,
           "hallucination: base is the reference");
    tap_ok(h && sft >= 0 && h->cells[sft].mark == REPORT_BETTER, "sft's lower interval is better");
    tap_ok(h && bon >= 0 && h->cells[bon].v == 0.2, "the best-of-n results file (model null) is "
                                                    "the bon file's column");
    const struct report_row *k = row(&r, "prompts_test", "known_accuracy");
    tap_ok(k && k->cells[sft].mark == REPORT_SAME && k->cells[ppo].mark == REPORT_BETTER,
           "known accuracy: overlapping is ~, disjoint and higher is better");
    const struct report_row *c = row(&r, "crows", "pct_stereotype");
    tap_ok(c && c->cells[sft].mark == REPORT_BETTER, "pct_stereotype: closer to 0.5 is better");
    tap_ok(!row(&r, "crows", "pct_stereotype/age"), "per-category figures stay out of the summary");
    tap_ok(row(&r, "bbq", "acc") && !row(&r, "bbq", "amb_bias_score_Age"),
           "an eval all file counts as its suites");
    const struct report_row *rw = row(&r, "reward-model score", "reward");
    tap_ok(rw && fabs(rw->cells[bon].v - 1.0) < 1e-12 && fabs(rw->cells[sft].v - 0.75) < 1e-12,
           "best-of-n reward: kept answers for the file, all candidates for its policy");
    tap_ok(rw && fabs(rw->cells[bonp].v - 1.5) < 1e-12 && isfinite(rw->cells[bonp].lo),
           "files on the same prompts (in another order) share the row, with a bootstrap "
           "interval");
    const struct report_row *pr = row(&r, "PPO held-out", "eval/reward");
    tap_ok(pr && pr->cells[ppo].v == 0.7 && pr->cells[sft].v == 0.1,
           "PPO: the last held-out reward for ppo, step 0's for the policy it started from");
    const struct report_row *mb = row(&r, "mc", "brier");
    tap_ok(mb && mb->cells[sft].mark == REPORT_REF && isnan(mb->cells[sft].lo),
           "a null interval stays null");

    int kinds[3] = {0};
    for (int i = 0; i < r.n_charts; i++)
        kinds[r.charts[i].section]++;
    tap_ok(kinds[REPORT_CHART_TRAINING] >= 9,
           "training charts: losses, rm accuracy, PPO's five "
           "(%d)",
           kinds[REPORT_CHART_TRAINING]);
    tap_is_int(kinds[REPORT_CHART_RELIABILITY], 1, "one reliability diagram");
    tap_is_int(kinds[REPORT_CHART_BIAS], 2, "bias bars for crows and bbq");
    tap_ok(r.n_groups == 1 && r.groups[0].n_sources == 4 && r.groups[0].n_ids == 2,
           "one group of answers on the same prompts: bon_sft, bon_ppo, sft's details and "
           "greedy answers");
    const struct report_row *g = row(&r, "world \xc2\xb7 prompts.jsonl", "hallucination_rate");
    tap_ok(g && g->cells[sft].v == 0.4 && model_index(&r, "before.samples") < 0,
           "results of --input samples belong to the model that wrote them");

    const struct report_page page = {"<script>title</script> & co", "0.1.0", dirs, 1};
    struct pl_buf html = {0}, md = {0}, json = {0};
    tap_is_int(report_html(&r, &page, &html, &err), PL_OK, "report.html");
    tap_is_int(report_md(&r, &page, &md, &err), PL_OK, "report.md");
    tap_is_int(report_json(&r, &page, &json, &err), PL_OK, "report.json");
    static const char *const ids[] = {"summary", "training", "reliability",  "bias",
                                      "samples", "critique", "reward-model", "provenance"};
    bool all = true;
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        char want[64];
        snprintf(want, sizeof want, "<section id=\"%s\">", ids[i]);
        if (!strstr(html.p, want)) {
            all = false;
            tap_diag("no section %s", ids[i]);
        }
    }
    tap_ok(all, "report.html has every section");
    tap_ok(strstr(html.p, "id=\"summary-table\"") && strstr(html.p, "&#9650; better"),
           "the summary table with a better mark");
    tap_ok(strstr(html.p, "0.300 <span class=\"ci\">[0.200, 0.400]</span>") != NULL,
           "a figure with its interval");
    tap_ok(strstr(html.p, "ppo answer") && strstr(html.p, "second answer") == NULL,
           "sample responses side by side (one answer a prompt from a details file)");
    tap_ok(strstr(html.p, "0000000000000000000000000000000000000000000000000000000000000001") !=
               NULL,
           "the data's sha256 in the provenance");
    tap_ok(strstr(html.p, "plumb sft, seed 1337, plumb version 0.1.0") != NULL,
           "a run's command, seed and version");
    tap_ok(strstr(html.p, "(2 prompts)") && strstr(html.p, "final response"),
           "the constitution trace");
    tap_ok(safe_text(html.p, html.len, "report.html"), "report.html: no control character and "
                                                       "no script element");
    tap_ok(entities_only(html.p), "report.html: every & is an entity");
    tap_ok(!strstr(html.p, "src=") && !strstr(html.p, "href=\"http") && !strstr(html.p, "url(") &&
               !strstr(html.p, "@import"),
           "report.html loads nothing");
    tap_ok(strstr(html.p, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;a&#39; "
                          "[2J") != NULL,
           "the hostile string arrives as text");
    tap_ok(safe_text(md.p, md.len, "report.md"), "report.md: no control character and no script");
    tap_ok(strstr(md.p, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;a&#39; "
                        "\\[2J") != NULL,
           "report.md: the hostile string as text");
    bool rows_ok = true;
    for (const char *l = md.p; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, "| ", 2) == 0) {
            int bars = 0;
            for (const char *p = l; *p && *p != '\n'; p++)
                bars += *p == '|' && p[-1] != '\\';
            rows_ok &= bars >= 2 && l[strcspn(l, "\n") - 1] == '|';
        }
    tap_ok(rows_ok, "report.md: every table row stays one row");
    bool charts_ok = true;
    for (int i = 0; i < r.n_charts; i++)
        charts_ok &= safe_text(r.charts[i].svg.p, r.charts[i].svg.len, r.charts[i].file) &&
                     entities_only(r.charts[i].svg.p);
    tap_ok(charts_ok, "every chart: escaped, no control character");
    cJSON *j = NULL;
    tap_is_int(io_json_parse(json.p, json.len, &j), PL_OK, "report.json is JSON");
    const cJSON *runs = cJSON_GetObjectItem(j, "runs");
    bool has_kl = false;
    for (const cJSON *x = runs ? runs->child : NULL; x; x = x->next)
        has_kl |= cJSON_GetObjectItem(cJSON_GetObjectItem(x, "metrics"), "objective/kl") != NULL;
    tap_ok(has_kl && cJSON_GetArraySize(cJSON_GetObjectItem(j, "summary")) == r.n_rows &&
               cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")) == r.n_results &&
               cJSON_GetArraySize(cJSON_GetObjectItem(j, "critique_traces")) == 1,
           "report.json holds the summary, every run's metrics, results and traces");
    cJSON_Delete(j);
    pl_buf_release(&html);
    pl_buf_release(&md);
    pl_buf_release(&json);
    report_release(&r);
    report_release(&r);
}

/* A folder with one bad file: its error and message. */
static void bad(const char *rel, const char *text, int code, const char *want, const char *what)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tap_tmp("bad"));
    char saved[512];
    snprintf(saved, sizeof saved, "%s", root);
    snprintf(root, sizeof root, "%s", dir);
    mkdir(dir, 0777);
    tpl("ok/run.json", "{\"command\": \"sft\"}\n");
    tpl(rel, text);
    const char *dirs[] = {dir};
    struct report r;
    struct pl_err err = {0};
    int rc = report_load(&r, dirs, 1, NULL, &err);
    report_release(&r);
    tap_is_int(rc, code, "%s: code", what);
    if (!tap_ok(strstr(err.msg, want) != NULL, "%s: message names '%s'", what, want))
        tap_diag("got: %s", err.msg);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    remove(path);
    snprintf(root, sizeof root, "%s", saved);
}

static void bad_input(void)
{
    bad("ok/metrics.jsonl",
        "{\"step\": 1, \"train/loss\": 1}\n{\"step\": 2, \"train/loss\n"
        "{\"step\": 3}\n",
        PL_EFORMAT, "ok/metrics.jsonl:2: not a JSON object", "a malformed metrics line");
    bad("ok/metrics.jsonl", "{\"step\": 1}\n{\"train/loss\": 2}\n", PL_EFORMAT,
        "ok/metrics.jsonl:2: field 'step'", "a metrics line without a step");
    bad("r.json", "{\"suite\": \"world\", \"metrics\": {\"x\": {\"value\": \"high\"}}}", PL_EFORMAT,
        "r.json: metric 'x': expected", "a metric that is not a number");
    bad("r.json", "{\"suite\": \"world\", \"metrics\": {\"x\": {\"value\": 1, \"ci95\": [1]}}}",
        PL_EFORMAT, "r.json: metric 'x'", "an interval of one bound");
    bad("r.json", "{\"suite\": \"world\"}", PL_EFORMAT, "r.json: field 'metrics'",
        "results without metrics");
    bad("r.json", "{\"suite\": \"world\",\n\"metrics\": {,}}", PL_EFORMAT,
        "r.json:2: not valid "
        "JSON",
        "a results file that is not JSON");
    bad("t.jsonl", "{\"id\": \"a\", \"draft\": \"d\", \"rounds\": []}\n{\"id\": \"b\"}\n",
        PL_EFORMAT, "t.jsonl:2: field 'rounds'", "a trace line that is not a trace");
    bad("s.jsonl",
        "{\"prompt\": \"p\", \"completions\": [\"a\"], \"id\": \"1\"}\n"
        "{\"prompt\": \"p\", \"completions\": [\"a\"]}\n",
        PL_EFORMAT, "s.jsonl:2: field 'id'", "an answer without an id");

    const char *none[] = {tap_tmp("empty")};
    mkdir(none[0], 0777);
    struct report r;
    struct pl_err err = {0};
    tap_is_int(report_load(&r, none, 1, NULL, &err), PL_ENOTFOUND,
               "a folder with nothing to "
               "report");
    report_release(&r);
    const char *missing[] = {tap_tmp("missing")};
    tap_is_int(report_load(&r, missing, 1, NULL, &err), PL_ENOTFOUND, "a missing folder");
    report_release(&r);
}

static void allocation_failures(void)
{
    const char *dirs[] = {root};
    const struct report_page page = {"t", "0.1.0", dirs, 1};
    struct pl_err err;
    struct report r;
    struct pl_buf b = {0};
    pl_alloc_fail_at(-1);
    report_load(&r, dirs, 1, NULL, &err);
    report_html(&r, &page, &b, &err);
    report_md(&r, &page, &b, &err);
    report_json(&r, &page, &b, &err);
    long total = pl_alloc_count();
    report_release(&r);
    pl_buf_release(&b);
    long step = total > 20000 ? total / 20000 : 1, bad = 0, tried = 0;
    for (long n = 0; n < total; n += step, tried++) {
        pl_alloc_fail_at(n);
        int rc = report_load(&r, dirs, 1, NULL, &err);
        if (!rc)
            rc = report_html(&r, &page, &b, &err);
        if (!rc)
            rc = report_md(&r, &page, &b, &err);
        if (!rc)
            rc = report_json(&r, &page, &b, &err);
        if (rc != PL_ENOMEM && rc != PL_OK) {
            if (!bad++)
                tap_diag("allocation %ld: code %d: %s", n, rc, err.msg);
        }
        report_release(&r);
        pl_buf_release(&b);
    }
    pl_alloc_fail_at(-1);
    tap_ok(bad == 0 && tried > 100, "every failing allocation (%ld tried of %ld) is PL_ENOMEM",
           tried, total);
}

int main(void)
{
    snprintf(root, sizeof root, "%s", tap_tmpdir("reports-report"));
    strncat(root, "/demo", sizeof root - strlen(root) - 1);
    mkdir(root, 0777);
    fixture();
    the_report();
    bad_input();
    allocation_failures();
    return tap_done();
}
