/* cmd-crash: the plumb binary ($PLUMB_BIN) killed with SIGKILL at seeded random points, again and
 * again, as a power cut or the OOM killer would.
 * - pretrain, sft, rm train and ppo, a checkpoint every step: killed inside a chosen atomic write
 *   (PLUMB_TEST_KILL_IN=atomic:N, model/io.c) and at random moments of the run; after each kill
 *   every file of the run is whole and the checkpoint is no older than before, and --resume then
 *   ends with the uninterrupted run's weights, config and metrics, bit for bit, and no temporary
 *   file.
 * - sample and critique: after each kill the output holds whole lines (a cut-short last line is
 *   the one exception io_append_durable allows, and the rerun cuts it), and the rerun completes it
 *   without a duplicate: sample's records are the uninterrupted run's (in completion order),
 *   critique's files its very bytes.
 * - label, on a pseudo-terminal: every label whose submit the screen acknowledged is on disk.
 * Tiny byte-level models, one thread. The kill points tried are printed as diagnostics; they come
 * from a fixed seed, CRASH_SEED=N picks others. */
#define _XOPEN_SOURCE 700

#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILLS 5        /* kill points of each kind per training command */
#define KILLS_APPEND 8 /* kill points per command that appends (sample, critique, label) */

static const char *bin;
static struct pl_rng rng;

static void sleep_s(double s)
{
    struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

/* ---- running plumb ---- */

/* Start "plumb ARGS" (a shell fragment) with PLUMB_TEST_KILL_IN=kill_in (NULL: unset), its
 * output to log.txt in the test's folder. */
static pid_t spawn(const char *kill_in, const char *args)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "exec %s %s >>%s 2>&1 </dev/null", bin, args, tap_tmp("log.txt"));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (kill_in)
            setenv("PLUMB_TEST_KILL_IN", kill_in, 1);
        else
            unsetenv("PLUMB_TEST_KILL_IN");
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* How a run ended. */
enum end { END_OK, END_FAILED, END_KILLED };

static enum end wait_end(pid_t pid)
{
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
        return END_KILLED;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? END_OK : END_FAILED;
}

/* Run plumb to its end (or to the kill PLUMB_TEST_KILL_IN=kill_in asks for). */
static enum end run(const char *kill_in, const char *args)
{
    return wait_end(spawn(kill_in, args));
}

static const char *end_name(enum end e)
{
    return e == END_OK ? "finished first" : e == END_KILLED ? "killed" : "FAILED";
}

/* ---- files ---- */

/* fmt formatted into one of 8 rotating buffers: a path valid for the next seven calls. */
__attribute__((format(printf, 1, 2))) static const char *fmt_path(const char *fmt, ...)
{
    static char bufs[8][2 * PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    return b;
}

static char *slurp(const char *path, size_t *n)
{
    char *data = NULL;
    struct pl_err err = {0};
    *n = 0;
    if (access(path, F_OK) == 0 && io_read_file(path, &data, n, &err) != PL_OK)
        tap_diag("%s", err.msg);
    return data;
}

/* Whether folder dir holds a file ending in ".tmp": an atomic write that never finished. */
static bool has_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && (e = readdir(d));)
        found |= io_has_suffix(e->d_name, ".tmp");
    if (d)
        closedir(d);
    return found;
}

/* A metrics or record line as JSON without the wall-clock fields, which differ between runs:
 * "time", "time/...", "..._per_s". NULL when it is not a JSON object. */
static char *without_timing(const char *line, size_t len)
{
    cJSON *o = NULL;
    if (io_json_parse(line, len, &o) != PL_OK || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    for (cJSON *c = o->child, *next; c; c = next) {
        next = c->next;
        if (strcmp(c->string, "time") == 0 || strncmp(c->string, "time/", 5) == 0 ||
            io_has_suffix(c->string, "per_s"))
            cJSON_DeleteItemFromObjectCaseSensitive(o, c->string);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* metrics.jsonl files that agree line by line but for the wall-clock fields. */
static bool same_metrics(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y;
    const char *p = x, *q = y;
    while (same && (*p || *q)) {
        const char *ep = strchr(p, '\n'), *eq = strchr(q, '\n');
        char *sp = ep ? without_timing(p, (size_t)(ep - p)) : NULL;
        char *sq = eq ? without_timing(q, (size_t)(eq - q)) : NULL;
        same = sp && sq && strcmp(sp, sq) == 0;
        if (!same)
            tap_diag("metrics differ:\n  %.*s\n  %.*s", ep ? (int)(ep - p) : 80, p,
                     eq ? (int)(eq - q) : 80, q);
        cJSON_free(sp);
        cJSON_free(sq);
        p = ep ? ep + 1 : p;
        q = eq ? eq + 1 : q;
    }
    pl_free(x);
    pl_free(y);
    return same;
}

static long count_lines(const char *path)
{
    size_t n;
    char *d = slurp(path, &n);
    long lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += d[i] == '\n';
    pl_free(d);
    return lines;
}

/* Run plumb until path holds `lines` lines (or it ends), then SIGKILL it `delay` seconds later:
 * kill points spread over the run's progress, whatever the machine's speed. */
static enum end run_until(const char *args, const char *path, long lines, double delay)
{
    pid_t pid = spawn(NULL, args);
    off_t seen = -1;
    int st;
    for (;;) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? END_OK : END_FAILED;
        struct stat sb;
        if (stat(path, &sb) == 0 && sb.st_size != seen) {
            seen = sb.st_size;
            if (count_lines(path) >= lines)
                break;
        }
        sleep_s(0.001);
    }
    sleep_s(delay);
    kill(pid, SIGKILL);
    return wait_end(pid);
}

/* ---- the training commands ---- */

struct train_cmd {
    const char *name; /* "pretrain" */
    const char *args; /* every option but --out and --resume */
    const char *sub;  /* a second model's folder inside the run folder (PPO's "value"), or NULL */
    int steps;        /* optimizer steps of an uninterrupted run */
    int per;          /* steps between checkpoints (PPO: an iteration's minibatches) */
    int writes;       /* atomic writes a checkpoint takes, about */
};

/* Whether model folder dir loads whole (when it has a config.json at all). */
static bool model_whole(const char *dir, char *why, size_t cap)
{
    if (access(fmt_path("%s/config.json", dir), F_OK) != 0)
        return true;
    struct gpt m;
    struct gpt_opts o = {.max_batch = 1, .max_seq = 1};
    struct pl_err err = {0};
    int rc = ckpt_load(&m, dir, &o, &err);
    gpt_release(&m);
    if (rc)
        snprintf(why, cap, "%.400s", err.msg);
    return rc == PL_OK;
}

/* Every file of run folder dir is whole: the model folders load, run.json parses, the state file
 * is valid and its step no older than *step (which it then becomes; -1: none), and metrics.jsonl
 * holds whole JSON lines up to the length the state records. */
static bool run_whole(const struct train_cmd *c, const char *dir, long *step, char *why, size_t cap)
{
    why[0] = '\0';
    if (!model_whole(dir, why, cap))
        return false;
    if (c->sub && !model_whole(fmt_path("%s/%s", dir, c->sub), why, cap))
        return false;
    const char *path = fmt_path("%s/run.json", dir);
    cJSON *j = NULL;
    struct pl_err err = {0};
    if (access(path, F_OK) == 0 && io_json_load(path, &j, &err) != PL_OK) {
        snprintf(why, cap, "%.400s", err.msg);
        return false;
    }
    cJSON_Delete(j);
    path = fmt_path("%s/state.safetensors", dir);
    if (access(path, F_OK) != 0) {
        if (*step >= 0)
            snprintf(why, cap, "the checkpoint of step %ld is gone", *step);
        return *step < 0;
    }
    struct ckpt_file f;
    int64_t s = -1;
    uint64_t bytes = 0;
    int rc = ckpt_file_open(&f, path, &err);
    if (rc == PL_OK)
        rc = ckpt_file_get(&f, "step", CKPT_I64, &s, 1, &err);
    if (rc == PL_OK)
        rc = ckpt_file_get(&f, "metrics.bytes", CKPT_U64, &bytes, 1, &err);
    ckpt_file_release(&f);
    if (rc) {
        snprintf(why, cap, "%.400s", err.msg);
        return false;
    }
    if (s < *step) {
        snprintf(why, cap, "the checkpoint went back from step %ld to %ld", *step, (long)s);
        return false;
    }
    *step = (long)s;
    size_t n;
    char *m = slurp(fmt_path("%s/metrics.jsonl", dir), &n);
    bool ok = m && n >= bytes && (bytes == 0 || m[bytes - 1] == '\n');
    for (const char *p = m, *e; ok && p < m + bytes; p = e + 1) {
        e = strchr(p, '\n');
        char *line = without_timing(p, (size_t)(e - p));
        ok = line != NULL;
        cJSON_free(line);
    }
    pl_free(m);
    if (!ok)
        snprintf(why, cap, "metrics.jsonl is not whole up to its checkpoint's %llu bytes",
                 (unsigned long long)bytes);
    return ok;
}

/* The run at dir reached what the uninterrupted run at whole did: weights, config, metrics; and
 * no temporary file is left. */
static bool same_run(const struct train_cmd *c, const char *dir, const char *whole)
{
    const char *a, *b;
    bool same = true;
    for (int k = 0; k < (c->sub ? 2 : 1); k++) {
        const char *sub = k ? c->sub : ".";
        static const char *const files[] = {"model.safetensors", "config.json"};
        for (int i = 0; i < 2; i++) {
            a = fmt_path("%s/%s/%s", dir, sub, files[i]);
            b = fmt_path("%s/%s/%s", whole, sub, files[i]);
            if (!tap_same_file(a, b)) {
                tap_diag("%s differs from %s", a, b);
                same = false;
            }
        }
        a = fmt_path("%s/%s", dir, sub);
        if (has_tmp(a)) {
            tap_diag("%s holds a .tmp file", a);
            same = false;
        }
    }
    a = fmt_path("%s/metrics.jsonl", dir);
    b = fmt_path("%s/metrics.jsonl", whole);
    return same_metrics(a, b) && same;
}

/* One chain of kills in one run folder, each followed by --resume. hook: inside the Nth atomic
 * write; else once metrics.jsonl (flushed at each checkpoint) has N lines and a random time
 * within about a step later. */
static void kill_chain(const struct train_cmd *c, bool hook, double seconds)
{
    char dir[PATH_MAX], args[8192], why[512], kill_in[32];
    snprintf(dir, sizeof dir, "%s", tap_tmp(hook ? "hook" : "timed"));
    snprintf(args, sizeof args, "%s %s --out %s --resume", c->name, c->args, dir);
    char metrics[2 * PATH_MAX];
    snprintf(metrics, sizeof metrics, "%s", fmt_path("%s/metrics.jsonl", dir));
    long step = -1, total = count_lines(fmt_path("%s/metrics.jsonl", tap_tmp("whole")));
    int killed = 0, whole = 0;
    struct pl_buf tried = {0};
    for (int i = 0; i < KILLS; i++) {
        /* Within what is left of the run, about 1 / (kills to go + 1) of it on average, so that
         * the chain spreads its kills over the whole run. */
        long left = (c->steps - (step > 0 ? step : 0)) / c->per, done = count_lines(metrics);
        double share = 2.0 / (KILLS - i + 1);
        long n = 1 + (long)(pl_rng_uniform(&rng) * share * (double)(c->writes * left + 2));
        long at = done + 1 + (long)(pl_rng_uniform(&rng) * share * (double)(total - done - 2));
        at = at < total ? at : total - 1; /* before the last line: the run's end */
        double t = pl_rng_uniform(&rng) * 1.5 * seconds / (double)total;
        snprintf(kill_in, sizeof kill_in, "atomic:%ld", n);
        enum end e = hook ? run(kill_in, args) : run_until(args, metrics, at, t);
        bool ok = e != END_FAILED && run_whole(c, dir, &step, why, sizeof why);
        killed += e == END_KILLED;
        whole += ok;
        if (hook)
            pl_buf_printf(&tried, " %s", kill_in);
        else
            pl_buf_printf(&tried, " %ld+%.0fms", at, t * 1e3);
        pl_buf_printf(&tried, "->%s%s", e == END_KILLED ? "" : end_name(e),
                      step >= 0 ? "" : "none");
        if (step >= 0)
            pl_buf_printf(&tried, "%ld", step);
        if (!ok)
            tap_diag("%s, kill %d: %s", c->name, i + 1, why[0] ? why : end_name(e));
    }
    tap_diag("%s, %s (kill point -> checkpoint step):%s", c->name,
             hook ? "killed inside atomic write N"
                  : "killed once metrics.jsonl had N lines, T later",
             tried.p ? tried.p : "");
    pl_buf_release(&tried);
    tap_ok(whole == KILLS && killed > 0,
           "%s: %d kills %s (%d hit a live process), each left whole files and a checkpoint no "
           "older than the one before",
           c->name, KILLS, hook ? "inside a checkpoint's files" : "at random points of the run",
           killed);
    enum end e = run(NULL, args);
    tap_ok(e == END_OK && same_run(c, dir, tap_tmp("whole")),
           "%s: --resume after the last kill ends with the uninterrupted run's weights, config "
           "and metrics, bit for bit, and no .tmp file",
           c->name);
}

static void test_train(const struct train_cmd *c)
{
    char args[8192];
    snprintf(args, sizeof args, "%s %s --out %s", c->name, c->args, tap_tmp("whole"));
    double t0 = pl_now();
    enum end e = run(NULL, args);
    double seconds = pl_now() - t0;
    if (!tap_ok(e == END_OK, "%s: the uninterrupted run (%.2f s)", c->name, seconds)) {
        tap_skip(4, "no uninterrupted run");
        return;
    }
    kill_chain(c, true, seconds);
    kill_chain(c, false, seconds);
    char rm[PATH_MAX + 64];
    snprintf(rm, sizeof rm, "rm -rf %s %s %s", tap_tmp("whole"), tap_tmp("hook"), tap_tmp("timed"));
    tap_system(rm);
}

/* ---- sample and critique: append-only outputs ---- */

/* The lines of a JSONL file: whole ones counted in *whole, a cut-short last line in *cut; false
 * when a whole line is not a JSON object or two share an "id" (dup: that id). */
static bool lines_whole(const char *path, long *whole, long *cut, char *dup, size_t cap)
{
    size_t n;
    char *d = slurp(path, &n);
    *whole = *cut = 0;
    dup[0] = '\0';
    bool ok = true;
    cJSON *ids = cJSON_CreateObject();
    for (const char *p = d, *e; ok && d && p < d + n; p = e + 1) {
        e = memchr(p, '\n', (size_t)(d + n - p));
        if (!e) {
            *cut = 1;
            break;
        }
        cJSON *o = NULL;
        ok = io_json_parse(p, (size_t)(e - p), &o) == PL_OK && cJSON_IsObject(o);
        const char *id = ok ? cJSON_GetStringValue(cJSON_GetObjectItem(o, "id")) : NULL;
        if (id && cJSON_GetObjectItem(ids, id)) {
            snprintf(dup, cap, "%s", id);
            ok = false;
        } else if (id) {
            cJSON_AddTrueToObject(ids, id);
        }
        cJSON_Delete(o);
        *whole += ok;
    }
    cJSON_Delete(ids);
    pl_free(d);
    return ok;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The same lines in any order. */
static bool same_lines(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y && na == nb;
    char *lx[4096], *ly[4096];
    int n = 0, m = 0;
    char *s1 = NULL, *s2 = NULL;
    for (char *t = same ? strtok_r(x, "\n", &s1) : NULL; t && n < 4096;
         t = strtok_r(NULL, "\n", &s1))
        lx[n++] = t;
    for (char *t = same ? strtok_r(y, "\n", &s2) : NULL; t && m < 4096;
         t = strtok_r(NULL, "\n", &s2))
        ly[m++] = t;
    same = same && n == m;
    if (same) {
        qsort(lx, (size_t)n, sizeof *lx, cmp_line);
        qsort(ly, (size_t)m, sizeof *ly, cmp_line);
        for (int i = 0; same && i < n; i++)
            same = strcmp(lx[i], ly[i]) == 0;
    }
    pl_free(x);
    pl_free(y);
    return same;
}

/* Kill "plumb ARGS" again and again, rerunning it each time: once the last of outs[] (which an
 * uninterrupted run fills with `total` lines) has grown by a random number of lines, and a random
 * 0-10 ms later; after each kill every file of outs[] holds whole lines (a cut-short last one
 * aside) without a repeated id. */
static void append_chain(const char *name, const char *args, const char *const *outs, int n_outs,
                         long total)
{
    struct pl_buf tried = {0};
    int killed = 0, whole = 0, cut = 0;
    for (int i = 0; i < KILLS_APPEND; i++) {
        /* As kill_chain: within about 1 / (kills to go + 1) of what is left. */
        long done = count_lines(outs[n_outs - 1]);
        long at = done + 1 +
                  (long)(pl_rng_uniform(&rng) * 2.0 / (KILLS_APPEND - i + 1) *
                         (double)(total - done - 2));
        at = at < total ? at : total - 1;
        double delay = pl_rng_uniform(&rng) * 0.01;
        enum end e = run_until(args, outs[n_outs - 1], at, delay);
        bool ok = e != END_FAILED;
        killed += e == END_KILLED;
        pl_buf_printf(&tried, " %ld+%.0fms->", at, delay * 1e3);
        for (int k = 0; ok && k < n_outs; k++) {
            long w, c;
            char dup[160];
            ok = lines_whole(outs[k], &w, &c, dup, sizeof dup);
            if (!ok)
                tap_diag("%s, kill %d: %s %s", name, i + 1, outs[k],
                         dup[0] ? "repeats an id" : "holds a line that is not a JSON object");
            cut += (int)c;
            pl_buf_printf(&tried, "%s%ld%s", k ? "/" : "", w, c ? "+cut" : "");
        }
        if (e != END_KILLED)
            pl_buf_printf(&tried, " (%s)", end_name(e));
        whole += ok;
    }
    tap_diag("%s, killed once the output had N lines, after T (-> whole lines):%s", name,
             tried.p ? tried.p : "");
    pl_buf_release(&tried);
    tap_ok(whole == KILLS_APPEND && killed > 0,
           "%s: %d kills at random points (%d hit a live process), each left whole lines and no "
           "repeated id (%d cut-short last lines)",
           name, KILLS_APPEND, killed, cut);
}

static void test_sample(void)
{
    const char *args = "sample --model %s --prompts %s -k 3 --max-new-tokens 24 --batch 6 "
                       "--threads 1 --out %s";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, args, tap_tmp("base"), tap_tmp("prompts.jsonl"),
             tap_tmp("whole.jsonl"));
    double t0 = pl_now();
    enum end e = run(NULL, cmd);
    double seconds = pl_now() - t0;
    tap_ok(e == END_OK, "sample: the uninterrupted run (%.2f s)", seconds);
    snprintf(cmd, sizeof cmd, args, tap_tmp("base"), tap_tmp("prompts.jsonl"),
             tap_tmp("killed.jsonl"));
    const char *outs[] = {tap_tmp("killed.jsonl")};
    append_chain("sample", cmd, outs, 1, count_lines(tap_tmp("whole.jsonl")));
    e = run(NULL, cmd);
    tap_ok(e == END_OK && same_lines(tap_tmp("killed.jsonl"), tap_tmp("whole.jsonl")),
           "sample: the rerun completes it: the uninterrupted run's records, byte for byte, each "
           "once");
}

static void test_critique(void)
{
    const char *args = "critique --model %s --constitution %s --prompts %s --rounds 2 --ties "
                       "--max-new-tokens 12 --batch 4 --threads 1 --out %s";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, args, tap_tmp("base"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
             tap_tmp("rev_whole.jsonl"));
    double t0 = pl_now();
    enum end e = run(NULL, cmd);
    double seconds = pl_now() - t0;
    tap_ok(e == END_OK, "critique: the uninterrupted run (%.2f s)", seconds);
    snprintf(cmd, sizeof cmd, args, tap_tmp("base"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
             tap_tmp("rev.jsonl"));
    const char *outs[] = {tap_tmp("rev.jsonl"), tap_tmp("rev.trace.jsonl")};
    append_chain("critique", cmd, outs, 2, count_lines(tap_tmp("rev_whole.trace.jsonl")));
    e = run(NULL, cmd);
    tap_ok(e == END_OK && tap_same_file(tap_tmp("rev.jsonl"), tap_tmp("rev_whole.jsonl")) &&
               tap_same_file(tap_tmp("rev.trace.jsonl"), tap_tmp("rev_whole.trace.jsonl")),
           "critique: the rerun completes both files with the uninterrupted run's bytes");

    /* AI feedback on sample's records: a soft-label pair a line, each appended durably. */
    args = "critique --model %s --constitution %s --compare %s --batch 4 --threads 1 --out %s";
    snprintf(cmd, sizeof cmd, args, tap_tmp("base"), tap_tmp("c.json"), tap_tmp("whole.jsonl"),
             tap_tmp("ai_whole.jsonl"));
    t0 = pl_now();
    e = run(NULL, cmd);
    seconds = pl_now() - t0;
    tap_ok(e == END_OK, "critique --compare: the uninterrupted run (%.2f s)", seconds);
    snprintf(cmd, sizeof cmd, args, tap_tmp("base"), tap_tmp("c.json"), tap_tmp("whole.jsonl"),
             tap_tmp("ai.jsonl"));
    const char *ai[] = {tap_tmp("ai.jsonl")};
    append_chain("critique --compare", cmd, ai, 1, count_lines(tap_tmp("ai_whole.jsonl")));
    e = run(NULL, cmd);
    tap_ok(e == END_OK && tap_same_file(tap_tmp("ai.jsonl"), tap_tmp("ai_whole.jsonl")),
           "critique --compare: the rerun completes it with the uninterrupted run's bytes");
}

/* ---- label, on a pseudo-terminal ---- */

#define ITEMS 24

/* Start "plumb label ARGS" on a pseudo-terminal, its stderr appended to the log. */
static bool pty_start(struct tap_pty *p, const char *args)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "exec %s label %s 2>>%s", bin, args, tap_tmp("log.txt"));
    return tap_pty_start(p, cmd);
}

static void pty_keys(struct tap_pty *p, const char *keys)
{
    if (write(p->fd, keys, strlen(keys)) != (ssize_t)strlen(keys))
        tap_diag("cannot write to the terminal");
}

/* Item i's prompt carries a word that shares no letter, place by place, with its neighbours', so
 * that the terminal shows it whole once the item is on screen. */
static void item_word(int i, char *w)
{
    for (int k = 0; k < 8; k++)
        w[k] = (char)('a' + (i * 5 + k * 3) % 26);
    w[8] = '\0';
}

static void write_label_samples(void)
{
    struct pl_buf b = {0};
    for (int i = 0; i < ITEMS; i++) {
        char w[9];
        item_word(i, w);
        pl_buf_printf(&b,
                      "{\"id\":\"i%02d\",\"prompt\":\"User: %s?\\nAssistant:\","
                      "\"completions\":[\" Yes.\",\" No.\",\" I don't know.\"]}\n",
                      i, w);
    }
    tap_write_file(tap_tmp("items.jsonl"), b.p);
    pl_buf_release(&b);
}

static void test_label(void)
{
    static struct tap_pty p;
    char args[2048];
    snprintf(args, sizeof args, "--samples %s --labels %s --annotator ann --order file",
             tap_tmp("items.jsonl"), tap_tmp("labels.jsonl"));
    write_label_samples();
    long acked = 0; /* labels whose submit the screen acknowledged, over every session */
    int killed = 0, kept = 0, resumed = 0;
    struct pl_buf tried = {0};
    for (int i = 0; i < KILLS_APPEND; i++) {
        char w[9];
        item_word((int)acked, w);
        if (!pty_start(&p, args))
            break;
        /* Each session resumes at the first unlabelled item. */
        resumed += tap_pty_pump(&p, w, 10000);
        int r = (int)(pl_rng_uniform(&rng) * 3.0);
        for (int k = 0; k < r && acked + 1 < ITEMS; k++) {
            pty_keys(&p, k % 2 ? "312\r" : "123\r");
            item_word((int)acked + 1, w);
            if (!tap_pty_pump(&p, w, 10000))
                break;
            acked++;
        }
        /* One more submit in flight, then the kill at a random moment around it. */
        if (acked + 1 < ITEMS)
            pty_keys(&p, "213\r");
        double t = pl_rng_uniform(&rng) * 0.02;
        tap_pty_pump(&p, NULL, (int)(t * 1000));
        kill(p.pid, SIGKILL);
        killed += wait_end(p.pid) == END_KILLED;
        close(p.fd);
        /* The submit in flight may be on disk, whole or (killed inside its write) cut short:
         * the next start cuts that off. */
        long lines, cut;
        char dup[160];
        bool ok = lines_whole(tap_tmp("labels.jsonl"), &lines, &cut, dup, sizeof dup) &&
                  lines >= acked && lines <= acked + 1;
        kept += ok;
        pl_buf_printf(&tried, " %d+1 submits, %.0fms->%ld%s", r, t * 1e3, lines, cut ? "+cut" : "");
        if (!ok)
            tap_diag("label, kill %d: %ld labels acknowledged, %ld whole lines on disk", i + 1,
                     acked, lines);
        acked = lines;
    }
    tap_diag("label, killed T after a submit (-> labels on disk):%s", tried.p ? tried.p : "");
    pl_buf_release(&tried);
    tap_ok(kept == KILLS_APPEND && killed == KILLS_APPEND,
           "label: %d kills in mid-session: every acknowledged label was on disk, whole",
           KILLS_APPEND);
    tap_ok(resumed == KILLS_APPEND, "label: each restart resumed at the first unlabelled item");
}

int main(void)
{
    bin = tap_plumb_bin();
    setenv("PLUMB_THREADS", "1", 1);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    tap_tmpdir("cmd-crash");
    /* CRASH_SEED=N tries other kill points (a longer hunt: a loop over seeds). */
    const char *seed = getenv("CRASH_SEED");
    pl_rng_seed(&rng, seed ? strtoull(seed, NULL, 10) : 20261130);

    struct gpt_config cfg = tap_byte_config(64, 32, 2, 2);
    struct gpt m;
    struct pl_err err = {0};
    tap_model_perturbed(&m, &cfg, 3);
    if (ckpt_save(&m, tap_tmp("base"), &err))
        tap_diag("%s", err.msg);
    gpt_release(&m);

    struct pl_buf corpus = {0}, sft = {0}, pairs = {0}, prompts = {0}, eval = {0};
    static const char *const rivers[] = {"Ost", "Vel", "Marn", "Tesk", "Ilva"};
    for (int i = 0; i < 60; i++) {
        const char *r = rivers[i % 5], *o = rivers[(i + 2) % 5];
        pl_buf_printf(&corpus, "The river of place %d is the %s.%s\n", i, r, i % 4 ? "" : "\n");
        pl_buf_printf(&sft,
                      "{\"prompt\": \"User: River of place %d?\\nAssistant:\", \"response\": "
                      "\" The %s.\"}\n",
                      i, r);
        pl_buf_printf(&pairs,
                      "{\"prompt\": \"User: River of place %d?\\nAssistant:\", \"chosen\": \" The "
                      "%s.\", \"rejected\": \" The %s.\"}\n",
                      i, r, o);
        if (i < 46)
            pl_buf_printf(i < 40 ? &prompts : &eval,
                          "{\"id\": \"p%d\", \"prompt\": \"User: River of place %d?\\n"
                          "Assistant:\"}\n",
                          i, i);
    }
    tap_write_file(tap_tmp("corpus.txt"), corpus.p);
    tap_write_file(tap_tmp("sft.jsonl"), sft.p);
    tap_write_file(tap_tmp("pairs.jsonl"), pairs.p);
    tap_write_file(tap_tmp("prompts.jsonl"), prompts.p);
    tap_write_file(tap_tmp("eval.jsonl"), eval.p);
    pl_buf_release(&corpus);
    pl_buf_release(&sft);
    pl_buf_release(&pairs);
    pl_buf_release(&prompts);
    pl_buf_release(&eval);
    tap_write_file(tap_tmp("c.json"),
                   "{\"principles\": [{\"name\": \"short\", \"critique_request\": \"Too long?\", "
                   "\"revision_request\": \"Shorter.\", \"rules\": [{\"kind\": \"max_words\", "
                   "\"max\": 2}]}]}");
    tap_plan(4 * 5 + 3 + 6 + 2);

    char args[4][2048];
    snprintf(args[0], sizeof args[0],
             "--model %s --data %s --steps 8 --batch 2 --grad-accum 2 --seq 32 --save-every 1 "
             "--eval-every 3 --warmup 2 --lr 1e-3 --threads 1",
             tap_tmp("base"), tap_tmp("corpus.txt"));
    snprintf(args[1], sizeof args[1],
             "--model %s --data %s --mix-corpus %s --steps 8 --batch 4 --seq 48 --save-every 1 "
             "--eval-every 3 --warmup 2 --lr 1e-3 --threads 1",
             tap_tmp("base"), tap_tmp("sft.jsonl"), tap_tmp("corpus.txt"));
    snprintf(args[2], sizeof args[2],
             "--model %s --data %s --steps 8 --batch 4 --save-every 1 --eval-every 3 --warmup 2 "
             "--lr 1e-3 --eval-frac 0.2 --threads 1",
             tap_tmp("base"), tap_tmp("pairs.jsonl"));
    snprintf(args[3], sizeof args[3],
             "--policy %s --reward %s --prompts %s --iterations 6 --batch 4 --minibatch 2 "
             "--ppo-epochs 1 --max-new-tokens 8 --save-every 1 --eval-prompts %s --eval-every 2 "
             "--sample-every 0 --lr 1e-3 --value-lr 1e-3 --target-kl 1 --threads 1",
             tap_tmp("base"), tap_tmp("rm"), tap_tmp("prompts.jsonl"), tap_tmp("eval.jsonl"));
    const struct train_cmd cmds[] = {
        {"pretrain", args[0], NULL, 8, 1, 3},
        {"sft", args[1], NULL, 8, 1, 3},
        {"rm train", args[2], NULL, 8, 1, 3},
        {"ppo", args[3], "value", 12, 2, 5},
    };
    for (int i = 0; i < 3; i++)
        test_train(&cmds[i]);
    /* PPO's reward model: a few steps of rm train. */
    char rm_args[4096];
    snprintf(rm_args, sizeof rm_args,
             "rm train --model %s --data %s --steps 4 --batch 4 --eval-every 0 --threads 1 --out "
             "%s",
             tap_tmp("base"), tap_tmp("pairs.jsonl"), tap_tmp("rm"));
    if (run(NULL, rm_args) != END_OK)
        tap_diag("cannot train the reward model PPO needs");
    test_train(&cmds[3]);
    test_sample();
    test_critique();
    if (access("/lib/terminfo/x/xterm", R_OK) != 0 && access("/usr/share/terminfo/x/xterm", R_OK))
        tap_skip(2, "no xterm terminfo (Debian's ncurses-base)");
    else
        test_label();
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf %s", tap_tmpdir("cmd-crash"));
    int rc = tap_done();
    if (rc == 0)
        tap_system(rm);
    else
        tap_diag("the runs and log.txt are kept in %s", tap_tmpdir("cmd-crash"));
    return rc;
}
