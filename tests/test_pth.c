/* torch.save checkpoints read in C: the zip container, the unpickler and the
 * state_dict they give, against what tools/convert_pth.py made of the same
 * files (tests/data/pth, written by tools/make_pth_fixtures.py). */
#define _GNU_SOURCE
#include <sys/stat.h>

#include "helpers.h"
#include "host/model/pickle.h"
#include "host/model/pth.h"
#include "host/model/zip.h"

#define PTH(name) DATA("pth/" name)

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static mst_model *load(const char *path, const char *dataset)
{
    mst_load_opts o = {.dataset = dataset};
    mst_model *m = NULL;
    mst_error err = {0};
    cr_assert_eq(mst_model_load(path, &o, &m, &err), MST_OK, "%s", err.msg);
    return m;
}

/* ---- the forms a .pth takes ---------------------------------------------- */

typedef struct {
    const char *pth, *dataset, *safetensors;
} form;

static const form forms[] = {
    {PTH("tiny_cifar10.pth"), NULL, PTH("tiny_cifar10.safetensors")}, /* bare state_dict; dataset from the name */
    {PTH("tiny_train_ckpt.pth"), "imagenet", PTH("tiny_train_ckpt.safetensors")}, /* optimizer, yacs config */
    {PTH("tiny_fp16.pth"), NULL, PTH("tiny_fp16.safetensors")},
    {PTH("tiny_views.pth"), "test", PTH("tiny_views.safetensors")}, /* transposed, sliced, shared storages */
    {PTH("tiny_dataparallel.pth"), NULL, PTH("tiny_dataparallel.safetensors")}, /* module. prefixes */
    {PTH("evil_unused.pth"), "cifar10", PTH("tiny_cifar10.safetensors")}, /* os.system beside the model, never read */
};

static void same_logits(mst_model *a, mst_model *b, mst_mode mode, double ratio, const char *what)
{
    mst_npy x;
    load_test_npy("pth/input", &x);
    mst_engine_opts o = {.mode = mode, .timesteps = 8, .mask_ratio = ratio, .seed = 3, .max_batch = 2};
    int sa, sb;
    float *la = engine_run_all(a, &x, o, &sa), *lb = engine_run_all(b, &x, o, &sb);
    cr_assert_eq(sa, sb);
    expect_identical(la, lb, (long)sa * x.shape[0] * mst_model_arch(a)->num_classes, what);
    free(la), free(lb);
    mst_npy_free(&x);
}

Test(pth, every_form_gives_the_converted_safetensors_logits_bit_for_bit)
{
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        mst_model *p = load(forms[i].pth, forms[i].dataset), *s = load(forms[i].safetensors, NULL);
        const mst_arch *ap = mst_model_arch(p), *as = mst_model_arch(s);
        cr_expect_str_eq(ap->dataset, as->dataset, "%s", forms[i].pth);
        cr_expect_eq(ap->num_params, as->num_params, "%s", forms[i].pth);
        cr_expect_eq(ap->crop_pct, as->crop_pct, "%s", forms[i].pth);
        same_logits(p, s, MST_MODE_SNN, 0.0, forms[i].pth);
        same_logits(p, s, MST_MODE_SNN, 0.75, forms[i].pth);
        same_logits(p, s, MST_MODE_ANN, 0.0, forms[i].pth);
        mst_model_free(p), mst_model_free(s);
    }
}

Test(pth, convert_writes_the_python_converters_bytes)
{
    for (size_t i = 0; i < 5; i++) {
        const char *out = tmp_path("converted.safetensors");
        mst_load_opts o = {.dataset = forms[i].dataset};
        mst_error err = {0};
        cr_assert_eq(mst_convert(forms[i].pth, out, &o, &err), MST_OK, "%s", err.msg);
        size_t na, nb;
        uint8_t *a = slurp(out, &na), *b = slurp(forms[i].safetensors, &nb);
        cr_expect(na == nb && !memcmp(a, b, na), "%s: mst convert differs from tools/convert_pth.py", forms[i].pth);
        free(a), free(b);
        remove(out);
    }
}

Test(pth, convert_refuses_what_it_could_not_run)
{
    mst_error err = {0};
    const char *out = tmp_path("never.safetensors");
    cr_expect_neq(mst_convert(PTH("tiny_cifar10.safetensors"), out, NULL, &err), MST_OK);
    cr_expect(contains(err.msg, "not a torch.save (.pth) checkpoint"), "%s", err.msg);
    cr_expect_neq(mst_convert(PTH("evil_os_system.pth"), out, NULL, &err), MST_OK);
    struct stat sb;
    cr_expect_neq(stat(out, &sb), 0, "a refused conversion left %s", out);
}

Test(pth, dataset_from_the_flag_the_file_name_or_none)
{
    mst_model *m = load(PTH("tiny_cifar10.pth"), NULL);
    cr_expect_str_eq(mst_model_arch(m)->dataset, "cifar10");
    cr_expect_str_eq(mst_model_class_name(m, 3), "cat");
    mst_model_free(m);
    m = load(PTH("tiny_cifar10.pth"), "imagenet");
    cr_expect_str_eq(mst_model_arch(m)->dataset, "imagenet");
    cr_expect_eq(mst_model_arch(m)->crop_pct, 0.875);
    cr_expect_null(mst_model_class_name(m, 3));
    mst_model_free(m);
    m = load(PTH("tiny_fp16.pth"), NULL);
    cr_expect_str_eq(mst_model_arch(m)->dataset, "");
    cr_expect_null(mst_model_arch(m)->mean);
    mst_model_free(m);
    mst_load_opts o = {.dataset = "imagenet"};
    mst_error err = {0};
    cr_expect_neq(mst_model_load(PTH("tiny_cifar10.safetensors"), &o, &m, &err), MST_OK);
    cr_expect(contains(err.msg, "--dataset is for .pth checkpoints"), "%s", err.msg);
}

/* t[i][j] = 2 + i + 3 j, h read with strides (1, 2), a 0-d tensor. */
static void check_strided_views(const char *file)
{
    mst_safetensors st;
    mst_error err = {0};
    cr_assert_eq(mst_pth_open(file, &st, &err), MST_OK, "%s", err.msg);
    float *t = NULL, *h = NULL, *scalar = NULL;
    int64_t t_shape[] = {3, 4}, h_shape[] = {2, 2};
    cr_assert_eq(mst_st_read_f32(&st, "t", 2, t_shape, &t, &err), MST_OK, "%s", err.msg);
    cr_assert_eq(mst_st_read_f32(&st, "h", 2, h_shape, &h, &err), MST_OK, "%s", err.msg);
    cr_assert_eq(mst_st_read_f32(&st, "scalar", 0, NULL, &scalar, &err), MST_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) cr_expect_eq(t[i * 4 + j], (float)(2 + i + 3 * j), "%s: t[%d][%d]", file, i, j);
    const float want_h[] = {0, 2, 1, 3};
    for (int i = 0; i < 4; i++) cr_expect_eq(h[i], want_h[i], "%s: h[%d]", file, i);
    cr_expect_eq(scalar[0], 5.0f);
    cr_expect_str_eq(mst_st_find(&st, "h")->dtype, "F16");
    free(t), free(h), free(scalar);
    mst_st_close(&st);
}

/* The same file as Python's zipfile writes it, and with every size and
 * offset in zip64 extra fields, as torch writes entries over 4 GiB. */
Test(pth, strided_views_are_copied_row_major)
{
    check_strided_views(PTH("strided_views.pth"));
    check_strided_views(PTH("zip64_strided_views.pth"));
}

/* ---- hostile and broken files -------------------------------------------- */

typedef struct {
    const char *file, *expect;
} hostile;

static const hostile hostiles[] = {
    {"evil_os_system.pth", "\"head.bias\" is an opaque value built by posix.system, which mst does not run"},
    {"evil_eval.pth", "\"head.bias\" is an opaque value built by __builtin__.eval"},
    {"evil_reduce_class.pth", "\"head.bias\" is an opaque value built by payload.Gadget"},
    {"evil_root.pth", "data.pkl holds an opaque value built by posix.system"},
    {"bad_dotdot.pth", "entry \"archive/../../../tmp/mst-pwned\" climbs out of the archive"},
    {"bad_overlap.pth", "zip entry \"archive/data.pkl\" overlaps the next entry"},
    {"bad_cd_smaller.pth", "the data descriptor disagrees with the central directory's size or CRC"},
    {"bad_cd_larger.pth", "run past the end of the file"},
    {"bad_deflated.pth", "is compressed (method 8)"},
    {"bad_big_endian.pth", "a big-endian checkpoint"},
    {"bad_offset.pth", "tensor reaches past the end of its storage 0"},
    {"bad_stride.pth", "tensor reaches past the end of its storage 0"},
    {"bad_size_overflow.pth", "has a size or stride that overflows"},
    {"bad_expanded.pth", "more than its storage's 16 (an expanded view)"},
    {"bad_storage_size.pth", "storage \"0\" of 64 F32 elements needs 256 bytes, its entry holds 64"},
    {"bad_storage_missing.pth", "storage \"7\" has no entry archive/data/7"},
    {"bad_storage_type.pth", "stored as torch.ComplexFloatStorage, which mst does not read"},
    {"bad_memo.pth", "memo index out of range (opcode at byte 2)"},
    {"bad_stack.pth", "stack underflow (opcode at byte 2)"},
    {"bad_opcode.pth", "opcode 0xff is not one torch.save writes"},
    {"bad_no_stop.pth", "stream ends before STOP"},
    {"bad_not_dict.pth", "data.pkl holds a list, not a state_dict"},
    {"legacy_format.pth", "the legacy format (torch < 1.6)"},
    {"bad_repeated_views.pth", "more than twice the file's"},
};

Test(pth, hostile_files_are_refused_with_their_own_line)
{
    const char *canary = "/tmp/mst-pwned";
    remove(canary);
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/pth/%s", MST_TEST_DATA, hostiles[i].file);
        mst_model *m = NULL;
        mst_error err = {0};
        cr_expect_neq(mst_model_load(path, NULL, &m, &err), MST_OK, "%s loaded", hostiles[i].file);
        cr_expect(contains(err.msg, hostiles[i].expect) && contains(err.msg, hostiles[i].file), "%s: \"%s\" lacks \"%s\"",
                  hostiles[i].file, err.msg, hostiles[i].expect);
        cr_expect(!strchr(err.msg, '\n'), "%s: not one line", hostiles[i].file);
    }
    struct stat sb;
    cr_expect_neq(stat(canary, &sb), 0, "something ran a payload");
}

Test(pth, truncated_at_every_sixteenth_is_refused)
{
    const char *files[] = {PTH("tiny_cifar10.pth"), PTH("tiny_train_ckpt.pth")};
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *b = slurp(files[f], &n);
        for (int k = 0; k < 16; k++) {
            const char *path = tmp_path("truncated.pth");
            spit(path, b, n * (size_t)k / 16);
            mst_model *m = NULL;
            mst_error err = {0};
            cr_expect_neq(mst_model_load(path, NULL, &m, &err), MST_OK, "%s cut at %d/16 loaded", files[f], k);
            cr_expect(contains(err.msg, path), "%s cut at %d/16: %s", files[f], k, err.msg);
            remove(path);
        }
        free(b);
    }
}

/* Storages are checked when a state_dict tensor reads them: a flipped byte
 * in the model's first storage is refused, one in the optimizer's last is
 * never read. */
Test(pth, crc_checked_on_the_storages_the_model_reads)
{
    size_t n;
    uint8_t *b = slurp(PTH("tiny_train_ckpt.pth"), &n);
    mst_zip z;
    mst_error err = {0};
    cr_assert_eq(mst_zip_open(b, n, "f", &z, &err), MST_OK, "%s", err.msg);
    const mst_zip_entry *first = NULL, *last = NULL;
    long last_key = -1;
    for (int i = 0; i < z.num_entries; i++) {
        const char *slash = strstr(z.entries[i].name, "/data/");
        if (!slash) continue;
        long key = strtol(slash + 6, NULL, 10);
        if (key == 0) first = &z.entries[i];
        if (key > last_key) last_key = key, last = &z.entries[i];
    }
    cr_assert(first && last && first != last);
    size_t at_first = (size_t)(first->data - b), at_last = (size_t)(last->data - b);
    mst_zip_close(&z);
    const char *path = tmp_path("flipped.pth");
    mst_model *m = NULL;
    b[at_last] ^= 1;
    spit(path, b, n);
    cr_expect_eq(mst_model_load(path, NULL, &m, &err), MST_OK, "optimizer storage: %s", err.msg);
    mst_model_free(m);
    b[at_first] ^= 1;
    spit(path, b, n);
    cr_expect_neq(mst_model_load(path, NULL, &m, &err), MST_OK);
    cr_expect(contains(err.msg, "CRC-32"), "%s", err.msg);
    remove(path);
    free(b);
}

/* ---- the zip reader -------------------------------------------------------- */

static size_t find_last(const uint8_t *b, size_t n, const char *sig)
{
    for (size_t i = n - 4 + 1; i-- > 0;)
        if (!memcmp(b + i, sig, 4)) return i;
    cr_assert_fail("no %02x%02x signature", sig[2], sig[3]);
    return 0;
}

typedef struct {
    const char *file, *what;
    const char *sig;   /* the record, found from the end */
    int at, at2, xor_; /* bytes from its start (at2 < 0: one), and the flip */
    const char *expect;
} zip_case;

#define END "PK\x05\x06"
#define END64 "PK\x06\x06"
#define CENTRAL "PK\x01\x02"

/* torch's own file (zip64 records, data descriptors) and one written by
 * Python's zipfile (neither) */
#define TORCH PTH("tiny_cifar10.pth")
#define PYZIP PTH("bad_offset.pth")

static const zip_case zip_cases[] = {
    {TORCH, "end record signature", END, 0, -1, 0xff, "no end of central directory record"},
    {TORCH, "disk number", END, 4, -1, 0x01, "multi-disk"},
    {TORCH, "end record's directory offset", END, 19, -1, 0x01, "the end record and the zip64 end record disagree"},
    {TORCH, "zip64 entry count", END64, 24, 32, 0x70, "the end record and the zip64 end record disagree"},
    {TORCH, "zip64 locator", "PK\x06\x07", 8, -1, 0x01, "zip64 locator points to no zip64 end record"},
    {PYZIP, "entry count", END, 8, 10, 0x70, "entry count does not fit"},
    {PYZIP, "directory offset", END, 19, -1, 0x40, "central directory lies outside the file"},
    {PYZIP, "local header CRC", CENTRAL, 16, -1, 0x01, "local header sizes or CRC disagree"},
    {TORCH, "central method", CENTRAL, 10, -1, 0x08, "is compressed"},
    {TORCH, "central flags: encrypted", CENTRAL, 8, -1, 0x01, "is encrypted"},
    {TORCH, "central CRC", CENTRAL, 16, -1, 0x01, "the data descriptor disagrees"},
    {TORCH, "local header offset", CENTRAL, 42, -1, 0x01, "no local header"},
    {TORCH, "name with ..", CENTRAL, 46, -1, 0x00, "climbs out of the archive"},
};

Test(zip, every_lie_in_the_directory_has_its_line)
{
    for (size_t i = 0; i < sizeof zip_cases / sizeof zip_cases[0]; i++) {
        const zip_case *c = &zip_cases[i];
        size_t n;
        uint8_t *b = slurp(c->file, &n);
        size_t at = find_last(b, n, c->sig);
        b[at + (size_t)c->at] ^= (uint8_t)c->xor_;
        if (c->at2 >= 0) b[at + (size_t)c->at2] ^= (uint8_t)c->xor_;
        if (!c->xor_) memcpy(b + at + (size_t)c->at, "../", 3);
        mst_zip z;
        mst_error err = {0};
        cr_expect_neq(mst_zip_open(b, n, "f.pth", &z, &err), MST_OK, "%s", c->what);
        cr_expect(contains(err.msg, c->expect), "%s: \"%s\" lacks \"%s\"", c->what, err.msg, c->expect);
        free(b);
    }
    size_t n;
    uint8_t *good = slurp(TORCH, &n);
    mst_zip z;
    mst_error err = {0};
    good[n / 2] ^= 1; /* a data byte: only the CRC can tell, when the entry is read */
    cr_assert_eq(mst_zip_open(good, n, "f.pth", &z, &err), MST_OK, "%s", err.msg);
    int bad = 0;
    for (int i = 0; i < z.num_entries; i++)
        if (mst_zip_verify(&z.entries[i], "f.pth", &err) != MST_OK) {
            bad++;
            cr_expect(contains(err.msg, "CRC-32"), "%s", err.msg);
        }
    cr_expect_eq(bad, 1, "%d entries fail their CRC", bad);
    mst_zip_close(&z);
    free(good);
}

/* Every byte of the directory and end records flipped: refused or read, never a crash. */
Test(zip, any_directory_byte_flipped_is_survived)
{
    size_t n;
    uint8_t *b = slurp(PTH("tiny_train_ckpt.pth"), &n);
    size_t from = find_last(b, n, "PK\x01\x02");
    while (from > 0 && memcmp(b + from - 1, "PK\x01\x02", 4)) from--; /* back into the directory */
    for (size_t at = from > 512 ? from - 512 : 0; at < n; at++)
        for (int bit = 1; bit < 256; bit <<= 3) {
            b[at] ^= (uint8_t)bit;
            mst_zip z;
            mst_error err = {0};
            if (mst_zip_open(b, n, "f.pth", &z, &err) == MST_OK)
                mst_zip_close(&z);
            else
                cr_expect(err.msg[0] != 0);
            b[at] ^= (uint8_t)bit;
        }
    free(b);
}

/* ---- the unpickler ---------------------------------------------------------- */

typedef struct {
    const char *what;
    const char *bytes;
    size_t len;
    const char *expect; /* NULL: loads */
} pickle_case;

#define P(s) s, sizeof(s) - 1

static const pickle_case pickle_cases[] = {
    {"empty dict", P("\x80\x02}q\x00."), NULL},
    {"protocol 4 frame, memoize, stack global", P("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x01" "a\x94\x8c\x01" "b\x94\x93\x94."), NULL},
    {"self-referencing list", P("\x80\x02]q\x00h\x00" "a."), NULL},
    {"set and frozenset", P("\x80\x02\x8f(K\x01K\x02\x90(K\x03\x91\x86."), NULL},
    {"memo out of range", P("\x80\x02h\x03."), "memo index out of range"},
    {"memo skipping ahead", P("\x80\x02Nr\x00\x00\x00\x10."), "memo index skips ahead"},
    {"tuple without a mark", P("\x80\x02K\x01t."), "no MARK to pop to"},
    {"reduce on an empty stack", P("\x80\x02R."), "stack underflow"},
    {"string longer than the stream", P("\x80\x02X\xff\xff\xff\x7f"), "stream ends inside an opcode's argument"},
    {"bytes longer than the stream", P("\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xff"), "stream ends inside"},
    {"global without newline", P("\x80\x02" "cposix\nsystem"), "stream ends inside"},
    {"odd dict", P("\x80\x02(K\x01" "d."), "DICT with an odd number of items"},
    {"append to a dict", P("\x80\x02}K\x01" "a."), "APPEND on a value of the wrong kind"},
    {"setitem on a list", P("\x80\x02]K\x01K\x02s."), "SETITEM on a value that is not a dict"},
    {"text protocol", P("I1\n."), "opcode INT (protocol 0) is not one torch.save writes"},
    {"extension registry", P("\x80\x02\x82\x01."), "opcode EXT1"},
    {"out-of-band buffer", P("\x80\x05\x97."), "opcode NEXT_BUFFER"},
    {"values left behind", P("\x80\x02K\x01K\x02."), "STOP with values left on the stack"},
    {"persistent id not a storage", P("\x80\x02K\x01Q."), "persistent id is not a torch storage record"},
    {"rebuild of a non-tensor", P("\x80\x02" "ctorch._utils\n_rebuild_parameter\nK\x01\x85R."), "of something that is not a tensor"},
    {"rebuild_tensor_v2 bad args", P("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\nK\x01\x85R."), "with arguments that are not"},
    {"empty stream", P(""), "stream ends before STOP"},
};

Test(pickle, every_malformed_stream_has_its_line)
{
    for (size_t i = 0; i < sizeof pickle_cases / sizeof pickle_cases[0]; i++) {
        const pickle_case *c = &pickle_cases[i];
        mst_pickle *pk = NULL;
        const mst_pk_value *root = NULL;
        mst_error err = {0};
        mst_status s = mst_pickle_load((const uint8_t *)c->bytes, c->len, "t.pkl", &pk, &root, &err);
        if (!c->expect) {
            cr_expect_eq(s, MST_OK, "%s: %s", c->what, err.msg);
            cr_expect_not_null(root, "%s", c->what);
        } else {
            cr_expect_neq(s, MST_OK, "%s loaded", c->what);
            cr_expect(contains(err.msg, c->expect), "%s: \"%s\" lacks \"%s\"", c->what, err.msg, c->expect);
        }
        mst_pickle_free(pk);
    }
}

Test(pickle, values_are_built_and_calls_are_not_made)
{
    /* {'a': [1, -2, 2**63-1, 1.5], 'b': posix.system('x'), 'c': OrderedDict()} */
    static const char s[] = "\x80\x02}q\x00(X\x01\x00\x00\x00" "a]q\x01(K\x01J\xfe\xff\xff\xff\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f"
                            "G?\xf8\x00\x00\x00\x00\x00\x00" "eX\x01\x00\x00\x00" "bcposix\nsystem\nX\x01\x00\x00\x00x\x85R"
                            "X\x01\x00\x00\x00" "cccollections\nOrderedDict\n)Ru.";
    mst_pickle *pk = NULL;
    const mst_pk_value *root = NULL;
    mst_error err = {0};
    cr_assert_eq(mst_pickle_load((const uint8_t *)s, sizeof s - 1, "t.pkl", &pk, &root, &err), MST_OK, "%s",
                 err.msg);
    const mst_pk_value *a = mst_pk_dict_get(root, "a"), *b = mst_pk_dict_get(root, "b"), *c = mst_pk_dict_get(root, "c");
    cr_assert(a && a->kind == MST_PK_LIST && a->n == 4);
    cr_expect_eq(a->items[0]->i, 1);
    cr_expect_eq(a->items[1]->i, -2);
    cr_expect_eq(a->items[2]->i, INT64_MAX);
    cr_expect_eq(a->items[3]->f, 1.5);
    cr_assert(b && b->kind == MST_PK_OPAQUE);
    cr_expect_str_eq(b->s, "posix.system");
    cr_assert(c && c->kind == MST_PK_DICT && c->n == 0);
    mst_pickle_free(pk);
}
