/* Random Spike Masking where spikes enter the MLP's linear layers (spec
 * section 4b). A token's numbers are drawn as whole Philox blocks, vectorised
 * (cpu_philox.h); a token that fired nothing needs no draw. */
#include <omp.h>
#include <stdlib.h>

#include "../../host/error.h"
#include "../common/mst_bits.h"
#include "cpu_ops.h"
#include "cpu_philox.h"

/* One row (a token at one step): drop what the mask drops, return spikes kept. */
MST_INLINE uint64_t mask_row(const mst_mask_args *a, long row, uint32_t *buf)
{
    int C = a->channels, W = mst_spike_words(C);
    long per_step = (long)a->batch * a->tokens;
    int t = a->t0 + (int)(row / per_step), b = (int)(row % per_step / a->tokens), token = (int)(row % a->tokens);
    uint64_t sub = mst_mask_subsequence(a->first_image + (uint64_t)b, a->site, (uint32_t)t), kept = 0, any = 0;
    uint64_t *w = a->bits ? a->bits + row * W : NULL;
    for (int i = 0; w && i < W; i++) any |= w[i];
    if (w && !any) return 0;
    const uint32_t *raw = philox_draw(a->seed, sub, (uint64_t)token * (uint64_t)C, C, buf);
    if (!w) {
        float *x = a->levels + row * C;
        for (int c = 0; c < C; c++) x[c] = mst_mask_keep(raw[c], a->threshold) ? x[c] : 0.0f;
        return 0;
    }
    for (int i = 0; i < W; i++) {
        w[i] &= keep_bits(raw + 64 * i, C - 64 * i < 64 ? C - 64 * i : 64, a->threshold);
        kept += (uint64_t)__builtin_popcountll(w[i]);
    }
    return kept;
}

MST_CPU_CLONES static uint64_t mask_rows(const mst_mask_args *a, long r0, long r1, uint32_t *raw)
{
    uint64_t kept = 0;
    for (long r = r0; r < r1; r++) kept += mask_row(a, r, raw);
    return kept;
}

mst_status mst_cpu_mask_spikes(void *ctx, const mst_mask_args *a, mst_error *err)
{
    (void)ctx;
    long rows = (long)a->steps * a->batch * a->tokens;
    int threads = omp_get_max_threads();
    size_t per = ((size_t)a->channels + 8 + 15) / 16 * 16; /* philox_draw writes whole blocks */
    uint32_t *raw = aligned_alloc(64, sizeof(uint32_t) * per * (size_t)threads);
    if (!raw) return mst_fail(err, MST_ERR_NOMEM, "out of memory drawing spike masks");
    uint64_t kept = 0;
#pragma omp parallel reduction(+ : kept)
    {
        int th = omp_get_thread_num(), n = omp_get_num_threads();
        long r0 = rows * th / n, r1 = rows * (th + 1) / n;
        kept += mask_rows(a, r0, r1, raw + per * (size_t)th);
    }
    free(raw);
    if (a->kept) *a->kept += kept;
    return MST_OK;
}
