/* The mst command line: one clear line and a non-zero exit for bad input,
 * the documented outputs for good input. */
#define _GNU_SOURCE
#include <math.h>

#include <jansson.h>

#include "helpers.h"
#include "host/data/npy.h"

static int mst(const char *args, char *out, size_t n) { return run_bin(MST_BIN, args, out, n); }

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

typedef struct {
    const char *args, *expect;
    int code;
} bad_call;

#define BN DATA("tiny_bn.safetensors")
#define BN_IN DATA("tiny_bn_input.npy")

#define EVAL_SAMPLES "eval --model " MST_WEIGHTS "/fmnist_p75.safetensors --data " MST_WEIGHTS "/samples --timesteps 2"

static const bad_call bad_calls[] = {
    {"frobnicate", "unknown command \"frobnicate\"", 2},
    {"run --model " BN " --bogus 1 " BN_IN, "unknown option \"--bogus\"", 2},
    {"run " BN_IN, "missing --model FILE", 2},
    {"run --model " BN " --mask-ratio 2 " BN_IN, "--mask-ratio needs a number in [0, 1], got \"2\"", 2},
    {"run --model " BN " --timesteps 12x " BN_IN, "--timesteps needs an integer", 2},
    {"run --model " BN " --mode spiking " BN_IN, "--mode must be snn or ann, got \"spiking\"", 2},
    {"run --model /nonexistent.safetensors " BN_IN, "/nonexistent.safetensors: cannot open", 1},
    {"run --model " BN " " DATA("tiny_nobn_input.npy"), "input must be float32 [N,3,32,32]", 2},
    {"run --model " BN " " BN, "not a .npy file", 1},
    {"run --model " BN_IN " " BN_IN, "is over the 100000000-byte limit", 1},
    {"run --model " BN " --mask-sites q,fc3 " BN_IN, "mask site \"fc3\" is not one of q, k, attn, fc1, fc2 or all", 2},
    {EVAL_SAMPLES " --mask-sites attn,,k", "mask site \"\" is not one of", 2},
    {"bench --arch fmnist --mask-sites MLP", "mask site \"MLP\" is not one of", 2},
    {"bench --arch fmnist --input /nonexistent.npy", "/nonexistent.npy: cannot open", 1},
    {"bench --model " BN " --input " DATA("tiny_nobn_input.npy"), "input must be float32 [N,3,32,32]", 2},
    {"run --model " BN " --results-file x.json " BN_IN, "add --stats", 2},
    {"run --model " DATA("pth/evil_os_system.pth") " " BN_IN, "built by posix.system, which mst does not run", 1},
    {"info --model " BN " --dataset imagenet", "--dataset is for .pth checkpoints", 1},
    {"info --model " DATA("pth/tiny_cifar10.pth") " --dataset ''", "--dataset needs a name", 2},
    {"convert " DATA("pth/tiny_cifar10.pth"), "convert needs IN.pth and OUT.safetensors", 2},
    {"convert " BN " /nonexistent/x.safetensors", "not a torch.save (.pth) checkpoint", 1},
    {"convert " DATA("pth/tiny_cifar10.pth") " /nonexistent/x.safetensors", "/nonexistent/x.safetensors: cannot create", 1},
    {"run --model " BN " " BN_IN " --timesteps", "--timesteps needs a value", 2},
    {"run --model " BN " --stats=1 " BN_IN, "--stats=1 takes no value", 2},
    {"run --model " BN " -x " BN_IN, "unknown option \"-x\"", 2},
    {"run --model " BN " --m 3 " BN_IN, "unknown option \"--m\"", 2}, /* ambiguous: --model, --mode, --mask-ratio... */
    {"run --model " BN " --shard /3 " BN_IN, "--shard needs K/N", 2},
    {"run --model " BN " --device cuda:x " BN_IN, "--device needs an integer in [0, 1023], got \"x\"", 2},
    {EVAL_SAMPLES " --report-steps 4,2", "--report-steps needs ascending steps", 2},
    {EVAL_SAMPLES " --report-steps 2,", "--report-steps needs ascending steps", 2},
    {EVAL_SAMPLES " --report-steps ''", "--report-steps needs ascending steps", 2},
    {EVAL_SAMPLES " --std 0", "--std needs finite numbers above 0", 2},
    {EVAL_SAMPLES " --mean nan", "--mean needs finite numbers", 2},
    {EVAL_SAMPLES " --labels " BN, "longer than", 1},
    {EVAL_SAMPLES " --labels " MST_WEIGHTS "/README.md", "more lines; the model has 10 classes", 1},
};

Test(cli, bad_calls_fail_with_one_line)
{
    char out[8192];
    for (size_t i = 0; i < sizeof bad_calls / sizeof bad_calls[0]; i++) {
        int code = mst(bad_calls[i].args, out, sizeof out);
        cr_expect_eq(code, bad_calls[i].code, "mst %s: exit %d", bad_calls[i].args, code);
        cr_expect(contains(out, bad_calls[i].expect), "mst %s: \"%s\" lacks \"%s\"", bad_calls[i].args, out,
                  bad_calls[i].expect);
        int one_line = contains(bad_calls[i].args, "--model") || !strncmp(bad_calls[i].args, "convert", 7);
        cr_expect(one_line ? lines(out) == 1 : 1, "mst %s: not one line: %s",
                  bad_calls[i].args, out);
    }
}

/* The authors' format end to end: run on the .pth, convert it, run on the result. */
Test(cli, pth_runs_and_converts_to_the_same_logits)
{
    char out[8192], args[2048];
    const char *a = tmp_path("pth.npy"), *b = tmp_path("st.npy"), *st = tmp_path("conv.safetensors");
    snprintf(args, sizeof args, "run --model %s --timesteps 6 --logits %s %s", DATA("pth/tiny_cifar10.pth"), a,
             DATA("pth/input.npy"));
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "(cat)") || contains(out, "(dog)") || contains(out, "(frog)"), "no CIFAR-10 names: %s", out);
    snprintf(args, sizeof args, "convert %s %s", DATA("pth/tiny_cifar10.pth"), st);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "run --model %s --timesteps 6 --logits %s %s", st, b, DATA("pth/input.npy"));
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s && cmp -s %s %s", a, b, st, DATA("pth/tiny_cifar10.safetensors"));
    cr_expect_eq(system(cmd), 0, "the .pth, its conversion and convert_pth.py's file disagree");
    remove(a), remove(b), remove(st);
}

Test(cli, rejects_non_finite_and_truncated_input)
{
    mst_npy x;
    mst_error err = {0};
    cr_assert_eq(mst_npy_read(BN_IN, &x, &err), MST_OK);
    x.data[17] = NAN;
    const char *p = tmp_path("nan.npy");
    cr_assert_eq(mst_npy_write(p, x.data, x.ndim, x.shape, &err), MST_OK);
    char args[1024], out[4096];
    snprintf(args, sizeof args, "run --model %s %s", BN, p);
    cr_expect_eq(mst(args, out, sizeof out), 1);
    cr_expect(contains(out, "nan.npy: image 0 has a non-finite value (nan) at element 17"), "%s", out);
    cr_expect_eq(lines(out), 1, "%s", out);
    cr_assert_eq(mst_npy_write(p, x.data, 4, x.shape, &err), MST_OK);
    mst_npy_free(&x);
    /* the header claims one image more than the file holds */
    FILE *f = fopen(p, "r+b");
    char head[128];
    cr_assert_eq(fread(head, 1, sizeof head, f), sizeof head);
    char *at = memmem(head, sizeof head, "(4,", 3);
    cr_assert(at != NULL);
    at[1] = '5';
    fseek(f, 0, SEEK_SET);
    fwrite(head, 1, sizeof head, f);
    fclose(f);
    cr_expect_eq(mst(args, out, sizeof out), 1);
    cr_expect(contains(out, "truncated: the shape needs"), "%s", out);
    unlink(p);
}

/* A .npy with a hand-written header and `data` bytes after it. */
static void write_npy(const char *path, const char *dict, size_t data)
{
    FILE *f = fopen(path, "wb");
    unsigned short len = (unsigned short)strlen(dict);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(len & 0xFF, f);
    fputc(len >> 8, f);
    fputs(dict, f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

Test(cli, rejects_malformed_npy_headers)
{
    struct {
        const char *dict;
        size_t data;
        const char *expect;
    } bad[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4503599627370497, 3, 32, 32), }\n", 4096,
         "shape is too large"},
        {"{'descr': '<f4', 'fortran_order' False, 'shape': (1, 3, 32, 32), }\n", 12288, "lacks descr"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3, 32, 32), 'x': '<f4'}\n", 12288,
         "dtype must be little-endian float32"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (1, 3, 32, 32), }\n", 12288, "Fortran-ordered"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 32, 32), }\n", 12292, "4 bytes after"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3, 32, 32), }\n", 0, "input holds no images"},
    };
    char args[1024], out[4096];
    const char *p = tmp_path("bad.npy");
    snprintf(args, sizeof args, "run --model %s %s", BN, p);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_npy(p, bad[i].dict, bad[i].data);
        int code = mst(args, out, sizeof out);
        cr_expect(code == 1 || code == 2, "case %zu: exit %d", i, code);
        cr_expect(contains(out, bad[i].expect), "case %zu: \"%s\" lacks \"%s\"", i, out, bad[i].expect);
        cr_expect_eq(lines(out), 1, "case %zu: %s", i, out);
    }
    unlink(p);
}

Test(cli, run_writes_logits_and_prints_top5)
{
    const char *p = tmp_path("logits.npy");
    char args[1024], out[8192];
    snprintf(args, sizeof args, "run --model %s --timesteps 6 --mask-ratio 0.75 --batch 3 --logits %s %s", BN, p, BN_IN);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "image %d:", i);
        cr_expect(contains(out, want), "%s", out);
    }
    mst_npy y;
    mst_error err = {0};
    cr_assert_eq(mst_npy_read(p, &y, &err), MST_OK, "%s", err.msg);
    cr_expect(y.ndim == 3 && y.shape[0] == 6 && y.shape[1] == 4 && y.shape[2] == 10);
    mst_npy_free(&y);
    snprintf(args, sizeof args, "run --model %s --mode ann --logits %s %s", BN, p, BN_IN);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(mst_npy_read(p, &y, &err), MST_OK, "%s", err.msg);
    cr_expect(y.ndim == 3 && y.shape[0] == 1 && y.shape[1] == 4 && y.shape[2] == 10);
    mst_npy_free(&y);
    unlink(p);
}

/* mst eval's accuracy equals the accuracy of mst run's logits on the same
 * images preprocessed in Python (tests/data/fmnist16_input.npy). */
Test(cli, eval_agrees_with_run_on_the_same_images)
{
    if (access("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", R_OK) != 0)
        cr_skip_test("Debian package dataset-fashion-mnist not installed");
    const char *logits = tmp_path("eval.npy"), *json = tmp_path("eval.json");
    char args[1024], out[8192];
    snprintf(args, sizeof args, "eval --model %s --data /usr/share/datasets/fashion-mnist --limit 16 --timesteps 8 "
             "--report-steps 2,8 --batch 5 --mask-ratio 0.5 --results-file %s", DATA("tiny_gray.safetensors"), json);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "run --model %s --timesteps 8 --batch 16 --mask-ratio 0.5 --logits %s %s",
             DATA("tiny_gray.safetensors"), logits, DATA("fmnist16_input.npy"));
    char out2[8192];
    cr_assert_eq(mst(args, out2, sizeof out2), 0, "%s", out2);
    mst_npy y;
    mst_error err = {0};
    cr_assert_eq(mst_npy_read(logits, &y, &err), MST_OK, "%s", err.msg);
    static const int labels[16] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1}; /* t10k labels 0..15 */
    int steps[2] = {2, 8};
    json_error_t je;
    json_t *res = json_load_file(json, 0, &je);
    cr_assert(res != NULL, "%s", je.text);
    for (int s = 0; s < 2; s++) {
        int correct = 0;
        for (int i = 0; i < 16; i++) {
            const float *l = y.data + ((long)(steps[s] - 1) * 16 + i) * 10;
            int best = 0;
            for (int k = 1; k < 10; k++) best = l[k] > l[best] ? k : best;
            correct += best == labels[i];
        }
        double got = json_real_value(json_array_get(json_object_get(res, "step_top1"), (size_t)s));
        cr_expect(fabs(got - 100.0 * correct / 16) < 1e-9, "step %d: eval %g %%, run %g %%", steps[s], got,
                  100.0 * correct / 16);
    }
    /* per class at the last reported step: images and top-1, in label order */
    json_t *rows = json_object_get(res, "per_class");
    size_t row = 0;
    for (int k = 0; k < 10; k++) {
        int seen = 0, hit = 0;
        for (int i = 0; i < 16; i++) {
            if (labels[i] != k) continue;
            const float *l = y.data + ((long)7 * 16 + i) * 10;
            int best = 0;
            for (int c = 1; c < 10; c++) best = l[c] > l[best] ? c : best;
            seen++, hit += best == k;
        }
        if (!seen) continue;
        json_t *r = json_array_get(rows, row++);
        cr_expect_eq(json_integer_value(json_object_get(r, "class")), k);
        cr_expect_eq(json_integer_value(json_object_get(r, "images")), seen, "class %d", k);
        double got = json_real_value(json_array_get(json_object_get(r, "top1"), 1));
        cr_expect(fabs(got - 100.0 * hit / seen) < 1e-9, "class %d: eval %g %%, run %g %%", k, got, 100.0 * hit / seen);
    }
    cr_expect_eq(json_array_size(rows), row, "per_class lists only classes that occur");
    cr_expect(contains(out, "16 images, SNN, mask ratio 0.5"), "%s", out);
    cr_expect(contains(out, "Ankle boot"), "a per-class table with the class names: %s", out);
    json_decref(res);
    /* --stats: the energy table, and the same in the results file */
    snprintf(args, sizeof args, "eval --model %s --data /usr/share/datasets/fashion-mnist --limit 4 --timesteps 4 "
             "--stats --results-file %s", DATA("tiny_gray.safetensors"), json);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "layers.1.blocks.1.mlp.fc2") && contains(out, "mJ per image"), "%s", out);
    res = json_load_file(json, 0, &je);
    cr_assert(res != NULL, "%s", je.text);
    json_t *energy = json_object_get(res, "energy");
    cr_expect(json_real_value(json_object_get(energy, "energy_mj_per_image")) > 0);
    cr_expect_eq(json_array_size(json_object_get(energy, "sites")), 1 + 4 * 10 + 1);
    json_decref(res);
    snprintf(args, sizeof args, "eval --model %s --data /usr/share/datasets/fashion-mnist --mode ann --stats",
             DATA("tiny_gray.safetensors"));
    cr_expect_eq(mst(args, out, sizeof out), 2);
    cr_expect(contains(out, "--stats counts spikes: it needs --mode snn"), "%s", out);
    mst_npy_free(&y);
    unlink(logits);
    unlink(json);
}

/* mst run on image files and folders: preprocessed from the metadata, the
 * same logits as the Python-preprocessed tensor for the same image. */
Test(cli, run_on_image_files)
{
    char args[1024], out[8192];
    snprintf(args, sizeof args, "run --model %s --timesteps 4 %s/images/rgb.jpg", DATA("tiny_gray.safetensors"),
             MST_TEST_DATA);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "images/rgb.jpg:") && contains(out, "(Trouser)"), "%s", out);
    snprintf(args, sizeof args, "run --model %s --timesteps 4 %s/images", DATA("tiny_gray.safetensors"), MST_TEST_DATA);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "skipped: ") && contains(out, "corrupt.png") && contains(out, "images/palette.png:"), "%s",
              out);
    snprintf(args, sizeof args, "run --model %s %s/images/rgb.jpg", BN, MST_TEST_DATA);
    cr_expect_eq(mst(args, out, sizeof out), 2);
    cr_expect(contains(out, "the checkpoint's metadata has no mean"), "%s", out);
}

/* A bad file in a folder dataset is reported by name, counted and skipped. */
Test(cli, eval_skips_unreadable_images)
{
    const char *root = tmp_path("tree");
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/a %s/b && cp %s/images/gray.png %s/images/rgb.jpg %s/a/ && "
             "cp %s/images/truncated.jpg %s/images/cmyk.jpg %s/b/", root, root, MST_TEST_DATA, MST_TEST_DATA, root,
             MST_TEST_DATA, MST_TEST_DATA, root);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "eval --model %s --data %s --timesteps 2 --batch 3", DATA("tiny_gray.safetensors"), root);
    cr_expect_eq(mst(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "skipped: ") && contains(out, "truncated.jpg: corrupt or truncated JPEG"), "%s", out);
    cr_expect(contains(out, "1 of 4 images could not be read and were skipped"), "%s", out);
    cr_expect(contains(out, "3 images, SNN"), "%s", out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    cr_expect_eq(system(cmd), 0);
}

static json_t *eval_json(const char *args, const char *json, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "eval --model %s --timesteps 4 --results-file %s %s", DATA("tiny_gray.safetensors"), json,
             args);
    cr_assert_eq(mst(cmd, out, n), 0, "mst %s: %s", cmd, out);
    return load_json(json);
}

static long correct(json_t *r, size_t step)
{
    double pct = json_real_value(json_array_get(json_object_get(r, "step_top1"), step));
    return lround(pct * (double)json_integer_value(json_object_get(r, "images")) / 100.0);
}

/* The same images as a folder-per-class tree and as a flat devkit tree
 * (ground-truth file of ILSVRC2012_IDs + synset table, IDs in another order
 * than the sorted classes) give the same results (p = 0: without masks an
 * image's result does not depend on its position); a zero-byte file is
 * skipped in both. Any number of decode workers and any batch give the same
 * numbers, and shards add up to the whole (p = 0.5: masks are keyed by
 * dataset position). */
Test(cli, eval_layouts_workers_and_shards_agree, .timeout = 120)
{
    const char *root = tmp_path("layouts"), *ja = tmp_path("a.json"), *jb = tmp_path("b.json");
    char cmd[4096], out[16384];
    snprintf(cmd, sizeof cmd,
             "set -e; R=%s; S=%s/samples; mkdir -p $R/tree $R/flat; i=0; : > $R/gt.txt; : > $R/syn.txt; "
             "for c in $(ls $S | sort); do mkdir -p $R/tree/$c; for f in $(ls $S/$c | sort | head -2); do "
             "cp $S/$c/$f $R/tree/$c/; i=$((i+1)); cp $S/$c/$f $R/flat/ILSVRC2012_val_$(printf %%08d $i).png; "
             "echo $((10 - ${c%%%%_*})) >> $R/gt.txt; done; done; "
             "for c in $(ls $S | sort -r); do echo $c >> $R/syn.txt; done; "
             ": > $R/tree/5_Sandal/zz_empty.png; : > $R/flat/ILSVRC2012_val_00000021.png; echo 5 >> $R/gt.txt",
             root, MST_WEIGHTS);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "--data %s/tree --batch 3 --workers 0", root);
    json_t *a = eval_json(cmd, ja, out, sizeof out);
    cr_expect(contains(out, "1 of 21 images could not be read") && contains(out, "zz_empty.png"), "%s", out);
    snprintf(cmd, sizeof cmd, "--data %s/flat --ground-truth %s/gt.txt --synsets %s/syn.txt --batch 5 --workers 3", root,
             root, root);
    json_t *b = eval_json(cmd, jb, out, sizeof out);
    cr_expect(contains(out, "1 of 21 images could not be read") && contains(out, "ILSVRC2012_val_00000021.png"), "%s", out);
    cr_expect(json_equal(json_object_get(a, "step_top1"), json_object_get(b, "step_top1")), "tree and flat differ");
    cr_expect(json_equal(json_object_get(a, "per_class"), json_object_get(b, "per_class")), "per-class results differ");
    cr_expect_eq(json_integer_value(json_object_get(b, "images")), 20);
    json_decref(a), json_decref(b);
    /* workers and batch; shards */
    snprintf(cmd, sizeof cmd, "--data %s/tree --mask-ratio 0.5 --batch 4 --workers 0", root);
    a = eval_json(cmd, ja, out, sizeof out);
    snprintf(cmd, sizeof cmd, "--data %s/tree --mask-ratio 0.5 --batch 3 --workers 4", root);
    b = eval_json(cmd, jb, out, sizeof out);
    cr_expect(json_equal(json_object_get(a, "step_top1"), json_object_get(b, "step_top1")), "workers/batch change results");
    long parts[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "--data %s/tree --mask-ratio 0.5 --shard %d/3", root, k);
        json_t *s = eval_json(cmd, jb, out, sizeof out);
        for (size_t t = 0; t < 3; t++) parts[t] += correct(s, t);
        json_decref(s);
    }
    for (size_t t = 0; t < 3; t++) cr_expect_eq(parts[t], correct(a, t), "step index %zu: shards %ld, whole %ld", t, parts[t], correct(a, t));
    json_decref(a), json_decref(b);
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s", root, ja, jb);
    cr_expect_eq(system(cmd), 0);
}

Test(cli, info_prints_architecture_and_thresholds)
{
    char out[16384];
    cr_assert_eq(mst("info --model " DATA("tiny_nobn.safetensors"), out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "image 28x28, 3 input channels, patch 2, embed dim 12, 7 classes"), "%s", out);
    cr_expect(contains(out, "stage 1: 7x7 tokens, dim 24, depth 3, heads 3, window 7, mlp 48"), "%s", out);
    cr_expect(contains(out, "layers.1.blocks.2.mlp.fc2_if"), "%s", out);
    cr_expect(contains(out, "MLP BatchNorm: no"), "%s", out);
    cr_expect(contains(out, "25 mask sites (q, k, attn, fc1, fc2 of every block), masked by default: q,k,attn"), "%s", out);
}

#ifdef MST_EMU_BIN
/* `mst eval --device cuda` through the CLI's device path (pinned input
 * buffers, the prefetch pipeline, CUDA graphs, spike counters brought back
 * from the device) on the emulated GPU (tests/cuda_emu): the same per-step
 * top-1/top-5, per-class counts and energy figures as the CPU backend. The
 * GEMMs sum in another order, so the energy figures may differ by a flipped
 * spike: 1e-3 relative. */
Test(cli, eval_on_emulated_cuda_equals_cpu, .timeout = 240)
{
    const char *cpu_out = tmp_path("cpu.json"), *emu_out = tmp_path("emu.json");
    const char *common = "--model " MST_WEIGHTS "/fmnist_p75.safetensors --data " MST_WEIGHTS "/samples --limit 30 "
                         "--timesteps 8 --mask-ratio 0.75 --batch 7 --time-chunk 3 --report-steps 1,2,4,8 --stats";
    char args[2048], log[16384];
    snprintf(args, sizeof args, "eval --device cpu %s --results-file %s", common, cpu_out);
    cr_assert_eq(mst(args, log, sizeof log), 0, "mst %s: %s", args, log);
    const char *variants[] = {"--workers 2", "--cuda-graphs --workers 0"};
    for (int v = 0; v < 2; v++) {
        snprintf(args, sizeof args, "eval --device cuda %s %s --results-file %s", common, variants[v], emu_out);
        cr_assert_eq(run_bin(MST_EMU_BIN, args, log, sizeof log), 0, "mst_emu %s: %s", args, log);
        json_error_t je;
        json_t *a = json_load_file(cpu_out, 0, &je), *b = json_load_file(emu_out, 0, &je);
        cr_assert(a && b);
        cr_expect(strstr(json_string_value(json_object_get(b, "device")), "CUDA emulator") != NULL);
        const char *same[] = {"images", "step_top1", "step_top5", "per_class"};
        for (int k = 0; k < 4; k++)
            cr_expect(json_equal(json_object_get(a, same[k]), json_object_get(b, same[k])), "%s: %s differs",
                      variants[v], same[k]);
        json_t *ea = json_object_get(a, "energy"), *eb = json_object_get(b, "energy");
        const char *figures[] = {"sops_per_image", "macs_per_image", "energy_mj_per_image"};
        for (int k = 0; k < 3; k++) {
            double x = json_number_value(json_object_get(ea, figures[k])), y = json_number_value(json_object_get(eb, figures[k]));
            cr_expect(x > 0 && fabs(x - y) <= 1e-3 * x, "%s: %s cpu %g, cuda %g", variants[v], figures[k], x, y);
        }
        json_decref(a), json_decref(b);
    }
    unlink(cpu_out), unlink(emu_out);
}
#endif

/* mst bench --json: the run's configuration and figures that hang together
 * (gpu-check.sh and compare.py read these fields). */
Test(cli, bench_json_records_the_run)
{
    const char *out = tmp_path("bench.json");
    char args[1024], buf[8192];
    snprintf(args, sizeof args, "bench --arch fmnist --timesteps 4 --batch 2 --warmup 0 --iters 3 --time-chunk 3 "
             "--mask-ratio 0.5 --json %s", out);
    cr_assert_eq(mst(args, buf, sizeof buf), 0, "%s", buf);
    cr_expect(contains(buf, "T = 4 in chunks of 3"), "%s", buf);
    json_error_t je;
    json_t *r = json_load_file(out, 0, &je);
    cr_assert(r != NULL, "%s", je.text);
    cr_expect_str_eq(json_string_value(json_object_get(r, "precision")), "fp32");
    cr_expect_str_eq(json_string_value(json_object_get(r, "device")), "cpu");
    cr_expect_eq(json_integer_value(json_object_get(r, "time_chunk")), 3);
    cr_expect_eq(json_integer_value(json_object_get(r, "timesteps")), 4);
    cr_expect_eq(json_integer_value(json_object_get(r, "batch")), 2);
    cr_expect(json_is_false(json_object_get(r, "cuda_graphs")));
    cr_expect(json_is_false(json_object_get(r, "fused_synapse")));
    cr_expect(json_is_false(json_object_get(r, "spike_counts")));
    json_t *l = json_object_get(r, "latency_ms");
    double p50 = json_number_value(json_object_get(l, "p50")), p99 = json_number_value(json_object_get(l, "p99"));
    cr_expect(p50 > 0 && p50 <= p99, "p50 %g p99 %g", p50, p99);
    double ips = json_number_value(json_object_get(r, "images_per_second"));
    double flop = json_number_value(json_object_get(r, "flop_per_image"));
    double floor_flops = json_number_value(json_object_get(r, "floor_flops"));
    cr_expect(ips > 0 && flop > 0 && floor_flops > 0);
    cr_expect(fabs(json_number_value(json_object_get(r, "floor_fraction")) - ips * flop / floor_flops) < 1e-9 * ips,
              "floor_fraction is images/s x FLOP per image / floor");
    cr_expect(fabs(json_number_value(json_object_get(r, "timestep_images_per_second")) - 4 * ips) < 1e-6 * ips);
    cr_expect_gt(json_number_value(json_object_get(r, "peak_bytes")), 0);
    cr_expect_eq(json_object_size(json_object_get(r, "breakdown_ms")), 4);
    /* the CPU's op kinds: each with a measured floor; the synapse's adds
       are at most the dense work of the one timed batch (2 images x 4 steps) */
    json_t *ops = json_object_get(r, "op_floors");
    cr_assert_eq(json_object_size(ops), 4);
    const char *kinds[] = {"synapse", "IF scans", "window attention", "layout copies"};
    for (int k = 0; k < 4; k++) {
        json_t *o = json_object_get(ops, kinds[k]);
        cr_assert(o != NULL, "no op kind \"%s\"", kinds[k]);
        cr_expect_gt(json_number_value(json_object_get(o, "floor_per_second")), 0, "%s", kinds[k]);
        cr_expect_gt(json_number_value(json_object_get(o, "units")), 0, "%s", kinds[k]);
        cr_expect_gt(json_number_value(json_object_get(o, "seconds")), 0, "%s", kinds[k]);
    }
    double adds = json_number_value(json_object_get(json_object_get(ops, "synapse"), "units"));
    cr_expect_leq(adds, json_number_value(json_object_get(r, "macs_per_step")) * 4 * 2, "%g adds", adds);
    json_decref(r);
    unlink(out);
}

/* --stats by module: the groups add up to the total, the MLP masks remove
 * about p of the spikes into fc1 and fc2, and the run's results file names
 * the sites in effect. */
Test(cli, stats_by_module_and_mask_sites)
{
    const char *p = tmp_path("run_stats.json");
    char args[1024], out[16384];
    snprintf(args, sizeof args, "run --model %s --timesteps 8 --mask-ratio 0.75 --mask-sites fc1,fc2 --stats "
                                "--results-file %s %s", BN, p, BN_IN);
    cr_assert_eq(mst(args, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "mask ratio 0.75 at fc1,fc2"), "%s", out);
    const char *rows[] = {"patch embedding", "attention", "  attn.qk", "MLP", "  mlp.fc1", "patch merging",
                          "head (not in total)", "SOPs dropped"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) cr_expect(contains(out, rows[i]), "no \"%s\": %s", rows[i], out);
    json_t *o = load_json(p), *en = json_object_get(o, "energy"), *mods = json_object_get(en, "modules");
    cr_expect_str_eq(json_string_value(json_object_get(o, "mask_sites")), "fc1,fc2");
    cr_assert_eq(json_array_size(mods), 9);
    double e = 0;
    for (size_t i = 0; i < 9; i++) {
        json_t *m = json_array_get(mods, i);
        const char *name = json_string_value(json_object_get(m, "name"));
        double dropped = json_real_value(json_object_get(m, "sops_dropped")), sops = json_real_value(json_object_get(m, "sops"));
        if (json_is_true(json_object_get(m, "in_total"))) e += json_real_value(json_object_get(m, "energy_mj"));
        if (!strcmp(name, "mlp.fc1") || !strcmp(name, "mlp.fc2"))
            cr_expect(dropped > 2.0 * sops && dropped < 4.5 * sops, "%s: %g dropped, %g kept (p = 0.75)", name, dropped, sops);
        else
            cr_expect_eq(dropped, 0.0, "%s: nothing masked there", name);
    }
    double total = json_real_value(json_object_get(en, "energy_mj_per_image"));
    cr_expect(fabs(e - total) <= 1e-9 * total, "modules %g vs total %g", e, total);
    json_decref(o);
    unlink(p);
}

/* Whether two results files agree in every field but the timing. */
static void expect_same_but_timing(json_t *a, json_t *b, const char *what)
{
    json_t *x = json_deep_copy(a), *y = json_deep_copy(b);
    json_object_del(x, "images_per_second"), json_object_del(y, "images_per_second");
    char *sx = json_dumps(x, JSON_SORT_KEYS | JSON_COMPACT), *sy = json_dumps(y, JSON_SORT_KEYS | JSON_COMPACT);
    cr_expect(json_equal(x, y), "%s:\n%s\nvs\n%s", what, sx, sy);
    free(sx), free(sy);
    json_decref(x), json_decref(y);
}

/* mst merge: three --shard results (with spike counts, p = 0.75, masks keyed
 * by dataset position) combine into the file of one run over the shipped
 * samples, in any order, energy figures included; parts that overlap, leave
 * images out, come from another seed, or counted spikes where the others
 * did not are refused, each with its own line. */
Test(cli, merge_adds_shards_up_to_the_single_run, .timeout = 300)
{
    char cmd[4096], out[16384];
    const char *dir = tmp_path("merge");
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    cr_assert_eq(system(cmd), 0);
    const char *run = "eval --model " MST_WEIGHTS "/fmnist_p75.safetensors --data " MST_WEIGHTS
                      "/samples --timesteps 8 --mask-ratio 0.75 --report-steps 2,8";
    snprintf(cmd, sizeof cmd, "%s --stats --results-file %s/whole.json", run, dir);
    cr_assert_eq(mst(cmd, out, sizeof out), 0, "%s", out);
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd, "%s --stats --shard %d/3 --results-file %s/part%d.json", run, k, dir, k);
        cr_assert_eq(mst(cmd, out, sizeof out), 0, "%s", out);
    }
    snprintf(cmd, sizeof cmd, "%s --stats --seed 9 --shard 1/3 --results-file %s/seed9.json", run, dir);
    cr_assert_eq(mst(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s --shard 1/3 --results-file %s/nostats.json", run, dir);
    cr_assert_eq(mst(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "merge %s/merged.json %s/part2.json %s/part0.json %s/part1.json", dir, dir, dir, dir);
    cr_assert_eq(mst(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(contains(out, "3 parts merged"), "%s", out);
    char path[1024];
    snprintf(path, sizeof path, "%s/whole.json", dir);
    json_t *whole = load_json(path);
    snprintf(path, sizeof path, "%s/merged.json", dir);
    json_t *merged = load_json(path);
    cr_expect(json_object_get(merged, "energy") != NULL, "no energy figures in the merged file");
    expect_same_but_timing(whole, merged, "merged shards vs one run");
    json_decref(whole), json_decref(merged);
    static const struct {
        const char *parts, *says;
    } refused[] = {
        {"part0 part1 part1 part2", "overlap"},
        {"part0 part2", "images 33-65 are in no part"},
        {"part0 part1", "images 66-99 are in no part"},
        {"part0 seed9 part2", "differ in seed"},
        {"part0 nostats part2", "one counted spikes"},
        {"part0 missing", "missing.json"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char list[512] = "", name[64];
        const char *p = refused[i].parts;
        while (sscanf(p, "%63s", name) == 1) {
            snprintf(list + strlen(list), sizeof list - strlen(list), " %s/%s.json", dir, name);
            p = strstr(p, name) + strlen(name);
        }
        snprintf(cmd, sizeof cmd, "merge %s/out.json%s", dir, list);
        cr_expect_eq(mst(cmd, out, sizeof out), 2, "merge%s: %s", list, out);
        cr_expect(contains(out, refused[i].says) && lines(out) == 1, "merge%s: said \"%s\"", list, out);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

/* mpirun -n 1, 2 and 3 (oversubscribed on small machines) write the file
 * one process writes, equal in every field but the timing: over the shipped
 * samples with spike counts, and over a Fashion-MNIST IDX slice where the
 * test set is installed. A rank that fails stops the job, naming itself. */
Test(cli, mpi_ranks_write_the_single_run_file, .timeout = 300)
{
#ifndef MST_MPIEXEC
    cr_skip_test("mst was built without MPI (MST_MPI; Debian: libopenmpi-dev)");
#else
    char cmd[4096], out[16384], path[1024];
    const char *dir = tmp_path("mpi");
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    cr_assert_eq(system(cmd), 0);
    const char *sets[] = {"--data " MST_WEIGHTS "/samples --stats", "--data /usr/share/datasets/fashion-mnist --limit 50"};
    for (size_t s = 0; s < 2; s++) {
        if (s == 1 && access("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", R_OK) != 0) {
            cr_log_warn("no Fashion-MNIST test set installed: the IDX slice is not run");
            continue;
        }
        char run[1024];
        snprintf(run, sizeof run, "eval --model " MST_WEIGHTS "/fmnist_p75.safetensors %s --timesteps 8 --mask-ratio 0.75 "
                 "--report-steps 2,8", sets[s]);
        snprintf(cmd, sizeof cmd, "%s --results-file %s/one.json", run, dir);
        cr_assert_eq(mst(cmd, out, sizeof out), 0, "%s", out);
        snprintf(path, sizeof path, "%s/one.json", dir);
        json_t *one = load_json(path);
        for (int n = 1; n <= 3; n++) {
            snprintf(cmd, sizeof cmd, "%s --allow-run-as-root --oversubscribe -n %d %s %s --results-file %s/ranks.json 2>&1",
                     MST_MPIEXEC, n, MST_BIN, run, dir);
            FILE *p = popen(cmd, "r");
            size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
            out[got] = 0;
            cr_assert(p && pclose(p) == 0, "%s:\n%s", cmd, out);
            snprintf(path, sizeof path, "%s/ranks.json", dir);
            json_t *ranks = load_json(path);
            char what[64];
            snprintf(what, sizeof what, "set %zu, %d ranks vs one process", s, n);
            expect_same_but_timing(one, ranks, what);
            json_decref(ranks);
        }
        json_decref(one);
    }
    /* rank 1 cannot open its checkpoint: the job ends, saying which rank */
    snprintf(cmd, sizeof cmd,
             "timeout 120 %s --allow-run-as-root --oversubscribe -n 2 sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then "
             "m=%s/nonexistent.safetensors; else m=%s/fmnist_p75.safetensors; fi; exec %s eval --model $m --data "
             "%s/samples --timesteps 8' 2>&1",
             MST_MPIEXEC, dir, MST_WEIGHTS, MST_BIN, MST_WEIGHTS);
    FILE *p = popen(cmd, "r");
    size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[got] = 0;
    int status = p ? pclose(p) : -1;
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 124, "status %d:\n%s", status, out);
    cr_expect(contains(out, "rank 1 of 2: ") && contains(out, "nonexistent.safetensors"), "%s", out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
#endif
}
