/* cmd-report: `plumb report` as a user meets it, run in a child process through cmd_report:
 * --help, usage errors (exit 2), a report of a small demo folder and its files, a rerun, a bad
 * metrics line (exit 1, file and line named, the earlier report left as it was), and the page
 * rendered by headless Chromium (skipped when /usr/bin/chromium is absent) with the summary
 * table and charts in its DOM and every host lookup refused. */
#include "cmd/report.h"

#include "tests/fixture.h"
#include "tests/tap.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[1 << 16], err[1 << 16];

/* Run "plumb report ARGS" (split at spaces) in a child: exit status, stdout in out, stderr in
 * err. */
__attribute__((format(printf, 1, 2))) static int report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tap_run_cmdv(out, sizeof out, err, sizeof err, cmd_report, "report", fmt, ap);
    va_end(ap);
    return rc;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void fixture(const char *d)
{
    char p[1024];
    mkdir(d, 0777);
    snprintf(p, sizeof p, "%s/sft", d);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/eval", d);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/sft/run.json", d);
    tap_write_file(p, "{\"plumb_version\": \"0.1.0\", \"command\": \"sft\", \"seed\": 5}\n");
    snprintf(p, sizeof p, "%s/sft/metrics.jsonl", d);
    tap_write_file(p, "{\"step\": 0, \"eval/loss\": 3}\n{\"step\": 1, \"train/loss\": 2}\n"
                      "{\"step\": 2, \"train/loss\": 1, \"eval/loss\": 1.5}\n");
    snprintf(p, sizeof p, "%s/eval/test_sft.json", d);
    tap_write_file(p, "{\"suite\": \"world\", \"model\": \"sft\", \"dataset\": \"t.jsonl\", "
                      "\"sha256\": \"aa\", \"n\": 4, \"metrics\": {\"hallucination_rate\": "
                      "{\"value\": 0.25, \"ci95\": [0, 0.5]}}, \"seed\": 1}\n");
    snprintf(p, sizeof p, "%s/base", d);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/base/run.json", d);
    tap_write_file(p, "{\"plumb_version\": \"0.1.0\", \"command\": \"pretrain\", \"seed\": 1}\n");
    snprintf(p, sizeof p, "%s/base/metrics.jsonl", d);
    tap_write_file(p, "{\"step\": 1, \"train/loss\": 5}\n{\"step\": 2, \"train/loss\": 4}\n");
}

/* Headless Chromium: the DOM of the page and a screenshot, with every host name refused. */
static void chromium(const char *html)
{
    const char *bin = "/usr/bin/chromium";
    if (access(bin, X_OK) != 0) {
        tap_skip(3, "chromium is not installed (Debian package chromium)");
        return;
    }
    char cmd[4096];
    const char *flags = "--headless --no-sandbox --disable-gpu --no-first-run "
                        "--host-resolver-rules='MAP * ~NOTFOUND' --window-size=1280,2400";
    snprintf(cmd, sizeof cmd, "%s %s --dump-dom 'file://%s' >%s 2>/dev/null", bin, flags, html,
             tap_tmp("dom.html"));
    int rc = system(cmd);
    static char dom[1 << 20];
    tap_read_into(tap_tmp("dom.html"), dom, sizeof dom);
    tap_ok(rc == 0 && strstr(dom, "id=\"summary-table\"") && strstr(dom, "0.250"),
           "chromium's DOM holds the summary table");
    tap_ok(strstr(dom, "<svg") && strstr(dom, "polyline"), "and the charts");
    snprintf(cmd, sizeof cmd, "cd %s && %s %s --screenshot='%s' 'file://%s' >/dev/null 2>&1",
             tap_tmpdir("cmd-report"), bin, flags, tap_tmp("shot.png"), html);
    rc = system(cmd);
    char png[8] = {0};
    tap_read_into(tap_tmp("shot.png"), png, sizeof png);
    tap_ok(rc == 0 && memcmp(png, "\x89PNG", 4) == 0, "a PNG screenshot of the page");
}

int main(void)
{
    tap_tmpdir("cmd-report");
    char demo[512], o[512], html[600];
    snprintf(demo, sizeof demo, "%s", tap_tmp("demo"));
    snprintf(o, sizeof o, "%s", tap_tmp("demo/report"));
    snprintf(html, sizeof html, "%s/report.html", o);
    fixture(demo);

    tap_is_int(report("--help"), 0, "--help exits 0");
    tap_ok(strstr(out, "--runs DIR...") && strstr(out, "--out DIR") && strstr(out, "--title"),
           "--help lists the options");
    tap_is_int(report("--out %s", o), 2, "no --runs: usage error");
    tap_ok(strstr(err, "option '--runs' is required") != NULL, "it names the option");
    tap_is_int(report("--runs %s --out %s --colour", demo, o), 2, "an unknown option: 2");
    tap_is_int(report("--runs %s --out %s", demo, demo), 2, "--out that is a --runs folder: 2");
    tap_ok(strstr(err, "is one of the --runs folders") != NULL, "and says why");
    tap_is_int(report("--runs %s --out %s", tap_tmp("nothing"), o), 1, "a missing folder: 1");
    tap_ok(strstr(err, "cannot read folder") != NULL, "the error names the folder");

    tap_is_int(report("--runs %s --out %s --title T", demo, o), 0, "a report of the demo folder");
    tap_ok(strstr(out, "models 1, training runs 2, eval results 1, charts 2") != NULL,
           "it says what it found");
    char p[1024];
    const char *files[] = {"report.html", "report.md", "report.json", "chart-01.svg",
                           "chart-02.svg"};
    bool all = true;
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", o, files[i]);
        all &= exists(p);
        snprintf(p, sizeof p, "%s/%s.tmp", o, files[i]);
        all &= !exists(p);
    }
    tap_ok(all, "report.html, report.md, report.json and the charts, no temporary file left");
    static char page[1 << 20];
    tap_read_into(html, page, sizeof page);
    tap_ok(!strstr(page, "src=") && !strstr(page, "href=\"http") && !strstr(page, "<script") &&
               strstr(page, "Content-Security-Policy"),
           "report.html fetches nothing and runs no script");

    tap_is_int(report("--runs %s --out %s", demo, o), 0, "a rerun into the same folder");
    tap_ok(strstr(out, "charts 2") != NULL, "reads nothing of its own earlier report");
    snprintf(p, sizeof p, "rm -rf %s/base", demo);
    tap_is_int(system(p), 0, "one run removed");
    tap_is_int(report("--runs %s --out %s", demo, o), 0, "a rerun");
    snprintf(p, sizeof p, "%s/chart-02.svg", o);
    tap_ok(!exists(p), "the chart of the removed run is gone");

    snprintf(p, sizeof p, "%s/sft/metrics.jsonl", demo);
    tap_write_file(p, "{\"step\": 1, \"train/loss\": 2}\n{\"step\": 2, \"train/loss\": }\n");
    static char before[1 << 20];
    size_t n = tap_read_into(html, before, sizeof before);
    tap_is_int(report("--runs %s --out %s", demo, o), 1, "a bad metrics line: exit 1");
    tap_ok(strstr(err, "sft/metrics.jsonl:2: not a JSON object") != NULL,
           "the error names file and line");
    size_t m = tap_read_into(html, page, sizeof page);
    tap_ok(m == n && memcmp(page, before, n) == 0, "the earlier report is left as it was");
    snprintf(p, sizeof p, "%s/sft/metrics.jsonl", demo);
    tap_write_file(p, "{\"step\": 1, \"train/loss\": 2}\n");
    tap_is_int(report("--runs %s --out %s", demo, o), 0, "fixed, it runs again");
    chromium(html);
    return tap_done();
}
