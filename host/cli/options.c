/* The command line's parsing, apart from the commands: every function here
 * returns a status and a one-line message, so that the fuzz target
 * (tests/fuzz/fuzz_cli.c) can run it on any argv without exiting. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "../error.h"

static mst_status int_arg(const char *opt, const char *s, long lo, long hi, long *v, mst_error *err)
{
    char *end;
    errno = 0;
    *v = strtol(s, &end, 10);
    if (errno || end == s || *end || *v < lo || *v > hi)
        return mst_fail(err, MST_ERR_ARG, "--%s needs an integer in [%ld, %ld], got \"%s\"", opt, lo, hi, s);
    return MST_OK;
}

static mst_status real_arg(const char *opt, const char *s, double lo, double hi, double *v, mst_error *err)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || end == s || *end || !(*v >= lo && *v <= hi))
        return mst_fail(err, MST_ERR_ARG, "--%s needs a number in [%g, %g], got \"%s\"", opt, lo, hi, s);
    return MST_OK;
}

/* An int option in [lo, hi], stored at *out. */
static mst_status int_opt(const char *opt, const char *s, long lo, long hi, int *out, mst_error *err)
{
    long v;
    mst_status r = int_arg(opt, s, lo, hi, &v, err);
    if (r == MST_OK) *out = (int)v;
    return r;
}

/* getopt values outside the characters, so that an unknown short option
 * (optopt a character) tells apart from a long one given a value it does not
 * take (optopt one of these) */
enum {
    O_MODEL = 256, O_TIMESTEPS, O_MASK_RATIO, O_SEED, O_MODE, O_BATCH, O_TIME_CHUNK, O_LOGITS, O_IMG_SIZE, O_DATA,
    O_RESULTS_FILE, O_REPORT_STEPS, O_LIMIT, O_MEAN, O_STD, O_HELP, O_STATS, O_DEVICE, O_PRECISION, O_INTERPOLATION,
    O_CROP_PCT, O_GROUND_TRUTH, O_SYNSETS, O_LABELS, O_SHARD, O_WORKERS, O_CUDA_GRAPHS, O_FUSED_SYNAPSE, O_MASK_SITES,
    O_DATASET
};

static const struct option options[] = {
    {"model", 1, 0, O_MODEL},      {"timesteps", 1, 0, O_TIMESTEPS}, {"mask-ratio", 1, 0, O_MASK_RATIO},   {"seed", 1, 0, O_SEED},
    {"mode", 1, 0, O_MODE},       {"batch", 1, 0, O_BATCH},     {"time-chunk", 1, 0, O_TIME_CHUNK},   {"logits", 1, 0, O_LOGITS},
    {"img-size", 1, 0, O_IMG_SIZE},   {"data", 1, 0, O_DATA},      {"results-file", 1, 0, O_RESULTS_FILE}, {"report-steps", 1, 0, O_REPORT_STEPS},
    {"limit", 1, 0, O_LIMIT},      {"mean", 1, 0, O_MEAN},      {"std", 1, 0, O_STD},          {"help", 0, 0, O_HELP},
    {"stats", 0, 0, O_STATS},      {"device", 1, 0, O_DEVICE},    {"precision", 1, 0, O_PRECISION},
    {"interpolation", 1, 0, O_INTERPOLATION}, {"crop-pct", 1, 0, O_CROP_PCT},   {"ground-truth", 1, 0, O_GROUND_TRUTH}, {"synsets", 1, 0, O_SYNSETS},
    {"labels", 1, 0, O_LABELS},     {"shard", 1, 0, O_SHARD},     {"workers", 1, 0, O_WORKERS},      {"cuda-graphs", 0, 0, O_CUDA_GRAPHS},
    {"fused-synapse", 2, 0, O_FUSED_SYNAPSE}, {"mask-sites", 1, 0, O_MASK_SITES}, {"dataset", 1, 0, O_DATASET}, {0, 0, 0, 0}};

/* K/N, 0 <= K < N */
static mst_status shard_arg(const char *s, cli_args *a, mst_error *err)
{
    char *end;
    errno = 0;
    long k = strtol(s, &end, 10), n = end != s && *end == '/' ? strtol(end + 1, &end, 10) : 0;
    if (errno || *end || n < 1 || k < 0 || k >= n || n > 1000000)
        return mst_fail(err, MST_ERR_ARG, "--shard needs K/N with 0 <= K < N, got \"%s\"", s);
    a->shard = (int)k, a->shards = (int)n;
    return MST_OK;
}

/* auto | cpu | cuda | cuda:N */
static mst_status device_arg(const char *s, cli_args *a, mst_error *err)
{
    mst_engine_opts *o = &a->eo;
    if (!strcmp(s, "auto") || !strcmp(s, "cpu")) {
        o->device = strcmp(s, "cpu") ? MST_DEVICE_AUTO : MST_DEVICE_CPU;
        return MST_OK;
    }
    if (strncmp(s, "cuda", 4) || (s[4] && s[4] != ':'))
        return mst_fail(err, MST_ERR_ARG, "--device must be auto, cpu, cuda or cuda:N, got \"%s\"", s);
    o->device = MST_DEVICE_CUDA;
    o->device_index = 0;
    a->device_indexed = s[4] != 0;
    return s[4] ? int_opt("device", s + 5, 0, 1023, &o->device_index, err) : MST_OK;
}

/* One word out of a fixed set: its position, or -1. */
static int one_of(const char *s, const char *const *words, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, words[i])) return i;
    return -1;
}

static const char *const precision_names[] = {"fp32", "fp16", "bf16"};

const char *cli_precision_name(mst_precision p) { return precision_names[p]; }

int cli_precision_of(const char *s) { return one_of(s, precision_names, 3); }

static mst_status word_opt(cli_args *a, int c, const char *s, mst_error *err)
{
    static const char *const interp[] = {"bilinear", "bicubic"}, *const fused[] = {"wmma", "wgmma"},
                              *const modes[] = {"snn", "ann"};
    int i;
    switch (c) {
    case O_PRECISION:
        if ((i = cli_precision_of(s)) < 0)
            return mst_fail(err, MST_ERR_ARG, "--precision must be fp32, fp16 or bf16, got \"%s\"", s);
        a->eo.precision = (mst_precision)i;
        return MST_OK;
    case O_INTERPOLATION:
        if (one_of(s, interp, 2) < 0) return mst_fail(err, MST_ERR_ARG, "--interpolation must be bilinear or bicubic, got \"%s\"", s);
        a->interpolation = s;
        return MST_OK;
    case O_FUSED_SYNAPSE:
        if ((i = s ? one_of(s, fused, 2) : 0) < 0) return mst_fail(err, MST_ERR_ARG, "--fused-synapse takes wmma or wgmma, got \"%s\"", s);
        a->eo.fused_synapse = i ? MST_FUSED_WGMMA : MST_FUSED_WMMA;
        return MST_OK;
    case O_MODE:
        if ((i = one_of(s, modes, 2)) < 0) return mst_fail(err, MST_ERR_ARG, "--mode must be snn or ann, got \"%s\"", s);
        a->eo.mode = i ? MST_MODE_ANN : MST_MODE_SNN;
        return MST_OK;
    case O_DATASET:
        if (!*s) return mst_fail(err, MST_ERR_ARG, "--dataset needs a name (imagenet, cifar10, cifar100 or another)");
        a->dataset = s;
        return MST_OK;
    case O_MASK_SITES: {
        mst_status r = mst_mask_sites_parse(s, &a->eo.mask_sites, err);
        if (r != MST_OK) {
            mst_error inner = *err;
            mst_fail(err, r, "--mask-sites: %s", inner.msg);
        }
        return r;
    }
    default: return mst_fail(err, MST_ERR_ARG, "unknown option");
    }
}

static mst_status number_opt(cli_args *a, int c, const char *s, mst_error *err)
{
    long v;
    mst_status r;
    switch (c) {
    case O_TIMESTEPS: return int_opt("timesteps", s, 1, 65535, &a->eo.timesteps, err);
    case O_MASK_RATIO: return real_arg("mask-ratio", s, 0.0, 1.0, &a->eo.mask_ratio, err);
    case O_SEED:
        if ((r = int_arg("seed", s, 0, 0x7fffffffffffffffL, &v, err)) == MST_OK) a->eo.seed = (uint64_t)v;
        return r;
    case O_BATCH: return int_opt("batch", s, 1, 1 << 20, &a->eo.max_batch, err);
    case O_TIME_CHUNK: return int_opt("time-chunk", s, 1, 65535, &a->eo.time_chunk, err);
    case O_IMG_SIZE: return int_opt("img-size", s, 1, 1 << 16, &a->img_size, err);
    case O_LIMIT: return int_arg("limit", s, 1, 0x7fffffffffffffffL, &a->limit, err);
    case O_CROP_PCT: return real_arg("crop-pct", s, 0.05, 1.0, &a->crop_pct, err);
    case O_WORKERS: return int_opt("workers", s, 0, 256, &a->workers, err);
    case O_SHARD: return shard_arg(s, a, err);
    case O_DEVICE: return device_arg(s, a, err);
    default: return word_opt(a, c, s, err);
    }
}

/* What getopt refused: c is '?' or ':'; word, the argument it last consumed. */
static mst_status refused(int c, const char *word, mst_error *err)
{
    if (c == ':') return mst_fail(err, MST_ERR_ARG, "%s needs a value", word);
    if (optopt > 0 && optopt < 256) return mst_fail(err, MST_ERR_ARG, "unknown option \"-%c\" (options are --long)", optopt);
    if (optopt >= 256) return mst_fail(err, MST_ERR_ARG, "%s takes no value", word);
    return mst_fail(err, MST_ERR_ARG, "unknown option \"%s\"", word); /* or an ambiguous prefix */
}

static mst_status option(cli_args *a, int c, const char *arg, const char *word, mst_error *err)
{
    switch (c) {
    case O_MODEL: a->model = arg; break;
    case O_LOGITS: a->logits = arg; break;
    case O_DATA: a->data = arg; break;
    case O_RESULTS_FILE: a->results_file = arg; break;
    case O_REPORT_STEPS: a->report_steps = arg; break;
    case O_MEAN: a->mean = arg; break;
    case O_STD: a->std = arg; break;
    case O_GROUND_TRUTH: a->ground_truth = arg; break;
    case O_SYNSETS: a->synsets = arg; break;
    case O_LABELS: a->labels = arg; break;
    case O_STATS: a->stats = a->eo.count_spikes = 1; break;
    case O_CUDA_GRAPHS: a->eo.cuda_graphs = 1; break;
    case O_HELP: a->help = 1; break;
    case '?': case ':': return refused(c, word, err);
    default: return number_opt(a, c, arg, err);
    }
    return MST_OK;
}

mst_status cli_args_parse(int argc, char **argv, cli_args *a, mst_error *err)
{
    *a = (cli_args){.eo = {.mode = MST_MODE_SNN, .timesteps = 64, .max_batch = 8}, .shards = 1, .workers = 2};
    int c;
    mst_status r = MST_OK;
    opterr = 0;
    optind = 0; /* glibc: start afresh, whatever an earlier parse left */
    while (r == MST_OK && !a->help && (c = getopt_long(argc, argv, ":", options, NULL)) != -1)
        r = option(a, c, optarg, argv[optind - 1], err);
    return r;
}

mst_status cli_steps_parse(const char *list, int T, int *steps, int *n, mst_error *err)
{
    *n = 0;
    if (!list) {
        for (int t = 1; t < T; t *= 2) steps[(*n)++] = t;
        steps[(*n)++] = T;
        return MST_OK;
    }
    for (const char *p = list; *p;) {
        char *end;
        errno = 0;
        long t = strtol(p, &end, 10);
        if (errno || end == p || t < 1 || t > T || (*end && *end != ',') || (*n && t <= steps[*n - 1]) || (*end && !end[1]))
            return mst_fail(err, MST_ERR_ARG, "--report-steps needs ascending steps in [1, %d], got \"%s\"", T, list);
        steps[(*n)++] = (int)t;
        p = *end ? end + 1 : end;
    }
    return *n ? MST_OK : mst_fail(err, MST_ERR_ARG, "--report-steps needs ascending steps in [1, %d], got \"\"", T);
}

mst_status cli_values_parse(const char *flag, const char *list, int C, int positive, float *v, mst_error *err)
{
    const char *p = list;
    for (int c = 0; c < C; c++) {
        char *end;
        v[c] = strtof(p, &end);
        if (end == p || (c + 1 < C && *end != ',') || (c + 1 == C && *end))
            return mst_fail(err, MST_ERR_ARG, "--%s needs %d comma-separated numbers, got \"%s\"", flag, C, list);
        /* a NaN or infinite mean, or a std that is not positive, would make every input NaN or infinite */
        if (!isfinite(v[c]) || (positive && !(v[c] > 0)))
            return mst_fail(err, MST_ERR_ARG, "--%s needs finite numbers%s, got \"%s\"", flag, positive ? " above 0" : "",
                            list);
        p = end + 1;
    }
    return MST_OK;
}
