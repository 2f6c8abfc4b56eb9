/* rlhf-critique: revision acceptance, the A/B preference from log-probs (by hand, both orders,
 * clamped), the same through the KV cache against a full forward of each question, the soft-label
 * loss and its gradient by finite differences, and the SL stage on a tiny model: its traces are
 * complete, their rules are checked, and a prompt's trace does not depend on the batch. */
#include "rlhf/critique.h"

#include "model/ckpt.h"
#include "model/score.h"
#include "model/tensor.h"
#include "reward/rm.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void test_accept(void)
{
    tap_is_int(critique_accept(2, 1, false, false, 0, 0, false), CRITIQUE_KEPT_RULES,
               "fewer rules broken: kept, for the rules");
    tap_is_int(critique_accept(1, 1, false, false, 0, 0, false), CRITIQUE_REJECTED,
               "as many rules broken, no ties: rejected");
    tap_is_int(critique_accept(1, 1, false, false, 0, 0, true), CRITIQUE_KEPT_CRITIQUE,
               "as many rules broken, ties: kept, for the critique");
    tap_is_int(critique_accept(0, 1, false, false, 0, 0, true), CRITIQUE_REJECTED,
               "more rules broken: rejected even with ties");
    tap_is_int(critique_accept(2, 1, true, false, 0, 0, true), CRITIQUE_REJECTED,
               "the same text: rejected");
    tap_is_int(critique_accept(2, 1, false, true, 0.5, 0.4, false), CRITIQUE_REJECTED,
               "fewer rules but a lower reward: rejected");
    tap_is_int(critique_accept(2, 1, false, true, 0.5, 0.5, false), CRITIQUE_KEPT_RULES,
               "fewer rules and the same reward: kept");
    tap_is_int(critique_accept(1, 1, false, true, 0.5, 0.7, true), CRITIQUE_KEPT_CRITIQUE,
               "a tie with a higher reward: kept");
    tap_is_int(critique_accept(1, 1, false, true, 0.5, NAN, true), CRITIQUE_REJECTED,
               "a NaN reward: rejected");
}

static void test_preference(void)
{
    tap_is_float(critique_choice(-1, -2), 1 / (1 + exp(-1.0)), 1e-12, "p(A) = sigmoid(la - lb)");
    tap_is_float(critique_choice(-800, -1), 0, 1e-300, "a far less likely A: 0, no overflow");
    tap_is_float(critique_choice(-1, -800), 1, 1e-15, "a far more likely A: 1");
    /* One principle. x as A: (A) -1, (B) -2, so x wins with 0.7311; y as A: (A) -0.5, (B) -1.5,
     * so x (now B) wins with 0.2689: a model that always prefers A has no preference. */
    double lp[8] = {-1, -2, -0.5, -1.5, -3, -1, -2, -0.25};
    double p1 = 1 / (1 + exp(-1.0)), p2 = 1 / (1 + exp(1.0));
    tap_is_float(critique_preference(lp, 1, 0, 1), (p1 + p2) / 2, 1e-12,
                 "a position bias cancels over both orders: %.4f", (p1 + p2) / 2);
    /* Second principle: x as A loses (0.1192), x as B wins (0.8520). */
    double q1 = 1 / (1 + exp(2.0)), q2 = 1 / (1 + exp(-1.75));
    tap_is_float(critique_preference(lp, 2, 0, 1), (p1 + p2 + q1 + q2) / 4, 1e-12,
                 "averaged over two principles and both orders: %.4f", (p1 + p2 + q1 + q2) / 4);
    tap_is_float(critique_preference(lp, 2, 0.4, 0.6), (0.6 + 0.4 + 0.4 + 0.6) / 4, 1e-12,
                 "each probability clamped to [0.4, 0.6] before the mean");
    double lp3[4] = {-0.1, -2.5, -2.0, -0.2};
    double r1 = 1 / (1 + exp(-2.4)), r2 = 1 / (1 + exp(-1.8));
    tap_is_float(critique_preference(lp3, 1, 0, 1), (r1 + r2) / 2, 1e-12,
                 "x better in both orders: %.4f", (r1 + r2) / 2);
    tap_is_float(critique_preference(lp3, 1, 0.4, 0.6), 0.6, 1e-12,
                 "... clamped: 0.6 in both orders");
}

/* The soft-label Bradley-Terry loss of reward/rm.h, whose labels `plumb critique --compare`
 * writes: its derivatives against central differences, and its minimum where sigmoid(d) = p. */
static void test_soft_loss(void)
{
    const double ps[] = {0.5, 0.7, 0.3, 1.0};
    int good = 0, n = 0;
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        for (double rb = -1.5; rb <= 1.5; rb += 1.5)
            for (double rw = -1; rw <= 1; rw += 1) {
                double drb, drw, h = 1e-5;
                rm_pair_loss(rb, rw, 0, ps[i], 0.01, &drb, &drw);
                double fb = (rm_pair_loss(rb + h, rw, 0, ps[i], 0.01, NULL, NULL) -
                             rm_pair_loss(rb - h, rw, 0, ps[i], 0.01, NULL, NULL)) /
                            (2 * h);
                double fw = (rm_pair_loss(rb, rw + h, 0, ps[i], 0.01, NULL, NULL) -
                             rm_pair_loss(rb, rw - h, 0, ps[i], 0.01, NULL, NULL)) /
                            (2 * h);
                good += fabs(fb - drb) < 1e-7 && fabs(fw - drw) < 1e-7;
                n++;
            }
    tap_is_int(good, n, "soft-label loss: d/d rb and d/d rw match central differences (%d cases)",
               n);
    double d = log(0.7 / 0.3), drb;
    rm_pair_loss(d, 0, 0, 0.7, 0, &drb, NULL);
    tap_is_float(drb, 0, 1e-12, "soft-label loss: flat where sigmoid(rb - rw) = p");
    tap_is_float(rm_pair_loss(d, 0, 0, 0.7, 0, NULL, NULL), -(0.7 * log(0.7) + 0.3 * log(0.3)),
                 1e-12, "... where it is p's entropy");
}

/* ---- on a tiny model ---- */

static const char constitution[] =
    "{\"principles\": ["
    "{\"name\": \"honest\", \"critique_request\": \"True?\", \"revision_request\": \"Fix it.\","
    " \"rules\": [{\"kind\": \"max_words\", \"max\": 3}, "
    "{\"kind\": \"require_regex\", \"pattern\": \"\\\\.$\", \"critique\": \"No full stop.\"}]},"
    "{\"name\": \"kind\", \"critique_request\": \"Kind?\", \"revision_request\": \"Be kind.\"}"
    "]}";

static int make_model(const char *dir)
{
    struct gpt_config cfg = tap_byte_config(128, 32, 2, 2);
    struct gpt m;
    struct pl_err err = {0};
    tap_model_perturbed(&m, &cfg, 7);
    int rc = ckpt_save(&m, dir, &err);
    if (rc)
        tap_diag("saving the model: %s", err.msg);
    gpt_release(&m);
    return rc;
}

/* Sum of log p(cont | context) from one full forward of context + cont. */
static double full_logp(const char *dir, const char *context, const char *cont)
{
    struct gpt m;
    struct tok t;
    struct score_ctx s = {0};
    struct pl_err err = {0};
    struct gpt_opts go = {.max_batch = 1, .max_seq = 128};
    int ids[256];
    float lp[256];
    size_t nc = strlen(context), m_len = strlen(cont);
    for (size_t i = 0; i < nc; i++)
        ids[i] = (unsigned char)context[i];
    for (size_t i = 0; i < m_len; i++)
        ids[nc + i] = (unsigned char)cont[i];
    double sum = NAN;
    if (!ckpt_load_model(&m, &t, dir, &go, &err) && !score_init(&s, &m, &err)) {
        const int *seqs[1] = {ids};
        int lens[1] = {(int)(nc + m_len)};
        float *lps[1] = {lp};
        if (!score_seqs(&s, seqs, lens, 1, lps, NULL, &err)) {
            sum = 0;
            for (size_t j = 0; j < m_len; j++)
                sum += lp[nc - 1 + j];
        }
    }
    if (isnan(sum))
        tap_diag("full forward: %s", err.msg);
    score_release(&s);
    tok_release(&t);
    gpt_release(&m);
    return sum;
}

static void test_compare(const char *dir, const struct ds_constitution *c)
{
    struct critique_run r;
    struct critique_opts o;
    struct pl_err err = {0};
    critique_opts_default(&o);
    int rc = critique_run_init(&r, dir, NULL, NULL, c, &o, &err);
    tap_is_int(rc, PL_OK, "a run loads the model (%s)", err.msg);
    if (rc) {
        tap_skip(5, "no run");
        return;
    }
    const char *prompt = "User: Sky?\nAssistant:", *x = " Blue.", *y = "Green.";
    double lp[8];
    struct pl_buf b = {0};
    int bad = 0;
    for (int k = 0; k < 2; k++)
        for (int order = 0; order < 2; order++) {
            b.len = 0;
            critique_choice_text(&b, prompt, order ? y : x, order ? x : y,
                                 c->principles[k].critique_request);
            lp[4 * k + 2 * order] = full_logp(dir, b.p, CRITIQUE_CHOICE_A);
            lp[4 * k + 2 * order + 1] = full_logp(dir, b.p, CRITIQUE_CHOICE_B);
            const char *conts[2] = {CRITIQUE_CHOICE_A, CRITIQUE_CHOICE_B};
            double got[2];
            rc = critique_score_choices(&r, b.p, conts, 2, got, &err);
            bad += rc || fabs(got[0] - lp[4 * k + 2 * order]) > 1e-4 ||
                   fabs(got[1] - lp[4 * k + 2 * order + 1]) > 1e-4;
        }
    tap_is_int(bad, 0, "the KV cache's choice log-probs equal a full forward's, 4 questions");
    tap_ok(strstr(b.p, "(A) Green.\n(B) Blue.\nQuestion: Kind? Which answer is better?\n") != NULL,
           "the question puts the other order last");
    double p = -1, want = critique_preference(lp, 2, 0, 1);
    rc = critique_compare(&r, prompt, x, y, &p, &err);
    tap_is_float(p, want, 1e-5, "critique_compare: %.6f, by hand from full forwards %.6f", p, want);
    double q = -1;
    critique_compare(&r, prompt, y, x, &q, &err);
    tap_is_float(p + q, 1, 1e-5, "swapping the responses gives 1 - p");
    critique_run_release(&r);
    critique_run_release(&r);

    /* With few-shot examples, each question starts with them; only principle 1, clamped. */
    static const char shots[] = "User: Grass?\nAssistant: Green.\n";
    tap_write_file(tap_tmp("shots.txt"), shots);
    static const int only_kind[] = {1};
    o.principles = only_kind;
    o.n_principles = 1;
    o.clamp_lo = 0.45;
    o.clamp_hi = 0.55;
    rc = critique_run_init(&r, dir, NULL, tap_tmp("shots.txt"), c, &o, &err);
    for (int order = 0; !rc && order < 2; order++) {
        b.len = 0;
        pl_buf_str(&b, shots);
        critique_choice_text(&b, prompt, order ? y : x, order ? x : y, "Kind?");
        lp[2 * order] = full_logp(dir, b.p, CRITIQUE_CHOICE_A);
        lp[2 * order + 1] = full_logp(dir, b.p, CRITIQUE_CHOICE_B);
    }
    p = -1;
    if (!rc)
        rc = critique_compare(&r, prompt, x, y, &p, &err);
    want = critique_preference(lp, 1, 0.45, 0.55);
    tap_ok(rc == PL_OK && fabs(p - want) < 1e-5,
           "few-shot text first, one principle, clamped: %.6f, by hand %.6f (%s)", p, want,
           err.msg);
    pl_buf_release(&b);
    critique_run_release(&r);
}

/* The whole trace of a prompt as text, to compare runs. */
static void trace_text(struct pl_buf *b, const struct critique_trace *t)
{
    pl_buf_printf(b, "%s|%d|", t->draft, t->draft_broken);
    for (int k = 0; k < t->n_rounds; k++)
        pl_buf_printf(b, "%d|%s|%s|%d|%d|", t->rounds[k].principle, t->rounds[k].critique,
                      t->rounds[k].revision, t->rounds[k].broken, t->rounds[k].verdict);
    pl_buf_printf(b, "%d\n", t->final_round);
}

static void test_revise(const char *dir, const struct ds_constitution *c)
{
    const char *prompts[] = {"User: Sky?\nAssistant:", "User: Grass?\nAssistant:",
                             "User: Snow?\nAssistant:", "User: Sea?\nAssistant:"};
    const long index[] = {0, 1, 2, 3};
    struct pl_buf text[2] = {{0}, {0}};
    int complete = 0, rules_ok = 0, verdicts_ok = 0, said_ok = 0, said = 0;
    for (int run = 0; run < 2; run++) {
        struct critique_opts o;
        critique_opts_default(&o);
        o.rounds = 3;
        o.ties = true;
        o.max_new_tokens = 12;
        o.batch = run ? 1 : 4;
        struct critique_run r;
        struct pl_err err = {0};
        int rc = critique_run_init(&r, dir, NULL, NULL, c, &o, &err);
        struct critique_trace tr[4];
        memset(tr, 0, sizeof tr);
        /* Batch 1 runs the prompts one call each, in another order. */
        for (int i = run ? 3 : 0; !rc && (run ? i >= 0 : i < 1); i += run ? -1 : 1)
            rc = critique_revise(&r, run ? &prompts[i] : prompts, run ? &index[i] : index,
                                 run ? 1 : 4, run ? &tr[i] : tr, &err);
        if (rc)
            tap_diag("revise: %s", err.msg);
        for (int i = 0; !rc && i < 4; i++) {
            const struct critique_trace *t = &tr[i];
            bool all = t->draft && t->n_rounds == 3;
            for (int k = 0; all && k < 3; k++)
                all = t->rounds[k].critique && t->rounds[k].revision &&
                      t->rounds[k].principle >= 0 && t->rounds[k].principle < 2;
            complete += all;
            /* The rules, checked again here. */
            int n;
            ds_constitution_check(c, prompts[i], t->draft, NULL, &n, &err);
            rules_ok += n == t->draft_broken;
            /* Every verdict follows from the rules it saw (no reward model, ties allowed). */
            int cur = t->draft_broken, last = -1;
            const char *cur_text = t->draft;
            bool v = true;
            for (int k = 0; k < 3; k++) {
                const struct critique_round *rd = &t->rounds[k];
                /* The rule's own critique exactly when the current response breaks it under the
                 * round's principle (honest, rule 2), else the model's. */
                bool broken[2];
                ds_constitution_check(c, prompts[i], cur_text, broken, &n, &err);
                bool by_rule = rd->principle == 0 && broken[1];
                said_ok += rd->rule_critique == by_rule &&
                           (!by_rule || strcmp(rd->critique, "No full stop.") == 0);
                said += by_rule;
                int want = critique_accept(cur, rd->broken, strcmp(rd->revision, cur_text) == 0,
                                           false, 0, 0, true);
                v = v && want == rd->verdict;
                if (want != CRITIQUE_REJECTED) {
                    cur = rd->broken;
                    cur_text = rd->revision;
                    last = k;
                }
            }
            verdicts_ok +=
                v && last == t->final_round && strcmp(critique_trace_final(t), cur_text) == 0;
            trace_text(&text[run], t);
        }
        for (int i = 0; i < 4; i++)
            critique_trace_release(&tr[i]);
        critique_run_release(&r);
    }
    tap_is_int(complete, 8, "every trace has its draft and 3 rounds of critique and revision");
    tap_is_int(rules_ok, 8, "every draft's broken rules are counted");
    tap_is_int(verdicts_ok, 8, "every verdict and the final response follow the acceptance rule");
    tap_ok(said_ok == 24 && said > 0,
           "a broken rule of the round's principle gives its own critique (%d of 24 rounds), "
           "else the model writes it",
           said);
    tap_ok(text[0].p && text[1].p && strcmp(text[0].p, text[1].p) == 0,
           "a prompt's trace is the same in a batch of 4 and alone, in another order");
    pl_buf_release(&text[0]);
    pl_buf_release(&text[1]);
}

/* With a reward model: every draft and revision scored, and each verdict follows the rules and
 * the scores. The reward model is an untrained head (GPT-2's N(0, 0.02)): its scores differ. */
static void test_revise_scored(const char *dir, const char *rm_dir, const struct ds_constitution *c)
{
    const char *prompts[] = {
        "User: Sky?\nAssistant:", "User: Grass?\nAssistant:", "User: Snow?\nAssistant:"};
    const long index[] = {0, 1, 2};
    struct critique_opts o;
    critique_opts_default(&o);
    o.rounds = 3;
    o.ties = true;
    o.max_new_tokens = 12;
    struct critique_run r;
    struct pl_err err = {0};
    struct critique_trace tr[3];
    memset(tr, 0, sizeof tr);
    int rc = critique_run_init(&r, dir, rm_dir, NULL, c, &o, &err);
    if (!rc)
        rc = critique_revise(&r, prompts, index, 3, tr, &err);
    int good = 0, rejected_for_score = 0;
    for (int i = 0; !rc && i < 3; i++) {
        const struct critique_trace *t = &tr[i];
        bool v = isfinite(t->draft_score);
        int cur = t->draft_broken;
        double cur_score = t->draft_score;
        const char *cur_text = t->draft;
        for (int k = 0; k < 3; k++) {
            const struct critique_round *rd = &t->rounds[k];
            bool same = strcmp(rd->revision, cur_text) == 0;
            int want = critique_accept(cur, rd->broken, same, true, cur_score, rd->score, true);
            v = v && isfinite(rd->score) && want == rd->verdict;
            rejected_for_score += !same && rd->broken <= cur && rd->score < cur_score;
            if (want != CRITIQUE_REJECTED) {
                cur = rd->broken;
                cur_score = rd->score;
                cur_text = rd->revision;
            }
        }
        good += v;
    }
    tap_ok(rc == PL_OK && good == 3,
           "with a reward model: every text scored, every verdict follows rules and scores (%s)",
           err.msg);
    tap_ok(rejected_for_score > 0, "... and %d revisions were turned down for a lower reward",
           rejected_for_score);
    for (int i = 0; i < 3; i++)
        critique_trace_release(&tr[i]);
    critique_run_release(&r);
}

static void test_run_errors(const char *dir, const struct ds_constitution *c)
{
    struct critique_run r;
    struct critique_opts o;
    struct pl_err err = {0};
    critique_opts_default(&o);
    o.max_new_tokens = 127;
    tap_is_int(critique_run_init(&r, dir, NULL, NULL, c, &o, &err), PL_EINVAL,
               "max_new_tokens that fills the window: %s", err.msg);
    critique_opts_default(&o);
    tap_is_int(critique_run_init(&r, tap_tmp("nothing"), NULL, NULL, c, &o, &err), PL_ENOTFOUND,
               "a missing model folder");
    tap_is_int(critique_run_init(&r, dir, dir, NULL, c, &o, &err), PL_EINVAL,
               "a reward folder without a score head: %s", err.msg);
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 1, &err))
        tap_skip_all(err.msg);
    test_accept();
    test_preference();
    test_soft_loss();
    tap_tmpdir("critique");
    const char *dir = tap_tmp("model");
    struct ds_constitution c;
    tap_write_file(tap_tmp("c.json"), constitution);
    int rc = make_model(dir);
    if (!rc)
        rc = ds_constitution_load(&c, tap_tmp("c.json"), &err);
    if (rc) {
        tap_diag("%s", err.msg);
        tap_skip(16, "no model");
        return tap_done();
    }
    test_compare(dir, &c);
    test_revise(dir, &c);
    struct gpt_config rcfg = tap_byte_config(128, 16, 1, 2);
    struct gpt_opts ro = {.max_batch = 1, .max_seq = 1, .score_head = true};
    struct gpt rmm;
    if (gpt_init(&rmm, &rcfg, &ro, &err) == PL_OK) {
        gpt_init_weights(&rmm, 11);
        if (ckpt_save(&rmm, tap_tmp("rm"), &err))
            tap_diag("%s", err.msg);
    }
    gpt_release(&rmm);
    test_revise_scored(dir, tap_tmp("rm"), &c);
    test_run_errors(dir, &c);
    ds_constitution_release(&c);
    return tap_done();
}
