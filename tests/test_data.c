/* Dataset readers: IDX files (gzip or not) against Fashion-MNIST's known
 * counts, and malformed IDX files. */
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include <math.h>

#include "helpers.h"
#include "host/data/dataset.h"
#include "host/data/idx.h"
#include "host/data/image.h"
#include "host/data/npy.h"
#include "host/data/transform.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static int have_fmnist(void) { return access(FMNIST "/t10k-labels-idx1-ubyte.gz", R_OK) == 0; }

Test(idx, fashion_mnist_test_set_counts)
{
    if (!have_fmnist()) cr_skip_test("Debian package dataset-fashion-mnist not installed");
    mst_idx img, lab;
    mst_error err = {0};
    cr_assert_eq(mst_idx_read(FMNIST "/t10k-images-idx3-ubyte.gz", &img, &err), MST_OK, "%s", err.msg);
    cr_assert_eq(mst_idx_read(FMNIST "/t10k-labels-idx1-ubyte.gz", &lab, &err), MST_OK, "%s", err.msg);
    cr_expect(img.ndim == 3 && img.dims[0] == 10000 && img.dims[1] == 28 && img.dims[2] == 28);
    cr_expect(lab.ndim == 1 && lab.dims[0] == 10000);
    long per_class[10] = {0}, bad = 0;
    for (long i = 0; i < lab.dims[0]; i++) lab.data[i] < 10 ? per_class[lab.data[i]]++ : bad++;
    cr_expect_eq(bad, 0);
    for (int c = 0; c < 10; c++) cr_expect_eq(per_class[c], 1000, "class %d has %ld test images", c, per_class[c]);
    mst_idx_free(&img);
    mst_idx_free(&lab);
}

static void write_idx(const char *path, const unsigned char *bytes, size_t n, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, bytes, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(bytes, 1, n, f);
        fclose(f);
    }
}

Test(idx, plain_and_gzip_files_and_their_errors)
{
    /* 2 x 3 unsigned bytes */
    unsigned char good[4 + 8 + 6] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
    struct {
        size_t n;
        unsigned char patch_at, patch;
        const char *expect;
    } cases[] = {
        {sizeof good, 0, 0, NULL},
        {sizeof good - 1, 0, 0, "truncated: the dimensions need 6 bytes, the file holds 5"},
        {sizeof good, 0, 1, "not an IDX file"},
        {sizeof good, 2, 0x0D, "only unsigned bytes"},
        {sizeof good, 3, 9, "IDX with 9 dimensions"},
        {6, 0, 0, "truncated IDX header"},
    };
    const char *p = tmp_path("x.idx");
    for (int gz = 0; gz < 2; gz++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            unsigned char b[sizeof good + 1];
            memcpy(b, good, sizeof good);
            b[cases[i].patch_at] = cases[i].patch_at || cases[i].patch ? cases[i].patch : b[0];
            write_idx(p, b, cases[i].n, gz);
            mst_idx a;
            mst_error err = {0};
            mst_status s = mst_idx_read(p, &a, &err);
            if (!cases[i].expect) {
                cr_assert_eq(s, MST_OK, "%s", err.msg);
                cr_expect(a.ndim == 2 && a.dims[0] == 2 && a.dims[1] == 3 && a.data[5] == 6);
                mst_idx_free(&a);
            } else {
                cr_expect_neq(s, MST_OK, "case %zu gz %d accepted", i, gz);
                cr_expect(contains(err.msg, cases[i].expect), "case %zu gz %d: %s", i, gz, err.msg);
            }
        }
    unsigned char longer[sizeof good + 1];
    memcpy(longer, good, sizeof good);
    write_idx(p, longer, sizeof longer, 0);
    mst_idx a;
    mst_error err = {0};
    cr_expect_eq(mst_idx_read(p, &a, &err), MST_ERR_FORMAT);
    cr_expect(contains(err.msg, "bytes after the 6"), "%s", err.msg);
    unlink(p);
}

/* The bilinear 28 -> 32 resize and normalisation against torch's
 * F.interpolate in tools/train.py (tests/data/fmnist16_input.npy). */
Test(transform, bilinear_matches_torch_on_fashion_mnist)
{
    if (!have_fmnist()) cr_skip_test("Debian package dataset-fashion-mnist not installed");
    mst_dataset d;
    mst_npy want;
    mst_error err = {0};
    cr_assert_eq(mst_dataset_open(FMNIST, &d, &err), MST_OK, "%s", err.msg);
    cr_assert_eq(mst_npy_read(DATA("fmnist16_input.npy"), &want, &err), MST_OK, "%s", err.msg);
    cr_assert(d.count == 10000 && d.height == 28 && d.channels == 1, "opened the test split");
    float mean = 0.2860f, std = 0.3530f, out[32 * 32];
    mst_transform tf = {.channels = 1, .size = 32, .mean = &mean, .std = &std};
    long exact = 0, total = 0;
    float worst = 0;
    for (int i = 0; i < 16; i++) {
        cr_assert_eq(mst_transform_apply(&tf, d.pixels + (long)i * 28 * 28, 28, 28, out, NULL), MST_OK);
        for (int k = 0; k < 32 * 32; k++, total++) {
            float diff = fabsf(out[k] - want.data[i * 32 * 32 + k]);
            worst = fmaxf(worst, diff);
            exact += diff == 0.0f;
        }
    }
    cr_log_info("transform: %ld of %ld values identical, worst difference %g", exact, total, worst);
    cr_expect(worst <= 1e-6f, "worst difference %g", worst);
    mst_npy_free(&want);
    mst_dataset_close(&d);
}

Test(dataset, labels_file_follows_the_images_file)
{
    if (!have_fmnist()) cr_skip_test("Debian package dataset-fashion-mnist not installed");
    mst_dataset d;
    mst_error err = {0};
    cr_assert_eq(mst_dataset_open(FMNIST "/train-images-idx3-ubyte.gz", &d, &err), MST_OK, "%s", err.msg);
    cr_expect(d.count == 60000 && d.width == 28);
    mst_dataset_close(&d);
    cr_expect_eq(mst_dataset_open("/nonexistent", &d, &err), MST_ERR_ARG);
    cr_expect(contains(err.msg, "cannot tell the labels file"), "%s", err.msg);
    const char *empty = tmp_path("empty-dir");
    mkdir(empty, 0755);
    cr_expect_eq(mst_dataset_open(empty, &d, &err), MST_ERR_FORMAT);
    cr_expect(contains(err.msg, "no class subfolders"), "%s", err.msg);
    rmdir(empty);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[4096];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
}

/* The devkit's flat layout: a ground-truth line per validation image, a
 * synset per ILSVRC2012_ID; label = the synset's rank in sorted order. */
typedef struct {
    const char *gt, *synsets;
    int labels[3];    /* of val_1, val_3, val_2 */
    const char *fail; /* or the error's text */
} devkit_case;

static const devkit_case devkit_cases[] = {
    {"3\n1\n2\n", "nB\nnA\nnC\n", {2, 0, 1}, NULL},
    {" 3 \r\n1\n2\n\n\n", "nB\r\n nA\nnC\n\n", {2, 0, 1}, NULL}, /* blanks around lines, at the end */
    {"3\n1\n", "nB\nnA\nnC\n", {0}, "no line 3"},
    {"3\n1\n4\n", "nB\nnA\nnC\n", {0}, "\"4\" is not an ILSVRC2012_ID in 1..3"},
    {"3\n1\nx2\n", "nB\nnA\nnC\n", {0}, "is not an ILSVRC2012_ID"},
    {"1\n1\n1\n", "nA\nnA\n", {0}, "synset nA is listed twice"},
    {"1\n1\n1\n", "\n\n", {0}, "no synsets"},
    {"1\n1\n1\n", "LONG", {0}, "line 1: longer than 4094 bytes"}, /* not two lines, every later one off by one */
};

Test(dataset, devkit_ground_truth_and_synsets)
{
    const char *gt = tmp_path("gt.txt"), *syn = tmp_path("syn.txt");
    char *long_line = malloc(5000);
    memset(long_line, 'n', 4999), long_line[4999] = 0;
    for (size_t c = 0; c < sizeof devkit_cases / sizeof devkit_cases[0]; c++) {
        const devkit_case *k = &devkit_cases[c];
        write_text(gt, k->gt);
        write_text(syn, strcmp(k->synsets, "LONG") ? k->synsets : long_line);
        char *files[] = {strdup("v/ILSVRC2012_val_00000001.JPEG"), strdup("ILSVRC2012_val_00000003.png"),
                         strdup("x7/ILSVRC2012_val_00000002.JPEG")};
        mst_dataset d = {.count = 3, .files = malloc(sizeof files), .labels = malloc(3 * sizeof(int))};
        memcpy(d.files, files, sizeof files);
        mst_error err = {0};
        mst_status r = mst_dataset_label_devkit(&d, gt, syn, &err);
        if (k->fail) {
            cr_expect(r != MST_OK && contains(err.msg, k->fail), "case %zu: %s", c, err.msg);
        } else {
            cr_expect(r == MST_OK, "case %zu: %s", c, err.msg);
            cr_expect(d.num_classes == 3 && !strcmp(d.classes[0], "nA"), "case %zu", c);
            for (int i = 0; r == MST_OK && i < 3; i++) cr_expect_eq(d.labels[i], k->labels[i], "case %zu image %d", c, i);
        }
        mst_dataset_close(&d);
    }
    free(long_line);
    unlink(gt), unlink(syn);
}

/* --labels: exactly one name per class, blank lines at the end ignored. */
Test(dataset, class_names_file)
{
    static const struct {
        const char *text;
        int K;
        const char *fail;
    } cases[] = {{"a\nb b\n c\n", 3, NULL}, {"a\nb b\n c\n\n\n", 3, NULL}, {"a\n\nc", 3, NULL},
                 {"a\nb\n", 3, "fewer lines; the model has 3 classes"}, {"a\nb\nc\nd\n", 3, "more lines"}, {"", 1, "fewer"}};
    const char *path = tmp_path("names.txt");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        write_text(path, cases[c].text);
        char **names = NULL;
        mst_error err = {0};
        mst_status r = mst_dataset_class_names(path, cases[c].K, &names, &err);
        if (cases[c].fail) {
            cr_expect(r != MST_OK && contains(err.msg, cases[c].fail) && !names, "case %zu: %s", c, err.msg);
            continue;
        }
        cr_assert(r == MST_OK, "case %zu: %s", c, err.msg);
        cr_expect(!strcmp(names[0], "a") && !strcmp(names[2], "c"), "case %zu", c);
        mst_dataset_free_names(names, cases[c].K);
    }
    unlink(path);
    cr_expect_eq(mst_dataset_class_names("/nonexistent", 3, &(char **){0}, &(mst_error){0}), MST_ERR_IO);
}

/* A folder per class: classes and files in sorted order, non-images ignored. */
Test(dataset, folder_per_class)
{
    const char *root = tmp_path("classes");
    char dir[600], path[700];
    const char *layout[][2] = {{"b_class", "rgb.png"}, {"a_class", "gray.jpg"}, {"a_class", "rgb.jpg"},
                               {"b_class", "corrupt.png"}, {"a_class", "rgb.png.npy"}};
    mkdir(root, 0755);
    for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++) {
        snprintf(dir, sizeof dir, "%s/%s", root, layout[i][0]);
        mkdir(dir, 0755);
        char from[600];
        snprintf(from, sizeof from, "%s/images/%s", MST_TEST_DATA, layout[i][1]);
        snprintf(path, sizeof path, "%s/%s", dir, layout[i][1]);
        copy_file(from, path);
    }
    mst_dataset d;
    mst_error err = {0};
    cr_assert_eq(mst_dataset_open(root, &d, &err), MST_OK, "%s", err.msg);
    cr_expect_eq(d.count, 4);
    cr_expect(d.num_classes == 2 && !strcmp(d.classes[0], "a_class") && !strcmp(d.classes[1], "b_class"));
    int want_label[4] = {0, 0, 1, 1};
    const char *want_file[4] = {"gray.jpg", "rgb.jpg", "corrupt.png", "rgb.png"};
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(d.labels[i], want_label[i], "image %d", i);
        cr_expect(contains(mst_dataset_file(&d, i), want_file[i]), "image %d is %s", i, mst_dataset_file(&d, i));
    }
    mst_image im;
    cr_expect_eq(mst_dataset_image(&d, 0, &im, &err), MST_OK, "%s", err.msg);
    cr_expect(im.channels == 1 && im.width == 17);
    cr_expect_eq(mst_image_to_channels(&im, 3, &err), MST_OK);
    cr_expect(im.channels == 3 && im.pixels[0] == im.pixels[1] && im.pixels[1] == im.pixels[2]);
    mst_image_free(&im);
    cr_expect_neq(mst_dataset_image(&d, 2, &im, &err), MST_OK);
    cr_expect(contains(err.msg, "corrupt.png: bad PNG"), "%s", err.msg);
    mst_dataset_close(&d);
    for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", root, layout[i][0], layout[i][1]);
        remove(path);
    }
    for (int c = 0; c < 2; c++) {
        snprintf(dir, sizeof dir, "%s/%s", root, c ? "b_class" : "a_class");
        rmdir(dir);
    }
    rmdir(root);
}

/* PNG and JPEG decoding against the pixels Pillow gives for the same files
 * (tests/data/images, written by tools/make_goldens.py). */
Test(image, decodes_like_pillow)
{
    static const struct {
        const char *file;
        int channels;
    } files[] = {{"gray.png", 1}, {"rgb.png", 3},  {"rgba.png", 3}, {"palette.png", 3},
                 {"gray.jpg", 1}, {"rgb.jpg", 3},  {"cmyk.jpg", 3}, {"extraneous.jpg", 3}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], npy[600];
        snprintf(path, sizeof path, "%s/images/%s", MST_TEST_DATA, files[i].file);
        snprintf(npy, sizeof npy, "%s.npy", path);
        mst_image im;
        mst_npy want;
        mst_error err = {0};
        cr_assert_eq(mst_image_read(path, &im, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_npy_read(npy, &want, &err), MST_OK, "%s", err.msg);
        cr_expect(im.height == want.shape[0] && im.width == want.shape[1] && im.channels == files[i].channels &&
                      want.shape[2] == files[i].channels,
                  "%s: %dx%dx%d", files[i].file, im.height, im.width, im.channels);
        long n = (long)im.height * im.width * im.channels, same = 0;
        int worst = 0;
        for (long k = 0; k < n && k < mst_npy_numel(&want); k++) {
            int d = abs((int)im.pixels[k] - (int)want.data[k]);
            worst = d > worst ? d : worst;
            same += d == 0;
        }
        cr_log_info("%s: %ld of %ld values identical to Pillow, worst %d", files[i].file, same, n, worst);
        cr_expect_eq(worst, 0, "%s: differs from Pillow by up to %d levels (%ld of %ld identical)", files[i].file,
                     worst, same, n);
        mst_image_free(&im);
        mst_npy_free(&want);
    }
}

Test(image, broken_files_are_named)
{
    static const struct {
        const char *file, *expect;
    } files[] = {{"truncated.jpg", "corrupt or truncated JPEG"},
                 {"corrupt.png", "bad PNG"},
                 {"empty.png", "empty or unreadable file"},
                 {"rgb.png.npy", "neither a PNG nor a JPEG file"},
                 {"missing.png", "cannot open"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/images/%s", MST_TEST_DATA, files[i].file);
        mst_image im;
        mst_error err = {0};
        cr_expect_neq(mst_image_read(path, &im, &err), MST_OK, "%s accepted", files[i].file);
        cr_expect(contains(err.msg, files[i].expect) && contains(err.msg, files[i].file), "%s: %s", files[i].file,
                  err.msg);
        cr_expect(im.pixels == NULL);
    }
}

/* Address space capped at what the process holds plus 768 MiB, so that a
 * reader that believed a hostile header would fail with "out of memory"
 * instead of the refusal the test expects. Not under ASan, whose shadow
 * memory needs the address space. */
static void cap_address_space(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld", &pages) != 1) pages = 0;
    if (f) fclose(f);
    struct rlimit rl = {.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (768ul << 20)};
    rl.rlim_max = RLIM_INFINITY;
    struct rlimit old;
    getrlimit(RLIMIT_AS, &old);
    rl.rlim_max = old.rlim_max;
    if (pages > 0) setrlimit(RLIMIT_AS, &rl);
#endif
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "%s", path);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void put_be(uint8_t *p, uint32_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static void expect_image_refused(const char *path, const char *what, const char *dims)
{
    mst_image im;
    mst_error err = {0};
    cr_expect_neq(mst_image_read(path, &im, &err), MST_OK, "%s accepted", what);
    cr_expect(contains(err.msg, dims) && contains(err.msg, "pixels, over the 134217728-pixel limit"), "%s: %s", what,
              err.msg);
}

/* Headers that claim more than the file holds are refused before anything
 * that size is allocated: a 65535 x 65535 PNG, a 65000 x 65000 JPEG, an IDX of 2^31 - 1
 * items over ten bytes of gzip. */
Test(image, hostile_sizes_are_refused_before_allocating)
{
    cap_address_space();
    size_t n;
    uint8_t *png = read_all(DATA("images/rgb.png"), &n);
    put_be(png + 16, 65535, 4); /* IHDR width, height, then its CRC over type + data */
    put_be(png + 20, 65535, 4);
    put_be(png + 29, (uint32_t)crc32(0, png + 12, 17), 4);
    const char *p = tmp_path("huge.png");
    write_all(p, png, n);
    expect_image_refused(p, "65535 x 65535 PNG", "65535 x 65535");
    remove(p);
    free(png);

    uint8_t *jpg = read_all(DATA("images/rgb.jpg"), &n);
    size_t sof = 2;
    while (sof + 9 < n && !(jpg[sof] == 0xFF && jpg[sof + 1] >= 0xC0 && jpg[sof + 1] <= 0xC2)) sof++;
    cr_assert(sof + 9 < n, "no SOF marker");
    put_be(jpg + sof + 5, 65000, 2); /* height, width (libjpeg's own limit is 65500) */
    put_be(jpg + sof + 7, 65000, 2);
    p = tmp_path("huge.jpg");
    write_all(p, jpg, n);
    expect_image_refused(p, "65000 x 65000 JPEG", "65000 x 65000");
    remove(p);
    free(jpg);

    p = tmp_path("huge.idx.gz");
    gzFile g = gzopen(p, "wb");
    uint8_t head[8] = {0, 0, 8, 1};
    put_be(head + 4, 0x7FFFFFFF, 4);
    gzwrite(g, head, 8);
    gzwrite(g, "0123456789", 10);
    gzclose(g);
    mst_idx x;
    mst_error err = {0};
    cr_expect_neq(mst_idx_read(p, &x, &err), MST_OK);
    cr_expect(contains(err.msg, "truncated: the dimensions need 2147483647 bytes, the file holds 10"), "%s", err.msg);
    remove(p);
}

/* The eval transform of timm/torchvision on PIL images (Pillow's antialiased
 * bilinear/bicubic in its fixed-point arithmetic, torchvision's size and crop
 * rules) against what Python computed (tools/make_goldens.py), on a real
 * photograph, gray and CMYK JPEGs made from it, and generated odd sizes. Must
 * be within one level everywhere and exact for at least 99 % of the values. */
Test(transform, pil_eval_transform_matches_torchvision)
{
    json_error_t je;
    json_t *cases = json_load_file(DATA("transforms/cases.json"), 0, &je);
    cr_assert(cases != NULL, "%s", je.text);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *file = json_string_value(json_object_get(c, "file"));
        char path[1024], golden[1024];
        snprintf(path, sizeof path, "%s%s", file[0] == '/' ? "" : DATA("transforms/"), file);
        snprintf(golden, sizeof golden, "%s%s", DATA("transforms/"), json_string_value(json_object_get(c, "golden")));
        if (access(path, R_OK) != 0) cr_skip_test("%s missing (Debian package python-matplotlib-data)", path);
        int C = (int)json_integer_value(json_object_get(c, "channels")), S = (int)json_integer_value(json_object_get(c, "size"));
        mst_transform tf = {.channels = C, .size = S, .kind = MST_RESIZE_PIL,
                            .crop_pct = json_real_value(json_object_get(c, "crop_pct")),
                            .filter = strcmp(json_string_value(json_object_get(c, "interpolation")), "bicubic")
                                          ? MST_FILTER_BILINEAR : MST_FILTER_BICUBIC};
        mst_image im, want;
        mst_error err = {0};
        cr_assert_eq(mst_image_read(path, &im, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_image_to_channels(&im, C, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_image_read(golden, &want, &err), MST_OK, "%s", err.msg);
        cr_assert_eq(mst_image_to_channels(&want, C, &err), MST_OK, "%s", err.msg);
        cr_assert(want.height == S && want.width == S, "%s: golden is %dx%d", golden, want.height, want.width);
        uint8_t *got = malloc((size_t)S * S * C);
        cr_assert_eq(mst_transform_pil_pixels(&tf, im.pixels, im.height, im.width, got, &err), MST_OK, "%s", err.msg);
        long n = (long)S * S * C, same = 0;
        int worst = 0;
        for (long k = 0; k < n; k++) {
            int d = abs((int)got[k] - (int)want.pixels[k]);
            same += d == 0;
            worst = d > worst ? d : worst;
        }
        cr_log_info("%s -> %d (crop %g): %ld of %ld values identical to Pillow + torchvision, worst %d", file, S,
                    tf.crop_pct, same, n, worst);
        cr_expect(worst <= 1, "%s: a value differs by %d levels", file, worst);
        cr_expect(same >= n * 99 / 100, "%s: only %ld of %ld values identical", file, same, n);
        free(got);
        mst_image_free(&im), mst_image_free(&want);
    }
    json_decref(cases);
}
