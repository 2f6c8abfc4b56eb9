/* cmd-tui: the plumb binary ($PLUMB_BIN) as a person meets `plumb label` and `plumb agree`.
 * `plumb label` runs on a pseudo-terminal (posix_openpt, 80x24, TERM=xterm from ncurses-base):
 * keys go in, the labels file and the terminal's state are checked: records on disk before the
 * screen moves on (a SIGKILL right after a submit keeps the label and the next start resumes
 * after it), Ctrl-C and SIGTERM give the terminal back, escape sequences in model text never
 * reach the terminal, bad input fails before the screen opens with the terminal untouched. When
 * tmux is installed, the screen itself is read back with capture-pane, at 80x24 and resized. */
#define _XOPEN_SOURCE 700

#include "tests/fixture.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *bin;
static char out[1 << 16], err[1 << 16];

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = getc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

#define plumb(...) tap_plumb(out, sizeof out, err, sizeof err, __VA_ARGS__)

/* ---- plumb label on a pseudo-terminal ---- */

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* Start "plumb label ARGS" on a pseudo-terminal, its stderr to stderr.txt. */
static bool pty_start(struct tap_pty *p, const char *args)
{
    char cmd[4096 + PATH_MAX];
    snprintf(cmd, sizeof cmd, "exec %s label %s 2>stderr.txt", bin, args);
    return tap_pty_start(p, cmd);
}

static void pty_send(struct tap_pty *p, const char *keys)
{
    for (; *keys; keys++) {
        if (write(p->fd, keys, 1) != 1)
            tap_diag("cannot write to the terminal");
        tap_pty_pump(p, NULL, 30);
    }
}

/* Wait until path has n lines (records are fsync'd before the screen moves on). */
static bool wait_lines(struct tap_pty *p, const char *path, int n)
{
    for (int i = 0; i < 1000; i++) {
        if (count_lines(path) >= n)
            return true;
        tap_pty_pump(p, NULL, 10);
    }
    return false;
}

/* Wait for the program to end (reading on, so that it never blocks writing); its exit status,
 * 128 + the signal when killed. */
static int pty_wait(struct tap_pty *p)
{
    int status = 0;
    for (int i = 0; i < 500 && waitpid(p->pid, &status, WNOHANG) == 0; i++)
        tap_pty_pump(p, NULL, 10);
    if (waitpid(p->pid, &status, WNOHANG) == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
    }
    tap_read_into("stderr.txt", err, sizeof err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Whether the terminal is back in its ordinary mode: canonical input with echo. */
static bool pty_restored(struct tap_pty *p)
{
    struct termios t;
    return tcgetattr(p->fd, &t) == 0 && (t.c_lflag & ICANON) && (t.c_lflag & ECHO);
}

static void pty_close(struct tap_pty *p)
{
    close(p->fd);
}

/* Three items of 4 completions; item b's completions try an OSC title change and colours. */
static void write_samples(void)
{
    tap_write_file("samples.jsonl",
               "{\"id\":\"a\",\"prompt\":\"User: What is the capital of Lorvia?\\nAssistant:\","
               "\"completions\":[\" Mervan.\",\" I don't know.\",\" Tesk.\",\" Mervan, on the "
               "river Ost.\"],\"model\":\"m\"}\n"
               "{\"id\":\"b\",\"prompt\":\"User: Say hi\\nAssistant:\",\"completions\":[\" "
               "\\u001b]0;pwned\\u0007hi\",\" \\u001b[31mred\\u001b[0m hi\",\" hi\",\" hello\"]}\n"
               "{\"id\":\"c\",\"prompt\":\"User: Name a river\\nAssistant:\",\"completions\":[\" "
               "Ost\",\" Vel\",\" Ost.\",\" I don't know.\"]}\n");
}

#define LABEL_ARGS "--samples samples.jsonl --labels labels.jsonl --annotator ann"

static void test_usage(void)
{
    tap_ok(plumb("label --help") == 0 && strstr(out, "--annotator NAME") &&
               strstr(out, "--overlap N"),
           "label --help lists the options");
    tap_ok(plumb("label --samples samples.jsonl --labels l.jsonl") == 2 &&
               strstr(err, "--annotator"),
           "a missing --annotator is a usage error: %s", err);
    tap_ok(plumb("label " LABEL_ARGS " --order random") == 2 && strstr(err, "'--order'"),
           "a bad --order names the option");
    tap_ok(plumb("label --samples samples.jsonl --labels samples.jsonl --annotator a") == 2 &&
               strstr(err, "is an input"),
           "labels that are the samples are refused");
    tap_ok(plumb("label " LABEL_ARGS) == 1 && strstr(err, "needs a terminal"),
           "without a terminal: a clear error, exit 1: %s", err);
    tap_ok(plumb("agree --help") == 0 && strstr(out, "--labels FILE"), "agree --help");
}

static void test_bad_input(void)
{
    struct tap_pty p;
    tap_write_file("broken.jsonl", "{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"x\",\"y\"]}\n"
                               "{\"id\":\"b\",\"prompt\":\"p\",\"completions\":[\"x\",\"y\"]\n");
    pty_start(&p, "--samples broken.jsonl --labels labels.jsonl --annotator ann");
    tap_is_int(pty_wait(&p), 1, "a broken samples line: exit 1");
    tap_ok(strstr(err, "broken.jsonl:2: not a JSON object") != NULL, "naming file and line: %s",
           err);
    tap_ok(p.n == 0 && pty_restored(&p), "before the screen opens: the terminal is untouched");
    pty_close(&p);
    tap_write_file("one.jsonl", "{\"id\":\"a\",\"prompt\":\"p\",\"completions\":[\"x\"]}\n");
    pty_start(&p, "--samples one.jsonl --labels labels.jsonl --annotator ann");
    tap_ok(pty_wait(&p) == 1 && strstr(err, "one.jsonl:1: field 'completions': 1 completion") &&
               p.n == 0,
           "K = 1 is refused: %s", err);
    pty_close(&p);
    pty_start(&p, "--samples samples.jsonl --labels no/such/dir.jsonl --annotator ann");
    tap_ok(pty_wait(&p) == 1 && strstr(err, "cannot open 'no/such/dir.jsonl'") && p.n == 0,
           "labels that cannot be written: found before the screen opens: %s", err);
    pty_close(&p);
    tap_write_file("bad-labels.jsonl", "{\"id\":\"a\",\"annotator\":\"x\",\"ranking\":[0,0]}\n");
    pty_start(&p, "--samples samples.jsonl --labels bad-labels.jsonl --annotator ann");
    tap_ok(pty_wait(&p) == 1 && strstr(err, "bad-labels.jsonl:1: field 'prompt'") && p.n == 0,
           "a labels file the preference loader rejects is refused with its message: %s", err);
    pty_close(&p);
}

static void test_session(void)
{
    struct tap_pty p;
    remove("labels.jsonl");
    pty_start(&p, LABEL_ARGS);
    tap_ok(tap_pty_pump(&p, "done 0/3", 10000), "the screen shows the progress");
    tap_ok(tap_pty_pump(&p, "q quit", 10000) && strstr(p.screen, "What is the capital of Lorvia?") &&
               strstr(p.screen, "Mervan, on the river Ost."),
           "the prompt and the completions");
    pty_send(&p, "42t1\r");
    tap_ok(wait_lines(&p, "labels.jsonl", 1), "Enter appends the label");
    tap_read_into("labels.jsonl", out, sizeof out);
    tap_ok(strstr(out, "{\"id\":\"a\",\"annotator\":\"ann\",\"ranking\":[3,1,0,2],\"ties\":[[3,1]],"
                       "\"skipped\":false,") != NULL,
           "ranked best first, the tie recorded");
    tap_ok(tap_pty_pump(&p, "^[]0;pwned^Ghi", 10000) && tap_pty_pump(&p, "^[[31mred^[[0m hi", 10000),
           "the next item: escape sequences in completions are shown as ^[");
    tap_ok(!strstr(p.screen, "\x1b]0;") && !strstr(p.screen, "\x1b[31m") && !strchr(p.screen, '\a'),
           "and never reach the terminal");
    pty_send(&p, "s");
    tap_ok(wait_lines(&p, "labels.jsonl", 2), "s appends a skip");
    pty_send(&p, "u");
    tap_ok(wait_lines(&p, "labels.jsonl", 3), "u appends an undo");
    pty_send(&p, "q");
    tap_is_int(pty_wait(&p), 0, "q quits with status 0");
    tap_ok(pty_restored(&p), "the terminal is restored");
    tap_ok(strstr(err, "3 records written; ann has 1 of 3 items labelled") != NULL,
           "a summary on stderr: %s", err);
    pty_close(&p);
}

static void test_kill(void)
{
    struct tap_pty p;
    remove("labels.jsonl");
    pty_start(&p, LABEL_ARGS);
    tap_pty_pump(&p, "done 0/3", 10000);
    if (write(p.fd, "1234\r", 5) != 5)
        tap_diag("cannot write to the terminal");
    for (int i = 0; i < 10000 && count_lines("labels.jsonl") < 1; i++)
        sleep_ms(1);
    kill(p.pid, SIGKILL);
    tap_is_int(pty_wait(&p), 128 + SIGKILL, "killed with SIGKILL right after the submit");
    pty_close(&p);
    tap_read_into("labels.jsonl", out, sizeof out);
    tap_ok(strstr(out, "\"id\":\"a\",\"annotator\":\"ann\",\"ranking\":[0,1,2,3]") != NULL,
           "the label is on disk");
    pty_start(&p, LABEL_ARGS);
    tap_ok(tap_pty_pump(&p, "item b (2 of 3)", 10000) && strstr(p.screen, "done 1/3"),
           "the next start resumes after it");
    pty_send(&p, "\x03");
    tap_is_int(pty_wait(&p), 128 + SIGINT, "Ctrl-C ends the session");
    tap_ok(pty_restored(&p) && strstr(err, "(interrupted)"), "and gives the terminal back: %s",
           err);
    pty_close(&p);
    pty_start(&p, LABEL_ARGS);
    tap_pty_pump(&p, "done 1/3", 10000);
    kill(p.pid, SIGTERM);
    tap_ok(pty_wait(&p) == 128 + SIGTERM && pty_restored(&p), "so does SIGTERM");
    pty_close(&p);
    /* A crash mid-write leaves a cut-short line: cut off at the next start. */
    FILE *f = fopen("labels.jsonl", "a");
    fputs("{\"id\":\"b\",\"annot", f);
    fclose(f);
    pty_start(&p, LABEL_ARGS);
    tap_ok(tap_pty_pump(&p, "cut-short last line", 10000), "a cut-short last line is reported");
    pty_send(&p, "1234\r");
    wait_lines(&p, "labels.jsonl", 2);
    pty_send(&p, "q");
    pty_wait(&p);
    pty_close(&p);
    tap_read_into("labels.jsonl", out, sizeof out);
    tap_ok(!strstr(out, "annot{") && strstr(out, "\n{\"id\":\"b\",\"annotator\":\"ann\""),
           "and cut off before the next label");
    tap_ok(plumb("agree --labels labels.jsonl") == 1 && strstr(err, "1 annotator"),
           "agree with one annotator: %s", err);
}

static void test_agree(void)
{
    FILE *f = fopen("two.jsonl", "w");
    const char *rec = "{\"id\":\"%s\",\"annotator\":\"%s\",\"ranking\":%s,\"ties\":[],\"skipped\":"
                      "false,\"completions\":[\"x\",\"y\",\"z\"],\"prompt\":\"p\"}\n";
    fprintf(f, rec, "u1", "A", "[0,1,2]");
    fprintf(f, rec, "u1", "B", "[1,0,2]");
    fprintf(f, rec, "u2", "A", "[0,1,2]");
    fprintf(f, rec, "u2", "B", "[0,1,2]");
    fclose(f);
    tap_ok(plumb("agree --labels two.jsonl") == 0 && strstr(out, "A / B") && strstr(out, "overall"),
           "agree prints a row per pair and overall");
    /* u1: 2 of 3 pairs alike, tau 1/3; u2: 3 of 3, tau 1: 5/6 and 2/3. */
    tap_ok(plumb("agree --labels two.jsonl --json") == 0, "agree --json");
    cJSON *j = cJSON_Parse(out), *rows = cJSON_GetObjectItem(j, "rows");
    cJSON *r0 = cJSON_GetArrayItem(rows, 0);
    double a = cJSON_GetNumberValue(cJSON_GetObjectItem(r0, "agreement"));
    double t = cJSON_GetNumberValue(cJSON_GetObjectItem(r0, "kendall_tau_b"));
    tap_ok(cJSON_GetArraySize(rows) == 2 && a > 0.8333 && a < 0.8334 && t > 0.6666 && t < 0.6667,
           "agreement 5/6 and tau-b 2/3 (%g, %g)", a, t);
    cJSON_Delete(j);
    tap_ok(plumb("agree --labels missing.jsonl") == 1 && strstr(err, "missing.jsonl"),
           "a missing file: %s", err);
}

/* ---- the screen itself, through tmux ---- */

static char sock[64];

__attribute__((format(printf, 1, 2))) static int tmux(const char *fmt, ...)
{
    char args[4096], cmd[sizeof args + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "tmux -L %s %s >stdout.txt 2>stderr.txt", sock, args);
    int status = system(cmd);
    tap_read_into("stdout.txt", out, sizeof out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* capture-pane until the screen holds want (up to 10 s: the machine may be busy). */
static bool screen_has(const char *want)
{
    for (int i = 0; i < 200; i++) {
        if (tmux("capture-pane -p") == 0 && strstr(out, want))
            return true;
        sleep_ms(50);
    }
    tap_diag("screen without '%s':\n%s", want, out);
    return false;
}

static void test_tmux(void)
{
    if (system("tmux -V >/dev/null 2>&1") != 0) {
        tap_skip(6, "tmux is not installed");
        return;
    }
    snprintf(sock, sizeof sock, "plumb-test-%d", (int)getpid());
    remove("labels.jsonl");
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        cwd[0] = '\0';
    tmux("new-session -d -x 80 -y 24 -c %s 'TERM=xterm %s label " LABEL_ARGS
         " --guidelines samples.jsonl; sleep 60'",
         cwd, bin);
    /* The ranking line is drawn after the completions: once it is there, the screen is whole. */
    tap_ok(screen_has("ranking: _ > _ > _ > _") && strstr(out, "(1 of 3)") &&
               strstr(out, "done 0/3 [............] skipped 0") && strstr(out, "Prompt:") &&
               strstr(out, "[4]"),
           "80x24: title, progress, prompt, completions, ranking");
    tmux("send-keys 2 1 t");
    tap_ok(screen_has("ranking: 2 = 1 > _ > _") && strstr(out, "[1]─#1="),
           "the partial ranking and each completion's place");
    tmux("resize-window -x 120 -y 30");
    tap_ok(screen_has("h/x flag  g guide  ? help  q quit"), "resized live: the long legend");
    tmux("send-keys ?");
    tap_ok(screen_has("tie the last two placed"), "? shows the keys");
    tmux("send-keys Escape g");
    tap_ok(screen_has("guidelines"), "g shows the guidelines");
    tmux("send-keys Escape 3 Enter");
    tap_ok(screen_has("done 1/3") && count_lines("labels.jsonl") == 1, "submitted from tmux");
    tmux("kill-server");
}

int main(void)
{
    bin = tap_plumb_bin();
    if (access("/lib/terminfo/x/xterm", R_OK) != 0 && access("/usr/share/terminfo/x/xterm", R_OK))
        tap_skip_all("no xterm terminfo (Debian's ncurses-base)");
    char dir[] = "/tmp/plumb-cmd-tui-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0)
        tap_skip_all("cannot make a temporary folder");
    write_samples();
    test_usage();
    test_bad_input();
    test_session();
    test_kill();
    test_agree();
    test_tmux();
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (chdir("/") == 0 && system(rm) != 0)
        tap_diag("cannot remove %s", dir);
    return tap_done();
}
