#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IO_CHUNK ((size_t)64 * 1024)
#define IO_BLOCK ((size_t)64 * 1024)

/* ---- arena ---- */

struct io_block {
    struct io_block *next;
    size_t cap, used;
    char data[];
};

char *io_arena_strndup(struct io_arena *a, const char *s, size_t n)
{
    struct io_block *b = a->head;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > IO_BLOCK ? n + 1 : IO_BLOCK;
        b = pl_malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = a->head;
        b->cap = cap;
        b->used = 0;
        a->head = b;
    }
    char *d = b->data + b->used;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    b->used += n + 1;
    return d;
}

void io_arena_release(struct io_arena *a)
{
    while (a->head) {
        struct io_block *next = a->head->next;
        pl_free(a->head);
        a->head = next;
    }
}

/* Array growth by doubling: the (possibly moved) array with room for `need` items, or NULL
 * (the old array untouched) when out of memory. */
void *io_grow(void *items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return items;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    if (n > SIZE_MAX / size)
        return NULL;
    void *p = pl_realloc(items, n * size);
    if (p)
        *cap = n;
    return p;
}

bool io_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool io_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (k == 0 || k > n)
        return 0;
    /* The second byte's range rules out overlong forms, surrogates and code points past
     * U+10FFFF (RFC 3629's table). */
    unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (k > 1 && (s[1] < lo || s[1] > hi))
        return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return k;
}

int io_text_check(const char *path, long line, const char *s, size_t n, struct pl_err *err)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t col0 = 0;
    for (size_t i = 0; i < n;) {
        size_t k = u[i] ? utf8_len(u + i, n - i) : 0;
        if (k == 0 && u[i] == 0)
            return pl_errf(err, PL_EFORMAT, "%s:%ld: NUL byte at column %zu (a binary file?)", path,
                           line, i - col0 + 1);
        if (k == 0)
            return pl_errf(err, PL_EFORMAT, "%s:%ld: invalid UTF-8 (byte 0x%02x at column %zu)",
                           path, line, u[i], i - col0 + 1);
        if (u[i] == '\n') {
            line++;
            col0 = i + 1;
        }
        i += k;
    }
    return PL_OK;
}

/* ---- reading through zlib ---- */

static int open_gz(const char *path, gzFile *gz, struct pl_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return pl_errf(err, e == ENOENT ? PL_ENOTFOUND : PL_EIO, "cannot open '%s': %s", path,
                       strerror(e));
    }
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        close(fd);
        return pl_oom(err, "gzip reader");
    }
    return PL_OK;
}

/* gzread into buf[0..cap), *got bytes (0 at end). zlib reports a gzip stream that stops short
 * only through gzerror after the last read, so that is checked here too. */
static int read_chunk(gzFile gz, const char *path, char *buf, size_t cap, size_t *got,
                      struct pl_err *err)
{
    int errnum = Z_OK;
    int n = gzread(gz, buf, (unsigned)(cap > INT_MAX ? INT_MAX : cap));
    if (n < 0)
        return pl_errf(err, PL_EIO, "%s: read error: %s", path, gzerror(gz, &errnum));
    if (n == 0) {
        gzerror(gz, &errnum);
        if (errnum == Z_BUF_ERROR)
            return pl_errf(err, PL_EIO, "%s: unexpected end of compressed data", path);
    }
    *got = (size_t)n;
    return PL_OK;
}

/* The whole file in a NUL-terminated pl_malloc buffer. */
int io_read_file(const char *path, char **data, size_t *len, struct pl_err *err)
{
    gzFile gz = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, got = 0;
    int rc = open_gz(path, &gz, err);
    while (rc == PL_OK) {
        char *p = io_grow(buf, &cap, n + IO_CHUNK + 1, 1);
        if (!p) {
            rc = pl_oom(err, "file contents");
            break;
        }
        buf = p;
        rc = read_chunk(gz, path, buf + n, cap - n - 1, &got, err);
        if (rc || got == 0)
            break;
        n += got;
    }
    if (gz)
        gzclose(gz);
    if (rc) {
        pl_free(buf);
        return rc;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return PL_OK;
}

/* ---- lines ---- */

int io_lines_init(struct io_lines *l, const char *path, struct pl_err *err)
{
    memset(l, 0, sizeof *l);
    l->path = pl_strdup(path);
    l->buf = pl_malloc(IO_CHUNK);
    if (!l->path || !l->buf)
        return pl_oom(err, "line reader");
    gzFile gz = NULL;
    int rc = open_gz(path, &gz, err);
    l->gz = gz;
    return rc;
}

/* Append s[0..n) to the current line, which holds `have` bytes. */
static int line_append(struct io_lines *l, size_t have, const char *s, size_t n, struct pl_err *err)
{
    char *p = io_grow(l->line, &l->line_cap, have + n + 1, 1);
    if (!p)
        return pl_oom(err, "line buffer");
    l->line = p;
    memcpy(l->line + have, s, n);
    l->line[have + n] = '\0';
    return PL_OK;
}

int io_lines_next(struct io_lines *l, const char **line, size_t *len, struct pl_err *err)
{
    size_t n = 0;
    bool newline = false;
    *line = NULL;
    *len = 0;
    while (!newline) {
        if (l->buf_pos == l->buf_len) {
            if (l->eof)
                break;
            int rc = read_chunk(l->gz, l->path, l->buf, IO_CHUNK, &l->buf_len, err);
            if (rc)
                return rc;
            l->buf_pos = 0;
            l->eof = l->buf_len == 0;
            continue;
        }
        const char *start = l->buf + l->buf_pos;
        size_t avail = l->buf_len - l->buf_pos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) : avail;
        int rc = line_append(l, n, start, take, err);
        if (rc)
            return rc;
        n += take;
        l->buf_pos += take + (nl != NULL);
        newline = nl != NULL;
    }
    if (!newline && n == 0)
        return PL_OK;
    l->cut = !newline;
    if (l->lineno == 0 && n >= 3 && memcmp(l->line, "\xef\xbb\xbf", 3) == 0) {
        n -= 3;
        memmove(l->line, l->line + 3, n + 1);
    }
    l->lineno++;
    *line = l->line;
    *len = n;
    return PL_OK;
}

void io_lines_release(struct io_lines *l)
{
    if (l->gz)
        gzclose(l->gz);
    pl_free(l->path);
    pl_free(l->buf);
    pl_free(l->line);
    memset(l, 0, sizeof *l);
}

/* ---- cJSON through pl_malloc ---- */

/* Set when cJSON's allocator fails, so that a NULL from cJSON_Parse can be told apart from bad
 * JSON. Per thread, because cJSON's hooks are global. */
static _Thread_local bool json_oom;
static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;

static void *json_malloc(size_t n)
{
    void *p = pl_malloc(n);
    if (!p)
        json_oom = true;
    return p;
}

static void json_hooks_install(void)
{
    cJSON_Hooks hooks = {json_malloc, pl_free};
    cJSON_InitHooks(&hooks);
}

/* cJSON_ParseWithOpts on a NUL-terminated text that must hold one value and nothing more:
 * PL_OK, PL_EFORMAT (bad JSON, *end at the fault) or PL_ENOMEM. */
static int json_parse(const char *text, cJSON **out, const char **end)
{
    pthread_once(&json_hooks_once, json_hooks_install);
    json_oom = false;
    *out = cJSON_ParseWithOpts(text, end, 1);
    if (*out)
        return PL_OK;
    return json_oom ? PL_ENOMEM : PL_EFORMAT;
}

static bool only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i]) || !s[i])
            return false;
    return true;
}

int io_json_parse(const char *text, size_t len, cJSON **out)
{
    const char *end = NULL;
    *out = NULL;
    /* cJSON stops at a NUL, which would silently drop the rest. */
    if (memchr(text, '\0', len))
        return PL_EFORMAT;
    pthread_once(&json_hooks_once, json_hooks_install);
    json_oom = false;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out && !only_space(end, len - (size_t)(end - text))) {
        cJSON_Delete(*out);
        *out = NULL;
        return PL_EFORMAT;
    }
    if (*out)
        return PL_OK;
    return json_oom ? PL_ENOMEM : PL_EFORMAT;
}

/* ---- jsonl ---- */

int io_jsonl_init(struct io_jsonl *r, const char *path, unsigned flags, struct pl_err *err)
{
    memset(r, 0, sizeof *r);
    r->flags = flags;
    return io_lines_init(&r->lines, path, err);
}

/* One line as a JSON object: PL_OK, PL_EFORMAT or PL_ENOMEM. */
static int parse_object(const char *text, size_t len, cJSON **obj)
{
    const char *end = NULL;
    *obj = NULL;
    /* cJSON stops at a NUL, which would silently drop the rest of the line. */
    if (memchr(text, '\0', len))
        return PL_EFORMAT;
    int rc = json_parse(text, obj, &end);
    if (rc == PL_OK && !cJSON_IsObject(*obj)) {
        cJSON_Delete(*obj);
        *obj = NULL;
        rc = PL_EFORMAT;
    }
    return rc;
}

int io_jsonl_next(struct io_jsonl *r, cJSON **obj, long *line, struct pl_err *err)
{
    *obj = NULL;
    for (;;) {
        const char *text;
        size_t len;
        int rc = io_lines_next(&r->lines, &text, &len, err);
        if (rc)
            return rc;
        if (!text)
            break;
        if (io_blank(text, len))
            continue;
        struct pl_err text_err;
        bool text_ok = io_text_check(r->lines.path, r->lines.lineno, text, len, &text_err) == 0;
        rc = text_ok ? parse_object(text, len, obj) : PL_EFORMAT;
        if (rc == PL_ENOMEM)
            return pl_oom(err, "JSON object");
        if (rc == PL_OK) {
            r->records++;
            if (line)
                *line = r->lines.lineno;
            return PL_OK;
        }
        if ((r->flags & IO_CUT_TAIL) && r->lines.cut) {
            r->cut++;
            continue;
        }
        /* A last line cut short is what a writer killed mid-line leaves: its rerun mends it. */
        if (!(r->flags & IO_SKIP_BAD_LINES))
            return text_ok ? io_jsonl_errf(r, err, r->lines.cut ? "not a JSON object (the last "
                                                                  "line, cut short: rerun the "
                                                                  "command that writes it)"
                                                                : "not a JSON object")
                           : pl_errf(err, PL_EFORMAT, "%s", text_err.msg);
        r->skipped++;
    }
    if (r->records == 0)
        return pl_errf(err, PL_EFORMAT, "%s: no records", r->lines.path);
    return PL_OK;
}

void io_jsonl_release(struct io_jsonl *r)
{
    io_lines_release(&r->lines);
    memset(r, 0, sizeof *r);
}

int io_jsonl_errf(const struct io_jsonl *r, struct pl_err *err, const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pl_errf(err, PL_EFORMAT, "%s:%ld: %s", r->lines.path, r->lines.lineno, msg);
}

static int field_error(const struct io_jsonl *r, const char *name, const char *what,
                       struct pl_err *err)
{
    return io_jsonl_errf(r, err, "field '%s': expected %s", name, what);
}

int io_get_str(const struct io_jsonl *r, const cJSON *obj, const char *name, const char **out,
               struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsString(v))
        return field_error(r, name, "a string", err);
    *out = v->valuestring;
    return PL_OK;
}

int io_get_num(const struct io_jsonl *r, const cJSON *obj, const char *name, double *out,
               struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return field_error(r, name, "a number", err);
    *out = v->valuedouble;
    return PL_OK;
}

int io_get_int(const struct io_jsonl *r, const cJSON *obj, const char *name, long *out,
               struct pl_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    /* 2^53: beyond it a double no longer holds every integer. */
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 9007199254740992.0)
        return field_error(r, name, "an integer", err);
    *out = (long)v->valuedouble;
    return PL_OK;
}

int io_json_load(const char *path, cJSON **out, struct pl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    const char *end = NULL;
    *out = NULL;
    int rc = io_read_file(path, &text, &len, err);
    if (rc)
        return rc;
    if (strspn(text, " \t\r\n") == len)
        rc = pl_errf(err, PL_EFORMAT, "%s: empty file", path);
    else
        rc = io_text_check(path, 1, text, len, err);
    if (rc == PL_OK)
        rc = json_parse(text, out, &end);
    if (rc == PL_ENOMEM) {
        pl_oom(err, "JSON document");
    } else if (rc == PL_EFORMAT && end) {
        long line = 1;
        for (const char *p = text; p < end; p++)
            line += *p == '\n';
        pl_errf(err, PL_EFORMAT, "%s:%ld: not valid JSON", path, line);
    }
    pl_free(text);
    return rc;
}

/* ---- paths and folders ---- */

char *io_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = pl_malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int io_mkdirs(const char *dir, struct pl_err *err)
{
    if (!dir[0])
        return pl_errf(err, PL_EINVAL, "cannot create a folder with an empty name");
    char *p = pl_strdup(dir);
    if (!p)
        return pl_oom(err, "folder name");
    int rc = PL_OK;
    /* Create each prefix in turn; one that exists is fine until the final check. */
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rc = pl_errf(err, PL_EIO, "cannot create folder '%s': %s", p, strerror(errno));
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (rc == PL_OK && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = pl_errf(err, PL_EIO, "cannot create folder '%s': not a folder", dir);
    pl_free(p);
    return rc;
}

int io_dir_empty(const char *dir, bool *empty, struct pl_err *err)
{
    *empty = true;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return PL_OK;
        return pl_errf(err, PL_EIO, "cannot read folder '%s': %s", dir, strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            *empty = false;
            break;
        }
    closedir(d);
    return PL_OK;
}

bool io_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ---- writing ---- */

int io_write_all(int fd, const void *data, size_t n, const char *path, struct pl_err *err)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return pl_errf(err, PL_EIO, "cannot write '%s': %s", path,
                           w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return PL_OK;
}

int io_sync_parent(const char *path, struct pl_err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? pl_malloc((size_t)(slash - path) + 2) : pl_strdup(".");
    if (!dir)
        return pl_oom(err, "folder name");
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int rc = PL_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Some file systems cannot sync a folder (EINVAL); the rename is then as durable as it gets. */
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        rc = pl_errf(err, PL_EIO, "cannot sync folder '%s': %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    pl_free(dir);
    return rc;
}

int io_out_open(struct io_out *o, const char *path, struct pl_err *err)
{
    memset(o, 0, sizeof *o);
    o->path = pl_strdup(path);
    o->tmp = pl_malloc(strlen(path) + 5);
    if (!o->path || !o->tmp) {
        io_out_abort(o);
        return pl_oom(err, "file name");
    }
    sprintf(o->tmp, "%s.tmp", path);
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        io_out_abort(o);
        return pl_errf(err, PL_EIO, "cannot create '%s.tmp': %s", path, strerror(e));
    }
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        close(fd);
        unlink(o->tmp);
        io_out_abort(o);
        return pl_oom(err, "output stream");
    }
    return PL_OK;
}

/* For crash tests only (tests/cmd-crash.c): PLUMB_TEST_KILL_IN=atomic:N sends SIGKILL to the
 * process in its Nth atomic write, before the temporary file's last buffer is flushed or renamed:
 * a kill inside a checkpoint, at a file the test chooses. Inert unless the variable is set. */
static void test_kill_point(void)
{
    static long count, at = -1;
    if (at < 0) {
        const char *s = getenv("PLUMB_TEST_KILL_IN");
        at = s && strncmp(s, "atomic:", 7) == 0 ? atol(s + 7) : 0;
    }
    if (at > 0 && ++count == at)
        raise(SIGKILL);
}

int io_out_commit(struct io_out *o, struct pl_err *err)
{
    test_kill_point();
    int rc = PL_OK;
    FILE *f = o->f;
    o->f = NULL;
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", o->tmp, strerror(errno));
    if (fclose(f) != 0 && rc == PL_OK)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", o->tmp, strerror(errno));
    if (rc == PL_OK && rename(o->tmp, o->path) != 0)
        rc = pl_errf(err, PL_EIO, "cannot rename '%s' to '%s': %s", o->tmp, o->path,
                     strerror(errno));
    if (rc != PL_OK)
        unlink(o->tmp);
    if (rc == PL_OK)
        rc = io_sync_parent(o->path, err);
    pl_free(o->path);
    pl_free(o->tmp);
    memset(o, 0, sizeof *o);
    return rc;
}

void io_out_abort(struct io_out *o)
{
    if (o->f) {
        fclose(o->f);
        unlink(o->tmp);
    }
    pl_free(o->path);
    pl_free(o->tmp);
    memset(o, 0, sizeof *o);
}

int io_write_atomic(const char *path, const void *data, size_t n, struct pl_err *err)
{
    struct io_out o;
    int rc = io_out_open(&o, path, err);
    if (rc)
        return rc;
    if (n && fwrite(data, 1, n, o.f) != n) {
        int e = errno;
        io_out_abort(&o);
        return pl_errf(err, PL_EIO, "cannot write '%s.tmp': %s", path, strerror(e));
    }
    return io_out_commit(&o, err);
}

int io_append_durable(const char *path, const void *data, size_t n, struct pl_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0)
        return pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    int rc = io_write_all(fd, data, n, path, err);
    if (rc == PL_OK && fsync(fd) != 0)
        rc = pl_errf(err, PL_EIO, "cannot sync '%s': %s", path, strerror(errno));
    if (close(fd) != 0 && rc == PL_OK)
        rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", path, strerror(errno));
    return rc;
}

int io_jsonl_tail(const char *path, long *keep, struct pl_err *err)
{
    *keep = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? PL_OK
                   : pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) == 0
                 ? PL_OK
                 : pl_errf(err, PL_EIO, "cannot read '%s': %s", path, strerror(errno));
    /* Read backwards in chunks to the last newline: the file may be large. */
    char buf[4096];
    off_t end = rc == PL_OK ? st.st_size : 0;
    bool first = true;
    while (rc == PL_OK && end > 0) {
        size_t n = end > (off_t)sizeof buf ? sizeof buf : (size_t)end;
        ssize_t got = pread(fd, buf, n, end - (off_t)n);
        if (got != (ssize_t)n) {
            rc = pl_errf(err, PL_EIO, "cannot read '%s': %s", path, strerror(errno));
            break;
        }
        if (first && buf[n - 1] == '\n')
            break;
        first = false;
        char *nl = NULL;
        for (size_t i = n; i-- > 0;)
            if (buf[i] == '\n') {
                nl = buf + i;
                break;
            }
        if (nl) {
            *keep = (long)(end - (off_t)n + (nl - buf) + 1);
            break;
        }
        end -= (off_t)n;
        if (end == 0)
            *keep = 0;
    }
    close(fd);
    return rc;
}

int io_truncate(const char *path, long size, struct pl_err *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return pl_errf(err, PL_EIO, "cannot cut '%s' to %ld bytes: %s", path, size, strerror(e));
    }
    close(fd);
    return PL_OK;
}

/* ---- progress ---- */

void io_progress_init(struct io_progress *p, FILE *f, const char *label, const char *unit,
                      long total)
{
    double now = pl_now();
    *p = (struct io_progress){.f = f,
                              .tty = f && isatty(fileno(f)),
                              .label = label,
                              .unit = unit,
                              .total = total,
                              .t0 = now,
                              .shown = now,
                              .every = 5.0};
}

static void fmt_eta(char *out, size_t n, double s)
{
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void io_progress_show(struct io_progress *p, const char *note, bool last)
{
    double now = pl_now(), dt = now - p->t0;
    if (!p->f || (!last && now - p->shown < (p->tty ? 0.1 : p->every)))
        return;
    p->shown = now;
    char eta[32], bar[32] = "";
    fmt_eta(eta, sizeof eta, p->done > 0 ? dt / p->done * (p->total - p->done) : 0);
    if (p->tty) {
        enum { WIDTH = 20 };
        long fill = p->total > 0 ? WIDTH * p->done / p->total : WIDTH;
        bar[0] = '[';
        for (int i = 0; i < WIDTH; i++)
            bar[i + 1] = i < fill ? '#' : '.';
        bar[WIDTH + 1] = ']';
        bar[WIDTH + 2] = ' ';
        bar[WIDTH + 3] = '\0';
    }
    fprintf(p->f, "%s%s %s%ld/%ld %s, ETA %s%s%s%s", p->tty ? "\r\033[K" : "", p->label, bar,
            p->done, p->total, p->unit, eta, note ? ", " : "", note ? note : "",
            p->tty && !last ? "" : "\n");
    fflush(p->f);
}

void io_progress_log(struct io_progress *p, const char *fmt, ...)
{
    if (!p->f)
        return;
    if (p->tty)
        fputs("\r\033[K", p->f);
    fprintf(p->f, "%s: ", p->label);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    fputc('\n', p->f);
    fflush(p->f);
    /* The bar comes back at the next show. */
    p->shown = 0;
}
