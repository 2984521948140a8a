/* On the CPU, logits are a function of (model, image, its dataset position,
 * seed, T, masking ratio) alone: the same bits for any batch, time chunk,
 * thread count, decode-worker count or shard, in any build, on any x86-64 CPU.
 *
 * The model is the seeded "grid28" shape: 28x28 tokens, then 14x14 (784 and
 * 196 rows per image and step, 4 past a multiple of 12; 196 is no multiple of
 * 16 or 256 either), so an image's rows start at offsets that change with the
 * batch and the chunk and that no 12-row BLAS kernel panel or 256-row tile
 * lines up with. The recorded run (tests/data/grid28_logits.npy, made on a
 * developer's machine) makes "another CPU, another build" a checked claim: CI
 * runs this suite on its own CPU in the native build and in three others
 * (tests/builds_agree.sh), and again under every OpenBLAS core type the CPU
 * can execute, so that a BLAS back in the forward path could not go unseen. */
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <strings.h>

#include "helpers.h"
#include "host/model/synth.h"

#define T 12
#define N 33
#define SEED 5
#define RECORD DATA("grid28_logits.npy")

static char model_path[512];

/* The model, written from its seed by the first test of a process to ask
 * for it, removed after that test (a test that skips before asking, as
 * the OpenBLAS core-type check does, writes nothing: a skip leaves before
 * the suite's .fini). */
static const char *grid_model(void)
{
    if (*model_path) return model_path;
    snprintf(model_path, sizeof model_path, "%s", tmp_path("grid28.safetensors"));
    mst_error err = {0};
    cr_assert_eq(mst_synth_write(mst_synth_find("grid28"), 11, model_path, &err), MST_OK, "%s", err.msg);
    return model_path;
}

static void remove_model(void)
{
    if (*model_path) unlink(model_path);
    *model_path = 0;
}

TestSuite(invariance, .fini = remove_model);

static mst_model *load_grid(void)
{
    mst_model *m;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(grid_model(), NULL, &m, &err), MST_OK, "%s", err.msg);
    return m;
}

/* N images [N][1][56][56], uniform in [-2, 2) from splitmix64. */
static mst_npy grid_inputs(void)
{
    mst_npy x = {.ndim = 4, .shape = {N, 1, 56, 56}};
    long n = mst_npy_numel(&x);
    x.data = malloc(sizeof(float) * (size_t)n);
    uint64_t s = 99;
    for (long i = 0; i < n; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        x.data[i] = (float)((z ^ (z >> 31)) >> 40) / 16777216.0f * 4.0f - 2.0f;
    }
    return x;
}

static mst_engine_opts snn(int batch, int chunk)
{
    return (mst_engine_opts){.mode = MST_MODE_SNN, .timesteps = T, .time_chunk = chunk, .max_batch = batch,
                             .mask_ratio = 0.75, .seed = SEED, .device = MST_DEVICE_CPU};
}

static mst_engine_opts ann(int batch)
{
    return (mst_engine_opts){.mode = MST_MODE_ANN, .max_batch = batch, .mask_ratio = 0.75, .seed = SEED,
                             .device = MST_DEVICE_CPU};
}

/* A comparison of logits that are all alike would prove nothing: each
 * image's logits must move with the image, by a fair part of their scale
 * (random weights put most images into one class, so top-1 cannot show it). */
static void expect_informative(const float *logits, const char *what)
{
    double scale = 0, spread = 0;
    for (int k = 0; k < 100; k++) {
        double mean = 0, var = 0;
        for (int i = 0; i < N; i++) mean += logits[i * 100 + k] / N;
        for (int i = 0; i < N; i++) var += (logits[i * 100 + k] - mean) * (logits[i * 100 + k] - mean) / N;
        scale = fmax(scale, fabs(mean));
        spread = fmax(spread, sqrt(var));
    }
    cr_expect_gt(spread, 0.01 * scale, "%s: the logits hardly depend on the image (spread %g, scale %g)", what, spread,
                 scale);
}

/* The SNN run of (batch 7, chunk 8), the reference every other run equals. */
static float *snn_reference(mst_model *m, const mst_npy *x)
{
    int steps;
    float *ref = engine_run_all(m, x, snn(7, 8), &steps);
    expect_informative(ref + (long)(T - 1) * N * 100, "SNN");
    return ref;
}

Test(invariance, snn_any_batch_and_time_chunk, .timeout = 300)
{
    mst_model *m = load_grid();
    mst_npy x = grid_inputs();
    long n = (long)T * N * 100;
    float *ref = snn_reference(m, &x);
    static const int cfg[][2] = {{1, 8}, {31, 3}, {7, 1}, {1, T}, {31, T}, {4, 5}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        int steps;
        float *got = engine_run_all(m, &x, snn(cfg[i][0], cfg[i][1]), &steps);
        char what[96];
        snprintf(what, sizeof what, "SNN p=0.75 --batch %d --time-chunk %d vs --batch 7 --time-chunk 8", cfg[i][0],
                 cfg[i][1]);
        expect_identical(ref, got, n, what);
        free(got);
    }
    free(ref);
    mst_npy_free(&x);
    mst_model_free(m);
}

Test(invariance, ann_any_batch)
{
    mst_model *m = load_grid();
    mst_npy x = grid_inputs();
    int steps;
    float *ref = engine_run_all(m, &x, ann(7), &steps);
    expect_informative(ref, "ANN");
    static const int batches[] = {1, 31, 4};
    for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++) {
        float *got = engine_run_all(m, &x, ann(batches[i]), &steps);
        char what[64];
        snprintf(what, sizeof what, "ANN --batch %d vs --batch 7", batches[i]);
        expect_identical(ref, got, (long)N * 100, what);
        free(got);
    }
    free(ref);
    mst_npy_free(&x);
    mst_model_free(m);
}

Test(invariance, thread_count_does_not_matter, .timeout = 120)
{
    mst_model *m = load_grid();
    mst_npy x = grid_inputs();
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    float *one = snn_reference(m, &x);
    omp_set_num_threads(3);
    float *three = snn_reference(m, &x);
    omp_set_num_threads(saved);
    expect_identical(one, three, (long)T * N * 100, "1 vs 3 threads");
    free(one), free(three);
    mst_npy_free(&x);
    mst_model_free(m);
}

/* The reference SNN run and the ANN run against the recorded bits. To record
 * anew (only when the arithmetic changes on purpose):
 *   MST_RECORD_INVARIANCE=1 build/tests/test_invariance --filter 'invariance/same_bits*' */
Test(invariance, same_bits_as_the_recorded_run, .timeout = 120)
{
    mst_model *m = load_grid();
    mst_npy x = grid_inputs();
    int steps;
    float *s = snn_reference(m, &x), *a = engine_run_all(m, &x, ann(7), &steps);
    long per = (long)N * 100;
    float *both = malloc(sizeof(float) * (size_t)((T + 1) * per));
    memcpy(both, s, sizeof(float) * (size_t)(T * per));
    memcpy(both + T * per, a, sizeof(float) * (size_t)per);
    mst_error err = {0};
    if (getenv("MST_RECORD_INVARIANCE")) {
        cr_assert_eq(mst_npy_write(RECORD, both, 3, (long[]){T + 1, N, 100}, &err), MST_OK, "%s", err.msg);
        cr_log_warn("recorded %s", RECORD);
    }
    mst_npy rec;
    cr_assert_eq(mst_npy_read(RECORD, &rec, &err), MST_OK, "%s (record it: see this test's comment)", err.msg);
    cr_assert(rec.ndim == 3 && rec.shape[0] == T + 1 && rec.shape[1] == N && rec.shape[2] == 100, "%s has another shape",
              RECORD);
    for (int t = 0; t <= T; t++) {
        long diff = 0;
        for (long i = 0; i < per; i++) diff += memcmp(&both[t * per + i], &rec.data[t * per + i], sizeof(float)) != 0;
        cr_expect_eq(diff, 0, "%s: %ld of %ld logits differ from the recorded run", t < T ? "SNN step" : "ANN", diff,
                     per);
        if (diff) break;
    }
    free(s), free(a), free(both);
    mst_npy_free(&rec);
    mst_npy_free(&x);
    mst_model_free(m);
}

/* tests/coretype.sh runs this suite with OPENBLAS_CORETYPE set: the kernels
 * OpenBLAS would use (the engine does not; `mst bench`'s floor does) are the
 * ones asked for, so that those runs test what they say. (An OpenBLAS built
 * for one CPU type, without DYNAMIC_ARCH, ignores the variable.) */
Test(invariance, openblas_runs_the_core_type_asked_for)
{
    const char *want = getenv("OPENBLAS_CORETYPE"), *got = openblas_get_corename();
    if (!want) cr_skip_test("OPENBLAS_CORETYPE is not set (OpenBLAS picked %s)", got);
    if (!strstr(openblas_get_config(), "DYNAMIC_ARCH"))
        cr_skip_test("this OpenBLAS is built for %s alone (%s)", got, openblas_get_config());
    cr_expect(strcasecmp(want, got) == 0, "OPENBLAS_CORETYPE=%s, but OpenBLAS runs %s", want, got);
}

/* tiny_bn and tiny_nobn (the goldens' models, 8x8 tokens): batch 4 vs 1,
 * chunk 16 vs 3, batch 3 with chunk 1, ANN batch 4 vs 1. */
Test(invariance, golden_models_any_batch_and_time_chunk, .timeout = 120)
{
    const char *models[] = {"tiny_bn", "tiny_nobn"};
    for (int mi = 0; mi < 2; mi++) {
        char in[64];
        snprintf(in, sizeof in, "%s_input", models[mi]);
        mst_npy x;
        load_test_npy(in, &x);
        mst_model *m = load_test_model(models[mi]);
        long n = 16 * x.shape[0] * mst_model_arch(m)->num_classes;
        mst_engine_opts base = {.mode = MST_MODE_SNN, .timesteps = 16, .time_chunk = 16, .max_batch = 4,
                                .mask_ratio = 0.75, .seed = 5, .device = MST_DEVICE_CPU};
        int steps;
        float *ref = engine_run_all(m, &x, base, &steps);
        mst_engine_opts o = base;
        o.max_batch = 1;
        float *b1 = engine_run_all(m, &x, o, &steps);
        expect_identical(ref, b1, n, "--batch 1 vs --batch 4");
        o = base;
        o.time_chunk = 3;
        float *c3 = engine_run_all(m, &x, o, &steps);
        expect_identical(ref, c3, n, "--time-chunk 3 vs --time-chunk 16");
        o.max_batch = 3;
        o.time_chunk = 1;
        float *mixed = engine_run_all(m, &x, o, &steps);
        expect_identical(ref, mixed, n, "--batch 3 --time-chunk 1");
        o = base;
        o.mode = MST_MODE_ANN;
        float *a4 = engine_run_all(m, &x, o, &steps);
        o.max_batch = 1;
        float *a1 = engine_run_all(m, &x, o, &steps);
        expect_identical(a4, a1, x.shape[0] * mst_model_arch(m)->num_classes, "ANN --batch 1 vs 4");
        free(ref), free(b1), free(c3), free(mixed), free(a4), free(a1);
        mst_model_free(m);
        mst_npy_free(&x);
    }
}

/* mst eval over the shipped sample images (100, resized to 56x56) on the
 * grid28 model, SNN p=0.75: its results file with --stats. */
static json_t *eval(const char *args, const char *json)
{
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "eval --device cpu --model %s --data %s/samples --timesteps 8 --mask-ratio 0.75 --seed %d --mean 0.5 "
             "--std 0.5 "
             "--report-steps 1,2,4,8 --stats --results-file %s %s",
             grid_model(), MST_WEIGHTS, SEED, json, args);
    cr_assert_eq(run_bin(MST_BIN, cmd, out, sizeof out), 0, "mst %s: %s", cmd, out);
    return load_json(json);
}

static double field(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

/* A total over the images of a results file: a per-image average times the
 * image count (an integer count, exactly representable). */
static long total(json_t *r, const char *list, size_t i, const char *key)
{
    json_t *e = json_array_get(json_object_get(json_object_get(r, "energy"), list), i);
    return lround(field(e, key) * field(r, "images"));
}

static long correct(json_t *r, const char *which, size_t step)
{
    return lround(json_number_value(json_array_get(json_object_get(r, which), step)) * field(r, "images") / 100.0);
}

/* Decode workers, batch and chunk leave every result the same, to every
 * spike of every IF site; three shards add up to the whole run, count for
 * count. */
Test(invariance, eval_any_workers_batch_and_shards, .timeout = 300)
{
    const char *ja = tmp_path("a.json"), *jb = tmp_path("b.json");
    json_t *a = eval("--batch 7 --workers 0", ja), *b = eval("--batch 31 --time-chunk 3 --workers 3", jb);
    static const char *same[] = {"step_top1", "step_top5", "per_class", "energy"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        cr_expect(json_equal(json_object_get(a, same[i]), json_object_get(b, same[i])),
                  "%s differs between --workers 0 --batch 7 and --workers 3 --batch 31 --time-chunk 3", same[i]);
    size_t sites = json_array_size(json_object_get(json_object_get(a, "energy"), "sites"));
    cr_assert_gt(sites, 20);
    for (size_t i = 0; i < sites; i++) cr_expect_gt(total(a, "sites", i, "spikes"), 0, "IF site %zu never fires", i);
    long *spikes = calloc(sites, sizeof(long)), top1[4] = {0}, top5[4] = {0}, images = 0;
    for (int k = 0; k < 3; k++) {
        char args[64];
        snprintf(args, sizeof args, "--shard %d/3 --batch %d --workers %d", k, 5 + 4 * k, k);
        json_t *s = eval(args, jb);
        images += lround(field(s, "images"));
        for (size_t i = 0; i < sites; i++) spikes[i] += total(s, "sites", i, "spikes");
        for (size_t t = 0; t < 4; t++) top1[t] += correct(s, "step_top1", t), top5[t] += correct(s, "step_top5", t);
        json_decref(s);
    }
    cr_expect_eq(images, 100);
    for (size_t i = 0; i < sites; i++)
        cr_expect_eq(spikes[i], total(a, "sites", i, "spikes"), "site %zu: shards fire %ld spikes, the whole run %ld", i,
                     spikes[i], total(a, "sites", i, "spikes"));
    for (size_t t = 0; t < 4; t++) {
        cr_expect_eq(top1[t], correct(a, "step_top1", t), "step index %zu: top-1 of the shards %ld, whole %ld", t,
                     top1[t], correct(a, "step_top1", t));
        cr_expect_eq(top5[t], correct(a, "step_top5", t), "step index %zu: top-5 differs", t);
    }
    free(spikes);
    json_decref(a), json_decref(b);
    unlink(ja), unlink(jb);
}
