/* mst eval: accuracy over a labelled image set at chosen timesteps. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/dataset.h"
#include "../data/transform.h"
#include "cli.h"
#include "results.h"

/* Per-channel values from --mean/--std, or the checkpoint's metadata. */
float *cli_channel_values(const char *flag, const char *list, const float *meta, int C)
{
    float *v = malloc(sizeof(float) * (size_t)C);
    if (!v) cli_die("out of memory");
    if (!list) {
        if (!meta) cli_die("the checkpoint's metadata has no %s; pass --%s with %d values", flag, flag, C);
        memcpy(v, meta, sizeof(float) * (size_t)C);
        return v;
    }
    mst_error err = {0};
    if (cli_values_parse(flag, list, C, !strcmp(flag, "std"), v, &err) != MST_OK) cli_die("%s", err.msg);
    return v;
}

/* One progress line: rank 0's, for its part. */
static void progress(long done, long total, double t0)
{
    if (!isatty(2) || cli_mpi_rank() != 0) return;
    double dt = cli_now() - t0, rate = done / (dt > 0 ? dt : 1e-9);
    int bar = (int)(30 * done / total);
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld images  %.1f images/s  ETA %.0f s ", bar, "==============================",
            30 - bar, "", done, total, rate, (total - done) / rate);
    if (done == total) fputc('\n', stderr);
}

/* The eval transform: --interpolation / --crop-pct, else the checkpoint's
 * metadata (timm's names); neither: a plain bilinear resize (tools/train.py).
 * The caller frees tf->mean and tf->std. */
void cli_transform(const cli_args *a, const mst_arch *arch, mst_transform *tf)
{
    int C = arch->in_chans;
    *tf = (mst_transform){.channels = C, .size = arch->img_size, .mean = cli_channel_values("mean", a->mean, arch->mean, C),
                          .std = cli_channel_values("std", a->std, arch->std, C)};
    const char *ip = a->interpolation ? a->interpolation : arch->interpolation;
    double crop = a->crop_pct > 0 ? a->crop_pct : arch->crop_pct;
    if ((!ip || !*ip) && crop <= 0) return; /* MST_RESIZE_TENSOR_BILINEAR */
    tf->kind = MST_RESIZE_PIL;
    tf->filter = ip && !strcmp(ip, "bilinear") ? MST_FILTER_BILINEAR : MST_FILTER_BICUBIC;
    tf->crop_pct = crop > 0 ? crop : 0.875; /* timm's default */
}

/* Image i decoded, converted to the model's channels and transformed into x;
 * a file that cannot be read is reported and skipped (returns 0). */
int cli_prepare(const mst_dataset *d, long i, const mst_transform *tf, float *x)
{
    mst_image im;
    mst_error err = {0};
    mst_status r = mst_dataset_image(d, i, &im, &err);
    if (r == MST_OK) r = mst_image_to_channels(&im, tf->channels, &err);
    if (r == MST_OK) r = mst_transform_apply(tf, im.pixels, im.height, im.width, x, &err);
    mst_image_free(&im);
    if (r != MST_OK) fprintf(stderr, "%smst: skipped: %s\n", isatty(2) ? "\n" : "", err.msg);
    return r == MST_OK;
}

/* Runs the images of one batch that were read, in runs of consecutive
 * dataset positions (the masks are keyed by position). */
static void run_batch(mst_engine *e, tally *r, const mst_dataset *d, long first, int n, const float *x, const int *ok,
                      long img, float *cum)
{
    mst_error err = {0};
    int T = mst_engine_steps_out(e);
    for (int b = 0; b < n;) {
        if (!ok[b]) {
            b++;
            continue;
        }
        int end = b;
        while (end < n && ok[end]) end++;
        if (mst_engine_run(e, x + b * img, end - b, (uint64_t)(first + b), cum, &err) != MST_OK) cli_fail(&err);
        tally_count(r, cum, end - b, d->labels + first + b, T);
        b = end;
    }
}

/* Images [lo, hi) through the prefetching pipeline and the engine. */
static mst_engine *run_eval(const cli_args *a, mst_model *m, const mst_dataset *d, long lo, long hi, tally *r,
                            double *seconds, long *skipped)
{
    const mst_arch *arch = mst_model_arch(m);
    mst_transform tf;
    cli_transform(a, arch, &tf);
    mst_engine *e = cli_engine(m, &a->eo);
    long img = (long)arch->in_chans * arch->img_size * arch->img_size;
    float *cum = malloc(sizeof(float) * (size_t)mst_engine_steps_out(e) * (size_t)a->eo.max_batch * arch->num_classes);
    cli_pipeline *p = cli_pipeline_start(e, d, &tf, lo, hi, a->eo.max_batch, a->workers);
    if (!cum || !p) cli_die("out of memory for batches of %d images", a->eo.max_batch);
    double t0 = cli_now();
    long first;
    int n, *ok;
    float *x;
    while (cli_pipeline_next(p, &first, &n, &x, &ok)) {
        run_batch(e, r, d, first, n, x, ok, img, cum);
        cli_pipeline_release(p);
        progress(first + n - lo, hi - lo, t0);
    }
    *seconds = cli_now() - t0;
    cli_pipeline_stop(p, skipped);
    free(cum), free((float *)tf.mean), free((float *)tf.std);
    return e;
}

/* --labels: one class name per line, in class-index order. */
static char **class_names(const char *path, int K)
{
    char **names;
    mst_error err = {0};
    if (mst_dataset_class_names(path, K, &names, &err) != MST_OK) cli_fail(&err);
    return names;
}

/* The labelled set, checked against the model. */
static void open_set(const cli_args *a, const mst_arch *arch, mst_dataset *d)
{
    mst_error err = {0};
    if (!!a->ground_truth != !!a->synsets) cli_die("--ground-truth and --synsets go together (the devkit's flat layout)");
    if (mst_dataset_open(a->data, d, &err) != MST_OK) cli_fail(&err);
    if (a->ground_truth && mst_dataset_label_devkit(d, a->ground_truth, a->synsets, &err) != MST_OK) cli_fail(&err);
    for (long i = 0; i < d->count; i++)
        if (d->labels[i] < 0)
            cli_die("%s: no labels (mst eval needs one subfolder per class, IDX files, or --ground-truth and --synsets)",
                    a->data);
    for (long i = 0; i < d->count; i++)
        if (d->labels[i] >= arch->num_classes)
            cli_die("%s: image %ld has label %d, the model has %d classes", a->data, i, d->labels[i], arch->num_classes);
}

int cli_eval(int argc, char **argv)
{
    cli_args a;
    cli_parse(argc, argv, &a);
    if (optind != argc) cli_die("eval takes no positional arguments (got \"%s\")", argv[optind]);
    if (!a.data) cli_die("missing --data PATH");
    if (a.logits) cli_die("--logits is for mst run");
    if (a.stats && a.eo.mode != MST_MODE_SNN) cli_die("--stats counts spikes: it needs --mode snn");
    mst_model *m = cli_load(a.model, a.img_size, a.dataset);
    const mst_arch *arch = mst_model_arch(m);
    mst_dataset d;
    open_set(&a, arch, &d);
    long N = a.limit && a.limit < d.count ? a.limit : d.count;
    int ranks = cli_mpi_size(), rank = cli_mpi_rank();
    if (ranks > 1) { /* each rank its part, as --shard rank/ranks; its GPU by its rank on the node */
        if (a.shards > 1) cli_die("--shard with mpirun: each rank evaluates its own part already");
        a.shard = rank, a.shards = ranks;
        int gpus = mst_cuda_devices();
        if (a.eo.device != MST_DEVICE_CPU && !a.device_indexed && gpus > 0)
            a.eo.device = MST_DEVICE_CUDA, a.eo.device_index = cli_mpi_local_rank() % gpus;
    }
    long lo = N * a.shard / a.shards, hi = N * (a.shard + 1) / a.shards; /* images keep their dataset positions */
    if (hi <= lo && ranks > 1) cli_die("%d ranks for %ld images: rank %d has none", ranks, N, rank);
    if (hi <= lo) cli_die("--shard %d/%d of %ld images is empty", a.shard, a.shards, N);
    tally r;
    tally_init(&r, a.eo.mode == MST_MODE_ANN ? "1" : a.report_steps, a.eo.mode == MST_MODE_ANN ? 1 : a.eo.timesteps,
               arch->num_classes);
    report rp = {.a = &a, .m = m, .names = a.labels ? class_names(a.labels, arch->num_classes) : NULL};
    long skipped;
    double seconds;
    mst_engine *e = run_eval(&a, m, &d, lo, hi, &r, &seconds, &skipped);
    if (ranks > 1) { /* rank 0 reports the whole set, as one process would */
        cli_mpi_sum_long(r.top1, r.n), cli_mpi_sum_long(r.top5, r.n), cli_mpi_sum_long(r.seen, r.K);
        cli_mpi_sum_long(r.hit, r.K * r.n), cli_mpi_sum_long(&skipped, 1);
        seconds = cli_mpi_max(seconds);
        lo = 0, hi = N, a.shard = 0, a.shards = 1;
    }
    int quiet = rank != 0;
    if (skipped == hi - lo) cli_die("%s: none of the %ld images could be read", a.data, hi - lo);
    if (skipped && !quiet) printf("%ld of %ld images could not be read and were skipped\n", skipped, hi - lo);
    rp.images = hi - lo - skipped;
    rp.rate = (double)(hi - lo) / seconds;
    rp.lo = lo, rp.hi = hi, rp.total = N, rp.skipped = skipped;
    rp.device = mst_engine_device(e);
    char sites[64];
    rp.mask_sites = mst_mask_sites_name(mst_engine_mask_sites(e), sites, sizeof sites);
    if (!quiet) print_table(&r, &rp);
    if (!quiet && arch->num_classes <= 20) print_per_class(&r, &rp); /* a short table helps on small sets */
    mst_stats st;
    mst_error err = {0};
    uint64_t *counts = NULL;
    if (a.stats) { /* the counters of every rank, summed into rank 0's engine */
        rp.num_counts = mst_engine_num_counts(e);
        rp.counts = counts = malloc(sizeof(uint64_t) * (rp.num_counts + 1));
        if (!counts) cli_die("out of memory");
        if (mst_engine_get_counts(e, counts, &counts[rp.num_counts], &err) != MST_OK) cli_fail(&err);
        cli_mpi_sum_u64(counts, (int)rp.num_counts + 1);
        rp.counted = counts[rp.num_counts];
        if (mst_engine_set_counts(e, counts, rp.counted, &err) != MST_OK) cli_fail(&err);
        if (mst_engine_stats(e, &st, &err) != MST_OK) cli_fail(&err);
        if (!quiet) cli_print_stats(&st);
        rp.st = &st;
    }
    if (a.results_file && !quiet) write_results(&r, &rp);
    free(counts);
    mst_engine_free(e);
    tally_free(&r);
    mst_dataset_free_names(rp.names, arch->num_classes);
    mst_dataset_close(&d);
    mst_model_free(m);
    return 0;
}
