/* End to end: per-step cumulative logits against the Python reference loop
 * (tools/make_goldens.py); options and memory. (Invariance to batch, chunk
 * and machine: test_invariance.c.) */
#include <jansson.h>
#include <math.h>

#include "helpers.h"
#include "host/engine/engine_internal.h"
#include "host/model/synth.h"
#include "host/data/dataset.h"
#include "host/data/npy.h"
#include "host/data/transform.h"
#include "kernels/backend.h"
#include "mst/mst.h"

/* The backends this machine can run: the CPU, and where a CUDA device
 * answers, CUDA launching every op and CUDA replaying captured chunks. */
static int num_devices(void)
{
#ifdef MST_HAVE_CUDA
    return mst_cuda_device_count() > 0 ? 3 : 1;
#else
    return 1;
#endif
}

static const mst_device_kind devices[] = {MST_DEVICE_CPU, MST_DEVICE_CUDA, MST_DEVICE_CUDA};

/* Whether this CUDA device runs the wgmma synapse (Hopper, or the emulator);
 * elsewhere the engine refuses it with MST_ERR_UNSUPPORTED, and the runs
 * that need it are left out, saying so. */
static int wgmma_runs(const mst_model *m)
{
    mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 1, .max_batch = 1, .device = MST_DEVICE_CUDA,
                         .precision = MST_PRECISION_BF16, .fused_synapse = MST_FUSED_WGMMA};
    mst_engine *e = NULL;
    mst_error err = {0};
    mst_status r = mst_engine_create(m, &o, &e, &err);
    if (r == MST_OK) mst_engine_free(e);
    if (r == MST_ERR_UNSUPPORTED) cr_log_warn("the wgmma synapse is not run here: %s", err.msg);
    cr_expect(r == MST_OK || r == MST_ERR_UNSUPPORTED, "wgmma engine: %s", err.msg);
    return r == MST_OK;
}
static const char *device_names[] = {"cpu", "cuda", "cuda with graphs"};

#define T_GOLDEN 16
#define SEED 1234

typedef struct {
    const char *model;
    mst_mode mode;
    double ratio;
    const char *golden;
    unsigned sites; /* MST_MASK_*; 0: the default (q, k, attn) */
} gcase;

#define FC1 MST_MASK_FC1
#define FC2 MST_MASK_FC2
#define ALL MST_MASK_ALL
static const gcase goldens[] = {
    {"tiny_bn", MST_MODE_SNN, 0.0, "tiny_bn_snn_p00", 0},         {"tiny_bn", MST_MODE_SNN, 0.75, "tiny_bn_snn_p75", 0},
    {"tiny_bn", MST_MODE_ANN, 0.0, "tiny_bn_ann_p00", 0},         {"tiny_bn", MST_MODE_ANN, 0.75, "tiny_bn_ann_p75", 0},
    {"tiny_nobn", MST_MODE_SNN, 0.0, "tiny_nobn_snn_p00", 0},     {"tiny_nobn", MST_MODE_SNN, 0.75, "tiny_nobn_snn_p75", 0},
    {"tiny_nobn", MST_MODE_ANN, 0.0, "tiny_nobn_ann_p00", 0},     {"tiny_nobn", MST_MODE_ANN, 0.75, "tiny_nobn_ann_p75", 0},
    /* the MLP's mask sites (spec section 4b), alone and with the attention's */
    {"tiny_bn", MST_MODE_SNN, 0.75, "tiny_bn_snn_p75_fc1", FC1},     {"tiny_bn", MST_MODE_SNN, 0.75, "tiny_bn_snn_p75_fc2", FC2},
    {"tiny_bn", MST_MODE_SNN, 0.75, "tiny_bn_snn_p75_all", ALL},     {"tiny_bn", MST_MODE_ANN, 0.75, "tiny_bn_ann_p75_all", ALL},
    {"tiny_nobn", MST_MODE_SNN, 0.75, "tiny_nobn_snn_p75_fc1", FC1}, {"tiny_nobn", MST_MODE_SNN, 0.75, "tiny_nobn_snn_p75_fc2", FC2},
    {"tiny_nobn", MST_MODE_SNN, 0.75, "tiny_nobn_snn_p75_all", ALL}, {"tiny_nobn", MST_MODE_ANN, 0.75, "tiny_nobn_ann_p75_all", ALL},
};

static float max_abs(const float *a, long n)
{
    float m = 0;
    for (long i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i]));
    return m;
}

/* Two fp32 implementations sum in different orders, so an IF or QCFS input
 * that sits within an ulp of its threshold can fire in one and not the other
 * (spec section 8). Where nothing flipped, logits agree to ~1e-7 of their
 * scale; we allow 1e-5. A flip moves one image's logits by about one spike or
 * one QCFS level times a weight: at most one image per case may differ, by at
 * most 3 % of the logit scale, and the last-step top-1 must agree for all. */
Test(engine, matches_python_reference_loop, .timeout = 120)
{
    for (size_t i = 0; i < num_devices() * sizeof goldens / sizeof goldens[0]; i++) {
        const gcase *g = &goldens[i % (sizeof goldens / sizeof goldens[0])];
        int which = (int)(i / (sizeof goldens / sizeof goldens[0]));
        mst_device_kind dev = devices[which];
        char in[64];
        snprintf(in, sizeof in, "%s_input", g->model);
        mst_npy x, want;
        load_test_npy(in, &x);
        load_test_npy(g->golden, &want);
        mst_model *m = load_test_model(g->model);
        mst_engine_opts o = {.mode = g->mode, .timesteps = T_GOLDEN, .time_chunk = 5, .max_batch = 2,
                             .mask_ratio = g->ratio, .mask_sites = g->sites, .seed = SEED, .device = dev,
                             .cuda_graphs = which == 2};
        int steps, N = (int)x.shape[0], K = mst_model_arch(m)->num_classes;
        float *got = engine_run_all(m, &x, o, &steps);
        cr_assert_eq(want.shape[0], steps, "%s: golden has %ld steps", g->golden, want.shape[0]);
        float scale = max_abs(want.data, (long)steps * N * K);
        int flipped = 0;
        for (int n = 0; n < N; n++) {
            float worst = 0;
            int best_got = 0, best_want = 0;
            for (int t = 0; t < steps; t++)
                for (int k = 0; k < K; k++) {
                    long at = ((long)t * N + n) * K + k;
                    worst = fmaxf(worst, fabsf(got[at] - want.data[at]));
                }
            const float *gl = got + ((long)(steps - 1) * N + n) * K, *wl = want.data + ((long)(steps - 1) * N + n) * K;
            for (int k = 1; k < K; k++) {
                best_got = gl[k] > gl[best_got] ? k : best_got;
                best_want = wl[k] > wl[best_want] ? k : best_want;
            }
            cr_expect_eq(best_got, best_want, "%s image %d: top-1 %d vs reference %d", g->golden, n, best_got, best_want);
            cr_expect(worst <= 0.03f * scale, "%s image %d: deviation %g of scale %g", g->golden, n, worst, scale);
            flipped += worst > 1e-5f * scale;
        }
        cr_expect(flipped <= 1, "%s on %s: %d images off by more than rounding", g->golden, device_names[which], flipped);
        free(got);
        mst_model_free(m);
        mst_npy_free(&x);
        mst_npy_free(&want);
    }
}

/* The spikes into fc1 and fc2 after RSM equal the Python loop's
 * (tests/data/TAG_mlp_in.json), and each module's dropped SOPs are the
 * dropped spikes times the fan-out. */
static void expect_mlp_inputs(const mst_stats *st, const char *tag, const mst_arch *a)
{
    char js[512];
    snprintf(js, sizeof js, "%s/%s_mlp_in.json", MST_TEST_DATA, tag);
    json_t *want = load_json(js);
    double dropped[2] = {0, 0};
    int found = 0;
    for (int i = 0; i < st->num_layers; i++) {
        const mst_layer_stat *l = &st->layers[i];
        json_t *w = json_object_get(want, l->name);
        if (!w) continue;
        found++;
        cr_expect_eq(l->spikes_in, (double)json_integer_value(w), "%s: %s spikes in %g, reference %lld", tag, l->name,
                     l->spikes_in, (long long)json_integer_value(w));
        cr_expect(l->spikes_in <= l->spikes_unmasked, "%s: %s", tag, l->name);
        int fc2 = strstr(l->name, ".fc2") != NULL, s = atoi(l->name + strlen("layers."));
        dropped[fc2] += (l->spikes_unmasked - l->spikes_in) * (fc2 ? a->stages[s].dim : a->stages[s].mlp_hidden);
    }
    cr_expect_eq(found, (int)json_object_size(want), "%s: every fc1 and fc2 layer listed", tag);
    for (int i = 0; i < st->num_modules; i++)
        if (!strcmp(st->modules[i].name, "mlp.fc1") || !strcmp(st->modules[i].name, "mlp.fc2"))
            cr_expect_eq(st->modules[i].sops_dropped, dropped[st->modules[i].name[6] == '2'], "%s %s", tag,
                         st->modules[i].name);
    json_decref(want);
}

/* The modules add up to the totals; the head is listed, not counted. */
static void expect_modules_sum(const mst_stats *st)
{
    double sops = 0, macs = 0, e = 0;
    cr_assert_eq(st->num_modules, 9);
    for (int i = 0; i < st->num_modules; i++) {
        if (!st->modules[i].in_total) continue;
        sops += st->modules[i].sops, macs += st->modules[i].macs, e += st->modules[i].energy_j;
    }
    cr_expect(fabs(sops - st->sops) <= 1e-12 * st->sops && fabs(macs - st->macs) <= 1e-12 * st->macs);
    cr_expect(fabs(e - st->energy_j) <= 1e-9 * st->energy_j);
    cr_expect_str_eq(st->modules[8].name, "head");
    cr_expect(!st->modules[8].in_total && st->modules[8].macs == st->head_macs);
}

/* Energy accounting: every IF site's spike and neuron-step counts equal the
 * Python loop's (no threshold flips happen in these runs), and SOPs, MACs and
 * energy follow spec section 6 by hand; with the MLP's sites masked, the
 * spikes that reach fc1 and fc2 too. */
Test(engine, energy_counts_match_python_reference, .timeout = 120)
{
    static const struct {
        const char *model;
        double ratio;
        unsigned sites;
        const char *tag;
    } cases[] = {{"tiny_bn", 0.0, 0, "tiny_bn_snn_p00"},           {"tiny_bn", 0.75, 0, "tiny_bn_snn_p75"},
                 {"tiny_nobn", 0.0, 0, "tiny_nobn_snn_p00"},       {"tiny_nobn", 0.75, 0, "tiny_nobn_snn_p75"},
                 {"tiny_bn", 0.75, FC1, "tiny_bn_snn_p75_fc1"},    {"tiny_bn", 0.75, ALL, "tiny_bn_snn_p75_all"},
                 {"tiny_nobn", 0.75, FC2, "tiny_nobn_snn_p75_fc2"}, {"tiny_nobn", 0.75, ALL, "tiny_nobn_snn_p75_all"}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *model = cases[ci].model;
        char in[64], js[512];
        snprintf(in, sizeof in, "%s_input", model);
        snprintf(js, sizeof js, "%s/%s_spikes.json", MST_TEST_DATA, cases[ci].tag);
        mst_npy x;
        load_test_npy(in, &x);
        mst_model *m = load_test_model(model);
        mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = T_GOLDEN, .time_chunk = 5, .max_batch = 2,
                             .mask_ratio = cases[ci].ratio, .mask_sites = cases[ci].sites, .seed = SEED,
                             .device = MST_DEVICE_CPU, .count_spikes = 1};
        mst_engine *e;
        mst_error err = {0};
        cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
        const mst_arch *a = mst_model_arch(m);
        long img = x.shape[1] * x.shape[2] * x.shape[3];
        float *cum = malloc(sizeof(float) * (size_t)(T_GOLDEN * 2 * a->num_classes));
        for (int i0 = 0; i0 < 4; i0 += 2)
            cr_assert_eq(mst_engine_run(e, x.data + i0 * img, 2, (uint64_t)i0, cum, &err), MST_OK, "%s", err.msg);
        mst_stats st;
        cr_assert_eq(mst_engine_stats(e, &st, &err), MST_OK, "%s", err.msg);
        json_error_t je;
        json_t *want = json_load_file(js, 0, &je);
        cr_assert(want != NULL, "%s: %s", js, je.text);
        cr_expect_eq(st.num_sites, (int)json_object_size(want));
        for (int i = 0; i < st.num_sites; i++) {
            json_t *w = json_object_get(want, st.sites[i].name);
            cr_assert(w != NULL, "%s: no site %s", js, st.sites[i].name);
            cr_expect_eq(st.sites[i].spikes, (double)json_integer_value(json_array_get(w, 0)), "%s %s spikes",
                         cases[ci].tag, st.sites[i].name);
            cr_expect_eq(st.sites[i].neurons, (double)json_integer_value(json_array_get(w, 1)), "%s %s neurons",
                         cases[ci].tag, st.sites[i].name);
        }
        /* by hand: qkv SOPs = IF_sc1 spikes x 3C; patch embedding MACs every step; energy */
        int C0 = a->stages[0].dim, N0 = a->stages[0].resolution * a->stages[0].resolution;
        cr_expect_str_eq(st.layers[1].name, "layers.0.blocks.0.attn.qkv");
        cr_expect_eq(st.layers[1].sops, st.sites[1].spikes * 3 * C0);
        cr_expect_eq(st.layers[0].macs, 4.0 * T_GOLDEN * N0 * C0 * a->in_chans * a->patch_size * a->patch_size);
        cr_expect(fabs(st.energy_j - (0.9e-12 * st.sops + 4.6e-12 * st.macs)) <= 1e-9 * st.energy_j);
        cr_expect(st.images == 4 && st.steps == T_GOLDEN);
        expect_modules_sum(&st);
        if (cases[ci].sites) expect_mlp_inputs(&st, cases[ci].tag, a);
        json_decref(want);
        free(cum);
        mst_engine_free(e);
        mst_model_free(m);
        mst_npy_free(&x);
    }
}


Test(engine, masks_change_results_and_seed_matters)
{
    mst_npy x;
    load_test_npy("tiny_bn_input", &x);
    mst_model *m = load_test_model("tiny_bn");
    mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 8, .max_batch = 4, .mask_ratio = 0.75, .seed = 1};
    int steps;
    long n = 8 * x.shape[0] * 10;
    float *a = engine_run_all(m, &x, o, &steps);
    o.seed = 2;
    float *b = engine_run_all(m, &x, o, &steps);
    o.mask_ratio = 0.0;
    float *c = engine_run_all(m, &x, o, &steps);
    o.seed = 3;
    float *d = engine_run_all(m, &x, o, &steps);
    cr_expect(memcmp(a, b, sizeof(float) * (size_t)n) != 0, "the seed changes the masks");
    cr_expect(memcmp(a, c, sizeof(float) * (size_t)n) != 0, "masking changes the logits");
    expect_identical(c, d, n, "without masking the seed is irrelevant");
    free(a), free(b), free(c), free(d);
    mst_model_free(m);
    mst_npy_free(&x);
}

/* The MLP's masks are keyed by image position, absolute step and token, so
 * batch and time chunk change no bit with every site masked; a site set
 * changes the logits, and p = 0 masks nothing wherever it is asked for. */
Test(engine, mlp_masks_are_batch_and_chunk_invariant)
{
    mst_npy x;
    load_test_npy("tiny_nobn_input", &x);
    mst_model *m = load_test_model("tiny_nobn");
    long n = 12 * x.shape[0] * 7;
    int steps;
    mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 12, .time_chunk = 12, .max_batch = 4, .mask_ratio = 0.75,
                         .mask_sites = MST_MASK_ALL, .seed = 9, .device = MST_DEVICE_CPU};
    float *a = engine_run_all(m, &x, o, &steps);
    o.max_batch = 3, o.time_chunk = 5;
    float *b = engine_run_all(m, &x, o, &steps);
    o.mask_sites = MST_MASK_RELEASED;
    float *c = engine_run_all(m, &x, o, &steps);
    o.mask_ratio = 0.0, o.mask_sites = MST_MASK_ALL;
    float *d = engine_run_all(m, &x, o, &steps);
    o.mask_sites = MST_MASK_RELEASED;
    float *z = engine_run_all(m, &x, o, &steps);
    expect_identical(a, b, n, "all sites: batch 4 chunk 12 vs batch 3 chunk 5");
    cr_expect(memcmp(a, c, sizeof(float) * (size_t)n) != 0, "masking the MLP changes the logits");
    expect_identical(d, z, n, "p = 0: the site set is irrelevant");
    free(a), free(b), free(c), free(d), free(z);
    mst_model_free(m);
    mst_npy_free(&x);
}

/* Images first..first+n-1 of x through engine e: [steps][n][K]. */
static float *run_images(mst_engine *e, const mst_npy *x, int first, int n, int K)
{
    long img = x->shape[1] * x->shape[2] * x->shape[3];
    float *out = malloc(sizeof(float) * (size_t)(mst_engine_steps_out(e) * n * K));
    mst_error err = {0};
    cr_assert_eq(mst_engine_run(e, x->data + first * img, n, (uint64_t)first, out, &err), MST_OK, "%s", err.msg);
    return out;
}

/* A profiled run with CUDA graphs launches each op itself, so its attention
 * must take the chunk's first image and step as arguments, not from the
 * device copy a replayed graph reads: an earlier chunk's, or never written
 * (fresh device memory is poison). Bit for bit what a run without graphs
 * gives, profiled from the first chunk and after graph runs. */
Test(engine, profiled_runs_with_graphs_use_their_own_chunk, .timeout = 120)
{
    if (num_devices() < 3) cr_skip_test("no CUDA device");
    mst_npy x;
    load_test_npy("tiny_bn_input", &x);
    mst_model *m = load_test_model("tiny_bn");
    int K = mst_model_arch(m)->num_classes;
    long n = 8L * 2 * K;
    mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 8, .time_chunk = 4, .max_batch = 2, .mask_ratio = 0.75,
                         .seed = 5, .device = MST_DEVICE_CUDA};
    mst_engine *plain, *fresh, *warm;
    mst_error err = {0};
    cr_assert_eq(mst_engine_create(m, &o, &plain, &err), MST_OK, "%s", err.msg);
    o.cuda_graphs = 1;
    cr_assert_eq(mst_engine_create(m, &o, &fresh, &err), MST_OK, "%s", err.msg);
    cr_assert_eq(mst_engine_create(m, &o, &warm, &err), MST_OK, "%s", err.msg);
    float *want01 = run_images(plain, &x, 0, 2, K), *want23 = run_images(plain, &x, 2, 2, K);
    mst_engine_set_profiling(fresh, 1);
    float *got01 = run_images(fresh, &x, 0, 2, K);
    expect_identical(want01, got01, n, "profiled from the first chunk, with graphs");
    free(run_images(warm, &x, 0, 2, K)); /* replays leave chunk (0, 4) in the device keys */
    mst_engine_set_profiling(warm, 1);
    float *got23 = run_images(warm, &x, 2, 2, K);
    expect_identical(want23, got23, n, "profiled after graph runs");
    free(want01), free(want23), free(got01), free(got23);
    mst_engine_free(plain), mst_engine_free(fresh), mst_engine_free(warm);
    mst_model_free(m);
    mst_npy_free(&x);
}

Test(engine, rejects_bad_options)
{
    mst_model *m = load_test_model("tiny_nobn");
    mst_engine *e = NULL;
    mst_error err = {0};
    struct {
        mst_engine_opts o;
        const char *expect;
    } bad[] = {
        {{.mode = MST_MODE_SNN, .timesteps = 0, .max_batch = 1}, "timesteps must be in [1, 65535]"},
        {{.mode = MST_MODE_SNN, .timesteps = 70000, .max_batch = 1}, "timesteps must be in [1, 65535]"},
        {{.mode = MST_MODE_SNN, .timesteps = 4, .max_batch = 0}, "batch must be >= 1"},
        {{.mode = MST_MODE_SNN, .timesteps = 4, .max_batch = 1, .mask_ratio = 1.5}, "mask ratio must be in [0, 1]"},
        {{.mode = MST_MODE_SNN, .timesteps = 4, .max_batch = 1, .mask_ratio = NAN}, "mask ratio must be in [0, 1]"},
        {{.mode = MST_MODE_SNN, .timesteps = 4, .max_batch = 1, .fused_synapse = 1}, "takes fp16 or bf16 operands"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e = (mst_engine *)&err; /* a failed create must clear it */
        cr_expect_eq(mst_engine_create(m, &bad[i].o, &e, &err), MST_ERR_ARG, "case %zu", i);
        cr_expect(contains(err.msg, bad[i].expect), "case %zu: %s", i, err.msg);
        cr_expect(e == NULL);
    }
    mst_engine_opts ok = {.mode = MST_MODE_SNN, .timesteps = 2, .max_batch = 2};
    cr_assert_eq(mst_engine_create(m, &ok, &e, &err), MST_OK);
    float img[3 * 28 * 28 * 3] = {0}, out[2 * 3 * 7];
    cr_expect_eq(mst_engine_run(e, img, 3, 0, out, &err), MST_ERR_ARG);
    cr_expect(contains(err.msg, "batch of 3 images; the engine takes 1 to 2"), "%s", err.msg);
    cr_expect_eq(mst_engine_run(e, img, 2, 0xffffffffull, out, &err), MST_ERR_ARG);
    mst_stats st;
    cr_expect_eq(mst_engine_stats(e, &st, &err), MST_ERR_ARG, "an engine that does not count has no energy figures");
    cr_expect(contains(err.msg, "count_spikes"), "%s", err.msg);
    mst_engine_free(e);
    mst_model_free(m);
}

static int argmax(const float *v, int K)
{
    int b = 0;
    for (int k = 1; k < K; k++) b = v[k] > v[b] ? k : b;
    return b;
}

/* Every `every`-th shipped sample image (weights/samples), preprocessed as
 * the model's metadata says, into x [n][1][32][32]; labels into y. */
static int shipped_samples(const mst_arch *arch, int every, float **x, int **y)
{
    mst_dataset d;
    mst_error err = {0};
    cr_assert_eq(mst_dataset_open(MST_WEIGHTS "/samples", &d, &err), MST_OK, "%s", err.msg);
    mst_transform tf = {.channels = arch->in_chans, .size = arch->img_size, .mean = arch->mean, .std = arch->std};
    long img = (long)arch->in_chans * arch->img_size * arch->img_size;
    int n = (int)((d.count + every - 1) / every);
    *x = malloc(sizeof(float) * (size_t)(n * img));
    *y = malloc(sizeof(int) * (size_t)n);
    for (int k = 0; k < n; k++) {
        mst_image im;
        cr_assert_eq(mst_dataset_image(&d, (long)k * every, &im, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_image_to_channels(&im, tf.channels, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_transform_apply(&tf, im.pixels, im.height, im.width, *x + k * img, &err), MST_OK, "%s", err.msg);
        mst_image_free(&im);
        (*y)[k] = d.labels[(long)k * every];
    }
    mst_dataset_close(&d);
    return n;
}

/* fp16/bf16 operands (CUDA; the two-kernel and the fused synapse) against
 * fp32 on the same device, on the shipped
 * trained model (fmnist_p75) and every fifth shipped image, T = 32: the
 * last-step top-1 agrees with fp32 on all but at most one of the 20 images
 * (a reduced-precision potential may cross a threshold that fp32 does not),
 * and the accuracy is within one image. The tiny random test models are not
 * used: their logits are nearly tied, and 2 of 4 images flip there in any
 * precision change. design.md's 0.1 % criterion over a real evaluation set is
 * measured on the full test set by benchmarks/gpu-check.sh. */
Test(engine, reduced_precision_top1_agrees_with_fp32, .timeout = 300)
{
    if (num_devices() < 2) cr_skip_test("no CUDA device answers: fp16/bf16 run on the CUDA backend only");
    mst_model *m;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(MST_WEIGHTS "/fmnist_p75.safetensors", NULL, &m, &err), MST_OK, "%s", err.msg);
    const mst_arch *arch = mst_model_arch(m);
    float *pixels;
    int *labels, N = shipped_samples(arch, 5, &pixels, &labels), K = arch->num_classes, steps;
    mst_npy x = {.data = pixels, .shape = {N, arch->in_chans, arch->img_size, arch->img_size}, .ndim = 4};
    mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 32, .time_chunk = 16, .max_batch = 10, .mask_ratio = 0.75,
                         .seed = SEED, .device = MST_DEVICE_CUDA};
    float *ref = engine_run_all(m, &x, o, &steps);
    int ref_top1[64], ref_right = 0;
    for (int n = 0; n < N; n++) ref_right += (ref_top1[n] = argmax(ref + ((long)(steps - 1) * N + n) * K, K)) == labels[n];
    int variants = wgmma_runs(m) ? 6 : 4;
    for (int v = 0; v < variants; v++) { /* fp16, bf16; two kernels, then the WMMA and wgmma fused synapses */
        o.precision = v % 2 ? MST_PRECISION_BF16 : MST_PRECISION_FP16;
        o.fused_synapse = v / 2;
        float *got = engine_run_all(m, &x, o, &steps);
        int differ = 0, right = 0;
        for (int n = 0; n < N; n++) {
            int top1 = argmax(got + ((long)(steps - 1) * N + n) * K, K);
            differ += top1 != ref_top1[n];
            right += top1 == labels[n];
        }
        const char *name[] = {"fp16", "bf16", "fp16 fused", "bf16 fused", "fp16 wgmma", "bf16 wgmma"};
        cr_expect(differ <= 1, "%s: top-1 differs from fp32 on %d of %d images", name[v], differ, N);
        cr_expect(abs(right - ref_right) <= 1, "%s: %d of %d right, fp32 %d", name[v], right, N, ref_right);
        free(got);
    }
    cr_expect_geq(ref_right, N * 3 / 4, "fp32 on CUDA: only %d of %d right", ref_right, N);
    free(ref);
    free(pixels);
    free(labels);
    mst_model_free(m);
}

/* Memory is planned per (batch, time chunk): running 8 times as many steps
 * in the same chunks needs no more memory beyond the per-step logits that
 * come back (issue 4: device memory per image bounded by the chunk, not T). */
Test(engine, memory_bounded_by_the_time_chunk, .timeout = 120)
{
    mst_npy x;
    load_test_npy("tiny_bn_input", &x);
    mst_model *m = load_test_model("tiny_bn");
    int K = mst_model_arch(m)->num_classes, B = 2;
    for (int d = 0; d < (num_devices() > 1 ? 2 : 1); d++) {
        size_t peak[2];
        for (int k = 0; k < 2; k++) {
            mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = k ? 64 : 8, .time_chunk = 4, .max_batch = B,
                                 .mask_ratio = 0.75, .seed = 5, .device = devices[d]};
            mst_engine *e;
            mst_error err = {0};
            float *out = malloc(sizeof(float) * (size_t)(64 * B * K));
            cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
            cr_assert_eq(mst_engine_run(e, x.data, B, 0, out, &err), MST_OK, "%s", err.msg);
            peak[k] = mst_engine_peak_bytes(e);
            mst_engine_free(e);
            free(out);
        }
        cr_expect_gt(peak[0], 0);
        cr_expect_leq(peak[1], peak[0] + sizeof(float) * (size_t)(56 * B * K), "%s: %zu bytes at T=64, %zu at T=8",
                      device_names[d], peak[1], peak[0]);
    }
    mst_model_free(m);
    mst_npy_free(&x);
}

/* What the forward pass stores where (engine.c): x, bufA and, in SNN mode,
 * bufH hold at most N x C floats per row of the chunk; ANN's bufH also the
 * qkv and fc1 levels, N x max(3C, hidden); packed spikes only in SNN. */
static void expect_buffer_sizes(const mst_model *m, mst_mode mode, int B, int Tc)
{
    const mst_arch *a = mst_model_arch(m);
    size_t rows = (size_t)B * Tc, NC = 0, NH = 0, WA = 0, WH = 0;
    for (int s = 0; s < a->num_stages; s++) {
        size_t N = (size_t)a->stages[s].resolution * a->stages[s].resolution, C = (size_t)a->stages[s].dim;
        size_t H = 3 * C > (size_t)a->stages[s].mlp_hidden ? 3 * C : (size_t)a->stages[s].mlp_hidden;
        NC = N * C > NC ? N * C : NC, NH = N * H > NH ? N * H : NH;
        WA = N * ((C + 63) / 64) > WA ? N * ((C + 63) / 64) : WA, WH = N * ((H + 63) / 64) > WH ? N * ((H + 63) / 64) : WH;
    }
    mst_buffer_sizes z;
    mst_engine_buffer_sizes(m, mode, B, Tc, &z);
    int snn = mode == MST_MODE_SNN;
    cr_expect_eq(z.x, rows * NC);
    cr_expect_eq(z.bufA, rows * NC);
    cr_expect_eq(z.bufH, rows * (snn ? NC : NH), "%s: bufH %zu floats, holds %zu", snn ? "SNN" : "ANN", z.bufH,
                 rows * (snn ? NC : NH));
    cr_expect_eq(z.sA, snn ? rows * WA : 0);
    cr_expect_eq(z.sB, snn ? rows * WA : 0);
    cr_expect_eq(z.sH, snn ? rows * WH : 0);
}

/* The plan is what the engine allocates: right after creation the backend
 * holds exactly the planned bytes but the scratch; after a run, the scratch
 * it grew (and on CUDA the fp16/bf16 weight copies) is within the plan, and
 * on CUDA exactly the plan. */
Test(engine, plan_is_what_the_engine_allocates, .timeout = 120)
{
    mst_npy x;
    load_test_npy("tiny_bn_input", &x);
    mst_model *m = load_test_model("tiny_bn");
    int K = mst_model_arch(m)->num_classes;
    static const struct {
        int device;
        mst_precision precision;
        int fused;
        const char *name;
    } runs[] = {{0, MST_PRECISION_FP32, 0, "cpu"}, {1, MST_PRECISION_FP32, 0, "cuda fp32"},
                {1, MST_PRECISION_BF16, 0, "cuda bf16"}, {1, MST_PRECISION_FP16, MST_FUSED_WMMA, "cuda fp16 fused"},
                {1, MST_PRECISION_BF16, MST_FUSED_WGMMA, "cuda bf16 wgmma"}};
    int wgmma = num_devices() > 1 && wgmma_runs(m);
    for (int mode = 0; mode < 2; mode++) {
        expect_buffer_sizes(m, (mst_mode)mode, 3, 5);
        for (size_t r = 0; r < sizeof runs / sizeof runs[0] && runs[r].device < num_devices(); r++) {
            if (runs[r].fused == MST_FUSED_WGMMA && !wgmma) continue;
            mst_engine_opts o = {.mode = (mst_mode)mode, .timesteps = 10, .time_chunk = 5, .max_batch = 3,
                                 .mask_ratio = 0.75, .seed = 5, .device = devices[runs[r].device],
                                 .precision = runs[r].precision, .fused_synapse = runs[r].fused};
            mst_engine *e;
            mst_error err = {0};
            cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
            mst_memory_plan p;
            mst_engine_memory(e, &p);
            cr_expect_eq(mst_engine_peak_bytes(e), p.planned - p.scratch, "%s %s: holds %zu bytes, planned %zu + scratch",
                         runs[r].name, mode ? "ANN" : "SNN", mst_engine_peak_bytes(e), p.planned - p.scratch);
            free(run_images(e, &x, 0, 3, K));
            if (runs[r].device == 0)
                cr_expect_leq(mst_engine_peak_bytes(e), p.planned, "cpu: %zu bytes after a run, plan %zu",
                              mst_engine_peak_bytes(e), p.planned);
            else
                cr_expect_eq(mst_engine_peak_bytes(e), p.planned, "%s %s: %zu bytes after a run, plan %zu", runs[r].name,
                             mode ? "ANN" : "SNN", mst_engine_peak_bytes(e), p.planned);
            mst_engine_free(e);
        }
    }
    mst_model_free(m);
    mst_npy_free(&x);
}

/* Under a memory limit the engine runs the longest time chunk whose plan
 * fits (on the CPU with the same logits, bit for bit), and where not even
 * one step fits it fails with the sizes, before allocating. */
Test(engine, time_chunk_shrinks_to_fit_the_memory, .timeout = 120)
{
    mst_npy x;
    load_test_npy("tiny_bn_input", &x);
    mst_model *m = load_test_model("tiny_bn");
    int K = mst_model_arch(m)->num_classes;
    for (int d = 0; d < (num_devices() > 1 ? 2 : 1); d++) {
        mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 16, .time_chunk = 3, .max_batch = 2,
                             .mask_ratio = 0.75, .seed = 5, .device = devices[d]};
        mst_memory_plan p3, p1, got;
        mst_error err = {0};
        cr_assert_eq(mst_engine_plan(m, &o, &p3, &err), MST_OK, "%s", err.msg);
        o.time_chunk = 1;
        cr_assert_eq(mst_engine_plan(m, &o, &p1, &err), MST_OK, "%s", err.msg);
        cr_expect_lt(p1.planned, p3.planned);
        o.time_chunk = 16;
        mst_engine *full, *fitted;
        cr_assert_eq(mst_engine_create(m, &o, &full, &err), MST_OK, "%s", err.msg);
        o.memory_limit = p3.planned;
        cr_assert_eq(mst_engine_create(m, &o, &fitted, &err), MST_OK, "%s", err.msg);
        mst_engine_memory(fitted, &got);
        cr_expect_eq(mst_engine_time_chunk(fitted), 3, "%s: chunk %d under a limit that fits 3 steps", device_names[d],
                     mst_engine_time_chunk(fitted));
        cr_expect(got.requested_chunk == 16 && got.planned == p3.planned && got.available == p3.planned);
        float *a = run_images(full, &x, 0, 2, K), *b = run_images(fitted, &x, 0, 2, K);
        if (d == 0) expect_identical(a, b, 16L * 2 * K, "cpu: chunks of 3 (fitted) vs 16");
        free(a), free(b);
        mst_engine_free(full), mst_engine_free(fitted);
        o.memory_limit = p1.planned - 1;
        mst_engine *none = (mst_engine *)&err; /* a failed create must clear it */
        cr_expect_eq(mst_engine_create(m, &o, &none, &err), MST_ERR_NOMEM);
        cr_expect(none == NULL);
        cr_expect(strstr(err.msg, "needs") && strstr(err.msg, "GiB") && strstr(err.msg, "use a smaller batch"), "%s",
                  err.msg);
    }
    mst_model_free(m);
    mst_npy_free(&x);
}

/* The Swin-T shape at batch 64 and a time chunk of 128 (fp32, SNN) plans
 * well within an H200's 139 GiB (108 GiB, 74 of it the two-kernel synapse's
 * scratch); with bufH sized for the ANN's widest levels, as before, it came
 * to 135 GiB, which an H200 with a CUDA context cannot hold. */
Test(engine, swin_t_batch_64_chunk_128_fits_an_h200, .timeout = 120)
{
    if (num_devices() < 2) cr_skip_test("no CUDA device");
    const char *path = tmp_path("swin_t.safetensors");
    mst_error err = {0};
    cr_assert_eq(mst_synth_write(mst_synth_find("swin-t"), 0, path, &err), MST_OK, "%s", err.msg);
    mst_model *m;
    cr_assert_eq(mst_model_load(path, NULL, &m, &err), MST_OK, "%s", err.msg);
    unlink(path);
    mst_engine_opts o = {.mode = MST_MODE_SNN, .timesteps = 128, .time_chunk = 128, .max_batch = 64,
                         .mask_ratio = 0.75, .device = MST_DEVICE_CUDA};
    mst_memory_plan p;
    cr_assert_eq(mst_engine_plan(m, &o, &p, &err), MST_OK, "%s", err.msg);
    mst_buffer_sizes snn, ann;
    mst_engine_buffer_sizes(m, MST_MODE_SNN, 64, 128, &snn);
    mst_engine_buffer_sizes(m, MST_MODE_ANN, 64, 128, &ann);
    double gib = (double)((size_t)1 << 30), before = (double)p.planned + 4.0 * (double)(ann.bufH - snn.bufH);
    cr_log_info("swin-t, batch 64, chunk 128, fp32 SNN: plan %.1f GiB (scratch %.1f); %.1f GiB with the old bufH",
                p.planned / gib, p.scratch / gib, before / gib);
    cr_expect_lt(p.planned / gib, 110.0, "plan %.1f GiB", p.planned / gib);
    if (p.available > ((size_t)120 << 30)) /* a card of an H200's size */
        cr_expect_leq(p.planned, p.available, "plan %.1f GiB, %.1f GiB available", p.planned / gib, p.available / gib);
    cr_expect_gt(before / gib, 130.0, "before %.1f GiB", before / gib);
    mst_model_free(m);
}
