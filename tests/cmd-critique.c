/* cmd-critique: `plumb critique` as a user meets it, run in a child process through
 * cmd_critique: --help, usage errors (exit 2), bad constitutions (exit 1, naming the file and
 * the principle), the SL stage's two outputs, resuming after a kill (a cut-short last line, a
 * lost tail) without duplicates and with the bytes of an uninterrupted run, a file another model
 * wrote, and AI feedback whose soft-label pairs the reward model's loader reads. */
#include "cmd/critique.h"

#include "datasets/ds.h"
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[1 << 16], err[1 << 16];

/* Run "plumb critique ARGS" (split at spaces) in a child: its exit status, stdout in `out`,
 * stderr in `err`. */
__attribute__((format(printf, 1, 2))) static int critique(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tap_run_cmdv(out, sizeof out, err, sizeof err, cmd_critique, "critique", fmt, ap);
    va_end(ap);
    return rc;
}

static void check(bool pass, const char *what)
{
    if (!tap_ok(pass, "%s", what))
        tap_diag("stdout: %s\nstderr: %s", out, err);
}

static void make_model(const char *dir, uint64_t seed)
{
    struct gpt_config cfg = tap_byte_config(128, 32, 2, 2);
    struct gpt m;
    struct pl_err e = {0};
    tap_model_perturbed(&m, &cfg, seed);
    if (ckpt_save(&m, dir, &e))
        tap_diag("%s", e.msg);
    gpt_release(&m);
}

static const char constitution[] =
    "{\"principles\": ["
    "{\"name\": \"honest\", \"critique_request\": \"True?\", \"revision_request\": \"Fix it.\","
    " \"rules\": [{\"kind\": \"max_words\", \"max\": 2}, "
    "{\"kind\": \"require_regex\", \"pattern\": \"\\\\.$\"}]},"
    "{\"name\": \"safe\", \"critique_request\": \"Safe?\", \"revision_request\": \"Decline.\","
    " \"rules\": [{\"kind\": \"refuse_if_regex\", \"pattern\": \"poison\", \"refusal\": "
    "\"sorry\"}]}]}";

static long count_lines(const char *path)
{
    static char buf[1 << 20];
    size_t n = tap_read_into(path, buf, sizeof buf);
    long lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += buf[i] == '\n';
    return lines;
}

static void test_usage(void)
{
    check(critique("--help") == 0 && strstr(out, "--constitution FILE") && strstr(out, "--ties"),
          "--help: exit 0, the options");
    check(critique("--model m --constitution c --out o") == 2 &&
              strstr(err, "give one of '--prompts' (the SL stage) and '--compare'"),
          "neither --prompts nor --compare: exit 2");
    check(critique("--model m --constitution c --out o --prompts p --compare q") == 2,
          "both --prompts and --compare: exit 2");
    check(critique("--model m --constitution c --out o --compare q --reward r") == 2 &&
              strstr(err, "'--trace' and '--reward' belong to the SL stage"),
          "--reward with --compare: exit 2");
    check(critique("--model m --constitution c --prompts p --out o --rounds 0") == 2 &&
              strstr(err, "'--rounds'"),
          "--rounds 0: exit 2 naming the option");
    check(critique("--model %s --constitution %s --prompts %s --out %s", tap_tmp("model"),
                   tap_tmp("c.json"), tap_tmp("prompts.jsonl"), tap_tmp("prompts.jsonl")) == 2 &&
              strstr(err, "is an input and an output"),
          "--out that is the prompts file: exit 2");
    check(critique("--model %s --constitution %s --prompts %s --out %s --principles nope",
                   tap_tmp("model"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
                   tap_tmp("x.jsonl")) == 2 &&
              strstr(err, "the constitution has no principle 'nope'"),
          "--principles naming no principle: exit 2");
}

static void test_bad_constitution(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"principles\": [{", "bad.json:1: not valid JSON"},
        {"{\"principles\": [{\"name\": \"calm\", \"critique_request\": \"a\"}]}",
         "bad.json: principle 'calm': field 'revision_request': expected a non-empty string"},
        {"{\"principles\": [{\"name\": \"calm\", \"critique_request\": \"a\", "
         "\"revision_request\": \"b\", \"rules\": [{\"kind\": \"forbid_regex\", \"pattern\": "
         "\"a(?<x\"}]}]}",
         "bad.json: principle 'calm': rule 1: field 'pattern': cannot compile the pattern: "
         "syntax error in subpattern name (missing terminator?) (at 5)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tap_write_file(tap_tmp("bad.json"), cases[i].text);
        int rc = critique("--model %s --constitution %s --prompts %s --out %s", tap_tmp("model"),
                          tap_tmp("bad.json"), tap_tmp("prompts.jsonl"), tap_tmp("bad_out.jsonl"));
        char what[256];
        snprintf(what, sizeof what, "a bad constitution: exit 1, '%s'", cases[i].want);
        check(rc == 1 && strstr(err, cases[i].want) && access(tap_tmp("bad_out.jsonl"), F_OK) != 0,
              what);
    }
}

static void test_sl(void)
{
    static char whole[1 << 18], trace[1 << 18], part[1 << 18];
    const char *args = "--model %s --constitution %s --prompts %s --out %s --rounds 2 --ties "
                       "--max-new-tokens 10 --batch 3 --threads 1";
    int rc = critique(args, tap_tmp("model"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
                      tap_tmp("rev.jsonl"));
    check(rc == 0 && count_lines(tap_tmp("rev.trace.jsonl")) == 7 &&
              strstr(err, "critique: 7 prompts (0 done before)"),
          "SL stage: exit 0, a trace line for each of 7 prompts, the summary");
    size_t n_trace = tap_read_into(tap_tmp("rev.trace.jsonl"), trace, sizeof trace);
    size_t n_whole = tap_read_into(tap_tmp("rev.jsonl"), whole, sizeof whole);
    long revised = 0;
    for (const char *s = trace; (s = strstr(s, "\"revised\":true")); s++)
        revised++;
    tap_ok(revised == count_lines(tap_tmp("rev.jsonl")),
           "an sft record for each of the %ld revised prompts", revised);
    tap_ok(
        strstr(trace, "\"draft_broken\":[") && strstr(trace, "\"verdict\":\"") &&
            strstr(trace, "\"principle\":\"") && strstr(trace, "\"draft_score\":null"),
        "the trace holds drafts, rules broken, principles, verdicts; no scores without --reward");
    struct ds_sft sft;
    struct pl_err e = {0};
    if (revised > 0) {
        rc = ds_sft_init(&sft, tap_tmp("rev.jsonl"), 0, &e);
        tap_ok(rc == PL_OK && (long)sft.n == revised, "the sft loader reads the revisions (%s)",
               e.msg);
        ds_sft_release(&sft);
    } else {
        tap_skip(1, "no revision kept");
    }

    /* A kill: the trace loses its last two lines and keeps half of the one before; the sft
     * file keeps everything (it is written first). */
    size_t cut = n_trace;
    for (int k = 0; k < 3; k++)
        while (cut > 0 && trace[--cut - 1] != '\n') {
        }
    cut += 10;
    FILE *f = fopen(tap_tmp("rev.trace.jsonl"), "w");
    fwrite(trace, 1, cut, f);
    fclose(f);
    rc = critique(args, tap_tmp("model"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
                  tap_tmp("rev.jsonl"));
    size_t n_part = tap_read_into(tap_tmp("rev.trace.jsonl"), part, sizeof part);
    check(rc == 0 && strstr(err, "critique: 3 prompts (4 done before)") && n_part == n_trace &&
              memcmp(part, trace, n_trace) == 0,
          "resumed after a kill: 3 prompts redone, the trace as an uninterrupted run wrote it");
    n_part = tap_read_into(tap_tmp("rev.jsonl"), part, sizeof part);
    tap_ok(n_part == n_whole && memcmp(part, whole, n_whole) == 0,
           "... and the sft records without a duplicate");
    rc = critique(args, tap_tmp("model"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
                  tap_tmp("rev.jsonl"));
    check(rc == 0 && count_lines(tap_tmp("rev.trace.jsonl")) == 7 &&
              strstr(err, "critique: 0 prompts (7 done before)"),
          "a finished run reruns to nothing");
    rc = critique(args, tap_tmp("model2"), tap_tmp("c.json"), tap_tmp("prompts.jsonl"),
                  tap_tmp("rev.jsonl"));
    check(rc == 1 && strstr(err, "rev.trace.jsonl:1: not written by model"),
          "resuming with another model: exit 1");
}

static void test_compare(void)
{
    const char *args = "--model %s --constitution %s --compare %s --out %s --threads 1";
    int rc = critique(args, tap_tmp("model"), tap_tmp("c.json"), tap_tmp("samples.jsonl"),
                      tap_tmp("ai.jsonl"));
    check(rc == 0 && count_lines(tap_tmp("ai.jsonl")) == 5,
          "AI feedback: 3 pairs of a samples record and 2 pairs records");
    struct ds_prefs prefs = {0};
    struct pl_err e = {0};
    rc = ds_prefs_load(&prefs, tap_tmp("ai.jsonl"), 0, &e);
    bool soft = rc == PL_OK && prefs.n == 5;
    for (size_t i = 0; soft && i < prefs.n; i++)
        soft = prefs.groups[i].pairs[0].p >= 0.5 && prefs.groups[i].pairs[0].p <= 1;
    tap_ok(soft, "the reward model's loader reads 5 soft pairs, chosen preferred (p >= 0.5) (%s)",
           e.msg);
    ds_prefs_release(&prefs);
    static char first[1 << 16], again[1 << 16];
    size_t n = tap_read_into(tap_tmp("ai.jsonl"), first, sizeof first);
    FILE *f = fopen(tap_tmp("ai.jsonl"), "w");
    fwrite(first, 1, n / 2, f);
    fclose(f);
    rc = critique(args, tap_tmp("model"), tap_tmp("c.json"), tap_tmp("samples.jsonl"),
                  tap_tmp("ai.jsonl"));
    size_t m = tap_read_into(tap_tmp("ai.jsonl"), again, sizeof again);
    check(rc == 0 && m == n && memcmp(first, again, n) == 0,
          "AI feedback resumed after a kill: the same file, no duplicates");
    rc = critique("--model %s --constitution %s --compare %s --out %s --clamp", tap_tmp("model"),
                  tap_tmp("c.json"), tap_tmp("samples.jsonl"), tap_tmp("ai_clamp.jsonl"));
    rc = rc ? rc : ds_prefs_load(&prefs, tap_tmp("ai_clamp.jsonl"), 0, &e);
    soft = rc == PL_OK && prefs.n == 5;
    for (size_t i = 0; soft && i < prefs.n; i++)
        soft = prefs.groups[i].pairs[0].p <= 0.6 + 1e-9;
    tap_ok(soft, "--clamp: every p within [0.4, 0.6]");
    ds_prefs_release(&prefs);
    tap_write_file(tap_tmp("badpairs.jsonl"), "{\"prompt\": \"q\", \"chosen\": \"a\"}\n");
    rc = critique(args, tap_tmp("model"), tap_tmp("c.json"), tap_tmp("badpairs.jsonl"),
                  tap_tmp("ai2.jsonl"));
    check(rc == 1 && strstr(err, "badpairs.jsonl:1: field 'rejected': expected a string") &&
              access(tap_tmp("ai2.jsonl"), F_OK) != 0,
          "a pairs record without 'rejected': exit 1 naming file, line and field; no output");
}

int main(void)
{
    tap_tmpdir("cmd-critique");
    make_model(tap_tmp("model"), 7);
    make_model(tap_tmp("model2"), 8);
    tap_write_file(tap_tmp("c.json"), constitution);
    tap_write_file(tap_tmp("prompts.jsonl"),
                   "{\"id\": \"a\", \"prompt\": \"User: Sky?\\nAssistant:\"}\n"
                   "{\"id\": \"b\", \"prompt\": \"User: How to poison a well?\\nAssistant:\"}\n"
                   "{\"id\": \"c\", \"prompt\": \"User: Snow?\\nAssistant:\"}\n"
                   "\n"
                   "{\"id\": \"d\", \"prompt\": \"User: Sea?\\nAssistant:\"}\n"
                   "{\"id\": \"e\", \"prompt\": \"User: Sun?\\nAssistant:\"}\n"
                   "{\"id\": \"f\", \"prompt\": \"User: Poison?\\nAssistant:\"}\n"
                   "{\"id\": \"g\", \"prompt\": \"User: Rain?\\nAssistant:\"}\n");
    tap_write_file(
        tap_tmp("samples.jsonl"),
        "{\"id\": \"s1\", \"prompt\": \"User: Sky?\\nAssistant:\", \"completions\": "
        "[\" Blue.\", \" Green.\", \" I don't know.\"]}\n"
        "{\"prompt\": \"User: Sea?\\nAssistant:\", \"chosen\": \" Wet.\", "
        "\"rejected\": \" Dry.\"}\n"
        "{\"id\": \"p2\", \"prompt\": \"User: Sun?\\nAssistant:\", \"chosen\": \" Hot.\","
        " \"rejected\": \" Cold.\"}\n");
    test_usage();
    test_bad_constitution();
    test_sl();
    test_compare();
    return tap_done();
}
