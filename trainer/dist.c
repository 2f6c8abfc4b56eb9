#include "trainer/dist.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PLUMB_MPI
#include <mpi.h>
#endif

double dist_timeout = 600.0;

static int g_rank = 0, g_size = 1;
static uint64_t g_bytes;

#ifdef PLUMB_MPI
static bool g_mpi;
static int g_world_size = 1;
static MPI_Comm g_comm;

static int mpi_error(int code, const char *what, struct pl_err *err)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", code);
    return pl_errf(err, PL_EIO, "rank %d of %d: %s failed: %s", g_rank, g_size, what, msg);
}

/* Wait for a collective, spinning briefly, then sleeping between polls so that a rank waiting
 * for a slower one leaves it the core; give up after dist_timeout seconds. */
static int wait_for(MPI_Request *req, const char *what, struct pl_err *err)
{
    double t0 = pl_now();
    for (long spin = 0;; spin++) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, what, err);
        if (done)
            return PL_OK;
        if (spin < 2000)
            continue;
        if (pl_now() - t0 > dist_timeout)
            return pl_errf(err, PL_EIO,
                           "rank %d of %d: no answer from the other ranks to %s within %g s (a "
                           "rank died or hangs; PLUMB_DIST_TIMEOUT sets the limit)",
                           g_rank, g_size, what, dist_timeout);
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
}

static int allreduce(void *x, int n, MPI_Datatype type, MPI_Op op, const char *what,
                     struct pl_err *err)
{
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, x, n, type, op, g_comm, &req);
    return rc != MPI_SUCCESS ? mpi_error(rc, what, err) : wait_for(&req, what, err);
}
#endif

int dist_init(int *argc, char ***argv, struct pl_err *err)
{
    const char *t = getenv("PLUMB_DIST_TIMEOUT");
    if (t && atof(t) > 0.0)
        dist_timeout = atof(t);
#ifdef PLUMB_MPI
    /* Open MPI's, MPICH's and PMIx launchers each leave one of these. */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK"))
        return PL_OK;
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS)
        return mpi_error(rc, "MPI_Init", err);
    g_mpi = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    g_comm = MPI_COMM_WORLD;
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    g_world_size = g_size;
    if (g_rank > 0 && !freopen("/dev/null", "w", stdout))
        return pl_errf(err, PL_EIO, "rank %d: cannot open /dev/null", g_rank);
#else
    (void)argc;
    (void)argv;
    /* Ranks that cannot talk would each train alone into the same folders. */
    const char *n =
        getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    if (n && atoi(n) > 1)
        return pl_errf(err, PL_EINVAL,
                       "started by mpirun as one of %s ranks, but this plumb was built without "
                       "MPI (make MPI=1 builds one with it)",
                       n);
#endif
    return PL_OK;
}

int dist_exit(int status)
{
#ifdef PLUMB_MPI
    if (g_mpi) {
        g_mpi = false;
        if (status != 0 && g_world_size > 1)
            MPI_Abort(MPI_COMM_WORLD, status);
        MPI_Finalize();
    }
#endif
    return status;
}

int dist_rank(void)
{
    return g_rank;
}

int dist_size(void)
{
    return g_size;
}

uint64_t dist_bytes(void)
{
    return g_bytes;
}

int dist_sum_floats(float *x, size_t n, float scale, struct pl_err *err)
{
    if (g_size == 1)
        return PL_OK;
    g_bytes += n * sizeof *x;
#ifdef PLUMB_MPI
    /* MPI counts are ints. */
    const size_t chunk = (size_t)1 << 30;
    for (size_t i = 0; i < n; i += chunk) {
        int rc = allreduce(x + i, (int)(n - i < chunk ? n - i : chunk), MPI_FLOAT, MPI_SUM,
                           "the gradient sum", err);
        if (rc)
            return rc;
    }
#else
    (void)err;
#endif
    if (scale != 1.0f)
        for (size_t i = 0; i < n; i++)
            x[i] *= scale;
    return PL_OK;
}

int dist_sum_doubles(double *x, int n, struct pl_err *err)
{
    if (g_size == 1)
        return PL_OK;
    g_bytes += (uint64_t)n * sizeof *x;
#ifdef PLUMB_MPI
    return allreduce(x, n, MPI_DOUBLE, MPI_SUM, "a sum of statistics", err);
#else
    (void)x;
    (void)err;
    return PL_OK;
#endif
}

uint64_t dist_hash(const float *x, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        h = (h ^ bits) * 0x100000001b3ull;
    }
    return h;
}

int dist_same(uint64_t hash, const char *what, struct pl_err *err)
{
    if (g_size == 1)
        return PL_OK;
#ifdef PLUMB_MPI
    /* The largest hash and the largest complement (the smallest hash) in one reduction. */
    uint64_t v[2] = {hash, ~hash};
    int rc = allreduce(v, 2, MPI_UINT64_T, MPI_MAX, "the weight check", err);
    if (rc)
        return rc;
    if (v[0] != hash || ~v[1] != hash)
        return pl_errf(err, PL_ENUMERIC,
                       "%s differ across ranks (rank %d has %016llx; hashes range from %016llx "
                       "to %016llx): the ranks no longer train one model",
                       what, g_rank, (unsigned long long)hash, (unsigned long long)~v[1],
                       (unsigned long long)v[0]);
    return PL_OK;
#else
    (void)hash;
    (void)what;
    (void)err;
    return PL_OK;
#endif
}

int dist_solo(int (*fn)(void *ctx, struct pl_err *err), void *ctx, struct pl_err *err)
{
    if (g_size == 1)
        return fn(ctx, err);
#ifdef PLUMB_MPI
    double failed = 0.0;
    int rc = PL_OK;
    if (g_rank == 0) {
        g_comm = MPI_COMM_SELF;
        g_size = 1;
        rc = fn(ctx, err);
        g_comm = MPI_COMM_WORLD;
        g_size = g_world_size;
        failed = rc != PL_OK;
    }
    struct pl_err mine = {0};
    int rc2 = dist_sum_doubles(&failed, 1, &mine);
    if (rc)
        return rc;
    if (rc2) {
        if (err)
            *err = mine;
        return rc2;
    }
    return failed > 0.0 ? pl_errf(err, PL_EIO, "rank 0 failed on its own (see its message)")
                        : PL_OK;
#else
    return fn(ctx, err);
#endif
}
