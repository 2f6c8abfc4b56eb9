#include "train.h"

#include "args.h"

#include "trainer/lm.h"

#include <math.h>
#include <stdio.h>

/* The options of both commands; SFT adds the mixed-in corpus. */
static int train_command(const char *name, enum lm_kind kind, int argc, char **argv)
{
    struct lm_opts o;
    lm_opts_default(&o);
    o.kind = kind;
    o.train.version = CMD_VERSION;
    o.train.log = stderr;
    struct cmd_engine e = {0};
    const bool sft = kind == LM_SFT;
    const struct cmd_opt opts[] = {
        {"--model", CMD_STR, &o.model, 0, 0, "DIR", "starting model folder", true},
        {"--data", CMD_STR, &o.data, 0, 0, "FILE",
         sft ? "{\"prompt\", \"response\"} examples (JSONL or CSV)" : "plain text", true},
        {"--epochs", CMD_REAL, &o.epochs, 1e-6, 1e6, "X",
         "passes over the data when --steps is not given (1)", false},
        {"--batch", CMD_INT, &o.batch, 1, 1 << 16, "N", "rows per micro-batch (16)", false},
        {"--seq", CMD_INT, &o.seq, 1, 1 << 20, "N", "tokens per row (the model's context)", false},
        {"--eval-data", CMD_STR, &o.eval_data, 0, 0, "FILE", "held-out set in --data's format",
         false},
        {"--eval-frac", CMD_REAL, &o.eval_frac, 0, 0.99, "X",
         "share of --data held out without --eval-data (0.05)", false},
        {"--eval-every", CMD_LONG, &o.train.eval_every, 0, 1e12, "N",
         "held-out loss every N steps, 0: never (100)", false},
        {"--eval-rows", CMD_INT, &o.eval_rows, 1, 1 << 24, "N", "most held-out rows (256)", false},
        {"--seed", CMD_U64, &o.seed, 0, 0, "N", "data order (1337)", false},
        {"--skip-bad-lines", CMD_FLAG, &o.skip_bad_lines, 0, 0, NULL,
         "skip and count malformed records", false},
        CMD_RUN_OPTS(&o.train),
        CMD_OPTIM_OPTS(&o.optim),
        CMD_ENGINE_OPTS(&e),
        {"--mix-corpus", CMD_STR, &o.mix_corpus, 0, 0, "FILE", "plain text mixed into the batches",
         false},
        {"--mix-frac", CMD_REAL, &o.mix_frac, 1e-6, 1 - 1e-6, "X",
         "share of rows taken from --mix-corpus (0.25)", false},
    };
    const int n_opts = (int)(sizeof opts / sizeof *opts) - (sft ? 0 : 2);
    const struct cmd_spec spec = {
        name,
        sft ? "fine-tune a model on prompt/response pairs, loss on the responses"
            : "train a model on plain text",
        opts,
        n_opts,
        NULL,
        NULL};
    int rc = cmd_parse(&spec, argc, argv);
    if (rc != CMD_PARSED)
        return rc;
    if ((rc = cmd_engine_start(&e)))
        return rc;
    struct pl_err err = {0};
    struct lm_result res;
    rc = lm_run(&o, &res, &err);
    if (rc)
        return cmd_fail(&err, rc);
    const struct train_result *t = &res.train;
    if (isnan(t->eval_last))
        printf("%s: step %ld, %.1f s\n", o.train.out, t->steps, t->seconds);
    else
        printf("%s: step %ld, held-out loss %.4f -> %.4f, %.1f s\n", o.train.out, t->steps,
               t->eval_first, t->eval_last, t->seconds);
    return 0;
}

int cmd_pretrain(int argc, char **argv)
{
    return train_command("pretrain", LM_PRETRAIN, argc, argv);
}

int cmd_sft(int argc, char **argv)
{
    return train_command("sft", LM_SFT, argc, argv);
}
