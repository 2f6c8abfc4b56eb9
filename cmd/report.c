#include "report.h"

#include "args.h"

#include "model/io.h"
#include "reports/html.h"
#include "reports/md.h"
#include "reports/report.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* path = dir/name, written whole or not at all. */
static int write_file(const char *dir, const char *name, const struct pl_buf *b, struct pl_err *err)
{
    char *path = io_path_join(dir, name);
    if (!path)
        return pl_oom(err, "a path");
    int rc = io_write_atomic(path, b->p ? b->p : "", b->len, err);
    pl_free(path);
    return rc;
}

/* A rerun with fewer charts leaves no chart of the earlier run beside report.md. */
static int drop_old_charts(const char *dir, int from, struct pl_err *err)
{
    for (int k = from;; k++) {
        char name[64];
        snprintf(name, sizeof name, "chart-%02d.svg", k);
        char *path = io_path_join(dir, name);
        if (!path)
            return pl_oom(err, "a path");
        int gone = unlink(path) == 0 ? 0 : errno;
        pl_free(path);
        if (gone == ENOENT)
            return PL_OK;
        if (gone)
            return pl_errf(err, PL_EIO, "cannot remove '%s/%s': %s", dir, name, strerror(gone));
    }
}

static int write_report(const struct report *r, const struct report_page *page, const char *out,
                        struct pl_err *err)
{
    int rc = io_mkdirs(out, err);
    for (int i = 0; !rc && i < r->n_charts; i++)
        rc = write_file(out, r->charts[i].file, &r->charts[i].svg, err);
    if (!rc)
        rc = drop_old_charts(out, r->n_charts + 1, err);
    struct pl_buf html = {0}, md = {0}, json = {0};
    if (!rc)
        rc = report_html(r, page, &html, err);
    if (!rc)
        rc = report_md(r, page, &md, err);
    if (!rc)
        rc = report_json(r, page, &json, err);
    if (!rc)
        rc = write_file(out, "report.json", &json, err);
    if (!rc)
        rc = write_file(out, "report.md", &md, err);
    if (!rc)
        rc = write_file(out, "report.html", &html, err);
    pl_buf_release(&html);
    pl_buf_release(&md);
    pl_buf_release(&json);
    return rc;
}

/* Whether the report may go into folder out: missing, empty, an earlier report (report.json
 * there) or --force. A folder that cannot be read is left to the writing to report. */
static bool out_free(const char *out, bool force)
{
    struct pl_err err;
    bool empty = false;
    if (force || io_dir_empty(out, &empty, &err) != PL_OK || empty)
        return true;
    char *prev = io_path_join(out, "report.json");
    bool ours = !prev || access(prev, F_OK) == 0;
    pl_free(prev);
    if (!ours)
        fprintf(stderr,
                "plumb report: '%s' is not empty and holds no earlier report; --force writes the "
                "report beside what is there\n",
                out);
    return ours;
}

int cmd_report(int argc, char **argv)
{
    struct cmd_list runs = {0};
    const char *out = NULL, *title = "plumb report";
    bool force = false;
    const struct cmd_opt opts[] = {
        {"--runs", CMD_LIST, &runs, 0, 0, "DIR...",
         "run folders, or folders holding runs and eval results (runs/demo)", true},
        {"--out", CMD_STR, &out, 0, 0, "DIR",
         "write report.html, report.md (+ chart-NN.svg) and report.json there", true},
        {"--title", CMD_STR, &title, 0, 0, "TEXT", "the report's title (plumb report)", false},
        {"--force", CMD_FLAG, &force, 0, 0, NULL,
         "write into a non-empty --out that holds no earlier report", false},
    };
    const struct cmd_spec spec = {
        .name = "report",
        .summary = "an HTML, Markdown and JSON report of runs and eval results",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    for (int i = 0; i < runs.n; i++)
        if (strcmp(runs.v[i], out) == 0 || io_same_file(runs.v[i], out))
            return cmd_usage(&spec, "--out '%s' is one of the --runs folders; write elsewhere",
                             out);
    if (!out_free(out, force))
        return 1;
    struct pl_err err = {0};
    struct report r;
    rc = report_load(&r, runs.v, runs.n, out, &err);
    const struct report_page page = {title, CMD_VERSION, runs.v, runs.n};
    if (!rc)
        rc = write_report(&r, &page, out, &err);
    if (!rc)
        printf("models %d, training runs %d, eval results %d, charts %d\n"
               "wrote %s/report.html, %s/report.md (+ %d chart-NN.svg), %s/report.json\n",
               r.n_models, r.n_runs, r.n_results, r.n_charts, out, out, r.n_charts, out);
    report_release(&r);
    return cmd_fail(&err, rc);
}
