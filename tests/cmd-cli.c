/* cmd-cli: the plumb binary ($PLUMB_BIN) as a user meets it: --help everywhere, exit 2 for usage
 * errors naming the option and 1 for data errors, and outputs that never lose data (an output
 * that is also the input is refused, a failed run leaves an earlier output as it was, folders
 * of something else are not written into without --force). */
#include "tests/fixture.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bin;
static char out[1 << 16], err[1 << 16];

#define BYTE_MODEL                                                                                 \
    "'{\"n_layer\":1,\"n_embd\":32,\"n_head\":2,\"vocab_size\":257,\"n_positions\":32,"            \
    "\"tokenizer\":\"byte\"}'"

#define plumb(...) tap_plumb(out, sizeof out, err, sizeof err, __VA_ARGS__)

/* Same, through sh with a file size limit of `blocks` 512-byte blocks: a disk that fills up. */
static int plumb_limited(int blocks, const char *args)
{
    char cmd[4096 + PATH_MAX];
    snprintf(cmd, sizeof cmd, "sh -c \"trap '' XFSZ; ulimit -f %d; exec %s %s\"", blocks, bin,
             args);
    return tap_shell(cmd, out, sizeof out, err, sizeof err);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* The whole file (caller frees), or NULL when it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    for (size_t k; (k = fread(p + n, 1, cap - n, f)) > 0;)
        if ((n += k) == cap)
            p = realloc(p, (cap *= 2) + 1);
    fclose(f);
    p[n] = '\0';
    if (len)
        *len = n;
    return p;
}

static bool file_is(const char *path, const char *want)
{
    char *got = slurp(path, NULL);
    bool same = got && strcmp(got, want) == 0;
    free(got);
    return same;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* A test whose failure shows what the command said. */
static void check(bool pass, const char *what)
{
    if (!tap_ok(pass, "%s", what))
        tap_diag("stdout: %s\nstderr: %s", out, err);
}

static bool said(const char *s)
{
    return strstr(err, s) != NULL;
}

/* ---- plumb help, --help, --version, dispatch ---- */

static void test_help(void)
{
    const char *names[] = {"help",     "world",  "init",     "score", "tokenize",
                           "generate", "sample", "pretrain", "sft",   "bench"};
    for (int i = 0; i < 10; i++) {
        int rc = plumb("%s --help", names[i]);
        char top[64], usage[64];
        snprintf(top, sizeof top, "plumb %s: ", names[i]);
        snprintf(usage, sizeof usage, "\nusage: plumb %s", names[i]);
        tap_ok(rc == 0 && strncmp(out, top, strlen(top)) == 0 && strstr(out, usage) && !err[0],
               "plumb %s --help: exit 0, usage on stdout (exit %d)", names[i], rc);
    }
    plumb("score -h");
    char *h = strdup(out);
    int rc = plumb("help score");
    tap_ok(rc == 0 && strcmp(out, h) == 0, "plumb help score is plumb score -h");
    free(h);
    rc = plumb("help");
    tap_ok(rc == 0 && strstr(out, "  score ") && strstr(out, "  tokenize ") &&
               strstr(out, "  bench ") && strstr(out, "  world ") && strstr(out, "  init "),
           "plumb help lists the commands");
    rc = plumb("--version");
    tap_ok(rc == 0 && strcmp(out, "plumb 0.1.0\n") == 0, "plumb --version");
    rc = plumb("%s", "");
    tap_ok(rc == 2 && !out[0] && strstr(err, "usage: plumb COMMAND"),
           "plumb alone: the list on stderr, exit 2");
    rc = plumb("scroe --model m");
    check(rc == 2 && said("'scroe' is not a plumb command"), "an unknown command: exit 2");
    rc = plumb("help scroe");
    tap_ok(rc == 2 && said("'scroe' is not a plumb command"), "plumb help of an unknown command");
}

/* ---- exit status ---- */

static void test_status(void)
{
    int rc = plumb("score --model");
    check(rc == 2 && said("plumb score: option '--model' needs a value"),
          "score --model: exit 2, the value is missing");
    rc = plumb("init --config " BYTE_MODEL " --out never --stpes 3");
    check(rc == 2 && said("plumb init: unknown option '--stpes'") && !exists("never"),
          "an unknown option: exit 2, named, nothing written");
    rc = plumb("score --model m --input s.jsonl --threads -5");
    check(rc == 2 && said("option '--threads': '-5' is not an integer in [1, 4096]"),
          "--threads -5 as the last option: exit 2");
    rc = plumb("score --input s.jsonl");
    check(rc == 2 && said("option '--model' is required"), "a required option: exit 2");
    rc = plumb("tokenize --model m");
    tap_ok(rc == 2 && said("give one of --text and --input"), "tokenize without input: exit 2");
    rc = plumb("tokenize --model m --text hi --decode --special");
    tap_ok(rc == 2 && said("--special applies to encoding only"), "--decode --special: exit 2");
    rc = plumb("init --config '{\"n_layer\": 1' --out never");
    check(rc == 2 && said("plumb init: --config:") && !exists("never"),
          "a malformed --config: exit 2, nothing written");
    rc = plumb("init --config '{\"n_layer\":1,\"n_embd\":64,\"n_head\":2,\"vocab_size\":300,"
               "\"n_positions\":64,\"tokenizer\":\"byte\"}' --out never");
    check(rc == 2 && said("vocab_size") && !exists("never"),
          "a byte model with 300 ids is not written");
    rc = plumb("init --config '{\"n_layer\":100000,\"n_embd\":768,\"n_head\":12,"
               "\"vocab_size\":257,\"n_positions\":1024,\"tokenizer\":\"byte\"}' --out never");
    check(rc == 1 && said("memory") && !exists("never"),
          "a model larger than the machine's memory: exit 1, nothing written");
    rc = plumb("score --model nowhere --input s.jsonl");
    check(rc == 1 && said("nowhere"), "a missing model: exit 1");
    rc = plumb("bench --config '{\"n_layer\": 0}'");
    check(rc == 2 && said("plumb bench: --config:"), "bench's malformed --config: exit 2");
}

/* ---- plumb init ---- */

static void test_init(void)
{
    int rc = plumb("init --config " BYTE_MODEL " --out m");
    check(rc == 0 && exists("m/config.json") && exists("m/model.safetensors"),
          "init writes a model");
    size_t n1, n2;
    char *w1 = slurp("m/model.safetensors", &n1);
    rc = plumb("init --config " BYTE_MODEL " --out m --seed 5");
    char *w2 = slurp("m/model.safetensors", &n2);
    check(rc == 1 && said("--force") && w1 && w2 && n1 == n2 && memcmp(w1, w2, n1) == 0,
          "init over an existing folder: exit 1, the model there untouched");
    free(w2);
    write_text("m/state.safetensors", "stale");
    write_text("m/metrics.jsonl", "{\"step\": 1}\n");
    write_text("m/run.json", "{}");
    write_text("m/notes.txt", "mine");
    rc = plumb("init --config " BYTE_MODEL " --out m --seed 5 --force");
    w2 = slurp("m/model.safetensors", &n2);
    check(rc == 0 && w2 && n1 == n2 && memcmp(w1, w2, n1) != 0, "init --force replaces the model");
    tap_ok(!exists("m/state.safetensors") && !exists("m/metrics.jsonl") && !exists("m/run.json") &&
               exists("m/notes.txt"),
           "init --force removes the old run's state, metrics and run.json, nothing else");
    free(w1);
    free(w2);
}

/* ---- plumb score ---- */

static void test_score(void)
{
    const char *input = "{\"text\": \"abc\"}\n{\"tokens\": [1, 2]}\n";
    write_text("s.jsonl", input);
    int rc = plumb("score --model m --input s.jsonl --threads 1");
    char *want = strdup(out);
    check(rc == 0 && strncmp(out, "{\"tokens\":[97,98,99],\"logprobs\":[", 33) == 0,
          "score writes to stdout");
    rc = plumb("score --model m --input s.jsonl --out scores.jsonl --threads 1");
    check(rc == 0 && !out[0] && file_is("scores.jsonl", want) && !exists("scores.jsonl.tmp"),
          "score --out writes the same lines there");
    rc = plumb("score --model m --input s.jsonl --out s.jsonl --threads 1");
    check(rc == 2 && said("--out 's.jsonl' is the --input file") && file_is("s.jsonl", input),
          "--out the --input: exit 2, the input untouched");
    char cwd[PATH_MAX];
    rc = plumb("score --model m --input s.jsonl --out ../%s/./s.jsonl --threads 1",
               getcwd(cwd, sizeof cwd) ? strrchr(cwd, '/') + 1 : "");
    tap_ok(rc == 2 && file_is("s.jsonl", input), "the same file by another path is refused too");
    write_text("bad.jsonl", "{\"text\": \"ok\"}\n{\"tokens\": [1, 300]}\n");
    rc = plumb("score --model m --input bad.jsonl --out scores.jsonl --threads 1");
    check(rc == 1 && said("bad.jsonl:2: field 'tokens'") && file_is("scores.jsonl", want) &&
              !exists("scores.jsonl.tmp"),
          "bad input: exit 1 naming file and line, an earlier --out left as it was");
    free(want);
}

/* ---- plumb tokenize ---- */

/* tokenize with input as the --input file's text. */
static int tokenize(const char *input, const char *opts)
{
    write_text("in.jsonl", input);
    return plumb("tokenize --model m --input in.jsonl %s", opts);
}

/* Whether `out` is lines of {"text": ...} with these texts. */
static bool decoded(const char *const *texts, int n)
{
    char *line = out;
    for (int i = 0; i < n; i++) {
        char *end = strchr(line, '\n');
        if (!end)
            return false;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)(end - line));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        bool ok = cJSON_IsString(t) && strcmp(t->valuestring, texts[i]) == 0;
        cJSON_Delete(j);
        if (!ok)
            return false;
        line = end + 1;
    }
    return *line == '\0';
}

/* Whether s is valid UTF-8. */
static bool utf8(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80             ? 0
                : (*s & 0xE0) == 0xC0 ? 1
                : (*s & 0xF0) == 0xE0 ? 2
                : (*s & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *s < 0xC2))
            return false;
        for (s++; n > 0; n--, s++)
            if ((*s & 0xC0) != 0x80)
                return false;
    }
    return true;
}

static void test_tokenize(void)
{
    int rc = tokenize("{\"text\": \"hi\"}\n\n{\"text\": \"\\n<|endoftext|>\"}\n", "--special");
    check(rc == 0 && strcmp(out, "[104,105]\n[10,256]\n") == 0,
          "encode: one array a line, blank lines skipped");
    rc = tokenize("{\"text\": \"hi\"}\n{\"txt\": 1}\n", "");
    check(rc == 1 && said("in.jsonl:2: field 'text': expected a string"),
          "encode: a record without text");
    rc = tokenize("{\"text\": \"hi\"\n", "");
    check(rc == 1 && said("in.jsonl:1: not a JSON object"), "encode: bad JSON");
    rc = tokenize("[104,105]\n\r\n{\"tokens\": [34, 10, 256]}\r\n[]", "--decode");
    const char *texts[] = {"hi", "\"\n<|endoftext|>", ""};
    check(rc == 0 && decoded(texts, 3), "decode: {\"text\": ...} lines");
    rc = tokenize("[255, 104, 226, 130]\n", "--decode");
    check(rc == 0 && utf8((const unsigned char *)out) && strstr(out, "\xef\xbf\xbd") != NULL,
          "decode: bytes that are not UTF-8 come out as U+FFFD, valid UTF-8");
    rc = tokenize("[1]\n[1, 257]\n", "--decode");
    check(rc == 1 && said("in.jsonl:2: token id 257 out of range (vocab size 257)"),
          "decode: an id outside the vocabulary");
    rc = tokenize("[1.5]\n", "--decode");
    check(rc == 1 && said("in.jsonl:1: expected an array of integer token ids"),
          "decode: a fractional id");
    rc = tokenize("\n{\"ids\": [1]}\n", "--decode");
    check(rc == 1 && said("in.jsonl:2: expected an array of token ids or {\"tokens\": [...]}"),
          "decode: an object without tokens");
    rc = tokenize("[1,\n", "--decode");
    check(rc == 1 && said("in.jsonl:1: not valid JSON"), "decode: bad JSON");

    rc = plumb("tokenize --model m --text hi");
    tap_ok(rc == 0 && strcmp(out, "[104,105]\n") == 0, "--text: encode");
    rc = plumb("tokenize --model m --decode --text '[104, 105]'");
    tap_ok(rc == 0 && strcmp(out, "hi\n") == 0, "--text: decode");
    rc = plumb("tokenize --model m --decode --text '[104,'");
    check(rc == 1 && said("--text: not valid JSON"), "--text: bad JSON");

    write_text("in.jsonl", "{\"text\": \"hi\"}\n");
    rc = plumb("tokenize --model m --input in.jsonl --out ids.txt");
    tap_ok(rc == 0 && !out[0] && file_is("ids.txt", "[104,105]\n"), "--out: written there");
    rc = plumb("tokenize --model m --input in.jsonl --out in.jsonl");
    check(rc == 2 && file_is("in.jsonl", "{\"text\": \"hi\"}\n"),
          "--out the --input: exit 2, the input untouched");
    write_text("in.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
    rc = plumb("tokenize --model m --input in.jsonl --out ids.txt");
    tap_ok(rc == 1 && file_is("ids.txt", "[104,105]\n") && !exists("ids.txt.tmp"),
           "bad input: an earlier --out left as it was");
}

/* ---- plumb world ---- */

static const char *const world_files[] = {
    "world.json",    "corpus.txt",    "sft.jsonl",        "sft_eval.jsonl",    "prompts.jsonl",
    "qa_eval.jsonl", "mc_eval.jsonl", "bias_pairs.jsonl", "constitution.json", "annotators.json",
};

/* Whether every world file is in dir (or none, when want is false), and no temporary file. */
static bool world_in(const char *dir, bool want)
{
    char path[PATH_MAX];
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof path, "%s/%s.tmp", dir, world_files[i]);
        if (exists(path))
            return false;
        snprintf(path, sizeof path, "%s/%s", dir, world_files[i]);
        if (exists(path) != want)
            return false;
    }
    return true;
}

static void test_world(void)
{
    int rc = plumb("world --out w/a");
    check(rc == 0 && world_in("w/a", true) && strcmp(out, "w/a: toy world, seed 1\n") == 0,
          "world writes every file, parent folders made");
    rc = plumb("world --out w/a --seed 2");
    check(rc == 0 && world_in("w/a", true), "a world over a world");
    mkdir("w/b", 0777);
    write_text("w/b/notes.txt", "mine");
    rc = plumb("world --out w/b");
    check(rc == 1 && said("--force") && world_in("w/b", false) && file_is("w/b/notes.txt", "mine"),
          "a non-empty folder holding no world: exit 1, nothing written");
    rc = plumb("world --out w/b --force");
    check(rc == 0 && world_in("w/b", true) && file_is("w/b/notes.txt", "mine"),
          "--force writes the world beside what is there");

    rc = plumb_limited(8, "world --out w/c");
    check(rc == 1 && said("w/c/world.json") && !exists("w/c/world.json") &&
              !exists("w/c/world.json.tmp"),
          "a full disk: no empty world.json, the path named");
    rc = plumb("world --out w/d");
    size_t n1, n2;
    char *before = slurp("w/d/corpus.txt", &n1);
    rc = plumb_limited(100, "world --out w/d --seed 3");
    char *after = slurp("w/d/corpus.txt", &n2);
    check(rc == 1 && said("w/d/corpus.txt") && before && after && n1 == n2 &&
              memcmp(before, after, n1) == 0 && !exists("w/d/corpus.txt.tmp"),
          "a full disk: the corpus there stays whole");
    free(before);
    free(after);
}

int main(void)
{
    bin = tap_plumb_bin();
    char dir[] = "/tmp/plumb-cli-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0)
        tap_skip_all("cannot make a temporary folder");
    tap_plan(57);
    test_help();
    test_status();
    test_init();
    test_score();
    test_tokenize();
    test_world();
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (chdir("/") == 0 && system(rm) != 0)
        tap_diag("cannot remove %s", dir);
    return tap_done();
}
