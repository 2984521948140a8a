/* Data movement and the small analog ops: fill, patches, patch merging,
 * residual adds with BatchNorm, and the final LayerNorm + token mean. Each
 * element is computed in the CPU backend's order of operations. */
#include "../common/mst_math.h"
#include "cuda_backend.h"

#define FOR_EACH(i, n) for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

static unsigned grid(long n)
{
    unsigned b = mst_cuda_blocks(n, 256);
    return b < 65535 * 16 ? (b ? b : 1) : 65535 * 16;
}

__global__ void fill_kernel(float *p, float value, long n)
{
    FOR_EACH(i, n) p[i] = value;
}

mst_status mst_cuda_fill(void *ctx, float *p, float value, size_t n, mst_error *err)
{
    MST_LAUNCH(fill_kernel, grid((long)n), 256, 0, ((mst_cuda *)ctx)->stream)(p, value, (long)n);
    LAUNCH_TRY("fill_kernel", err);
    return MST_OK;
}

__global__ void patchify_kernel(const float *img, int B, int cin, int res, int P, float *out)
{
    int H = res * P, K = cin * P * P;
    FOR_EACH(i, (long)B * res * res * K)
    {
        long bp = i / K;
        int k = (int)(i % K), b = (int)(bp / (res * res)), p = (int)(bp % (res * res));
        int c = k / (P * P), ky = k / P % P, kx = k % P, py = p / res, px = p % res;
        out[i] = img[(((long)b * cin + c) * H + py * P + ky) * H + px * P + kx];
    }
}

mst_status mst_cuda_patchify(void *ctx, const float *img, int B, int cin, int res, int P, float *out, mst_error *err)
{
    long n = (long)B * res * res * cin * P * P;
    MST_LAUNCH(patchify_kernel, grid(n), 256, 0, ((mst_cuda *)ctx)->stream)(img, B, cin, res, P, out);
    LAUNCH_TRY("patchify_kernel", err);
    return MST_OK;
}

/* x0 = (even y, even x), x1 = (odd y, even x), x2 = (even y, odd x), x3 = (odd, odd) */
__global__ void patch_merge_kernel(const float *x, long rows, int res, int C, float *out)
{
    int h = res / 2;
    FOR_EACH(o, rows * h * h * 4 * C)
    {
        int c = (int)(o % C), q = (int)(o / C % 4);
        long rp = o / (4L * C);
        int p = (int)(rp % (h * h)), i = p / h, j = p % h;
        long r = rp / (h * h);
        int dy = q & 1, dx = q >> 1;
        out[o] = x[(r * res * res + (2 * i + dy) * res + 2 * j + dx) * C + c];
    }
}

mst_status mst_cuda_patch_merge(void *ctx, const float *x, long rows, int res, int C, float *out, mst_error *err)
{
    long n = rows * (res / 2) * (res / 2) * 4 * C;
    MST_LAUNCH(patch_merge_kernel, grid(n), 256, 0, ((mst_cuda *)ctx)->stream)(x, rows, res, C, out);
    LAUNCH_TRY("patch_merge_kernel", err);
    return MST_OK;
}

__global__ void residual_kernel(float *x, const float *s, float lam, const float *scale, const float *shift, int C, long n)
{
    FOR_EACH(i, n)
    {
        x[i] = mst_residual(x[i], s[i], lam, scale, shift, (int)(i % C));
    }
}

mst_status mst_cuda_residual(void *ctx, float *x, const float *s, float lam, const float *scale, const float *shift,
                             int C, long n, mst_error *err)
{
    MST_LAUNCH(residual_kernel, grid(n), 256, 0, ((mst_cuda *)ctx)->stream)(x, s, lam, scale, shift, C, n);
    LAUNCH_TRY("residual_kernel", err);
    return MST_OK;
}

/* One block per row: a thread per token finds its mean and 1/std (sums in
 * channel order, as the CPU does), then a thread per channel sums the
 * normalised tokens in token order. */
__global__ void ln_mean_kernel(const float *x, int N, int C, const float *w, const float *b, float *out)
{
    MST_DYNAMIC_SHARED(float, stat); /* [N] mean, [N] inverse std */
    long r = blockIdx.x;
    for (int t = threadIdx.x; t < N; t += blockDim.x) {
        const float *xt = x + (r * N + t) * C;
        float mean = 0.0f, var = 0.0f;
        for (int c = 0; c < C; c++) mean += xt[c];
        mean /= (float)C;
        for (int c = 0; c < C; c++) var += (xt[c] - mean) * (xt[c] - mean);
        stat[t] = mean;
        stat[N + t] = 1.0f / sqrtf(var / (float)C + 1e-5f);
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int t = 0; t < N; t++) acc += (x[(r * N + t) * C + c] - stat[t]) * stat[N + t] * w[c] + b[c];
        out[r * C + c] = acc / (float)N;
    }
}

mst_status mst_cuda_ln_mean(void *ctx, const float *x, long rows, int N, int C, const float *w, const float *b,
                            float *out, mst_error *err)
{
    if (rows == 0) return MST_OK;
    size_t shared = sizeof(float) * 2 * (size_t)N;
    if (shared > 48 * 1024) return mst_fail(err, MST_ERR_UNSUPPORTED, "final LayerNorm over %d tokens: too many", N);
    if (rows > 0x7fffffffL) return mst_fail(err, MST_ERR_UNSUPPORTED, "final LayerNorm over %ld rows", rows);
    MST_LAUNCH(ln_mean_kernel, (unsigned)rows, 256, shared, ((mst_cuda *)ctx)->stream)(x, N, C, w, b, out);
    LAUNCH_TRY("ln_mean_kernel", err);
    return MST_OK;
}
