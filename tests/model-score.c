/* Batched scoring: padding changes nothing, and `plumb score` writes the
 * log-likelihood of each line or names the bad line. */
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/pl.h"
#include "model/score.h"
#include "model/tensor.h"
#include "model/tok.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Scoring sequences of different lengths together equals scoring each alone. */
static void test_padding_invariance(void)
{
    struct gpt_config cfg = tap_byte_config(16, 16, 2, 2);
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.score_head = true, .max_batch = 3, .max_seq = 16};
    gpt_init(&m, &cfg, &o, &err);
    gpt_init_weights(&m, 4);
    struct score_ctx s;
    score_init(&s, &m, &err);
    int a[5] = {1, 2, 3, 4, 5}, b[9] = {9, 8, 7, 6, 5, 4, 3, 2, 1}, c[2] = {100, 200};
    const int *seqs[3] = {a, b, c};
    int lens[3] = {5, 9, 2};
    float la[4], lb[8], lc[1], head[3];
    float *lp[3] = {la, lb, lc};
    tap_is_int(score_seqs(&s, seqs, lens, 3, lp, head, &err), PL_OK, "three sequences score");
    double d = 0;
    for (int i = 0; i < 3; i++) {
        float alone[8], h1;
        float *one[1] = {alone};
        score_seqs(&s, &seqs[i], &lens[i], 1, one, &h1, &err);
        for (int t = 0; t < lens[i] - 1; t++)
            d = fmax(d, fabs(alone[t] - lp[i][t]));
        d = fmax(d, fabs(h1 - head[i]));
    }
    tap_ok(d < 1e-5, "padding changes no log-prob and no head value (max diff %.2g)", d);
    lens[1] = 17;
    tap_is_int(score_seqs(&s, seqs, lens, 3, lp, NULL, &err), PL_EINVAL,
               "a sequence longer than the context is refused");
    score_release(&s);
    gpt_release(&m);
}

/* Each sequence scored alone: its log-probs into lp (lens[i] - 1 floats at lp + i * 16) and
 * its head. */
static void score_alone(struct score_ctx *s, const int *const *seqs, const int *lens, int n,
                        float *lp, float *head)
{
    struct pl_err err = {0};
    for (int i = 0; i < n; i++) {
        float *one[1] = {lp + i * 16};
        if (score_seqs(s, &seqs[i], &lens[i], 1, one, &head[i], &err))
            tap_diag("%s", err.msg);
    }
}

/* More sequences than one batch take several calls, each the same as scoring alone; one-token
 * sequences have a head and no log-prob; a head-only model gives the full model's head. */
static void test_batches_and_heads(void)
{
    struct gpt_config cfg = tap_byte_config(16, 16, 2, 2);
    struct gpt m, h;
    struct pl_err err = {0};
    struct gpt_opts o = {.score_head = true, .max_batch = 2, .max_seq = 16};
    struct gpt_opts oh = {.score_head = true, .head_only = true, .max_batch = 2, .max_seq = 16};
    gpt_init(&m, &cfg, &o, &err);
    gpt_init_weights(&m, 8);
    gpt_init(&h, &cfg, &oh, &err);
    gpt_copy_weights(&h, &m);
    struct score_ctx s, sh;
    score_init(&s, &m, &err);
    score_init(&sh, &h, &err);

    int a[6] = {10, 20, 30, 40, 50, 60}, b[1] = {7}, c[3] = {255, 256, 0}, d[1] = {256},
        e[9] = {1, 1, 2, 3, 5, 8, 13, 21, 34};
    const int *seqs[5] = {a, b, c, d, e};
    int lens[5] = {6, 1, 3, 1, 9};
    float want_lp[5 * 16], want_head[5], got_lp[5 * 16], got_head[5];
    score_alone(&s, seqs, lens, 5, want_lp, want_head);
    float *lp[5];
    for (int i = 0; i < 5; i++)
        lp[i] = got_lp + i * 16;
    int calls = 0, rc = PL_OK;
    for (int i = 0; i < 5 && !rc; i += 2, calls++)
        rc = score_seqs(&s, seqs + i, lens + i, i + 2 <= 5 ? 2 : 1, lp + i, got_head + i, &err);
    double d_lp = 0, d_head = 0;
    for (int i = 0; i < 5; i++) {
        for (int t = 0; t < lens[i] - 1; t++)
            d_lp = fmax(d_lp, fabs(got_lp[i * 16 + t] - want_lp[i * 16 + t]));
        d_head = fmax(d_head, fabs(got_head[i] - want_head[i]));
    }
    tap_ok(rc == PL_OK && calls == 3 && d_lp < 1e-5 && d_head < 1e-5,
           "5 sequences through a batch of 2 in %d calls score as alone (max diff %.2g, %.2g)",
           calls, d_lp, d_head);
    rc = score_seqs(&s, seqs, lens, 3, lp, got_head, &err);
    tap_ok(rc == PL_EINVAL && strstr(err.msg, "3 sequences in a batch of at most 2"),
           "one call takes at most a batch: %s", err.msg);

    /* One token: the head reads position 0, and there is no log-prob to write. */
    int one_tok[2] = {b[0], d[0]};
    struct gpt_batch fb = {.B = 2, .T = 1, .tokens = one_tok};
    gpt_forward(&m, &fb, &err);
    tap_ok(fabs(want_head[1] - m.head[0]) < 1e-6 && fabs(want_head[3] - m.head[1]) < 1e-6,
           "a one-token sequence's head is the model's at its token");
    float canary[2] = {12345.0f, 12345.0f};
    float *lpc[2] = {canary, canary + 1};
    rc = score_seqs(&s, (const int *const[]){b, d}, (const int[]){1, 1}, 2, lpc, got_head, &err);
    tap_ok(rc == PL_OK && canary[0] == 12345.0f && canary[1] == 12345.0f &&
               fabs(got_head[0] - want_head[1]) < 1e-5,
           "one-token sequences score together and write no log-prob");

    /* Head-only: no LM logits at all, the same head. */
    rc = PL_OK;
    for (int i = 0; i < 5 && !rc; i += 2)
        rc = score_seqs(&sh, seqs + i, lens + i, i + 2 <= 5 ? 2 : 1, NULL, got_head + i, &err);
    d_head = 0;
    for (int i = 0; i < 5; i++)
        d_head = fmax(d_head, fabs(got_head[i] - want_head[i]));
    tap_ok(rc == PL_OK && d_head < 1e-5 && h.logit_rows == 0,
           "a head-only model gives the full model's head (max diff %.2g)", d_head);
    rc = score_seqs(&sh, seqs, lens, 2, lp, got_head, &err);
    tap_ok(rc == PL_OK && fabs(got_head[0] - want_head[0]) < 1e-5,
           "and ignores log-prob buffers it cannot fill");
    rc = score_seqs(&s, seqs, lens, 2, NULL, got_head, &err);
    tap_ok(rc == PL_OK && fabs(got_head[1] - want_head[1]) < 1e-5,
           "a full model asked for the head alone gives it too");
    score_release(&s);
    score_release(&sh);
    gpt_release(&m);
    gpt_release(&h);
}

/* Run `plumb score` on input text; returns the exit status, output in out. */
static int run_score(const char *plumb, const char *dir, const char *input, char *out, size_t cap)
{
    char in_path[600], out_path[600], cmd[2048];
    snprintf(in_path, sizeof in_path, "%s/in.jsonl", dir);
    snprintf(out_path, sizeof out_path, "%s/out.txt", dir);
    FILE *f = fopen(in_path, "w");
    fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s score --model %s/model --input %s --threads 1 > %s 2>&1", plumb,
             dir, in_path, out_path);
    int status = system(cmd);
    f = fopen(out_path, "r");
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_command(void)
{
    const char *plumb = getenv("PLUMB_BIN");
    if (!plumb) {
        tap_skip(7, "PLUMB_BIN not set");
        return;
    }
    char dir[] = "/tmp/plumb-score-XXXXXX", path[600];
    mkdtemp(dir);
    snprintf(path, sizeof path, "%s/model", dir);
    struct gpt_config cfg = tap_byte_config(16, 16, 2, 2);
    struct gpt m;
    struct pl_err err = {0};
    struct gpt_opts o = {.max_batch = 1, .max_seq = 16};
    gpt_init(&m, &cfg, &o, &err);
    gpt_init_weights(&m, 4);
    tap_is_int(ckpt_save(&m, path, &err), PL_OK, "a byte-level model is saved");

    char out[8192];
    int rc = run_score(plumb, dir, "{\"text\": \"abc\"}\n\n{\"tokens\": [97, 98, 99]}\n", out,
                       sizeof out);
    tap_is_int(rc, 0, "plumb score exits 0");
    char *second = strchr(out, '\n');
    size_t first_len = second ? (size_t)(second - out) + 1 : 0;
    tap_ok(second && strncmp(out, "{\"tokens\":[97,98,99],\"logprobs\":[", 33) == 0 &&
               strlen(second + 1) == first_len && strncmp(second + 1, out, first_len) == 0,
           "text and the same token ids give the same line: %.60s", out);
    /* The scores equal the engine's own. */
    int toks[3] = {97, 98, 99}, tg[3] = {98, 99, -1};
    struct gpt_batch b = {.B = 1, .T = 3, .tokens = toks, .targets = tg};
    gpt_forward(&m, &b, &err);
    char want[64];
    snprintf(want, sizeof want, "\"sum\":%.9g", (double)m.logp[0] + m.logp[1]);
    tap_ok(strstr(out, want) != NULL, "sum is the sum of the engine's log-probs (%s)", want);

    rc = run_score(plumb, dir, "{\"text\": \"ok\"}\n{\"tokens\": [1, 300]}\n", out, sizeof out);
    tap_ok(rc == 1 && strstr(out, "in.jsonl:2: field 'tokens'") != NULL,
           "an id outside the vocabulary names file and line: %s", out);
    rc = run_score(plumb, dir, "{\"text\": \"0123456789abcdefg\"}\n", out, sizeof out);
    tap_ok(rc == 1 && strstr(out, "in.jsonl:1: 17 tokens") != NULL,
           "a line longer than the context names file and line: %s", out);
    gpt_release(&m);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    tap_is_int(system(path), 0, "clean up");
}

int main(void)
{
    struct pl_err err = {0};
    if (tensor_init(NULL, 2, &err))
        tap_skip_all(err.msg);
    tap_plan(17);
    test_padding_invariance();
    test_batches_and_heads();
    test_command();
    return tap_done();
}
