/* tensor: the BLIS wrapper. The only file that includes blis.h is tensor.c.
 *
 * Matrices are row-major with a leading dimension (the stride between rows). */
#ifndef TENSOR_H
#define TENSOR_H

#include "pl.h"

#include <stdbool.h>

/* Choose BLIS's kernel set and thread count; call once before any GEMM.
 * arch: a BLIS configuration name ("skx", "haswell", "zen3", "generic", ...);
 * NULL or "" means $PLUMB_BLIS_ARCH, else the fastest set this CPU supports.
 * threads <= 0 means $PLUMB_THREADS, else every online core. The same thread
 * count drives BLIS and OpenMP (one pool). Calling again only changes threads.
 * Errors: PL_EINVAL for an unknown arch name or one the CPU cannot run. */
int tensor_init(const char *arch, int threads, struct pl_err *err);

/* Name of the kernel set in use (after tensor_init), e.g. "skx". */
const char *tensor_arch(void);
int tensor_threads(void);

/* C[m,n] = alpha * op(A) @ op(B) + beta * C, where op(A) is [m,k] and op(B)
 * is [k,n]. A is stored [m,k] (or [k,m] when ta) with leading dimension lda;
 * B is stored [k,n] (or [n,k] when tb) with ldb; C has ldc. beta = 1
 * accumulates (gradients). Shapes are checked before BLIS sees them. */
void tensor_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* Same, but computed with BLIS forced to a single thread: for callers that are
 * already inside an OpenMP parallel region (one product per head, say). */
void tensor_gemm_1t(bool ta, bool tb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

#endif
