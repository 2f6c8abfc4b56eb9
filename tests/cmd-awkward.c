/* cmd-awkward: awkward input to the plumb binary ($PLUMB_BIN) as users meet it: empty files, a
 * 50 MB line, CRLF line endings and a UTF-8 byte order mark (accepted), invalid UTF-8, NUL
 * bytes, deep nesting, numbers out of range, a safetensors header pointing past the end of its
 * file, a CSV with unbalanced quotes. Each rejected input gives one error line naming the file
 * and line (or the tensor, field or option), exit status 1 (2 for a usage error), and no output
 * file or folder left behind. */
#include "tests/fixture.h"
#include "tests/tap.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *bin;
static char out[1 << 16], err[1 << 16];

#define BYTE_CONFIG                                                                                \
    "{\"n_layer\":1,\"n_embd\":16,\"n_head\":2,\"vocab_size\":257,\"n_positions\":32,"             \
    "\"tokenizer\":\"byte\"}"

#define plumb(...) tap_plumb(out, sizeof out, err, sizeof err, __VA_ARGS__)

static void write_bytes(const char *path, const char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        tap_diag("cannot write %s", path);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* stderr is exactly one line and it holds `want`. */
static bool one_error(const char *want)
{
    const char *nl = strchr(err, '\n');
    return nl && nl[1] == '\0' && strstr(err, want) && strstr(err, want) < nl;
}

/* A rejected input: exit `status`, one error line holding `want`, nothing at `left`. */
static void rejected(int rc, int status, const char *want, const char *left, const char *what)
{
    if (!tap_ok(rc == status && one_error(want) && (!left || !exists(left)),
                "%s: exit %d, one line naming it, no output left", what, status))
        tap_diag("exit %d, wanted '%s'\nstdout: %s\nstderr: %s%s", rc, want, out, err,
                 left && exists(left) ? "\n(the output was left behind)" : "");
    char rm[256];
    snprintf(rm, sizeof rm, "rm -rf %s", left ? left : "o");
    tap_system(rm);
}

static void accepted(int rc, bool also, const char *what)
{
    if (!tap_ok(rc == 0 && also, "%s: accepted", what))
        tap_diag("exit %d\nstdout: %s\nstderr: %s", rc, out, err);
}

/* A copy of model folder m as dir, with config.json replaced by config (when not NULL). */
static void model_copy(const char *dir, const char *config, size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r m %s", dir, dir);
    if (tap_system(cmd) != 0)
        tap_diag("cannot copy the model to %s", dir);
    if (config) {
        char path[256];
        snprintf(path, sizeof path, "%s/config.json", dir);
        write_bytes(path, config, len);
    }
}

/* The model folder's config.json with `from` replaced by `to`. */
static void model_config(const char *dir, const char *from, const char *to)
{
    char text[4096], edited[4096];
    tap_read_into("m/config.json", text, sizeof text);
    char *at = strstr(text, from);
    if (!at) {
        tap_diag("no '%s' in m/config.json", from);
        return;
    }
    snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    model_copy(dir, edited, strlen(edited));
}

/* `bytes` bytes of c. */
static char *run_of(int c, size_t bytes)
{
    char *p = malloc(bytes);
    if (p)
        memset(p, c, bytes);
    return p;
}

/* ---- the files ---- */

static void make_files(void)
{
    write_text("empty.jsonl", "");
    write_text("empty.txt", "");
    write_text("empty.csv", "");
    write_text("sft_crlf.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\r\n"
                                 "{\"prompt\": \"c\", \"response\": \"d\"}\r\n");
    write_text("sft_crlf.csv", "prompt,response\r\na,b\r\n\"c\r\nc\",d\r\n");
    write_text("sft_bom.jsonl", "\xef\xbb\xbf{\"prompt\": \"a\", \"response\": \"b\"}\n");
    write_text("sft_utf8.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                 "{\"prompt\": \"caf\xe9\", \"response\": \"d\"}\n");
    write_text("sft_surrogate.jsonl", "{\"prompt\": \"a\", \"response\": \"\xed\xa0\x80\"}\n");
    write_text("sft_unicode.jsonl", "{\"prompt\": \"caf\xc3\xa9 \xe2\x9c\x93\", \"response\": "
                                    "\"\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbd\"}\n");
    write_text("sft_beyond.jsonl", "{\"prompt\": \"a\", \"response\": \"\xf4\x90\x80\x80\"}\n");
    write_text("sft_overlong.jsonl", "{\"prompt\": \"\xc0\xaf\", \"response\": \"b\"}\n");
    write_bytes("sft_nul.jsonl",
                "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\0\"}\n", 50);
    write_text("sft_unbalanced.csv", "prompt,response\na,b\n\"c,d\n");
    write_text("prompts_crlf.jsonl", "{\"id\": \"1\", \"prompt\": \"a\"}\r\n");
    write_text("prompts_bom.jsonl", "\xef\xbb\xbf{\"id\": \"1\", \"prompt\": \"a\"}\n");
    write_text("prompts_utf8.jsonl", "{\"id\": \"1\", \"prompt\": \"\xff\"}\n");
    write_bytes("prompts_nul.jsonl", "{\"id\": \"1\", \"prompt\": \"a\0\"}\n", 29);
    write_text("corpus_crlf.txt", "hello\r\nworld\r\n");
    write_text("corpus_utf8.txt", "hello\nwor\xffld\n");
    write_bytes("corpus_nul.txt", "hello\nwor\0ld\n", 13);
    write_text("pairs_crlf.jsonl",
               "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\r\n");
    write_text("labels_utf8.jsonl",
               "{\"id\": \"q\", \"annotator\": \"a\", \"ranking\": [1, 0], \"completions\": "
               "[\"\xc3\", \"y\"], \"prompt\": \"p\"}\n");
    write_text("labels_range.jsonl",
               "{\"id\": \"q\", \"annotator\": \"a\", \"ranking\": [1, 5], \"completions\": "
               "[\"x\", \"y\"], \"prompt\": \"p\"}\n");
    write_text("tokens_range.jsonl", "{\"tokens\": [1, 2]}\n{\"tokens\": [1, 257]}\n");
    write_text("tokens_negative.jsonl", "{\"tokens\": [-1]}\n");
    const char *crows_head = "sent_more,sent_less,stereo_antistereo,bias_type\n";
    char text[512];
    write_text("crows_crlf.csv", "sent_more,sent_less,stereo_antistereo,bias_type\r\n"
                                 "He is tall,She is tall,stereo,gender\r\n");
    snprintf(text, sizeof text, "\xef\xbb\xbf%sHe is tall,She is tall,stereo,gender\n", crows_head);
    write_text("crows_bom.csv", text);
    snprintf(text, sizeof text,
             "%sHe is tall,She is tall,stereo,gender\n\"He is \xfe,x,stereo,"
             "gender\n",
             crows_head);
    write_text("crows_utf8.csv", text);
    snprintf(text, sizeof text,
             "%sHe is tall,She is tall,stereo,gender\n\"He is short,She is "
             "short,stereo,gender\n",
             crows_head);
    write_text("crows_unbalanced.csv", text);
    write_text("tqa_unbalanced.csv", "Type,Category,Question,Best Answer,Correct Answers,"
                                     "Incorrect Answers\nA,B,\"What?,It is,x,y\n");
    write_text("responses.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n");
    write_text("text.jsonl", "{\"text\": \"abc\"}\n");
    write_text("text_utf8.jsonl", "{\"text\": \"abc\"}\n{\"text\": \"\xff\"}\n");
    const char *constitution =
        "{\"principles\": [{\"name\": \"honesty\", \"critique_request\": \"Is it true?\", "
        "\"revision_request\": \"Make it true.\", \"rules\": [{\"kind\": \"max_words\", "
        "\"max\": 40}]}]}";
    write_text("constitution.json", constitution);
    snprintf(text, sizeof text, "\xef\xbb\xbf%s", constitution);
    write_text("constitution_bom.json", text);

    /* 100,000 '[' on line 2. */
    size_t depth = 100000;
    char *deep = run_of('[', depth + 64);
    if (deep) {
        int head = snprintf(deep, 64, "{\"prompt\": \"a\", \"response\": \"b\"}\n");
        deep[head] = '[';
        deep[head + depth] = '\n';
        write_bytes("sft_deep.jsonl", deep, head + depth + 1);
        write_bytes("config_deep.json", deep + head, depth);
        write_bytes("constitution_deep.json", deep + head, depth);
    }
    free(deep);

    /* One 50 MB line: a prompt of 50 million bytes, and a record cut short after as many. */
    size_t big = 50u << 20;
    char *line = run_of('a', big + 64);
    if (line) {
        memcpy(line, "{\"id\": \"1\", \"prompt\": \"", 23);
        memcpy(line + big, "\"}\n", 3);
        write_bytes("prompts_big.jsonl", line, big + 3);
        memcpy(line, "{\"prompt\": \"a\", \"chosen\": \"", 27);
        line[big] = '\n';
        write_bytes("pairs_big.jsonl", line, big + 1);
    }
    free(line);
}

/* m2/model.safetensors with tensor wte.weight's data moved 100 MB past the end of the file. */
static void make_bad_safetensors(void)
{
    model_copy("st_past", NULL, 0);
    static char file[1 << 20], edited[1 << 20];
    FILE *f = fopen("m/model.safetensors", "rb");
    size_t n = f ? fread(file, 1, sizeof file, f) : 0;
    if (f)
        fclose(f);
    unsigned long long hlen = 0;
    for (int i = 7; n >= 8 && i >= 0; i--)
        hlen = hlen << 8 | (unsigned char)file[i];
    const char *from = "\"data_offsets\":[0,16448]";
    char *header = file + 8, *at = hlen < n ? strstr(header, from) : NULL;
    if (!at) {
        tap_diag("cannot find wte.weight's offsets in m/model.safetensors");
        return;
    }
    int k = snprintf(edited + 8, sizeof edited - 8,
                     "%.*s\"data_offsets\":[100000000,100016448]%.*s", (int)(at - header), header,
                     (int)(hlen - (size_t)(at - header) - strlen(from)), at + strlen(from));
    for (int i = 0; i < 8; i++)
        edited[i] = (char)((unsigned long long)k >> (8 * i));
    memcpy(edited + 8 + k, file + 8 + hlen, n - 8 - hlen);
    write_bytes("st_past/model.safetensors", edited, 8 + (size_t)k + n - 8 - hlen);
    model_copy("st_short", NULL, 0);
    write_bytes("st_short/model.safetensors", file, 1000);
}

/* ---- the cases ---- */

#define SFT "sft --model m --out o --steps 2 --batch 2 --eval-every 0 --threads 1 --data"
#define PRETRAIN "pretrain --model m --out o --steps 2 --batch 2 --eval-every 0 --threads 1 --data"
#define RM "rm train --model m --out o --steps 1 --batch 1 --eval-frac 0 --threads 1 --data"
#define SAMPLE "sample --model m --out o.jsonl -k 1 --max-new-tokens 2 --threads 1 --prompts"
#define CROWS "eval crows --model m --out o.json --bootstrap 10 --threads 1 --data"

static void test_empty(void)
{
    rejected(plumb(SFT " empty.jsonl"), 1, "plumb: empty.jsonl: no records", "o", "sft, empty");
    rejected(plumb(PRETRAIN " empty.txt"), 1, "plumb: empty.txt: empty file", "o",
             "pretrain, empty");
    rejected(plumb(RM " empty.jsonl"), 1, "empty.jsonl: no records", "o", "rm train, empty");
    rejected(plumb(SAMPLE " empty.jsonl"), 1, "empty.jsonl: no records", "o.jsonl",
             "sample, empty");
    rejected(plumb("critique --model m --constitution constitution.json --prompts empty.jsonl "
                   "--out o.jsonl --threads 1"),
             1, "empty.jsonl: no records", "o.jsonl", "critique, empty prompts");
    rejected(plumb("critique --model m --constitution empty.txt --prompts prompts_crlf.jsonl "
                   "--out o.jsonl --threads 1"),
             1, "empty.txt: empty file", "o.jsonl", "critique, empty constitution");
    rejected(plumb(CROWS " empty.csv"), 1, "empty.csv: no records", "o.json", "eval, empty CSV");
    rejected(plumb("score --model m --input empty.jsonl --out o.jsonl"), 1,
             "empty.jsonl: no records", "o.jsonl", "score, empty");
    model_copy("m_empty", "", 0);
    rejected(plumb("score --model m_empty --input tokens_range.jsonl --out o.jsonl"), 1,
             "m_empty/config.json", "o.jsonl", "score, empty config.json");
    model_copy("m_nost", NULL, 0);
    write_text("m_nost/model.safetensors", "");
    rejected(plumb("generate --model m_nost --prompt hi --threads 1"), 1,
             "m_nost/model.safetensors: 0 bytes", NULL, "generate, empty model.safetensors");
    rejected(plumb("init --config '' --out o"), 2, "plumb init: --config", "o",
             "init, empty --config");
}

static void test_big_line(void)
{
    rejected(plumb(SAMPLE " prompts_big.jsonl"), 1,
             "prompts_big.jsonl:1: prompt of 52428777 tokens leaves no room", "o.jsonl",
             "sample, a 50 MB prompt");
    rejected(plumb(RM " pairs_big.jsonl"), 1, "pairs_big.jsonl:1: not a JSON object", "o",
             "rm train, a 50 MB line cut short");
}

static void test_crlf_bom(void)
{
    int rc = plumb(SFT " sft_crlf.jsonl");
    accepted(rc, exists("o/model.safetensors"), "sft, CRLF JSONL");
    tap_system("rm -rf o");
    rc = plumb(SFT " sft_crlf.csv");
    accepted(rc, exists("o/model.safetensors"), "sft, CRLF CSV");
    tap_system("rm -rf o");
    rc = plumb(SFT " sft_bom.jsonl");
    accepted(rc, exists("o/model.safetensors"), "sft, a BOM");
    tap_system("rm -rf o");
    rc = plumb(SFT " sft_unicode.jsonl");
    accepted(rc, exists("o/model.safetensors"), "sft, 2, 3 and 4-byte UTF-8 up to U+10FFFF");
    tap_system("rm -rf o");
    rc = plumb(PRETRAIN " corpus_crlf.txt");
    accepted(rc, exists("o/model.safetensors"), "pretrain, CRLF");
    tap_system("rm -rf o");
    rc = plumb(RM " pairs_crlf.jsonl");
    accepted(rc, exists("o/model.safetensors"), "rm train, CRLF");
    tap_system("rm -rf o");
    char got[4096];
    rc = plumb(SAMPLE " prompts_crlf.jsonl");
    tap_read_into("o.jsonl", got, sizeof got);
    accepted(rc, strstr(got, "\"id\":\"1\",\"prompt\":\"a\",") != NULL,
             "sample, CRLF: the prompt without its '\\r'");
    unlink("o.jsonl");
    rc = plumb(SAMPLE " prompts_bom.jsonl");
    tap_read_into("o.jsonl", got, sizeof got);
    accepted(rc, strstr(got, "{\"id\":\"1\",") == got, "sample, a BOM: the id without it");
    unlink("o.jsonl");
    rc = plumb(CROWS " crows_crlf.csv");
    accepted(rc, strstr(out, "crows: 1 items") && strstr(out, "pct_stereotype/gender "),
             "eval, CRLF CSV: the last field without its '\\r'");
    rc = plumb(CROWS " crows_bom.csv");
    accepted(rc, strstr(out, "crows: 1 items") != NULL, "eval, CSV with a BOM: its header read");
    unlink("o.json");
    char config[4096], crlf[8192];
    size_t n = tap_read_into("m/config.json", config, sizeof config), k = 0;
    for (size_t i = 0; i < n; i++) {
        if (config[i] == '\n')
            crlf[k++] = '\r';
        crlf[k++] = config[i];
    }
    model_copy("m_crlf", crlf, k);
    accepted(plumb("score --model m_crlf --input text.jsonl --threads 1"), true,
             "a CRLF config.json loads");
    crlf[0] = '\xef', crlf[1] = '\xbb', crlf[2] = '\xbf';
    memcpy(crlf + 3, config, n);
    model_copy("m_bom", crlf, n + 3);
    accepted(plumb("generate --model m_bom --prompt hi --max-new-tokens 2 --threads 1"), true,
             "a config.json with a BOM loads");
    rc = plumb("eval rules --constitution constitution_bom.json --input responses.jsonl");
    accepted(rc, strstr(out, "\"responses\": 1") != NULL, "a constitution with a BOM");
}

static void test_utf8_nul(void)
{
    rejected(plumb(SFT " sft_utf8.jsonl"), 1,
             "plumb: sft_utf8.jsonl:2: invalid UTF-8 (byte 0xe9 at column 16)", "o",
             "sft, Latin-1 text");
    rejected(plumb(SFT " sft_surrogate.jsonl"), 1, "sft_surrogate.jsonl:1: invalid UTF-8", "o",
             "sft, an encoded surrogate");
    rejected(plumb(SFT " sft_beyond.jsonl"), 1, "sft_beyond.jsonl:1: invalid UTF-8 (byte 0xf4", "o",
             "sft, a code point past U+10FFFF");
    rejected(plumb(SFT " sft_overlong.jsonl"), 1, "sft_overlong.jsonl:1: invalid UTF-8", "o",
             "sft, an overlong '/'");
    rejected(plumb(SFT " sft_nul.jsonl"), 1, "sft_nul.jsonl:2: NUL byte at column 14", "o",
             "sft, a NUL byte");
    rejected(plumb(PRETRAIN " corpus_utf8.txt"), 1, "corpus_utf8.txt:2: invalid UTF-8", "o",
             "pretrain, invalid UTF-8");
    rejected(plumb(PRETRAIN " corpus_nul.txt"), 1, "corpus_nul.txt:2: NUL byte at column 4", "o",
             "pretrain, a NUL byte");
    rejected(plumb(RM " labels_utf8.jsonl"), 1, "labels_utf8.jsonl:1: invalid UTF-8", "o",
             "rm train, a label with invalid UTF-8");
    rejected(plumb(SAMPLE " prompts_utf8.jsonl"), 1, "prompts_utf8.jsonl:1: invalid UTF-8",
             "o.jsonl", "sample, invalid UTF-8");
    rejected(plumb(SAMPLE " prompts_nul.jsonl"), 1, "prompts_nul.jsonl:1: NUL byte", "o.jsonl",
             "sample, a NUL byte");
    rejected(plumb("critique --model m --constitution constitution.json --prompts "
                   "prompts_utf8.jsonl --out o.jsonl --threads 1"),
             1, "prompts_utf8.jsonl:1: invalid UTF-8", "o.jsonl", "critique, invalid UTF-8");
    rejected(plumb(CROWS " crows_utf8.csv"), 1, "crows_utf8.csv:3: invalid UTF-8", "o.json",
             "eval, a CSV with invalid UTF-8");
    model_copy("m_nul", "{\"n_layer\": 1\0}", 15);
    rejected(plumb("score --model m_nul --input tokens_range.jsonl --out o.jsonl"), 1,
             "m_nul/config.json", "o.jsonl", "score, a NUL byte in config.json");
}

static void test_nesting(void)
{
    rejected(plumb(SFT " sft_deep.jsonl"), 1, "sft_deep.jsonl:2: not a JSON object", "o",
             "sft, 100,000 '['");
    char *deep = malloc(200000);
    size_t n = deep ? tap_read_into("config_deep.json", deep, 200000) : 0;
    model_copy("m_deep", deep, n);
    free(deep);
    rejected(plumb("score --model m_deep --input tokens_range.jsonl --out o.jsonl"), 1,
             "m_deep/config.json:1: invalid JSON", "o.jsonl", "score, a deep config.json");
    rejected(plumb("init --config \"$(cat config_deep.json)\" --out o"), 2,
             "plumb init: --config:1: invalid JSON", "o", "init, a deep --config");
    rejected(plumb("critique --model m --constitution constitution_deep.json --prompts "
                   "prompts_crlf.jsonl --out o.jsonl --threads 1"),
             1, "constitution_deep.json:1: not valid JSON", "o.jsonl",
             "critique, a deep constitution");
}

static void test_ranges(void)
{
    rejected(plumb("score --model m --input tokens_range.jsonl --out o.jsonl"), 1,
             "tokens_range.jsonl:2: field 'tokens'", "o.jsonl",
             "score, a token id past the vocabulary");
    rejected(plumb("score --model m --input tokens_negative.jsonl --out o.jsonl"), 1,
             "tokens_negative.jsonl:1: field 'tokens'", "o.jsonl", "score, a negative token id");
    rejected(plumb("tokenize --model m --decode --text '[300]'"), 1, "token id 300 out of range",
             NULL, "tokenize, an id past the vocabulary");
    rejected(plumb(RM " labels_range.jsonl"), 1,
             "labels_range.jsonl:1: field 'ranking': 5 is not an index", "o",
             "rm train, a ranking index past the completions");
    rejected(plumb(SAMPLE " prompts_crlf.jsonl -k -1"), 2,
             "plumb sample: option '-k': '-1' is not an integer", "o.jsonl", "sample, -k -1");
    rejected(plumb(SAMPLE " prompts_crlf.jsonl --top-k -3"), 2, "option '--top-k'", "o.jsonl",
             "sample, --top-k -3");
    model_config("m_l0", "\"n_layer\": 1,", "\"n_layer\": 0,");
    rejected(plumb("score --model m_l0 --input tokens_range.jsonl --out o.jsonl"), 1,
             "m_l0/config.json: field 'n_layer': expected a positive integer", "o.jsonl",
             "score, n_layer 0");
    model_config("m_l9", "\"n_layer\": 1,", "\"n_layer\": 1000000000,");
    rejected(plumb("generate --model m_l9 --prompt hi --threads 1"), 1, "model too large", NULL,
             "generate, n_layer 10^9");
    model_config("m_h3", "\"n_head\": 2,", "\"n_head\": 3,");
    rejected(plumb("score --model m_h3 --input tokens_range.jsonl --out o.jsonl"), 1,
             "m_h3/config.json: field 'n_head': 3 does not divide n_embd 16", "o.jsonl",
             "score, n_head not dividing n_embd");
    rejected(plumb("init --config '{\"n_layer\":0,\"n_embd\":16,\"n_head\":2,\"vocab_size\":257,"
                   "\"n_positions\":32,\"tokenizer\":\"byte\"}' --out o"),
             2, "field 'n_layer': expected a positive integer", "o", "init, n_layer 0");
    rejected(plumb("init --config '{\"n_layer\":1000000000,\"n_embd\":16,\"n_head\":2,"
                   "\"vocab_size\":257,\"n_positions\":32,\"tokenizer\":\"byte\"}' --out o"),
             1, "model too large", "o", "init, n_layer 10^9");
    rejected(plumb("init --config '{\"n_layer\":1,\"n_embd\":16,\"n_head\":3,\"vocab_size\":257,"
                   "\"n_positions\":32,\"tokenizer\":\"byte\"}' --out o"),
             2, "field 'n_head': 3 does not divide n_embd 16", "o", "init, n_head 3 of 16");
}

static void test_safetensors_csv(void)
{
    make_bad_safetensors();
    rejected(plumb("score --model st_past --input tokens_range.jsonl --out o.jsonl"), 1,
             "st_past/model.safetensors: tensor 'wte.weight': data_offsets [100000000, "
             "100016448] run past the end",
             "o.jsonl", "score, offsets past the end of the file");
    rejected(plumb("generate --model st_short --prompt hi --threads 1"), 1,
             "st_short/model.safetensors: header length", NULL, "generate, a cut-short file");
    rejected(plumb(SFT " sft_unbalanced.csv"), 1, "sft_unbalanced.csv:3: malformed quoted field",
             "o", "sft, unbalanced quotes");
    rejected(plumb(CROWS " crows_unbalanced.csv"), 1,
             "crows_unbalanced.csv:3: malformed quoted field", "o.json",
             "eval crows, unbalanced quotes");
    rejected(plumb("eval truthfulqa --model m --out o.json --threads 1 --data tqa_unbalanced.csv"),
             1, "tqa_unbalanced.csv:2: malformed quoted field", "o.json",
             "eval truthfulqa, unbalanced quotes");
}

/* A failed run leaves an earlier output as it was. */
static void test_earlier_output(void)
{
    write_text("prev.jsonl", "{\"tokens\":[1],\"logprobs\":[],\"sum\":0,\"ppl\":1}\n");
    int rc = plumb("score --model m --input text_utf8.jsonl --out prev.jsonl");
    char got[256];
    tap_read_into("prev.jsonl", got, sizeof got);
    if (!tap_ok(rc == 1 && one_error("text_utf8.jsonl:2: invalid UTF-8") &&
                    strcmp(got, "{\"tokens\":[1],\"logprobs\":[],\"sum\":0,\"ppl\":1}\n") == 0 &&
                    !exists("prev.jsonl.tmp"),
                "score over an earlier output, bad input: exit 1, the output as it was"))
        tap_diag("stderr: %s", err);
}

int main(void)
{
    bin = tap_plumb_bin();
    const char *dir = tap_tmpdir("awkward");
    if (chdir(dir) != 0)
        tap_skip_all("cannot enter a temporary folder");
    setenv("PLUMB_THREADS", "1", 1);
    if (plumb("init --config '" BYTE_CONFIG "' --out m") != 0)
        tap_skip_all("plumb init failed");
    make_files();
    test_empty();
    test_big_line();
    test_crlf_bom();
    test_utf8_nul();
    test_nesting();
    test_ranges();
    test_safetensors_csv();
    test_earlier_output();
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (chdir("/") == 0 && system(rm) != 0)
        tap_diag("cannot remove %s", dir);
    return tap_done();
}
