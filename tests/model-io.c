/* Tests of model/io: lines, JSONL, JSON, paths and folders, atomic and durable writes,
 * the cut-line repair of append-only files, and the progress display. */
#include "model/io.h"
#include "model/pl.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char dir[] = "/tmp/plumb-io-XXXXXX";

static const char *path_of(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* A fixture from a string literal, whatever bytes it holds. */
#define FIXTURE(name, lit) write_file(name, lit, sizeof lit - 1)

static const char *write_file(const char *name, const char *text, size_t len)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        tap_diag("cannot write fixture %s", p);
    return p;
}

/* The file's whole content, or "" when it cannot be read. */
static const char *content(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_lines(void)
{
    struct pl_err err = {0};
    const char *p = FIXTURE("lines.txt", "\xef\xbb\xbf"
                                         "a\r\n\nb\0c\nlast");
    struct io_lines l;
    int rc = io_lines_init(&l, p, &err);
    const char *line;
    size_t len;
    char got[5][8] = {{0}};
    size_t lens[5] = {0};
    int n = 0;
    while (rc == PL_OK && !(rc = io_lines_next(&l, &line, &len, &err)) && line && n < 5) {
        memcpy(got[n], line, len < 8 ? len : 8);
        lens[n++] = len;
    }
    tap_ok(rc == PL_OK && n == 4 && strcmp(got[0], "a\r") == 0 && lens[1] == 0 && lens[2] == 3 &&
               memcmp(got[2], "b\0c", 3) == 0 && strcmp(got[3], "last") == 0,
           "lines: BOM dropped, \\r kept, blank line, NUL inside, last line without newline");
    tap_ok(l.cut && l.lineno == 4, "lines: the last line is known to be cut (no newline)");
    io_lines_release(&l);
    io_lines_release(&l);

    rc = io_lines_init(&l, path_of("missing.txt"), &err);
    tap_ok(rc == PL_ENOTFOUND && strstr(err.msg, "missing.txt"), "lines: a missing file is named");
    io_lines_release(&l);

    gzFile gz = gzopen(path_of("z.txt.gz"), "wb");
    gzwrite(gz, "x\ny\n", 4);
    gzclose(gz);
    char *data = NULL;
    size_t n_data = 0;
    rc = io_read_file(path_of("z.txt.gz"), &data, &n_data, &err);
    tap_ok(rc == PL_OK && n_data == 4 && strcmp(data, "x\ny\n") == 0,
           "read_file: gzip read through, NUL-terminated");
    pl_free(data);
}

static void test_jsonl(void)
{
    struct pl_err err = {0};
    const char *p = FIXTURE("r.jsonl", "{\"a\": 1}\n  \n[1]\n{\"a\": \"x\"}\n");
    struct io_jsonl r;
    cJSON *obj = NULL;
    long line = 0, num;
    int rc = io_jsonl_init(&r, p, 0, &err);
    if (rc == PL_OK)
        rc = io_jsonl_next(&r, &obj, &line, &err);
    tap_ok(rc == PL_OK && obj && line == 1 && io_get_int(&r, obj, "a", &num, &err) == PL_OK &&
               num == 1,
           "jsonl: first object, line 1");
    cJSON_Delete(obj);
    rc = io_jsonl_next(&r, &obj, &line, &err);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "r.jsonl:3: not a JSON object"),
           "jsonl: an array on line 3 is named by file and line (%s)", err.msg);
    io_jsonl_release(&r);

    rc = io_jsonl_init(&r, p, IO_SKIP_BAD_LINES, &err);
    int objs = 0;
    while (rc == PL_OK && !(rc = io_jsonl_next(&r, &obj, &line, &err)) && obj) {
        const char *s;
        if (objs == 1)
            rc = io_get_str(&r, obj, "a", &s, &err);
        objs++;
        cJSON_Delete(obj);
    }
    tap_ok(rc == PL_OK && objs == 2 && r.skipped == 1, "jsonl: skip and count the bad line");
    io_jsonl_release(&r);

    p = FIXTURE("cut.jsonl", "{\"a\": 1}\n{\"a\"");
    rc = io_jsonl_init(&r, p, 0, &err);
    while (rc == PL_OK && !(rc = io_jsonl_next(&r, &obj, &line, &err)) && obj)
        cJSON_Delete(obj);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "cut.jsonl:2: not a JSON object (the last line, cut "
                                               "short: rerun the command that writes it)"),
           "jsonl: a cut last line is an error in a data file, that says so");
    io_jsonl_release(&r);
    rc = io_jsonl_init(&r, p, IO_CUT_TAIL, &err);
    objs = 0;
    while (rc == PL_OK && !(rc = io_jsonl_next(&r, &obj, &line, &err)) && obj)
        objs++, cJSON_Delete(obj);
    tap_ok(rc == PL_OK && objs == 1 && r.cut == 1 && r.skipped == 0,
           "jsonl: an append-only file's cut last line is skipped and counted");
    io_jsonl_release(&r);
    p = FIXTURE("cut2.jsonl", "{\"a\"\n{\"a\": 1}");
    rc = io_jsonl_init(&r, p, IO_CUT_TAIL, &err);
    while (rc == PL_OK && !(rc = io_jsonl_next(&r, &obj, &line, &err)) && obj)
        cJSON_Delete(obj);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "cut2.jsonl:1:"),
           "jsonl: a bad line with its newline is no crash artifact");
    io_jsonl_release(&r);

    p = FIXTURE("blank.jsonl", "\n \n");
    rc = io_jsonl_init(&r, p, 0, &err);
    if (rc == PL_OK)
        rc = io_jsonl_next(&r, &obj, &line, &err);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "blank.jsonl: no records"), "jsonl: no records");
    io_jsonl_release(&r);

    cJSON *v = NULL;
    tap_is_int(io_json_parse("{\"a\":1} \n", 9, &v), PL_OK, "json_parse: trailing space is fine");
    cJSON_Delete(v);
    tap_is_int(io_json_parse("{\"a\":1} x", 9, &v), PL_EFORMAT, "json_parse: trailing junk");
    tap_is_int(io_json_parse("{\"a\":1}\0{", 9, &v), PL_EFORMAT, "json_parse: a NUL inside");
    tap_is_int(io_json_parse("{\"a\":1}", 5, &v), PL_EFORMAT, "json_parse: only len bytes read");

    p = FIXTURE("doc.json", "{\n\"a\": 1,\n}\n");
    rc = io_json_load(p, &v, &err);
    tap_ok(rc == PL_EFORMAT && strstr(err.msg, "doc.json:3: not valid JSON"),
           "json_load: the failing line is named (%s)", err.msg);
}

static void test_paths(void)
{
    struct pl_err err = {0};
    char *a = io_path_join("run", "config.json"), *b = io_path_join("run/", "x");
    tap_ok(a && b && strcmp(a, "run/config.json") == 0 && strcmp(b, "run/x") == 0,
           "path_join: one slash");
    pl_free(a);
    pl_free(b);
    tap_ok(io_blank(" \t\r", 3) && !io_blank(" x", 2) && io_blank("", 0), "blank");
    tap_ok(io_has_suffix("a.csv.gz", ".gz") && !io_has_suffix("gz", ".gz"), "has_suffix");

    bool empty = false;
    int rc = io_mkdirs(path_of("m/n/o"), &err);
    tap_ok(rc == PL_OK && io_dir_empty(path_of("m/n/o"), &empty, &err) == PL_OK && empty,
           "mkdirs: nested folders, empty");
    tap_ok(io_dir_empty(path_of("m/n"), &empty, &err) == PL_OK && !empty, "dir_empty: not empty");
    tap_ok(io_dir_empty(path_of("nothing"), &empty, &err) == PL_OK && empty,
           "dir_empty: a missing folder counts as empty");
    FIXTURE("afile", "x");
    tap_is_int(io_mkdirs(path_of("afile/sub"), &err), PL_EIO, "mkdirs: under a file fails");
    tap_is_int(io_mkdirs("", &err), PL_EINVAL, "mkdirs: empty name");

    const char *f = FIXTURE("same.txt", "x");
    char other[600];
    snprintf(other, sizeof other, "%s/m/../same.txt", dir);
    tap_ok(io_same_file(f, other) && !io_same_file(f, path_of("afile")) &&
               !io_same_file(f, path_of("none")),
           "same_file: another spelling of one file, not another file or a missing one");
}

static void test_out(void)
{
    struct pl_err err = {0};
    const char *p = FIXTURE("out.txt", "old");
    struct io_out o;
    int rc = io_out_open(&o, p, &err);
    fputs("new", o.f);
    tap_ok(rc == PL_OK && strcmp(content(p), "old") == 0,
           "out: the target is untouched until commit");
    io_out_abort(&o);
    io_out_abort(&o);
    tap_ok(strcmp(content(p), "old") == 0 && !exists(path_of("out.txt.tmp")),
           "out: abort keeps the old file and drops the temporary");
    rc = io_out_open(&o, p, &err);
    fputs("new", o.f);
    if (rc == PL_OK)
        rc = io_out_commit(&o, &err);
    tap_ok(rc == PL_OK && strcmp(content(p), "new") == 0 && !exists(path_of("out.txt.tmp")),
           "out: commit replaces it");
    rc = io_out_open(&o, path_of("no/such/dir/x"), &err);
    tap_ok(rc == PL_EIO && strstr(err.msg, "no/such/dir/x.tmp"),
           "out: an unwritable path is named");
    io_out_abort(&o);

    rc = io_write_atomic(path_of("atomic.bin"), "a\0b", 3, &err);
    tap_ok(rc == PL_OK && memcmp(content(path_of("atomic.bin")), "a\0b", 3) == 0,
           "write_atomic: bytes as given");

    /* An appending writer killed mid-record leaves a cut last line: find it and cut it off. */
    p = path_of("log.jsonl");
    rc = io_append_durable(p, "{\"a\":1}\n", 8, &err);
    if (rc == PL_OK)
        rc = io_append_durable(p, "{\"a\":2}\n{\"a\"", 12, &err);
    long keep = 0;
    if (rc == PL_OK)
        rc = io_jsonl_tail(p, &keep, &err);
    tap_ok(rc == PL_OK && keep == 16, "jsonl_tail: the cut last line starts at byte 16 (%ld)",
           keep);
    if (rc == PL_OK)
        rc = io_truncate(p, keep, &err);
    if (rc == PL_OK)
        rc = io_jsonl_tail(p, &keep, &err);
    tap_ok(rc == PL_OK && keep == -1 && strcmp(content(p), "{\"a\":1}\n{\"a\":2}\n") == 0,
           "truncate: whole lines remain, nothing to cut");
    tap_ok(io_jsonl_tail(path_of("none.jsonl"), &keep, &err) == PL_OK && keep == -1,
           "jsonl_tail: a missing file has nothing to cut");
    /* A cut line longer than one read chunk, with no newline at all. */
    char big[10000];
    memset(big, 'x', sizeof big);
    p = write_file("big.jsonl", big, sizeof big);
    tap_ok(io_jsonl_tail(p, &keep, &err) == PL_OK && keep == 0, "jsonl_tail: one long cut line");
    big[100] = '\n';
    p = write_file("big2.jsonl", big, sizeof big);
    tap_ok(io_jsonl_tail(p, &keep, &err) == PL_OK && keep == 101,
           "jsonl_tail: a newline far back is found");
}

static void test_progress(void)
{
    FILE *f = tmpfile();
    struct io_progress p;
    io_progress_init(&p, f, "sample", "prompts", 4);
    p.done = 2;
    io_progress_show(&p, NULL, false); /* too soon for a non-terminal line */
    p.done = 4;
    io_progress_show(&p, "12 tokens/s", true);
    io_progress_log(&p, "resuming at %d", 3);
    rewind(f);
    char buf[256] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    tap_ok(strstr(buf, "sample 4/4 prompts, ETA 0:00:00, 12 tokens/s\n") == buf &&
               strstr(buf, "sample: resuming at 3\n"),
           "progress: plain lines off a terminal");
    io_progress_init(&p, NULL, "x", "y", 1);
    io_progress_show(&p, NULL, true);
    io_progress_log(&p, "nothing");
}

static void test_arena(void)
{
    struct io_arena a = {0};
    char big[70000];
    memset(big, 'b', sizeof big);
    char *s1 = io_arena_strndup(&a, "abc", 2), *s2 = io_arena_strndup(&a, big, sizeof big);
    char *s3 = io_arena_strndup(&a, "", 0);
    tap_ok(s1 && s2 && s3 && strcmp(s1, "ab") == 0 && strlen(s2) == sizeof big && !*s3,
           "arena: small, larger than a block, empty");
    io_arena_release(&a);
    io_arena_release(&a);
    pl_alloc_fail_at(0);
    tap_ok(io_arena_strndup(&a, "x", 1) == NULL, "arena: allocation failure is NULL");
    pl_alloc_fail_at(-1);
    io_arena_release(&a);
}

int main(void)
{
    if (!mkdtemp(dir))
        tap_skip_all("cannot make a temporary directory");
    test_lines();
    test_jsonl();
    test_paths();
    test_out();
    test_progress();
    test_arena();
    int rc = tap_done();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("cannot remove %s", dir);
    return rc;
}
