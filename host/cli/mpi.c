/* mst eval across processes: under mpirun (or srun) each rank evaluates its
 * contiguous part of the set, as --shard rank/size would, and rank 0 adds
 * the parts' tallies and spike counters up and writes the one results file a
 * single process writes. Built where MPI is found (MST_MPI=AUTO); without
 * it, or started without a launcher, mst is one process and these are
 * no-ops. A rank that stops names itself and takes the job down with it
 * (MPI_Abort), so no rank waits forever in a reduction. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#ifdef MST_HAVE_MPI
#include <mpi.h>

static int active, rank, size, local_rank;

/* Launched by mpirun/srun: the launchers' environment says so. A plain
 * `mst eval` never initialises MPI. */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

void cli_mpi_init(int *argc, char ***argv)
{
    if (!launched()) return;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) cli_die("MPI_Init failed");
    active = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
}

void cli_mpi_finalize(void)
{
    if (active) MPI_Finalize();
    active = 0;
}

int cli_mpi_rank(void) { return active ? rank : 0; }
int cli_mpi_size(void) { return active ? size : 1; }
int cli_mpi_local_rank(void) { return active ? local_rank : 0; }

void cli_mpi_abort(int status)
{
    if (active && size > 1) MPI_Abort(MPI_COMM_WORLD, status);
}

const char *cli_mpi_who(char *buf, size_t n)
{
    if (!active || size < 2) return "";
    snprintf(buf, n, "rank %d of %d: ", rank, size);
    return buf;
}

void cli_mpi_sum_long(long *v, int n)
{
    if (active && size > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
}

void cli_mpi_sum_u64(uint64_t *v, int n)
{
    if (active && size > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
}

double cli_mpi_max(double x)
{
    if (active && size > 1) MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return x;
}

#else

void cli_mpi_init(int *argc, char ***argv) { (void)argc, (void)argv; }
void cli_mpi_finalize(void) {}
int cli_mpi_rank(void) { return 0; }
int cli_mpi_size(void) { return 1; }
int cli_mpi_local_rank(void) { return 0; }
void cli_mpi_abort(int status) { (void)status; }
const char *cli_mpi_who(char *buf, size_t n) { (void)buf, (void)n; return ""; }
void cli_mpi_sum_long(long *v, int n) { (void)v, (void)n; }
void cli_mpi_sum_u64(uint64_t *v, int n) { (void)v, (void)n; }
double cli_mpi_max(double x) { return x; }

#endif
