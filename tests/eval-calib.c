/* eval-calib: calibration metrics against hand-computed values (ECE over equal-width and
 * equal-mass bins, MCE, Brier, NLL, the reliability table), a perfectly calibrated synthetic set
 * (ECE about 0), confident right answers (Brier 0), temperature fitting on an overconfident set,
 * and MC2 (a model uniform over the choices scores #true / #choices). */
#include "eval/calib.h"
#include "eval/mc.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>

static int all_idx[200000];

static void hand(void)
{
    /* Two choices each; confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (right). */
    double p[4] = {0.9, 0.9, 0.6, 0.55};
    int answer[4] = {0, 1, 0, 0}, off[5] = {0, 2, 4, 6, 8};
    double ll[8];
    for (int i = 0; i < 4; i++) {
        ll[2 * i] = log(p[i]);
        ll[2 * i + 1] = log(1 - p[i]);
    }
    struct eval_calib c;
    struct pl_err err = {0};
    eval_calib_init(&c, ll, off, answer, 4, 1, &err);
    /* Bins of width 1/15: 0.9 -> (0.8667, 0.9333] bin 13; 0.6 -> bin 8; 0.55 -> bin 8.
     * bin 13: acc 0.5, conf 0.9 -> 2/4 * 0.4 = 0.2; bin 8: acc 1, conf 0.575 -> 2/4 * 0.425. */
    tap_is_float(eval_calib_ece(&c, all_idx, 4), 0.2 + 0.2125, 1e-12, "ECE by hand");
    tap_is_float(eval_calib_mce(&c, all_idx, 4), 0.425, 1e-12, "MCE by hand");
    tap_is_float(eval_calib_accuracy(&c, all_idx, 4), 0.75, 1e-12, "accuracy 3/4");
    /* Brier: 2(0.1^2), 2(0.9^2), 2(0.4^2), 2(0.45^2), mean. */
    tap_is_float(eval_calib_brier(&c, all_idx, 4),
                 (2 * 0.01 + 2 * 0.81 + 2 * 0.16 + 2 * 0.2025) / 4, 1e-12, "Brier by hand");
    tap_is_float(eval_calib_nll(&c, all_idx, 4), -(log(0.9) + log(0.1) + log(0.6) + log(0.55)) / 4,
                 1e-12, "NLL by hand");
    /* 10 equal-mass bins of 4 questions: sizes 0,0,1,0,1,0,0,1,0,1 in sorted order (0.55, 0.6,
     * 0.9, 0.9): every question its own bin, so ECE_em = mean |correct - conf|. */
    tap_is_float(eval_calib_ece_em(&c, all_idx, 4), (0.45 + 0.4 + 0.1 + 0.9) / 4, 1e-12,
                 "ECE over equal-mass bins by hand");
    long count[EVAL_ECE_BINS];
    double conf[EVAL_ECE_BINS], acc[EVAL_ECE_BINS];
    eval_calib_reliability(&c, count, conf, acc);
    tap_ok(count[13] == 2 && count[8] == 2 && fabs(conf[8] - 0.575) < 1e-12 && acc[13] == 0.5 &&
               isnan(acc[0]),
           "the reliability table: counts, mean confidence, accuracy; empty bins NaN");
    int twice[4] = {0, 0, 2, 2};
    tap_is_float(eval_calib_accuracy(&c, twice, 4), 1, 1e-12,
                 "statistics follow the index list (a resample)");
    eval_calib_release(&c);
}

static void synthetic(void)
{
    /* Confidence p uniform in [0.5, 1), right with probability p: calibrated. */
    enum { N = 200000 };
    static double ll[2 * N];
    static int answer[N], off[N + 1];
    srand(7);
    for (int i = 0; i < N; i++) {
        double p = 0.5 + 0.5 * rand() / ((double)RAND_MAX + 1);
        bool right = rand() / ((double)RAND_MAX + 1) < p;
        ll[2 * i] = log(p);
        ll[2 * i + 1] = log(1 - p);
        answer[i] = right ? 0 : 1;
        off[i] = 2 * i;
    }
    off[N] = 2 * N;
    struct eval_calib c;
    struct pl_err err = {0};
    eval_calib_init(&c, ll, off, answer, N, 1, &err);
    double e = eval_calib_ece(&c, all_idx, N), em = eval_calib_ece_em(&c, all_idx, N);
    tap_ok(e < 0.01 && em < 0.01, "a calibrated set has ECE about 0 (%.4f, equal-mass %.4f)", e,
           em);
    eval_calib_release(&c);
    /* The same logits made overconfident (x3): the fitted temperature undoes it. */
    for (int i = 0; i < 2 * N; i++)
        ll[i] *= 3;
    double t = eval_calib_fit_temperature(ll, off, answer, all_idx, N);
    tap_is_float(t, 3, 0.1, "the fitted temperature of a x3 overconfident set is about 3 (%.3f)",
                 t);
    eval_calib_init(&c, ll, off, answer, N, t, &err);
    tap_ok(eval_calib_ece(&c, all_idx, N) < 0.01, "and after scaling its ECE is about 0");
    eval_calib_release(&c);
    eval_calib_init(&c, ll, off, answer, N, 1, &err);
    tap_ok(eval_calib_ece(&c, all_idx, N) > 0.05, "before scaling it is not");
    eval_calib_release(&c);

    /* Confident right answers: Brier 0, NLL 0, ECE 0. */
    double sure[6] = {0, -800, -900, 0, -1000, -700};
    int sure_off[4] = {0, 2, 4, 6}, sure_ans[3] = {0, 1, 1};
    eval_calib_init(&c, sure, sure_off, sure_ans, 3, 1, &err);
    tap_ok(eval_calib_brier(&c, all_idx, 3) < 1e-12 && eval_calib_nll(&c, all_idx, 3) < 1e-12 &&
               eval_calib_ece(&c, all_idx, 3) == 0,
           "confident right answers: Brier, NLL and ECE 0");
    eval_calib_release(&c);
    double tie[3] = {-1, -1, -2};
    int tie_off[2] = {0, 3}, tie_ans[1] = {1};
    eval_calib_init(&c, tie, tie_off, tie_ans, 1, 1, &err);
    tap_ok(eval_calib_accuracy(&c, all_idx, 1) == 0, "of equal choices the first is predicted");
    eval_calib_release(&c);
}

static void mc2(void)
{
    double ll[5] = {-3, -3, -3, -3, -3};
    bool t[5] = {true, false, true, false, false};
    tap_is_float(eval_mc2(ll, t, 5), 2.0 / 5, 1e-12, "MC2 of a uniform model: #true / #choices");
    double far[3] = {-2000, -2001, -2000};
    bool t3[3] = {true, true, false};
    tap_is_float(eval_mc2(far, t3, 3), (1 + exp(-1)) / (2 + exp(-1)), 1e-12,
                 "MC2 stays defined where exp(ll) underflows");
    double one[2] = {0, -INFINITY};
    bool t2[2] = {false, true};
    tap_is_float(eval_mc2(one, t2, 2), 0, 1e-12, "MC2 0 when all mass is on a false answer");
}

int main(void)
{
    for (int i = 0; i < 200000; i++)
        all_idx[i] = i;
    hand();
    synthetic();
    mc2();
    return tap_done();
}
