/* plumb generate and plumb sample, called as the binary would call them (cmd_generate,
 * cmd_sample) with standard output and error captured: records and progress, resuming
 * byte-identically above the batch sizes where a kernel used to change path, refusing an
 * output that is the input and a file from another model or -k, bad input leaving the output
 * as it was, valid UTF-8 in JSON and no control characters on the terminal, exit statuses. */
#include "cmd/gen.h"
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/tensor.h"
#include "model/tok.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/plumb-cmd-gen-XXXXXX";

/* tmpdir/name in a buffer of its own (one per distinct name). */
static const char *tmp(const char *name)
{
    static char path[32][160];
    static int used;
    for (int i = 0; i < used; i++)
        if (strcmp(path[i] + strlen(tmpdir) + 1, name) == 0)
            return path[i];
    if (used == 32)
        abort();
    snprintf(path[used], sizeof path[0], "%s/%s", tmpdir, name);
    return path[used++];
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* The whole file in a new pl_malloc string ("" when missing). */
static char *get(const char *path)
{
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pl_strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    buf = pl_malloc((size_t)n + 1);
    buf[fread(buf, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return buf;
}

static int same_text(const char *path, const char *want)
{
    char *got = get(path);
    int same = strcmp(got, want) == 0;
    pl_free(got);
    return same;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Last captured standard output and error. */
static char *out_text, *err_text;

/* Run cmd with the NULL-terminated arguments after its name, capturing what it prints. */
static int run(int (*cmd)(int, char **), const char *name, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)name;
    va_list ap;
    va_start(ap, name);
    for (const char *a; (a = va_arg(ap, const char *));)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fo = open(tmp("stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(tmp("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    int status = cmd(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(fo);
    close(fe);
    pl_free(out_text);
    pl_free(err_text);
    out_text = get(tmp("stdout"));
    err_text = get(tmp("stderr"));
    return status;
}

/* A random byte-level model in tmpdir/name: its bytes come out nearly uniform, control
 * characters and invalid UTF-8 included. */
static void save_model(const char *name, int vocab, const char *tokenizer, uint64_t seed)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = vocab;
    c.n_positions = 64;
    c.n_embd = 32;
    c.n_layer = 2;
    c.n_head = 2;
    c.bos_token_id = c.eos_token_id = 256;
    snprintf(c.tokenizer, sizeof c.tokenizer, "%s", tokenizer);
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 1};
    int rc = gpt_init(&m, &c, &go, &err);
    if (!rc) {
        gpt_init_weights(&m, seed);
        rc = ckpt_save(&m, tmp(name), &err);
    }
    if (rc)
        tap_diag("saving %s: %s", name, err.msg);
    gpt_release(&m);
}

/* Whether s[0..n) is valid UTF-8 (no surrogates, no overlong forms, at most U+10FFFF). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        int len = c < 0x80                 ? 1
                  : c >= 0xc2 && c <= 0xdf ? 2
                  : c >= 0xe0 && c <= 0xef ? 3
                  : c >= 0xf0 && c <= 0xf4 ? 4
                                           : 0;
        if (!len || i + len > n)
            return 0;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) ||
            (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))
            return 0;
        i += len;
    }
    return 1;
}

static const char prompts5[] = "{\"id\": \"a\", \"prompt\": \"Once\"}\n"
                               "{\"id\": \"b\", \"prompt\": \"The sky is\"}\n"
                               "\n"
                               "{\"id\": \"c\", \"prompt\": \"\"}\n"
                               "{\"id\": \"d\", \"prompt\": \"x\\ty\"}\n"
                               "{\"id\": \"e\", \"prompt\": \"last one\", \"extra\": 1}\n";

/* Records, progress, and refusing an --out that is the --prompts file. */
static void test_records(void)
{
    const char *model = tmp("model"), *prompts = tmp("prompts.jsonl"), *out = tmp("samples.jsonl");
    put(prompts, prompts5);
    int st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k",
                 "2", "--max-new-tokens", "6", "--batch", "4", "--seed", "7", NULL);
    char *first = get(out);
    tap_ok(st == 0 && count_lines(first) == 5, "plumb sample writes a record per prompt: %s",
           st ? err_text : "5 lines");
    tap_ok(strstr(err_text, "5/5 prompts") && strstr(err_text, "tokens/s"),
           "with a progress line on standard error: %.*s", (int)strcspn(err_text, "\n"), err_text);
    cJSON *rec = cJSON_ParseWithLength(first, strcspn(first, "\n"));
    const cJSON *comp = cJSON_GetObjectItem(rec, "completions");
    const cJSON *lps = cJSON_GetObjectItem(rec, "logprobs");
    tap_ok(cJSON_IsString(cJSON_GetObjectItem(rec, "id")) && cJSON_GetArraySize(comp) == 2 &&
               cJSON_GetArraySize(lps) == 2 &&
               cJSON_GetArraySize(cJSON_GetArrayItem(lps, 0)) ==
                   cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(rec, "tokens"), 0)) &&
               cJSON_IsString(cJSON_GetObjectItem(rec, "model")),
           "a record holds id, prompt, 2 completions, their tokens and log-probs, the model");
    cJSON_Delete(rec);

    /* The prompts file as --out, by its name and by another path: refused, left as it was. */
    char other[200];
    snprintf(other, sizeof other, "%s/./prompts.jsonl", tmpdir);
    symlink(prompts, tmp("link.jsonl"));
    const char *same[] = {prompts, other, tmp("link.jsonl")};
    for (int i = 0; i < 3; i++) {
        st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", same[i],
                 "-k", "2", "--max-new-tokens", "6", NULL);
        tap_ok(st == 2 && strstr(err_text, "--out") && same_text(prompts, prompts5),
               "--out %s, the prompts file, is refused (exit %d) and left as it was: %.*s",
               i ? (i == 1 ? "through './'" : "through a symlink") : "by its name", st,
               (int)strcspn(err_text, "\n"), err_text);
    }

    /* A crash cut the fourth line short and lost the fifth: a rerun redoes exactly those, and
     * a third run has nothing to do. */
    size_t keep = 0;
    for (int line = 0; line < 3; line++)
        keep += strcspn(first + keep, "\n") + 1;
    char *cut = pl_strdup(first);
    cut[keep + 20] = '\0';
    put(out, cut);
    pl_free(cut);
    st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k", "2",
             "--max-new-tokens", "6", "--batch", "4", "--seed", "7", NULL);
    tap_ok(st == 0 && same_text(out, first),
           "resume drops the cut-short line and writes the missing records once, identically");
    st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k", "2",
             "--max-new-tokens", "6", "--batch", "4", "--seed", "7", NULL);
    tap_ok(st == 0 && same_text(out, first) && strstr(err_text, "0/0 prompts"),
           "a finished file is left as it is");

    /* Resuming with another model or another -k: an error naming the file and line. */
    st = run(cmd_sample, "sample", "--model", tmp("other"), "--prompts", prompts, "--out", out,
             "-k", "2", "--max-new-tokens", "6", NULL);
    tap_ok(st == 1 && strstr(err_text, "samples.jsonl:1: written by model") &&
               same_text(out, first),
           "a file written by another model is not resumed: %.*s", (int)strcspn(err_text, "\n"),
           err_text);
    st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k", "3",
             "--max-new-tokens", "6", NULL);
    tap_ok(st == 1 && strstr(err_text, "samples.jsonl:1: 2 completions a prompt, not -k 3") &&
               same_text(out, first),
           "nor one written with another -k: %.*s", (int)strcspn(err_text, "\n"), err_text);
    char alias[200];
    snprintf(alias, sizeof alias, "%s/./model", tmpdir);
    st = run(cmd_sample, "sample", "--model", alias, "--prompts", prompts, "--out", out, "-k", "2",
             "--max-new-tokens", "6", NULL);
    tap_ok(st == 0 && same_text(out, first), "the same model by another path resumes");

    /* Bad input: a clear error, and the output exactly as it was. */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"", "prompts.jsonl: no records"},
        {"{\"id\": \"a\", \"prompt\": \"ok\"}\n{\"id\": \"b\", \"prompt\": 5}\n",
         "prompts.jsonl:2: field 'prompt': expected a string"},
        {"{\"id\": 1, \"prompt\": \"ok\"}\n", "prompts.jsonl:1: field 'id': expected a string"},
        {"{\"id\": \"a\", \"prompt\": \"ok\"}\n{\"id\": \"a\", \"prompt\": \"again\"}\n",
         "prompts.jsonl:2: field 'id': duplicate id 'a' (first on line 1)"},
        {"{\"id\": \"a\", \"prompt\": \"ok\"}\n{\"id\": \"z\", \"prompt\": \"0123456789012345678901"
         "234567890123456789012345678901234567890123456789\"}\n",
         "prompts.jsonl:2: prompt of 70 tokens leaves no room to generate in the model's context "
         "of 64"},
        {"not json\n", "prompts.jsonl:1: not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        put(prompts, bad[i].text);
        st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k",
                 "2", NULL);
        const char *msg = strstr(err_text, "prompts.jsonl");
        tap_ok(st == 1 && msg && strncmp(msg, bad[i].want, strlen(bad[i].want)) == 0 &&
                   msg[strlen(bad[i].want)] == '\n' && same_text(out, first),
               "bad input %zu: exit %d, %.*s", i, st, (int)strcspn(err_text, "\n"), err_text);
    }

    put(prompts, "{\"id\": \"a\", \"prompt\": \"ok\"}\n");
    char rec_ok[512];
    snprintf(rec_ok, sizeof rec_ok,
             "{\"id\": \"a\", \"model\": \"%s\", \"completions\": [\"x\", \"y\"]}\n{\"oops\": 1}\n",
             model);
    put(out, rec_ok);
    st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k", "2",
             NULL);
    tap_ok(st == 1 && strstr(err_text, "samples.jsonl:2: field 'id': expected a string") &&
               same_text(out, rec_ok),
           "a bad record in the output is reported, not rewritten: %.*s",
           (int)strcspn(err_text, "\n"), err_text);
    pl_free(first);
}

/* A resumed run writes the bytes of an uninterrupted one even when the uninterrupted one ran
 * passes of over 128 rows and 64 sequences, and the resumed one smaller passes. */
static void test_resume_exact(void)
{
    const char *model = tmp("model"), *prompts = tmp("prompts10.jsonl");
    const char *out = tmp("exact.jsonl");
    char text[4096] = "";
    for (int i = 0; i < 10; i++) {
        size_t at = strlen(text);
        snprintf(text + at, sizeof text - at,
                 "{\"id\": \"p%d\", \"prompt\": \"prompt number %d, thirty bytes long\"}\n", i, i);
    }
    put(prompts, text);
    unlink(out);
    int st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k",
                 "8", "--batch", "80", "--max-new-tokens", "8", "--seed", "3", NULL);
    char *whole = get(out);
    tap_ok(st == 0 && count_lines(whole) == 10, "10 prompts x 8 samples in batches of 80");
    size_t keep = 0;
    for (int line = 0; line < 3; line++)
        keep += strcspn(whole + keep, "\n") + 1;
    char *cut = pl_strdup(whole);
    cut[keep + 40] = '\0';
    put(out, cut);
    pl_free(cut);
    st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k", "8",
             "--batch", "80", "--max-new-tokens", "8", "--seed", "3", NULL);
    tap_ok(st == 0 && same_text(out, whole),
           "cut after 3 records and resumed (56 sequences left): byte for byte the same file, "
           "log-probs included");
    pl_free(whole);
}

/* Model text in JSON as valid UTF-8; on the terminal without control characters. */
static void test_text(void)
{
    const char *model = tmp("model"), *prompts = tmp("one.jsonl"), *out = tmp("utf8.jsonl");
    put(prompts, "{\"id\": \"x\", \"prompt\": \"Hi\"}\n");
    unlink(out);
    int st = run(cmd_sample, "sample", "--model", model, "--prompts", prompts, "--out", out, "-k",
                 "2", "--max-new-tokens", "40", "--seed", "3", NULL);
    char *file = get(out);
    cJSON *rec = cJSON_Parse(file);
    const cJSON *comp = cJSON_GetObjectItem(rec, "completions");
    const cJSON *toks = cJSON_GetObjectItem(rec, "tokens");
    int valid = valid_utf8((const unsigned char *)file, strlen(file)), raw_bad = 0, kept = 1;
    int control = 0;
    for (int k = 0; k < cJSON_GetArraySize(comp); k++) {
        const cJSON *ids = cJSON_GetArrayItem(toks, k);
        unsigned char raw[64];
        int n = 0;
        for (int j = 0; j < cJSON_GetArraySize(ids); j++) {
            int id = cJSON_GetArrayItem(ids, j)->valueint;
            if (id < 256)
                raw[n++] = (unsigned char)id;
            control += id < 256 && id < 0x20 && id != '\n' && id != '\t';
        }
        const char *c = cJSON_GetArrayItem(comp, k)->valuestring;
        if (valid_utf8(raw, (size_t)n))
            kept &= strlen(c) == (size_t)n && memcmp(c, raw, (size_t)n) == 0;
        else
            raw_bad += strstr(c, "\xef\xbf\xbd") != NULL;
        valid &= valid_utf8((const unsigned char *)c, strlen(c));
    }
    tap_ok(st == 0 && cJSON_GetArraySize(comp) == 2 && valid && kept && raw_bad > 0,
           "a random byte-level model's invalid UTF-8 is written as U+FFFD (%d completions "
           "replaced), the file parses as valid UTF-8, valid text is kept as it is",
           raw_bad);

    /* plumb generate draws the same tokens (same seed, prompt index 0), control characters
     * included, and shows them without. */
    st = run(cmd_generate, "generate", "--model", model, "--prompt", "Hi", "--n", "2",
             "--max-new-tokens", "40", "--seed", "3", NULL);
    int clean = 1;
    for (const unsigned char *p = (const unsigned char *)out_text; *p; p++)
        clean &= !((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f);
    tap_ok(st == 0 && control > 0 && clean && strstr(out_text, "--- completion 2 of 2 ---\n"),
           "plumb generate strips the %d control characters the model produced", control);
    cJSON_Delete(rec);
    pl_free(file);
}

/* Exit statuses, the GPT-2 fixture, and a model whose vocabulary outruns its tokenizer. */
static void test_commands(void)
{
    int st = run(cmd_generate, "generate", "--model", "tests/data/tiny-gpt2", "--prompt",
                 "hello world", "--n", "2", "--max-new-tokens", "8", "--seed", "3", NULL);
    tap_ok(st == 0 && strstr(out_text, "--- completion 1 of 2 ---\n") &&
               strstr(out_text, "--- completion 2 of 2 ---\n"),
           "the GPT-2 fixture generates text: %s", st ? err_text : "ok");
    st = run(cmd_generate, "generate", "--model", "tests/data/tiny-gpt2", "--prompt", "x",
             "--top-p", "2", NULL);
    tap_ok(st == 2 && strstr(err_text, "--top-p"), "a bad --top-p exits 2, naming it");
    st = run(cmd_generate, "generate", "--model", "tests/data/tiny-gpt2", "--prompt", "x", "--n",
             "3", "--beam", "2", NULL);
    tap_ok(st == 2 && strstr(err_text, "--beam"), "3 completions of a beam of 2 exit 2: %.*s",
           (int)strcspn(err_text, "\n"), err_text);
    st = run(cmd_sample, "sample", "--model", "tests/data/tiny-gpt2", "-k", "2", NULL);
    tap_ok(st == 2 && strstr(err_text, "--prompts"), "plumb sample without --prompts exits 2");
    st = run(cmd_sample, "sample", "--model", "tests/data/tiny-gpt2", "--prompts",
             "/nonexistent.jsonl", "-k", "2", "--out", tmp("never.jsonl"), NULL);
    tap_ok(st == 1 && access(tmp("never.jsonl"), F_OK) != 0,
           "a missing prompt file exits 1 and writes nothing");
    st = run(cmd_sample, "sample", "--help", NULL);
    tap_ok(st == 0 && strstr(out_text, "--prompts") && strstr(out_text, "--stop"),
           "plumb sample --help lists its options");

    /* A byte-tokenizer model of 300 ids: ids 257..299 have no bytes (this crashed). */
    save_model("b300", 300, "gpt2", 9);
    char *cfg = get(tmp("b300/config.json"));
    char *at = strstr(cfg, "\"tokenizer\"");
    at = at ? strstr(at, "\"gpt2\"") : NULL;
    if (at)
        memcpy(at, "\"byte\"", 6);
    put(tmp("b300/config.json"), cfg);
    pl_free(cfg);
    st = run(cmd_generate, "generate", "--model", tmp("b300"), "--prompt", "Hello", NULL);
    tap_ok(st == 1 && strstr(err_text, "300"),
           "a 300-id model with the byte tokenizer: exit 1, %.*s", (int)strcspn(err_text, "\n"),
           err_text);
    put(tmp("one.jsonl"), "{\"id\": \"x\", \"prompt\": \"Hi\"}\n");
    st = run(cmd_sample, "sample", "--model", tmp("b300"), "--prompts", tmp("one.jsonl"), "--out",
             tmp("b300.jsonl"), NULL);
    tap_ok(st == 1 && access(tmp("b300.jsonl"), F_OK) != 0,
           "and plumb sample exits 1 without creating its output");
}

static void remove_tree(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);
}

int main(void)
{
    struct pl_err err;
    if (tensor_init(NULL, 0, &err))
        tap_skip_all(err.msg);
    if (!mkdtemp(tmpdir))
        tap_skip_all("no temporary folder");
    tap_plan(3 + 3 + 2 + 3 + 6 + 1 + 2 + 2 + 8);
    save_model("model", 257, "byte", 5);
    save_model("other", 257, "byte", 6);
    test_records();
    test_resume_exact();
    test_text();
    test_commands();
    pl_free(out_text);
    pl_free(err_text);
    remove_tree(tmpdir);
    return tap_done();
}
