/* datasets-ds: the record loaders, their error messages, gzip, skipping, and allocation failure. */
#include "datasets/ds.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_FIXTURES 64

static char dir[] = "/tmp/plumb-ds-XXXXXX";
static char paths[MAX_FIXTURES][256];
static int n_paths;

/* A path in the test's temporary directory, removed at the end. */
static const char *tmp_path(const char *name)
{
    if (n_paths == MAX_FIXTURES)
        abort();
    snprintf(paths[n_paths], sizeof paths[0], "%s/%s", dir, name);
    return paths[n_paths++];
}

static const char *fixture_n(const char *name, const char *text, size_t len)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        abort();
    return path;
}

static const char *fixture(const char *name, const char *text)
{
    return fixture_n(name, text, strlen(text));
}

static const char *fixture_gz(const char *name, const char *text)
{
    const char *path = tmp_path(name);
    gzFile gz = gzopen(path, "wb");
    if (!gz || gzwrite(gz, text, (unsigned)strlen(text)) != (int)strlen(text) ||
        gzclose(gz) != Z_OK)
        abort();
    return path;
}

/* rc and err must be code and "<path><suffix>". */
static void is_error(int rc, const struct pl_err *err, int code, const char *path,
                     const char *suffix, const char *what)
{
    char want[1200];
    snprintf(want, sizeof want, "%s%s", path, suffix);
    tap_is_int(rc, code, "%s: code", what);
    tap_is_str(err->msg, want, "%s: message", what);
}

static void test_jsonl_iteration(void)
{
    const char *path = fixture("iter.jsonl", "{\"a\": 1}\n\n  \n{\"a\": 2}\r\n[1, 2]\n");
    struct io_jsonl r;
    struct pl_err err = {0};
    cJSON *obj = NULL;
    long line = 0;
    int rc = io_jsonl_init(&r, path, 0, &err);
    tap_is_int(rc, PL_OK, "jsonl: open");
    rc = io_jsonl_next(&r, &obj, &line, &err);
    tap_ok(rc == PL_OK && obj && line == 1, "jsonl: first object on line 1");
    cJSON_Delete(obj);
    rc = io_jsonl_next(&r, &obj, &line, &err);
    tap_ok(rc == PL_OK && obj && line == 4, "jsonl: blank lines skipped, CRLF accepted, line 4");
    cJSON_Delete(obj);
    rc = io_jsonl_next(&r, &obj, &line, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":5: not a JSON object", "jsonl: an array line");
    io_jsonl_release(&r);
    io_jsonl_release(&r);
}

static void test_sft_errors(void)
{
    struct ds_sft set;
    struct pl_err err = {0};
    const char *path = fixture("bad-json.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                                 "{\"prompt\": \n");
    int rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":2: not a JSON object", "sft: truncated JSON");
    ds_sft_release(&set);

    path = fixture("junk.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"} x\n");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":1: not a JSON object", "sft: text after the object");
    ds_sft_release(&set);

    path = fixture("missing.jsonl", "{\"prompt\": \"a\"}\n");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":1: field 'response': expected a string",
             "sft: missing field");
    ds_sft_release(&set);

    path = fixture("type.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                 "{\"prompt\": \"a\", \"response\": 3}\n");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":2: field 'response': expected a string",
             "sft: wrong type");
    ds_sft_release(&set);

    path = fixture("empty.jsonl", "");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": no records", "sft: empty file");
    ds_sft_release(&set);

    path = fixture("blank.jsonl", "\n  \n\r\n");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": no records", "sft: only blank lines");
    ds_sft_release(&set);

    path = tmp_path("absent.jsonl");
    rc = ds_sft_init(&set, path, 0, &err);
    tap_is_int(rc, PL_ENOTFOUND, "sft: missing file: code");
    char want[600];
    snprintf(want, sizeof want, "cannot open '%s': No such file or directory", path);
    tap_is_str(err.msg, want, "sft: missing file: message");
    ds_sft_release(&set);
}

static void test_sft_good(void)
{
    /* A BOM, CRLF ends, escapes, unknown fields, and a line longer than the 64 KiB read chunk. */
    size_t big = 200000;
    char *text = malloc(big + 200);
    int n = sprintf(text, "\xef\xbb\xbf{\"prompt\": \"q\\n\", \"response\": \" a\\u00e9\", "
                          "\"extra\": [1]}\r\n{\"prompt\": \"long\", \"response\": \"");
    memset(text + n, 'x', big);
    strcpy(text + n + big, "\"}");
    const char *path = fixture("good.jsonl", text);
    free(text);
    struct ds_sft set;
    struct pl_err err = {0};
    int rc = ds_sft_init(&set, path, 0, &err);
    tap_ok(rc == PL_OK && set.n == 2, "sft: two records (%s)", err.msg);
    tap_ok(rc == PL_OK && strcmp(set.recs[0].prompt, "q\n") == 0 &&
               strcmp(set.recs[0].response, " a\xc3\xa9") == 0,
           "sft: strings decoded, BOM dropped");
    tap_ok(rc == PL_OK && strlen(set.recs[1].response) == big, "sft: a 200 KB line");
    ds_sft_release(&set);
    ds_sft_release(&set);
}

static void test_prompts(void)
{
    struct ds_prompts set;
    struct pl_err err = {0};
    const char *path =
        fixture("prompts.jsonl", "{\"id\": \"p1\", \"prompt\": \"hi\", \"split\": "
                                 "\"train\"}\n{\"id\": \"p2\", \"prompt\": \"yo\"}\n");
    int rc = ds_prompts_init(&set, path, 0, &err);
    tap_ok(rc == PL_OK && set.n == 2 && strcmp(set.recs[1].id, "p2") == 0 &&
               strcmp(set.recs[1].prompt, "yo") == 0,
           "prompts: two records");
    ds_prompts_release(&set);

    path = fixture("prompts-bad.jsonl", "{\"id\": 7, \"prompt\": \"hi\"}\n");
    rc = ds_prompts_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":1: field 'id': expected a string",
             "prompts: numeric id");
    ds_prompts_release(&set);

    path = fixture("prompts-dup.jsonl", "{\"id\": \"a\", \"prompt\": \"x\"}\n\n"
                                        "{\"id\": \"b\", \"prompt\": \"y\"}\n"
                                        "{\"id\": \"a\", \"prompt\": \"z\"}\n");
    rc = ds_prompts_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":4: field 'id': duplicate id 'a' (first on line 1)",
             "prompts: a repeated id names both lines");
    ds_prompts_release(&set);
    rc = ds_prompts_init(&set, path, IO_SKIP_BAD_LINES, &err);
    tap_ok(rc == PL_OK && set.n == 2 && set.skipped == 1 && set.recs[1].line == 3 &&
               ds_prompts_find(&set, "b") == 1 && ds_prompts_find(&set, "a") == 0 &&
               ds_prompts_find(&set, "z") == -1,
           "prompts: the repeat skipped; lines and the id index kept");
    ds_prompts_release(&set);

    /* Enough ids to grow the index several times. */
    struct pl_buf b = {0};
    for (int i = 0; i < 1000; i++)
        pl_buf_printf(&b, "{\"id\": \"q%d\", \"prompt\": \"p\"}\n", i);
    path = fixture_n("prompts-many.jsonl", b.p, b.len);
    pl_buf_release(&b);
    rc = ds_prompts_init(&set, path, 0, &err);
    int found = 0;
    for (int i = 0; rc == PL_OK && i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof id, "q%d", i);
        found += ds_prompts_find(&set, id) == i;
    }
    tap_is_int(found, 1000, "prompts: 1000 ids all found at their index");
    ds_prompts_release(&set);
}

static void test_hh_split(void)
{
    const char *c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: name a fruit\n\nAssistant: apple";
    const char *r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: name a fruit\n\nAssistant: no";
    size_t want = strlen(c) - strlen(" apple");
    tap_is_int((long)ds_hh_prompt_len(c, r), (long)want, "hh: prompt ends after the last turn");
    tap_is_int((long)ds_hh_prompt_len("\n\nHuman: a\n\nAssistant: x", "\n\nHuman: b"), 0,
               "hh: no shared Assistant turn");
    tap_is_int((long)ds_hh_prompt_len("\n\nHuman: a\n\nAssistant: x", "\n\nHuman: a\n\nAssist"), 0,
               "hh: a marker cut short in rejected does not count");
    /* Responses that begin alike must not move the prompt into them. */
    const char *c2 = "\n\nHuman: q\n\nAssistant: Sure, yes";
    const char *r2 = "\n\nHuman: q\n\nAssistant: Sure, no";
    tap_is_int((long)ds_hh_prompt_len(c2, r2), (long)strlen("\n\nHuman: q\n\nAssistant:"),
               "hh: shared response start stays in the responses");
}

static void test_pairs(void)
{
    struct ds_pairs set;
    struct pl_err err = {0};
    const char *path = fixture_gz(
        "pairs.jsonl.gz",
        "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: hello\", \"rejected\": "
        "\"\\n\\nHuman: hi\\n\\nAssistant: go away\"}\n"
        "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"margin\": 1.5}\n"
        "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"margin\": null}\n");
    int rc = ds_pairs_init(&set, path, 0, &err);
    tap_ok(rc == PL_OK && set.n == 3, "pairs: three records from .jsonl.gz (%s)", err.msg);
    if (rc == PL_OK && set.n == 3) {
        tap_is_str(set.recs[0].prompt, "\n\nHuman: hi\n\nAssistant:", "pairs: hh prompt");
        tap_is_str(set.recs[0].chosen, " hello", "pairs: hh chosen response");
        tap_is_str(set.recs[0].rejected, " go away", "pairs: hh rejected response");
        tap_ok(strcmp(set.recs[1].prompt, "P") == 0 && set.recs[1].margin == 1.5 &&
                   set.recs[2].margin == 0 && set.recs[0].margin == 0,
               "pairs: explicit prompt and margins");
    } else {
        tap_skip(4, "pairs did not load");
    }
    ds_pairs_release(&set);

    path =
        fixture("pairs-margin.jsonl",
                "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"margin\": \"x\"}\n");
    rc = ds_pairs_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":1: field 'margin': expected a number",
             "pairs: margin of the wrong type");
    ds_pairs_release(&set);

    path = fixture("pairs-hh.jsonl", "{\"chosen\": \"\\n\\nHuman: a\", \"rejected\": \"b\"}\n");
    rc = ds_pairs_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":1: no shared prompt ending in '\\n\\nAssistant:'",
             "pairs: hh without a prompt");
    ds_pairs_release(&set);
}

static void test_skip_bad_lines(void)
{
    const char *path = fixture("skip.jsonl", "{\"prompt\": \"a\", \"response\": \"1\"}\n"
                                             "not json\n"
                                             "{\"prompt\": \"b\"}\n"
                                             "{\"prompt\": \"c\", \"response\": \"2\"}\n"
                                             "[]\n"
                                             "{\"prompt\": \"d\", \"response\": \"3\"}\n");
    struct ds_sft set;
    struct pl_err err = {0};
    int rc = ds_sft_init(&set, path, IO_SKIP_BAD_LINES, &err);
    tap_ok(rc == PL_OK && set.n == 3 && set.skipped == 3, "skip: 3 kept, 3 skipped (%zu, %ld)",
           set.n, set.skipped);
    tap_ok(rc == PL_OK && strcmp(set.recs[2].prompt, "d") == 0, "skip: order kept");
    ds_sft_release(&set);

    path = fixture("skip-all.jsonl", "nope\n{\"prompt\": 1}\n");
    rc = ds_sft_init(&set, path, IO_SKIP_BAD_LINES, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": no records", "skip: nothing left");
    ds_sft_release(&set);

    path = fixture("skip.csv", "prompt,response\na,1\nb,2,extra\nc,3\n");
    rc = ds_sft_init(&set, path, IO_SKIP_BAD_LINES, &err);
    tap_ok(rc == PL_OK && set.n == 2 && set.skipped == 1, "skip: csv row counted");
    ds_sft_release(&set);
}

static void test_csv(void)
{
    struct ds_csv t;
    struct pl_err err = {0};
    const char *path = fixture("table.csv", "prompt,response,note\r\n"
                                            "\"a, b\",\" x\",1\r\n"
                                            "\r\n"
                                            "\"two\nlines\",\"say \"\"hi\"\"\",\n"
                                            "last, y ,3");
    int rc = ds_csv_init(&t, path, 0, &err);
    tap_ok(rc == PL_OK && t.ncols == 3 && t.nrows == 3, "csv: header and three rows (%s)", err.msg);
    if (rc == PL_OK && t.nrows == 3) {
        tap_ok(strcmp(t.cells[0], "a, b") == 0 && strcmp(t.cells[1], " x") == 0,
               "csv: quoted comma and leading space kept");
        tap_ok(strcmp(t.cells[3], "two\nlines") == 0 && strcmp(t.cells[4], "say \"hi\"") == 0 &&
                   strcmp(t.cells[5], "") == 0,
               "csv: newline, doubled quotes and an empty field");
        tap_ok(strcmp(t.cells[7], " y ") == 0, "csv: unquoted spaces kept");
        tap_ok(t.lines[0] == 2 && t.lines[1] == 4 && t.lines[2] == 6, "csv: row start lines");
    } else {
        tap_skip(4, "csv did not load");
    }
    size_t col = 0;
    tap_ok(ds_csv_column(&t, "note", &col, &err) == PL_OK && col == 2, "csv: column lookup");
    ds_csv_release(&t);

    struct ds_sft set;
    rc = ds_sft_init(&set, path, 0, &err);
    tap_ok(rc == PL_OK && set.n == 3 && strcmp(set.recs[1].response, "say \"hi\"") == 0,
           "csv: sft records from .csv");
    ds_sft_release(&set);

    path = fixture("nocol.csv", "prompt,answer\na,b\n");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": missing column 'response'", "csv: missing column");
    ds_sft_release(&set);

    path = fixture("count.csv", "prompt,response\na,b\n\"multi\nline\",c\nd,e,f\n");
    rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":5: expected 2 fields, got 3", "csv: wrong field count");
    ds_sft_release(&set);

    path = fixture("few.csv", "prompt,response\nalone\n");
    rc = ds_csv_init(&t, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":2: expected 2 fields, got 1", "csv: too few fields");
    ds_csv_release(&t);

    path = fixture("quote.csv", "prompt,response\n\"a\"b,c\n");
    rc = ds_csv_init(&t, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":2: malformed quoted field", "csv: text after a quote");
    ds_csv_release(&t);

    path = fixture("open.csv", "prompt,response\na,b\nc,\"never closed\n\n");
    rc = ds_csv_init(&t, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":3: malformed quoted field", "csv: unclosed quote");
    ds_csv_release(&t);

    path = fixture("header.csv", "prompt,response\n");
    rc = ds_csv_init(&t, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": no records", "csv: header only");
    ds_csv_release(&t);
    ds_csv_release(&t);
}

static void test_text_and_json(void)
{
    struct ds_text t;
    struct pl_err err = {0};
    const char *path = fixture_gz("corpus.txt.gz", "The capital is here.\nSecond line.\n");
    int rc = ds_text_init(&t, path, &err);
    tap_ok(rc == PL_OK && t.len == 34 &&
               strcmp(t.data, "The capital is here.\nSecond line.\n") == 0,
           "text: gzip corpus read whole");
    ds_text_release(&t);
    path = fixture("empty.txt", "");
    rc = ds_text_init(&t, path, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": empty file", "text: empty file");
    ds_text_release(&t);

    cJSON *doc = NULL;
    path = fixture("doc.json", "{\n  \"principles\": [\n    {\"name\": \"x\"}\n  ]\n}\n");
    rc = io_json_load(path, &doc, &err);
    tap_ok(rc == PL_OK && cJSON_IsArray(cJSON_GetObjectItem(doc, "principles")), "json: loaded");
    cJSON_Delete(doc);
    path = fixture("bad.json", "{\n  \"a\": 1,\n  \"b\": ]\n}\n");
    rc = io_json_load(path, &doc, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":3: not valid JSON", "json: error line");
    tap_ok(doc == NULL, "json: nothing returned on error");
    path = fixture("blank.json", " \n");
    rc = io_json_load(path, &doc, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": empty file", "json: empty file");
}

static void test_truncated_gzip(void)
{
    const char *full = fixture_gz("cut.jsonl.gz", "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                                  "{\"prompt\": \"c\", \"response\": \"d\"}\n");
    FILE *f = fopen(full, "rb");
    char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    const char *path = fixture_n("cut2.jsonl.gz", buf, n > 12 ? n - 12 : 0);
    struct ds_sft set;
    struct pl_err err = {0};
    int rc = ds_sft_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EIO, path, ": unexpected end of compressed data", "gzip: cut short");
    ds_sft_release(&set);
}

/* ---- allocation failure ---- */

typedef int (*load_fn)(const char *path, struct pl_err *err);

static int load_sft(const char *path, struct pl_err *err)
{
    struct ds_sft set;
    int rc = ds_sft_init(&set, path, 0, err);
    ds_sft_release(&set);
    return rc;
}

static int load_sft_skip(const char *path, struct pl_err *err)
{
    struct ds_sft set;
    int rc = ds_sft_init(&set, path, IO_SKIP_BAD_LINES, err);
    ds_sft_release(&set);
    return rc;
}

static int load_prompts(const char *path, struct pl_err *err)
{
    struct ds_prompts set;
    int rc = ds_prompts_init(&set, path, 0, err);
    ds_prompts_release(&set);
    return rc;
}

static int load_pairs(const char *path, struct pl_err *err)
{
    struct ds_pairs set;
    int rc = ds_pairs_init(&set, path, 0, err);
    ds_pairs_release(&set);
    return rc;
}

static int load_text(const char *path, struct pl_err *err)
{
    struct ds_text t;
    int rc = ds_text_init(&t, path, err);
    ds_text_release(&t);
    return rc;
}

static int load_json(const char *path, struct pl_err *err)
{
    cJSON *doc = NULL;
    int rc = io_json_load(path, &doc, err);
    cJSON_Delete(doc);
    return rc;
}

/* Make allocation N fail for every N the load makes: each run must end in PL_ENOMEM with an
 * "out of memory" message (or, where a library retries a smaller allocation, succeed), and must
 * release cleanly (AddressSanitizer checks the leaks). */
static void check_alloc_failures(const char *what, load_fn load, const char *path, bool may_recover)
{
    struct pl_err err = {0};
    pl_alloc_fail_at(-1);
    int rc = load(path, &err);
    long total = pl_alloc_count();
    int bad = 0;
    for (long n = 0; n < total; n++) {
        pl_alloc_fail_at(n);
        memset(&err, 0, sizeof err);
        rc = load(path, &err);
        bool oom = rc == PL_ENOMEM && strncmp(err.msg, "out of memory", 13) == 0;
        if (!oom && !(may_recover && rc == PL_OK)) {
            if (!bad)
                tap_diag("allocation %ld: rc %d, '%s'", n, rc, err.msg);
            bad++;
        }
    }
    pl_alloc_fail_at(-1);
    tap_ok(total > 0 && bad == 0, "alloc: %s: each of %ld failures handled", what, total);
}

static void test_alloc_failures(void)
{
    const char *sft =
        fixture("oom.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                             "{\"prompt\": \"c\", \"response\": \"d\", \"x\": [1]}\n");
    const char *bad = fixture("oom-bad.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                               "[1]\n{\"prompt\": 2}\n");
    const char *csv = fixture("oom.csv", "prompt,response\n\"a\nb\",c\nd,e\n");
    const char *prompts = fixture("oom-prompts.jsonl", "{\"id\": \"1\", \"prompt\": \"p\"}\n");
    const char *pairs = fixture_gz("oom-pairs.jsonl.gz",
                                   "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", "
                                   "\"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: c\"}\n"
                                   "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\", "
                                   "\"margin\": 2}\n");
    const char *text = fixture("oom.txt", "some text\n");
    const char *json = fixture("oom.json", "{\"a\": [1, 2, {\"b\": \"c\"}]}\n");
    check_alloc_failures("sft jsonl", load_sft, sft, false);
    check_alloc_failures("sft jsonl, skipping", load_sft_skip, bad, false);
    check_alloc_failures("sft csv", load_sft, csv, true);
    check_alloc_failures("prompts", load_prompts, prompts, false);
    check_alloc_failures("pairs jsonl.gz", load_pairs, pairs, false);
    check_alloc_failures("text", load_text, text, false);
    check_alloc_failures("json", load_json, json, false);
}

/* ---- the real public datasets, when they are here ---- */

static void test_shared(void)
{
    const char *shared = tap_shared_datasets();
    if (!shared) {
        tap_skip(5, "no shared datasets");
        return;
    }
    static const struct {
        const char *file;
        size_t count;
    } hh[] = {{"hh-rlhf/harmless-base/test.jsonl.gz", 2312},
              {"hh-rlhf/helpful-base/test.jsonl.gz", 2354}};
    char path[4096];
    for (int i = 0; i < 2; i++) {
        struct ds_pairs set;
        struct pl_err err = {0};
        snprintf(path, sizeof path, "%s/%s", shared, hh[i].file);
        int rc = ds_pairs_init(&set, path, 0, &err);
        size_t good = 0;
        for (size_t k = 0; rc == PL_OK && k < set.n; k++) {
            size_t len = strlen(set.recs[k].prompt);
            good += len >= 12 && strcmp(set.recs[k].prompt + len - 12, "\n\nAssistant:") == 0;
        }
        tap_ok(rc == PL_OK && set.n == hh[i].count && good == set.n,
               "shared: %s: %zu pairs, every prompt ends its last Assistant turn (%s)", hh[i].file,
               set.n, err.msg);
        ds_pairs_release(&set);
    }
    static const struct {
        const char *file, *column;
        size_t rows;
    } csvs[] = {{"truthfulqa/TruthfulQA.csv", "Best Answer", 790},
                {"crows-pairs/crows_pairs_anonymized.csv", "sent_more", 1508},
                {"advbench/harmful_behaviors.csv", "goal", 520}};
    for (int i = 0; i < 3; i++) {
        struct ds_csv t;
        struct pl_err err = {0};
        size_t col = 0;
        snprintf(path, sizeof path, "%s/%s", shared, csvs[i].file);
        int rc = ds_csv_init(&t, path, 0, &err);
        if (rc == PL_OK)
            rc = ds_csv_column(&t, csvs[i].column, &col, &err);
        tap_ok(rc == PL_OK && t.nrows == csvs[i].rows, "shared: %s: %zu rows (%s)", csvs[i].file,
               t.nrows, err.msg);
        ds_csv_release(&t);
    }
}

int main(void)
{
    if (!mkdtemp(dir))
        tap_skip_all("cannot make a temporary directory");
    test_jsonl_iteration();
    test_sft_errors();
    test_sft_good();
    test_prompts();
    test_hh_split();
    test_pairs();
    test_skip_bad_lines();
    test_csv();
    test_text_and_json();
    test_truncated_gzip();
    test_alloc_failures();
    test_shared();
    for (int i = 0; i < n_paths; i++)
        unlink(paths[i]);
    rmdir(dir);
    return tap_done();
}
