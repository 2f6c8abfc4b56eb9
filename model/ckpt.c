#include "ckpt.h"
#include "io.h"
#include "tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* safetensors data is little-endian and is copied to and from host memory as it is. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model/ckpt.c assumes a little-endian host"
#endif

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [CKPT_F32] = {"F32", 4},   [CKPT_F16] = {"F16", 2},         [CKPT_BF16] = {"BF16", 2},
    [CKPT_F64] = {"F64", 8},   [CKPT_I64] = {"I64", 8},         [CKPT_U64] = {"U64", 8},
    [CKPT_I32] = {"I32", 4},   [CKPT_U32] = {"U32", 4},         [CKPT_I16] = {"I16", 2},
    [CKPT_U16] = {"U16", 2},   [CKPT_I8] = {"I8", 1},           [CKPT_U8] = {"U8", 1},
    [CKPT_BOOL] = {"BOOL", 1}, [CKPT_F8_E5M2] = {"F8_E5M2", 1}, [CKPT_F8_E4M3] = {"F8_E4M3", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof *dtypes))

size_t ckpt_dtype_size(enum ckpt_dtype dtype)
{
    PL_ASSERT((int)dtype >= 0 && (int)dtype < N_DTYPES);
    return dtypes[dtype].size;
}

const char *ckpt_dtype_name(enum ckpt_dtype dtype)
{
    PL_ASSERT((int)dtype >= 0 && (int)dtype < N_DTYPES);
    return dtypes[dtype].name;
}

static bool is_float_dtype(enum ckpt_dtype d)
{
    return d == CKPT_F32 || d == CKPT_F16 || d == CKPT_BF16;
}

size_t ckpt_tensor_numel(const struct ckpt_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

static float f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float ckpt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf or NaN: the payload moves up with the quiet bit in place */
        return f32_from_bits(sign | 0x7f800000u | mant << 13);
    if (exp != 0)
        return f32_from_bits(sign | (exp + 112) << 23 | mant << 13);
    if (mant == 0)
        return f32_from_bits(sign);
    /* Subnormal: mant * 2^-24. Shift the leading one up to the implicit bit;
     * each shift lowers the exponent from 2^-14's biased 113. */
    uint32_t e = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        e--;
    }
    return f32_from_bits(sign | e << 23 | (mant & 0x3ff) << 13);
}

float ckpt_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

static uint16_t load_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Element i of a float tensor as F32; data may be unaligned. */
static float elem_f32(const struct ckpt_tensor *t, size_t i)
{
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case CKPT_F16:
        return ckpt_f16_to_f32(load_u16(p + 2 * i));
    case CKPT_BF16:
        return ckpt_bf16_to_f32(load_u16(p + 2 * i));
    default: {
        PL_ASSERT(t->dtype == CKPT_F32);
        float f;
        memcpy(&f, p + 4 * i, sizeof f);
        return f;
    }
    }
}

/* out[numel] = a float tensor converted to F32. */
static void tensor_to_f32(float *out, const struct ckpt_tensor *t, size_t numel)
{
    if (numel == 0)
        return;
    if (t->dtype == CKPT_F32) {
        memcpy(out, t->data, numel * sizeof(float));
        return;
    }
    for (size_t i = 0; i < numel; i++)
        out[i] = elem_f32(t, i);
}

/* "[96, 32]" */
static const char *fmt_shape(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}

/* ---- safetensors writer ---- */

static bool is_string_object(const cJSON *o)
{
    if (!cJSON_IsObject(o))
        return false;
    for (const cJSON *c = o->child; c; c = c->next)
        if (!cJSON_IsString(c))
            return false;
    return true;
}

/* Whether a tensor's byte count fits in size_t. */
static bool bytes_fit(const struct ckpt_tensor *t)
{
    size_t n = ckpt_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        size_t d = (size_t)t->shape[i];
        if (d != 0 && n > SIZE_MAX / d)
            return false;
        n *= d;
    }
    return true;
}

/* Bytes of a tensor whose size was checked (bytes_fit, or read from a validated header). */
static size_t tensor_bytes(const struct ckpt_tensor *t)
{
    return ckpt_tensor_numel(t) * ckpt_dtype_size(t->dtype);
}

static int check_write_list(const char *path, const struct ckpt_tensor *list, int n,
                            struct pl_err *err)
{
    if (n < 0 || (n > 0 && !list))
        return pl_errf(err, PL_EINVAL, "%s: invalid tensor list", path);
    for (int i = 0; i < n; i++) {
        const struct ckpt_tensor *t = &list[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
            return pl_errf(err, PL_EINVAL, "%s: tensor %d: invalid name", path, i);
        if ((int)t->dtype < 0 || (int)t->dtype >= N_DTYPES || t->ndim < 0 || t->ndim > CKPT_MAX_DIM)
            return pl_errf(err, PL_EINVAL, "%s: tensor '%s': invalid dtype or rank", path, t->name);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0)
                return pl_errf(err, PL_EINVAL, "%s: tensor '%s': negative dimension", path,
                               t->name);
        if (!bytes_fit(t) || (tensor_bytes(t) > 0 && !t->data))
            return pl_errf(err, PL_EINVAL, "%s: tensor '%s': invalid size or data", path, t->name);
        for (int j = 0; j < i; j++)
            if (strcmp(list[j].name, t->name) == 0)
                return pl_errf(err, PL_EINVAL, "%s: tensor '%s' given twice", path, t->name);
    }
    return PL_OK;
}

int ckpt_write_tensors(const char *path, const struct ckpt_tensor *list, int n,
                       const char *metadata_json, struct pl_err *err)
{
    int rc = check_write_list(path, list, n, err);
    if (rc)
        return rc;
    cJSON *meta = NULL;
    if (metadata_json) {
        meta = cJSON_Parse(metadata_json);
        if (!is_string_object(meta)) {
            cJSON_Delete(meta);
            return pl_errf(err, PL_EINVAL, "%s: metadata: expected a JSON object of strings", path);
        }
    }

    struct pl_buf h = {0};
    pl_buf_str(&h, "{");
    if (meta) {
        pl_buf_str(&h, "\"__metadata__\":{");
        for (const cJSON *c = meta->child; c; c = c->next) {
            pl_buf_json(&h, c->string, strlen(c->string));
            pl_buf_str(&h, ":");
            pl_buf_json(&h, c->valuestring, strlen(c->valuestring));
            if (c->next)
                pl_buf_str(&h, ",");
        }
        pl_buf_str(&h, n > 0 ? "}," : "}");
    }
    cJSON_Delete(meta);
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const struct ckpt_tensor *t = &list[i];
        size_t bytes = tensor_bytes(t);
        pl_buf_json(&h, t->name, strlen(t->name));
        pl_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", ckpt_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            pl_buf_printf(&h, "%s%" PRId64, d ? "," : "", t->shape[d]);
        pl_buf_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}%s", offset, offset + bytes,
                      i + 1 < n ? "," : "");
        offset += bytes;
    }
    pl_buf_str(&h, "}");
    /* Spaces (valid JSON whitespace) make the data start 8-byte aligned. */
    while (!h.oom && h.len % 8 != 0)
        pl_buf_str(&h, " ");
    if (h.oom) {
        pl_free(h.p);
        return pl_oom(err, "safetensors header");
    }

    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    struct io_out o;
    rc = io_out_open(&o, path, err);
    bool ok = rc == PL_OK && fwrite(len, 1, sizeof len, o.f) == sizeof len &&
              fwrite(h.p, 1, h.len, o.f) == h.len;
    for (int i = 0; i < n && ok; i++) {
        size_t bytes = tensor_bytes(&list[i]);
        ok = bytes == 0 || fwrite(list[i].data, 1, bytes, o.f) == bytes; /* data may be NULL */
    }
    pl_free(h.p);
    if (rc)
        return rc;
    if (ok)
        return io_out_commit(&o, err);
    rc = pl_errf(err, PL_EIO, "cannot write '%s': %s", o.tmp, strerror(errno));
    io_out_abort(&o);
    return rc;
}

/* ---- safetensors reader ---- */

/* A JSON number that is an exact integer in [0, 2^53]. */
static bool json_u64(const cJSON *x, uint64_t *out)
{
    if (!cJSON_IsNumber(x))
        return false;
    double v = x->valuedouble;
    if (!(v >= 0.0 && v <= 9007199254740992.0) || v != floor(v))
        return false;
    *out = (uint64_t)v;
    return true;
}

/* Parse one header entry into t. base is the start of the data area. */
static int parse_entry(const struct ckpt_file *f, const cJSON *e, struct ckpt_tensor *t,
                       const unsigned char *base, size_t data_size, struct pl_err *err)
{
    const char *path = f->path_, *name = e->string;
    t->name = name;
    if (!cJSON_IsObject(e))
        return pl_errf(err, PL_EFORMAT,
                       "%s: tensor '%s': expected an object with dtype, shape and data_offsets",
                       path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return pl_errf(err, PL_EFORMAT, "%s: tensor '%s': field 'dtype': expected a string", path,
                       name);
    int d = 0;
    while (d < N_DTYPES && strcmp(dtypes[d].name, dt->valuestring) != 0)
        d++;
    if (d == N_DTYPES)
        return pl_errf(err, PL_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                       dt->valuestring);
    t->dtype = (enum ckpt_dtype)d;

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return pl_errf(err, PL_EFORMAT,
                       "%s: tensor '%s': field 'shape': expected an array of non-negative "
                       "integers",
                       path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > CKPT_MAX_DIM)
        return pl_errf(err, PL_EFORMAT, "%s: tensor '%s': %d dimensions (at most %d supported)",
                       path, name, nd, CKPT_MAX_DIM);
    t->ndim = nd;
    uint64_t bytes = dtypes[d].size;
    int i = 0;
    for (const cJSON *x = sh->child; x; x = x->next, i++) {
        uint64_t v;
        if (!json_u64(x, &v))
            return pl_errf(err, PL_EFORMAT,
                           "%s: tensor '%s': field 'shape': expected an array of non-negative "
                           "integers",
                           path, name);
        if (v != 0 && bytes > UINT64_MAX / v)
            return pl_errf(err, PL_EFORMAT, "%s: tensor '%s': shape too large", path, name);
        bytes *= v;
        t->shape[i] = (int64_t)v;
    }

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_u64(off->child, &begin) ||
        !json_u64(off->child->next, &end) || begin > end)
        return pl_errf(err, PL_EFORMAT,
                       "%s: tensor '%s': field 'data_offsets': expected [begin, end] with "
                       "0 <= begin <= end",
                       path, name);
    char shp[256];
    if (end - begin != bytes)
        return pl_errf(err, PL_EFORMAT,
                       "%s: tensor '%s': shape %s of %s needs %" PRIu64
                       " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64,
                       path, name, fmt_shape(shp, sizeof shp, t->shape, t->ndim), dtypes[d].name,
                       bytes, begin, end, end - begin);
    if (end > data_size)
        return pl_errf(err, PL_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] run past the end of the data (%zu bytes; truncated file?)",
                       path, name, begin, end, data_size);
    t->data = base + begin;
    return PL_OK;
}

static int cmp_by_data(const void *a, const void *b)
{
    const unsigned char *x = ((const struct ckpt_tensor *)a)->data;
    const unsigned char *y = ((const struct ckpt_tensor *)b)->data;
    return x < y ? -1 : x > y;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(((const struct ckpt_tensor *)a)->name, ((const struct ckpt_tensor *)b)->name);
}

static int cmp_key_name(const void *key, const void *elem)
{
    return strcmp(key, ((const struct ckpt_tensor *)elem)->name);
}

/* Validate the mapped file and fill f->tensors. */
static int parse_header(struct ckpt_file *f, struct pl_err *err)
{
    const char *path = f->path_;
    const unsigned char *b = f->map_;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)b[i] << (8 * i);
    if (hlen > f->size_ - 8)
        return pl_errf(err, PL_EFORMAT,
                       "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                       path, hlen, f->size_);
    const char *h = (const char *)b + 8, *end = NULL;
    f->json_ = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!f->json_)
        return pl_errf(err, PL_EFORMAT, "%s: invalid header JSON near byte %zu", path,
                       (size_t)(end ? end - h : 0) + 8);
    for (const char *p = end; p < h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return pl_errf(err, PL_EFORMAT, "%s: invalid header JSON: data after the object", path);
    if (!cJSON_IsObject(f->json_))
        return pl_errf(err, PL_EFORMAT, "%s: header is not a JSON object", path);

    int n = 0;
    for (const cJSON *c = f->json_->child; c; c = c->next)
        n += strcmp(c->string, "__metadata__") != 0;
    f->tensors = pl_calloc((size_t)n, sizeof *f->tensors);
    if (!f->tensors)
        return pl_oom(err, "tensor list");
    const unsigned char *base = b + 8 + hlen;
    size_t data_size = f->size_ - 8 - (size_t)hlen;
    for (const cJSON *c = f->json_->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (!is_string_object(c))
                return pl_errf(err, PL_EFORMAT,
                               "%s: header field '__metadata__': expected an object of strings",
                               path);
            continue;
        }
        int rc = parse_entry(f, c, &f->tensors[f->n], base, data_size, err);
        if (rc)
            return rc;
        f->n++;
    }
    if (n == 0)
        return PL_OK;

    /* Overlap: in data order, each non-empty tensor starts at or after every earlier end. */
    qsort(f->tensors, (size_t)n, sizeof *f->tensors, cmp_by_data);
    const unsigned char *max_end = base;
    const char *max_name = NULL;
    for (int i = 0; i < n; i++) {
        const struct ckpt_tensor *t = &f->tensors[i];
        size_t bytes = tensor_bytes(t);
        if (bytes == 0)
            continue;
        const unsigned char *start = t->data;
        if (start < max_end)
            return pl_errf(err, PL_EFORMAT, "%s: tensors '%s' and '%s' overlap", path, max_name,
                           t->name);
        max_end = start + bytes;
        max_name = t->name;
    }
    qsort(f->tensors, (size_t)n, sizeof *f->tensors, cmp_by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return pl_errf(err, PL_EFORMAT, "%s: tensor '%s' appears twice", path,
                           f->tensors[i].name);
    return PL_OK;
}

int ckpt_file_open(struct ckpt_file *f, const char *path, struct pl_err *err)
{
    memset(f, 0, sizeof *f);
    f->path_ = pl_strdup(path);
    if (!f->path_)
        return pl_oom(err, "file name");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pl_errf(err, PL_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pl_errf(err, PL_EIO, "cannot read '%s': not a regular file", path);
    }
    if ((uint64_t)st.st_size < 8) {
        close(fd);
        return pl_errf(err, PL_EFORMAT, "%s: %lld bytes, too short for a safetensors header", path,
                       (long long)st.st_size);
    }
    /* Mapped, not read: a GPT-2 checkpoint is hundreds of MB and goes straight to params. */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return pl_errf(err, PL_EIO, "cannot map '%s': %s", path, strerror(map_errno));
    f->map_ = map;
    f->size_ = (size_t)st.st_size;
    return parse_header(f, err);
}

void ckpt_file_release(struct ckpt_file *f)
{
    if (f->map_)
        munmap(f->map_, f->size_);
    cJSON_Delete(f->json_);
    pl_free(f->tensors);
    pl_free(f->path_);
    memset(f, 0, sizeof *f);
}

const struct ckpt_tensor *ckpt_file_find(const struct ckpt_file *f, const char *name)
{
    if (f->n == 0)
        return NULL;
    return bsearch(name, f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_key_name);
}

const char *ckpt_file_meta(const struct ckpt_file *f, const char *key)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(f->json_, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int ckpt_file_get(const struct ckpt_file *f, const char *name, enum ckpt_dtype dtype, void *out,
                  size_t numel, struct pl_err *err)
{
    const struct ckpt_tensor *t = ckpt_file_find(f, name);
    if (!t)
        return pl_errf(err, PL_ENOTFOUND, "%s: tensor '%s' missing", f->path_, name);
    size_t have = ckpt_tensor_numel(t);
    if (have != numel) {
        char shp[256];
        return pl_errf(err, PL_ESHAPE, "%s: tensor '%s': expected %zu elements, got %zu (shape %s)",
                       f->path_, name, numel, have, fmt_shape(shp, sizeof shp, t->shape, t->ndim));
    }
    if (dtype == CKPT_F32 && is_float_dtype(t->dtype)) {
        tensor_to_f32(out, t, numel);
        return PL_OK;
    }
    if (t->dtype != dtype)
        return pl_errf(err, PL_EFORMAT, "%s: tensor '%s': dtype %s, expected %s", f->path_, name,
                       ckpt_dtype_name(t->dtype), ckpt_dtype_name(dtype));
    if (numel > 0)
        memcpy(out, t->data, numel * ckpt_dtype_size(dtype));
    return PL_OK;
}

/* ---- config.json ---- */

/* root[key] as an integer >= min into *out: 1 when set, 0 when absent or null, or an error. */
static int get_int(const cJSON *root, const char *key, int min, const char *src, int *out,
                   struct pl_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!x || cJSON_IsNull(x))
        return 0;
    double v = cJSON_IsNumber(x) ? x->valuedouble : -1.0;
    if (!cJSON_IsNumber(x) || v != floor(v) || v < min || v > INT_MAX)
        return pl_errf(err, PL_EFORMAT, "%s: field '%s': expected a %s integer", src, key,
                       min > 0 ? "positive" : "non-negative");
    *out = (int)v;
    return 1;
}

/* root[key] as a string shorter than `size` into out: 1, 0 when absent or null, or an error. */
static int get_str(const cJSON *root, const char *key, const char *src, char *out, size_t size,
                   struct pl_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!x || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsString(x) || strlen(x->valuestring) >= size)
        return pl_errf(err, PL_EFORMAT, "%s: field '%s': expected a string of at most %zu bytes",
                       src, key, size - 1);
    snprintf(out, size, "%s", x->valuestring);
    return 1;
}

/* HF switches that change GPT-2's arithmetic: only their default is supported. */
static int check_bool(const cJSON *root, const char *key, bool want, const char *src,
                      struct pl_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!x || cJSON_IsNull(x) || (cJSON_IsBool(x) && (bool)cJSON_IsTrue(x) == want))
        return PL_OK;
    return pl_errf(err, PL_EFORMAT, "%s: field '%s': only %s is supported", src, key,
                   want ? "true" : "false");
}

/* A model file's byte tokenizer has exactly its 257 ids: fewer leave bytes without an id, more
 * give ids without text. (gpt_config_check allows fewer, for benchmark shapes.) */
static int check_byte_vocab(const struct gpt_config *cfg, const char *src, int code,
                            struct pl_err *err)
{
    if (strcmp(cfg->tokenizer, "byte") != 0 || cfg->vocab_size == 257)
        return PL_OK;
    return pl_errf(err, code,
                   "%s: field 'vocab_size': the byte tokenizer has 257 ids (256 bytes and "
                   "<|endoftext|>), got %d; another size needs \"tokenizer\": \"gpt2\" and "
                   "its vocabulary files",
                   src, cfg->vocab_size);
}

/* root[key] as a finite number into *out, left as it is when absent or null. */
static int get_real(const cJSON *root, const char *key, const char *src, double *out,
                    struct pl_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!x || cJSON_IsNull(x))
        return PL_OK;
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
        return pl_errf(err, PL_EFORMAT, "%s: field '%s': expected a number", src, key);
    *out = x->valuedouble;
    return PL_OK;
}

/* HF's architectures: GPT2ForSequenceClassification is GPT-2 with score.weight, one row per
 * label; plumb's scalar head is one label. HF counts labels in num_labels, or in the id2label
 * it writes instead. */
static int parse_head(const cJSON *root, const char *src, struct gpt_config *cfg,
                      struct pl_err *err)
{
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures"), *x;
    if (arch && !cJSON_IsNull(arch) && !cJSON_IsArray(arch))
        return pl_errf(err, PL_EFORMAT, "%s: field 'architectures': expected an array of strings",
                       src);
    cJSON_ArrayForEach(x, arch)
    {
        if (!cJSON_IsString(x))
            return pl_errf(err, PL_EFORMAT,
                           "%s: field 'architectures': expected an array of strings", src);
        if (strcmp(x->valuestring, "GPT2ForSequenceClassification") == 0)
            cfg->score_head = true;
    }
    int labels = 1;
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    if (cJSON_IsObject(id2label))
        labels = cJSON_GetArraySize(id2label);
    int rc = get_int(root, "num_labels", 1, src, &labels, err);
    if (rc < 0)
        return rc;
    if (cfg->score_head && labels != 1)
        return pl_errf(err, PL_EFORMAT,
                       "%s: field 'num_labels': %d labels; only a scalar head (1) is supported",
                       src, labels);
    cfg->reward_mean = 0.0;
    cfg->reward_std = 1.0;
    if ((rc = get_real(root, "reward_mean", src, &cfg->reward_mean, err)) ||
        (rc = get_real(root, "reward_std", src, &cfg->reward_std, err)))
        return rc;
    if (!(cfg->reward_std > 0.0))
        return pl_errf(err, PL_EFORMAT, "%s: field 'reward_std': expected a positive number", src);
    return PL_OK;
}

static int parse_root(const cJSON *root, const char *src, struct gpt_config *cfg,
                      struct pl_err *err)
{
    if (!cJSON_IsObject(root))
        return pl_errf(err, PL_EFORMAT, "%s: expected a JSON object", src);
    char model_type[32] = "gpt2";
    int rc = get_str(root, "model_type", src, model_type, sizeof model_type, err);
    if (rc < 0)
        return rc;
    if (strcmp(model_type, "gpt2") != 0)
        return pl_errf(err, PL_EFORMAT, "%s: field 'model_type': expected \"gpt2\", got \"%s\"",
                       src, model_type);

    const struct {
        const char *key;
        int *out;
    } required[] = {{"vocab_size", &cfg->vocab_size},
                    {"n_embd", &cfg->n_embd},
                    {"n_layer", &cfg->n_layer},
                    {"n_head", &cfg->n_head}};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
        rc = get_int(root, required[i].key, 1, src, required[i].out, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return pl_errf(err, PL_EFORMAT, "%s: field '%s' missing", src, required[i].key);
    }
    rc = get_int(root, "n_positions", 1, src, &cfg->n_positions, err);
    if (rc == 0) /* older HF configs name the context n_ctx */
        rc = get_int(root, "n_ctx", 1, src, &cfg->n_positions, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return pl_errf(err, PL_EFORMAT, "%s: field 'n_positions' missing", src);

    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    cfg->layer_norm_epsilon = 1e-5f;
    if (eps && !cJSON_IsNull(eps)) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0 && eps->valuedouble <= FLT_MAX))
            return pl_errf(err, PL_EFORMAT,
                           "%s: field 'layer_norm_epsilon': expected a positive number", src);
        cfg->layer_norm_epsilon = (float)eps->valuedouble;
    }
    snprintf(cfg->activation_function, sizeof cfg->activation_function, "gelu_new");
    rc = get_str(root, "activation_function", src, cfg->activation_function,
                 sizeof cfg->activation_function, err);
    if (rc < 0)
        return rc;

    snprintf(cfg->tokenizer, sizeof cfg->tokenizer, "%s",
             cfg->vocab_size == 50257 ? "gpt2" : "byte");
    rc = get_str(root, "tokenizer", src, cfg->tokenizer, sizeof cfg->tokenizer, err);
    if (rc < 0)
        return rc;
    bool byte = strcmp(cfg->tokenizer, "byte") == 0;
    if (!byte && strcmp(cfg->tokenizer, "gpt2") != 0)
        return pl_errf(err, PL_EFORMAT, "%s: field 'tokenizer': expected \"byte\" or \"gpt2\"",
                       src);
    if ((rc = check_byte_vocab(cfg, src, PL_EFORMAT, err)))
        return rc;
    cfg->bos_token_id = cfg->eos_token_id = byte ? 256 : 50256;
    if ((rc = get_int(root, "bos_token_id", 0, src, &cfg->bos_token_id, err)) < 0 ||
        (rc = get_int(root, "eos_token_id", 0, src, &cfg->eos_token_id, err)) < 0)
        return rc;
    if (cfg->bos_token_id >= cfg->vocab_size)
        return pl_errf(err, PL_EFORMAT,
                       "%s: field 'bos_token_id': %d is outside the vocabulary (%d)", src,
                       cfg->bos_token_id, cfg->vocab_size);

    long long inner = 4LL * cfg->n_embd; /* in int it overflows for n_embd above 2^29 */
    int n_inner = 0;
    rc = get_int(root, "n_inner", 1, src, &n_inner, err);
    if (rc < 0)
        return rc;
    if (rc == 1 && n_inner != inner)
        return pl_errf(err, PL_EFORMAT,
                       "%s: field 'n_inner': only 4 * n_embd (%lld) is supported", src, inner);
    if ((rc = check_bool(root, "scale_attn_weights", true, src, err)) ||
        (rc = check_bool(root, "scale_attn_by_inverse_layer_idx", false, src, err)) ||
        (rc = check_bool(root, "tie_word_embeddings", true, src, err)) ||
        (rc = check_bool(root, "add_cross_attention", false, src, err)))
        return rc;
    return parse_head(root, src, cfg, err);
}

int ckpt_config_parse(const char *json_text, const char *source_name, struct gpt_config *cfg,
                      struct pl_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &end, 1);
    if (!root) {
        int line = 1;
        for (const char *p = json_text; end && p < end; p++)
            line += *p == '\n';
        return pl_errf(err, PL_EFORMAT, "%s:%d: invalid JSON", source_name, line);
    }
    int rc = parse_root(root, source_name, cfg, err);
    cJSON_Delete(root);
    if (rc)
        return rc;
    struct pl_err e = {0};
    if (gpt_config_check(cfg, &e) != PL_OK) {
        /* gpt_config_check names the field after a generic "config: "; name the file instead. */
        const char *msg = strncmp(e.msg, "config: ", 8) == 0 ? e.msg + 8 : e.msg;
        return pl_errf(err, PL_EFORMAT, "%s: %s", source_name, msg);
    }
    return PL_OK;
}

int ckpt_config_read(const char *dir, struct gpt_config *cfg, struct pl_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    char *path = io_path_join(dir, "config.json");
    if (!path)
        return pl_oom(err, "file name");
    char *text = NULL;
    size_t len;
    int rc = io_read_file(path, &text, &len, err);
    if (!rc)
        rc = ckpt_config_parse(text, path, cfg, err);
    pl_free(text);
    pl_free(path);
    return rc;
}

/* The shortest decimal that reads back as the same value (as a float when `single`): 1e-05,
 * not 9.9999997e-06. */
static void shortest(char *buf, size_t n, double v, bool single)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            return;
    }
}

int ckpt_config_write(const char *dir, const struct gpt_config *cfg, struct pl_err *err)
{
    int rc = gpt_config_check(cfg, err);
    if (!rc)
        rc = check_byte_vocab(cfg, "config", PL_EINVAL, err);
    if (rc)
        return rc;
    char eps[32], mean[32], std[32];
    shortest(eps, sizeof eps, cfg->layer_norm_epsilon, true);
    shortest(mean, sizeof mean, cfg->reward_mean, false);
    shortest(std, sizeof std, cfg->reward_std, false);
    struct pl_buf b = {0};
    pl_buf_str(&b, "{\n  \"activation_function\": ");
    pl_buf_json(&b, cfg->activation_function, strlen(cfg->activation_function));
    pl_buf_printf(&b, ",\n  \"architectures\": [\n    \"%s\"\n  ],\n",
                  cfg->score_head ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel");
    pl_buf_printf(&b, "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n", cfg->bos_token_id,
                  cfg->eos_token_id);
    pl_buf_printf(&b, "  \"layer_norm_epsilon\": %s,\n  \"model_type\": \"gpt2\",\n", eps);
    pl_buf_printf(&b, "  \"n_ctx\": %d,\n  \"n_embd\": %d,\n  \"n_head\": %d,\n", cfg->n_positions,
                  cfg->n_embd, cfg->n_head);
    pl_buf_printf(&b, "  \"n_layer\": %d,\n  \"n_positions\": %d,\n", cfg->n_layer,
                  cfg->n_positions);
    /* HF builds GPT2ForSequenceClassification with 2 labels unless told; it keeps the
     * reward fields as plain attributes. */
    if (cfg->score_head)
        pl_buf_printf(&b, "  \"num_labels\": 1,\n  \"reward_mean\": %s,\n  \"reward_std\": %s,\n",
                      mean, std);
    pl_buf_str(&b, "  \"tokenizer\": ");
    pl_buf_json(&b, cfg->tokenizer, strlen(cfg->tokenizer));
    pl_buf_printf(&b, ",\n  \"vocab_size\": %d\n}\n", cfg->vocab_size);
    char *path = io_path_join(dir, "config.json");
    if (b.oom || !path)
        rc = pl_oom(err, "config.json");
    else
        rc = io_write_atomic(path, b.p, b.len, err);
    pl_free(path);
    pl_free(b.p);
    return rc;
}

/* ---- model weights ---- */

/* Longest saved name: "transformer." and a gpt_param name. */
#define SAVED_NAME 64

int ckpt_weights_save(const struct gpt *m, const char *path, struct pl_err *err)
{
    struct ckpt_tensor *list = pl_calloc((size_t)m->n_tensors, sizeof *list);
    char(*names)[SAVED_NAME] = m->w.score ? pl_malloc((size_t)m->n_tensors * SAVED_NAME) : NULL;
    if (!list || (m->w.score && !names)) {
        pl_free(list);
        pl_free(names);
        return pl_oom(err, "tensor list");
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const struct gpt_param *p = &m->table[i];
        list[i].name = p->name;
        /* HF's GPT2ForSequenceClassification refuses (as a corrupted state dict) a file with
         * score.weight beside unprefixed body tensors: write what it writes. */
        if (names && strcmp(p->name, "score.weight") != 0) {
            snprintf(names[i], SAVED_NAME, "transformer.%s", p->name);
            list[i].name = names[i];
        }
        list[i].dtype = CKPT_F32;
        list[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++)
            list[i].shape[d] = p->shape[d];
        list[i].data = m->params + p->offset;
    }
    int rc = ckpt_write_tensors(path, list, m->n_tensors, "{\"format\":\"pt\"}", err);
    pl_free(names);
    pl_free(list);
    return rc;
}

/* HF's causal-mask buffers h.N.attn.bias and h.N.attn.masked_bias: not parameters. */
static bool is_mask_buffer(const char *name)
{
    if (strncmp(name, "h.", 2) != 0 || !(name[2] >= '0' && name[2] <= '9'))
        return false;
    const char *p = name + 2;
    while (*p >= '0' && *p <= '9')
        p++;
    return strcmp(p, ".attn.bias") == 0 || strcmp(p, ".attn.masked_bias") == 0;
}

/* A file tensor that is to fill parameter p: a float dtype and p's exact shape. */
static int check_param(const char *path, const struct ckpt_tensor *t, int ndim,
                       const int64_t *shape, struct pl_err *err)
{
    if (!is_float_dtype(t->dtype))
        return pl_errf(err, PL_EFORMAT,
                       "%s: tensor '%s': dtype %s not supported (expected F32, F16 or BF16)", path,
                       t->name, ckpt_dtype_name(t->dtype));
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (same)
        return PL_OK;
    char want[256], got[256];
    return pl_errf(err, PL_ESHAPE, "%s: tensor '%s': expected shape %s, got %s", path, t->name,
                   fmt_shape(want, sizeof want, shape, ndim),
                   fmt_shape(got, sizeof got, t->shape, t->ndim));
}

/* Match every file tensor to a parameter (src[k] for table entry k) and check
 * everything before a single weight is written. */
static int match_tensors(const struct gpt *m, const struct ckpt_file *f,
                         const struct ckpt_tensor **src, bool *head_missing, struct pl_err *err)
{
    const char *path = f->path_;
    const struct ckpt_tensor *lm_head = NULL;
    for (int i = 0; i < f->n; i++) {
        const struct ckpt_tensor *t = &f->tensors[i];
        const char *name = t->name;
        if (strncmp(name, "transformer.", 12) == 0)
            name += 12;
        const struct gpt_param *p = gpt_param_find(m, name);
        if (!p) {
            if (strcmp(name, "lm_head.weight") == 0)
                lm_head = t;
            else if (!is_mask_buffer(name) && strcmp(name, "score.weight") != 0)
                return pl_errf(err, PL_EFORMAT, "%s: tensor '%s': not a parameter of this model",
                               path, t->name);
            continue;
        }
        size_t k = (size_t)(p - m->table);
        if (src[k])
            return pl_errf(err, PL_EFORMAT, "%s: tensor '%s' appears twice (as '%s' and '%s')",
                           path, p->name, src[k]->name, t->name);
        int64_t shape[2] = {p->shape[0], p->shape[1]};
        int rc = check_param(path, t, p->ndim, shape, err);
        if (rc)
            return rc;
        src[k] = t;
    }
    *head_missing = false;
    for (int k = 0; k < m->n_tensors; k++) {
        if (src[k])
            continue;
        if (strcmp(m->table[k].name, "score.weight") != 0)
            return pl_errf(err, PL_EFORMAT, "%s: tensor '%s' missing", path, m->table[k].name);
        *head_missing = true;
    }
    if (!lm_head)
        return PL_OK;
    /* The LM head is tied to wte: a separate lm_head.weight must be a copy of it. */
    const struct ckpt_tensor *wte = src[gpt_param_find(m, "wte.weight") - m->table];
    int rc = check_param(path, lm_head, wte->ndim, wte->shape, err);
    if (rc)
        return rc;
    size_t n = ckpt_tensor_numel(wte);
    for (size_t i = 0; i < n; i++) {
        float a = elem_f32(lm_head, i), b = elem_f32(wte, i);
        if (memcmp(&a, &b, sizeof a) != 0)
            return pl_errf(err, PL_EFORMAT,
                           "%s: tensor '%s' differs from '%s' (untied LM heads are not "
                           "supported)",
                           path, lm_head->name, wte->name);
    }
    return PL_OK;
}

int ckpt_weights_load(struct gpt *m, const char *path, struct pl_err *err)
{
    struct ckpt_file f;
    const struct ckpt_tensor **src = NULL;
    bool head_missing = false;
    int rc = ckpt_file_open(&f, path, err);
    if (!rc) {
        src = pl_calloc((size_t)m->n_tensors, sizeof *src);
        rc = src ? match_tensors(m, &f, src, &head_missing, err) : pl_oom(err, "tensor list");
    }
    if (!rc) {
        for (int k = 0; k < m->n_tensors; k++)
            if (src[k])
                tensor_to_f32(m->params + m->table[k].offset, src[k], m->table[k].numel);
        if (head_missing)
            rc = pl_errf(err, PL_ENOTFOUND,
                         "%s: tensor 'score.weight' missing (the model has a scalar head)", path);
    }
    pl_free(src);
    ckpt_file_release(&f);
    return rc;
}

int ckpt_save(const struct gpt *m, const char *dir, struct pl_err *err)
{
    int rc = io_mkdirs(dir, err);
    if (rc)
        return rc;
    char *path = io_path_join(dir, "model.safetensors");
    if (!path)
        return pl_oom(err, "file name");
    rc = ckpt_weights_save(m, path, err);
    pl_free(path);
    return rc ? rc : ckpt_config_write(dir, &m->cfg, err);
}

/* gpt_init for cfg, then dir/model.safetensors. A head that config.json promises must be in
 * the file; only a head asked for by opts alone may be missing (PL_ENOTFOUND). */
static int load_weights(struct gpt *m, const char *dir, const struct gpt_config *cfg,
                        const struct gpt_opts *opts, struct pl_err *err)
{
    int rc = gpt_init(m, cfg, opts, err);
    if (rc)
        return rc;
    char *path = io_path_join(dir, "model.safetensors");
    if (!path)
        return pl_oom(err, "file name");
    rc = ckpt_weights_load(m, path, err);
    if (rc == PL_ENOTFOUND && cfg->score_head)
        rc = pl_errf(err, PL_EFORMAT,
                     "%s: tensor 'score.weight' missing (config.json says "
                     "GPT2ForSequenceClassification)",
                     path);
    pl_free(path);
    return rc;
}

int ckpt_load(struct gpt *m, const char *dir, const struct gpt_opts *opts, struct pl_err *err)
{
    memset(m, 0, sizeof *m);
    struct gpt_config cfg;
    int rc = ckpt_config_read(dir, &cfg, err);
    return rc ? rc : load_weights(m, dir, &cfg, opts, err);
}

/* The folder's tokenizer is the one config.json names, with the model's ids exactly: an id
 * the tokenizer lacks has no text (sampling it crashed), one the model lacks no embedding. */
static int check_tokenizer(const char *dir, const struct gpt_config *cfg, const struct tok *t,
                           struct pl_err *err)
{
    bool bpe = strcmp(cfg->tokenizer, "gpt2") == 0;
    if (bpe && t->kind != TOK_BPE)
        return pl_errf(err, PL_ENOTFOUND,
                       "%s: config.json names the \"gpt2\" tokenizer but the folder has neither "
                       "vocab.json + merges.txt nor encoder.json + vocab.bpe",
                       dir);
    if (!bpe && t->kind == TOK_BPE)
        return pl_errf(err, PL_EFORMAT,
                       "%s: config.json names the \"byte\" tokenizer but the folder holds GPT-2 "
                       "vocabulary files",
                       dir);
    bool more = cfg->vocab_size > t->vocab_size;
    if (cfg->vocab_size != t->vocab_size)
        return pl_errf(err, PL_EFORMAT,
                       "%s: the model's vocab_size %d %s the tokenizer's %d ids (ids from %d on "
                       "would have no %s)",
                       dir, cfg->vocab_size, more ? "exceeds" : "is below", t->vocab_size,
                       more ? t->vocab_size : cfg->vocab_size, more ? "text" : "embedding");
    if (cfg->eos_token_id != t->eos)
        return pl_errf(err, PL_EFORMAT,
                       "%s: config.json's eos_token_id %d is not the tokenizer's <|endoftext|> %d",
                       dir, cfg->eos_token_id, t->eos);
    return PL_OK;
}

int ckpt_load_tokenizer(struct tok *t, struct gpt_config *cfg, const char *dir, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    int rc = ckpt_config_read(dir, cfg, err);
    if (!rc)
        rc = tok_load(t, dir, err);
    return rc ? rc : check_tokenizer(dir, cfg, t, err);
}

int ckpt_load_model(struct gpt *m, struct tok *t, const char *dir, const struct gpt_opts *opts,
                    struct pl_err *err)
{
    memset(m, 0, sizeof *m);
    struct gpt_config cfg;
    int rc = ckpt_load_tokenizer(t, &cfg, dir, err);
    return rc ? rc : load_weights(m, dir, &cfg, opts, err);
}
