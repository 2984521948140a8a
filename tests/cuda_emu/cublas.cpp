/* The cuBLAS calls kernels/cuda makes, emulated on the CPU with cuBLAS's
 * column-major semantics. Arguments are checked as cuBLAS documents them, and
 * every element an operand's (rows, columns, leading dimension) reaches must
 * lie inside one device allocation, so a wrong transpose or leading dimension
 * fails here instead of reading a neighbour's memory. */
#include <algorithm>
#include <cstdio>
#include <vector>

#include "cuda_emu.h"

struct cublasContext {
    cudaStream_t stream = nullptr;
};

namespace {

/* Bytes of a column-major rows x cols operand with leading dimension ld. */
size_t extent(int rows, int cols, int ld, size_t elem)
{
    if (!rows || !cols) return 0;
    return ((size_t)(cols - 1) * (size_t)ld + (size_t)rows) * elem;
}

size_t elem_size(cudaDataType t)
{
    return t == CUDA_R_32F ? 4 : t == CUDA_R_16F || t == CUDA_R_16BF ? 2 : 0;
}

float load(const void *p, cudaDataType t, size_t i)
{
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    if (t == CUDA_R_16F) return __half2float(((const __half *)p)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

bool operand_ok(const char *what, const void *p, int rows, int cols, int ld, cudaDataType t)
{
    if (ld < (rows > 1 ? rows : 1)) {
        fprintf(stderr, "cuda_emu: cuBLAS operand %s: leading dimension %d < %d rows\n", what, ld, rows);
        return false;
    }
    size_t bytes = extent(rows, cols, ld, elem_size(t));
    if (bytes && !mst_emu::is_device_range(p, bytes)) {
        fprintf(stderr, "cuda_emu: cuBLAS operand %s (%d x %d, ld %d) is not inside one device allocation\n", what,
                rows, cols, ld);
        return false;
    }
    return true;
}

/* C = alpha op(A) op(B) + beta C, summed over k in order in fp32. */
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                    const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb, float beta, float *C,
                    int ldc)
{
    if (mst_emu::api_entry() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    bool tA = ta == CUBLAS_OP_T, tB = tb == CUBLAS_OP_T;
    if ((ta != CUBLAS_OP_N && !tA) || (tb != CUBLAS_OP_N && !tB) || m < 0 || n < 0 || k < 0 || !elem_size(at) ||
        !elem_size(bt))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!operand_ok("A", A, tA ? k : m, tA ? m : k, lda, at) || !operand_ok("B", B, tB ? n : k, tB ? k : n, ldb, bt) ||
        !operand_ok("C", C, m, n, ldc, CUDA_R_32F))
        return CUBLAS_STATUS_INVALID_VALUE;
    if ((double)m * n * k > 4e9) { /* hours on one core: nothing here needs it */
        fprintf(stderr, "cuda_emu: a %d x %d x %d GEMM is too large to emulate\n", m, n, k);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    cudaError_t queued = mst_emu::submit_host(h->stream, [=]() {
        /* op(A) as m x k and op(B) as k x n, column-major, in fp32 */
        std::vector<float> a((size_t)m * k), b((size_t)k * n), acc(m);
        for (int l = 0; l < k; l++)
            for (int i = 0; i < m; i++) a[(size_t)l * m + i] = load(A, at, tA ? (size_t)i * lda + l : (size_t)l * lda + i);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++) b[(size_t)j * k + l] = load(B, bt, tB ? (size_t)l * ldb + j : (size_t)j * ldb + l);
        for (int j = 0; j < n; j++) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int l = 0; l < k; l++) { /* each element sums over l in order */
                float bl = b[(size_t)j * k + l];
                const float *al = &a[(size_t)l * m];
                for (int i = 0; i < m; i++) acc[i] += al[i] * bl;
            }
            for (int i = 0; i < m; i++) {
                float *c = &C[(size_t)j * ldc + i];
                *c = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * *c;
            }
        }
    });
    return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

} // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
    *h = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s)
{
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void *w, size_t bytes)
{
    (void)h;
    return bytes && !mst_emu::is_device_range(w, bytes) ? CUBLAS_STATUS_INVALID_VALUE : CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    (void)h, (void)mode;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    default: return "CUBLAS_STATUS (cuda_emu: another)";
    }
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                              float *C, int ldc)
{
    return gemm(h, ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, *beta, C, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo)
{
    (void)algo;
    if (ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F || at != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm(h, ta, tb, m, n, k, *(const float *)alpha, A, at, lda, B, bt, ldb, *(const float *)beta, (float *)C,
                ldc);
}

} // extern "C"
