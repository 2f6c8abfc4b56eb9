#include "tensor.h"

#include <blis.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *arch_name = "unset";
static int n_threads = 1;
static bool initialised;
static rntm_t rntm_single;

/* BLIS's numeric id for a configuration name, looked up through
 * bli_arch_string so no magic number is baked in; -1 when unknown. */
static int arch_id_by_name(const char *name)
{
    for (int id = 0; id < BLIS_NUM_ARCHS; id++)
        if (strcmp(bli_arch_string((arch_t)id), name) == 0)
            return id;
    return -1;
}

/* Whether this CPU can run the named kernel set. */
static bool cpu_runs(const char *name)
{
    __builtin_cpu_init();
    if (strcmp(name, "skx") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (strcmp(name, "haswell") == 0 || strcmp(name, "zen") == 0 || strcmp(name, "zen2") == 0 ||
        strcmp(name, "zen3") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(name, "sandybridge") == 0)
        return __builtin_cpu_supports("avx");
    if (strcmp(name, "penryn") == 0)
        return __builtin_cpu_supports("ssse3");
    return strcmp(name, "generic") == 0;
}

/* Fastest kernel set first: measured here, skx 209 GFLOP/s a core against
 * 37 for generic (which is what BLIS 0.9.0 auto-selects on Zen 5). */
static const char *best_arch(void)
{
    static const char *order[] = {"skx", "haswell", "sandybridge", "penryn", "generic"};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (arch_id_by_name(order[i]) >= 0 && cpu_runs(order[i]))
            return order[i];
    return "generic";
}

static int choose_threads(int threads)
{
    if (threads > 0)
        return threads;
    const char *env = getenv("PLUMB_THREADS");
    if (env && atoi(env) > 0)
        return atoi(env);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int tensor_init(const char *arch, int threads, struct pl_err *err)
{
    n_threads = choose_threads(threads);
    omp_set_num_threads(n_threads);
    if (initialised) {
        bli_thread_set_num_threads(n_threads);
        return PL_OK;
    }
    if (!arch || !*arch)
        arch = getenv("PLUMB_BLIS_ARCH");
    if (!arch || !*arch)
        arch = best_arch();
    int id = arch_id_by_name(arch);
    if (id < 0)
        return pl_errf(err, PL_EINVAL, "unknown BLIS kernel set '%s'", arch);
    if (!cpu_runs(arch))
        return pl_errf(err, PL_EINVAL, "BLIS kernel set '%s' needs instructions this CPU lacks",
                       arch);
    /* BLIS reads its arch id from the environment once, when it initialises. */
    char idbuf[16];
    snprintf(idbuf, sizeof idbuf, "%d", id);
    setenv("BLIS_ARCH_TYPE", idbuf, 1);
    bli_init();
    arch_name = bli_arch_string(bli_arch_query_id());
    bli_thread_set_num_threads(n_threads);
    bli_rntm_init(&rntm_single);
    bli_rntm_set_num_threads(1, &rntm_single);
    initialised = true;
    return PL_OK;
}

const char *tensor_arch(void) { return arch_name; }

int tensor_threads(void) { return n_threads; }

static void check_gemm(bool ta, bool tb, int m, int n, int k, int lda, int ldb, int ldc)
{
    PL_ASSERT(initialised);
    PL_ASSERT(m >= 0 && n >= 0 && k >= 0);
    PL_ASSERT(lda >= (ta ? m : k) && lda >= 1);
    PL_ASSERT(ldb >= (tb ? k : n) && ldb >= 1);
    PL_ASSERT(ldc >= n && ldc >= 1);
}

static void gemm(rntm_t *rntm, bool ta, bool tb, int m, int n, int k, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    check_gemm(ta, tb, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return;
    /* BLIS takes the stored matrix's strides plus a transpose flag. */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL,
                 rntm);
}

void tensor_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    gemm(NULL, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void tensor_gemm_1t(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc)
{
    rntm_t r = rntm_single;
    gemm(&r, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
