/* The pickle virtual machine (CPython's Lib/pickle.py, _Unpickler), minus
 * every call: REDUCE, NEWOBJ, INST, OBJ and BUILD build values or opaque
 * stand-ins, and nothing found in the stream is ever looked up or run. */
#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "safetensors.h"

/* Every value and array comes from one arena, freed at once: the value
 * graph may be cyclic (a list memoized, then appended to itself). Its size is
 * bounded, so a small hostile stream cannot ask for unbounded memory. */
#define ARENA_CHUNK ((size_t)1 << 20)
#define ARENA_LIMIT ((size_t)1 << 30)

typedef struct chunk {
    struct chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} chunk;

struct mst_pickle {
    chunk *chunks;
    size_t total;
};

typedef struct {
    mst_pickle *pk;
    const uint8_t *buf;
    size_t size, at, op_at; /* op_at: the current opcode's byte, for errors */
    const char *what;
    mst_error *err;
    mst_pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t num_marks, marks_cap;
    mst_pk_value **memo;
    size_t memo_len, memo_cap;
    mst_pk_value *result;
} vm;

static void *arena(vm *m, size_t n)
{
    mst_pickle *pk = m->pk;
    n = (n + 15) & ~(size_t)15;
    if (n > ARENA_LIMIT || pk->total + n > ARENA_LIMIT) return NULL;
    chunk *c = pk->chunks;
    if (!c || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        if (!(c = malloc(sizeof(chunk) + size))) return NULL;
        *c = (chunk){.next = pk->chunks, .size = size};
        pk->chunks = c;
        pk->total += size;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

static mst_status fail(vm *m, const char *fmt, const char *arg)
{
    char what[256];
    snprintf(what, sizeof what, fmt, arg);
    return mst_fail(m->err, MST_ERR_FORMAT, "%s: pickle: %s (opcode at byte %zu)", m->what, what, m->op_at);
}

static mst_status nomem(vm *m)
{
    return mst_fail(m->err, MST_ERR_NOMEM, "%s: pickle needs more than %zu MiB to unpickle", m->what, ARENA_LIMIT >> 20);
}

/* Doubles *cap until n items of `size` fit, copying into the arena. */
static int grow(vm *m, void **arr, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap) return 1;
    size_t c = *cap ? *cap : 8;
    while (c < n) c *= 2;
    if (c > ARENA_LIMIT / size) return 0;
    void *p = arena(m, c * size);
    if (!p) return 0;
    if (*cap) memcpy(p, *arr, *cap * size);
    *arr = p, *cap = c;
    return 1;
}

static mst_pk_value *value(vm *m, mst_pk_kind kind)
{
    mst_pk_value *v = arena(m, sizeof *v);
    if (v) v->kind = kind;
    return v;
}

static int add_item(vm *m, mst_pk_value *c, mst_pk_value *item)
{
    if (!grow(m, (void **)&c->items, &c->cap, c->n + 1, sizeof *c->items)) return 0;
    c->items[c->n++] = item;
    return 1;
}

/* ---- reading the stream ------------------------------------------------ */

static int take(vm *m, size_t n, const uint8_t **p)
{
    if (n > m->size - m->at) return 0;
    *p = m->buf + m->at;
    m->at += n;
    return 1;
}

static int take_uint(vm *m, int bytes, uint64_t *v)
{
    const uint8_t *p;
    if (!take(m, (size_t)bytes, &p)) return 0;
    *v = 0;
    for (int i = bytes - 1; i >= 0; i--) *v = *v << 8 | p[i];
    return 1;
}

static mst_status truncated(vm *m) { return fail(m, "stream ends inside an opcode's argument%s", ""); }

/* ---- the stack, marks and memo ------------------------------------------ */

static size_t floor_sp(const vm *m) { return m->num_marks ? m->marks[m->num_marks - 1] : 0; }

static mst_status push(vm *m, mst_pk_value *v)
{
    if (!v) return nomem(m);
    if (!grow(m, (void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack)) return nomem(m);
    m->stack[m->sp++] = v;
    return MST_OK;
}

static mst_status pop(vm *m, mst_pk_value **v)
{
    if (m->sp <= floor_sp(m)) return fail(m, "stack underflow%s", "");
    *v = m->stack[--m->sp];
    return MST_OK;
}

static mst_status top(vm *m, mst_pk_value **v)
{
    if (m->sp <= floor_sp(m)) return fail(m, "stack underflow%s", "");
    *v = m->stack[m->sp - 1];
    return MST_OK;
}

static mst_status mark(vm *m)
{
    if (!grow(m, (void **)&m->marks, &m->marks_cap, m->num_marks + 1, sizeof *m->marks)) return nomem(m);
    m->marks[m->num_marks++] = m->sp;
    return MST_OK;
}

/* The items since the last mark: *items, *n; the mark is removed. */
static mst_status pop_mark(vm *m, mst_pk_value ***items, size_t *n)
{
    if (!m->num_marks) return fail(m, "no MARK to pop to%s", "");
    size_t at = m->marks[--m->num_marks];
    *items = m->stack ? m->stack + at : NULL; /* a mark on a stack never pushed to */
    *n = m->sp - at;
    m->sp = at;
    return MST_OK;
}

static mst_status memo_put(vm *m, uint64_t idx)
{
    mst_pk_value *v = NULL;
    mst_status s = top(m, &v);
    if (s != MST_OK) return s;
    /* Python's pickler numbers memo entries 0, 1, 2, ...: an index that
     * skips ahead would only serve to make us allocate. */
    if (idx > m->memo_len) return fail(m, "memo index skips ahead of the entries so far%s", "");
    if (idx == m->memo_len) {
        if (!grow(m, (void **)&m->memo, &m->memo_cap, m->memo_len + 1, sizeof *m->memo)) return nomem(m);
        m->memo_len++;
    }
    m->memo[idx] = v;
    return MST_OK;
}

static mst_status memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_len) return fail(m, "memo index out of range%s", "");
    return push(m, m->memo[idx]);
}

/* ---- values -------------------------------------------------------------- */

static mst_pk_value *string(vm *m, mst_pk_kind kind, const uint8_t *p, size_t n)
{
    mst_pk_value *v = value(m, kind);
    char *s = v ? arena(m, n + 1) : NULL;
    if (!s) return NULL;
    memcpy(s, p, n);
    v->s = s, v->len = n;
    return v;
}

static mst_pk_value *integer(vm *m, int64_t i)
{
    mst_pk_value *v = value(m, MST_PK_INT);
    if (v) v->i = i;
    return v;
}

static mst_pk_value *sequence(vm *m, mst_pk_kind kind, mst_pk_value **items, size_t n)
{
    mst_pk_value *v = value(m, kind);
    if (!v || (n && !grow(m, (void **)&v->items, &v->cap, n, sizeof *v->items))) return NULL;
    if (n) memcpy(v->items, items, n * sizeof *items);
    v->n = n;
    return v;
}

static mst_pk_value *global(vm *m, const uint8_t *mod, size_t nm, const uint8_t *name, size_t nn)
{
    mst_pk_value *v = value(m, MST_PK_GLOBAL);
    char *s = v ? arena(m, nm + nn + 2) : NULL;
    if (!s) return NULL;
    memcpy(s, mod, nm);
    s[nm] = '.';
    memcpy(s + nm + 1, name, nn);
    v->s = s, v->len = nm + nn + 1;
    return v;
}

static mst_pk_value *opaque(vm *m, const mst_pk_value *callable)
{
    mst_pk_value *v = value(m, MST_PK_OPAQUE);
    if (v) v->s = callable->kind == MST_PK_GLOBAL || callable->kind == MST_PK_OPAQUE ? callable->s : "a non-global callable";
    return v;
}

static int is_str(const mst_pk_value *v, const char *s)
{
    return v->kind == MST_PK_STR && v->len == strlen(s) && !memcmp(v->s, s, v->len);
}

static int is_global(const mst_pk_value *v, const char *name)
{
    return v->kind == MST_PK_GLOBAL && !strcmp(v->s, name);
}

/* ---- the torch globals a checkpoint needs ---------------------------------- */

/* torch's storage types and the safetensors dtype of their elements */
static const struct {
    const char *global, *dtype;
} storage_types[] = {
    {"torch.FloatStorage", "F32"}, {"torch.HalfStorage", "F16"}, {"torch.BFloat16Storage", "BF16"},
    {"torch.DoubleStorage", "F64"}, {"torch.LongStorage", "I64"}, {"torch.IntStorage", "I32"},
    {"torch.ShortStorage", "I16"}, {"torch.CharStorage", "I8"},  {"torch.ByteStorage", "U8"},
    {"torch.BoolStorage", "BOOL"},
};

/* BINPERSID of torch.save: ('storage', <StorageType>, key, location, numel).
 * Its bytes are left to the reader to resolve, for the tensors it uses. A
 * storage type not in the table is kept, without a dtype: only a tensor that
 * a reader needs from it is refused. */
static mst_status torch_storage(vm *m, const mst_pk_value *pid, mst_pk_value **out)
{
    if (pid->kind != MST_PK_TUPLE || pid->n != 5 || !is_str(pid->items[0], "storage") ||
        pid->items[1]->kind != MST_PK_GLOBAL || pid->items[2]->kind != MST_PK_STR || pid->items[4]->kind != MST_PK_INT)
        return fail(m, "persistent id is not a torch storage record ('storage', type, key, location, numel)%s", "");
    mst_pk_value *v = value(m, MST_PK_STORAGE);
    mst_pk_storage *st = v ? arena(m, sizeof *st) : NULL;
    if (!st) return nomem(m);
    v->storage = st;
    st->type_name = pid->items[1]->s;
    st->key = pid->items[2]->s;
    st->numel = pid->items[4]->i;
    if (st->numel < 0 || st->numel > ((int64_t)1 << 56)) return fail(m, "storage %s has a negative or absurd size", st->key);
    for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++)
        if (is_global(pid->items[1], storage_types[i].global)) {
            snprintf(st->dtype, sizeof st->dtype, "%s", storage_types[i].dtype);
            st->elem_size = mst_st_dtype_size(storage_types[i].dtype);
        }
    *out = v;
    return MST_OK;
}

static int int_tuple(const mst_pk_value *t, int64_t *out, int *n)
{
    if (t->kind != MST_PK_TUPLE || t->n > MST_PK_MAX_DIMS) return 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->kind != MST_PK_INT || t->items[i]->i < 0) return 0;
        out[i] = t->items[i]->i;
    }
    *n = (int)t->n;
    return 1;
}

/* The tensor's last element must lie inside its storage; sizes and strides
 * are bounded so that no product below overflows. */
static mst_status tensor_bounds(vm *m, const mst_pk_tensor *t, int nstride)
{
    const mst_pk_storage *st = t->storage->storage;
    if (nstride != t->ndim) return fail(m, "tensor of storage %s has sizes and strides of different ranks", st->key);
    int64_t numel = 1, last = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (t->size[i] > ((int64_t)1 << 40) || t->stride[i] > ((int64_t)1 << 40) ||
            (t->size[i] && numel > ((int64_t)1 << 56) / t->size[i]))
            return fail(m, "tensor of storage %s has a size or stride that overflows", st->key);
        numel *= t->size[i];
        if (t->size[i]) last += (t->size[i] - 1) * t->stride[i];
        if (last > ((int64_t)1 << 56)) return fail(m, "tensor of storage %s has a size or stride that overflows", st->key);
    }
    if (t->offset > ((int64_t)1 << 56) || (numel && last >= st->numel))
        return fail(m, "tensor reaches past the end of its storage %s (offset or stride out of range)", st->key);
    return MST_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]) */
static mst_status rebuild_tensor(vm *m, const mst_pk_value *args, mst_pk_value **out)
{
    int nstride = 0;
    mst_pk_value *v = value(m, MST_PK_TENSOR);
    mst_pk_tensor *t = v ? arena(m, sizeof *t) : NULL;
    if (!t) return nomem(m);
    v->tensor = t;
    if (args->kind != MST_PK_TUPLE || args->n < 4 || args->items[0]->kind != MST_PK_STORAGE ||
        args->items[1]->kind != MST_PK_INT || args->items[1]->i < 0 || !int_tuple(args->items[2], t->size, &t->ndim) ||
        !int_tuple(args->items[3], t->stride, &nstride))
        return fail(m, "torch._utils._rebuild_tensor_v2 with arguments that are not (storage, offset, sizes, strides, ...)%s", "");
    t->storage = args->items[0];
    t->offset = args->items[1]->i;
    *out = v;
    return tensor_bounds(m, t, nstride);
}

/* REDUCE: the globals a state_dict is made of build values; any other
 * callable builds an opaque value named after it, and is never called. */
static mst_status torch_call(vm *m, mst_pk_value *f, mst_pk_value *args, mst_pk_value **out)
{
    if (is_global(f, "collections.OrderedDict") && args->kind == MST_PK_TUPLE && args->n == 0) {
        *out = value(m, MST_PK_DICT);
        return *out ? MST_OK : nomem(m);
    }
    if (is_global(f, "torch._utils._rebuild_tensor_v2")) return rebuild_tensor(m, args, out);
    if (is_global(f, "torch._utils._rebuild_parameter") || is_global(f, "torch._utils._rebuild_parameter_with_state")) {
        if (args->kind != MST_PK_TUPLE || args->n < 1 || args->items[0]->kind != MST_PK_TENSOR)
            return fail(m, "%s of something that is not a tensor", f->s);
        *out = args->items[0];
        return MST_OK;
    }
    *out = opaque(m, f);
    return *out ? MST_OK : nomem(m);
}

/* ---- opcodes --------------------------------------------------------------- */

static mst_status op_string(vm *m, mst_pk_kind kind, int len_bytes)
{
    uint64_t n;
    const uint8_t *p;
    if (!take_uint(m, len_bytes, &n) || n > m->size - m->at || !take(m, (size_t)n, &p)) return truncated(m);
    return push(m, string(m, kind, p, (size_t)n));
}

static mst_status op_long(vm *m, int len_bytes)
{
    uint64_t n;
    const uint8_t *p;
    if (!take_uint(m, len_bytes, &n) || n > m->size - m->at || !take(m, (size_t)n, &p)) return truncated(m);
    if (n > 8) return push(m, value(m, MST_PK_BIGINT));
    uint64_t u = 0;
    for (size_t i = n; i-- > 0;) u = u << 8 | p[i];
    if (n && n < 8 && (p[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* two's complement */
    return push(m, integer(m, (int64_t)u));
}

static mst_status op_int(vm *m, int bytes, int is_signed)
{
    uint64_t u;
    if (!take_uint(m, bytes, &u)) return truncated(m);
    return push(m, integer(m, is_signed ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u));
}

static mst_status op_float(vm *m)
{
    const uint8_t *p;
    if (!take(m, 8, &p)) return truncated(m);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | p[i]; /* big-endian */
    mst_pk_value *v = value(m, MST_PK_FLOAT);
    if (v) memcpy(&v->f, &u, 8);
    return push(m, v);
}

static mst_status op_tuple(vm *m, int n)
{
    if (m->sp - floor_sp(m) < (size_t)n) return fail(m, "stack underflow%s", "");
    m->sp -= (size_t)n;
    return push(m, sequence(m, MST_PK_TUPLE, m->stack + m->sp, (size_t)n));
}

static mst_status op_marked(vm *m, mst_pk_kind kind)
{
    mst_pk_value **items = NULL;
    size_t n = 0;
    mst_status s = pop_mark(m, &items, &n);
    if (s != MST_OK) return s;
    if (kind == MST_PK_DICT && n % 2) return fail(m, "DICT with an odd number of items%s", "");
    return push(m, sequence(m, kind, items, n));
}

/* GLOBAL: "module\nname\n" */
static int line(vm *m, const uint8_t **p, size_t *n)
{
    const uint8_t *nl = m->at < m->size ? memchr(m->buf + m->at, '\n', m->size - m->at) : NULL;
    if (!nl) return 0;
    *p = m->buf + m->at;
    *n = (size_t)(nl - *p);
    m->at += *n + 1;
    return 1;
}

static mst_status op_global(vm *m)
{
    const uint8_t *mod, *name;
    size_t nm, nn;
    if (!line(m, &mod, &nm) || !line(m, &name, &nn)) return truncated(m);
    return push(m, global(m, mod, nm, name, nn));
}

static mst_status op_stack_global(vm *m)
{
    mst_pk_value *mod = NULL, *name = NULL;
    mst_status s = pop(m, &name);
    if (s == MST_OK) s = pop(m, &mod);
    if (s != MST_OK) return s;
    if (mod->kind != MST_PK_STR || name->kind != MST_PK_STR) return fail(m, "STACK_GLOBAL needs two strings%s", "");
    return push(m, global(m, (const uint8_t *)mod->s, mod->len, (const uint8_t *)name->s, name->len));
}

static mst_status op_setitems(vm *m, int marked)
{
    mst_pk_value **items = NULL, *pair[2], *d = NULL;
    size_t n = 2;
    mst_status s = MST_OK;
    if (marked) {
        s = pop_mark(m, &items, &n);
    } else {
        s = pop(m, &pair[1]);
        if (s == MST_OK) s = pop(m, &pair[0]);
        items = pair;
    }
    if (s == MST_OK) s = top(m, &d);
    if (s != MST_OK) return s;
    if (n % 2) return fail(m, "SETITEMS with an odd number of items%s", "");
    if (d->kind == MST_PK_OPAQUE) return MST_OK; /* e.g. a dict subclass: its items are never needed */
    if (d->kind != MST_PK_DICT) return fail(m, "SETITEM on a value that is not a dict%s", "");
    for (size_t i = 0; i < n; i++)
        if (!add_item(m, d, items[i])) return nomem(m);
    return MST_OK;
}

static mst_status op_appends(vm *m, int marked, mst_pk_kind kind)
{
    mst_pk_value **items = NULL, *one = NULL, *l = NULL;
    size_t n = 1;
    mst_status s = marked ? pop_mark(m, &items, &n) : pop(m, &one);
    if (!marked) items = &one;
    if (s == MST_OK) s = top(m, &l);
    if (s != MST_OK) return s;
    if (l->kind == MST_PK_OPAQUE) return MST_OK;
    if (l->kind != kind) return fail(m, "%s on a value of the wrong kind", kind == MST_PK_SET ? "ADDITEMS" : "APPEND");
    for (size_t i = 0; i < n; i++)
        if (!add_item(m, l, items[i])) return nomem(m);
    return MST_OK;
}

static mst_status op_reduce(vm *m)
{
    mst_pk_value *f, *args, *out = NULL;
    mst_status s = pop(m, &args);
    if (s == MST_OK) s = pop(m, &f);
    if (s == MST_OK) s = torch_call(m, f, args, &out);
    return s == MST_OK ? push(m, out) : s;
}

/* NEWOBJ, NEWOBJ_EX: cls.__new__(cls, *args) is never run. */
static mst_status op_newobj(vm *m, int ex)
{
    mst_pk_value *cls = NULL, *args = NULL, *kw = NULL;
    mst_status s = ex ? pop(m, &kw) : MST_OK;
    if (s == MST_OK) s = pop(m, &args);
    if (s == MST_OK) s = pop(m, &cls);
    return s == MST_OK ? push(m, opaque(m, cls)) : s;
}

/* INST (module and name on lines, arguments since the mark) and OBJ (class
 * and arguments since the mark): both call the class. */
static mst_status op_inst(vm *m, int obj)
{
    mst_pk_value **items = NULL, *cls = NULL;
    size_t n = 0;
    if (!obj) {
        mst_status s = op_global(m);
        if (s != MST_OK) return s;
        cls = m->stack[--m->sp];
    }
    mst_status s = pop_mark(m, &items, &n);
    if (s != MST_OK) return s;
    if (obj) {
        if (!n) return fail(m, "OBJ without a class%s", "");
        cls = items[0];
    }
    return push(m, opaque(m, cls));
}

/* BUILD: obj.__setstate__(state) is never run; the state is dropped. */
static mst_status op_build(vm *m)
{
    mst_pk_value *state = NULL, *obj = NULL;
    mst_status s = pop(m, &state);
    return s == MST_OK ? top(m, &obj) : s;
}

static mst_status op_persid(vm *m)
{
    mst_pk_value *pid, *out = NULL;
    mst_status s = pop(m, &pid);
    if (s == MST_OK) s = torch_storage(m, pid, &out);
    return s == MST_OK ? push(m, out) : s;
}

static mst_status op_pop(vm *m)
{
    if (m->sp > floor_sp(m)) {
        m->sp--;
        return MST_OK;
    }
    if (!m->num_marks) return fail(m, "stack underflow%s", "");
    m->num_marks--;
    return MST_OK;
}

static mst_status op_memo(vm *m, int bytes, int put)
{
    uint64_t idx;
    if (!take_uint(m, bytes, &idx)) return truncated(m);
    return put ? memo_put(m, idx) : memo_get(m, idx);
}

static mst_status op_stop(vm *m)
{
    mst_status s = pop(m, &m->result);
    if (s == MST_OK && (m->sp || m->num_marks)) return fail(m, "STOP with values left on the stack%s", "");
    return s;
}

static mst_status unsupported(vm *m, uint8_t op)
{
    static const struct { uint8_t op; const char *name; } names[] = {
        {'I', "INT (protocol 0)"},   {'L', "LONG (protocol 0)"},     {'F', "FLOAT (protocol 0)"},
        {'S', "STRING (protocol 0)"}, {'V', "UNICODE (protocol 0)"}, {'g', "GET (protocol 0)"},
        {'p', "PUT (protocol 0)"},   {'P', "PERSID (protocol 0)"},  {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"},
        {0x97, "NEXT_BUFFER"},       {0x98, "READONLY_BUFFER"},
    };
    char what[64];
    snprintf(what, sizeof what, "0x%02x", op);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].op == op) snprintf(what, sizeof what, "%s", names[i].name);
    return fail(m, "opcode %s is not one torch.save writes", what);
}

static mst_status step(vm *m, uint8_t op)
{
    const uint8_t *p;
    switch (op) {
    case 0x80: return take(m, 1, &p) ? MST_OK : truncated(m);          /* PROTO */
    case 0x95: return take(m, 8, &p) ? MST_OK : truncated(m);          /* FRAME */
    case '.': return op_stop(m);
    case '(': return mark(m);
    case '0': return op_pop(m);
    case '1': { mst_pk_value **i = NULL; size_t n = 0; return pop_mark(m, &i, &n); }
    case '2': { mst_pk_value *v = NULL; mst_status s = top(m, &v); return s == MST_OK ? push(m, v) : s; }
    case 'N': return push(m, value(m, MST_PK_NONE));
    case 0x88: case 0x89: { mst_pk_value *v = value(m, MST_PK_BOOL); if (v) v->i = op == 0x88; return push(m, v); }
    case 'J': return op_int(m, 4, 1);
    case 'K': return op_int(m, 1, 0);
    case 'M': return op_int(m, 2, 0);
    case 0x8a: return op_long(m, 1);
    case 0x8b: return op_long(m, 4);
    case 'G': return op_float(m);
    case 'X': return op_string(m, MST_PK_STR, 4);
    case 0x8c: return op_string(m, MST_PK_STR, 1);
    case 0x8d: return op_string(m, MST_PK_STR, 8);
    case 'T': return op_string(m, MST_PK_STR, 4);
    case 'U': return op_string(m, MST_PK_STR, 1);
    case 'B': return op_string(m, MST_PK_BYTES, 4);
    case 'C': return op_string(m, MST_PK_BYTES, 1);
    case 0x8e: case 0x96: return op_string(m, MST_PK_BYTES, 8);
    case ')': return push(m, value(m, MST_PK_TUPLE));
    case 't': return op_marked(m, MST_PK_TUPLE);
    case 0x85: case 0x86: case 0x87: return op_tuple(m, op - 0x84);
    case ']': return push(m, value(m, MST_PK_LIST));
    case 'l': return op_marked(m, MST_PK_LIST);
    case 'a': return op_appends(m, 0, MST_PK_LIST);
    case 'e': return op_appends(m, 1, MST_PK_LIST);
    case '}': return push(m, value(m, MST_PK_DICT));
    case 'd': return op_marked(m, MST_PK_DICT);
    case 's': return op_setitems(m, 0);
    case 'u': return op_setitems(m, 1);
    case 0x8f: return push(m, value(m, MST_PK_SET));
    case 0x90: return op_appends(m, 1, MST_PK_SET);
    case 0x91: return op_marked(m, MST_PK_SET);
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 0x81: return op_newobj(m, 0);
    case 0x92: return op_newobj(m, 1);
    case 'i': return op_inst(m, 0);
    case 'o': return op_inst(m, 1);
    case 'b': return op_build(m);
    case 'Q': return op_persid(m);
    case 'h': return op_memo(m, 1, 0);
    case 'j': return op_memo(m, 4, 0);
    case 'q': return op_memo(m, 1, 1);
    case 'r': return op_memo(m, 4, 1);
    case 0x94: return memo_put(m, m->memo_len);
    default: return unsupported(m, op);
    }
}

mst_status mst_pickle_load(const uint8_t *buf, size_t size, const char *what, mst_pickle **pk, const mst_pk_value **root,
                           mst_error *err)
{
    *root = NULL;
    if (!(*pk = calloc(1, sizeof **pk))) return mst_fail(err, MST_ERR_NOMEM, "out of memory");
    vm m = {.pk = *pk, .buf = buf, .size = size, .what = what, .err = err};
    mst_status s = MST_OK;
    while (s == MST_OK && !m.result) {
        m.op_at = m.at;
        if (m.at >= size) return fail(&m, "stream ends before STOP%s", "");
        s = step(&m, buf[m.at++]);
    }
    *root = m.result;
    return s;
}

void mst_pickle_free(mst_pickle *pk)
{
    if (!pk) return;
    for (chunk *c = pk->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(pk);
}

const mst_pk_value *mst_pk_dict_get(const mst_pk_value *dict, const char *key)
{
    if (!dict || dict->kind != MST_PK_DICT) return NULL;
    for (size_t i = dict->n; i >= 2; i -= 2)
        if (is_str(dict->items[i - 2], key)) return dict->items[i - 1];
    return NULL;
}

void mst_pk_describe(const mst_pk_value *v, char *buf, size_t n)
{
    static const char *kinds[] = {"None", "a bool", "an integer", "a big integer", "a float", "a string", "bytes",
                                  "a tuple", "a list", "a set", "a dict", "a global", "an opaque value", "a storage",
                                  "a tensor"};
    if (v->kind == MST_PK_OPAQUE)
        snprintf(buf, n, "an opaque value built by %s, which mst does not run", v->s);
    else if (v->kind == MST_PK_GLOBAL)
        snprintf(buf, n, "the global %s", v->s);
    else
        snprintf(buf, n, "%s", kinds[v->kind]);
}
