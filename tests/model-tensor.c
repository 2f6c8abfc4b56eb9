/* The BLIS wrapper: kernel-set choice and every transpose combination with
 * leading dimensions wider than the matrices. */
#include "model/pl.h"
#include "model/tensor.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* C = alpha op(A) op(B) + beta C in double, element by element. */
static void gemm_naive(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? A[p * lda + i] : A[i * lda + p]) *
                     (tb ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = (float)(alpha * s + beta * C[i * ldc + j]);
        }
}

static void test_gemm(bool one_thread)
{
    struct pl_rng r;
    pl_rng_seed(&r, 1);
    int m = 7, n = 5, k = 9, pad = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
            float A[(9 + 3) * (9 + 3)], B[(9 + 3) * (9 + 3)], C[7 * 8], D[7 * 8];
            for (size_t i = 0; i < sizeof A / sizeof *A; i++)
                A[i] = pl_rng_normal(&r);
            for (size_t i = 0; i < sizeof B / sizeof *B; i++)
                B[i] = pl_rng_normal(&r);
            for (size_t i = 0; i < sizeof C / sizeof *C; i++)
                C[i] = D[i] = pl_rng_normal(&r);
            if (one_thread)
                tensor_gemm_1t(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, 1.0f, C, ldc);
            else
                tensor_gemm(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, 1.0f, C, ldc);
            gemm_naive(ta, tb, m, n, k, 0.5f, A, lda, B, ldb, 1.0f, D, ldc);
            double worst = 0;
            int padding_kept = 1;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < ldc; j++) {
                    if (j < n)
                        worst = fmax(worst, fabs(C[i * ldc + j] - D[i * ldc + j]));
                    else
                        padding_kept &= C[i * ldc + j] == D[i * ldc + j];
                }
            tap_ok(worst < 1e-5 && padding_kept,
                   "%s gemm ta=%d tb=%d matches the naive product and leaves padding alone",
                   one_thread ? "one-thread" : "threaded", ta, tb);
        }
}

int main(void)
{
    struct pl_err err = {0};
    tap_is_int(tensor_init("no-such-kernels", 2, &err), PL_EINVAL,
               "an unknown kernel set is refused");
    tap_ok(strstr(err.msg, "'no-such-kernels'") != NULL, "and named: %s", err.msg);
    const char *forced = getenv("PLUMB_BLIS_ARCH");
    tap_is_int(tensor_init(forced && *forced ? forced : "generic", 2, &err), PL_OK,
               "a kernel set can be chosen by name");
    tap_is_str(tensor_arch(), forced && *forced ? forced : "generic",
               "BLIS reports the chosen kernel set");
    tap_is_int(tensor_threads(), 2, "the thread count is kept");
    test_gemm(false);
    test_gemm(true);
    return tap_done();
}
