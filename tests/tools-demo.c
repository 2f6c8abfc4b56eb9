/* tools/demo.mk as a pipeline: with every stage's output in place (make -t), nothing is redone,
 * and deleting one stage's output redoes that stage and what depends on it, and nothing else.
 * Runs make on a temporary demo folder (D=...) without running any plumb command. */
#include "tests/fixture.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char plan[1 << 16];

/* make's plan (-n) for the demo in folder d, into plan; the exit status. */
static int make_plan(const char *d)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "make -n -f tools/demo.mk D=%s PLUMB=plumb >%s 2>&1", d,
             tap_tmp("plan.txt"));
    int rc = system(cmd);
    tap_read_into(tap_tmp("plan.txt"), plan, sizeof plan);
    return rc;
}

static bool plans(const char *what)
{
    return strstr(plan, what) != NULL;
}

int main(void)
{
    tap_tmpdir("demo-mk");
    if (system("command -v make >/dev/null 2>&1") != 0 || access("tools/demo.mk", R_OK) != 0)
        tap_skip_all("needs make and tools/demo.mk (run from the repository)");
    static const char *const dirs[] = {
        "demo",      "demo/world", "demo/init",    "demo/base",     "demo/sft",
        "demo/parts", "demo/rm",   "demo/rm/model", "demo/ppo",      "demo/eval",
        "demo/critique", "demo/critique/sft", "demo/report"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        mkdir(tap_tmp(dirs[i]), 0777);
    char d[600], cmd[1024];
    snprintf(d, sizeof d, "%s", tap_tmp("demo"));
    snprintf(cmd, sizeof cmd, "make -s -t -f tools/demo.mk D=%s PLUMB=plumb >/dev/null 2>&1", d);
    tap_is_int(system(cmd), 0, "every stage's output made (make -t)");

    make_plan(d);
    tap_ok(!plans("plumb "), "then nothing is redone");

    char path[700];
    snprintf(path, sizeof path, "%s/rm/eval.json", d);
    unlink(path);
    tap_is_int(make_plan(d), 0, "make plans after the reward model's evaluation is deleted");
    tap_ok(plans("plumb rm eval") && plans("demo_rm.pl") && plans("demo_summary.pl") &&
               plans("plumb report"),
           "it redoes that evaluation, its figures, the summary and the report");
    tap_ok(!plans("plumb pretrain") && !plans("plumb sft") && !plans("plumb rm train") &&
               !plans("plumb ppo") && !plans("plumb critique") && !plans("plumb bon"),
           "and no training, best-of-n or critique stage");

    snprintf(cmd, sizeof cmd, "make -s -t -f tools/demo.mk D=%s PLUMB=plumb >/dev/null 2>&1", d);
    tap_is_int(system(cmd), 0, "make -t puts the evaluation back");
    snprintf(path, sizeof path, "%s/ppo/.done", d);
    unlink(path);
    make_plan(d);
    tap_ok(plans("plumb ppo") && plans("eval world --model") && plans("demo_ppo.pl") &&
               plans("plumb report"),
           "deleting PPO's output redoes PPO, its evaluations and figures, the report");
    tap_ok(!plans("plumb pretrain") && !plans("plumb rm train") && !plans("plumb critique") &&
               !plans("plumb sample --model"),
           "and none of the stages before it or beside it");
    return tap_done();
}
