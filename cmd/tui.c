/* sigaction is POSIX, but its struct needs the X/Open names of <signal.h> for SA_* here. */
#define _XOPEN_SOURCE 700

#include "tui.h"

#include "args.h"

#include "datasets/ds.h"
#include "model/io.h"
#include "tui/agree.h"
#include "tui/draw.h"
#include "tui/state.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- plumb label ---- */

struct label_args {
    const char *samples, *labels, *annotator, *guidelines, *order;
    uint64_t seed;
    int overlap;
};

static const char *label_check(void *ctx)
{
    const struct label_args *a = ctx;
    if (a->order && strcmp(a->order, "file") != 0 && strcmp(a->order, "shuffle") != 0)
        return "option '--order': expected 'file' or 'shuffle'";
    if (!a->annotator[0])
        return "option '--annotator': the name must not be empty";
    return NULL;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* SIGINT, SIGTERM and SIGHUP end the session like q does (every label is on disk already), so
 * that the terminal is given back; no SA_RESTART, so a waiting read returns. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void iso_now(char *out, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* Make the labels file ready to append to: a cut-short last line (a crash while writing) is cut
 * off, and what is there must read as datasets/ds.h reads labels, so that `plumb rm train` takes
 * the file this session extends. *cut tells whether a line was cut. */
static int labels_prepare(const char *path, bool *cut, struct pl_err *err)
{
    long keep = -1;
    int rc = io_jsonl_tail(path, &keep, err);
    *cut = rc == PL_OK && keep >= 0;
    if (*cut)
        rc = io_truncate(path, keep, err);
    struct stat st;
    if (rc || stat(path, &st) != 0 || st.st_size == 0)
        return rc;
    struct ds_prefs set = {0};
    rc = ds_prefs_load(&set, path, 0, err);
    ds_prefs_release(&set);
    return rc;
}

/* Whether the labels can be appended to, found now rather than at the first submit; a missing
 * file is not created (an empty labels file is one `plumb rm train` refuses), its folder must
 * be writable. */
static int labels_writable(const char *path, struct pl_err *err)
{
    if (access(path, F_OK) == 0)
        return access(path, W_OK) == 0
                   ? PL_OK
                   : pl_errf(err, PL_EIO, "cannot write '%s': %s", path, strerror(errno));
    const char *slash = strrchr(path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
    return access(dir, W_OK | X_OK) == 0
               ? PL_OK
               : pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
}

/* The session on the terminal, until q, a signal or an error; *written counts the records. */
static int label_loop(struct tui_state *s, struct tui_draw *d, const char *labels, long *offset,
                      long *lineno, long *written, struct pl_err *err)
{
    int rc = PL_OK;
    bool redraw = true;
    while (rc == PL_OK && !stop_signal) {
        if (redraw && (rc = tui_draw_screen(d, s, err)))
            break;
        int key = tui_draw_key(d);
        redraw = key != 0;
        if (key <= 0)
            continue;
        char now[32];
        iso_now(now, sizeof now);
        enum tui_act act = tui_state_key(s, key, pl_now(), now);
        if (act == TUI_QUIT)
            break;
        if (act != TUI_APPEND)
            continue;
        struct pl_err werr = {0};
        if (io_append_durable(labels, s->out.p, s->out.len, &werr)) {
            tui_state_dropped(s, werr.msg);
            continue;
        }
        /* The first record may have made the file: its folder entry is made durable too. Other
         * annotators' labels since the last look decide what is served next (--overlap). A
         * failure of either is shown, and the session goes on: the record is in the file. */
        int note = *written == 0 ? io_sync_parent(labels, &werr) : PL_OK;
        (*written)++;
        if (note == PL_OK)
            note = tui_state_read(s, labels, offset, lineno, false, &werr);
        tui_state_appended(s, pl_now());
        if (note)
            snprintf(s->msg, sizeof s->msg, "%.250s", werr.msg);
    }
    return rc;
}

int cmd_label(int argc, char **argv)
{
    struct label_args a = {.order = "file", .annotator = ""};
    const struct cmd_opt opts[] = {
        {"--samples", CMD_STR, &a.samples, 0, 0, "FILE",
         "completions to rank: {\"id\", \"prompt\", \"completions\"} a line (plumb sample)", true},
        {"--labels", CMD_STR, &a.labels, 0, 0, "FILE",
         "labels to append to (created if missing; may be shared by annotators)", true},
        {"--annotator", CMD_STR, &a.annotator, 0, 0, "NAME", "who is labelling", true},
        {"--guidelines", CMD_STR, &a.guidelines, 0, 0, "FILE", "text shown by the g key", false},
        {"--order", CMD_STR, &a.order, 0, 0, "file|shuffle", "order the items are served in (file)",
         false},
        {"--seed", CMD_U64, &a.seed, 0, 0, "N", "seed of --order shuffle (0)", false},
        {"--overlap", CMD_INT, &a.overlap, 1, 1000, "N",
         "serve each item to N annotators of the labels file, started ones first (all)", false},
    };
    const struct cmd_spec spec = {
        .name = "label",
        .summary = "rank sampled completions in the terminal, appending labels",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = label_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if (io_same_file(a.samples, a.labels) || (a.guidelines && io_same_file(a.guidelines, a.labels)))
        return cmd_usage(&spec, "--labels '%s' is an input; write the labels elsewhere", a.labels);
    /* Before anything is read or written: a session needs a person at a terminal. */
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "plumb label: needs a terminal (stdin and stdout)\n");
        return 1;
    }
    struct pl_err err = {0};
    struct tui_items items;
    struct tui_state s = {0};
    struct tui_draw d = {0};
    char *guide = NULL;
    size_t guide_len = 0;
    bool cut = false;
    long offset = 0, lineno = 0, written = 0;
    rc = tui_items_init(&items, a.samples, &err);
    if (rc == PL_OK && a.guidelines)
        rc = io_read_file(a.guidelines, &guide, &guide_len, &err);
    if (rc == PL_OK)
        rc = labels_prepare(a.labels, &cut, &err);
    if (rc == PL_OK)
        rc = labels_writable(a.labels, &err);
    if (rc == PL_OK)
        rc = tui_state_init(&s, &items, a.annotator, strcmp(a.order, "shuffle") == 0, a.seed,
                            a.overlap, &err);
    if (rc == PL_OK)
        rc = tui_state_read(&s, a.labels, &offset, &lineno, true, &err);
    if (rc == PL_OK) {
        tui_state_start(&s, pl_now());
        if (cut)
            snprintf(s.msg, sizeof s.msg,
                     "cut off a cut-short last line of %s (a crash while writing)", a.labels);
        catch_signals();
        rc = tui_draw_open(&d, guide, guide_len, 250, &err);
    }
    if (rc == PL_OK)
        rc = label_loop(&s, &d, a.labels, &offset, &lineno, &written, &err);
    tui_draw_release(&d);
    if (rc == PL_OK) {
        struct tui_progress p;
        tui_state_progress(&s, &p);
        fprintf(stderr,
                "%s: %ld record%s written; %s has %ld of %ld items labelled, %ld skipped%s\n",
                a.labels, written, written == 1 ? "" : "s", a.annotator, p.done, p.total, p.skipped,
                stop_signal ? " (interrupted)" : "");
    }
    tui_state_release(&s);
    tui_items_release(&items);
    pl_free(guide);
    if (rc)
        return cmd_fail(&err, rc);
    return stop_signal ? 128 + (int)stop_signal : 0;
}

/* ---- plumb agree ---- */

static void print_num(double x)
{
    if (isnan(x))
        printf(" %9s", "-");
    else
        printf(" %9.3f", x);
}

static void json_num(struct pl_buf *b, const char *name, double x)
{
    if (isnan(x))
        pl_buf_printf(b, ",\"%s\":null", name);
    else
        pl_buf_printf(b, ",\"%s\":%.6g", name, x);
}

static void print_json(const struct tui_agree *g)
{
    struct pl_buf b = {0};
    pl_buf_printf(&b, "{\"units\":%ld,\"annotators\":%d,\"rows\":[", g->n_units, g->n_annotators);
    for (int i = 0; i < g->n_rows; i++) {
        const struct tui_agree_row *r = &g->rows[i];
        pl_buf_str(&b, i ? ",{\"a\":" : "{\"a\":");
        if (r->a) {
            pl_buf_json(&b, r->a, strlen(r->a));
            pl_buf_str(&b, ",\"b\":");
            pl_buf_json(&b, r->b, strlen(r->b));
        } else
            pl_buf_str(&b, "null,\"b\":null");
        pl_buf_printf(&b, ",\"units\":%ld,\"pairs\":%ld", r->units, r->pairs);
        json_num(&b, "agreement", r->pairs ? (double)r->agree / (double)r->pairs : NAN);
        json_num(&b, "kendall_tau_b", r->tau);
        pl_buf_printf(&b, ",\"tau_units\":%ld", r->tau_units);
        json_num(&b, "alpha_ordinal", r->alpha);
        pl_buf_str(&b, "}");
    }
    pl_buf_str(&b, "]}\n");
    if (!b.oom)
        fputs(b.p, stdout);
    pl_buf_release(&b);
}

static void print_table(const struct tui_agree *g)
{
    printf("%ld units, %d annotators\n\n", g->n_units, g->n_annotators);
    printf("%-32s %7s %7s %9s %9s %9s\n", "annotators", "units", "pairs", "agreement", "tau-b",
           "alpha");
    for (int i = 0; i < g->n_rows; i++) {
        const struct tui_agree_row *r = &g->rows[i];
        char who[256];
        if (r->a)
            snprintf(who, sizeof who, "%s / %s", r->a, r->b);
        else
            snprintf(who, sizeof who, "overall");
        /* Names are user data: keep control characters off the terminal. */
        for (char *c = who; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
        printf("%-32s %7ld %7ld", who, r->units, r->pairs);
        print_num(r->pairs ? (double)r->agree / (double)r->pairs : NAN);
        print_num(r->tau);
        print_num(r->alpha);
        printf("\n");
    }
    printf("\nagreement: share of completion pairs both order strictly that they order alike;\n"
           "tau-b: Kendall's tau-b per unit, averaged; alpha: Krippendorff's alpha, ordinal.\n");
    if (g->replaced)
        printf("%ld rankings were replaced by the same annotator's in a later file.\n",
               g->replaced);
}

int cmd_agree(int argc, char **argv)
{
    struct cmd_list labels = {0};
    bool json = false;
    const struct cmd_opt opts[] = {
        {"--labels", CMD_LIST, &labels, 0, 0, "FILE", "label files (plumb label, plumb simlabel)",
         true},
        {"--json", CMD_FLAG, &json, 0, 0, NULL, "print the figures as JSON", false},
    };
    const struct cmd_spec spec = {
        .name = "agree",
        .summary = "agreement between annotators: pairwise, Kendall's tau-b, Krippendorff's alpha",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    struct pl_err err = {0};
    struct tui_agree_set set = {0};
    struct tui_agree g = {0};
    rc = PL_OK;
    /* The preference loader first, so that a bad file gets the message `plumb rm train` gives. */
    for (int i = 0; rc == PL_OK && i < labels.n; i++) {
        struct ds_prefs check = {0};
        rc = ds_prefs_load(&check, labels.v[i], 0, &err);
        ds_prefs_release(&check);
        if (rc == PL_OK)
            rc = tui_agree_load(&set, labels.v[i], &err);
    }
    if (rc == PL_OK)
        rc = tui_agree_init(&g, &set, &err);
    if (rc == PL_OK && g.n_annotators < 2)
        rc = pl_errf(&err, PL_EFORMAT, "%s: %d annotator%s: agreement needs two", labels.v[0],
                     g.n_annotators, g.n_annotators == 1 ? "" : "s");
    if (rc == PL_OK) {
        if (json)
            print_json(&g);
        else
            print_table(&g);
    }
    tui_agree_release(&g);
    tui_agree_set_release(&set);
    return rc ? cmd_fail(&err, rc) : 0;
}
