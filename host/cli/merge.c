/* mst merge OUT PART...: the results files of the parts of one evaluation
 * (--shard K/N, a job array, an indexed job) combined into the file a single
 * run over the whole set writes. It adds up the raw tallies each part
 * carries ("tallies": correct counts, per-class hits, spike counters) and
 * renders them through the same code as mst eval; the energy figures come
 * from an engine of the same model and options holding the summed counters.
 * Parts from different runs (model, data, settings, seed), parts that
 * overlap and sets of parts that leave images out are refused. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "results.h"

typedef struct {
    const char *path;
    json_t *o, *t; /* the file, its tallies */
    long lo, hi;
} part;

static json_t *member(const part *p, const char *key)
{
    json_t *v = json_object_get(p->o, key);
    if (!v) cli_die("%s: no \"%s\": not an mst eval results file", p->path, key);
    return v;
}

static json_t *tally_member(const part *p, const char *key)
{
    json_t *v = json_object_get(p->t, key);
    if (!v) cli_die("%s: tallies without \"%s\"", p->path, key);
    return v;
}

static long integer(const part *p, json_t *v, const char *what)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) cli_die("%s: %s is not a count", p->path, what);
    return (long)json_integer_value(v);
}

static void load(part *p, const char *path)
{
    json_error_t je;
    p->path = path;
    p->o = json_load_file(path, 0, &je);
    if (!p->o && je.line > 0) cli_die("%s: %s (line %d)", path, je.text, je.line);
    if (!p->o) cli_die("%s: %s", path, je.text);
    if (!json_is_object(p->o)) cli_die("%s: not a JSON object", path);
    p->t = json_object_get(p->o, "tallies");
    if (!json_is_object(p->t))
        cli_die("%s: no tallies (a CSV file, or written by an mst without them): cannot merge", path);
    json_t *range = tally_member(p, "range");
    if (!json_is_array(range) || json_array_size(range) != 2) cli_die("%s: tallies.range is not [first, end]", path);
    p->lo = integer(p, json_array_get(range, 0), "range[0]");
    p->hi = integer(p, json_array_get(range, 1), "range[1]");
    if (p->hi <= p->lo) cli_die("%s: empty range [%ld, %ld)", path, p->lo, p->hi);
}

/* The settings that make parts parts of one run. */
static const char *const SAME[] = {"model",   "data",    "mode",     "timesteps",     "mask_ratio",    "mask_sites",
                                   "seed",    "precision", "img_size", "crop_pct",    "interpolation", "steps"};

static void check_same(const part *ref, const part *p)
{
    for (size_t i = 0; i < sizeof SAME / sizeof SAME[0]; i++)
        if (!json_equal(json_object_get(ref->o, SAME[i]), json_object_get(p->o, SAME[i])))
            cli_die("%s and %s differ in %s: not parts of one run", ref->path, p->path, SAME[i]);
    if (!json_equal(tally_member(ref, "dataset_images"), tally_member(p, "dataset_images")))
        cli_die("%s and %s cover data sets of different sizes: not parts of one run", ref->path, p->path);
    if (!json_object_get(ref->t, "spike_counters") != !json_object_get(p->t, "spike_counters"))
        cli_die("%s and %s: one counted spikes (--stats), the other did not", ref->path, p->path);
}

static int by_first(const void *a, const void *b)
{
    const part *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* The parts, sorted, must tile [0, total): no overlap, no gap. */
static void check_ranges(part *ps, int n, long total)
{
    qsort(ps, (size_t)n, sizeof *ps, by_first);
    long at = 0;
    for (int i = 0; i < n; i++) {
        if (ps[i].lo < at)
            cli_die("%s (images %ld-%ld) and %s (images %ld-%ld) overlap", ps[i - 1].path, ps[i - 1].lo, ps[i - 1].hi - 1,
                    ps[i].path, ps[i].lo, ps[i].hi - 1);
        if (ps[i].lo > at) cli_die("images %ld-%ld are in no part", at, ps[i].lo - 1);
        at = ps[i].hi;
    }
    if (at < total) cli_die("images %ld-%ld are in no part", at, total - 1);
    if (at > total) cli_die("%s reaches image %ld of a set of %ld", ps[n - 1].path, at - 1, total);
}

/* Adds a part's counts to the tally. */
static void add_tallies(tally *r, const part *p)
{
    json_t *t1 = tally_member(p, "top1"), *t5 = tally_member(p, "top5"), *classes = tally_member(p, "classes"), *row;
    size_t k;
    if (json_array_size(t1) != (size_t)r->n || json_array_size(t5) != (size_t)r->n)
        cli_die("%s: tallies for %zu steps, the steps list has %d", p->path, json_array_size(t1), r->n);
    for (int i = 0; i < r->n; i++) {
        r->top1[i] += integer(p, json_array_get(t1, (size_t)i), "top1");
        r->top5[i] += integer(p, json_array_get(t5, (size_t)i), "top5");
    }
    json_array_foreach(classes, k, row)
    {
        if (json_array_size(row) != 2 + (size_t)r->n) cli_die("%s: tallies.classes[%zu] is not [class, images, hits...]", p->path, k);
        long c = integer(p, json_array_get(row, 0), "a class");
        if (c >= r->K) cli_die("%s: class %ld of a model with %d classes", p->path, c, r->K);
        r->seen[c] += integer(p, json_array_get(row, 1), "images");
        for (int i = 0; i < r->n; i++) r->hit[c * r->n + i] += integer(p, json_array_get(row, 2 + (size_t)i), "hits");
    }
}

/* "4,8,16" from the steps array. */
static char *steps_list(const part *p)
{
    json_t *steps = member(p, "steps"), *v;
    size_t i;
    char *s = calloc(json_array_size(steps) + 1, 12);
    if (!s) cli_die("out of memory");
    json_array_foreach(steps, i, v) sprintf(s + strlen(s), "%s%ld", i ? "," : "", integer(p, v, "a step"));
    return s;
}

static const char *string(const part *p, const char *key)
{
    const char *s = json_string_value(member(p, key));
    if (!s) cli_die("%s: \"%s\" is not a string", p->path, key);
    return s;
}

static mst_precision precision_of(const part *p)
{
    const char *s = string(p, "precision");
    int i = cli_precision_of(s);
    if (i < 0) cli_die("%s: unknown precision \"%s\"", p->path, s);
    return (mst_precision)i;
}

/* The energy figures of the summed counters: an engine of the same model and
 * options on the CPU holds them, and mst_engine_stats does the rest. */
static mst_engine *stats_engine(const mst_model *m, const cli_args *a, const part *ps, int n, mst_stats *st)
{
    mst_error err = {0};
    mst_engine_opts o = a->eo;
    if (mst_mask_sites_parse(string(&ps[0], "mask_sites"), &o.mask_sites, &err) != MST_OK)
        cli_die("%s: mask_sites: %s", ps[0].path, err.msg);
    o.device = MST_DEVICE_CPU, o.precision = MST_PRECISION_FP32, o.max_batch = 1, o.time_chunk = 1, o.count_spikes = 1;
    mst_engine *e = cli_engine(m, &o);
    size_t nc = mst_engine_num_counts(e);
    uint64_t *sum = calloc(nc, sizeof(uint64_t)), images = 0;
    if (!sum) cli_die("out of memory");
    for (int i = 0; i < n; i++) {
        json_t *c = tally_member(&ps[i], "spike_counters"), *v;
        size_t j;
        if (json_array_size(c) != nc) cli_die("%s: %zu spike counters, the model has %zu", ps[i].path, json_array_size(c), nc);
        json_array_foreach(c, j, v) sum[j] += (uint64_t)integer(&ps[i], v, "a spike counter");
        images += (uint64_t)integer(&ps[i], tally_member(&ps[i], "counted_images"), "counted_images");
    }
    if (mst_engine_set_counts(e, sum, images, &err) != MST_OK || mst_engine_stats(e, st, &err) != MST_OK) cli_fail(&err);
    free(sum);
    return e;
}

/* Class names as the parts wrote them (from --labels or the checkpoint). */
static char **class_names(const part *ps, int n, int K)
{
    char **names = calloc((size_t)K, sizeof(char *));
    if (!names) cli_die("out of memory");
    for (int i = 0; i < n; i++) {
        json_t *rows = member(&ps[i], "per_class"), *row;
        size_t k;
        json_array_foreach(rows, k, row)
        {
            json_int_t c = json_integer_value(json_object_get(row, "class"));
            const char *name = json_string_value(json_object_get(row, "name"));
            if (c >= 0 && c < K && name && !names[c]) names[c] = strdup(name);
        }
    }
    for (int k = 0; k < K; k++)
        if (!names[k]) names[k] = strdup("");
    return names;
}

int cli_merge(int argc, char **argv)
{
    cli_args a;
    cli_parse_options(argc, argv, &a); /* --model only where the parts' path does not reach the checkpoint */
    if (argc - optind < 2) cli_die("merge takes OUT.json|OUT.csv and the PART.json files of one run");
    a.results_file = argv[optind];
    int n = argc - optind - 1;
    part *ps = calloc((size_t)n, sizeof *ps);
    if (!ps) cli_die("out of memory");
    for (int i = 0; i < n; i++) load(&ps[i], argv[optind + 1 + i]);
    for (int i = 1; i < n; i++) check_same(&ps[0], &ps[i]);
    long total = integer(&ps[0], tally_member(&ps[0], "dataset_images"), "dataset_images");
    check_ranges(ps, n, total);

    /* the run's settings, as the parts ran them */
    int ann = !strcmp(string(&ps[0], "mode"), "ann");
    const char *model = a.model ? a.model : string(&ps[0], "model");
    mst_model *m = cli_load(model, (int)integer(&ps[0], member(&ps[0], "img_size"), "img_size"), a.dataset);
    a.model = string(&ps[0], "model");
    a.data = string(&ps[0], "data");
    a.eo.mode = ann ? MST_MODE_ANN : MST_MODE_SNN;
    a.eo.timesteps = (int)integer(&ps[0], member(&ps[0], "timesteps"), "timesteps");
    a.eo.mask_ratio = json_number_value(member(&ps[0], "mask_ratio"));
    a.eo.seed = (uint64_t)integer(&ps[0], member(&ps[0], "seed"), "seed");
    a.eo.precision = precision_of(&ps[0]);
    a.interpolation = string(&ps[0], "interpolation");
    a.crop_pct = json_number_value(member(&ps[0], "crop_pct"));
    a.shard = 0, a.shards = 1;

    const mst_arch *arch = mst_model_arch(m);
    char *steps = steps_list(&ps[0]);
    tally r;
    tally_init(&r, steps, ann ? 1 : a.eo.timesteps, arch->num_classes);
    report rp = {.a = &a, .m = m, .device = string(&ps[0], "device"), .mask_sites = string(&ps[0], "mask_sites"),
                 .names = class_names(ps, n, arch->num_classes), .lo = 0, .hi = total, .total = total};
    double seconds = 0;
    for (int i = 0; i < n; i++) {
        add_tallies(&r, &ps[i]);
        long images = integer(&ps[i], member(&ps[i], "images"), "images");
        double rate = json_number_value(member(&ps[i], "images_per_second"));
        rp.images += images;
        rp.skipped += integer(&ps[i], tally_member(&ps[i], "skipped"), "skipped");
        seconds += rate > 0 ? (double)images / rate : 0;
    }
    rp.rate = seconds > 0 ? (double)rp.images / seconds : 0; /* the parts' images over their summed time */
    mst_stats st;
    mst_engine *e = NULL;
    uint64_t *counts = NULL;
    if (json_object_get(ps[0].t, "spike_counters")) {
        mst_error err = {0};
        e = stats_engine(m, &a, ps, n, &st);
        rp.st = &st, rp.num_counts = mst_engine_num_counts(e);
        rp.counts = counts = malloc(sizeof(uint64_t) * rp.num_counts);
        if (!counts || mst_engine_get_counts(e, counts, &rp.counted, &err) != MST_OK) cli_fail(&err);
    }
    print_table(&r, &rp);
    write_results(&r, &rp);
    printf("%d parts merged into %s\n", n, a.results_file);
    if (e) mst_engine_free(e);
    free(counts), free(steps);
    for (int k = 0; k < arch->num_classes; k++) free(rp.names[k]);
    free(rp.names);
    tally_free(&r);
    for (int i = 0; i < n; i++) json_decref(ps[i].o);
    free(ps);
    mst_model_free(m);
    return 0;
}
