#include "label.h"

#include "args.h"

#include "datasets/sim.h"
#include "model/io.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct simlabel_args {
    const char *samples, *world, *out, *prompts, *annotators;
    uint64_t seed;
    bool truth, force;
};

/* A label of the world's simulated annotators (or "truth"): a labels file holding anyone else's
 * is a person's work, and labels are only ever appended to. */
static bool simulated_label(const cJSON *v, const void *ctx)
{
    const cJSON *who = cJSON_GetObjectItemCaseSensitive(v, "annotator");
    return cJSON_IsString(who) && cJSON_HasObjectItem(v, "ranking") &&
           (strcmp(who->valuestring, "truth") == 0 || ds_sim_find(ctx, who->valuestring) >= 0);
}

static const char *simlabel_check(void *ctx)
{
    const struct simlabel_args *a = ctx;
    return a->truth && a->annotators ? "--truth and --annotators exclude each other" : NULL;
}

/* --annotators a,b as indices into s's annotators, in *idx (the caller frees it). */
static int pick_annotators(const struct ds_sim *s, const char *list, int **idx, int *n,
                           struct pl_err *err)
{
    char *copy = pl_strdup(list);
    *idx = pl_malloc((strlen(list) / 2 + 1) * sizeof **idx);
    *n = 0;
    int rc = copy && *idx ? PL_OK : pl_oom(err, "annotator names");
    for (char *name = copy, *next; rc == PL_OK && name; name = next) {
        next = strchr(name, ',');
        if (next)
            *next++ = '\0';
        int i = ds_sim_find(s, name);
        if (i < 0)
            rc = pl_errf(err, PL_EUSAGE, "option '--annotators': no annotator '%s' in '%s'", name,
                         s->rules_path);
        else
            (*idx)[(*n)++] = i;
    }
    pl_free(copy);
    return rc;
}

int cmd_simlabel(int argc, char **argv)
{
    struct simlabel_args a = {.seed = 1};
    const struct cmd_opt opts[] = {
        {"--samples", CMD_STR, &a.samples, 0, 0, "FILE",
         "completions to rank: {\"id\", \"prompt\", \"completions\"} a line (plumb sample)", true},
        {"--world", CMD_STR, &a.world, 0, 0, "DIR",
         "the toy world: annotators.json, world.json, prompts.jsonl", true},
        {"--out", CMD_STR, &a.out, 0, 0, "FILE", "labels to write (whole or not at all)", true},
        {"--seed", CMD_U64, &a.seed, 0, 0, "N", "seed of the annotators' noise (1)", false},
        {"--truth", CMD_FLAG, &a.truth, 0, 0, NULL,
         "write the noise-free ranking under annotator \"truth\" instead", false},
        {"--annotators", CMD_STR, &a.annotators, 0, 0, "A,B",
         "only these annotators of annotators.json (all)", false},
        {"--prompts", CMD_STR, &a.prompts, 0, 0, "FILE",
         "prompts with their kind, place and attribute (DIR/prompts.jsonl)", false},
        {"--force", CMD_FLAG, &a.force, 0, 0, NULL,
         "replace an --out file that holds other labels than the simulated annotators'", false},
    };
    const struct cmd_spec spec = {
        .name = "simlabel",
        .summary = "rank completions as the toy world's simulated annotators would",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
        .check = simlabel_check,
        .ctx = &a,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    struct pl_err err = {0};
    struct ds_sim s;
    rc = ds_sim_init(&s, a.world, a.prompts, &err);
    if (rc) {
        ds_sim_release(&s);
        return cmd_fail(&err, rc);
    }
    const char *inputs[] = {a.samples, s.prompts_path, s.rules_path, s.world_path};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        if (io_same_file(inputs[i], a.out)) {
            ds_sim_release(&s);
            return cmd_usage(&spec, "--out '%s' is an input; write the labels elsewhere", a.out);
        }
    }
    if (!cmd_may_replace(&spec, a.out, a.force, simulated_label, &s)) {
        ds_sim_release(&s);
        return 1;
    }
    struct ds_sim_opts o = {.truth = a.truth, .seed = a.seed};
    int *chosen = NULL;
    if (a.annotators)
        rc = pick_annotators(&s, a.annotators, &chosen, &o.n_annotators, &err);
    o.annotators = chosen;
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    o.time = now;
    struct io_out out = {0};
    long n_labels = 0;
    if (!rc)
        rc = io_out_open(&out, a.out, &err);
    if (!rc)
        rc = ds_sim_label_file(&s, a.samples, &o, out.f, &n_labels, &err);
    if (!rc)
        rc = io_out_commit(&out, &err);
    io_out_abort(&out);
    int who = a.truth ? 1 : a.annotators ? o.n_annotators : s.n_annotators;
    ds_sim_release(&s);
    pl_free(chosen);
    if (rc == PL_EUSAGE)
        return cmd_usage(&spec, "%s", err.msg);
    if (rc)
        return cmd_fail(&err, rc);
    printf("%s: %ld labels, %d annotator%s\n", a.out, n_labels, who, who == 1 ? "" : "s");
    return 0;
}
