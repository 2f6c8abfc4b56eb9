/* tui-state: the labelling state machine driven by scripted keys, with no terminal: the records
 * it writes (order, ties, Likert, flags, skips, undo), where it goes next (skip queue, undo across
 * items, browsing, resume from an earlier session's file, a cut-short last line, overlap with
 * other annotators), that the preference loader reads what it writes; the samples reader's
 * errors; and model text made safe and wrapped for the screen (tui/text.h). */
#define _XOPEN_SOURCE 700

#include "tui/state.h"
#include "tui/text.h"

#include "datasets/ds.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *samples_path;
static const char *labels_path;

/* n items "p0".."p{n-1}" with k completions "c0".."c{k-1}" each (item 2 has a "kind"). */
static void write_samples(const char *path, int n, int k)
{
    FILE *f = fopen(path, "w");
    for (int i = 0; i < n; i++) {
        fprintf(f, "{\"id\":\"p%d\",\"prompt\":\"prompt %d\",\"completions\":[", i, i);
        for (int c = 0; c < k; c++)
            fprintf(f, "%s\"c%d of %d\"", c ? "," : "", c, i);
        fprintf(f, "]%s,\"model\":\"m\"}\n", i == 2 ? ",\"kind\":\"known\"" : "");
    }
    fclose(f);
}

/* A session over `items`, the labels file read from the start. */
struct run {
    struct tui_items items;
    struct tui_state s;
    long offset, lineno;
    double now;
};

static void run_open(struct run *r, const char *annotator, int overlap)
{
    struct pl_err err;
    memset(r, 0, sizeof *r);
    if (tui_items_init(&r->items, samples_path, &err) ||
        tui_state_init(&r->s, &r->items, annotator, false, 0, overlap, &err) ||
        tui_state_read(&r->s, labels_path, &r->offset, &r->lineno, true, &err))
        tap_diag("%s", err.msg);
    tui_state_start(&r->s, r->now);
}

static void run_close(struct run *r)
{
    tui_state_release(&r->s);
    tui_state_release(&r->s);
    tui_items_release(&r->items);
}

/* Press keys: '\n' is Enter, '\b' Backspace, anything else itself; a record is appended to the
 * labels file as cmd/tui.c does. Returns the number of records written; *quit when q ended it. */
static int keys(struct run *r, const char *k, bool *quit)
{
    int written = 0;
    for (; *k; k++) {
        int key = *k == '\n' ? TUI_KEY_ENTER : *k == '\b' ? TUI_KEY_BACKSPACE : *k;
        r->now += 2;
        enum tui_act act = tui_state_key(&r->s, key, r->now, "2026-11-30T00:00:00Z");
        if (act == TUI_QUIT) {
            if (quit)
                *quit = true;
            return written;
        }
        if (act == TUI_APPEND) {
            struct pl_err err;
            if (io_append_durable(labels_path, r->s.out.p, r->s.out.len, &err))
                tap_diag("%s", err.msg);
            written++;
            tui_state_appended(&r->s, r->now);
        }
    }
    return written;
}

/* Line n (1-based) of the labels file. */
static const char *line_of(int n)
{
    static char buf[4096];
    FILE *f = fopen(labels_path, "r");
    buf[0] = '\0';
    for (int i = 0; f && i < n; i++)
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
    if (f)
        fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

static bool has(const char *line, const char *part)
{
    bool ok = strstr(line, part) != NULL;
    if (!ok)
        tap_diag("'%s' not in %s", part, line);
    return ok;
}

static void fresh(void)
{
    remove(labels_path);
}

static void ranking_keys(void)
{
    struct run r;
    fresh();
    run_open(&r, "ann", 0);
    tap_is_int(r.s.cur, 0, "a fresh session starts at the first item");
    keys(&r, "31", NULL);
    tap_ok(r.s.rank.n == 2 && r.s.rank.order[0] == 2 && r.s.rank.order[1] == 0,
           "digits place completions best first");
    tap_is_int(keys(&r, "\n", NULL), 0, "Enter with 2 of 4 placed writes nothing");
    tap_ok(strstr(r.s.msg, "rank at least 3") != NULL, "and says why: %s", r.s.msg);
    keys(&r, "3", NULL);
    tap_ok(strstr(r.s.msg, "3 is placed already") != NULL, "a placed number again is refused");
    keys(&r, "7", NULL);
    tap_ok(strstr(r.s.msg, "there are 4") != NULL, "a number past K is refused");
    tap_is_int(keys(&r, "2\n", NULL), 1, "Enter with K-1 placed submits");
    tap_ok(has(line_of(1),
               "\"id\":\"p0\",\"annotator\":\"ann\",\"ranking\":[2,0,1,3],\"ties\":[],"
               "\"skipped\":false,\"time\":\"2026-11-30T00:00:00Z\",\"completions\":"
               "[\"c0 of 0\",\"c1 of 0\",\"c2 of 0\",\"c3 of 0\"],\"prompt\":\"prompt 0\"}"),
           "the label record: the last completion goes last");
    tap_is_int(r.s.cur, 1, "the screen moves on to the next item");
    keys(&r, "12t34\n", NULL);
    tap_ok(has(line_of(2), "\"ranking\":[0,1,2,3],\"ties\":[[0,1]]"), "t ties the last two");
    keys(&r, "43t2t1\n", NULL);
    tap_ok(has(line_of(3), "\"ranking\":[3,2,1,0],\"ties\":[[3,2,1]],") &&
               has(line_of(3), "\"kind\":\"known\""),
           "ties chain; a samples record's kind is carried over");
    keys(&r, "12tt\b\b34\b\b", NULL);
    tap_ok(r.s.rank.n == 0, "Backspace takes back each placed one");
    keys(&r, "21tt34", NULL);
    tap_ok(r.s.rank.n == 4 && !r.s.rank.tie[1], "t again unties");
    keys(&r, "l5hx\n", NULL);
    tap_ok(has(line_of(4), "\"likert\":5,\"flags\":[\"hallucination\",\"harmful\"]}"),
           "l 5 rates, h and x flag");
    keys(&r, "1234hl9l0\n", NULL);
    tap_ok(has(line_of(5), "\"prompt\":\"prompt 4\",\"flags\":[\"hallucination\"]}"),
           "l 9 is no rating, l 0 clears it; h alone");
    keys(&r, "z", NULL);
    tap_ok(strstr(r.s.msg, "? lists") != NULL, "an unknown key points at the help");
    run_close(&r);
}

static void skip_and_undo(void)
{
    struct run r;
    fresh();
    run_open(&r, "ann", 0);
    keys(&r, "s", NULL);
    tap_ok(has(line_of(1), "{\"id\":\"p0\",\"annotator\":\"ann\",\"skipped\":true,\"time\":"),
           "s writes a skip record");
    tap_is_int(r.s.cur, 1, "and moves on");
    keys(&r, "123\n", NULL);
    keys(&r, "321\n", NULL);
    keys(&r, "s", NULL);
    struct tui_progress p;
    tui_state_progress(&r.s, &p);
    tap_ok(p.done == 2 && p.total == 6 && p.skipped == 2,
           "progress: 2 of 6 done, 2 skipped (%ld, %ld, %ld)", p.done, p.total, p.skipped);
    tap_is_int(r.s.cur, 4, "the skipped items wait");
    keys(&r, "1234\n4321\n", NULL);
    tap_is_int(r.s.cur, 0, "then the oldest skip comes back");
    keys(&r, "s", NULL);
    tap_is_int(r.s.cur, 3, "skipped again, it goes behind the other skip");
    keys(&r, "u", NULL);
    tap_ok(has(line_of(8), "{\"id\":\"p0\",\"annotator\":\"ann\",\"undo\":true,\"time\":"),
           "u writes an undo record");
    tap_is_int(r.s.cur, 0, "undoing a skip shows that item again");
    keys(&r, "u", NULL);
    tap_ok(has(line_of(9), "{\"id\":\"p5\",\"annotator\":\"ann\",\"undo\":true"),
           "u again: the label before, of another item");
    tap_ok(r.s.cur == 5 && r.s.rank.n == 4 && r.s.rank.order[0] == 3 && !r.s.saved,
           "which comes back with its ranking to change");
    keys(&r, "\b\b12\n", NULL);
    tap_ok(has(line_of(10), "\"id\":\"p5\",\"annotator\":\"ann\",\"ranking\":[3,2,0,1]"),
           "changed and submitted again");
    keys(&r, "uuuuuu", NULL);
    /* p0's first skip is live again once its second is undone: six records to undo. */
    tap_ok(has(line_of(16), "\"id\":\"p0\",\"annotator\":\"ann\",\"undo\":true"),
           "undo across items back to the first record");
    keys(&r, "u", NULL);
    tap_ok(strstr(r.s.msg, "nothing to undo") != NULL, "then there is nothing to undo");
    struct ds_prefs set = {0};
    struct pl_err err;
    tap_is_int(ds_prefs_load(&set, labels_path, 0, &err), PL_OK,
               "the preference loader reads the file: %s", err.msg);
    tap_ok(set.n == 0 && set.ignored == 8, "and, everything undone, finds no group (%zu, %ld)",
           set.n, set.ignored);
    ds_prefs_release(&set);
    run_close(&r);
}

static void browse_and_quit(void)
{
    struct run r;
    fresh();
    run_open(&r, "ann", 0);
    keys(&r, "1234\n", NULL);
    keys(&r, "p", NULL);
    tap_ok(r.s.cur == 0 && r.s.saved && r.s.rank.n == 4, "p shows the labelled item, saved");
    tap_is_int(keys(&r, "\n", NULL), 0, "Enter on an unchanged label writes nothing");
    keys(&r, "p", NULL);
    tap_ok(strstr(r.s.msg, "first item") != NULL, "p at the first item stays");
    keys(&r, "s", NULL);
    tap_ok(strstr(r.s.msg, "already labelled") != NULL, "s on a labelled item writes nothing");
    keys(&r, "\b1\n", NULL);
    tap_ok(has(line_of(2), "\"id\":\"p0\",\"annotator\":\"ann\",\"ranking\":[0,1,2,3]"),
           "a changed label is written again");
    keys(&r, "nnnnn", NULL);
    tap_is_int(r.s.cur, 5, "n walks to the last item");
    keys(&r, "n", NULL);
    tap_ok(strstr(r.s.msg, "last item") != NULL, "and stops there");
    keys(&r, "?", NULL);
    tap_is_int(r.s.mode, TUI_HELP, "? shows the help");
    keys(&r, "1", NULL);
    tap_ok(r.s.mode == TUI_RANKING && r.s.rank.n == 0, "a key closes it and does nothing else");
    keys(&r, "g", NULL);
    tap_is_int(r.s.mode, TUI_GUIDE, "g shows the guidelines");
    keys(&r, " ", NULL);
    tui_state_key(&r.s, TUI_KEY_TAB, 0, "");
    tui_state_key(&r.s, TUI_KEY_DOWN, 0, "");
    tap_ok(r.s.focus == 1 && r.s.scroll[1] == 1, "Tab focuses, Down scrolls the focused one");
    bool quit = false;
    keys(&r, "1q", &quit);
    tap_ok(!quit && r.s.mode == TUI_CONFIRM_QUIT, "q with a ranking begun asks first");
    keys(&r, "n", &quit);
    tap_ok(!quit && r.s.rank.n == 1, "any key but y stays");
    keys(&r, "qy", &quit);
    tap_ok(quit, "q y quits");
    run_close(&r);
}

static void resume(void)
{
    struct run r;
    fresh();
    run_open(&r, "ann", 0);
    keys(&r, "123\ns1234\n", NULL);
    run_close(&r);
    /* Another annotator shares the file; a crash left a cut-short last line. */
    FILE *f = fopen(labels_path, "a");
    fputs(
        "{\"id\":\"p3\",\"annotator\":\"bob\",\"ranking\":[0,1,2,3],\"ties\":[],\"skipped\":false,"
        "\"completions\":[\"c0 of 3\",\"c1 of 3\",\"c2 of 3\",\"c3 of 3\"],\"prompt\":\"prompt "
        "3\"}\n",
        f);
    fputs("{\"id\":\"p3\",\"annotator\":\"ann\",\"ranki", f);
    fclose(f);
    run_open(&r, "ann", 0);
    tap_is_int(r.s.cur, 3, "a new session resumes at the first unlabelled item");
    tap_is_int(r.lineno, 4, "whole lines only: the cut-short one is left");
    struct tui_progress p;
    tui_state_progress(&r.s, &p);
    tap_ok(p.done == 2 && p.skipped == 1, "the earlier labels and skip count");
    run_close(&r);
    run_open(&r, "bob", 0);
    tap_is_int(r.s.cur, 0, "another annotator starts at their own first item");
    run_close(&r);
    fresh();
    run_open(&r, "ann", 0);
    keys(&r, "123\n321\n", NULL);
    run_close(&r);
    run_open(&r, "ann", 0);
    keys(&r, "u", NULL);
    tap_ok(has(line_of(3), "{\"id\":\"p1\",\"annotator\":\"ann\",\"undo\":true") && r.s.cur == 1 &&
               r.s.rank.order[0] == 2 && !r.s.saved,
           "u undoes the last label of an earlier session");
    run_close(&r);
}

static void overlap(void)
{
    struct run r;
    fresh();
    run_open(&r, "a", 1);
    keys(&r, "123\n", NULL);
    run_close(&r);
    run_open(&r, "b", 2);
    tap_is_int(r.s.cur, 0, "overlap 2: an item one other has labelled comes first");
    keys(&r, "123\n", NULL);
    tap_is_int(r.s.cur, 1, "then new items");
    run_close(&r);
    run_open(&r, "c", 2);
    tap_is_int(r.s.cur, 1, "an item two others labelled is not served under overlap 2");
    struct tui_progress p;
    tui_state_progress(&r.s, &p);
    tap_is_int(p.total, 5, "nor counted in the total");
    run_close(&r);
    /* Another session appends while this one runs: it sees the new labels when it reads on. */
    struct run d;
    run_open(&r, "c", 1);
    run_open(&d, "d", 1);
    tap_ok(r.s.cur == 1 && d.s.cur == 1, "two sessions on the same next item");
    keys(&d, "123\n", NULL);
    struct pl_err err;
    tap_is_int(tui_state_read(&r.s, labels_path, &r.offset, &r.lineno, false, &err), PL_OK,
               "the first session reads the other's label");
    keys(&r, "s", NULL);
    tap_is_int(r.s.cur, 2, "and skips past what overlap 1 no longer serves");
    run_close(&r);
    run_close(&d);
}

static void errors(void)
{
    struct tui_items it;
    struct pl_err err;
    const char *bad = tap_tmp("bad.jsonl");
    struct {
        const char *text, *msg;
    } cases[] = {
        {"{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"x\",\"y\"]}\nnot json\n",
         ":2: not a JSON object"},
        {"{\"id\":\"a\",\"prompt\":\"p\"}\n",
         ":1: field 'completions': expected an array of strings"},
        {"{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"x\"]}\n",
         ":1: field 'completions': 1 completion (plumb label ranks 2 to 9)"},
        {"{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\","
         "\"7\","
         "\"8\",\"9\",\"10\"]}\n",
         ":1: field 'completions': 10 completions (plumb label ranks 2 to 9)"},
        {"{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"x\",\"y\"]}\n{\"id\":\"a\",\"prompt\":"
         "\"p\",\"completions\":[\"x\",\"y\"]}\n",
         ":2: field 'id': duplicate id 'a' (first on line 1)"},
        {"{\"id\":1,\"prompt\":\"p\",\"completions\":[\"x\",\"y\"]}\n",
         ":1: field 'id': expected a string"},
        {"", ": no records"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tap_write_file(bad, cases[i].text);
        err.msg[0] = '\0';
        int rc = tui_items_init(&it, bad, &err);
        tap_ok(rc == PL_EFORMAT && strstr(err.msg, cases[i].msg) && strstr(err.msg, bad),
               "bad samples %zu: %s", i, err.msg);
        tui_items_release(&it);
    }
    tap_write_file(bad, "{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"x\",\"y\"]}\n{\"id\":");
    tap_ok(tui_items_init(&it, bad, &err) == PL_OK && it.n == 1 && it.cut == 1,
           "a cut-short last samples line is left out and counted");
    tui_items_release(&it);

    /* Labels that belong to another samples file, or that are not JSON. */
    tap_write_file(
        labels_path,
        "{\"id\":\"p1\",\"annotator\":\"x\",\"ranking\":[0,1,2,3],\"completions\":[\"a\","
        "\"b\",\"c\",\"d\"],\"prompt\":\"q\"}\n");
    struct tui_state s2;
    tui_items_init(&it, samples_path, &err);
    tui_state_init(&s2, &it, "ann", false, 0, 0, &err);
    long off = 0, ln = 0;
    int rc = tui_state_read(&s2, labels_path, &off, &ln, true, &err);
    tap_ok(rc == PL_EFORMAT &&
               strstr(err.msg, ":1: the label of 'p1' ranks other completions than"),
           "a label of other completions: %s", err.msg);
    tui_state_release(&s2);
    tap_write_file(labels_path, "{\"id\":\"p1\"}\n[1]\n");
    tui_state_init(&s2, &it, "ann", false, 0, 0, &err);
    off = ln = 0;
    rc = tui_state_read(&s2, labels_path, &off, &ln, true, &err);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "labels.jsonl:2: not a JSON object"),
           "a labels line that is not an object: %s", err.msg);
    tui_state_release(&s2);
    tui_items_release(&it);
}

static void shuffled(void)
{
    struct tui_items it;
    struct tui_state a, b;
    struct pl_err err;
    tui_items_init(&it, samples_path, &err);
    tui_state_init(&a, &it, "x", true, 7, 0, &err);
    tui_state_init(&b, &it, "y", true, 7, 0, &err);
    bool same = true, moved = false, perm = true;
    int seen[6] = {0};
    for (int i = 0; i < 6; i++) {
        same = same && a.order[i] == b.order[i];
        moved = moved || a.order[i] != i;
        seen[a.order[i]]++;
    }
    for (int i = 0; i < 6; i++)
        perm = perm && seen[i] == 1 && a.order[a.seq[i]] == i;
    tap_ok(same && moved && perm, "--order shuffle: one permutation per seed, for everyone");
    tui_state_release(&a);
    tui_state_release(&b);
    tui_items_release(&it);
}

static void text(void)
{
    struct tui_text t = {0};
    struct pl_err err;
    const char evil[] = "a\x1b]0;pwned\x07z\x1b[31mred\r\x7f\xc2\x9b\xff\tb";
    tui_text_set(&t, evil, sizeof evil - 1, 80, &err);
    tap_ok(wcscmp(t.s, L"a^[]0;pwned^Gz^[[31mred^M^?<9B>\xFFFD    b") == 0,
           "control characters, C1, invalid UTF-8 and tabs are shown, not sent (%ls)", t.s);
    bool clean = true;
    for (size_t i = 0; i < t.n; i++)
        clean = clean && (t.s[i] == L'\n' ||
                          (t.s[i] >= 0x20 && t.s[i] != 0x7f && !(t.s[i] >= 0x80 && t.s[i] < 0xa0)));
    tap_ok(clean, "no control character is left");
    tui_text_set(&t, "hello world foo", 15, 10, &err);
    tap_ok(t.n_lines == 2 && t.lines[0].len == 6 && t.lines[1].cols == 9,
           "wrapping breaks after the last space");
    tui_text_set(&t, "abcdefghijkl\n\nx", 15, 5, &err);
    tap_ok(t.n_lines == 5 && t.lines[2].len == 2 && t.lines[3].len == 0,
           "a long word is cut; newlines and empty lines stay");
    const char wide[] = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"; /* three CJK characters */
    tui_text_set(&t, wide, sizeof wide - 1, 4, &err);
    tap_ok(t.n_lines == 2 && t.lines[0].cols == 4 && t.lines[1].cols == 2,
           "wide characters take two columns");
    pl_alloc_fail_at(0);
    int rc = tui_text_set(&t, "more text than before, much more", 32, 10, &err);
    pl_alloc_fail_at(-1);
    tap_is_int(rc, PL_ENOMEM, "out of memory is an error");
    tui_text_release(&t);
    tui_text_release(&t);
}

int main(void)
{
    if (!setlocale(LC_ALL, "C.UTF-8"))
        tap_skip_all("no C.UTF-8 locale");
    tap_tmpdir("tui-state");
    samples_path = tap_tmp("samples.jsonl");
    labels_path = tap_tmp("labels.jsonl");
    write_samples(samples_path, 6, 4);
    ranking_keys();
    skip_and_undo();
    browse_and_quit();
    resume();
    overlap();
    errors();
    shuffled();
    text();
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", tap_tmpdir("tui-state"));
    if (system(rm) != 0)
        tap_diag("cannot remove %s", tap_tmpdir("tui-state"));
    return tap_done();
}
