#define _XOPEN_SOURCE 700 /* posix_openpt */
#include "tests/fixture.h"

#include "model/ckpt.h"
#include "tests/tap.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct gpt_config tap_byte_config(int n_positions, int n_embd, int n_layer, int n_head)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 257;
    c.n_positions = n_positions;
    c.n_embd = n_embd;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.bos_token_id = c.eos_token_id = 256;
    snprintf(c.tokenizer, sizeof c.tokenizer, "byte");
    return c;
}

void tap_model_perturbed(struct gpt *m, const struct gpt_config *cfg, uint64_t seed)
{
    struct pl_err err;
    struct gpt_opts o = {.max_batch = 1, .max_seq = cfg->n_positions};
    if (gpt_init(m, cfg, &o, &err)) {
        tap_diag("%s", err.msg);
        exit(1);
    }
    gpt_init_weights(m, seed);
    struct pl_rng r;
    pl_rng_seed(&r, seed + 1);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.15f * pl_rng_normal(&r);
}

float *tap_load_params(const char *dir, size_t *n)
{
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.max_batch = 1, .max_seq = 1};
    float *p = NULL;
    *n = 0;
    if (ckpt_load(&m, dir, &o, &err) == PL_OK && (p = pl_malloc(m.n_params * sizeof *p))) {
        memcpy(p, m.params, m.n_params * sizeof *p);
        *n = m.n_params;
    }
    gpt_release(&m);
    return p;
}

void tap_fill(float *x, size_t n, struct pl_rng *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * pl_rng_normal(r);
}

double tap_nmse(const float *got, const float *want, size_t n)
{
    double e = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    return w > 0 ? e / w : e;
}

static char dir[64];

const char *tap_tmpdir(const char *tag)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/plumb-%s-XXXXXX", tag);
        if (!mkdtemp(dir))
            tap_skip_all("cannot make a temporary folder");
    }
    return dir;
}

const char *tap_tmp(const char *name)
{
    static char bufs[64][512];
    static int next;
    char *b = bufs[next++ % 64];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

void tap_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        tap_diag("cannot write %s", path);
}

size_t tap_read_into(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return n;
}

int tap_run_cmdv(char *out, size_t cap_out, char *err, size_t cap_err, int (*cmd)(int, char **),
                 const char *name, const char *fmt, va_list ap)
{
    char args[4096];
    vsnprintf(args, sizeof args, fmt, ap);
    fflush(stdout);
    char out_path[1024], err_path[1024];
    snprintf(out_path, sizeof out_path, "%s", tap_tmp("stdout.txt"));
    snprintf(err_path, sizeof err_path, "%s", tap_tmp("stderr.txt"));
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(out_path, "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(99);
        char *argv[64] = {(char *)name};
        int argc = 1;
        for (char *s = strtok(args, " "); s && argc < 63; s = strtok(NULL, " "))
            argv[argc++] = s;
        argv[argc] = NULL;
        int rc = cmd(argc, argv);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    tap_read_into(out_path, out, cap_out);
    tap_read_into(err_path, err, cap_err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int tap_system(const char *cmd)
{
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int tap_shell(const char *cmd, char *out, size_t cap_out, char *err, size_t cap_err)
{
    size_t n = strlen(cmd) + 64;
    char *line = malloc(n);
    if (!line)
        return -1;
    snprintf(line, n, "%s >stdout.txt 2>stderr.txt", cmd);
    int rc = tap_system(line);
    free(line);
    tap_read_into("stdout.txt", out, cap_out);
    tap_read_into("stderr.txt", err, cap_err);
    return rc;
}

bool tap_pty_start(struct tap_pty *p, const char *cmd)
{
    p->n = 0;
    p->screen[0] = '\0';
    p->fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (p->fd < 0 || grantpt(p->fd) != 0 || unlockpt(p->fd) != 0)
        return false;
    const char *name = ptsname(p->fd);
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    ioctl(p->fd, TIOCSWINSZ, &ws);
    fflush(stdout);
    p->pid = fork();
    if (p->pid == 0) {
        setsid();
        int s = open(name, O_RDWR);
        if (s < 0 || ioctl(s, TIOCSCTTY, 0) != 0)
            _exit(99);
        dup2(s, 0);
        dup2(s, 1);
        close(s);
        close(p->fd);
        setenv("TERM", "xterm", 1);
        unsetenv("LINES");
        unsetenv("COLUMNS");
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(98);
    }
    return p->pid > 0;
}

bool tap_pty_pump(struct tap_pty *p, const char *want, int ms)
{
    double end = pl_now() + ms / 1000.0;
    for (;;) {
        p->screen[p->n] = '\0';
        if (want && strstr(p->screen, want))
            return true;
        double left = end - pl_now();
        if (left <= 0)
            return false;
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        if (p->n + 1 >= sizeof p->screen)
            p->n = 0;
        ssize_t r = read(p->fd, p->screen + p->n, sizeof p->screen - 1 - p->n);
        if (r <= 0) {
            p->screen[p->n] = '\0';
            return want && strstr(p->screen, want);
        }
        p->n += (size_t)r;
    }
}

const char *tap_plumb_bin(void)
{
    static char bin[PATH_MAX];
    if (bin[0])
        return bin;
    const char *b = getenv("PLUMB_BIN");
    char cwd[PATH_MAX];
    if (!b || !getcwd(cwd, sizeof cwd) ||
        snprintf(bin, sizeof bin, "%s%s%s", b[0] == '/' ? "" : cwd, b[0] == '/' ? "" : "/", b) >=
            (int)sizeof bin ||
        access(bin, X_OK) != 0)
        tap_skip_all("PLUMB_BIN is not set to the plumb binary");
    return bin;
}

int tap_plumb(char *out, size_t cap_out, char *err, size_t cap_err, const char *fmt, ...)
{
    char args[16384], cmd[sizeof args + PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec </dev/null; %s %s", tap_plumb_bin(), args);
    return tap_shell(cmd, out, cap_out, err, cap_err);
}

char *tap_read_whole(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long len = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[len] = '\0';
    if (f)
        fclose(f);
    *n = buf ? (size_t)len : 0;
    return buf;
}

bool tap_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tap_read_whole(a, &na), *y = tap_read_whole(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}
