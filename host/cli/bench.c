/* mst bench: batch-1 latency (MLPerf SingleStream style: percentiles over
 * single-image queries), throughput at batch B (Offline style), where the
 * time goes by op family, the work counted against a measured floor, and the
 * peak memory. Inputs are random normal images, never zeros, or the
 * images of --input FILE.npy. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../model/synth.h"
#include "../percentile.h"
#include "cli.h"

static const char *family_names[MST_NUM_FAMILIES] = {"synapse (GEMM + IF)", "IF scans", "window attention", "the rest"};

/* Box-Muller on a seeded LCG: reproducible random inputs. */
static void random_images(float *x, long n, uint64_t seed)
{
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (long i = 0; i < n; i += 2) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = ((s >> 11) + 1.0) / 9007199254740993.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (s >> 11) / 9007199254740992.0, r = sqrt(-2.0 * log(u1));
        x[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
}

/* --input FILE.npy: its images, repeated as often as it takes to fill n. */
static void given_images(const char *path, const mst_arch *a, float *x, long n, long img)
{
    mst_npy in;
    mst_error err = {0};
    if (mst_npy_read(path, &in, &err) != MST_OK) cli_fail(&err);
    cli_check_input(&in, a, path);
    for (long i = 0; i < n; i++) memcpy(x + i * img, in.data + i % in.shape[0] * img, sizeof(float) * (size_t)img);
    mst_npy_free(&in);
}

typedef struct {
    double p50, p90, p99, mean, device_ms;
} latency;

/* Batch-1 queries after warm-up: host wall time per query; device compute
 * time from the op timers (a second pass, so the timers never touch the
 * wall-clock numbers). */
static latency single_stream(mst_engine *e, const float *x, long img, float *cum, int warmup, int iters,
                             double family_ms[MST_NUM_FAMILIES])
{
    mst_error err = {0};
    double *t = malloc(sizeof(double) * (size_t)iters), sum = 0;
    for (int i = 0; i < warmup; i++)
        if (mst_engine_run(e, x, 1, (uint64_t)i, cum, &err) != MST_OK) cli_fail(&err);
    for (int i = 0; i < iters; i++) {
        double t0 = cli_now();
        if (mst_engine_run(e, x + (i % 8) * img, 1, (uint64_t)i, cum, &err) != MST_OK) cli_fail(&err);
        sum += (t[i] = (cli_now() - t0) * 1e3);
    }
    latency l = {.mean = sum / iters};
    l.p50 = mst_percentile(t, iters, 50), l.p90 = mst_percentile(t, iters, 90), l.p99 = mst_percentile(t, iters, 99);
    mst_engine_set_profiling(e, 1);
    double ms[MST_NUM_FAMILIES], total[MST_NUM_FAMILIES] = {0};
    if (mst_engine_profile(e, ms, &err) != MST_OK) cli_fail(&err); /* clears */
    for (int i = 0; i < iters; i++) { /* collected per query, so timers never pile up */
        if (mst_engine_run(e, x + (i % 8) * img, 1, (uint64_t)i, cum, &err) != MST_OK) cli_fail(&err);
        if (mst_engine_profile(e, ms, &err) != MST_OK) cli_fail(&err);
        for (int f = 0; f < MST_NUM_FAMILIES; f++) total[f] += ms[f];
    }
    mst_engine_set_profiling(e, 0);
    for (int f = 0; f < MST_NUM_FAMILIES; f++) l.device_ms += total[f] / iters, family_ms[f] = total[f] / iters;
    free(t);
    return l;
}

/* Images per second at batch B over `iters` batches after warm-up. */
static double offline(mst_engine *e, const float *x, int B, float *cum, int warmup, int iters)
{
    mst_error err = {0};
    for (int i = 0; i < warmup; i++)
        if (mst_engine_run(e, x, B, (uint64_t)i * B, cum, &err) != MST_OK) cli_fail(&err);
    double t0 = cli_now();
    for (int i = 0; i < iters; i++)
        if (mst_engine_run(e, x, B, (uint64_t)i * B, cum, &err) != MST_OK) cli_fail(&err);
    return (double)B * iters / (cli_now() - t0);
}

/* --arch NAME: weights from the seeded generator, through a temporary file. */
static mst_model *bench_model(const cli_args *a, const char *arch, uint64_t seed)
{
    if (!arch) return cli_load(a->model, a->img_size, a->dataset);
    const mst_synth_arch *sa = mst_synth_find(arch);
    if (!sa) cli_die("--arch must be one of %s, got \"%s\"", mst_synth_names(), arch);
    char path[4096];
    snprintf(path, sizeof path, "%s/mst-bench-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path); /* a fresh file of ours, not a name someone could have placed */
    if (fd < 0) cli_die("%s: cannot create a temporary file for the %s weights", path, arch);
    close(fd);
    mst_error err = {0};
    mst_model *m = NULL;
    mst_status r = mst_synth_write(sa, seed, path, &err);
    if (r == MST_OK) r = mst_model_load(path, NULL, &m, &err);
    unlink(path);
    if (r != MST_OK) cli_fail(&err);
    return m;
}

typedef struct {
    const char *name, *device, *precision;
    char sites[64];     /* the mask sites the engine used */
    int B, T, Tc, graphs, fused, counts, warmup, iters;
    double p;
    latency lat;
    double rate, family_ms[MST_NUM_FAMILIES], macs_step, macs_once, bytes_step, floor, peak_bytes;
    int has_ops; /* the backend counts its ops' work (CPU) */
    mst_op_work ops[MST_NUM_OP_KINDS];
    double op_floor[MST_NUM_OP_KINDS];
} bench_result;

static const char *op_names[MST_NUM_OP_KINDS] = {"synapse", "IF scans", "window attention", "layout copies"};
static const char *op_units[MST_NUM_OP_KINDS] = {"adds", "bytes", "element ops", "bytes"};
static const char *op_floor_names[MST_NUM_OP_KINDS] = {"rows added from L1", "copy bandwidth", "rows added from L1",
                                                       "copy bandwidth"};

/* Each op kind's rate over the throughput runs against its own floor. */
static void print_ops(const bench_result *r)
{
    printf("op kinds against their own floors (every thread, over the throughput runs):\n");
    for (int k = 0; k < MST_NUM_OP_KINDS; k++) {
        const mst_op_work *w = &r->ops[k];
        if (w->seconds <= 0) continue;
        double rate = w->units / w->seconds;
        printf("  %-17s %10.4g %-11s in %9.3f ms = %10.4g /s; floor %10.4g /s (%s): %6.2f %%\n", op_names[k], w->units,
               op_units[k], w->seconds * 1e3, rate, r->op_floor[k], op_floor_names[k], 100.0 * rate / r->op_floor[k]);
    }
}

static void print_result(const bench_result *r)
{
    double flop = 2.0 * (r->macs_step * r->T + r->macs_once);
    printf("%s on %s (%s%s%s%s): T = %d in chunks of %d, mask ratio %g at %s, %d warm-up + %d timed runs\n", r->name,
           r->device, r->precision, r->graphs ? ", CUDA graphs" : "", r->fused == MST_FUSED_WGMMA ? ", fused synapse (wgmma)"
           : r->fused                  ? ", fused synapse (wmma)"
                                       : "",
           r->counts ? ", spike counts" : "", r->T, r->Tc, r->p, r->sites, r->warmup, r->iters);
    printf("work: %.3g MAC per image-step + %.3g once = %.4g GFLOP per image (dense-equivalent); %.3g bytes per "
           "image-step moved at least (%.0f FLOP/byte)\n", r->macs_step, r->macs_once, flop / 1e9, r->bytes_step,
           2.0 * r->macs_step / r->bytes_step);
    printf("batch 1 latency (ms): p50 %.3f  p90 %.3f  p99 %.3f  mean %.3f; device compute %.3f\n", r->lat.p50, r->lat.p90,
           r->lat.p99, r->lat.mean, r->lat.device_ms);
    printf("breakdown of one batch-1 query (ms):");
    for (int f = 0; f < MST_NUM_FAMILIES; f++) printf("  %s %.3f", family_names[f], r->family_ms[f]);
    printf("\nthroughput at batch %d: %.2f images/s = %.1f timestep-images/s = %.4g FLOP/s\n", r->B, r->rate,
           r->rate * r->T, r->rate * flop);
    printf("floor: measured matrix-product rate %.4g FLOP/s -> %.2f images/s; achieved %.2f %% of it\n", r->floor,
           r->floor / flop, 100.0 * r->rate * flop / r->floor);
    printf("peak memory held by the backend: %.1f MiB\n", r->peak_bytes / 1048576.0);
    if (r->has_ops) print_ops(r);
}

static void write_json(const char *path, const bench_result *r)
{
    double flop = 2.0 * (r->macs_step * r->T + r->macs_once);
    json_t *fam = json_object();
    for (int f = 0; f < MST_NUM_FAMILIES; f++) json_object_set_new(fam, family_names[f], json_real(r->family_ms[f]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:b, s:b, s:b, s:f, s:i, s:i, s:{s:f, s:f, s:f, s:f, s:f}, s:o, "
                          "s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                          "model", r->name, "device", r->device, "precision", r->precision, "batch", r->B, "timesteps",
                          r->T, "time_chunk", r->Tc, "cuda_graphs", r->graphs, "fused_synapse", r->fused != 0, "spike_counts",
                          r->counts, "mask_ratio", r->p,
                          "warmup", r->warmup, "iters", r->iters, "latency_ms", "p50", r->lat.p50, "p90", r->lat.p90,
                          "p99", r->lat.p99, "mean", r->lat.mean, "device_compute", r->lat.device_ms, "breakdown_ms", fam,
                          "images_per_second", r->rate, "timestep_images_per_second", r->rate * r->T, "flop_per_image",
                          flop, "macs_per_step", r->macs_step, "bytes_per_step", r->bytes_step, "floor_flops", r->floor, "floor_fraction",
                          r->rate * flop / r->floor, "peak_bytes", r->peak_bytes);
    json_object_set_new(o, "mask_sites", json_string(r->sites));
    if (r->has_ops) {
        json_t *ops = json_object();
        for (int k = 0; k < MST_NUM_OP_KINDS; k++)
            json_object_set_new(ops, op_names[k],
                                json_pack("{s:s, s:f, s:f, s:f, s:s}", "unit", op_units[k], "units", r->ops[k].units,
                                          "seconds", r->ops[k].seconds, "floor_per_second", r->op_floor[k], "floor",
                                          op_floor_names[k]));
        json_object_set_new(o, "op_floors", ops);
    }
    if (json_dump_file(o, path, JSON_INDENT(2)) != 0) cli_die("%s: cannot write", path);
    json_decref(o);
}

int cli_bench(int argc, char **argv)
{
    /* --arch, --warmup, --iters and --json are bench's own; the rest is shared */
    const char *arch = NULL, *json = NULL, *input = NULL;
    int warmup = 2, iters = 20, keep = 1;
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    rest[0] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int own = !strcmp(o, "--arch") || !strcmp(o, "--warmup") || !strcmp(o, "--iters") || !strcmp(o, "--json") ||
                  !strcmp(o, "--input");
        if (!own) {
            rest[keep++] = argv[i];
            continue;
        }
        if (!v) cli_die("%s needs a value", o);
        if (!strcmp(o, "--arch")) arch = v;
        else if (!strcmp(o, "--json")) json = v;
        else if (!strcmp(o, "--input")) input = v;
        else {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < (strcmp(o, "--iters") ? 0 : 1) || n > 100000) cli_die("%s needs a count, got \"%s\"", o, v);
            *(strcmp(o, "--iters") ? &warmup : &iters) = (int)n;
        }
        i++;
    }
    rest[keep] = NULL;
    cli_args a;
    if (arch) { /* cli_parse insists on --model */
        rest[keep++] = "--model";
        rest[keep++] = (char *)arch;
        rest[keep] = NULL;
    }
    cli_parse(keep, rest, &a);
    if (optind != keep) cli_die("bench takes no positional arguments (got \"%s\")", rest[optind]);
    mst_model *m = bench_model(&a, arch, a.eo.seed);
    const mst_arch *ar = mst_model_arch(m);
    bench_result r = {.name = arch ? arch : a.model, .B = a.eo.max_batch, .T = a.eo.mode == MST_MODE_ANN ? 1 : a.eo.timesteps,
                      .warmup = warmup, .iters = iters, .p = a.eo.mask_ratio,
                      .precision = cli_precision_name(a.eo.precision), .graphs = a.eo.cuda_graphs, .fused = a.eo.fused_synapse,
                      .counts = a.eo.count_spikes};
    mst_model_macs(m, &r.macs_step, &r.macs_once);
    r.bytes_step = mst_model_bytes(m);
    long img = (long)ar->in_chans * ar->img_size * ar->img_size;
    long nimg = a.eo.max_batch > 8 ? a.eo.max_batch : 8;
    float *x = malloc(sizeof(float) * (size_t)(nimg * img));
    float *cum = malloc(sizeof(float) * (size_t)r.T * (size_t)nimg * ar->num_classes);
    if (!x || !cum) cli_die("out of memory for %ld images", nimg);
    if (input)
        given_images(input, ar, x, nimg, img);
    else
        random_images(x, nimg * img, a.eo.seed + 1);
    mst_error err = {0};
    mst_engine_opts one = a.eo;
    one.max_batch = 1;
    mst_engine *e = cli_engine(m, &one);
    r.device = mst_engine_device(e);
    r.lat = single_stream(e, x, img, cum, warmup, iters, r.family_ms);
    mst_engine_free(e);
    e = cli_engine(m, &a.eo);
    r.Tc = mst_engine_time_chunk(e); /* the throughput run's (memory may lower it at batch B) */
    mst_mask_sites_name(mst_engine_mask_sites(e), r.sites, sizeof r.sites);
    r.has_ops = mst_engine_op_work(e, r.ops, &err) == MST_OK; /* clears the counts */
    r.rate = offline(e, x, a.eo.max_batch, cum, warmup > 0 ? 1 : 0, iters > 4 ? iters / 4 : 1);
    if (r.has_ops && (mst_engine_op_work(e, r.ops, &err) != MST_OK || mst_engine_op_floors(e, r.op_floor, &err) != MST_OK))
        cli_fail(&err);
    r.peak_bytes = (double)mst_engine_peak_bytes(e);
    if (mst_engine_peak_flops(e, &r.floor, &err) != MST_OK) cli_fail(&err);
    if (!(r.floor > 0)) cli_die("the measured matrix-product rate is %g FLOP/s: no floor to compare with", r.floor);
    r.device = mst_engine_device(e);
    print_result(&r);
    if (json) write_json(json, &r);
    mst_engine_free(e);
    free(x), free(cum), free(rest);
    mst_model_free(m);
    return 0;
}
