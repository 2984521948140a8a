/* mst eval: accuracy over a labelled image set at chosen timesteps. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/dataset.h"
#include "../data/transform.h"
#include "cli.h"

typedef struct {
    int n, *step;         /* reported steps, 1-based, ascending */
    long *top1, *top5;    /* correct counts per reported step */
    int K;                /* classes */
    long *seen, *hit;     /* per class: images, and top-1 hits per reported step [class][step] */
} tally;

/* "1,2,8" -> steps; default: powers of two up to T, and T. */
static void report_steps(const char *list, int T, int K, tally *r)
{
    r->step = calloc(64 + (size_t)T, sizeof(int));
    r->n = 0;
    if (!list) {
        for (int t = 1; t < T; t *= 2) r->step[r->n++] = t;
        r->step[r->n++] = T;
    } else {
        for (const char *p = list; *p;) {
            char *end;
            long t = strtol(p, &end, 10);
            if (end == p || t < 1 || t > T || (*end && *end != ',') || (r->n && t <= r->step[r->n - 1]))
                cli_die("--report-steps needs ascending steps in [1, %d], got \"%s\"", T, list);
            r->step[r->n++] = (int)t;
            p = *end ? end + 1 : end;
        }
    }
    r->top1 = calloc((size_t)r->n, sizeof(long));
    r->top5 = calloc((size_t)r->n, sizeof(long));
    r->K = K;
    r->seen = calloc((size_t)K, sizeof(long));
    r->hit = calloc((size_t)K * r->n, sizeof(long));
}

static void tally_free(tally *r)
{
    free(r->step), free(r->top1), free(r->top5), free(r->seen), free(r->hit);
}

/* Per-channel values from --mean/--std, or the checkpoint's metadata. */
float *cli_channel_values(const char *flag, const char *list, const float *meta, int C)
{
    float *v = malloc(sizeof(float) * (size_t)C);
    if (!list) {
        if (!meta) cli_die("the checkpoint's metadata has no %s; pass --%s with %d values", flag, flag, C);
        memcpy(v, meta, sizeof(float) * (size_t)C);
        return v;
    }
    const char *p = list;
    for (int c = 0; c < C; c++) {
        char *end;
        v[c] = strtof(p, &end);
        if (end == p || (c + 1 < C && *end != ',') || (c + 1 == C && *end)) cli_die("--%s needs %d comma-separated numbers, got \"%s\"", flag, C, list);
        p = end + 1;
    }
    return v;
}

/* Rank of the label among the logits: how many classes beat it (ties go to the lower index). */
static int rank_of(const float *l, int K, int y)
{
    int r = 0;
    for (int k = 0; k < K; k++) r += l[k] > l[y] || (l[k] == l[y] && k < y);
    return r;
}

static void count(tally *r, const float *cum, int n, const int *labels, int T)
{
    int K = r->K;
    for (int b = 0; b < n; b++) r->seen[labels[b]]++;
    for (int i = 0; i < r->n; i++) {
        int t = T == 1 ? 0 : r->step[i] - 1;
        for (int b = 0; b < n; b++) {
            int rank = rank_of(cum + ((long)t * n + b) * K, K, labels[b]);
            r->top1[i] += rank == 0;
            r->top5[i] += rank < 5;
            r->hit[(long)labels[b] * r->n + i] += rank == 0;
        }
    }
}

static void progress(long done, long total, double t0)
{
    if (!isatty(2)) return;
    double dt = cli_now() - t0, rate = done / (dt > 0 ? dt : 1e-9);
    int bar = (int)(30 * done / total);
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld images  %.1f images/s  ETA %.0f s ", bar, "==============================",
            30 - bar, "", done, total, rate, (total - done) / rate);
    if (done == total) fputc('\n', stderr);
}

/* A short per-class table helps on small sets (it is in every results file). */
enum { PER_CLASS_PRINTED = 20 };

static const char *class_label(const mst_model *m, int k, char *buf, size_t len)
{
    const char *name = mst_model_class_name(m, k);
    if (name) return name;
    snprintf(buf, len, "class %d", k);
    return buf;
}

static json_t *per_class_json(const tally *r, const mst_model *m)
{
    char buf[32];
    json_t *rows = json_array();
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        json_t *t1 = json_array();
        for (int i = 0; i < r->n; i++) json_array_append_new(t1, json_real(100.0 * r->hit[(long)k * r->n + i] / r->seen[k]));
        json_array_append_new(rows, json_pack("{s:i, s:s, s:I, s:o}", "class", k, "name", class_label(m, k, buf, sizeof buf),
                                              "images", (json_int_t)r->seen[k], "top1", t1));
    }
    return rows;
}

static void per_class_csv(FILE *f, const tally *r, const mst_model *m)
{
    char buf[32];
    fprintf(f, "\nclass,name,images");
    for (int i = 0; i < r->n; i++) fprintf(f, ",top1@%d", r->step[i]);
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        fprintf(f, "\n%d,\"%s\",%ld", k, class_label(m, k, buf, sizeof buf), r->seen[k]);
        for (int i = 0; i < r->n; i++) fprintf(f, ",%.4f", 100.0 * r->hit[(long)k * r->n + i] / r->seen[k]);
    }
    fprintf(f, "\n");
}

static void write_results(const cli_args *a, const tally *r, long N, double rate, const mst_stats *st,
                          const mst_model *m, const char *device)
{
    FILE *f = fopen(a->results_file, "w");
    if (!f) cli_die("%s: cannot create", a->results_file);
    size_t len = strlen(a->results_file);
    int K = r->K;
    if (len > 4 && strcmp(a->results_file + len - 4, ".csv") == 0) {
        fprintf(f, "step,top1,top5\n");
        for (int i = 0; i < r->n; i++)
            fprintf(f, "%d,%.4f,%.4f\n", r->step[i], 100.0 * r->top1[i] / N, K > 5 ? 100.0 * r->top5[i] / N : 100.0);
        if (st) { /* a second table: per-image energy accounting */
            double n = st->images;
            fprintf(f, "\nlayer,spikes_in,sops,macs\n");
            for (int i = 0; i < st->num_layers; i++)
                fprintf(f, "%s,%.6g,%.6g,%.6g\n", st->layers[i].name, st->layers[i].spikes_in / n,
                        st->layers[i].sops / n, st->layers[i].macs / n);
            fprintf(f, "total,,%.6g,%.6g\nenergy_mj,%.6g,,\n", st->sops / n, st->macs / n, st->energy_j / n * 1e3);
        }
        per_class_csv(f, r, m);
    } else {
        json_t *s = json_array(), *t1 = json_array(), *t5 = json_array();
        for (int i = 0; i < r->n; i++) {
            json_array_append_new(s, json_integer(r->step[i]));
            json_array_append_new(t1, json_real(100.0 * r->top1[i] / N));
            json_array_append_new(t5, json_real(K > 5 ? 100.0 * r->top5[i] / N : 100.0));
        }
        json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:i, s:f, s:I, s:o, s:o, s:o, s:f, s:f, s:f}", "model", a->model,
                              "data", a->data, "images", (json_int_t)N, "mode",
                              a->eo.mode == MST_MODE_SNN ? "snn" : "ann", "timesteps", a->eo.timesteps, "mask_ratio",
                              a->eo.mask_ratio, "seed", (json_int_t)a->eo.seed, "steps", s, "top1", t1, "top5", t5,
                              "final_top1", 100.0 * r->top1[r->n - 1] / N, "final_top5",
                              K > 5 ? 100.0 * r->top5[r->n - 1] / N : 100.0, "images_per_second", rate);
        static const char *precisions[] = {"fp32", "fp16", "bf16"};
        json_object_set_new(o, "device", json_string(device));
        json_object_set_new(o, "precision", json_string(precisions[a->eo.precision]));
        json_object_set_new(o, "per_class", per_class_json(r, m));
        if (st) json_object_set_new(o, "energy", cli_stats_json(st));
        json_dumpf(o, f, JSON_INDENT(2));
        fputc('\n', f);
        json_decref(o);
    }
    if (fclose(f) != 0) cli_die("%s: write failed", a->results_file);
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

typedef struct {
    mst_engine *e;
    const mst_dataset *d;
    tally *r;
    float *x, *cum;
    long img, skipped;
    int T, K;
} evaluator;

/* Runs images [i0, i0 + n) of the batch that were read, in runs of
 * consecutive dataset positions (the masks are keyed by position). */
static void run_batch(evaluator *v, long i0, int n, const int *ok)
{
    mst_error err = {0};
    for (int b = 0; b < n;) {
        if (!ok[b]) {
            b++;
            continue;
        }
        int end = b;
        while (end < n && ok[end]) end++;
        if (mst_engine_run(v->e, v->x + b * v->img, end - b, (uint64_t)(i0 + b), v->cum, &err) != MST_OK) cli_fail(&err);
        count(v->r, v->cum, end - b, v->d->labels + i0 + b, v->T);
        b = end;
    }
}

static mst_engine *run_eval(const cli_args *a, mst_model *m, const mst_dataset *d, long N, tally *r, double *rate,
                            long *skipped)
{
    const mst_arch *arch = mst_model_arch(m);
    int C = arch->in_chans, S = arch->img_size, B = a->eo.max_batch;
    mst_transform tf;
    cli_transform(a, arch, &tf);
    mst_error err = {0};
    evaluator v = {.d = d, .r = r, .img = (long)C * S * S, .K = arch->num_classes};
    if (mst_engine_create(m, &a->eo, &v.e, &err) != MST_OK) cli_fail(&err);
    v.T = mst_engine_steps_out(v.e);
    v.x = malloc(sizeof(float) * (size_t)B * v.img);
    v.cum = malloc(sizeof(float) * (size_t)v.T * B * v.K);
    int *ok = malloc(sizeof(int) * (size_t)B);
    double t0 = cli_now();
    for (long i0 = 0; i0 < N; i0 += B) {
        int n = (int)(N - i0 < B ? N - i0 : B);
        for (int b = 0; b < n; b++) v.skipped += !(ok[b] = cli_prepare(d, i0 + b, &tf, v.x + b * v.img));
        run_batch(&v, i0, n, ok);
        progress(i0 + n, N, t0);
    }
    *rate = N / (cli_now() - t0);
    *skipped = v.skipped;
    free(v.x), free(v.cum), free(ok), free((float *)tf.mean), free((float *)tf.std);
    return v.e;
}

static void print_per_class(const tally *r, const mst_model *m, int snn)
{
    char buf[32];
    printf("\n%-20s %7s", "class", "images");
    for (int i = 0; i < r->n; i++)
        if (snn) {
            char head[16];
            snprintf(head, sizeof head, "t=%d", r->step[i]);
            printf("  %7s", head);
        } else {
            printf("  %7s", "ann");
        }
    printf("\n");
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        printf("%-20.20s %7ld", class_label(m, k, buf, sizeof buf), r->seen[k]);
        for (int i = 0; i < r->n; i++) printf("  %6.1f%%", 100.0 * r->hit[(long)k * r->n + i] / r->seen[k]);
        printf("\n");
    }
}

static void print_table(const tally *r, long N, int K, const cli_args *a, double rate, const char *device)
{
    printf("%ld images, %s, mask ratio %g, seed %llu, on %s: %.1f images/s\n", N,
           a->eo.mode == MST_MODE_SNN ? "SNN" : "ANN (QCFS)", a->eo.mask_ratio, (unsigned long long)a->eo.seed, device,
           rate);
    printf("%6s  %8s%s\n", a->eo.mode == MST_MODE_SNN ? "step" : "", "top-1", K > 5 ? "     top-5" : "");
    for (int i = 0; i < r->n; i++) {
        if (a->eo.mode == MST_MODE_SNN)
            printf("%6d", r->step[i]);
        else
            printf("%6s", "ann");
        printf("  %7.2f%%", 100.0 * r->top1[i] / N);
        if (K > 5) printf("  %7.2f%%", 100.0 * r->top5[i] / N);
        printf("\n");
    }
}

int cli_eval(int argc, char **argv)
{
    cli_args a;
    cli_parse(argc, argv, &a);
    if (optind != argc) cli_die("eval takes no positional arguments (got \"%s\")", argv[optind]);
    if (!a.data) cli_die("missing --data PATH");
    if (a.logits) cli_die("--logits is for mst run");
    if (a.stats && a.eo.mode != MST_MODE_SNN) cli_die("--stats counts spikes: it needs --mode snn");
    mst_model *m = cli_load(a.model, a.img_size);
    mst_dataset d;
    mst_error err = {0};
    if (mst_dataset_open(a.data, &d, &err) != MST_OK) cli_fail(&err);
    const mst_arch *arch = mst_model_arch(m);
    for (long i = 0; i < d.count; i++)
        if (d.labels[i] < 0) cli_die("%s: no labels (mst eval needs one subfolder per class, or IDX files)", a.data);
    for (long i = 0; i < d.count; i++)
        if (d.labels[i] >= arch->num_classes)
            cli_die("%s: image %ld has label %d, the model has %d classes", a.data, i, d.labels[i], arch->num_classes);
    long N = a.limit && a.limit < d.count ? a.limit : d.count;
    tally r;
    report_steps(a.eo.mode == MST_MODE_ANN ? "1" : a.report_steps, a.eo.mode == MST_MODE_ANN ? 1 : a.eo.timesteps,
                 arch->num_classes, &r);
    double rate;
    long skipped;
    mst_engine *e = run_eval(&a, m, &d, N, &r, &rate, &skipped);
    if (skipped == N) cli_die("%s: none of the %ld images could be read", a.data, N);
    if (skipped) printf("%ld of %ld images could not be read and were skipped\n", skipped, N);
    N -= skipped;
    print_table(&r, N, arch->num_classes, &a, rate, mst_engine_device(e));
    if (arch->num_classes <= PER_CLASS_PRINTED) print_per_class(&r, m, a.eo.mode == MST_MODE_SNN);
    mst_stats st;
    if (a.stats && mst_engine_stats(e, &st, &err) != MST_OK) cli_fail(&err);
    if (a.stats) cli_print_stats(&st);
    if (a.results_file) write_results(&a, &r, N, rate, a.stats ? &st : NULL, m, mst_engine_device(e));
    mst_engine_free(e);
    tally_free(&r);
    mst_dataset_close(&d);
    mst_model_free(m);
    return 0;
}
