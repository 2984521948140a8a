/* Shared test helpers: temporary files and safetensors files built by hand. */
#ifndef MST_TEST_HELPERS_H
#define MST_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/data/npy.h"
#include "kernels/common/mst_math.h"
#include "mst/mst.h"

#define DATA(name) MST_TEST_DATA "/" name

/* A fresh path under $TMPDIR for this test process. */
static inline const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int i;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *p = buf[i++ % 8];
    snprintf(p, 512, "%s/mst-test-%d-%s", dir, (int)getpid(), name);
    return p;
}

/* Writes u64 header length (or `len_override` when nonzero), header, data. */
static inline void write_raw_st(const char *path, const char *header, const void *data, size_t n,
                                unsigned long long len_override)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot create %s", path);
    unsigned long long len = len_override ? len_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Packs rows of 0/1 floats the way spike tensors travel between layers. */
static inline uint64_t *pack_spikes(const float *x, long rows, int C)
{
    int W = (C + 63) / 64;
    uint64_t *p = calloc((size_t)(rows * W) + 1, sizeof(uint64_t));
    for (long r = 0; r < rows; r++)
        for (int c = 0; c < C; c++)
            if (x[r * C + c] != 0.0f) p[r * W + c / 64] |= (uint64_t)1 << (c % 64);
    return p;
}

static inline int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* One window-attention call: the shape the attention tests run on every backend. */
typedef struct {
    int batch, res, w, shift, dim, heads, steps, t0;
    mst_mode mode;
    double ratio;
    unsigned sites; /* the MST_MASK_Q/K/ATTN bits masked; 0: all three */
} attn_case;

/* The per-site RSM thresholds (mst_attn_args.mask_threshold) of a case. */
static inline void attn_case_thresholds(const attn_case *c, uint64_t th[3])
{
    unsigned s = c->sites ? c->sites : MST_MASK_RELEASED, bit[3] = {MST_MASK_Q, MST_MASK_K, MST_MASK_ATTN};
    for (int i = 0; i < 3; i++) th[i] = s & bit[i] ? mst_mask_threshold(c->ratio) : 0;
}

/* tests/data/NAME.npy and tests/data/NAME.safetensors */
static inline void load_test_npy(const char *name, mst_npy *a)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.npy", MST_TEST_DATA, name);
    mst_error err = {0};
    cr_assert_eq(mst_npy_read(path, a, &err), MST_OK, "%s", err.msg);
}

static inline mst_model *load_test_model(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", MST_TEST_DATA, name);
    mst_model *m;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(path, NULL, &m, &err), MST_OK, "%s", err.msg);
    return m;
}

/* All N images of x through one engine of options o, in batches of
 * o.max_batch; returns [steps][N][K] (free it). */
static inline float *engine_run_all(mst_model *m, const mst_npy *x, mst_engine_opts o, int *steps_out)
{
    mst_engine *e;
    mst_error err = {0};
    cr_assert_eq(mst_engine_create(m, &o, &e, &err), MST_OK, "%s", err.msg);
    int N = (int)x->shape[0], K = mst_model_arch(m)->num_classes, steps = mst_engine_steps_out(e);
    long img = x->shape[1] * x->shape[2] * x->shape[3];
    float *all = malloc(sizeof(float) * (size_t)(steps * N * K)), *part = malloc(sizeof(float) * (size_t)(steps * o.max_batch * K));
    for (int i0 = 0; i0 < N; i0 += o.max_batch) {
        int n = N - i0 < o.max_batch ? N - i0 : o.max_batch;
        cr_assert_eq(mst_engine_run(e, x->data + i0 * img, n, (uint64_t)i0, part, &err), MST_OK, "%s", err.msg);
        for (int t = 0; t < steps; t++) memcpy(all + ((long)t * N + i0) * K, part + (long)t * n * K, sizeof(float) * (size_t)(n * K));
    }
    free(part);
    mst_engine_free(e);
    *steps_out = steps;
    return all;
}

static inline void expect_identical(const float *a, const float *b, long n, const char *what)
{
    cr_expect(memcmp(a, b, sizeof(float) * (size_t)n) == 0, "%s: logits differ", what);
}

/* A JSON file, or the test fails naming it. */
static inline json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    cr_assert(r != NULL, "%s: %s", path, je.text);
    return r;
}

/* Runs `BIN ARGS`, stdout and stderr together into out; returns the exit code. */
static inline int run_bin(const char *bin, const char *args, char *out, size_t n)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
