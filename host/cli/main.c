/* mst: the command line. Only host/cli prints and exits. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../data/npy.h"
#include "cli.h"

/* mst run --stats --results-file OUT.json: the run's settings and its energy accounting. */
static void write_run_stats(const cli_args *a, const mst_engine *e, long images, const mst_stats *st)
{
    char sites[64];
    json_t *o = json_pack("{s:s, s:s, s:I, s:i, s:f, s:s, s:I, s:s, s:o}", "model", a->model, "mode", "snn",
                          "images", (json_int_t)images, "timesteps", a->eo.timesteps, "mask_ratio", a->eo.mask_ratio,
                          "mask_sites", mst_mask_sites_name(mst_engine_mask_sites(e), sites, sizeof sites), "seed",
                          (json_int_t)a->eo.seed, "device", mst_engine_device(e), "energy", cli_stats_json(st));
    if (!o || json_dump_file(o, a->results_file, JSON_INDENT(2)) != 0) cli_die("%s: cannot write", a->results_file);
    json_decref(o);
}

void cli_check_input(const mst_npy *x, const mst_arch *a, const char *path)
{
    char want[96];
    snprintf(want, sizeof want, "[N,%d,%d,%d]", a->in_chans, a->img_size, a->img_size);
    if (x->ndim != 4 || x->shape[1] != a->in_chans || x->shape[2] != a->img_size || x->shape[3] != a->img_size)
        cli_die("%s: input must be float32 %s", path, want);
    if (x->shape[0] < 1) cli_die("%s: input holds no images", path);
}

static void print_top5(const mst_model *m, const float *cum, int n, int T, const mst_dataset *files,
                       const long *which)
{
    int K = mst_model_arch(m)->num_classes;
    for (int i = 0; i < n; i++) {
        const float *l = cum + (long)i * K;
        int used[5], top = K < 5 ? K : 5;
        if (which)
            printf("%s:", mst_dataset_file(files, which[i]));
        else
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

static float *run_all(mst_engine *e, const mst_npy *x, const char *path, int K, int steps, int B)
{
    long N = x->shape[0], img = x->shape[1] * x->shape[2] * x->shape[3];
    float *all = malloc(sizeof(float) * (size_t)(steps * N * K));
    float *part = malloc(sizeof(float) * (size_t)(steps * B * K));
    if (!all || !part) cli_die("out of memory for the logits of %ld images", N);
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

/* Image files or folders as the input: decoded and preprocessed as the
 * checkpoint's metadata says; unreadable files are reported and skipped. */
static void images_input(const cli_args *a, const mst_arch *arch, const char *path, mst_npy *x, mst_dataset *d,
                         long **which)
{
    mst_error err = {0};
    if (mst_dataset_open(path, d, &err) != MST_OK) cli_fail(&err);
    if (!d->files) cli_die("%s: mst run takes image files or folders, or a .npy file", path);
    int C = arch->in_chans, S = arch->img_size;
    mst_transform tf;
    cli_transform(a, arch, &tf);
    long img = (long)C * S * S, n = 0;
    *x = (mst_npy){.ndim = 4, .shape = {0, C, S, S}, .data = malloc(sizeof(float) * (size_t)(d->count * img))};
    *which = malloc(sizeof(long) * (size_t)d->count);
    if (!x->data || !*which) cli_die("out of memory for %ld images", d->count);
    for (long i = 0; i < d->count; i++)
        if (cli_prepare(d, i, &tf, x->data + n * img)) (*which)[n++] = i;
    if (n == 0) cli_die("%s: none of the %ld images could be read", path, d->count);
    x->shape[0] = n;
    free((float *)tf.mean), free((float *)tf.std);
}

/* A folder, or a file named like an image: decoded; anything else is read as .npy. */
static int image_input(const char *path)
{
    struct stat sb;
    const char *dot = strrchr(path, '.');
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static int cmd_run(int argc, char **argv)
{
    cli_args a;
    cli_parse(argc, argv, &a);
    if (optind != argc - 1) cli_die("run needs exactly one INPUT.npy");
    if (a.results_file && !a.stats) cli_die("run writes a results file of its energy accounting: add --stats");
    const char *input = argv[optind];
    mst_model *m = cli_load(a.model, a.img_size, a.dataset);
    const mst_arch *arch = mst_model_arch(m);
    mst_npy x;
    mst_error err = {0};
    mst_dataset files = {0};
    long *which = NULL;
    if (image_input(input)) {
        images_input(&a, arch, input, &x, &files, &which);
    } else if (mst_npy_read(input, &x, &err) != MST_OK) {
        cli_fail(&err);
    }
    cli_check_input(&x, arch, input);
    mst_engine *e = cli_engine(m, &a.eo);
    int steps = mst_engine_steps_out(e), K = arch->num_classes;
    double t0 = cli_now();
    float *cum = run_all(e, &x, input, K, steps, a.eo.max_batch);
    double dt = cli_now() - t0;
    char sites[64];
    fprintf(stderr, "mst: %ld images x %d steps (%s, mask ratio %g at %s) on %s in %.3f s: %.2f images/s\n",
            x.shape[0], steps, a.eo.mode == MST_MODE_SNN ? "snn" : "ann", a.eo.mask_ratio,
            mst_mask_sites_name(mst_engine_mask_sites(e), sites, sizeof sites), mst_engine_device(e), dt,
            x.shape[0] / dt);
    print_top5(m, cum + (long)(steps - 1) * x.shape[0] * K, (int)x.shape[0], steps, &files, which);
    long shape[3] = {steps, x.shape[0], K};
    if (a.logits && mst_npy_write(a.logits, cum, 3, shape, &err) != MST_OK) cli_fail(&err);
    mst_stats st;
    if (a.stats && mst_engine_stats(e, &st, &err) != MST_OK) cli_fail(&err);
    if (a.stats) cli_print_stats(&st);
    if (a.results_file) write_run_stats(&a, e, x.shape[0], &st);
    free(cum);
    free(which);
    mst_dataset_close(&files);
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
    cli_args a;
    cli_parse(argc, argv, &a);
    if (optind != argc) cli_die("info takes no positional arguments (got \"%s\")", argv[optind]);
    mst_model *m = cli_load(a.model, a.img_size, a.dataset);
    const mst_arch *arch = mst_model_arch(m);
    print_arch(arch);
    char sites[64];
    printf("%d IF sites; %d mask sites (q, k, attn, fc1, fc2 of every block), masked by default: %s\n",
           arch->num_if_sites, arch->num_mask_sites, mst_mask_sites_name(arch->mask_sites, sites, sizeof sites));
    printf("thresholds:\n");
    for (int i = 0; i < arch->num_if_sites; i++)
        printf("  %-44s %.6g\n", mst_model_site_name(m, i), (double)mst_model_site_threshold(m, i));
    mst_model_free(m);
    return 0;
}

/* The C twin of tools/convert_pth.py: the same safetensors file, without Python. */
static int cmd_convert(int argc, char **argv)
{
    cli_args a;
    cli_parse_options(argc, argv, &a);
    if (argc - optind != 2) cli_die("convert needs IN.pth and OUT.safetensors");
    if (a.model) cli_die("convert takes IN.pth as its first argument, not --model");
    mst_load_opts lo = {.img_size = a.img_size, .dataset = a.dataset};
    mst_error err = {0};
    if (mst_convert(argv[optind], argv[optind + 1], &lo, &err) != MST_OK) cli_fail(&err);
    fprintf(stderr, "mst: wrote %s\n", argv[optind + 1]);
    return 0;
}

int main(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    atexit(cli_mpi_finalize);
    if (argc < 2) cli_usage();
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "eval") == 0) return cli_eval(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0) return cli_bench(argc - 1, argv + 1);
    if (strcmp(argv[1], "merge") == 0) return cli_merge(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "convert") == 0) return cmd_convert(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(cli_usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "mst: unknown command \"%s\"\n", argv[1]);
    cli_usage();
}
