/* datasets-ds: the record loaders (preferences: rankings to pairs, ties, undo, several annotators),
 * their error messages, gzip, skipping, and allocation failure. */
#include "datasets/ds.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_FIXTURES 256

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

    path = fixture("prompts-world.jsonl",
                   "{\"id\": \"p1\", \"prompt\": \"q\", \"kind\": \"known\", \"place\": \"Tuk\", "
                   "\"attribute\": \"river\"}\n{\"id\": \"p2\", \"prompt\": \"h\", \"kind\": "
                   "\"harmful\", \"attribute\": null}\n");
    rc = ds_prompts_init(&set, path, 0, &err);
    tap_ok(rc == PL_OK && set.n == 2 && strcmp(set.recs[0].kind, "known") == 0 &&
               strcmp(set.recs[0].place, "Tuk") == 0 &&
               strcmp(set.recs[0].attribute, "river") == 0 &&
               strcmp(set.recs[1].kind, "harmful") == 0 && !set.recs[1].place &&
               !set.recs[1].attribute,
           "prompts: the world's kind, place and attribute, absent or null as NULL");
    ds_prompts_release(&set);
    path = fixture("prompts-kind.jsonl", "{\"id\": \"p1\", \"prompt\": \"q\", \"kind\": 1}\n");
    rc = ds_prompts_init(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ":1: field 'kind': expected a string",
             "prompts: a kind that is not a string");
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

/* ---- preferences ---- */

/* A group's pairs as text: "2>0 2>1 ..." (better>worse), with ~p or +margin when not 1 and 0. */
static const char *pairs_text(const struct ds_pref_group *g)
{
    static char s[1024];
    size_t n = 0;
    s[0] = '\0';
    for (int i = 0; i < g->n_pairs && n < sizeof s - 40; i++) {
        const struct ds_pref_pair *p = &g->pairs[i];
        n += (size_t)snprintf(s + n, sizeof s - n, "%s%d>%d", i ? " " : "", p->better, p->worse);
        if (p->p != 1)
            n += (size_t)snprintf(s + n, sizeof s - n, "~%g", p->p);
        if (p->margin != 0)
            n += (size_t)snprintf(s + n, sizeof s - n, "+%g", p->margin);
    }
    return s;
}

/* A label line of 4 completions "a".."d" for prompt P. */
static void label_line(struct pl_buf *b, const char *id, const char *who, const char *ranking,
                       const char *ties)
{
    pl_buf_printf(b,
                  "{\"id\": \"%s\", \"annotator\": \"%s\", \"ranking\": %s, \"ties\": %s, "
                  "\"skipped\": false, \"time\": \"2026-11-30T12:00:00Z\", \"completions\": "
                  "[\"a\", \"b\", \"c\", \"d\"], \"prompt\": \"P\", \"kind\": \"known\"}\n",
                  id, who, ranking, ties);
}

static void undo_line(struct pl_buf *b, const char *id, const char *who)
{
    pl_buf_printf(b,
                  "{\"id\": \"%s\", \"annotator\": \"%s\", \"undo\": true, \"time\": "
                  "\"2026-11-30T12:00:01Z\"}\n",
                  id, who);
}

static int load_prefs_text(const char *name, const char *text, unsigned flags, struct ds_prefs *set,
                           struct pl_err *err)
{
    memset(set, 0, sizeof *set);
    return ds_prefs_load(set, fixture(name, text), flags, err);
}

static void test_prefs_expansion(void)
{
    static const struct {
        const char *ranking, *ties, *pairs;
    } cases[] = {
        {"[2, 0, 1, 3]", "[]", "2>0 2>1 2>3 0>1 0>3 1>3"},
        {"[2, 0, 1, 3]", "[[0, 1]]", "2>0 2>1 2>3 0>3 1>3"},
        {"[2, 0, 1, 3]", "[[1, 0]]", "2>0 2>1 2>3 0>3 1>3"},
        {"[2, 0, 1, 3]", "[[2, 0], [1, 3]]", "2>1 2>3 0>1 0>3"},
        {"[2, 0, 1, 3]", "[[2, 0], [0, 1]]", "2>3 0>3 1>3"},
        {"[3, 2, 1, 0]", "null", "3>2 3>1 3>0 2>1 2>0 1>0"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct pl_buf b = {0};
        label_line(&b, "p1", "ann", cases[c].ranking, cases[c].ties);
        struct ds_prefs set;
        struct pl_err err = {0};
        int rc = load_prefs_text("expand.jsonl", b.p, 0, &set, &err);
        pl_buf_release(&b);
        tap_ok(rc == PL_OK && set.n == 1, "prefs: ranking %s ties %s: one group (%s)",
               cases[c].ranking, cases[c].ties, err.msg);
        tap_is_str(set.n == 1 ? pairs_text(&set.groups[0]) : "", cases[c].pairs,
                   "prefs: ranking %s ties %s: pairs", cases[c].ranking, cases[c].ties);
        ds_prefs_release(&set);
    }

    struct ds_prefs set;
    struct pl_err err = {0};
    struct pl_buf b = {0};
    label_line(&b, "p1", "ann", "[0, 1, 2, 3]", "[[0, 1], [2, 3], [1, 2]]");
    label_line(&b, "p2", "ann", "[1, 0, 2, 3]", "[]");
    int rc = load_prefs_text("all-tied.jsonl", b.p, 0, &set, &err);
    pl_buf_release(&b);
    tap_ok(rc == PL_OK && set.n == 1 && set.ignored == 1 && set.n_pairs == 6 &&
               strcmp(set.groups[0].id, "p2") == 0,
           "prefs: a ranking tied all through makes no group and is counted ignored");
    if (rc == PL_OK && set.n == 1) {
        const struct ds_pref_group *g = &set.groups[0];
        tap_ok(g->n_texts == 4 && strcmp(g->texts[2], "c") == 0 && strcmp(g->prompt, "P") == 0 &&
                   strcmp(g->annotator, "ann") == 0 && strcmp(g->kind, "known") == 0 &&
                   g->line == 2 && strstr(g->path, "all-tied.jsonl") != NULL,
               "prefs: a label's group keeps its texts, prompt, annotator, kind, file and line");
    } else {
        tap_skip(1, "labels did not load");
    }
    ds_prefs_release(&set);
    ds_prefs_release(&set);
}

/* Which label lines of a history count: the ids and annotators of the groups, in order. */
static const char *groups_text(const struct ds_prefs *set)
{
    static char s[512];
    size_t n = 0;
    s[0] = '\0';
    for (size_t i = 0; i < set->n && n < sizeof s - 64; i++)
        n += (size_t)snprintf(s + n, sizeof s - n, "%s%s/%s@%ld", i ? " " : "",
                              set->groups[i].annotator ? set->groups[i].annotator : "-",
                              set->groups[i].id ? set->groups[i].id : "-", set->groups[i].line);
    return s;
}

static void test_prefs_history(void)
{
    struct ds_prefs set;
    struct pl_err err = {0};
    struct pl_buf b = {0};
    /* 1 skipped; 2-3 labelled then undone; 4-6 relabelled, undo restores 4; 7-9 undone and
     * relabelled; 10-11 a second annotator of an id; 12-13 a relabel supersedes. */
    pl_buf_str(&b, "{\"id\": \"s\", \"annotator\": \"ann\", \"skipped\": true, \"time\": \"t\"}\n");
    label_line(&b, "u", "ann", "[0, 1, 2, 3]", "[]");
    undo_line(&b, "u", "ann");
    label_line(&b, "r", "ann", "[0, 1, 2, 3]", "[]");
    label_line(&b, "r", "ann", "[3, 2, 1, 0]", "[]");
    undo_line(&b, "r", "ann");
    label_line(&b, "x", "ann", "[0, 1, 2, 3]", "[]");
    undo_line(&b, "x", "ann");
    label_line(&b, "x", "ann", "[1, 0, 2, 3]", "[]");
    label_line(&b, "m", "ann", "[0, 1, 2, 3]", "[]");
    label_line(&b, "m", "bob", "[1, 0, 2, 3]", "[]");
    label_line(&b, "z", "bob", "[0, 1, 2, 3]", "[]");
    label_line(&b, "z", "bob", "[3, 2, 1, 0]", "[]");
    int rc = load_prefs_text("history.jsonl", b.p, 0, &set, &err);
    pl_buf_release(&b);
    tap_is_int(rc, PL_OK, "prefs: a labelling history loads (%s)", err.msg);
    tap_is_str(groups_text(&set), "ann/r@4 ann/x@9 ann/m@10 bob/m@11 bob/z@13",
               "prefs: the labels that count, in file order");
    tap_ok(set.ignored == 5 && set.n_pairs == 30,
           "prefs: skipped, undone, superseded counted as ignored (%ld), 30 pairs (%ld)",
           set.ignored, set.n_pairs);
    tap_is_str(set.n == 5 ? pairs_text(&set.groups[0]) : "", "0>1 0>2 0>3 1>2 1>3 2>3",
               "prefs: the undo gives back the first label's ranking");

    /* A second file is its own history: the same (annotator, id) counts again. */
    b = (struct pl_buf){0};
    label_line(&b, "z", "bob", "[0, 1, 2, 3]", "[]");
    rc = ds_prefs_load(&set, fixture("history2.jsonl", b.p), 0, &err);
    pl_buf_release(&b);
    tap_ok(rc == PL_OK && set.n == 6 && set.n_pairs == 36 && set.groups[5].line == 1,
           "prefs: a second file adds its groups");
    ds_prefs_release(&set);

    b = (struct pl_buf){0};
    pl_buf_str(&b, "{\"id\": \"s\", \"annotator\": \"ann\", \"skipped\": true}\n");
    label_line(&b, "u", "ann", "[0, 1, 2, 3]", "[]");
    undo_line(&b, "u", "ann");
    rc = load_prefs_text("nothing.jsonl", b.p, 0, &set, &err);
    pl_buf_release(&b);
    tap_ok(rc == PL_OK && set.n == 0 && set.ignored == 2,
           "prefs: a file whose labels all count for nothing is not an error");
    ds_prefs_release(&set);

    b = (struct pl_buf){0};
    label_line(&b, "p1", "ann", "[0, 1, 2, 3]", "[]");
    undo_line(&b, "p1", "bob");
    const char *path = fixture("undo-other.jsonl", b.p);
    pl_buf_release(&b);
    memset(&set, 0, sizeof set);
    rc = ds_prefs_load(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path,
             ":2: field 'undo': annotator 'bob' has no earlier label of 'p1' to undo",
             "prefs: undo of another annotator's label");
    ds_prefs_release(&set);
}

static void test_prefs_mixed(void)
{
    const char *path = fixture_gz(
        "mixed.jsonl.gz",
        "{\"id\": \"p1\", \"annotator\": \"ann\", \"ranking\": [1, 0], \"ties\": [], \"skipped\": "
        "false, \"time\": \"t\", \"completions\": [\"x\", \"y\"], \"prompt\": \"Q\"}\n"
        "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"margin\": 1.5}\n"
        "\n"
        "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"p\": 0.25, \"kind\": "
        "\"harmful\", \"annotator\": \"ai\"}\n"
        "{\"chosen\": \"\\n\\nHuman: hi\\n\\nAssistant: hello\", \"rejected\": "
        "\"\\n\\nHuman: hi\\n\\nAssistant: go away\"}\n"
        "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"margin\": null, \"p\": "
        "null}\n");
    struct ds_prefs set = {0};
    struct pl_err err = {0};
    int rc = ds_prefs_load(&set, path, 0, &err);
    tap_ok(rc == PL_OK && set.n == 5 && set.n_pairs == 5,
           "prefs: a gzipped mix of a label, pairs, a soft pair and an HH dialogue (%s)", err.msg);
    if (rc == PL_OK && set.n == 5) {
        const struct ds_pref_group *g = set.groups;
        tap_ok(strcmp(pairs_text(&g[0]), "1>0") == 0 && strcmp(g[0].texts[1], "y") == 0,
               "prefs: mix: the label");
        tap_ok(strcmp(pairs_text(&g[1]), "0>1+1.5") == 0 && strcmp(g[1].texts[0], "C") == 0 &&
                   strcmp(g[1].texts[1], "R") == 0 && !g[1].annotator && g[1].line == 2,
               "prefs: mix: a pair with its margin");
        tap_ok(strcmp(pairs_text(&g[2]), "0>1~0.25") == 0 && strcmp(g[2].kind, "harmful") == 0 &&
                   strcmp(g[2].annotator, "ai") == 0 && g[2].line == 4,
               "prefs: mix: a soft pair with its kind and annotator");
        tap_is_str(g[3].prompt, "\n\nHuman: hi\n\nAssistant:", "prefs: mix: hh prompt");
        tap_ok(strcmp(g[3].texts[0], " hello") == 0 && strcmp(g[3].texts[1], " go away") == 0,
               "prefs: mix: hh responses");
        tap_is_str(pairs_text(&g[4]), "0>1", "prefs: mix: null margin and p are absent");
    } else {
        tap_skip(6, "the mix did not load");
    }
    ds_prefs_release(&set);
}

static void test_prefs_errors(void)
{
#define LABEL(fields)                                                                              \
    "{\"id\": \"p1\", \"annotator\": \"ann\", \"time\": \"t\", \"prompt\": \"P\", " fields "}\n"
#define ABCD "\"completions\": [\"a\", \"b\", \"c\", \"d\"]"
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {LABEL(ABCD ", \"ranking\": [0, 1, 1, 3]"), ":2: field 'ranking': 1 is ranked twice"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 3]"),
         ":2: field 'ranking': 2 is not ranked (expected a permutation of 0..3)"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 2, 4]"),
         ":2: field 'ranking': 4 is not an index of the 4 completions"},
        {LABEL(ABCD ", \"ranking\": [0, -1, 2, 3]"),
         ":2: field 'ranking': -1 is not an index of the 4 completions"},
        {LABEL(ABCD ", \"ranking\": [0, 1.5, 2, 3]"),
         ":2: field 'ranking': expected an array of integers"},
        {LABEL(ABCD ", \"ranking\": \"0123\""),
         ":2: field 'ranking': expected an array of integers"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 2, 3], \"ties\": [[0, 7]]"),
         ":2: field 'ties': 7 is not one of the 4 ranked completions"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 2, 3], \"ties\": [[2]]"),
         ":2: field 'ties': a tie names at least two completions"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 2, 3], \"ties\": [0, 1]"),
         ":2: field 'ties': expected an array of arrays of indices"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 2, 3], \"ties\": [[0, 2]]"),
         ":2: field 'ties': 0 and 2 are tied but 1 is ranked between them"},
        {LABEL("\"completions\": [\"a\", 1], \"ranking\": [0, 1]"),
         ":2: field 'completions': expected an array of strings"},
        {LABEL("\"completions\": \"a\", \"ranking\": [0]"),
         ":2: field 'completions': expected an array of strings"},
        {LABEL("\"completions\": [], \"ranking\": []"),
         ":2: field 'completions': 0 completions (1 to 1024 can be ranked)"},
        {LABEL(ABCD ", \"ranking\": [0, 1, 2, 3], \"skipped\": \"no\""),
         ":2: field 'skipped': expected true or false"},
        {"{\"id\": \"p1\", \"annotator\": \"ann\", \"undo\": true}\n",
         ":2: field 'undo': annotator 'ann' has no earlier label of 'p1' to undo"},
        {"{\"id\": \"p1\", \"annotator\": \"ann\", \"undo\": 1}\n",
         ":2: field 'undo': expected true"},
        {"{\"annotator\": \"ann\", \"ranking\": [0]}\n", ":2: field 'id': expected a string"},
        {"{\"prompt\": \"P\", \"chosen\": \"\", \"rejected\": \"R\"}\n",
         ":2: field 'chosen': empty response"},
        {"{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", \"rejected\": "
         "\"\\n\\nHuman: a\\n\\nAssistant:\"}\n",
         ":2: field 'rejected': empty response"},
        {"{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"p\": 1.5}\n",
         ":2: field 'p': 1.5 is not a probability in [0, 1]"},
        {"{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"p\": -0.1}\n",
         ":2: field 'p': -0.1 is not a probability in [0, 1]"},
        {"{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"p\": \"high\"}\n",
         ":2: field 'p': expected a number"},
        {"{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"p\": 0.5, \"margin\": 1}\n",
         ":2: field 'p': a soft label takes no margin"},
        {"{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\", \"margin\": \"x\"}\n",
         ":2: field 'margin': expected a number"},
        {"{\"prompt\": \"P\", \"chosen\": \"C\"}\n", ":2: field 'rejected': expected a string"},
        {"{\"chosen\": \"\\n\\nHuman: a\", \"rejected\": \"b\"}\n",
         ":2: no shared prompt ending in '\\n\\nAssistant:'"},
        {"{\"prompt\": \"P\", \"response\": \"R\"}\n",
         ":2: neither a label (no field 'ranking') nor a pair (no field 'chosen')"},
    };
#undef LABEL
#undef ABCD
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        /* A good pair first, so that the bad record is on line 2 after a group was made. */
        struct pl_buf b = {0};
        pl_buf_printf(&b, "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\"}\n%s",
                      cases[c].text);
        const char *path = fixture("bad-prefs.jsonl", b.p);
        pl_buf_release(&b);
        struct ds_prefs set = {0};
        struct pl_err err = {0};
        int rc = ds_prefs_load(&set, path, 0, &err);
        is_error(rc, &err, PL_EFORMAT, path, cases[c].msg, cases[c].msg);
        ds_prefs_release(&set);
        rc = ds_prefs_load(&set, path, IO_SKIP_BAD_LINES, &err);
        tap_ok(rc == PL_OK && set.n == 1 && set.skipped == 1, "%s: skipped and counted",
               cases[c].msg);
        ds_prefs_release(&set);
    }

    struct ds_prefs set = {0};
    struct pl_err err = {0};
    const char *path = fixture("prefs-empty.jsonl", "\n");
    int rc = ds_prefs_load(&set, path, 0, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": no records", "prefs: empty file");
    ds_prefs_release(&set);
    path = fixture("prefs-allbad.jsonl", "{\"prompt\": \"P\", \"chosen\": \"\", \"rejected\": "
                                         "\"R\"}\nnot json\n");
    rc = ds_prefs_load(&set, path, IO_SKIP_BAD_LINES, &err);
    is_error(rc, &err, PL_EFORMAT, path, ": no records", "prefs: every record skipped");
    tap_is_int(set.skipped, 2, "prefs: both bad lines counted");
    ds_prefs_release(&set);

    const char *full = fixture_gz("prefs-cut.jsonl.gz",
                                  "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"R\"}\n"
                                  "{\"prompt\": \"Q\", \"chosen\": \"C\", \"rejected\": \"R\"}\n");
    FILE *f = fopen(full, "rb");
    char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    path = fixture_n("prefs-cut2.jsonl.gz", buf, n > 12 ? n - 12 : 0);
    rc = ds_prefs_load(&set, path, IO_SKIP_BAD_LINES, &err);
    is_error(rc, &err, PL_EIO, path, ": unexpected end of compressed data",
             "prefs: a truncated gzip file, even when skipping bad lines");
    ds_prefs_release(&set);
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

static int load_prefs(const char *path, struct pl_err *err)
{
    struct ds_prefs set = {0};
    int rc = ds_prefs_load(&set, path, 0, err);
    ds_prefs_release(&set);
    return rc;
}

static int load_prefs_skip(const char *path, struct pl_err *err)
{
    struct ds_prefs set = {0};
    int rc = ds_prefs_load(&set, path, IO_SKIP_BAD_LINES, err);
    ds_prefs_release(&set);
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
    struct pl_buf b = {0};
    for (int i = 0; i < 3; i++)
        label_line(&b, i == 2 ? "p2" : "p1", "ann", "[2, 0, 1, 3]", "[[0, 1]]");
    undo_line(&b, "p1", "ann");
    pl_buf_str(&b, "{\"id\": \"s\", \"annotator\": \"ann\", \"skipped\": true}\n");
    pl_buf_str(&b, "{\"prompt\": \"P\", \"chosen\": \"C\", \"rejected\": \"\"}\n");
    const char *labels = fixture("oom-labels.jsonl", b.p);
    pl_buf_release(&b);
    const char *text = fixture("oom.txt", "some text\n");
    const char *json = fixture("oom.json", "{\"a\": [1, 2, {\"b\": \"c\"}]}\n");
    check_alloc_failures("sft jsonl", load_sft, sft, false);
    check_alloc_failures("sft jsonl, skipping", load_sft_skip, bad, false);
    check_alloc_failures("sft csv", load_sft, csv, true);
    check_alloc_failures("prompts", load_prompts, prompts, false);
    check_alloc_failures("pairs jsonl.gz", load_prefs, pairs, false);
    check_alloc_failures("labels with undo, skipping", load_prefs_skip, labels, false);
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
        struct ds_prefs set = {0};
        struct pl_err err = {0};
        snprintf(path, sizeof path, "%s/%s", shared, hh[i].file);
        int rc = ds_prefs_load(&set, path, 0, &err);
        size_t good = 0;
        for (size_t k = 0; rc == PL_OK && k < set.n; k++) {
            size_t len = strlen(set.groups[k].prompt);
            good += len >= 12 && strcmp(set.groups[k].prompt + len - 12, "\n\nAssistant:") == 0;
        }
        tap_ok(rc == PL_OK && set.n == hh[i].count && good == set.n,
               "shared: %s: %zu pairs, every prompt ends its last Assistant turn (%s)", hh[i].file,
               set.n, err.msg);
        ds_prefs_release(&set);
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
    test_prefs_expansion();
    test_prefs_history();
    test_prefs_mixed();
    test_prefs_errors();
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
