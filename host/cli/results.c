/* mst eval's tallies and reports. Accuracies are percentages; top-5 is
 * reported where the model has more than five classes. */
#include "results.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tally_init(tally *r, const char *list, int T, int K)
{
    *r = (tally){.K = K};
    r->step = calloc(64 + (size_t)T, sizeof(int));
    mst_error err = {0};
    if (!r->step) cli_die("out of memory");
    if (cli_steps_parse(list, T, r->step, &r->n, &err) != MST_OK) cli_die("%s", err.msg);
    r->top1 = calloc((size_t)r->n, sizeof(long));
    r->top5 = calloc((size_t)r->n, sizeof(long));
    r->seen = calloc((size_t)K, sizeof(long));
    r->hit = calloc((size_t)K * r->n, sizeof(long));
    if (!r->top1 || !r->top5 || !r->seen || !r->hit) cli_die("out of memory");
}

void tally_free(tally *r) { free(r->step), free(r->top1), free(r->top5), free(r->seen), free(r->hit); }

/* Rank of the label among the logits: how many classes beat it (ties go to
 * the lower index). A non-finite logit of the label ranks last, and any class
 * that is not below it (NaN included) beats it: NaNs never count as hits. */
static int rank_of(const float *l, int K, int y)
{
    if (!isfinite(l[y])) return K;
    int r = 0;
    for (int k = 0; k < K; k++) r += k != y && (!(l[k] <= l[y]) || (l[k] == l[y] && k < y));
    return r;
}

void tally_count(tally *r, const float *cum, int n, const int *labels, int T)
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

static double pct(long k, long n) { return n ? 100.0 * (double)k / (double)n : 0.0; }
static double top5(const tally *r, int i, long n) { return r->K > 5 ? pct(r->top5[i], n) : 100.0; }

static const char *class_label(const report *rp, int k, char *buf, size_t len)
{
    const char *name = rp->names ? rp->names[k] : mst_model_class_name(rp->m, k);
    if (name && *name) return name;
    snprintf(buf, len, "class %d", k);
    return buf;
}

void print_table(const tally *r, const report *rp)
{
    const cli_args *a = rp->a;
    int snn = a->eo.mode == MST_MODE_SNN;
    printf("%ld images, %s, mask ratio %g at %s, seed %llu, on %s: %.1f images/s\n", rp->images,
           snn ? "SNN" : "ANN (QCFS)", a->eo.mask_ratio, rp->mask_sites, (unsigned long long)a->eo.seed, rp->device,
           rp->rate);
    printf("%6s  %8s%s\n", snn ? "step" : "", "top-1", r->K > 5 ? "     top-5" : "");
    for (int i = 0; i < r->n; i++) {
        if (snn)
            printf("%6d", r->step[i]);
        else
            printf("%6s", "ann");
        printf("  %7.2f%%", pct(r->top1[i], rp->images));
        if (r->K > 5) printf("  %7.2f%%", pct(r->top5[i], rp->images));
        printf("\n");
    }
}

void print_per_class(const tally *r, const report *rp)
{
    char buf[32], head[16];
    printf("\n%-20s %7s", "class", "images");
    for (int i = 0; i < r->n; i++) {
        if (rp->a->eo.mode == MST_MODE_SNN)
            snprintf(head, sizeof head, "t=%d", r->step[i]);
        else
            snprintf(head, sizeof head, "ann");
        printf("  %7s", head);
    }
    printf("\n");
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        printf("%-20.20s %7ld", class_label(rp, k, buf, sizeof buf), r->seen[k]);
        for (int i = 0; i < r->n; i++) printf("  %6.1f%%", pct(r->hit[(long)k * r->n + i], r->seen[k]));
        printf("\n");
    }
}

static json_t *per_class_json(const tally *r, const report *rp)
{
    char buf[32];
    json_t *rows = json_array();
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        json_t *t1 = json_array();
        for (int i = 0; i < r->n; i++) json_array_append_new(t1, json_real(pct(r->hit[(long)k * r->n + i], r->seen[k])));
        json_array_append_new(rows, json_pack("{s:i, s:s, s:I, s:o}", "class", k, "name", class_label(rp, k, buf, sizeof buf),
                                              "images", (json_int_t)r->seen[k], "top1", t1));
    }
    return rows;
}

static const char *interpolation(const report *rp)
{
    const mst_arch *arch = mst_model_arch(rp->m);
    const char *ip = rp->a->interpolation ? rp->a->interpolation : arch->interpolation;
    return ip && *ip ? ip : (rp->a->crop_pct > 0 || arch->crop_pct > 0 ? "bicubic" : "tensor-bilinear");
}

static double crop_pct(const report *rp)
{
    double c = rp->a->crop_pct > 0 ? rp->a->crop_pct : mst_model_arch(rp->m)->crop_pct;
    return c > 0 ? c : (strcmp(interpolation(rp), "tensor-bilinear") ? 0.875 : 1.0);
}

/* timm's validate.py fields for the last reported step, then ours. */
static json_t *summary_json(const tally *r, const report *rp)
{
    const cli_args *a = rp->a;
    const mst_arch *arch = mst_model_arch(rp->m);
    long n = rp->images;
    int last = r->n - 1;
    json_t *steps = json_array(), *t1 = json_array(), *t5 = json_array();
    for (int i = 0; i < r->n; i++) {
        json_array_append_new(steps, json_integer(r->step[i]));
        json_array_append_new(t1, json_real(pct(r->top1[i], n)));
        json_array_append_new(t5, json_real(top5(r, i, n)));
    }
    json_t *o = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:i, s:f, s:s}", "model", a->model, "top1", pct(r->top1[last], n),
                          "top1_err", 100.0 - pct(r->top1[last], n), "top5", top5(r, last, n), "top5_err",
                          100.0 - top5(r, last, n), "param_count", (double)arch->num_params / 1e6, "img_size",
                          arch->img_size, "crop_pct", crop_pct(rp), "interpolation", interpolation(rp));
    json_object_update_missing_new(o, json_pack("{s:s, s:I, s:s, s:i, s:f, s:I, s:s, s:s, s:f, s:o, s:o, s:o}", "data", a->data,
                                                "images", (json_int_t)n, "mode", a->eo.mode == MST_MODE_SNN ? "snn" : "ann",
                                                "timesteps", a->eo.mode == MST_MODE_SNN ? a->eo.timesteps : 1,
                                                "mask_ratio", a->eo.mask_ratio, "seed", (json_int_t)a->eo.seed, "device",
                                                rp->device, "precision", cli_precision_name(a->eo.precision), "images_per_second",
                                                rp->rate, "steps", steps, "step_top1", t1, "step_top5", t5));
    json_object_set_new(o, "mask_sites", json_string(rp->mask_sites));
    if (a->shards > 1) json_object_set_new(o, "shard", json_pack("[i, i]", a->shard, a->shards));
    return o;
}

/* The raw counts behind the percentages and the energy figures, so that
 * parts of one evaluation (--shard, or ranks) add up to the file a single
 * run writes (mst merge). */
static json_t *tallies_json(const tally *r, const report *rp)
{
    json_t *t1 = json_array(), *t5 = json_array(), *classes = json_array(), *counts = json_array();
    for (int i = 0; i < r->n; i++) {
        json_array_append_new(t1, json_integer(r->top1[i]));
        json_array_append_new(t5, json_integer(r->top5[i]));
    }
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        json_t *row = json_pack("[i, I]", k, (json_int_t)r->seen[k]);
        for (int i = 0; i < r->n; i++) json_array_append_new(row, json_integer(r->hit[(long)k * r->n + i]));
        json_array_append_new(classes, row);
    }
    json_t *o = json_pack("{s:[I, I], s:I, s:I, s:o, s:o, s:o}", "range", (json_int_t)rp->lo, (json_int_t)rp->hi,
                          "dataset_images", (json_int_t)rp->total, "skipped", (json_int_t)rp->skipped, "top1", t1, "top5",
                          t5, "classes", classes);
    if (rp->counts) {
        for (size_t i = 0; i < rp->num_counts; i++) json_array_append_new(counts, json_integer((json_int_t)rp->counts[i]));
        json_object_set_new(o, "spike_counters", counts);
        json_object_set_new(o, "counted_images", json_integer((json_int_t)rp->counted));
    } else {
        json_decref(counts);
    }
    return o;
}

static void write_json(FILE *f, const tally *r, const report *rp)
{
    json_t *o = summary_json(r, rp);
    json_object_set_new(o, "per_class", per_class_json(r, rp));
    if (rp->st) json_object_set_new(o, "energy", cli_stats_json(rp->st));
    json_object_set_new(o, "tallies", tallies_json(r, rp));
    json_dumpf(o, f, JSON_INDENT(2));
    fputc('\n', f);
    json_decref(o);
}

/* A CSV field in quotes, with quotes inside doubled. */
static void csv_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* CSV: timm's summary row, then steps, the energy table (--stats), classes. */
static void write_csv(FILE *f, const tally *r, const report *rp)
{
    char buf[32];
    long n = rp->images;
    int last = r->n - 1;
    fprintf(f, "model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation,timesteps,mask_ratio,"
               "mask_sites\n");
    csv_quoted(f, rp->a->model);
    fprintf(f, ",%.4f,%.4f,%.4f,%.4f,%.2f,%d,%g,%s,%d,%g,\"%s\"\n", pct(r->top1[last], n),
            100.0 - pct(r->top1[last], n), top5(r, last, n), 100.0 - top5(r, last, n),
            (double)mst_model_arch(rp->m)->num_params / 1e6, mst_model_arch(rp->m)->img_size, crop_pct(rp),
            interpolation(rp), rp->a->eo.mode == MST_MODE_SNN ? rp->a->eo.timesteps : 1, rp->a->eo.mask_ratio,
            rp->mask_sites);
    fprintf(f, "\nstep,top1,top5\n");
    for (int i = 0; i < r->n; i++) fprintf(f, "%d,%.4f,%.4f\n", r->step[i], pct(r->top1[i], n), top5(r, i, n));
    const mst_stats *st = rp->st;
    if (st) { /* per-image energy accounting */
        double m = st->images;
        fprintf(f, "\nlayer,spikes_in,sops,macs\n");
        for (int i = 0; i < st->num_layers; i++)
            fprintf(f, "%s,%.6g,%.6g,%.6g\n", st->layers[i].name, st->layers[i].spikes_in / m, st->layers[i].sops / m,
                    st->layers[i].macs / m);
        fprintf(f, "total,,%.6g,%.6g\nenergy_mj,%.6g,,\n", st->sops / m, st->macs / m, st->energy_j / m * 1e3);
        fprintf(f, "\nmodule,group,sops,macs,energy_mj,sops_dropped_by_rsm,in_total\n");
        for (int i = 0; i < st->num_modules; i++) {
            const mst_module_stat *md = &st->modules[i];
            fprintf(f, "%s,%s,%.6g,%.6g,%.6g,%.6g,%d\n", md->name, md->group, md->sops / m, md->macs / m,
                    md->energy_j / m * 1e3, md->sops_dropped / m, md->in_total);
        }
    }
    fprintf(f, "\nclass,name,images");
    for (int i = 0; i < r->n; i++) fprintf(f, ",top1@%d", r->step[i]);
    for (int k = 0; k < r->K; k++) {
        if (!r->seen[k]) continue;
        fprintf(f, "\n%d,", k);
        csv_quoted(f, class_label(rp, k, buf, sizeof buf));
        fprintf(f, ",%ld", r->seen[k]);
        for (int i = 0; i < r->n; i++) fprintf(f, ",%.4f", pct(r->hit[(long)k * r->n + i], r->seen[k]));
    }
    fprintf(f, "\n");
}

void write_results(const tally *r, const report *rp)
{
    const char *path = rp->a->results_file;
    FILE *f = fopen(path, "w");
    if (!f) cli_die("%s: cannot create", path);
    size_t len = strlen(path);
    if (len > 4 && strcmp(path + len - 4, ".csv") == 0)
        write_csv(f, r, rp);
    else
        write_json(f, r, rp);
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) cli_die("%s: write failed", path);
}
