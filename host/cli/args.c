#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void cli_die(const char *fmt, ...)
{
    va_list ap;
    char who[64];
    va_start(ap, fmt);
    fprintf(stderr, "mst: %s", cli_mpi_who(who, sizeof who));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    cli_mpi_abort(2); /* the other ranks would wait for this one forever */
    exit(2);
}

void cli_fail(const mst_error *err)
{
    char who[64];
    fprintf(stderr, "mst: %s%s\n", cli_mpi_who(who, sizeof who), err->msg[0] ? err->msg : mst_strerror(err->status));
    cli_mpi_abort(1);
    exit(1);
}

const char *cli_usage_text =
    "usage:\n"
    "  mst run --model FILE [--timesteps T] [--mask-ratio P] [--mask-sites LIST] [--seed S] [--mode snn|ann]\n"
    "          [--batch B] [--time-chunk C] [--img-size N] [--logits OUT.npy] [--stats [--results-file OUT.json]]\n"
    "          [--device auto|cpu|cuda[:N]] [--precision fp32|fp16|bf16] [--cuda-graphs] [--fused-synapse[=wmma|wgmma]]\n"
    "          INPUT.npy | IMAGE | FOLDER\n"
    "  mst eval --model FILE --data PATH [--timesteps T] [--mask-ratio P] [--mask-sites LIST] [--seed S]\n"
    "          [--mode snn|ann]\n"
    "          [--batch B] [--time-chunk C] [--report-steps LIST] [--results-file OUT.json|OUT.csv]\n"
    "          [--limit N] [--mean LIST] [--std LIST] [--stats] [--device D] [--precision P]\n"
    "          [--interpolation bilinear|bicubic] [--crop-pct F] [--workers J] [--shard K/N]\n"
    "          [--ground-truth FILE --synsets FILE] [--labels FILE]\n"
    "  mst bench --model FILE | --arch swin-t|fmnist|grid28 [--batch B] [--timesteps T] [--mask-ratio P]\n"
    "          [--mask-sites LIST] [--input IMAGES.npy]\n"
    "          [--device D] [--precision P] [--time-chunk C] [--stats] [--warmup N] [--iters N] [--json OUT]\n"
    "  mst info --model FILE [--img-size N]\n"
    "  mst convert IN.pth OUT.safetensors [--dataset imagenet|cifar10|cifar100|NAME] [--img-size N]\n"
    "  mst merge OUT.json|OUT.csv PART.json... [--model FILE]\n"
    "--model: a safetensors file, or the authors' .pth (torch.save) read directly; with a .pth,\n"
    "  --dataset NAME sets mean/std, the eval transform and class names (else the file name's\n"
    "  imagenet/cifar10/cifar100, else the --mean/--std/--interpolation/--crop-pct flags)\n"
    "--mask-sites: where RSM drops spikes, from q, k, attn (the released code's sites, the default\n"
    "  unless the checkpoint names its own), fc1, fc2 (the MLP's inputs), or all\n";

void cli_usage(void)
{
    fputs(cli_usage_text, stderr);
    exit(2);
}

void cli_parse_options(int argc, char **argv, cli_args *a)
{
    mst_error err = {0};
    if (cli_args_parse(argc, argv, a, &err) != MST_OK) cli_die("%s", err.msg);
    if (a->help) cli_usage();
}

void cli_parse(int argc, char **argv, cli_args *a)
{
    cli_parse_options(argc, argv, a);
    if (!a->model) cli_die("missing --model FILE");
}

mst_model *cli_load(const char *path, int img_size, const char *dataset)
{
    mst_error err = {0};
    mst_model *m = NULL;
    mst_load_opts lo = {.img_size = img_size, .dataset = dataset};
    if (mst_model_load(path, &lo, &m, &err) != MST_OK) cli_fail(&err);
    return m;
}

static double gib(size_t b) { return (double)b / (double)((size_t)1 << 30); }

mst_engine *cli_engine(const mst_model *m, const mst_engine_opts *o)
{
    mst_engine *e;
    mst_error err = {0};
    if (mst_engine_create(m, o, &e, &err) != MST_OK) cli_fail(&err);
    mst_memory_plan p;
    mst_engine_memory(e, &p);
    if (mst_engine_time_chunk(e) < p.requested_chunk)
        fprintf(stderr, "mst: a time chunk of %d steps does not fit in the %.2f GiB available on %s; running chunks of %d "
                        "(%.2f GiB)\n", p.requested_chunk, gib(p.available), mst_engine_device(e), mst_engine_time_chunk(e),
                gib(p.planned));
    return e;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
