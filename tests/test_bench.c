/* mst bench's arithmetic: the work it counts and the percentiles it reports. */
#include <math.h>

#include "helpers.h"
#include "host/model/synth.h"
#include "host/percentile.h"
#include "mst/mst.h"

/* tiny_bn by hand: 32x32x3 input, patch 2, dims 16/32/64, depths 2/2/2,
 * MLP ratio 3, window 4 (16 keys per query), 10 classes. Per block:
 * tokens x (qkv 3C^2 + q.k^T 16C + softmax.v 16C + proj C^2 + fc1 + fc2 2C*3C). */
Test(bench, macs_equal_a_hand_count)
{
    mst_model *m;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(DATA("tiny_bn.safetensors"), NULL, &m, &err), MST_OK, "%s", err.msg);
    double stage0 = 2.0 * 256 * (3 * 16 * 16 + 16 * 16 + 16 * 16 + 16 * 16 + 2 * 16 * 48); /* 16x16 tokens */
    double merge0 = 64.0 * 64 * 32;                                                   /* 4C -> 2C on 8x8 */
    double stage1 = 2.0 * 64 * (3 * 32 * 32 + 16 * 32 + 16 * 32 + 32 * 32 + 2 * 32 * 96);
    double merge1 = 16.0 * 128 * 64;
    double stage2 = 2.0 * 16 * (3 * 64 * 64 + 16 * 64 + 16 * 64 + 64 * 64 + 2 * 64 * 192);
    double head = 64.0 * 10;
    double per, once;
    mst_model_macs(m, &per, &once);
    cr_expect_eq(per, stage0 + merge0 + stage1 + merge1 + stage2 + head, "per step %.0f", per);
    cr_expect_eq(per, 4653696.0); /* benchmarks/flops.py's count */
    cr_expect_eq(once, 256.0 * 3 * 2 * 2 * 16, "patch embedding %.0f", once);
    mst_model_free(m);
}

/* numpy.percentile(x, p) (linear interpolation) on unsorted samples. */
Test(bench, percentiles_match_numpy)
{
    static const struct {
        int n;
        double x[6], p, want;
    } cases[] = {
        {5, {50, 15, 40, 20, 35}, 50, 35},  {5, {50, 15, 40, 20, 35}, 90, 46},   {5, {50, 15, 40, 20, 35}, 99, 49.6},
        {5, {50, 15, 40, 20, 35}, 0, 15},   {5, {50, 15, 40, 20, 35}, 100, 50},  {1, {7}, 99, 7},
        {4, {4, 3, 2, 1}, 50, 2.5},        {6, {1, 1, 1, 9, 1, 1}, 90, 5},      {2, {-1, 1}, 25, -0.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double x[6];
        memcpy(x, cases[i].x, sizeof x);
        double got = mst_percentile(x, cases[i].n, cases[i].p);
        cr_expect(fabs(got - cases[i].want) < 1e-12, "case %zu: p%g = %g, numpy %g", i, cases[i].p, got, cases[i].want);
    }
}

/* The built-in shapes load as checkpoints with the architecture they name. */
Test(bench, synthetic_checkpoints_load)
{
    const char *names[] = {"fmnist", "swin-t", "grid28"};
    for (int i = 0; i < 3; i++) {
        const mst_synth_arch *a = mst_synth_find(names[i]);
        cr_assert(a != NULL);
        const char *path = tmp_path("synth.safetensors");
        mst_error err = {0};
        cr_assert_eq(mst_synth_write(a, 7, path, &err), MST_OK, "%s", err.msg);
        mst_model *m;
        cr_assert_eq(mst_model_load(path, NULL, &m, &err), MST_OK, "%s: %s", names[i], err.msg);
        const mst_arch *ar = mst_model_arch(m);
        cr_expect(ar->img_size == a->img_size && ar->embed_dim == a->embed_dim && ar->num_stages == a->num_stages &&
                  ar->num_classes == a->num_classes && ar->mlp_bn == a->mlp_bn, "%s: inferred shape differs", names[i]);
        mst_model_free(m);
        unlink(path);
    }
    cr_expect(mst_synth_find("resnet") == NULL);
}
