/* The command line's shared pieces. Only host/cli prints and exits. */
#ifndef MST_CLI_H
#define MST_CLI_H

#include "../data/dataset.h"
#include "../data/npy.h"
#include "../data/transform.h"
#include "mst/mst.h"

typedef struct {
    const char *model, *logits, *data, *results_file, *report_steps;
    const char *mean, *std;
    const char *dataset;       /* --dataset: metadata of a .pth checkpoint */
    const char *interpolation; /* --interpolation, or NULL */
    double crop_pct;           /* --crop-pct, or 0 */
    const char *ground_truth, *synsets, *labels; /* devkit flat layout; class names */
    long limit;
    int shard, shards;         /* --shard K/N: part K of N, 0-based */
    int workers;               /* decode threads */
    int img_size, stats;
    int device_indexed;        /* --device cuda:N named its device */
    int help;                  /* --help */
    mst_engine_opts eo;
} cli_args;

/* A usage or input error: one line, exit status 2. */
__attribute__((format(printf, 1, 2), noreturn)) void cli_die(const char *fmt, ...);
/* Dies unless x holds images of the model's shape, [N][C][H][W] with N >= 1. */
void cli_check_input(const mst_npy *x, const mst_arch *a, const char *path);
/* A library error: its one-line message, exit status 1. */
__attribute__((noreturn)) void cli_fail(const mst_error *err);
__attribute__((noreturn)) void cli_usage(void);
extern const char *cli_usage_text;

/* Parses every option of every command (options.c); commands check which
 * they need. Operands are left from optind on, as getopt leaves them. */
mst_status cli_args_parse(int argc, char **argv, cli_args *a, mst_error *err);
/* --report-steps: "1,2,8" -> ascending steps in [1, T]; NULL: powers of two
 * up to T, and T. steps holds T entries. */
mst_status cli_steps_parse(const char *list, int T, int *steps, int *n, mst_error *err);
/* --mean / --std: C comma-separated finite numbers (positive: above 0). */
mst_status cli_values_parse(const char *flag, const char *list, int C, int positive, float *v, mst_error *err);
/* The same, or the one-line error and exit; cli_parse also insists on --model. */
void cli_parse_options(int argc, char **argv, cli_args *a);
void cli_parse(int argc, char **argv, cli_args *a);
/* The model at path, or the one-line error; dataset: --dataset (.pth only). */
mst_model *cli_load(const char *path, int img_size, const char *dataset);
/* The engine for these options, or the one-line error; says on stderr when
 * it runs a shorter time chunk than asked for, to fit the device's memory. */
mst_engine *cli_engine(const mst_model *m, const mst_engine_opts *o);
double cli_now(void);
/* "fp32", "fp16" or "bf16", as --precision takes it; and back (-1: none). */
const char *cli_precision_name(mst_precision p);
int cli_precision_of(const char *s);

int cli_eval(int argc, char **argv);

/* mst eval across MPI ranks (mpi.c): no-ops in a build without MPI or a
 * process not started by a launcher. Sums are over all ranks, in place. */
void cli_mpi_init(int *argc, char ***argv);
void cli_mpi_finalize(void);
int cli_mpi_rank(void);
int cli_mpi_size(void);
int cli_mpi_local_rank(void);
void cli_mpi_abort(int status);
const char *cli_mpi_who(char *buf, size_t n); /* "rank K of N: ", or "" */
void cli_mpi_sum_long(long *v, int n);
void cli_mpi_sum_u64(uint64_t *v, int n);
double cli_mpi_max(double x);
int cli_bench(int argc, char **argv);
int cli_merge(int argc, char **argv);

/* Image i decoded, converted to the model's channels and transformed into x;
 * a file that cannot be read is reported on stderr and skipped (returns 0). */
int cli_prepare(const mst_dataset *d, long i, const mst_transform *tf, float *x);
/* The eval transform from the flags, else the checkpoint's metadata. */
void cli_transform(const cli_args *a, const mst_arch *arch, mst_transform *tf);
/* Per-channel values from --mean/--std (flag), else the checkpoint's metadata. */
float *cli_channel_values(const char *flag, const char *list, const float *meta, int C);

/* The prefetching input pipeline of mst eval (pipeline.c). */
typedef struct cli_pipeline cli_pipeline;
/* Images [lo, hi) of d in batches of `batch`, decoded by `workers` threads
 * (0: in the caller's thread, when it asks for the batch). NULL: no memory. */
cli_pipeline *cli_pipeline_start(mst_engine *e, const mst_dataset *d, const mst_transform *tf, long lo, long hi,
                                 int batch, int workers);
/* The next batch, in order: images [*first, *first + *n), their tensors and
 * read flags; 0 after the last. Valid until cli_pipeline_release. */
int cli_pipeline_next(cli_pipeline *p, long *first, int *n, float **x, int **ok);
void cli_pipeline_release(cli_pipeline *p);
/* Stops the workers; *skipped: images that could not be read. */
void cli_pipeline_stop(cli_pipeline *p, long *skipped);

/* --stats: the energy table on stdout, and its JSON form (caller owns it). */
void cli_print_stats(const mst_stats *s);
struct json_t;
struct json_t *cli_stats_json(const mst_stats *s);

#endif
