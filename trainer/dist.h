/* dist: data-parallel training across processes and hosts (MPI), for the one training loop.
 *
 * Every rank holds a whole copy of each trained model; the tasks shard the data by rank
 * (dist_rank of dist_size), the loop sums the gradients of the global batch over the ranks
 * (dist_sum_floats) and steps the same optimizer on each, so the weights stay bit-identical, which
 * dist_same_weights checks. Rank 0 alone writes files and progress.
 *
 * The default build has no MPI: one rank, every collective a no-op (or an identity). Built with
 * PLUMB_MPI (make MPI=1) and started by mpirun, the ranks are MPI_COMM_WORLD's; started without
 * mpirun the MPI build is one rank and never calls MPI_Init. Collectives wait for the other ranks
 * at most dist_timeout seconds (PLUMB_DIST_TIMEOUT, 600 by default), polling with short sleeps so
 * that a waiting rank leaves its core to the others; MPI errors are returned (MPI_ERRORS_RETURN),
 * not fatal. A rank that dies is noticed by mpirun, which ends the job. */
#ifndef DIST_H
#define DIST_H

#include "model/pl.h"

#include <stddef.h>
#include <stdint.h>

/* Join the job when mpirun started this process (its environment says so); ranks other than 0
 * get /dev/null as standard output: results are rank 0's to print. Returns PL_OK, PL_EIO with
 * the MPI error in err, or PL_EINVAL when mpirun started several ranks of a build without MPI.
 * Call once, first thing in main. */
int dist_init(int *argc, char ***argv, struct pl_err *err);

/* Leave the job with exit status `status`: a nonzero status with other ranks ends them all
 * (MPI_Abort) rather than leaving them to wait; otherwise MPI_Finalize. Returns status. */
int dist_exit(int status);

/* This process's rank in [0, dist_size()) and the number of ranks (1 without MPI). */
int dist_rank(void);
int dist_size(void);

/* x[0, n) = scale * (the sum of every rank's x), the same on every rank. Errors: PL_EIO (an MPI
 * error or the timeout, naming the rank). */
int dist_sum_floats(float *x, size_t n, float scale, struct pl_err *err);

/* x[0, n) = the sum of every rank's x. Errors as dist_sum_floats. */
int dist_sum_doubles(double *x, int n, struct pl_err *err);

/* A 64-bit hash of x[0, n)'s bits. */
uint64_t dist_hash(const float *x, size_t n);

/* PL_OK when every rank passed the same hash; else PL_ENUMERIC "`what` differ across ranks
 * (rank R's hash ...)". Errors also as dist_sum_floats. */
int dist_same(uint64_t hash, const char *what, struct pl_err *err);

/* Run fn(ctx, err) on rank 0 alone, as a job of one rank (dist_size() is 1 inside it), while
 * the other ranks wait; every rank returns fn's code (others with "rank 0 failed" in err). For
 * timing one rank against all in one job (plumb bench --mpi). */
int dist_solo(int (*fn)(void *ctx, struct pl_err *err), void *ctx, struct pl_err *err);

/* Bytes this rank has passed to dist_sum_floats and dist_sum_doubles so far. */
uint64_t dist_bytes(void);

/* Seconds a collective waits for the other ranks before failing. */
extern double dist_timeout;

#endif
