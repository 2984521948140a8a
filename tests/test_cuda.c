/* Every CUDA op against its CPU twin through the same backend table, on
 * random inputs of odd and even shapes; the RSM draws against the CPU's
 * Philox; the engine end to end. Skipped where no CUDA device answers.
 *
 * Tolerances: ops whose arithmetic runs in the same order on both sides (IF
 * scan, QCFS, layout ops, q.k^T by popcount, the IF_attn membranes) must be
 * bit-identical (the CUDA code is built with --fmad=false). GEMMs sum in
 * cuBLAS's order, and exp() differs by an ulp between libm and CUDA, so their
 * outputs agree to ~1e-6 relative; an IF unit whose potential sits within
 * that of its threshold can then fire on one side only (spec section 8), so
 * spikes downstream of a GEMM may differ in a small fraction of places. */
#include <math.h>
#include <stdlib.h>

#include "helpers.h"
#include "kernels/backend.h"
#include "kernels/common/mst_bits.h"
#include "kernels/common/mst_math.h"

static mst_backend cpu, gpu;
/* The running test's device buffers (to_dev), released before the backend
 * whatever way the test ends: under LeakSanitizer one left to exit is a leak. */
static void *buffers[256];
static int num_buffers;

static void setup(void)
{
    if (mst_cuda_device_count() == 0) return;
    mst_error err = {0};
    cr_assert_eq(mst_backend_cpu(&cpu, &err), MST_OK, "%s", err.msg);
    cr_assert_eq(mst_backend_cuda(&gpu, 0, MST_PRECISION_FP32, 0, &err), MST_OK, "%s", err.msg);
}

static void teardown(void)
{
    for (int i = 0; i < num_buffers; i++) gpu.release(gpu.ctx, buffers[i]);
    num_buffers = 0;
    if (cpu.destroy) cpu.destroy(&cpu);
    if (gpu.destroy) gpu.destroy(&gpu);
}

#define NEED_GPU()                                                                                  \
    do {                                                                                            \
        if (mst_cuda_device_count() == 0) cr_skip_test("no CUDA device answers (cudaGetDeviceCount)"); \
    } while (0)

TestSuite(cuda, .init = setup, .fini = teardown);

static float frand(unsigned *s) { return (float)rand_r(s) / (float)RAND_MAX; }

static float *randf(unsigned *s, long n, float lo, float hi)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (long i = 0; i < n; i++) p[i] = lo + (hi - lo) * frand(s);
    return p;
}

/* rows of K packed spikes, each set with probability 0.3 */
static uint64_t *random_spikes(unsigned *s, long rows, int K)
{
    int W = mst_spike_words(K);
    uint64_t *x = calloc((size_t)(rows * W), sizeof(uint64_t));
    for (long r = 0; r < rows; r++)
        for (int i = 0; i < K; i++)
            if (frand(s) < 0.3f) x[r * W + i / 64] |= (uint64_t)1 << (i % 64);
    return x;
}

static void *to_dev(const void *host, size_t bytes)
{
    void *d = NULL;
    mst_error err = {0};
    cr_assert(num_buffers < 256, "more device buffers than the test keeps track of");
    cr_assert_eq(gpu.alloc(gpu.ctx, bytes ? bytes : 4, &d, &err), MST_OK, "%s", err.msg);
    buffers[num_buffers++] = d;
    if (host && bytes) cr_assert_eq(gpu.upload(gpu.ctx, d, host, bytes, &err), MST_OK, "%s", err.msg);
    return d;
}

static void *to_host(const void *dev, size_t bytes)
{
    void *h = malloc(bytes ? bytes : 4);
    mst_error err = {0};
    cr_assert_eq(gpu.download(gpu.ctx, h, dev, bytes, &err), MST_OK, "%s", err.msg);
    return h;
}

static void expect_same_floats(const char *what, const float *a, const float *b, long n, double rel)
{
    long bad = 0, first = -1;
    for (long i = 0; i < n; i++) {
        double tol = rel * fmax(1.0, fabs(a[i]));
        if (!(fabs((double)a[i] - b[i]) <= tol)) bad++, first = first < 0 ? i : first;
    }
    cr_expect_eq(bad, 0, "%s: %ld of %ld differ (first at %ld: cpu %.9g, cuda %.9g)", what, bad, n, first,
                 first >= 0 ? a[first] : 0.0, first >= 0 ? b[first] : 0.0);
}

/* ---- IF scan and QCFS: bit-identical ------------------------------------ */

typedef struct {
    long rows;
    int C, steps, constant_input, affine, bits;
} if_case;

static const if_case if_cases[] = {
    {1, 1, 1, 0, 0, 0}, {3, 5, 7, 0, 1, 1}, {17, 96, 16, 0, 0, 1}, {5, 300, 3, 1, 1, 0},
    {33, 13, 32, 1, 0, 1}, {64, 384, 4, 0, 1, 1}, {2, 129, 5, 0, 1, 1}, {7, 64, 9, 0, 0, 1},
};

Test(cuda, if_scan_and_qcfs_equal_cpu)
{
    NEED_GPU();
    unsigned seed = 11;
    for (size_t k = 0; k < sizeof if_cases / sizeof if_cases[0]; k++) {
        const if_case *c = &if_cases[k];
        long R = c->rows * c->C, nin = c->constant_input ? R : R * c->steps, W = mst_spike_words(c->C);
        float *in = randf(&seed, nin, -0.4f, 1.2f), *sc = randf(&seed, c->C, 0.5f, 1.5f), *sh = randf(&seed, c->C, -0.1f, 0.2f);
        float *v = randf(&seed, R, 0.0f, 1.0f);
        size_t nbits = sizeof(uint64_t) * (size_t)(c->steps * c->rows * W), nout = sizeof(float) * (size_t)(R * c->steps);
        uint64_t *bits_c = calloc(1, nbits), cnt_c = 0, zero = 0;
        float *out_c = calloc(1, nout), *v_c = malloc(sizeof(float) * (size_t)R);
        memcpy(v_c, v, sizeof(float) * (size_t)R);
        mst_if_args a = {.in = in, .in_tstride = c->constant_input ? 0 : R, .scale = c->affine ? sc : NULL,
                         .shift = c->affine ? sh : NULL, .channels = c->C, .v = v_c, .out = c->bits ? NULL : out_c,
                         .out_scale = 0.75f, .bits = c->bits ? bits_c : NULL, .count = &cnt_c, .steps = c->steps, .R = R};
        cr_assert_eq(cpu.if_scan(cpu.ctx, &a, NULL), MST_OK);
        mst_if_args g = a;
        g.in = to_dev(in, sizeof(float) * (size_t)nin);
        g.scale = c->affine ? to_dev(sc, sizeof(float) * (size_t)c->C) : NULL;
        g.shift = c->affine ? to_dev(sh, sizeof(float) * (size_t)c->C) : NULL;
        g.v = to_dev(v, sizeof(float) * (size_t)R);
        g.out = c->bits ? NULL : to_dev(NULL, nout);
        g.bits = c->bits ? to_dev(NULL, nbits) : NULL;
        g.count = to_dev(&zero, sizeof zero);
        cr_assert_eq(gpu.if_scan(gpu.ctx, &g, NULL), MST_OK);
        float *v_g = to_host(g.v, sizeof(float) * (size_t)R);
        uint64_t *cnt_g = to_host(g.count, sizeof(uint64_t));
        cr_expect_eq(*cnt_g, cnt_c, "case %zu: spike counts %llu vs %llu", k, (unsigned long long)*cnt_g,
                     (unsigned long long)cnt_c);
        cr_expect_eq(memcmp(v_g, v_c, sizeof(float) * (size_t)R), 0, "case %zu: membranes differ", k);
        if (c->bits) {
            uint64_t *b_g = to_host(g.bits, nbits);
            cr_expect_eq(memcmp(b_g, bits_c, nbits), 0, "case %zu: packed spikes differ", k);
            free(b_g);
        } else {
            float *o_g = to_host(g.out, nout);
            cr_expect_eq(memcmp(o_g, out_c, nout), 0, "case %zu: spike outputs differ", k);
            free(o_g);
        }
        /* QCFS on the same inputs */
        a.bits = NULL, a.out = out_c, a.count = NULL;
        cr_assert_eq(cpu.qcfs(cpu.ctx, &a, NULL), MST_OK);
        if (!g.out) g.out = to_dev(NULL, nout);
        g.bits = NULL, g.count = NULL;
        cr_assert_eq(gpu.qcfs(gpu.ctx, &g, NULL), MST_OK);
        float *q_g = to_host(g.out, nout);
        cr_expect_eq(memcmp(q_g, out_c, nout), 0, "case %zu: QCFS levels differ", k);
        free(q_g), free(v_g), free(cnt_g), free(in), free(sc), free(sh), free(v), free(bits_c), free(out_c), free(v_c);
    }
}

/* ---- GEMMs: linear and the spike-fed synapse ---------------------------- */

typedef struct {
    long M;
    int K, N, steps;
} gemm_case;

static const gemm_case gemm_cases[] = {{1, 1, 1, 1}, {7, 13, 5, 2}, {64, 96, 384, 4}, {33, 130, 67, 3}, {300, 48, 192, 1}};

Test(cuda, linear_equals_cpu)
{
    NEED_GPU();
    unsigned seed = 5;
    for (size_t k = 0; k < sizeof gemm_cases / sizeof gemm_cases[0]; k++) {
        const gemm_case *c = &gemm_cases[k];
        float *x = randf(&seed, c->M * c->K, -1, 1), *w = randf(&seed, (long)c->K * c->N, -1, 1), *b = randf(&seed, c->N, -1, 1);
        float *y = malloc(sizeof(float) * (size_t)(c->M * c->N));
        cr_assert_eq(cpu.linear(cpu.ctx, x, c->M, c->K, w, b, c->N, y, NULL), MST_OK);
        float *yd = to_dev(NULL, sizeof(float) * (size_t)(c->M * c->N));
        cr_assert_eq(gpu.linear(gpu.ctx, to_dev(x, sizeof(float) * (size_t)(c->M * c->K)), c->M, c->K,
                                to_dev(w, sizeof(float) * (size_t)(c->K * c->N)), to_dev(b, sizeof(float) * (size_t)c->N),
                                c->N, yd, NULL),
                     MST_OK);
        float *yg = to_host(yd, sizeof(float) * (size_t)(c->M * c->N));
        expect_same_floats("linear", y, yg, c->M * c->N, 1e-5 * sqrt((double)c->K));
        free(x), free(w), free(b), free(y), free(yg);
    }
}

Test(cuda, synapse_if_equals_cpu)
{
    NEED_GPU();
    unsigned seed = 9;
    for (size_t k = 0; k < sizeof gemm_cases / sizeof gemm_cases[0]; k++) {
        const gemm_case *c = &gemm_cases[k];
        long R = c->M, rows = R * c->steps;
        int WK = mst_spike_words(c->K), WN = mst_spike_words(c->N);
        uint64_t *x = random_spikes(&seed, rows, c->K);
        float *w = randf(&seed, (long)c->K * c->N, -0.3f, 0.4f), *b = randf(&seed, c->N, -0.2f, 0.3f);
        float *v = randf(&seed, R * c->N, 0, 1), *vc = malloc(sizeof(float) * (size_t)(R * c->N));
        memcpy(vc, v, sizeof(float) * (size_t)(R * c->N));
        size_t nbits = sizeof(uint64_t) * (size_t)(rows * WN);
        uint64_t *bc = calloc(1, nbits), cnt_c = 0, zero = 0;
        mst_synapse_args ac = {.x = x, .steps = c->steps, .R = R, .K = c->K, .N = c->N, .w = w, .b = b, .v = vc, .bits = bc,
                               .out_scale = 1.0f, .count = &cnt_c};
        cr_assert_eq(cpu.synapse_if(cpu.ctx, &ac, NULL), MST_OK);
        float *vd = to_dev(v, sizeof(float) * (size_t)(R * c->N));
        uint64_t *bd = to_dev(NULL, nbits), *cd = to_dev(&zero, sizeof zero);
        mst_synapse_args ag = ac;
        ag.x = to_dev(x, sizeof(uint64_t) * (size_t)(rows * WK)), ag.w = to_dev(w, sizeof(float) * (size_t)(c->K * c->N));
        ag.b = to_dev(b, sizeof(float) * (size_t)c->N), ag.v = vd, ag.bits = bd, ag.count = cd;
        cr_assert_eq(gpu.synapse_if(gpu.ctx, &ag, NULL), MST_OK);
        uint64_t *bg = to_host(bd, nbits), *cg = to_host(cd, sizeof(uint64_t));
        long differ = 0, total = rows * c->N;
        for (long r = 0; r < rows; r++)
            for (int n = 0; n < c->N; n++) differ += mst_bit(bc + r * WN, n) != mst_bit(bg + r * WN, n);
        /* a flip needs a potential within ~1e-6 of the threshold */
        cr_expect(differ <= total / 1000, "case %zu: %ld of %ld spikes differ", k, differ, total);
        cr_expect(llabs((long long)*cg - (long long)cnt_c) <= differ, "case %zu: counts %llu vs %llu", k,
                  (unsigned long long)*cg, (unsigned long long)cnt_c);
        float *vg = to_host(vd, sizeof(float) * (size_t)(R * c->N));
        if (!differ) expect_same_floats("synapse membranes", vc, vg, R * c->N, 1e-5 * sqrt((double)c->K));
        free(x), free(w), free(b), free(v), free(vc), free(bc), free(bg), free(cg), free(vg);
    }
}

/* ---- Layout ops: bit-identical ------------------------------------------ */

Test(cuda, layout_ops_equal_cpu)
{
    NEED_GPU();
    unsigned seed = 3;
    static const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 4, 2}, {3, 1, 7, 4}, {1, 3, 8, 4}}; /* B, cin, res, P */
    for (size_t k = 0; k < 4; k++) {
        int B = shapes[k][0], cin = shapes[k][1], res = shapes[k][2], P = shapes[k][3];
        long ni = (long)B * cin * res * P * res * P, no = (long)B * res * res * cin * P * P;
        float *img = randf(&seed, ni, -2, 2), *o = malloc(sizeof(float) * (size_t)no);
        cr_assert_eq(cpu.patchify(cpu.ctx, img, B, cin, res, P, o, NULL), MST_OK);
        float *od = to_dev(NULL, sizeof(float) * (size_t)no);
        cr_assert_eq(gpu.patchify(gpu.ctx, to_dev(img, sizeof(float) * (size_t)ni), B, cin, res, P, od, NULL), MST_OK);
        float *og = to_host(od, sizeof(float) * (size_t)no);
        cr_expect_eq(memcmp(o, og, sizeof(float) * (size_t)no), 0, "patchify case %zu", k);
        free(img), free(o), free(og);
    }
    static const int merges[][3] = {{1, 2, 1}, {3, 4, 5}, {2, 8, 96}, {1, 6, 33}}; /* rows, res, C */
    for (size_t k = 0; k < 4; k++) {
        long rows = merges[k][0];
        int res = merges[k][1], C = merges[k][2];
        long n = rows * res * res * C;
        float *x = randf(&seed, n, -1, 1), *o = malloc(sizeof(float) * (size_t)n);
        cr_assert_eq(cpu.patch_merge(cpu.ctx, x, rows, res, C, o, NULL), MST_OK);
        float *od = to_dev(NULL, sizeof(float) * (size_t)n);
        cr_assert_eq(gpu.patch_merge(gpu.ctx, to_dev(x, sizeof(float) * (size_t)n), rows, res, C, od, NULL), MST_OK);
        float *og = to_host(od, sizeof(float) * (size_t)n);
        cr_expect_eq(memcmp(o, og, sizeof(float) * (size_t)n), 0, "patch_merge case %zu", k);
        /* residual with and without BatchNorm, then LayerNorm + mean over tokens */
        float *s = randf(&seed, n, 0, 1), *sc = randf(&seed, C, 0.5f, 1.5f), *sh = randf(&seed, C, -1, 1);
        float *xd = to_dev(x, sizeof(float) * (size_t)n), *sd = to_dev(s, sizeof(float) * (size_t)n);
        for (int bn = 0; bn < 2; bn++) {
            cr_assert_eq(cpu.residual(cpu.ctx, x, s, 0.37f, bn ? sc : NULL, bn ? sh : NULL, C, n, NULL), MST_OK);
            cr_assert_eq(gpu.residual(gpu.ctx, xd, sd, 0.37f, bn ? to_dev(sc, sizeof(float) * (size_t)C) : NULL,
                                      bn ? to_dev(sh, sizeof(float) * (size_t)C) : NULL, C, n, NULL),
                         MST_OK);
        }
        float *xg = to_host(xd, sizeof(float) * (size_t)n);
        cr_expect_eq(memcmp(x, xg, sizeof(float) * (size_t)n), 0, "residual case %zu", k);
        float *lc = malloc(sizeof(float) * (size_t)(rows * C)), *ld = to_dev(NULL, sizeof(float) * (size_t)(rows * C));
        cr_assert_eq(cpu.ln_mean(cpu.ctx, x, rows, res * res, C, sc, sh, lc, NULL), MST_OK);
        cr_assert_eq(gpu.ln_mean(gpu.ctx, xd, rows, res * res, C, to_dev(sc, sizeof(float) * (size_t)C),
                                 to_dev(sh, sizeof(float) * (size_t)C), ld, NULL),
                     MST_OK);
        float *lg = to_host(ld, sizeof(float) * (size_t)(rows * C));
        cr_expect_eq(memcmp(lc, lg, sizeof(float) * (size_t)(rows * C)), 0, "ln_mean case %zu", k);
        free(x), free(o), free(og), free(s), free(sc), free(sh), free(xg), free(lc), free(lg);
    }
}

/* ---- RSM draws: bit-identical to the CPU's Philox ------------------------ */

Test(cuda, rsm_draws_equal_cpu_philox)
{
    NEED_GPU();
    static const uint64_t seeds[] = {0, 42, 0xDEADBEEFCAFEULL};
    static const uint64_t offsets[] = {0, 1, 2, 3, 5, 4097, 123456789};
    static const long counts[] = {1, 3, 4, 7, 1000};
    uint32_t *d = to_dev(NULL, sizeof(uint32_t) * 1000);
    for (size_t s = 0; s < 3; s++)
        for (size_t o = 0; o < 7; o++)
            for (size_t c = 0; c < 5; c++) {
                uint64_t sub = mst_mask_subsequence(7 + s, (uint32_t)(3 * o), (uint32_t)(c * 31));
                mst_error err = {0};
                cr_assert_eq(mst_cuda_draw(gpu.ctx, seeds[s], sub, offsets[o], counts[c], d, &err), MST_OK, "%s", err.msg);
                uint32_t *g = to_host(d, sizeof(uint32_t) * (size_t)counts[c]);
                for (long i = 0; i < counts[c]; i++)
                    cr_expect_eq(g[i], mst_philox_raw(seeds[s], sub, offsets[o] + (uint64_t)i),
                                 "seed %llu offset %llu + %ld", (unsigned long long)seeds[s],
                                 (unsigned long long)offsets[o], i);
                free(g);
            }
}

/* ---- Window attention ---------------------------------------------------- */

static const attn_case attn_cases[] = {
    {1, 4, 4, 0, 8, 2, 3, 0, MST_MODE_SNN, 0.0, 0},  {2, 8, 4, 2, 12, 3, 4, 5, MST_MODE_SNN, 0.75, 0},
    {1, 14, 7, 3, 10, 2, 2, 0, MST_MODE_SNN, 0.5, 0}, {2, 6, 3, 1, 6, 1, 1, 0, MST_MODE_ANN, 0.75, 0},
    {1, 7, 7, 0, 96, 3, 5, 2, MST_MODE_SNN, 0.3, 0}, {3, 6, 2, 1, 4, 2, 2, 1, MST_MODE_ANN, 0.0, 0},
    {1, 4, 2, 1, 140, 2, 2, 0, MST_MODE_SNN, 0.5, 0}, /* d = 70: a head spans words */
    /* window 12 (Swin at 384 px): 173 and 191 KiB of shared memory, past the 48 KiB a launch gets
       without opting in (and past what GPUs before Hopper offer: those cases are skipped there) */
    {1, 12, 12, 0, 32, 2, 2, 1, MST_MODE_SNN, 0.5, 0}, {1, 12, 12, 0, 32, 2, 1, 0, MST_MODE_ANN, 0.75, 0},
    /* one or two of the three sites (--mask-sites) */
    {2, 8, 4, 2, 12, 3, 4, 5, MST_MODE_SNN, 0.75, MST_MASK_K}, {1, 7, 7, 0, 96, 3, 3, 2, MST_MODE_SNN, 0.5, MST_MASK_Q | MST_MASK_ATTN},
    {2, 6, 3, 1, 6, 1, 1, 0, MST_MODE_ANN, 0.75, MST_MASK_Q},
};

Test(cuda, window_attention_equals_cpu)
{
    NEED_GPU();
    unsigned seed = 21;
    for (size_t k = 0; k < sizeof attn_cases / sizeof attn_cases[0]; k++) {
        const attn_case *c = &attn_cases[k];
        int n = c->w * c->w, N = c->res * c->res, C = c->dim, W3 = mst_spike_words(3 * C);
        long rows = (long)c->steps * c->batch * N, nvm = (long)c->batch * (N / n) * c->heads * n * n;
        uint64_t *bits = calloc((size_t)(rows * W3), sizeof(uint64_t));
        float *lev = malloc(sizeof(float) * (size_t)(rows * 3 * C));
        for (long r = 0; r < rows; r++)
            for (int i = 0; i < 3 * C; i++) {
                int on = frand(&seed) < 0.35f;
                bits[r * W3 + i / 64] |= (uint64_t)on << (i % 64);
                lev[r * 3 * C + i] = floorf(frand(&seed) * 17.0f) / 16.0f;
            }
        float *bias = randf(&seed, (long)c->heads * n * n, -1, 1), *vm = randf(&seed, nvm, 0, 1);
        float *out = calloc((size_t)(rows * C), sizeof(float));
        uint64_t cnt[MST_ATTN_NCOUNTS] = {0}, zero[MST_ATTN_NCOUNTS] = {0};
        mst_attn_args a = {.qkv_bits = bits, .qkv = lev, .out = out, .v_attn = malloc(sizeof(float) * (size_t)nvm),
                           .rel_bias = bias, .steps = c->steps, .t0 = c->t0, .batch = c->batch, .res = c->res,
                           .dim = C, .heads = c->heads, .window = c->w, .shift = c->shift, .qk_scale = 0.31f,
                           .lam_attn = 2.5f, .v_scale = 0.8f, .mode = c->mode, .seed = 99, .first_image = 3,
                           .site_q = 6, .counts = cnt};
        attn_case_thresholds(c, a.mask_threshold);
        memcpy(a.v_attn, vm, sizeof(float) * (size_t)nvm);
        cr_assert_eq(cpu.window_attention(cpu.ctx, &a, NULL), MST_OK);
        mst_attn_args g = a;
        g.qkv_bits = to_dev(bits, sizeof(uint64_t) * (size_t)(rows * W3));
        g.qkv = to_dev(lev, sizeof(float) * (size_t)(rows * 3 * C));
        g.out = to_dev(NULL, sizeof(float) * (size_t)(rows * C));
        g.v_attn = to_dev(vm, sizeof(float) * (size_t)nvm);
        g.rel_bias = to_dev(bias, sizeof(float) * (size_t)(c->heads * n * n));
        g.counts = to_dev(zero, sizeof zero);
        mst_error err = {0};
        mst_status r = gpu.window_attention(gpu.ctx, &g, &err);
        if (r == MST_ERR_UNSUPPORTED && strstr(err.msg, "shared memory")) { /* window 12 before Hopper */
            cr_log_info("case %zu skipped: %s", k, err.msg);
            free(bits), free(lev), free(bias), free(vm), free(out), free(a.v_attn);
            continue;
        }
        cr_assert_eq(r, MST_OK, "%s", err.msg);
        float *og = to_host(g.out, sizeof(float) * (size_t)(rows * C)), *vg = to_host(g.v_attn, sizeof(float) * (size_t)nvm);
        uint64_t *cg = to_host(g.counts, sizeof zero);
        expect_same_floats("attention output", out, og, rows * C, 1e-5);
        cr_expect_eq(memcmp(vg, a.v_attn, sizeof(float) * (size_t)nvm), 0, "case %zu: IF_attn membranes differ", k);
        for (int i = 0; i < MST_ATTN_NCOUNTS; i++)
            cr_expect_eq(cg[i], cnt[i], "case %zu: count %d: cuda %llu, cpu %llu", k, i, (unsigned long long)cg[i],
                         (unsigned long long)cnt[i]);
        free(bits), free(lev), free(bias), free(vm), free(out), free(a.v_attn), free(og), free(vg), free(cg);
    }
}

/* ---- RSM at the MLP's inputs ---------------------------------------------- */

/* The fc1/fc2 masks (spec section 4b) as the CPU draws them, bit for bit:
 * packed spikes with odd row widths and a step offset, and QCFS levels. */
Test(cuda, mlp_masks_equal_cpu)
{
    NEED_GPU();
    static const struct {
        int steps, t0, batch, tokens, C;
        mst_mode mode;
    } cs[] = {{3, 5, 2, 9, 63, MST_MODE_SNN}, {2, 0, 1, 49, 384, MST_MODE_SNN}, {1, 2, 3, 16, 65, MST_MODE_SNN},
              {1, 0, 2, 9, 130, MST_MODE_ANN}};
    unsigned seed = 8;
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        long rows = (long)cs[k].steps * cs[k].batch * cs[k].tokens, W = mst_spike_words(cs[k].C);
        long nb = rows * W, nl = rows * cs[k].C;
        uint64_t *bits = random_spikes(&seed, rows, cs[k].C), kept = 0, zero = 0;
        float *lev = randf(&seed, nl, 0, 1);
        for (long i = 0; i < nl; i++) lev[i] = floorf(lev[i] * 17.0f) / 16.0f;
        int snn = cs[k].mode == MST_MODE_SNN;
        mst_mask_args a = {.steps = cs[k].steps, .t0 = cs[k].t0, .batch = cs[k].batch, .tokens = cs[k].tokens,
                           .channels = cs[k].C, .seed = 77, .first_image = 4, .site = 41,
                           .threshold = mst_mask_threshold(0.75), .kept = snn ? &kept : NULL};
        mst_mask_args g = a;
        g.bits = snn ? to_dev(bits, sizeof(uint64_t) * (size_t)nb) : NULL;
        g.levels = snn ? NULL : to_dev(lev, sizeof(float) * (size_t)nl);
        g.kept = snn ? to_dev(&zero, sizeof zero) : NULL;
        a.bits = snn ? bits : NULL;
        a.levels = snn ? NULL : lev;
        mst_error err = {0};
        cr_assert_eq(cpu.mask_spikes(cpu.ctx, &a, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(gpu.mask_spikes(gpu.ctx, &g, &err), MST_OK, "%s", err.msg);
        if (snn) {
            uint64_t *gb = to_host(g.bits, sizeof(uint64_t) * (size_t)nb), *gk = to_host(g.kept, sizeof zero);
            cr_expect_eq(memcmp(gb, bits, sizeof(uint64_t) * (size_t)nb), 0, "case %zu: masked spikes differ", k);
            cr_expect_eq(*gk, kept, "case %zu: kept %llu on cuda, %llu on cpu", k, (unsigned long long)*gk,
                         (unsigned long long)kept);
            free(gb), free(gk);
        } else {
            float *gl = to_host(g.levels, sizeof(float) * (size_t)nl);
            cr_expect_eq(memcmp(gl, lev, sizeof(float) * (size_t)nl), 0, "case %zu: masked levels differ", k);
            free(gl);
        }
        free(bits), free(lev);
    }
}

/* design.md: out of device memory fails with the size that was needed, and
 * the device stays usable (the allocation error is not left sticky). */
Test(cuda, out_of_memory_names_the_size_and_recovers)
{
    NEED_GPU();
    void *p = NULL;
    mst_error err = {0};
    cr_assert_eq(gpu.alloc(gpu.ctx, (size_t)1 << 46, &p, &err), MST_ERR_NOMEM);
    cr_expect(p == NULL);
    cr_expect(strstr(err.msg, "cannot allocate 70368744177664 bytes of device memory") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "cuda:0") != NULL, "names the device: %s", err.msg);
    float host[5] = {1, 2, 3, 4, 5}, *d = to_dev(host, sizeof host);
    cr_assert_eq(gpu.fill(gpu.ctx, d, 7.0f, 5, &err), MST_OK, "%s", err.msg);
    float *back = to_host(d, sizeof host);
    cr_expect(back[0] == 7.0f && back[4] == 7.0f);
    free(back);
}

/* --fused-synapse (fp16/bf16), WMMA and wgmma: GEMM and IF scan in one
 * kernel against the two-kernel path in the same precision (the same
 * rounded weights and fp32 sums, in another order): spikes, counts and
 * membranes agree but for inputs within rounding of the threshold. Steps
 * past one 16-step tile, channels past one 64-channel tile, inputs that fill
 * no 16-wide tile, tokens past one wgmma group of 8, and inputs past the 512
 * that stay resident (the ring refilled) included; packed spikes out,
 * scaled float spikes out, and spikes folded into a residual stream (with
 * and without the BatchNorm after it). Emulated, the wgmma kernel runs its twin of the
 * MMA, bulk copies and barriers (synapse_wgmma.cu). */
enum { FLOATS, PACKED, FOLD, FOLD_BN, FOLD_NEXT }; /* where the spikes go */

typedef struct {
    long R;
    int K, N, steps, packed;
} fused_case;

static const fused_case fused_cases[] = {
    {1, 1, 1, 1, PACKED},       {7, 13, 5, 2, PACKED},    {9, 96, 384, 16, PACKED}, {5, 130, 67, 33, PACKED},
    {6, 48, 70, 20, FLOATS},    {3, 64, 64, 17, FLOATS},  {20, 600, 70, 18, PACKED}, {17, 520, 65, 3, FLOATS},
    {11, 96, 96, 19, FOLD_BN},  {9, 200, 67, 5, FOLD},    {10, 96, 70, 35, FOLD_NEXT}, {5, 64, 33, 3, FOLD_NEXT},
};

/* What one run left: its spikes (packed or floats or the residual stream),
 * membranes and count; with FOLD_NEXT also the next site's. */
typedef struct {
    uint64_t *bits, *next_bits, count, next_count;
    float *out, *v, *next_v;
} fused_result;

static void *dev_copy(mst_backend *be, const void *host, size_t bytes)
{
    void *d = NULL;
    mst_error err = {0};
    cr_assert_eq(be->alloc(be->ctx, bytes, &d, &err), MST_OK);
    if (host) cr_assert_eq(be->upload(be->ctx, d, host, bytes, &err), MST_OK);
    return d;
}

static void *host_copy(mst_backend *be, const void *dev, size_t bytes)
{
    void *h = malloc(bytes);
    mst_error err = {0};
    cr_assert_eq(be->download(be->ctx, h, dev, bytes, &err), MST_OK);
    return h;
}

static fused_result fused_run(mst_backend *be, const fused_case *c, const uint64_t *x, const float *w, const float *b,
                              const float *v)
{
    long rows = c->R * c->steps;
    int WK = mst_spike_words(c->K), WN = mst_spike_words(c->N), fold = c->packed >= FOLD;
    size_t nbits = sizeof(uint64_t) * (size_t)(rows * WN), nout = sizeof(float) * (size_t)(rows * c->N);
    size_t nv = sizeof(float) * (size_t)(c->R * c->N);
    mst_error err = {0};
    uint64_t zero = 0;
    float *x0 = malloc(nout), *sc = malloc(sizeof(float) * 2 * (size_t)c->N);
    /* a residual stream of known values; a BatchNorm after it, and one into the next site */
    for (long i = 0; i < rows * c->N; i++) x0[i] = 0.25f * (float)(i % 7) - 0.5f;
    for (int n = 0; n < c->N; n++) sc[n] = 1.0f + 0.01f * (float)n, sc[c->N + n] = 0.1f - 0.003f * (float)n;
    void *xd = dev_copy(be, x, sizeof(uint64_t) * (size_t)(rows * WK));
    void *wd = dev_copy(be, w, sizeof(float) * (size_t)(c->K * c->N)), *bd = dev_copy(be, b, sizeof(float) * (size_t)c->N);
    void *vd = dev_copy(be, v, nv), *cd = dev_copy(be, &zero, sizeof zero);
    void *od = dev_copy(be, fold ? x0 : NULL, c->packed == PACKED ? nbits : nout);
    void *bn = c->packed == FOLD_BN || c->packed == FOLD_NEXT ? dev_copy(be, sc, sizeof(float) * 2 * (size_t)c->N) : NULL;
    void *nvd = NULL, *nbd = NULL, *ncd = NULL;
    mst_synapse_args a = {.x = xd, .steps = c->steps, .R = c->R, .K = c->K, .N = c->N, .w = wd, .b = bd, .v = vd,
                          .bits = c->packed == PACKED ? od : NULL, .out = c->packed == FLOATS ? od : NULL,
                          .out_scale = 0.5f, .count = cd};
    if (fold) a.fold = (mst_residual_fold){od, 1.5f, c->packed == FOLD_BN ? bn : NULL, c->packed == FOLD_BN ? (float *)bn + c->N : NULL,
                                           {0}};
    if (c->packed == FOLD_NEXT) {
        nvd = dev_copy(be, v, nv), nbd = dev_copy(be, NULL, nbits), ncd = dev_copy(be, &zero, sizeof zero);
        a.fold.next = (mst_fold_site){nvd, bn, (float *)bn + c->N, nbd, ncd};
    }
    cr_assert_eq(be->synapse_if(be->ctx, &a, &err), MST_OK, "%s", err.msg);
    fused_result r = {0};
    r.bits = c->packed == PACKED ? host_copy(be, od, nbits) : NULL;
    r.out = c->packed == PACKED ? NULL : host_copy(be, od, nout);
    r.v = host_copy(be, vd, nv);
    cr_assert_eq(be->download(be->ctx, &r.count, cd, sizeof zero, &err), MST_OK);
    if (nvd) {
        r.next_v = host_copy(be, nvd, nv), r.next_bits = host_copy(be, nbd, nbits);
        cr_assert_eq(be->download(be->ctx, &r.next_count, ncd, sizeof zero, &err), MST_OK);
    }
    void *all[] = {xd, wd, bd, vd, od, cd, bn, nvd, nbd, ncd};
    for (int i = 0; i < 10; i++)
        if (all[i]) be->release(be->ctx, all[i]);
    free(x0), free(sc);
    return r;
}

static void fused_free(fused_result *r) { free(r->bits), free(r->next_bits), free(r->out), free(r->v), free(r->next_v); }

/* (a timeout of its own: a fused kernel that hangs on a GPU must not take the suite with it) */
Test(cuda, fused_synapse_equals_two_kernels, .timeout = 120)
{
    NEED_GPU();
    unsigned seed = 31;
    const unsigned kernels[] = {MST_CUDA_FUSED_SYNAPSE, MST_CUDA_WGMMA_SYNAPSE};
    for (int run = 0; run < 4; run++) {
        int p = MST_PRECISION_FP16 + run % 2;
        unsigned kernel = kernels[run / 2];
        mst_backend plain, fused;
        mst_error err = {0};
        cr_assert_eq(mst_backend_cuda(&plain, 0, (mst_precision)p, 0, &err), MST_OK, "%s", err.msg);
        mst_status made = mst_backend_cuda(&fused, 0, (mst_precision)p, kernel, &err);
        if (made == MST_ERR_UNSUPPORTED && kernel == MST_CUDA_WGMMA_SYNAPSE) { /* not a Hopper GPU */
            cr_log_warn("wgmma synapse not run: %s", err.msg);
            plain.destroy(&plain);
            continue;
        }
        cr_assert_eq(made, MST_OK, "%s", err.msg);
        for (size_t k = 0; k < sizeof fused_cases / sizeof fused_cases[0]; k++) {
            const fused_case *c = &fused_cases[k];
            long rows = c->R * c->steps, n = rows * c->N;
            int WN = mst_spike_words(c->N);
            uint64_t *x = random_spikes(&seed, rows, c->K);
            float *w = randf(&seed, (long)c->K * c->N, -0.3f, 0.4f), *b = randf(&seed, c->N, -0.2f, 0.3f);
            float *v = randf(&seed, c->R * c->N, 0, 1);
            fused_result r1 = fused_run(&plain, c, x, w, b, v), r2 = fused_run(&fused, c, x, w, b, v);
            long differ = 0;
            for (long r = 0; r < rows; r++)
                for (int j = 0; j < c->N; j++)
                    differ += c->packed == PACKED ? mst_bit(r1.bits + r * WN, j) != mst_bit(r2.bits + r * WN, j)
                                                  : r1.out[r * c->N + j] != r2.out[r * c->N + j];
            for (long r = 0; r < rows; r++) /* nothing set past N */
                for (int j = c->N; j < WN * 64; j++) {
                    if (r2.bits) cr_expect(!mst_bit(r2.bits + r * WN, j), "case %zu: bit %d set", k, j);
                    if (r2.next_bits) cr_expect(!mst_bit(r2.next_bits + r * WN, j), "case %zu: next bit %d set", k, j);
                }
            cr_expect(differ <= n / 1000, "kernel %u precision %d case %zu: %ld of %ld spikes differ", kernel, p, k, differ, n);
            cr_expect(llabs((long long)r1.count - (long long)r2.count) <= differ, "case %zu: counts %llu vs %llu", k,
                      (unsigned long long)r1.count, (unsigned long long)r2.count);
            if (!differ) expect_same_floats("fused membranes", r1.v, r2.v, c->R * c->N, 1e-5 * sqrt((double)c->K));
            if (r1.count == 0 && rows * c->N > 100) cr_expect(0, "case %zu: no spikes at all: the test would prove nothing", k);
            if (c->packed == FOLD_NEXT && !differ) { /* the same residual stream: the next site must agree exactly */
                cr_expect(memcmp(r1.next_bits, r2.next_bits, sizeof(uint64_t) * (size_t)(rows * WN)) == 0,
                          "kernel %u case %zu: the next site's spikes differ", kernel, k);
                cr_expect(memcmp(r1.next_v, r2.next_v, sizeof(float) * (size_t)(c->R * c->N)) == 0,
                          "kernel %u case %zu: the next site's membranes differ", kernel, k);
                cr_expect_eq(r1.next_count, r2.next_count, "case %zu: next counts", k);
                cr_expect(r1.next_count > 0, "case %zu: the next site never fired: the test would prove nothing", k);
            }
            free(x), free(w), free(b), free(v);
            fused_free(&r1), fused_free(&r2);
        }
        plain.destroy(&plain);
        fused.destroy(&fused);
    }
}
