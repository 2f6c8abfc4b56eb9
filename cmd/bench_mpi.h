/* bench --mpi: the scaling of plumb's data-parallel training step (trainer/dist.h). */
#ifndef CMD_BENCH_MPI_H
#define CMD_BENCH_MPI_H

#include "model/gpt.h"
#include "model/pl.h"

#include <stdbool.h>

/* On shapes[0]: the best of `steps` training steps (after one warm-up) at batch x seq tokens a
 * rank, by rank 0 alone and then by every rank (forward, backward, the gradient sum over the
 * ranks, clipping, AdamW); tokens/s of each and the scaling efficiency, tokens/s at N ranks over
 * N times tokens/s at one. Then, for every shape, the bytes a step sums over the ranks. Printed
 * on standard output (JSON with json). Run under `mpirun -np 2`; one rank prints its own rate.
 * Errors: those of gpt_init and the collectives. */
int cmd_bench_mpi(const struct gpt_config *shapes, int n_shapes, int batch, int seq, int steps,
                  bool json, struct pl_err *err);

#endif
