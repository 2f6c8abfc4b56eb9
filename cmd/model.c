#include "model.h"

#include "args.h"

#include "datasets/world.h"
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Whether dir/name exists (as anything). */
static int dir_has(const char *dir, const char *name, bool *has, struct pl_err *err)
{
    char *path = io_path_join(dir, name);
    if (!path)
        return pl_oom(err, "file name");
    *has = access(path, F_OK) == 0;
    pl_free(path);
    return PL_OK;
}

/* ---- plumb world ---- */

int cmd_world(int argc, char **argv)
{
    const char *out = NULL;
    uint64_t seed = 1;
    bool force = false;
    const struct cmd_opt opts[] = {
        {"--out", CMD_STR, &out, 0, 0, "DIR", "folder to write (created if missing)", true},
        {"--seed", CMD_U64, &seed, 0, 0, "N", "the world's seed (1); same seed, same bytes", false},
        {"--force", CMD_FLAG, &force, 0, 0, NULL,
         "write into a non-empty folder that holds no world", false},
    };
    const struct cmd_spec spec = {
        .name = "world",
        .summary = "write the toy world's datasets",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    struct pl_err err = {0};
    bool empty, world = false;
    rc = io_dir_empty(out, &empty, &err);
    if (!rc && !empty)
        rc = dir_has(out, "world.json", &world, &err);
    /* A world over a world replaces the same files; over anything else it would mix in. */
    if (!rc && !empty && !world && !force)
        rc = pl_errf(&err, PL_EINVAL,
                     "'%s' is not empty and holds no world.json; choose another folder or pass "
                     "--force",
                     out);
    if (!rc)
        rc = ds_world_write(out, seed, &err);
    if (rc)
        return cmd_fail(&err, rc);
    printf("%s: toy world, seed %" PRIu64 "\n", out, seed);
    return 0;
}

/* ---- plumb init ---- */

/* What a training run leaves beside the weights: kept, they would make a later --resume continue
 * the old model's optimizer state and log on the new weights. */
static const char *const run_files[] = {"state.safetensors", "metrics.jsonl", "run.json"};

static int remove_run_files(const char *dir, struct pl_err *err)
{
    for (size_t i = 0; i < sizeof run_files / sizeof *run_files; i++) {
        char *path = io_path_join(dir, run_files[i]);
        if (!path)
            return pl_oom(err, "file name");
        int rc = unlink(path) != 0 && errno != ENOENT
                     ? pl_errf(err, PL_EIO, "cannot remove '%s': %s", path, strerror(errno))
                     : PL_OK;
        pl_free(path);
        if (rc)
            return rc;
    }
    return PL_OK;
}

int cmd_init(int argc, char **argv)
{
    const char *config = NULL, *out = NULL;
    uint64_t seed = 1337;
    bool score_head = false, force = false;
    const struct cmd_opt opts[] = {
        {"--config", CMD_STR, &config, 0, 0, "JSON",
         "the shape in config.json's fields, e.g. '{\"n_layer\":2,\"n_embd\":128,\"n_head\":4,"
         "\"vocab_size\":257,\"n_positions\":128}'",
         true},
        {"--out", CMD_STR, &out, 0, 0, "DIR", "model folder to write (created if missing)", true},
        {"--seed", CMD_U64, &seed, 0, 0, "N", "seed of the random weights (1337)", false},
        {"--score-head", CMD_FLAG, &score_head, 0, 0, NULL,
         "add a scalar head (score.weight) for a reward or value model", false},
        {"--force", CMD_FLAG, &force, 0, 0, NULL,
         "write into a non-empty folder, removing an older run's training state", false},
    };
    const struct cmd_spec spec = {
        .name = "init",
        .summary = "write a randomly initialised model (GPT-2 init)",
        .opts = opts,
        .n_opts = sizeof opts / sizeof *opts,
    };
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    struct pl_err err = {0};
    struct gpt_config cfg;
    rc = ckpt_config_parse(config, "--config", &cfg, &err);
    if (rc && rc != PL_ENOMEM)
        return cmd_usage(&spec, "%s", err.msg);
    bool empty = true;
    if (!rc)
        rc = io_dir_empty(out, &empty, &err);
    if (!rc && !empty && !force)
        rc = pl_errf(&err, PL_EINVAL,
                     "'%s' is not empty; choose another folder, or pass --force to replace the "
                     "model there and remove its training state",
                     out);
    if (rc)
        return cmd_fail(&err, rc);
    struct gpt_opts go = {.score_head = score_head, .max_batch = 1, .max_seq = 1};
    struct gpt m;
    rc = gpt_init(&m, &cfg, &go, &err);
    size_t n_params = m.n_params;
    if (!rc && !empty)
        rc = remove_run_files(out, &err);
    if (!rc) {
        gpt_init_weights(&m, seed);
        rc = ckpt_save(&m, out, &err);
    }
    gpt_release(&m);
    if (rc)
        return cmd_fail(&err, rc);
    printf("%s: %zu parameters\n", out, n_params);
    return 0;
}
