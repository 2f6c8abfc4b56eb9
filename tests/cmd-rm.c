/* cmd-rm: `plumb rm train|eval|score` as a user meets them, run in a child process through
 * cmd_rm: --help, usage errors (exit 2), a run from label and pair files, the evaluation table
 * and its JSON, scores added to records, and data errors (exit 1) with their messages. */
#include "cmd/rm.h"

#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[1 << 16], err[1 << 16];

/* Run "plumb rm ARGS" (split at spaces) in a child: its exit status, stdout in `out`, stderr in
 * `err`. */
__attribute__((format(printf, 1, 2))) static int rm(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tap_run_cmdv(out, sizeof out, err, sizeof err, cmd_rm, "rm", fmt, ap);
    va_end(ap);
    return rc;
}

static void check(bool pass, const char *what)
{
    if (!tap_ok(pass, "%s", what))
        tap_diag("stdout: %s\nstderr: %s", out, err);
}

static void make_model(const char *dir)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 257;
    c.n_positions = 32;
    c.n_embd = 16;
    c.n_layer = 2;
    c.n_head = 2;
    c.bos_token_id = c.eos_token_id = 256;
    snprintf(c.tokenizer, sizeof c.tokenizer, "byte");
    struct gpt_opts o = {.max_batch = 1, .max_seq = 1};
    struct gpt m;
    struct pl_err e = {0};
    if (gpt_init(&m, &c, &o, &e) == PL_OK) {
        gpt_init_weights(&m, 5);
        if (ckpt_save(&m, dir, &e))
            tap_diag("%s", e.msg);
    }
    gpt_release(&m);
}

/* A word of letters from `from`, 2 to 5 long. */
static void word(char *w, const char *from, struct pl_rng *r)
{
    int n = 2 + (int)(pl_rng_next(r) % 4);
    for (int i = 0; i < n; i++)
        w[i] = from[pl_rng_next(r) % strlen(from)];
    w[n] = '\0';
}

/* Labels (rankings of 3 by two annotators, two kinds) and pairs in which words of a, c, e beat
 * words of b, d, f, which beat words of g, h, i; samples and sft records to score. */
static void make_data(void)
{
    static char labels[32768], pairs[16384], samples[4096];
    size_t nl = 0, np = 0, ns = 0;
    struct pl_rng r;
    pl_rng_seed(&r, 3);
    for (int i = 0; i < 40; i++) {
        char p[8], g[8], b1[8], b2[8];
        word(p, "xyz", &r);
        word(g, "ace", &r);
        word(b1, "bdf", &r);
        word(b2, "ghi", &r);
        nl += (size_t)snprintf(
            labels + nl, sizeof labels - nl,
            "{\"id\": \"q%d\", \"annotator\": \"a%d\", \"ranking\": [1, 0, 2], "
            "\"ties\": [], \"skipped\": false, \"time\": \"2026-01-01T00:00:00Z\", "
            "\"completions\": [\"%s\", \"%s\", \"%s\"], \"prompt\": \"%s\", "
            "\"kind\": \"%s\"}\n",
            i, i % 2 + 1, b1, g, b2, p, i % 4 ? "known" : "unknown");
        np += (size_t)snprintf(pairs + np, sizeof pairs - np,
                               "{\"prompt\": \"%s\", \"chosen\": \"%s\", \"rejected\": \"%s\"}\n",
                               p, g, b1);
    }
    ns += (size_t)snprintf(samples + ns, sizeof samples - ns,
                           "{\"id\": \"s1\", \"prompt\": \"xy\", \"completions\": [\"ace\", "
                           "\"bdf\", \"ca\"], \"model\": \"m\"}\n"
                           "{\"prompt\": \"zz\", \"response\": \"eca\", \"reward\": 7}\n");
    tap_write_file(tap_tmp("labels.jsonl"), labels);
    tap_write_file(tap_tmp("pairs.jsonl"), pairs);
    tap_write_file(tap_tmp("samples.jsonl"), samples);
    tap_write_file(tap_tmp("tied.jsonl"),
               "{\"id\": \"t\", \"annotator\": \"a\", \"ranking\": [0, 1], \"ties\": [[0, 1]], "
               "\"skipped\": false, \"time\": \"2026-01-01T00:00:00Z\", \"completions\": [\"a\", "
               "\"b\"], \"prompt\": \"p\"}\n");
    tap_write_file(tap_tmp("empty.jsonl"), "\n");
    tap_write_file(tap_tmp("bad.jsonl"), "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"}\n");
    make_model(tap_tmp("lm"));
}

static void test_help(void)
{
    int rc = rm("--help");
    check(rc == 0 && strstr(out, "plumb rm: ") == out && strstr(out, "\nusage: plumb rm") &&
              strstr(out, "  train ") && strstr(out, "  eval ") && strstr(out, "  score "),
          "plumb rm --help lists the subcommands");
    const char *subs[] = {"train", "eval", "score"};
    for (int i = 0; i < 3; i++) {
        char top[64], usage[64];
        rc = rm("%s --help", subs[i]);
        snprintf(top, sizeof top, "plumb rm %s: ", subs[i]);
        snprintf(usage, sizeof usage, "\nusage: plumb rm %s", subs[i]);
        tap_ok(rc == 0 && strncmp(out, top, strlen(top)) == 0 && strstr(out, usage) && !err[0],
               "plumb rm %s --help: exit 0, usage on stdout", subs[i]);
    }
    rc = rm("bogus");
    check(rc == 2 && strstr(err, "'bogus' is not a subcommand"), "an unknown subcommand: exit 2");
    rc = rm("%s", "");
    check(rc == 2 && strstr(err, "usage: plumb rm"), "no subcommand: usage on stderr, exit 2");
    rc = rm("train --model %s --out %s", tap_tmp("lm"), tap_tmp("x"));
    check(rc == 2 && strstr(err, "option '--data' is required"), "--data is required: exit 2");
    rc = rm("score --model %s --input %s --out %s", tap_tmp("lm"), tap_tmp("samples.jsonl"),
            tap_tmp("samples.jsonl"));
    check(rc == 2 && strstr(err, "is the --input file"), "--out equal to --input: exit 2");
}

static void test_train_eval_score(void)
{
    int rc = rm("train --model %s --data %s --data %s --out %s --steps 40 --batch 4 --lr 1e-2 "
                "--warmup 4 --eval-frac 0.2 --eval-every 20 --center-coef 0.01 --threads 1",
                tap_tmp("lm"), tap_tmp("labels.jsonl"), tap_tmp("pairs.jsonl"), tap_tmp("rm"));
    check(rc == 0 && strstr(out, "step 40") && strstr(out, "held-out loss") &&
              strstr(out, "normalised by mean"),
          "rm train on labels and pairs: exit 0");
    char *metrics = NULL;
    size_t len;
    struct pl_err e = {0};
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tap_tmp("rm"));
    io_read_file(path, &metrics, &len, &e);
    tap_ok(metrics && strstr(metrics, "\"rm/accuracy\"") && strstr(metrics, "\"rm/margin\"") &&
               strstr(metrics, "\"rm/chosen\"") && strstr(metrics, "\"eval/accuracy\"") &&
               strstr(metrics, "\"eval/rejected\""),
           "metrics.jsonl has the rm/ and eval/ values");
    pl_free(metrics);
    struct gpt_config c;
    rc = ckpt_config_read(tap_tmp("rm"), &c, &e);
    tap_ok(rc == PL_OK && c.score_head && c.reward_std > 0 && c.reward_std != 1.0,
           "the model folder is a normalised reward model");

    rc = rm("eval --model %s --data %s --threads 1", tap_tmp("rm"), tap_tmp("labels.jsonl"));
    check(rc == 0 && strstr(out, "accuracy") && strstr(out, "\nall ") &&
              strstr(out, "\nkind known ") && strstr(out, "\nkind unknown ") &&
              strstr(out, "\nannotator a1 ") && strstr(out, "\nannotator a2 "),
          "rm eval: overall, per kind and per annotator");
    rc = rm("eval --model %s --data %s --json --threads 1", tap_tmp("rm"), tap_tmp("labels.jsonl"));
    cJSON *j = cJSON_Parse(out);
    const cJSON *pairs = cJSON_GetObjectItem(j, "pairs"), *acc = cJSON_GetObjectItem(j, "accuracy");
    const cJSON *known = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kinds"), "known");
    const cJSON *a1 = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "annotators"), "a1");
    check(rc == 0 && cJSON_IsNumber(pairs) && pairs->valuedouble == 120 && cJSON_IsNumber(acc) &&
              acc->valuedouble > 0.9 && cJSON_IsNumber(cJSON_GetObjectItem(known, "pairs")) &&
              cJSON_GetObjectItem(a1, "accuracy"),
          "rm eval --json: one object; 40 rankings of 3 are 120 pairs, mostly right");
    cJSON_Delete(j);

    rc = rm("score --model %s --input %s --out %s --batch 2 --threads 1", tap_tmp("rm"),
            tap_tmp("samples.jsonl"), tap_tmp("scored.jsonl"));
    char *scored = NULL;
    snprintf(path, sizeof path, "%s", tap_tmp("scored.jsonl"));
    io_read_file(path, &scored, &len, &e);
    char *nl = scored ? strchr(scored, '\n') : NULL;
    cJSON *r1 = scored ? cJSON_Parse(scored) : NULL, *r2 = nl ? cJSON_Parse(nl + 1) : NULL;
    const cJSON *rw1 = cJSON_GetObjectItem(r1, "reward"), *rw2 = cJSON_GetObjectItem(r2, "reward");
    check(rc == 0 && cJSON_IsArray(rw1) && cJSON_GetArraySize(rw1) == 3 &&
              cJSON_GetObjectItem(r1, "model") && cJSON_IsNumber(rw2) && rw2->valuedouble != 7 &&
              cJSON_GetArrayItem(rw1, 0)->valuedouble > cJSON_GetArrayItem(rw1, 1)->valuedouble,
          "rm score: one reward per completion, one for a response (replacing an old one)");
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    pl_free(scored);
}

static void test_bad_input(void)
{
    int rc = rm("eval --model %s --data %s", tap_tmp("lm"), tap_tmp("labels.jsonl"));
    check(rc == 1 && strstr(err, "no score head"), "rm eval of a language model: exit 1");
    rc = rm("score --model %s --input %s --out %s", tap_tmp("lm"), tap_tmp("samples.jsonl"),
            tap_tmp("never.jsonl"));
    check(rc == 1 && strstr(err, "no score head") && access(tap_tmp("never.jsonl"), F_OK) != 0,
          "rm score of a language model: exit 1, no output");
    rc = rm("train --model %s --data %s --out %s --threads 1", tap_tmp("lm"), tap_tmp("tied.jsonl"),
            tap_tmp("t1"));
    check(rc == 1 && strstr(err, "nothing to train on") && strstr(err, "all tie"),
          "a group with no pairs only: exit 1");
    rc = rm("train --model %s --data %s --out %s --threads 1", tap_tmp("lm"), tap_tmp("empty.jsonl"),
            tap_tmp("t2"));
    check(rc == 1 && strstr(err, "empty.jsonl: no records"), "empty data: exit 1");
    rc = rm("eval --model %s --data %s --threads 1", tap_tmp("rm"), tap_tmp("tied.jsonl"));
    check(rc == 1 && strstr(err, "no pairs to evaluate"), "rm eval without pairs: exit 1");
    rc = rm("score --model %s --input %s --out %s --threads 1", tap_tmp("rm"), tap_tmp("bad.jsonl"),
            tap_tmp("never.jsonl"));
    check(rc == 1 && strstr(err, "bad.jsonl:2: expected a field 'response'") &&
              access(tap_tmp("never.jsonl"), F_OK) != 0,
          "a record without response or completions: file and line, no output");
}

int main(void)
{
    const char *tmpdir = tap_tmpdir("cmd-rm");
    tap_plan(20);
    make_data();
    test_help();
    test_train_eval_score();
    test_bad_input();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmpdir);
    return tap_done();
}
