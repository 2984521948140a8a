#include <errno.h>
#include <getopt.h>
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
    "          [--mask-sites LIST]\n"
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

static long int_arg(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) cli_die("--%s needs an integer in [%ld, %ld], got \"%s\"", opt, lo, hi, s);
    return v;
}

static double real_arg(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) cli_die("--%s needs a number in [%g, %g], got \"%s\"", opt, lo, hi, s);
    return v;
}

static const struct option options[] = {
    {"model", 1, 0, 'm'},      {"timesteps", 1, 0, 'T'}, {"mask-ratio", 1, 0, 'p'},   {"seed", 1, 0, 's'},
    {"mode", 1, 0, 'M'},       {"batch", 1, 0, 'b'},     {"time-chunk", 1, 0, 'c'},   {"logits", 1, 0, 'o'},
    {"img-size", 1, 0, 'i'},   {"data", 1, 0, 'd'},      {"results-file", 1, 0, 'r'}, {"report-steps", 1, 0, 'R'},
    {"limit", 1, 0, 'l'},      {"mean", 1, 0, 'u'},      {"std", 1, 0, 'v'},          {"help", 0, 0, 'h'},
    {"stats", 0, 0, 'S'},      {"device", 1, 0, 'D'},    {"precision", 1, 0, 'P'},
    {"interpolation", 1, 0, 'I'}, {"crop-pct", 1, 0, 'C'},   {"ground-truth", 1, 0, 'g'}, {"synsets", 1, 0, 'y'},
    {"labels", 1, 0, 'L'},     {"shard", 1, 0, 'k'},     {"workers", 1, 0, 'w'},      {"cuda-graphs", 0, 0, 'G'},
    {"fused-synapse", 2, 0, 'F'}, {"mask-sites", 1, 0, 'x'}, {"dataset", 1, 0, 'a'}, {0, 0, 0, 0}};

/* K/N, 0 <= K < N */
static void shard_arg(const char *s, cli_args *a)
{
    char *end;
    long k = strtol(s, &end, 10), n = *end == '/' ? strtol(end + 1, &end, 10) : 0;
    if (*end || n < 1 || k < 0 || k >= n || n > 1000000) cli_die("--shard needs K/N with 0 <= K < N, got \"%s\"", s);
    a->shard = (int)k, a->shards = (int)n;
}

/* auto | cpu | cuda | cuda:N */
static void device_arg(const char *s, cli_args *a)
{
    mst_engine_opts *o = &a->eo;
    if (!strcmp(s, "auto") || !strcmp(s, "cpu")) {
        o->device = strcmp(s, "cpu") ? MST_DEVICE_AUTO : MST_DEVICE_CPU;
        return;
    }
    if (strncmp(s, "cuda", 4) || (s[4] && s[4] != ':')) cli_die("--device must be auto, cpu, cuda or cuda:N, got \"%s\"", s);
    o->device = MST_DEVICE_CUDA;
    o->device_index = s[4] ? (int)int_arg("device", s + 5, 0, 1023) : 0;
    a->device_indexed = s[4] != 0;
}

static const char *precision_names[] = {"fp32", "fp16", "bf16"};

const char *cli_precision_name(mst_precision p) { return precision_names[p]; }

int cli_precision_of(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, precision_names[i])) return i;
    return -1;
}

static void precision_arg(const char *s, mst_engine_opts *o)
{
    int p = cli_precision_of(s);
    if (p < 0) cli_die("--precision must be fp32, fp16 or bf16, got \"%s\"", s);
    o->precision = (mst_precision)p;
}

static void option(cli_args *a, int c, char **argv)
{
    switch (c) {
    case 'm': a->model = optarg; break;
    case 'T': a->eo.timesteps = (int)int_arg("timesteps", optarg, 1, 65535); break;
    case 'p': a->eo.mask_ratio = real_arg("mask-ratio", optarg, 0.0, 1.0); break;
    case 's': a->eo.seed = (uint64_t)int_arg("seed", optarg, 0, 0x7fffffffffffffffL); break;
    case 'b': a->eo.max_batch = (int)int_arg("batch", optarg, 1, 1 << 20); break;
    case 'c': a->eo.time_chunk = (int)int_arg("time-chunk", optarg, 1, 65535); break;
    case 'o': a->logits = optarg; break;
    case 'i': a->img_size = (int)int_arg("img-size", optarg, 1, 1 << 16); break;
    case 'd': a->data = optarg; break;
    case 'r': a->results_file = optarg; break;
    case 'R': a->report_steps = optarg; break;
    case 'l': a->limit = int_arg("limit", optarg, 1, 0x7fffffffffffffffL); break;
    case 'u': a->mean = optarg; break;
    case 'v': a->std = optarg; break;
    case 'S': a->stats = a->eo.count_spikes = 1; break;
    case 'D': device_arg(optarg, a); break;
    case 'P': precision_arg(optarg, &a->eo); break;
    case 'I':
        if (strcmp(optarg, "bilinear") && strcmp(optarg, "bicubic"))
            cli_die("--interpolation must be bilinear or bicubic, got \"%s\"", optarg);
        a->interpolation = optarg;
        break;
    case 'C': a->crop_pct = real_arg("crop-pct", optarg, 0.05, 1.0); break;
    case 'g': a->ground_truth = optarg; break;
    case 'y': a->synsets = optarg; break;
    case 'L': a->labels = optarg; break;
    case 'k': shard_arg(optarg, a); break;
    case 'w': a->workers = (int)int_arg("workers", optarg, 0, 256); break;
    case 'G': a->eo.cuda_graphs = 1; break;
    case 'a':
        if (!*optarg) cli_die("--dataset needs a name (imagenet, cifar10, cifar100 or another)");
        a->dataset = optarg;
        break;
    case 'F':
        if (!optarg || !strcmp(optarg, "wmma"))
            a->eo.fused_synapse = MST_FUSED_WMMA;
        else if (!strcmp(optarg, "wgmma"))
            a->eo.fused_synapse = MST_FUSED_WGMMA;
        else
            cli_die("--fused-synapse takes wmma or wgmma, got \"%s\"", optarg);
        break;
    case 'x': {
        mst_error err = {0};
        if (mst_mask_sites_parse(optarg, &a->eo.mask_sites, &err) != MST_OK) cli_die("--mask-sites: %s", err.msg);
        break;
    }
    case 'M':
        if (strcmp(optarg, "snn") && strcmp(optarg, "ann")) cli_die("--mode must be snn or ann, got \"%s\"", optarg);
        a->eo.mode = strcmp(optarg, "ann") ? MST_MODE_SNN : MST_MODE_ANN;
        break;
    case 'h': cli_usage();
    default: cli_die("unknown option \"%s\"", argv[optind - 1]);
    }
}

void cli_parse_options(int argc, char **argv, cli_args *a)
{
    *a = (cli_args){.eo = {.mode = MST_MODE_SNN, .timesteps = 64, .max_batch = 8}, .shards = 1, .workers = 2};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) option(a, c, argv);
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
