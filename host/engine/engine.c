/* The engine: plans buffers once per (batch, time chunk), then runs the
 * network layer-major over each chunk of timesteps (design.md, "Execution
 * order"). Only the IF membranes carry state from one chunk to the next. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/common/mst_bits.h"
#include "../error.h"
#include "engine_internal.h"

int mst_engine_steps_out(const mst_engine *e) { return e->T; }
int mst_engine_time_chunk(const mst_engine *e) { return e->Tc; }

/* Device pointer of a model array (the array itself on host-memory backends). */
const float *mst_engine_dev(const mst_engine *e, const float *host)
{
    if (e->be.host_memory || !host) return host;
    for (int i = 0; i < e->num_w; i++)
        if (e->w[i].host == host) return e->w[i].dev;
    return NULL;
}

/* Device memory for the engine: allocated, or in the planning pass
 * (e->counting) only counted, so that the plan is the allocation code itself. */
static mst_status dev_alloc(mst_engine *e, size_t bytes, void **p, mst_error *err)
{
    if (!e->counting) return e->be.alloc(e->be.ctx, bytes, p, err);
    e->counted += bytes;
    *p = NULL;
    return MST_OK;
}

static mst_status upload(mst_engine *e, const float *host, size_t n, mst_error *err)
{
    if (e->be.host_memory || !host) return MST_OK;
    if (e->counting) {
        e->counted += sizeof(float) * n;
        return MST_OK;
    }
    if (e->num_w == e->cap_w) {
        int cap = e->cap_w ? 2 * e->cap_w : 64;
        weight *w = realloc(e->w, sizeof(weight) * (size_t)cap);
        if (!w) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
        e->w = w;
        e->cap_w = cap;
    }
    weight *w = &e->w[e->num_w];
    TRY(dev_alloc(e, sizeof(float) * n, (void **)&w->dev, err));
    w->host = host;
    e->num_w++;
    return e->be.upload(e->be.ctx, w->dev, host, sizeof(float) * n, err);
}

static mst_status upload_dense(mst_engine *e, const mst_dense *d, mst_error *err)
{
    TRY(upload(e, d->w, (size_t)d->n_out * d->n_in, err));
    return upload(e, d->b, (size_t)d->n_out, err);
}

static mst_status upload_block(mst_engine *e, const mst_block *b, mst_error *err)
{
    size_t C = (size_t)b->dim, n = (size_t)b->window * b->window;
    const float *vec[] = {b->sc1_scale, b->sc1_shift, b->bn2_scale, b->bn2_shift, b->sc2_scale, b->sc2_shift};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) TRY(upload(e, vec[i], C, err));
    TRY(upload(e, b->rel_bias, (size_t)b->heads * n * n, err));
    TRY(upload_dense(e, &b->qkv, err));
    TRY(upload_dense(e, &b->proj, err));
    TRY(upload_dense(e, &b->fc1, err));
    return upload_dense(e, &b->fc2, err);
}

static mst_status upload_model(mst_engine *e, mst_error *err)
{
    const mst_model *m = e->m;
    TRY(upload_dense(e, &m->pe, err));
    for (int s = 0; s < m->arch.num_stages; s++) {
        for (int b = 0; b < m->stages[s].info.depth; b++) TRY(upload_block(e, &m->stages[s].blocks[b], err));
        if (m->stages[s].info.has_downsample) TRY(upload_dense(e, &m->stages[s].reduction, err));
    }
    TRY(upload(e, m->norm_w, (size_t)m->head.n_in, err));
    TRY(upload(e, m->norm_b, (size_t)m->head.n_in, err));
    return upload_dense(e, &m->head, err);
}

static mst_status buffer(mst_engine *e, float **p, size_t n, mst_error *err)
{
    return dev_alloc(e, sizeof(float) * (n ? n : 1), (void **)p, err);
}

static mst_status words(mst_engine *e, uint64_t **p, size_t n, mst_error *err)
{
    return dev_alloc(e, sizeof(uint64_t) * (n ? n : 1), (void **)p, err);
}

static mst_status membrane(mst_engine *e, float **p, size_t n, mst_error *err)
{
    TRY(buffer(e, p, n, err));
    if (e->counting) return MST_OK;
    e->state[e->num_state] = *p;
    e->state_n[e->num_state++] = n;
    return MST_OK;
}

static mst_status host_counters(mst_engine *e, mst_error *err)
{
    const mst_arch *a = &e->m->arch;
    e->num_counts = (size_t)a->num_if_sites + (size_t)a->num_mask_sites / 5 * MST_BLOCK_COUNTS;
    e->spikes = calloc(e->num_counts, sizeof(uint64_t));
    if (!e->spikes) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    e->attn_counts = e->spikes + a->num_if_sites;
    return MST_OK;
}

static mst_status dev_counters(mst_engine *e, mst_error *err)
{
    TRY(words(e, &e->dev_counts, e->num_counts, err));
    if (e->counting) return MST_OK;
    return e->be.upload(e->be.ctx, e->dev_counts, e->spikes, sizeof(uint64_t) * e->num_counts, err);
}

static mst_status block_membranes(mst_engine *e, const mst_block *b, block_state *s, mst_error *err)
{
    size_t BN = (size_t)e->B * b->res * b->res, C = (size_t)b->dim;
    size_t n = (size_t)b->window * b->window;
    TRY(membrane(e, &s->sc1, BN * C, err));
    TRY(membrane(e, &s->qkv, 3 * BN * C, err));
    TRY(membrane(e, &s->attn, BN / n * (size_t)b->heads * n * n, err));
    TRY(membrane(e, &s->av, BN * C, err));
    TRY(membrane(e, &s->proj, BN * C, err));
    TRY(membrane(e, &s->sc2, BN * C, err));
    TRY(membrane(e, &s->fc1, BN * (size_t)b->mlp_hidden, err));
    return membrane(e, &s->fc2, BN * C, err);
}

/* The host tables that point at the membranes. */
static mst_status membrane_tables(mst_engine *e, mst_error *err)
{
    const mst_arch *a = &e->m->arch;
    e->state = calloc((size_t)a->num_if_sites, sizeof(float *));
    e->state_n = calloc((size_t)a->num_if_sites, sizeof(size_t));
    e->bs = calloc((size_t)a->num_stages, sizeof(block_state *));
    e->v_red = calloc((size_t)a->num_stages, sizeof(float *));
    if (!e->state || !e->state_n || !e->bs || !e->v_red) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    for (int s = 0; s < a->num_stages; s++)
        if (!(e->bs[s] = calloc((size_t)e->m->stages[s].info.depth, sizeof(block_state))))
            return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    return MST_OK;
}

static mst_status plan_membranes(mst_engine *e, mst_error *err)
{
    const mst_arch *a = &e->m->arch;
    size_t N0 = (size_t)a->stages[0].resolution * a->stages[0].resolution;
    TRY(membrane(e, &e->v_pe, (size_t)e->B * N0 * a->embed_dim, err));
    for (int s = 0; s < a->num_stages; s++) {
        const mst_stage *sg = &e->m->stages[s];
        for (int b = 0; b < sg->info.depth; b++) TRY(block_membranes(e, &sg->blocks[b], &e->bs[s][b], err));
        size_t NC = (size_t)e->B * sg->info.resolution * sg->info.resolution * sg->info.dim;
        if (sg->info.has_downsample) TRY(membrane(e, &e->v_red[s], NC / 2, err));
    }
    return MST_OK;
}

/* Floats (spike words for sA, sH) of each activation buffer, for what the
 * forward pass (forward.c) stores in it over Tc x B images' rows:
 *   x     the residual stream: N x C at every stage (the merge writes N/4 x 2C);
 *   bufA  C-wide IF outputs and levels (ANN), attention and fc2 outputs, the
 *         merge's gathered N/4 x 4C patches: N x C;
 *   bufH  SNN: proj's output (N x C) and the merge reduction's (N/4 x 2C);
 *         ANN also the qkv and fc1 levels, N x 3C and N x hidden;
 *   sA/sH packed spikes into synapses, C wide and 3C or hidden wide (SNN only);
 *   sB    the C-wide spikes of sc1 and sc2, which the folds of proj and fc2
 *         write while their inputs (sA, sH) are still being read. */
void mst_engine_buffer_sizes(const mst_model *m, mst_mode mode, int B, int Tc, mst_buffer_sizes *z)
{
    const mst_arch *a = &m->arch;
    size_t maxNC = 0, maxH = 0, bitsA = 0, bitsH = 0, rows = (size_t)Tc * B;
    for (int s = 0; s < a->num_stages; s++) {
        size_t N = (size_t)a->stages[s].resolution * a->stages[s].resolution, C = (size_t)a->stages[s].dim;
        size_t wide = 3 * C > (size_t)a->stages[s].mlp_hidden ? 3 * C : (size_t)a->stages[s].mlp_hidden;
        maxNC = N * C > maxNC ? N * C : maxNC;
        maxH = N * wide > maxH ? N * wide : maxH;
        size_t wa = N * (size_t)mst_spike_words((int)C), wh = N * (size_t)mst_spike_words((int)wide);
        bitsA = wa > bitsA ? wa : bitsA;
        bitsH = wh > bitsH ? wh : bitsH;
    }
    int snn = mode == MST_MODE_SNN;
    size_t P = (size_t)a->patch_size, N0 = (size_t)a->stages[0].resolution * a->stages[0].resolution;
    *z = (mst_buffer_sizes){.img = (size_t)B * a->in_chans * a->img_size * a->img_size,
                            .patches = (size_t)B * N0 * a->in_chans * P * P,
                            .pe_z = (size_t)B * N0 * a->embed_dim,
                            .x = rows * maxNC,
                            .bufA = rows * maxNC,
                            .bufH = rows * (snn ? maxNC : maxH),
                            .pooled = rows * (size_t)m->head.n_in,
                            .sA = snn ? rows * bitsA : 0,
                            .sB = snn ? rows * bitsA : 0,
                            .sH = snn ? rows * bitsH : 0,
                            .logits = rows * (size_t)a->num_classes};
}

static mst_status plan_buffers(mst_engine *e, mst_error *err)
{
    mst_buffer_sizes z;
    mst_engine_buffer_sizes(e->m, e->o.mode, e->B, e->Tc, &z);
    TRY(buffer(e, &e->img, z.img, err));
    TRY(buffer(e, &e->patches, z.patches, err));
    TRY(buffer(e, &e->pe_z, z.pe_z, err));
    TRY(buffer(e, &e->x, z.x, err));
    TRY(buffer(e, &e->bufA, z.bufA, err));
    TRY(buffer(e, &e->bufH, z.bufH, err));
    TRY(buffer(e, &e->pooled, z.pooled, err));
    TRY(words(e, &e->sA, z.sA, err));
    TRY(words(e, &e->sB, z.sB, err));
    TRY(words(e, &e->sH, z.sH, err));
    TRY(buffer(e, &e->logits, z.logits, err));
    TRY(words(e, &e->keys, 2, err));
    if (e->counting) return MST_OK;
    return e->be.host_alloc(e->be.ctx, sizeof(float) * z.logits, (void **)&e->logits_host, err);
}

/* The ops that multiply by a weight matrix over a chunk of Tc steps (as
 * forward.c runs them), for the backend's scratch. Returns how many. */
static int gemm_ops(const mst_engine *e, int Tc, mst_gemm_op *ops)
{
    const mst_arch *a = &e->m->arch;
    int n = 0, snn = e->o.mode == MST_MODE_SNN;
    size_t N0 = (size_t)a->stages[0].resolution * a->stages[0].resolution;
    const mst_dense *pe = &e->m->pe;
    ops[n++] = (mst_gemm_op){(long)((size_t)e->B * N0), pe->n_in, pe->n_out, 0};
    for (int s = 0; s < a->num_stages; s++) {
        const mst_stage *sg = &e->m->stages[s];
        long rows = (long)Tc * e->B * sg->info.resolution * sg->info.resolution;
        for (int b = 0; b < sg->info.depth; b++) {
            const mst_dense *d[4] = {&sg->blocks[b].qkv, &sg->blocks[b].proj, &sg->blocks[b].fc1, &sg->blocks[b].fc2};
            for (int i = 0; i < 4; i++) ops[n++] = (mst_gemm_op){rows, d[i]->n_in, d[i]->n_out, snn};
        }
        if (sg->info.has_downsample) ops[n++] = (mst_gemm_op){rows / 4, sg->reduction.n_in, sg->reduction.n_out, 0};
    }
    ops[n++] = (mst_gemm_op){(long)Tc * e->B, e->m->head.n_in, e->m->head.n_out, 0};
    return n;
}

static int num_gemm_ops(const mst_arch *a)
{
    int n = 2;
    for (int s = 0; s < a->num_stages; s++) n += 4 * a->stages[s].depth + 1;
    return n;
}

/* Every device allocation of an engine, in order; run with e->counting set
 * it only counts them, which is how the plan is made. */
static mst_status allocate(mst_engine *e, mst_error *err)
{
    TRY(dev_counters(e, err));
    TRY(upload_model(e, err));
    TRY(plan_membranes(e, err));
    return plan_buffers(e, err);
}

/* Bytes the engine would allocate at a time chunk of Tc, and of them the
 * backend's scratch: the allocation code run without allocating. */
static mst_status plan_bytes(mst_engine *e, int Tc, size_t *total, size_t *scratch, mst_error *err)
{
    int n = num_gemm_ops(&e->m->arch), keep = e->Tc;
    mst_gemm_op *ops = malloc(sizeof *ops * (size_t)n);
    if (!ops) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    n = gemm_ops(e, Tc, ops);
    *scratch = e->be.scratch_bytes ? e->be.scratch_bytes(e->be.ctx, ops, n) : 0;
    free(ops);
    e->counting = 1, e->counted = 0, e->Tc = Tc;
    mst_status r = allocate(e, err);
    e->counting = 0, e->Tc = keep;
    *total = e->counted + *scratch;
    return r;
}

/* What the plan may take: the limit asked for, or most of what the device
 * has free (its allocator, graphs and cuBLAS want some room); SIZE_MAX: no
 * limit. */
static mst_status available(mst_engine *e, size_t *bytes, mst_error *err)
{
    *bytes = e->o.memory_limit ? e->o.memory_limit : SIZE_MAX;
    if (!e->be.free_bytes) return MST_OK;
    size_t free_b = 0;
    TRY(e->be.free_bytes(e->be.ctx, &free_b, err));
    size_t room = free_b / 50 > ((size_t)256 << 20) ? free_b / 50 : (size_t)256 << 20;
    free_b = free_b > room ? free_b - room : 0;
    if (free_b < *bytes) *bytes = free_b;
    return MST_OK;
}

static double gib(size_t b) { return (double)b / (double)((size_t)1 << 30); }

/* The time chunk the plan fits at: the one asked for, else the largest
 * smaller one that fits; none: fail with what it needs, before allocating. */
static mst_status fit(mst_engine *e, mst_error *err)
{
    size_t have, total, scratch;
    TRY(available(e, &have, err));
    e->mem.available = have == SIZE_MAX ? 0 : have;
    e->mem.requested_chunk = e->Tc;
    TRY(plan_bytes(e, e->Tc, &total, &scratch, err));
    if (total > have) {
        int lo = 1, hi = e->Tc - 1; /* the largest Tc in [1, hi] whose plan fits */
        TRY(plan_bytes(e, 1, &total, &scratch, err));
        if (total > have)
            return mst_fail(err, MST_ERR_NOMEM,
                            "%s: a batch of %d needs %.2f GiB even one timestep at a time (%.2f GiB of it backend "
                            "scratch) and %.2f GiB is available: use a smaller batch",
                            e->be.name, e->B, gib(total), gib(scratch), gib(have));
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            TRY(plan_bytes(e, mid, &total, &scratch, err));
            if (total <= have) lo = mid;
            else hi = mid - 1;
        }
        e->Tc = lo;
        TRY(plan_bytes(e, e->Tc, &total, &scratch, err));
    }
    e->mem.planned = total, e->mem.scratch = scratch;
    return MST_OK;
}

static mst_status check_opts(const mst_engine_opts *o, mst_error *err)
{
    if (o->mode != MST_MODE_SNN && o->mode != MST_MODE_ANN)
        return mst_fail(err, MST_ERR_ARG, "unknown mode %d", (int)o->mode);
    if (o->mode == MST_MODE_SNN && (o->timesteps < 1 || o->timesteps > 65535))
        return mst_fail(err, MST_ERR_ARG, "timesteps must be in [1, 65535] (the mask key holds 16 bits), got %d",
                        o->timesteps);
    if (o->time_chunk < 0) return mst_fail(err, MST_ERR_ARG, "time chunk must be >= 0, got %d", o->time_chunk);
    if (o->max_batch < 1) return mst_fail(err, MST_ERR_ARG, "batch must be >= 1, got %d", o->max_batch);
    if (o->max_batch >= 1 << 20) return mst_fail(err, MST_ERR_ARG, "batch must be < 2^20, got %d", o->max_batch);
    if (o->device != MST_DEVICE_AUTO && o->device != MST_DEVICE_CPU && o->device != MST_DEVICE_CUDA)
        return mst_fail(err, MST_ERR_ARG, "unknown device kind %d", (int)o->device);
    if (o->precision != MST_PRECISION_FP32 && o->precision != MST_PRECISION_FP16 && o->precision != MST_PRECISION_BF16)
        return mst_fail(err, MST_ERR_ARG, "unknown precision %d", (int)o->precision);
    if (o->fused_synapse < 0 || o->fused_synapse > MST_FUSED_WGMMA)
        return mst_fail(err, MST_ERR_ARG, "unknown fused synapse kernel %d", o->fused_synapse);
    if (o->fused_synapse && o->precision == MST_PRECISION_FP32)
        return mst_fail(err, MST_ERR_ARG, "the fused synapse kernel takes fp16 or bf16 operands: add --precision fp16|bf16");
    if (!(o->mask_ratio >= 0.0 && o->mask_ratio <= 1.0))
        return mst_fail(err, MST_ERR_ARG, "mask ratio must be in [0, 1], got %g", o->mask_ratio);
    if (o->mask_sites & ~MST_MASK_ALL)
        return mst_fail(err, MST_ERR_ARG, "mask sites 0x%x name sites that do not exist (MST_MASK_* bits)", o->mask_sites);
    return MST_OK;
}

static mst_status backend(mst_engine *e, mst_error *err)
{
    const mst_engine_opts *o = &e->o;
#ifdef MST_HAVE_CUDA
    if (o->device == MST_DEVICE_CUDA || (o->device == MST_DEVICE_AUTO && mst_cuda_device_count() > 0))
        return mst_backend_cuda(&e->be, o->device == MST_DEVICE_CUDA ? o->device_index : 0, o->precision,
                                o->fused_synapse == MST_FUSED_WGMMA  ? MST_CUDA_WGMMA_SYNAPSE
                                : o->fused_synapse == MST_FUSED_WMMA ? MST_CUDA_FUSED_SYNAPSE
                                                                     : 0,
                                err);
#else
    if (o->device == MST_DEVICE_CUDA)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "this mst was built without the CUDA backend (no CUDA toolkit, or MST_CUDA=OFF)");
#endif
    if (o->precision != MST_PRECISION_FP32)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "fp16 and bf16 run on the CUDA backend only; the CPU computes in fp32");
    return mst_backend_cpu(&e->be, err);
}

const char *mst_engine_device(const mst_engine *e) { return e->be.name; }

unsigned mst_engine_mask_sites(const mst_engine *e) { return e->o.mask_sites; }

void mst_engine_set_profiling(mst_engine *e, int on) { e->profiling = on; }

mst_status mst_engine_profile(mst_engine *e, double ms[MST_NUM_FAMILIES], mst_error *err)
{
    for (int f = 0; f < MST_NUM_FAMILIES; f++) ms[f] = 0;
    return e->be.timer_collect(e->be.ctx, ms, MST_NUM_FAMILIES, err);
}

size_t mst_engine_peak_bytes(const mst_engine *e) { return e->be.peak_bytes(e->be.ctx); }

void mst_engine_memory(const mst_engine *e, mst_memory_plan *out) { *out = e->mem; }

mst_status mst_engine_peak_flops(mst_engine *e, double *flops, mst_error *err)
{
    return e->be.peak_flops(e->be.ctx, flops, err);
}

mst_status mst_engine_op_work(mst_engine *e, mst_op_work w[MST_NUM_OP_KINDS], mst_error *err)
{
    if (!e->be.op_work)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "the %s backend does not count its ops' work", e->be.name);
    return e->be.op_work(e->be.ctx, w, MST_NUM_OP_KINDS, err);
}

mst_status mst_engine_op_floors(mst_engine *e, double floor[MST_NUM_OP_KINDS], mst_error *err)
{
    if (!e->be.op_floors)
        return mst_fail(err, MST_ERR_UNSUPPORTED, "the %s backend has no per-op floors", e->be.name);
    return e->be.op_floors(e->be.ctx, floor, MST_NUM_OP_KINDS, err);
}

mst_status mst_engine_host_alloc(mst_engine *e, size_t bytes, void **out, mst_error *err)
{
    return e->be.host_alloc(e->be.ctx, bytes, out, err);
}

void mst_engine_host_free(mst_engine *e, void *p)
{
    if (p) e->be.host_release(e->be.ctx, p);
}

/* An engine's options and host tables, no device memory yet. */
static mst_status engine_new(const mst_model *m, const mst_engine_opts *opts, mst_engine **out, mst_error *err)
{
    *out = NULL;
    TRY(check_opts(opts, err));
    mst_engine *e = calloc(1, sizeof *e);
    if (!e) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    e->m = m;
    e->o = *opts;
    e->o.mask_sites = opts->mask_sites ? opts->mask_sites : m->arch.mask_sites;
    e->T = opts->mode == MST_MODE_ANN ? 1 : opts->timesteps;
    e->Tc = opts->time_chunk > 0 ? opts->time_chunk : 8;
    e->Tc = e->Tc < e->T ? e->Tc : e->T;
    e->B = opts->max_batch;
    e->trace = mst_trace_open();
    mst_status r = backend(e, err);
    if (r == MST_OK) r = host_counters(e, err);
    if (r == MST_OK) r = membrane_tables(e, err);
    if (r != MST_OK) {
        mst_engine_free(e);
        return r;
    }
    *out = e;
    return MST_OK;
}

mst_status mst_engine_create(const mst_model *m, const mst_engine_opts *opts, mst_engine **out,
                             mst_error *err)
{
    mst_engine *e;
    *out = NULL;
    TRY(engine_new(m, opts, &e, err));
    mst_status r = fit(e, err);
    if (r == MST_OK) r = allocate(e, err);
    if (r != MST_OK) {
        mst_engine_free(e);
        return r;
    }
    *out = e;
    return MST_OK;
}

mst_status mst_engine_plan(const mst_model *m, const mst_engine_opts *opts, mst_memory_plan *out, mst_error *err)
{
    mst_engine *e;
    *out = (mst_memory_plan){0};
    TRY(engine_new(m, opts, &e, err));
    size_t total = 0, scratch = 0, have = 0;
    mst_status r = available(e, &have, err);
    if (r == MST_OK) r = plan_bytes(e, e->Tc, &total, &scratch, err);
    *out = (mst_memory_plan){.planned = total, .scratch = scratch, .available = have == SIZE_MAX ? 0 : have,
                             .requested_chunk = e->Tc};
    mst_engine_free(e);
    return r;
}

void mst_engine_free(mst_engine *e)
{
    if (!e) return;
    void *ctx = e->be.ctx;
    float *bufs[] = {e->img, e->patches, e->pe_z, e->x, e->bufA, e->bufH, e->pooled, e->logits};
    if (e->be.release) {
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) e->be.release(ctx, bufs[i]);
        if (e->sA) e->be.release(ctx, e->sA);
        if (e->sB) e->be.release(ctx, e->sB);
        if (e->sH) e->be.release(ctx, e->sH);
        if (e->dev_counts) e->be.release(ctx, e->dev_counts);
        if (e->keys) e->be.release(ctx, e->keys);
        for (int i = 0; i < e->num_state; i++) e->be.release(ctx, e->state[i]);
        for (int i = 0; i < e->num_w; i++) e->be.release(ctx, e->w[i].dev);
    }
    for (int s = 0; e->bs && s < e->m->arch.num_stages; s++) free(e->bs[s]);
    free(e->bs);
    free(e->v_red);
    free(e->state);
    free(e->state_n);
    free(e->w);
    if (e->logits_host) e->be.host_release(e->be.ctx, e->logits_host);
    free(e->spikes);
    free(e->layer_stats);
    free(e->site_stats);
    free(e->names);
    if (e->be.destroy) e->be.destroy(&e->be);
    mst_trace_close(e->trace);
    free(e);
}

int mst_cuda_devices(void)
{
#ifdef MST_HAVE_CUDA
    return mst_cuda_device_count();
#else
    return 0;
#endif
}
