/* trainer-dist: data-parallel training (trainer/dist.h) under `mpirun -np 2 --oversubscribe` on
 * loopback, with the MPI build that $PLUMB_MPI_BIN names (make test-mpi): pretrain, sft, rm train
 * and ppo at 2 ranks x batch B give the loss curve of one process at batch 2B; ranks that start
 * from different weights stop at once; a rank killed mid-run makes the job exit non-zero within
 * seconds, and the last checkpoint loads and resumes. Skipped without the MPI build or mpirun. */
#include "model/io.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *bin;
static char out[1 << 16], err[1 << 16];

/* Shared memory without single-copy (CMA needs ptrace rights that containers often lack). */
#define MPIRUN                                                                                     \
    "mpirun --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none"

/* Run "BIN ARGS" as one process (ranks 1) or under mpirun with `ranks` ranks; exit status. */
__attribute__((format(printf, 2, 3))) static int run(int ranks, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (ranks > 1)
        snprintf(cmd, sizeof cmd, MPIRUN " -np %d %s %s", ranks, bin, args);
    else
        snprintf(cmd, sizeof cmd, "%s %s", bin, args);
    return tap_shell(cmd, out, sizeof out, err, sizeof err);
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void check(bool pass, const char *what)
{
    if (!tap_ok(pass, "%s", what))
        tap_diag("stdout: %s\nstderr: %s", out, err);
}

/* Every value named in keys of every line of a's metrics.jsonl, against b's: the same lines,
 * each value within 1e-3 relative; *n counts the values compared. */
static bool same_curves(const char *a, const char *b, const char *const *keys, int n_keys, int *n)
{
    static char ta[1 << 17], tb[1 << 17];
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", b);
    tap_read_into(pa, ta, sizeof ta);
    tap_read_into(pb, tb, sizeof tb);
    bool same = ta[0] != '\0';
    *n = 0;
    for (char *la = ta, *lb = tb; same && *la;
         la = strchr(la, '\n') + 1, lb = strchr(lb, '\n') + 1) {
        cJSON *ja = cJSON_Parse(la), *jb = *lb ? cJSON_Parse(lb) : NULL;
        same = ja && jb;
        for (int k = 0; same && k < n_keys; k++) {
            cJSON *va = cJSON_GetObjectItem(ja, keys[k]), *vb = cJSON_GetObjectItem(jb, keys[k]);
            if (!va && !vb)
                continue;
            same = cJSON_IsNumber(va) && cJSON_IsNumber(vb);
            double x = same ? va->valuedouble : 0, y = same ? vb->valuedouble : 0;
            if (same && !(fabs(x - y) <= 1e-3 * fmax(fabs(x), fabs(y)) + 1e-7)) {
                tap_diag("%s: %s %.9g vs %.9g", keys[k], la, x, y);
                same = false;
            }
            (*n)++;
        }
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        if (!strchr(la, '\n') || !strchr(lb, '\n'))
            break;
    }
    return same && *n > 0;
}

static void make_data(void)
{
    static char text[1 << 15], sft[1 << 15], pairs[1 << 15], prompts[4096];
    size_t nt = 0, ns = 0, np = 0, nq = 0;
    const char *places[] = {"Avel", "Borin", "Cadra", "Dunmo", "Evrit", "Falka", "Gorum", "Hesta"};
    for (int i = 0; i < 64; i++) {
        const char *p = places[i % 8], *q = places[(i * 3 + 1) % 8];
        nt += (size_t)snprintf(text + nt, sizeof text - nt,
                               "The river of %s runs to %s. People of %s trade with %s.\n%s", p, q,
                               q, p, i % 4 == 3 ? "\n" : "");
        ns += (size_t)snprintf(sft + ns, sizeof sft - ns,
                               "{\"prompt\": \"Q: where does the river of %s run?\\nA:\", "
                               "\"response\": \" to %s.\"}\n",
                               p, q);
        np += (size_t)snprintf(pairs + np, sizeof pairs - np,
                               "{\"prompt\": \"Q: %s?\\nA:\", \"chosen\": \" to %s.\", "
                               "\"rejected\": \" no idea %d\"}\n",
                               p, q, i);
        if (i < 16)
            nq += (size_t)snprintf(prompts + nq, sizeof prompts - nq,
                                   "{\"id\": \"p%d\", \"prompt\": \"Q: where does the river of "
                                   "%s run?\\nA:\"}\n",
                                   i, places[i % 8]);
    }
    tap_write_file("text.txt", text);
    tap_write_file("sft.jsonl", sft);
    tap_write_file("pairs.jsonl", pairs);
    tap_write_file("prompts.jsonl", prompts);
}

static const char *const lm_keys[] = {"train/loss", "grad_norm", "eval/loss"};

static void test_lm(void)
{
    const char *opts = "--seq 48 --steps 8 --eval-every 4 --save-every 4 --lr 3e-3 --warmup 2 "
                       "--threads 1";
    int n = 0;
    int rc = run(1, "pretrain --model m0 --data text.txt --batch 4 %s --out pt1", opts);
    check(rc == 0, "pretrain: one process at batch 4");
    rc = run(2, "pretrain --model m0 --data text.txt --batch 2 %s --out pt2", opts);
    check(rc == 0, "pretrain: 2 ranks at batch 2");
    bool same = same_curves("pt1", "pt2", lm_keys, 3, &n);
    tap_ok(same, "pretrain: the 2-rank loss curve is one process's at twice the batch (%d values)",
           n);
    static char runjson[8192];
    tap_read_into("pt2/run.json", runjson, sizeof runjson);
    check(strstr(runjson, "\"ranks\": 2") && strstr(out, "pt2: step 8") &&
              !strstr(strstr(out, "pt2: step 8") + 1, "pt2: step 8"),
          "pretrain: run.json records 2 ranks; the result is printed once (rank 0)");

    rc = run(1, "sft --model pt1 --data sft.jsonl --batch 4 %s --out sft1", opts);
    check(rc == 0, "sft: one process at batch 4");
    rc = run(2, "sft --model pt1 --data sft.jsonl --batch 2 %s --out sft2", opts);
    check(rc == 0, "sft: 2 ranks at batch 2");
    same = same_curves("sft1", "sft2", lm_keys, 3, &n);
    tap_ok(same, "sft: the 2-rank loss curve is one process's at twice the batch (%d values)", n);

    rc = run(2, "sft --model pt1 --data sft.jsonl --batch 2 %s --out sft2 --resume", opts);
    check(rc == 0, "sft: 2 ranks resume a finished run");
    rc = run(1, "sft --model pt1 --data sft.jsonl --batch 2 %s --steps 10 --out sft2 --resume",
             opts);
    check(rc == 1 && strstr(err, "option 'ranks' was 2 there and is 1 now"),
          "sft: one process refuses to resume a 2-rank run");
}

static void test_rm(void)
{
    const char *const keys[] = {"train/loss", "rm/accuracy", "rm/margin",
                                "grad_norm",  "eval/loss",   "eval/accuracy"};
    const char *opts = "--steps 6 --eval-every 3 --lr 3e-3 --warmup 2 --threads 1";
    int n = 0;
    int rc = run(1, "rm train --model sft1 --data pairs.jsonl --batch 4 %s --out rm1", opts);
    check(rc == 0, "rm train: one process at batch 4");
    rc = run(2, "rm train --model sft1 --data pairs.jsonl --batch 2 %s --out rm2", opts);
    check(rc == 0, "rm train: 2 ranks at batch 2");
    bool same = same_curves("rm1", "rm2", keys, 6, &n);
    tap_ok(same, "rm train: the 2-rank curves are one process's at twice the batch (%d values)", n);
}

static void test_ppo(void)
{
    const char *const keys[] = {"train/loss",       "policy/grad_norm", "value/grad_norm",
                                "objective/scores", "objective/kl",     "loss/policy",
                                "loss/value",       "policy/approxkl",  "eval/reward"};
    const char *opts = "--policy sft1 --reward rm1 --prompts prompts.jsonl --eval-prompts "
                       "prompts.jsonl --eval-every 2 --iterations 3 --ppo-epochs 2 "
                       "--max-new-tokens 8 --lr 1e-3 --value-lr 1e-3 --threads 1";
    int n = 0;
    int rc = run(1, "ppo %s --batch 4 --minibatch 4 --out ppo1", opts);
    check(rc == 0, "ppo: one process at batch 4");
    rc = run(2, "ppo %s --batch 2 --minibatch 2 --out ppo2", opts);
    check(rc == 0, "ppo: 2 ranks at batch 2");
    bool same = same_curves("ppo1", "ppo2", keys, 9, &n);
    tap_ok(same,
           "ppo: the 2-rank curves (global whitening, KL, guard) are one process's (%d values)", n);
}

/* Two ranks that start from different weights: the weight check stops them before a step. */
static void test_diverged(void)
{
    const char *opts = "--data text.txt --batch 2 --seq 48 --steps 4 --threads 1";
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             MPIRUN " -np 1 %s pretrain --model m0 %s --out dv : -np 1 %s pretrain --model m1 %s "
                    "--out dv",
             bin, opts, bin, opts);
    int rc = tap_shell(cmd, out, sizeof out, err, sizeof err);
    struct stat st;
    check(rc != 0 && strstr(err, "step 0: the weights differ across ranks") &&
              stat("dv/metrics.jsonl", &st) != 0,
          "ranks holding different weights stop at the start with a clear error, leaving no run");
}

/* Commands that are not data-parallel refuse to run once per rank. */
static void test_refusals(void)
{
    int rc = run(2, "rm eval --model rm1 --data pairs.jsonl");
    check(rc != 0 && strstr(err, "plumb rm eval: runs as one process, not under mpirun"),
          "rm eval under mpirun: refused");
    rc = run(2, "bench --threads 1");
    check(rc != 0 && strstr(err, "under mpirun it takes --mpi"), "bench under mpirun needs --mpi");
}

static void test_bench(void)
{
    int rc = run(2, "bench --mpi --threads 1 --steps 1 --batch 2 --seq 16 --config "
                    "'{\"n_layer\":2,\"n_embd\":32,\"n_head\":2,\"vocab_size\":257,"
                    "\"n_positions\":64}'");
    check(rc == 0 && strstr(out, "1 rank: ") && strstr(out, "2 ranks: ") &&
              strstr(out, "scaling efficiency") && strstr(out, "(0.04M parameters): 0.1 MB a step"),
          "bench --mpi: both rates, the efficiency and the bytes a step");
}

/* The pid of the child of `parent` that is MPI rank `rank`; -1 when there is none yet. */
static pid_t rank_pid(pid_t parent, int rank)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = -1;
    char want[64];
    snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
    while (d && found < 0 && (e = readdir(d))) {
        char path[300], buf[1 << 15];
        int pid = atoi(e->d_name), ppid = 0;
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool ok = fscanf(f, "%*d (%*[^)]) %*c %d", &ppid) == 1 && ppid == parent;
        fclose(f);
        snprintf(path, sizeof path, "/proc/%d/environ", pid);
        f = ok ? fopen(path, "r") : NULL;
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = '\0';
            if (strcmp(buf + i, want) == 0)
                found = pid;
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* A long 2-rank run checkpointing every 5 steps; once a checkpoint exists, rank 1 is killed. */
static void test_kill(void)
{
    pid_t job = fork();
    if (job == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "exec " MPIRUN " -np 2 %s pretrain --model m0 --data text.txt --batch 2 --seq 48 "
                 "--steps 1000000 --save-every 5 --eval-every 0 --threads 1 --out kill "
                 ">kill.out 2>kill.err",
                 bin);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    struct stat st;
    pid_t victim = -1;
    for (int i = 0; i < 600 && victim < 0; i++) {
        nap(50);
        if (stat("kill/state.safetensors", &st) == 0)
            victim = rank_pid(job, 1);
    }
    bool killed = victim > 0 && kill(victim, SIGKILL) == 0;
    double t0 = pl_now();
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid(job, &status, WNOHANG)) == 0 && pl_now() - t0 < 20.0)
        nap(20);
    double took = pl_now() - t0;
    if (done == 0) {
        kill(job, SIGKILL);
        waitpid(job, &status, 0);
    }
    tap_read_into("kill.err", err, sizeof err);
    out[0] = '\0';
    check(killed && done == job && took < 10.0 &&
              !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && strstr(err, "signal 9"),
          "a rank killed mid-run: the job exits non-zero within seconds, naming the dead rank");
    tap_diag("the job ended %.2f s after the kill", took);
    size_t n = 0;
    float *p = tap_load_params("kill", &n);
    tap_ok(p && n > 0, "the last checkpoint's model loads (%zu parameters)", n);
    pl_free(p);
    char steps[64] = "";
    tap_read_into("kill/metrics.jsonl", err, sizeof err);
    long last = 0;
    for (char *s = err; (s = strstr(s, "\"step\": ")); s++)
        last = atol(s + 8);
    snprintf(steps, sizeof steps, "%ld", last + 3);
    int rc = run(2,
                 "pretrain --model m0 --data text.txt --batch 2 --seq 48 --save-every 5 "
                 "--eval-every 0 --threads 1 --out kill --resume --steps %s",
                 steps);
    check(rc == 0 && strstr(err, "resuming from step"), "2 ranks resume from that checkpoint");
}

int main(void)
{
    bin = getenv("PLUMB_MPI_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        tap_skip_all("no MPI build (PLUMB_MPI_BIN; make test-mpi builds one)");
        return 0;
    }
    if (tap_system("command -v mpirun >/dev/null 2>&1") != 0) {
        tap_skip_all("mpirun is not installed (openmpi-bin)");
        return 0;
    }
    /* The tests run in a temporary folder. */
    char abs[4096], cwd[2048];
    if (bin[0] != '/' && getcwd(cwd, sizeof cwd)) {
        snprintf(abs, sizeof abs, "%s/%s", cwd, bin);
        bin = abs;
    }
    /* Tests run as root in containers; one thread a rank, as the README asks. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    setenv("PLUMB_THREADS", "1", 1);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    const char *tmp = tap_tmpdir("trainer-dist");
    if (chdir(tmp) != 0) {
        tap_skip_all("cannot enter the temporary folder");
        return 0;
    }
    make_data();
    const char *cfg = "'{\"n_layer\":2,\"n_embd\":32,\"n_head\":2,\"vocab_size\":257,"
                      "\"n_positions\":64}'";
    int rc = run(1, "init --config %s --out m0", cfg);
    if (rc == 0)
        rc = run(1, "init --config %s --out m1 --seed 7", cfg);
    check(rc == 0, "two tiny models");
    test_lm();
    test_rm();
    test_ppo();
    test_diverged();
    test_refusals();
    test_bench();
    test_kill();
    char rm[4200];
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmp);
    if (chdir("/") != 0 || tap_system(rm) != 0)
        tap_diag("cannot remove %s", tmp);
    return tap_done();
}
