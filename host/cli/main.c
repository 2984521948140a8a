/* mst: the command line. Only this file prints and exits. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../data/npy.h"
#include "mst/mst.h"

typedef struct {
    const char *model, *input, *logits;
    mst_engine_opts eo;
    int img_size;
} run_args;

/* A usage or input error: one line, exit status 2. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mst: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void fail(const mst_error *err)
{
    fprintf(stderr, "mst: %s\n", err->msg[0] ? err->msg : mst_strerror(err->status));
    exit(1);
}

static long int_arg(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) die("--%s needs an integer in [%ld, %ld], got \"%s\"", opt, lo, hi, s);
    return v;
}

static double real_arg(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) die("--%s needs a number in [%g, %g], got \"%s\"", opt, lo, hi, s);
    return v;
}

static const char *usage_text =
    "usage:\n"
    "  mst run --model FILE [--timesteps T] [--mask-ratio P] [--seed S] [--mode snn|ann]\n"
    "          [--batch B] [--time-chunk C] [--img-size N] [--logits OUT.npy] INPUT.npy\n"
    "  mst info --model FILE [--img-size N]\n";

static void usage(void)
{
    fputs(usage_text, stderr);
    exit(2);
}

static void parse_run(int argc, char **argv, run_args *a)
{
    static const struct option opts[] = {
        {"model", 1, 0, 'm'}, {"timesteps", 1, 0, 'T'}, {"mask-ratio", 1, 0, 'p'}, {"seed", 1, 0, 's'},
        {"mode", 1, 0, 'M'},  {"batch", 1, 0, 'b'},     {"time-chunk", 1, 0, 'c'}, {"logits", 1, 0, 'o'},
        {"img-size", 1, 0, 'i'}, {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    a->eo = (mst_engine_opts){.mode = MST_MODE_SNN, .timesteps = 64, .max_batch = 8};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'T': a->eo.timesteps = (int)int_arg("timesteps", optarg, 1, 65535); break;
        case 'p': a->eo.mask_ratio = real_arg("mask-ratio", optarg, 0.0, 1.0); break;
        case 's': a->eo.seed = (uint64_t)int_arg("seed", optarg, 0, 0x7fffffffffffffffL); break;
        case 'b': a->eo.max_batch = (int)int_arg("batch", optarg, 1, 1 << 20); break;
        case 'c': a->eo.time_chunk = (int)int_arg("time-chunk", optarg, 1, 65535); break;
        case 'o': a->logits = optarg; break;
        case 'i': a->img_size = (int)int_arg("img-size", optarg, 1, 1 << 16); break;
        case 'M':
            if (strcmp(optarg, "snn") && strcmp(optarg, "ann")) die("--mode must be snn or ann, got \"%s\"", optarg);
            a->eo.mode = strcmp(optarg, "ann") ? MST_MODE_SNN : MST_MODE_ANN;
            break;
        case 'h': usage(); break;
        default: die("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (!a->model) die("missing --model FILE");
}

static mst_model *load(const char *path, int img_size)
{
    mst_error err = {0};
    mst_model *m = NULL;
    mst_load_opts lo = {.img_size = img_size};
    if (mst_model_load(path, &lo, &m, &err) != MST_OK) fail(&err);
    return m;
}

static void check_input(const mst_npy *x, const mst_arch *a, const char *path)
{
    char want[96];
    snprintf(want, sizeof want, "[N,%d,%d,%d]", a->in_chans, a->img_size, a->img_size);
    if (x->ndim != 4 || x->shape[1] != a->in_chans || x->shape[2] != a->img_size || x->shape[3] != a->img_size)
        die("%s: input must be float32 %s", path, want);
    if (x->shape[0] < 1) die("%s: input holds no images", path);
}

static void print_top5(const mst_model *m, const float *cum, int n, int T)
{
    int K = mst_model_arch(m)->num_classes;
    for (int i = 0; i < n; i++) {
        const float *l = cum + (long)i * K;
        int used[5], top = K < 5 ? K : 5;
        printf("image %d:", i);
        for (int r = 0; r < top; r++) {
            int best = -1;
            for (int k = 0; k < K; k++) {
                int taken = 0;
                for (int q = 0; q < r; q++) taken |= used[q] == k;
                if (!taken && (best < 0 || l[k] > l[best])) best = k;
            }
            used[r] = best;
            const char *name = mst_model_class_name(m, best);
            printf("  %d%s%s%s %.4f", best, name ? " (" : "", name ? name : "", name ? ")" : "", l[best] / T);
        }
        printf("\n");
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *run_all(mst_engine *e, const mst_npy *x, const char *path, int K, int steps, int B)
{
    long N = x->shape[0], img = x->shape[1] * x->shape[2] * x->shape[3];
    float *all = malloc(sizeof(float) * (size_t)(steps * N * K));
    float *part = malloc(sizeof(float) * (size_t)(steps * B * K));
    if (!all || !part) die("out of memory for the logits of %ld images", N);
    mst_error err = {0};
    for (long i0 = 0; i0 < N; i0 += B) {
        int n = (int)(N - i0 < B ? N - i0 : B);
        if (mst_engine_run(e, x->data + i0 * img, n, (uint64_t)i0, part, &err) != MST_OK) {
            fprintf(stderr, "mst: %s: %s\n", path, err.msg);
            exit(1);
        }
        for (int t = 0; t < steps; t++)
            memcpy(all + ((long)t * N + i0) * K, part + (long)t * n * K, sizeof(float) * (size_t)(n * K));
    }
    free(part);
    return all;
}

static int cmd_run(int argc, char **argv)
{
    run_args a = {0};
    parse_run(argc, argv, &a);
    if (optind != argc - 1) die("run needs exactly one INPUT.npy");
    a.input = argv[optind];
    mst_model *m = load(a.model, a.img_size);
    const mst_arch *arch = mst_model_arch(m);
    mst_npy x;
    mst_error err = {0};
    if (mst_npy_read(a.input, &x, &err) != MST_OK) fail(&err);
    check_input(&x, arch, a.input);
    mst_engine *e;
    if (mst_engine_create(m, &a.eo, &e, &err) != MST_OK) fail(&err);
    int steps = mst_engine_steps_out(e), K = arch->num_classes;
    double t0 = now();
    float *cum = run_all(e, &x, a.input, K, steps, a.eo.max_batch);
    double dt = now() - t0;
    fprintf(stderr, "mst: %ld images x %d steps (%s, mask ratio %g) in %.3f s: %.2f images/s\n", x.shape[0], steps,
            a.eo.mode == MST_MODE_SNN ? "snn" : "ann", a.eo.mask_ratio, dt, x.shape[0] / dt);
    print_top5(m, cum + (long)(steps - 1) * x.shape[0] * K, (int)x.shape[0], steps);
    long shape[3] = {steps, x.shape[0], K};
    if (a.logits && mst_npy_write(a.logits, cum, 3, shape, &err) != MST_OK) fail(&err);
    free(cum);
    mst_engine_free(e);
    mst_npy_free(&x);
    mst_model_free(m);
    return 0;
}

static void print_arch(const mst_arch *a)
{
    printf("image %dx%d, %d input channels, patch %d, embed dim %d, %d classes\n", a->img_size, a->img_size,
           a->in_chans, a->patch_size, a->embed_dim, a->num_classes);
    printf("MLP BatchNorm: %s; dataset: %s; parameters: %lld\n", a->mlp_bn ? "yes" : "no",
           a->dataset[0] ? a->dataset : "unknown", (long long)a->num_params);
    for (int s = 0; s < a->num_stages; s++) {
        const mst_stage_info *si = &a->stages[s];
        printf("stage %d: %dx%d tokens, dim %d, depth %d, heads %d, window %d, mlp %d%s\n", s, si->resolution,
               si->resolution, si->dim, si->depth, si->heads, si->window, si->mlp_hidden,
               si->has_downsample ? ", then patch merging" : "");
    }
}

static int cmd_info(int argc, char **argv)
{
    run_args a = {0};
    parse_run(argc, argv, &a);
    if (optind != argc) die("info takes no positional arguments (got \"%s\")", argv[optind]);
    mst_model *m = load(a.model, a.img_size);
    const mst_arch *arch = mst_model_arch(m);
    print_arch(arch);
    printf("%d IF sites, %d mask sites; thresholds:\n", arch->num_if_sites, arch->num_mask_sites);
    for (int i = 0; i < arch->num_if_sites; i++)
        printf("  %-44s %.6g\n", mst_model_site_name(m, i), (double)mst_model_site_threshold(m, i));
    mst_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "mst: unknown command \"%s\"\n", argv[1]);
    usage();
    return 2;
}
