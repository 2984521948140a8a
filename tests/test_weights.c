/* The shipped models on the shipped images: `mst eval` and `mst run` give
 * what the Python reference's per-image run gave (weights/results/samples_*.json,
 * written by tools/reference_samples.py and quoted in weights/README.md).
 * On the CPU backend: exact agreement is what it was checked for. */
#define _GNU_SOURCE
#include <math.h>
#include <sys/wait.h>

#include "helpers.h"
#include "host/data/npy.h"

#define WEIGHTS(name) MST_WEIGHTS "/" name

static int run_mst(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", MST_BIN, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct {
    const char *model, *reference;
} shipped;

static const shipped models[] = {
    {WEIGHTS("fmnist_p00.safetensors"), WEIGHTS("results/samples_p00.json")},
    {WEIGHTS("fmnist_p50.safetensors"), WEIGHTS("results/samples_p50.json")},
    {WEIGHTS("fmnist_p75.safetensors"), WEIGHTS("results/samples_p75.json")},
    /* trained with the MLP masked too: their metadata's mask sites are the default */
    {WEIGHTS("fmnist_p75_fc1.safetensors"), WEIGHTS("results/samples_p75_fc1.json")},
    {WEIGHTS("fmnist_p75_all.safetensors"), WEIGHTS("results/samples_p75_all.json")},
};

/* Top-1 at every power-of-two step: the same images classified the same way,
 * so equal to the reference exactly (100 images: one flip would show as 1 %). */
Test(weights, eval_on_samples_equals_reference)
{
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        json_t *ref = load_json(models[m].reference);
        int T = (int)json_integer_value(json_object_get(ref, "timesteps"));
        double ratio = json_real_value(json_object_get(ref, "mask_ratio"));
        const char *out = tmp_path("eval.json");
        char args[1024];
        snprintf(args, sizeof args, "eval --device cpu --model %s --data %s --timesteps %d --mask-ratio %g --results-file %s",
                 models[m].model, WEIGHTS("samples"), T, ratio, out);
        cr_assert_eq(run_mst(args), 0, "mst %s", args);
        json_t *got = load_json(out);
        json_t *steps = json_object_get(got, "steps"), *top1 = json_object_get(got, "step_top1");
        cr_assert_eq(json_integer_value(json_object_get(got, "images")), 100);
        json_t *sites = json_object_get(ref, "mask_sites"); /* the reference ran at the metadata's sites */
        if (sites)
            cr_expect_str_eq(json_string_value(json_object_get(got, "mask_sites")), json_string_value(sites), "%s",
                             models[m].model);
        for (size_t i = 0; i < json_array_size(steps); i++) {
            int t = (int)json_integer_value(json_array_get(steps, i));
            double want = json_real_value(json_array_get(json_object_get(ref, "top1"), (size_t)t - 1));
            double have = json_real_value(json_array_get(top1, i));
            cr_expect(fabs(have - want) < 1e-3, "%s step %d: mst %.2f %%, reference %.2f %%", models[m].model, t,
                      have, want);
        }
        snprintf(args, sizeof args, "eval --device cpu --model %s --data %s --mode ann --mask-ratio %g --results-file %s",
                 models[m].model, WEIGHTS("samples"), ratio, out);
        cr_assert_eq(run_mst(args), 0, "mst %s", args);
        json_decref(got);
        got = load_json(out);
        double have = json_real_value(json_object_get(got, "top1"));
        double want = json_real_value(json_object_get(ref, "ann_top1"));
        cr_expect(fabs(have - want) < 1e-3, "%s ANN: mst %.2f %%, reference %.2f %%", models[m].model, have, want);
        json_decref(got), json_decref(ref);
        unlink(out);
    }
}

/* mst run on the folder: each image's class at the last step. */
Test(weights, run_on_samples_predicts_like_reference)
{
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        json_t *ref = load_json(models[m].reference);
        int T = (int)json_integer_value(json_object_get(ref, "timesteps"));
        double ratio = json_real_value(json_object_get(ref, "mask_ratio"));
        const char *logits = tmp_path("run.npy");
        char args[1024];
        snprintf(args, sizeof args, "run --device cpu --model %s --timesteps %d --mask-ratio %g --logits %s %s", models[m].model, T,
                 ratio, logits, WEIGHTS("samples"));
        cr_assert_eq(run_mst(args), 0, "mst %s", args);
        mst_npy y;
        mst_error err = {0};
        cr_assert_eq(mst_npy_read(logits, &y, &err), MST_OK, "%s", err.msg);
        json_t *pred = json_object_get(ref, "prediction_at_T");
        long N = (long)json_array_size(pred), K = y.shape[2];
        cr_assert(y.shape[0] == T && y.shape[1] == N, "logits [%ld, %ld, %ld]", y.shape[0], y.shape[1], K);
        for (long i = 0; i < N; i++) {
            const float *l = y.data + ((long)(T - 1) * N + i) * K;
            int best = 0;
            for (int k = 1; k < K; k++) best = l[k] > l[best] ? k : best;
            cr_expect_eq(best, json_integer_value(json_array_get(pred, (size_t)i)), "%s image %s",
                         models[m].model, json_string_value(json_array_get(json_object_get(ref, "images"), (size_t)i)));
        }
        mst_npy_free(&y);
        json_decref(ref);
        unlink(logits);
    }
}
