/* cmd-outputs: what the plumb binary ($PLUMB_BIN) does to outputs that already exist and to
 * outputs it cannot write.
 *
 * Existing outputs: a command that appends (sample, critique) resumes its own file and refuses
 * anyone else's; every other command replaces an output only when it is missing or empty, is its
 * own earlier output (a rerun), or --force is given, and otherwise exits 1 naming the path and
 * --force, the output untouched.
 *
 * Write failures: a full disk (a small tmpfs in a private mount namespace through `unshare`,
 * else a file size limit of 0) and a read-only folder (a read-only bind mount, else chmod when
 * not root) under an SFT checkpoint, `plumb sample`, `plumb eval --out` and `plumb report`: exit
 * 1 with one error line naming the file, every earlier file as it was, and a rerun afterwards
 * resumes. */
#include "tests/fixture.h"
#include "tests/tap.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *bin;
static char out[1 << 16], err[1 << 16];

#define BYTE_CONFIG                                                                                \
    "'{\"n_layer\":1,\"n_embd\":16,\"n_head\":2,\"vocab_size\":257,\"n_positions\":128,"           \
    "\"tokenizer\":\"byte\"}'"

#define plumb(...) tap_plumb(out, sizeof out, err, sizeof err, __VA_ARGS__)

__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tap_system(cmd);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        tap_diag("cannot write %s", path);
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static bool said(const char *s)
{
    return strstr(err, s) != NULL;
}

static void check(bool pass, const char *what)
{
    if (!tap_ok(pass, "%s", what))
        tap_diag("stdout: %s\nstderr: %s", out, err);
}

/* ---- existing outputs ---- */

#define FOREIGN "{\"mine\": \"a file of the user's\"}\n"

/* name.out with spaces as '-'. */
static void out_path(char *path, size_t n, const char *name)
{
    snprintf(path, n, "%s.out", name);
    for (char *p = path; (p = strchr(p, ' ')); p++)
        *p = '-';
}

/* The command `args` (with PATH where its output goes) against a file of the user's there: exit
 * 1 naming it and --force, the file as it was; then with --force it is replaced. */
static void refuses_file(const char *name, const char *args)
{
    char run[4096], path[64];
    out_path(path, sizeof path, name);
    write_text(path, FOREIGN);
    snprintf(run, sizeof run, args, path);
    int rc = plumb("%s", run);
    char want[128];
    snprintf(want, sizeof want, "'%s' exists and is not plumb ", path);
    char what[128];
    snprintf(what, sizeof what, "%s over a file of the user's: exit 1, named, --force suggested",
             name);
    check(rc == 1 && said(want) && said("--force") && tap_same_file(path, "foreign.txt"), what);
    rc = plumb("%s --force", run);
    snprintf(what, sizeof what, "%s --force replaces it", name);
    check(rc == 0 && !tap_same_file(path, "foreign.txt"), what);
}

/* The command run twice: its own output is replaced without --force. */
static void reruns(const char *name, const char *args)
{
    char run[4096], path[64], what[128];
    out_path(path, sizeof path, name);
    unlink(path);
    snprintf(run, sizeof run, args, path);
    int rc = plumb("%s", run);
    rc = rc ? rc : plumb("%s", run);
    snprintf(what, sizeof what, "%s: a rerun replaces its own output", name);
    check(rc == 0 && exists(path), what);
}

static void make_inputs(void)
{
    write_text("foreign.txt", FOREIGN);
    write_text("text.jsonl", "{\"text\": \"abc\"}\n");
    write_text("prompts.jsonl", "{\"id\": \"1\", \"prompt\": \"a\"}\n{\"id\": \"2\", \"prompt\": "
                                "\"b\"}\n");
    write_text("prompts4.jsonl", "{\"id\": \"1\", \"prompt\": \"a\"}\n{\"id\": \"2\", \"prompt\": "
                                 "\"b\"}\n{\"id\": \"3\", \"prompt\": \"c\"}\n{\"id\": \"4\", "
                                 "\"prompt\": \"d\"}\n");
    write_text("sft.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\", "
                            "\"response\": \"d\"}\n");
    write_text("pairs.jsonl", "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n");
    write_text("crows.csv", "sent_more,sent_less,stereo_antistereo,bias_type\nHe is tall,She is "
                            "tall,stereo,gender\n");
}

static void test_folders(void)
{
    mkdir("mine", 0777);
    write_text("mine/notes.txt", "mine");
    const char *cmds[][2] = {
        {"init", "init --config " BYTE_CONFIG " --out mine"},
        {"world", "world --out mine"},
        {"pretrain", "pretrain --model m --data sft.jsonl --out mine --steps 1 --threads 1"},
        {"sft", "sft --model m --data sft.jsonl --out mine --steps 1 --threads 1"},
        {"rm train", "rm train --model m --data pairs.jsonl --out mine --steps 1 --eval-frac 0 "
                     "--threads 1"},
        {"ppo", "ppo --policy m --reward rmm --prompts prompts.jsonl --out mine --threads 1"},
        {"report", "report --runs ck --out mine"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        int rc = plumb("%s", cmds[i][1]);
        char what[128];
        snprintf(what, sizeof what,
                 "%s into a non-empty folder of the user's: exit 1, named, "
                 "--force suggested",
                 cmds[i][0]);
        check(rc == 1 && said("'mine'") && said("--force") &&
                  tap_system("test \"$(ls mine)\" = "
                             "notes.txt") == 0,
              what);
    }
    int rc = plumb("report --runs ck --out rep");
    rc = rc ? rc : plumb("report --runs ck --out rep");
    check(rc == 0 && exists("rep/report.html"), "report: a rerun replaces its own report");
    rc = plumb("report --runs ck --out mine --force");
    check(rc == 0 && exists("mine/report.html") && exists("mine/notes.txt"),
          "report --force writes beside what is there");
}

static void test_files(void)
{
    refuses_file("score", "score --model m --input text.jsonl --out %s --threads 1");
    reruns("score", "score --model m --input text.jsonl --out %s --threads 1");
    refuses_file("tokenize", "tokenize --model m --input text.jsonl --out %s");
    reruns("tokenize", "tokenize --model m --input text.jsonl --out %s");
    refuses_file("rm score", "rm score --model rmm --input sft.jsonl --out %s --threads 1");
    reruns("rm score", "rm score --model rmm --input sft.jsonl --out %s --threads 1");
    refuses_file("bon", "bon --policy m --reward rmm --prompts prompts.jsonl --out %s -n 2 "
                        "--max-new-tokens 2 --threads 1");
    reruns("bon", "bon --policy m --reward rmm --prompts prompts.jsonl --out %s -n 2 "
                  "--max-new-tokens 2 --threads 1");
    refuses_file("eval", "eval crows --model m --data crows.csv --out %s --bootstrap 10 "
                         "--threads 1");
    reruns("eval", "eval crows --model m --data crows.csv --out %s --bootstrap 10 --threads 1");
    refuses_file("eval details", "eval crows --model m --data crows.csv --out ed.json --details "
                                 "%s --bootstrap 10 --threads 1");
    refuses_file("eval rules", "eval rules --constitution w/constitution.json --input sft.jsonl "
                               "--out %s");
    refuses_file("eval all", "eval all --model m --world w --out %s --limit 2 --bbq-limit 1 "
                             "--bootstrap 10 --threads 1");

    /* simlabel: a labels file holding a person's labels is never replaced. */
    sh("head -n 1 w/prompts.jsonl >wp.jsonl");
    plumb("sample --model m --prompts wp.jsonl --out samples.jsonl -k 2 --max-new-tokens 2 "
          "--threads 1");
    write_text("human.jsonl", "{\"id\": \"p0001\", \"annotator\": \"ann\", \"ranking\": [1, 0], "
                              "\"completions\": [\"a\", \"b\"], \"prompt\": \"What is it?\"}\n");
    sh("cp human.jsonl human.keep");
    int rc = plumb("simlabel --samples samples.jsonl --world w --out human.jsonl");
    check(rc == 1 && said("'human.jsonl' exists and is not plumb simlabel's output; --force") &&
              tap_same_file("human.jsonl", "human.keep"),
          "simlabel over a person's labels: exit 1, the labels as they were");
    reruns("simlabel", "simlabel --samples samples.jsonl --world w --out %s");
    rc = plumb("simlabel --samples samples.jsonl --world w --truth --out simlabel.out");
    check(rc == 0, "simlabel --truth over the simulated annotators' labels");
}

/* The appenders resume their own file and refuse anyone else's. */
static void test_appenders(void)
{
    sh("rm -f s.jsonl");
    int rc = plumb("sample --model m --prompts prompts.jsonl --out s.jsonl -k 1 "
                   "--max-new-tokens 2 --threads 1");
    sh("cp s.jsonl s.keep");
    rc = rc ? rc
            : plumb("sample --model m --prompts prompts.jsonl --out s.jsonl -k 1 "
                    "--max-new-tokens 2 --threads 1");
    check(rc == 0 && tap_same_file("s.jsonl", "s.keep"),
          "sample: a rerun resumes its own file (nothing left to do)");
    write_text("sample.out", FOREIGN);
    rc = plumb("sample --model m --prompts prompts.jsonl --out sample.out -k 1 "
               "--max-new-tokens 2 --threads 1");
    check(rc == 1 && said("sample.out:1:") && tap_same_file("sample.out", "foreign.txt"),
          "sample: another file as --out is refused, untouched");
    write_text("critique.out", FOREIGN);
    rc = plumb("critique --model m --constitution w/constitution.json --compare pairs.jsonl "
               "--out critique.out --max-new-tokens 2 --threads 1");
    check(rc == 1 && said("critique.out:1:") && tap_same_file("critique.out", "foreign.txt"),
          "critique: another file as --out is refused, untouched");
    sh("rm -f c.jsonl");
    rc = plumb("critique --model m --constitution w/constitution.json --compare pairs.jsonl "
               "--out c.jsonl --max-new-tokens 2 --threads 1");
    sh("cp c.jsonl c.keep");
    rc = rc ? rc
            : plumb("critique --model m --constitution w/constitution.json --compare "
                    "pairs.jsonl --out c.jsonl --max-new-tokens 2 --threads 1");
    check(rc == 0 && tap_same_file("c.jsonl", "c.keep"), "critique: a rerun resumes its own file");
}

/* ---- write failures ---- */

enum confine { FULL, READ_ONLY };
static bool have_unshare, root;

/* Run plumb ARGS with folder dir on a full disk or read-only, leaving what is in dir afterwards
 * in `after` and what was there before in `before`; the exit status, or -2 when this machine
 * cannot confine a run so (the test is skipped). Without unshare a full disk is a file size
 * limit of 512 bytes: every output here is larger, stderr is not. */
static int confined(enum confine how, const char *dir, const char *args)
{
    char script[8192];
    if (how == READ_ONLY && !have_unshare && root)
        return -2;
    sh("rm -rf before after && cp -a %s before", dir);
    if (how == FULL && have_unshare)
        /* A tmpfs over dir holding a copy of it, filled to the last byte. */
        snprintf(script, sizeof script,
                 "unshare -rm sh -c 'rm -rf .keep && cp -a %s .keep && "
                 "mount -t tmpfs -o size=4m tmpfs %s && cp -a .keep/. %s/ && rm -rf .keep && "
                 "{ head -c 8m /dev/zero >%s/.fill 2>/dev/null; true; } && %s %s; rc=$?; "
                 "rm -f %s/.fill; cp -a %s after; exit $rc'",
                 dir, dir, dir, dir, bin, args, dir, dir);
    else if (how == FULL)
        snprintf(script, sizeof script,
                 "sh -c \"trap '' XFSZ; ulimit -f 1; exec %s %s\"; rc=$?; cp -a %s after; "
                 "exit $rc",
                 bin, args, dir);
    else if (have_unshare)
        snprintf(script, sizeof script,
                 "unshare -rm sh -c 'mount --bind %s %s && mount -o remount,bind,ro %s && "
                 "exec %s %s'; rc=$?; cp -a %s after; exit $rc",
                 dir, dir, dir, bin, args, dir);
    else
        snprintf(script, sizeof script,
                 "chmod -R a-w %s; %s %s; rc=$?; chmod -R u+w %s; cp -a %s after; exit $rc", dir,
                 bin, args, dir, dir);
    write_text("confine.sh", script);
    return tap_shell("sh confine.sh", out, sizeof out, err, sizeof err);
}

/* One error line (the only line "plumb: ...") naming `file` and the cause: a full disk or a
 * read-only folder. */
static bool write_error(enum confine how, const char *file)
{
    const char *line = strstr(err, "plumb: ");
    if (line != err && line && line[-1] != '\n')
        return false;
    const char *nl = line ? strchr(line, '\n') : NULL;
    if (!nl || strstr(nl, "plumb: "))
        return false;
    const char *why = how == READ_ONLY
                          ? (have_unshare ? "Read-only file system" : "Permission denied")
                          : (have_unshare ? "No space left on device" : "File too large");
    return strstr(line, file) && strstr(line, why) && strstr(line, file) < nl &&
           strstr(line, why) < nl;
}

/* A fixed part of `after` (these files, as they were) and no temporary file left there. */
static bool kept(const char *const *files, int n)
{
    for (int i = 0; i < n; i++) {
        char a[128], b[128];
        snprintf(a, sizeof a, "after/%s", files[i]);
        snprintf(b, sizeof b, "before/%s", files[i]);
        if (!tap_same_file(a, b))
            return false;
    }
    return sh("test -z \"$(find after -name '*.tmp')\"") == 0;
}

/* Whether the file `before/name` is a prefix of `after/name`. */
static bool grew(const char *name)
{
    return sh("n=$(wc -c <before/%s) && head -c $n after/%s | cmp -s - before/%s", name, name,
              name) == 0;
}

static const char *const how_name[] = {"a full disk", "a read-only folder"};

static void test_checkpoint(enum confine how)
{
    static const char *const files[] = {"model.safetensors", "state.safetensors", "config.json",
                                        "run.json"};
    int rc = confined(how, "ck",
                      "sft --model m --data sft.jsonl --out ck --steps 6 --batch 2 "
                      "--save-every 1 --eval-every 0 --threads 1 --resume");
    if (rc == -2) {
        tap_skip(2, "root without unshare: nothing makes a folder read-only");
        return;
    }
    char what[160];
    snprintf(what, sizeof what,
             "sft checkpoint on %s: exit 1, one line naming the file, the "
             "step-2 checkpoint as it was",
             how_name[how]);
    check(rc == 1 && write_error(how, "ck/") && kept(files, 4) && grew("metrics.jsonl"), what);
    rc = plumb("sft --model m --data sft.jsonl --out after --steps 6 --batch 2 --save-every 1 "
               "--eval-every 0 --threads 1 --resume");
    check(rc == 0 && said("resuming from step 2"), "... and the run resumes from it afterwards");
}

static void test_sample(enum confine how)
{
    int rc = confined(how, "d",
                      "sample --model m --prompts prompts4.jsonl --out d/s.jsonl -k 4 "
                      "--max-new-tokens 16 --threads 1");
    if (rc == -2) {
        tap_skip(2, "root without unshare: nothing makes a folder read-only");
        return;
    }
    char what[160];
    snprintf(what, sizeof what,
             "sample on %s: exit 1, one line naming the file, the earlier "
             "lines kept",
             how_name[how]);
    check(rc == 1 && write_error(how, "d/s.jsonl") && grew("s.jsonl"), what);
    rc = plumb("sample --model m --prompts prompts4.jsonl --out after/s.jsonl -k 4 "
               "--max-new-tokens 16 --threads 1");
    check(rc == 0 && sh("test $(wc -l <after/s.jsonl) = 4") == 0 && grew("s.jsonl"),
          "... and a rerun completes it");
}

static void test_eval_report(enum confine how)
{
    static const char *const eval_files[] = {"r.json"};
    static const char *const report_files[] = {"rep/report.html", "rep/report.md",
                                               "rep/report.json", "rep/chart-01.svg"};
    int rc = confined(how, "d",
                      "eval crows --model m --data crows.csv --out d/r.json "
                      "--bootstrap 10 --seed 2 --threads 1");
    if (rc == -2) {
        tap_skip(2, "root without unshare: nothing makes a folder read-only");
        return;
    }
    char what[160];
    snprintf(what, sizeof what,
             "eval --out on %s: exit 1, one line naming it, the earlier "
             "results as they were",
             how_name[how]);
    check(rc == 1 && write_error(how, "d/r.json") && kept(eval_files, 1), what);
    rc = confined(how, "d", "report --runs ck --out d/rep --title again");
    snprintf(what, sizeof what,
             "report on %s: exit 1, one line naming it, the earlier report "
             "as it was",
             how_name[how]);
    check(rc == 1 && write_error(how, "d/rep/") && kept(report_files, 4), what);
}

static void test_write_failures(void)
{
    have_unshare = sh("unshare -rm true 2>/dev/null") == 0;
    root = geteuid() == 0;
    tap_diag("full disk: %s; read-only folder: %s", have_unshare ? "tmpfs" : "ulimit -f 1",
             have_unshare ? "read-only bind mount"
             : root       ? "none (root)"
                          : "chmod");
    mkdir("d", 0777);
    int rc = plumb("sample --model m --prompts prompts.jsonl --out d/s.jsonl -k 4 "
                   "--max-new-tokens 16 --threads 1");
    rc = rc ? rc
            : plumb("eval crows --model m --data crows.csv --out d/r.json --bootstrap 10 "
                    "--threads 1");
    rc = rc ? rc : plumb("report --runs ck --out d/rep");
    if (!tap_ok(rc == 0 && exists("d/rep/chart-01.svg"), "the earlier outputs"))
        tap_diag("stderr: %s", err);
    for (int how = FULL; how <= READ_ONLY; how++) {
        test_checkpoint(how);
        test_sample(how);
        test_eval_report(how);
    }
}

int main(void)
{
    bin = tap_plumb_bin();
    const char *dir = tap_tmpdir("outputs");
    if (chdir(dir) != 0)
        tap_skip_all("cannot enter a temporary folder");
    setenv("PLUMB_THREADS", "1", 1);
    make_inputs();
    if (plumb("init --config " BYTE_CONFIG " --out m") != 0 ||
        plumb("init --config " BYTE_CONFIG " --out rmm --score-head") != 0 ||
        plumb("world --out w") != 0 ||
        plumb("sft --model m --data sft.jsonl --out ck --steps 2 --batch 2 --save-every 1 "
              "--eval-every 0 --threads 1") != 0)
        tap_skip_all("cannot make the models and the world");
    test_folders();
    test_files();
    test_appenders();
    test_write_failures();
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (chdir("/") == 0 && system(rm) != 0)
        tap_diag("cannot remove %s", dir);
    return tap_done();
}
