#include "tok.h"
#include "io.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* OpenAI's GPT-2 encoder.py pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s spelled out as Unicode's White_Space, which is what Python's regex
 * module means by it: PCRE2's own \s (with PCRE2_UCP) also takes U+180E, a space
 * before Unicode 6.3. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                   "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

static const char EOT[] = "<|endoftext|>";
#define EOT_LEN (sizeof EOT - 1)

#define NO_RANK INT32_MAX

struct tok_merge {
    uint64_t key; /* left id << 32 | right id; EMPTY_KEY marks a free slot */
    int32_t rank;
    int32_t id; /* merged; also in merges[], but here it shares the key's cache line */
};

#define EMPTY_KEY UINT64_MAX

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves and
 * the 68 others (0x00-0x20, 0x7f-0xa0, 0xad) move, in order, to U+0100-U+0143, so
 * that every vocabulary entry is printable text without spaces. */
static int byte_to_symbol(int b)
{
    if (b <= 0x20)
        return 256 + b;
    if (b >= 0x7f && b <= 0xa0)
        return 256 + 33 + (b - 0x7f);
    if (b == 0xad)
        return 256 + 33 + 34;
    return b;
}

static int symbol_to_byte(int cp)
{
    if (cp < 0 || cp > 323)
        return -1;
    if (cp >= 256)
        return cp < 289 ? cp - 256 : cp < 323 ? cp - 289 + 0x7f : 0xad;
    return byte_to_symbol(cp) == cp ? cp : -1;
}

/* Decode a vocabulary or merges symbol (UTF-8 of byte symbols) into bytes; out
 * needs n bytes. Returns the byte count, or -1 if s is not such a symbol. */
static long symbol_bytes(const char *s, size_t n, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    long k = 0;
    for (size_t i = 0; i < n; k++) {
        int cp = -1;
        if (u[i] < 0x80) {
            cp = u[i++];
        } else if ((u[i] & 0xe0) == 0xc0 && i + 1 < n && (u[i + 1] & 0xc0) == 0x80) {
            cp = (u[i] & 0x1f) << 6 | (u[i + 1] & 0x3f);
            i += 2;
        }
        int b = symbol_to_byte(cp);
        if (b < 0)
            return -1;
        out[k] = (char)b;
    }
    return k;
}

static void put_symbols(FILE *f, const char *s, size_t n, int json)
{
    for (size_t i = 0; i < n; i++) {
        int cp = byte_to_symbol((unsigned char)s[i]);
        if (json && (cp == '"' || cp == '\\'))
            putc('\\', f);
        if (cp < 0x80) {
            putc(cp, f);
        } else {
            putc(0xc0 | cp >> 6, f);
            putc(0x80 | (cp & 0x3f), f);
        }
    }
}

/* ---- files ---- */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- byte tokenizer ---- */

int tok_init_byte(struct tok *t, struct pl_err *err)
{
    memset(t, 0, sizeof *t);
    t->text = pl_malloc(256 + EOT_LEN);
    t->offset = pl_malloc(258 * sizeof *t->offset);
    if (!t->text || !t->offset) {
        tok_release(t);
        return pl_oom(err, "byte tokenizer");
    }
    for (int b = 0; b < 256; b++) {
        t->text[b] = (char)b;
        t->offset[b] = (uint32_t)b;
        t->byte_id[b] = b;
    }
    memcpy(t->text + 256, EOT, EOT_LEN);
    t->offset[256] = 256;
    t->offset[257] = 256 + EOT_LEN;
    t->kind = TOK_BYTE;
    t->vocab_size = 257;
    t->eos = 256;
    return PL_OK;
}

void tok_release(struct tok *t)
{
    pcre2_code_free(t->re);
    pcre2_general_context_free(t->pcre_ctx);
    pl_free(t->text);
    pl_free(t->offset);
    pl_free(t->merges);
    pl_free(t->table);
    memset(t, 0, sizeof *t);
}

/* ---- BPE loading ---- */

static size_t table_size_for(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return mix64(h);
}

/* Token bytes -> id, needed only while loading. */
struct strtab {
    int32_t *slot; /* -1 when free */
    size_t mask;
};

/* Slot of the token with bytes s[0 .. n), or of the free slot where it belongs. */
static size_t strtab_slot(const struct tok *t, const struct strtab *st, const char *s, size_t n)
{
    size_t i = hash_bytes(s, n) & st->mask;
    for (;; i = (i + 1) & st->mask) {
        int32_t id = st->slot[i];
        if (id < 0 ||
            (t->offset[id + 1] - t->offset[id] == n && memcmp(t->text + t->offset[id], s, n) == 0))
            return i;
    }
}

static int strtab_find(const struct tok *t, const struct strtab *st, const char *s, size_t n)
{
    return st->slot[strtab_slot(t, st, s, n)];
}

/* Fill t->text, t->offset, vocab_size, byte_id and eos from a JSON object
 * mapping symbol -> id, and st with the reverse map. */
static int load_vocab(struct tok *t, struct strtab *st, const char *path, struct pl_err *err)
{
    cJSON *root;
    int rc = io_json_load(path, &root, err);
    if (rc)
        return rc;
    const cJSON **by_id = NULL;
    int n = cJSON_IsObject(root) ? cJSON_GetArraySize(root) : 0;
    if (n <= 0) {
        rc = pl_errf(err, PL_EFORMAT, "%s: expected a JSON object mapping tokens to ids", path);
        goto out;
    }
    /* A token has no more bytes than its symbol string. */
    size_t len = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        len += strlen(it->string);
    if (len >= UINT32_MAX) {
        rc = pl_errf(err, PL_EFORMAT, "%s: vocabulary too large", path);
        goto out;
    }
    by_id = pl_calloc((size_t)n, sizeof *by_id);
    t->text = pl_malloc(len);
    t->offset = pl_malloc(((size_t)n + 1) * sizeof *t->offset);
    st->mask = table_size_for((size_t)n) - 1;
    st->slot = pl_malloc((st->mask + 1) * sizeof *st->slot);
    if (!by_id || !t->text || !t->offset || !st->slot) {
        rc = pl_oom(err, path);
        goto out;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v != floor(v)) {
            rc = pl_errf(err, PL_EFORMAT, "%s: token '%.80s': expected an integer id", path,
                         it->string);
            goto out;
        }
        if (v < 0 || v >= n) {
            rc = pl_errf(err, PL_EFORMAT, "%s: token '%.80s': id %.0f out of range (%d tokens)",
                         path, it->string, v, n);
            goto out;
        }
        if (by_id[(int)v]) {
            rc = pl_errf(err, PL_EFORMAT, "%s: token '%.80s': id %d already belongs to '%.80s'",
                         path, it->string, (int)v, by_id[(int)v]->string);
            goto out;
        }
        by_id[(int)v] = it;
    }
    memset(st->slot, -1, (st->mask + 1) * sizeof *st->slot);
    uint32_t off = 0;
    for (int id = 0; id < n; id++) {
        const char *s = by_id[id]->string;
        long k = symbol_bytes(s, strlen(s), t->text + off);
        if (k < 0) {
            rc =
                pl_errf(err, PL_EFORMAT, "%s: token '%.80s': not a byte-level BPE symbol", path, s);
            goto out;
        }
        t->offset[id] = off;
        t->offset[id + 1] = off += (uint32_t)k;
        size_t slot = strtab_slot(t, st, t->text + t->offset[id], (size_t)k);
        if (st->slot[slot] >= 0) {
            rc = pl_errf(err, PL_EFORMAT, "%s: token '%.80s' appears twice", path, s);
            goto out;
        }
        st->slot[slot] = id;
    }
    t->vocab_size = n;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if ((t->byte_id[b] = strtab_find(t, st, &c, 1)) < 0) {
            rc = pl_errf(err, PL_EFORMAT, "%s: no token for byte 0x%02x", path, b);
            goto out;
        }
    }
    if ((t->eos = strtab_find(t, st, EOT, EOT_LEN)) < 0)
        rc = pl_errf(err, PL_EFORMAT, "%s: no token '%s'", path, EOT);
out:
    cJSON_Delete(root);
    pl_free(by_id);
    return rc;
}

static struct tok_merge *merge_slot(const struct tok *t, uint64_t key)
{
    size_t i = mix64(key) & t->table_mask;
    while (t->table[i].key != key && t->table[i].key != EMPTY_KEY)
        i = (i + 1) & t->table_mask;
    return &t->table[i];
}

static uint64_t pair_key(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

/* Fill t->merges and t->table from a merges file: after an optional
 * "#version" line, one "left right" pair a line, best first. */
static int load_merges(struct tok *t, const struct strtab *st, const char *path, struct pl_err *err)
{
    char *data = NULL, *sym = NULL;
    size_t len = 0;
    int rc = io_read_file(path, &data, &len, err);
    if (rc)
        return rc;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += data[i] == '\n';
    if (lines >= INT32_MAX) {
        rc = pl_errf(err, PL_EFORMAT, "%s: too many merges", path);
        goto out;
    }
    t->merges = pl_malloc(lines * 3 * sizeof *t->merges);
    t->table_mask = table_size_for(lines) - 1;
    t->table = pl_malloc((t->table_mask + 1) * sizeof *t->table);
    sym = pl_malloc(len + 1);
    if (!t->merges || !t->table || !sym) {
        rc = pl_oom(err, path);
        goto out;
    }
    for (size_t i = 0; i <= t->table_mask; i++)
        t->table[i].key = EMPTY_KEY;
    char *line = data;
    for (int lineno = 1; line < data + len; lineno++) {
        char *eol = memchr(line, '\n', (size_t)(data + len - line));
        if (!eol)
            eol = data + len;
        char *next = eol + 1, *p = line;
        if (eol > line && eol[-1] == '\r')
            eol--;
        line = next;
        if (eol == p || (lineno == 1 && strncmp(p, "#version", 8) == 0))
            continue;
        const char *field[3];
        size_t flen[3];
        int nf = 0;
        while (p < eol && nf < 3) {
            while (p < eol && (*p == ' ' || *p == '\t'))
                p++;
            if (p == eol)
                break;
            field[nf] = p;
            while (p < eol && *p != ' ' && *p != '\t')
                p++;
            flen[nf] = (size_t)(p - field[nf]);
            nf++;
        }
        if (nf != 2) {
            rc = pl_errf(err, PL_EFORMAT, "%s:%d: expected two symbols", path, lineno);
            goto out;
        }
        int32_t id[3];
        long k[2];
        for (int f = 0; f < 2; f++) {
            k[f] = symbol_bytes(field[f], flen[f], sym + (f ? k[0] : 0));
            id[f] = k[f] < 0 ? -1 : strtab_find(t, st, sym + (f ? k[0] : 0), (size_t)k[f]);
            if (id[f] < 0) {
                rc = pl_errf(err, PL_EFORMAT, "%s:%d: symbol '%.*s' is not in the vocabulary", path,
                             lineno, (int)flen[f], field[f]);
                goto out;
            }
        }
        /* The two symbols' bytes lie side by side in sym: their concatenation. */
        if ((id[2] = strtab_find(t, st, sym, (size_t)(k[0] + k[1]))) < 0) {
            rc =
                pl_errf(err, PL_EFORMAT, "%s:%d: merged symbol '%.*s%.*s' is not in the vocabulary",
                        path, lineno, (int)flen[0], field[0], (int)flen[1], field[1]);
            goto out;
        }
        struct tok_merge *m = merge_slot(t, pair_key(id[0], id[1]));
        if (m->key != EMPTY_KEY) {
            rc = pl_errf(err, PL_EFORMAT, "%s:%d: merge repeats the one of rank %d", path, lineno,
                         (int)m->rank);
            goto out;
        }
        *m = (struct tok_merge){pair_key(id[0], id[1]), t->n_merges, id[2]};
        memcpy(t->merges + 3 * t->n_merges++, id, sizeof id);
    }
out:
    pl_free(sym);
    pl_free(data);
    return rc;
}

static int compile_pattern(struct tok *t, struct pl_err *err)
{
    t->pcre_ctx = pcre2_general_context_create(pl_malloc_hook, pl_free_hook, NULL);
    pcre2_compile_context *cc = t->pcre_ctx ? pcre2_compile_context_create(t->pcre_ctx) : NULL;
    if (!cc)
        return pl_oom(err, "tokenizer regex");
    int code;
    PCRE2_SIZE at;
    /* MATCH_INVALID_UTF lets any bytes through: invalid sequences match nothing. */
    t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &at, cc);
    pcre2_compile_context_free(cc);
    if (!t->re && code == PCRE2_ERROR_HEAP_FAILED)
        return pl_oom(err, "tokenizer regex");
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return pl_errf(err, PL_EFORMAT, "cannot compile the GPT-2 regex: %s", (const char *)msg);
    }
    /* Without JIT (unsupported CPU) the interpreter gives the same matches, slower. */
    if (pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == PCRE2_ERROR_NOMEMORY)
        return pl_oom(err, "tokenizer regex");
    return PL_OK;
}

static int load_bpe(struct tok *t, const char *vocab, const char *merges, struct pl_err *err)
{
    struct strtab st = {0};
    int rc = load_vocab(t, &st, vocab, err);
    if (!rc)
        rc = load_merges(t, &st, merges, err);
    if (!rc)
        rc = compile_pattern(t, err);
    pl_free(st.slot);
    if (rc)
        tok_release(t);
    else
        t->kind = TOK_BPE;
    return rc;
}

int tok_load(struct tok *t, const char *dir, struct pl_err *err)
{
    static const char *const names[2][2] = {{"vocab.json", "merges.txt"},
                                            {"encoder.json", "vocab.bpe"}};
    memset(t, 0, sizeof *t);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pl_errf(err, PL_ENOTFOUND, "model folder '%s' not found", dir);
    for (int i = 0; i < 2; i++) {
        char *vocab = io_path_join(dir, names[i][0]), *merges = io_path_join(dir, names[i][1]);
        int rc = vocab && merges ? PL_OK : pl_oom(err, "file name");
        int have_vocab = rc == PL_OK && file_exists(vocab);
        int have_merges = rc == PL_OK && file_exists(merges);
        if (rc == PL_OK && have_vocab && have_merges)
            rc = load_bpe(t, vocab, merges, err);
        else if (rc == PL_OK && have_vocab != have_merges)
            rc = pl_errf(err, PL_ENOTFOUND, "'%s' has no '%s' beside it",
                         have_vocab ? vocab : merges, names[i][have_vocab]);
        pl_free(vocab);
        pl_free(merges);
        if (rc != PL_OK || (have_vocab && have_merges))
            return rc;
    }
    return tok_init_byte(t, err);
}

/* ---- saving ---- */

/* Write dir/name atomically and durably: a reader never sees half a file. */
static int save_file(const struct tok *t, const char *dir, const char *name,
                     void (*write)(const struct tok *, FILE *), struct pl_err *err)
{
    char *path = io_path_join(dir, name);
    if (!path)
        return pl_oom(err, "file name");
    struct io_out o;
    int rc = io_out_open(&o, path, err);
    if (rc == PL_OK) {
        write(t, o.f);
        rc = io_out_commit(&o, err);
    }
    pl_free(path);
    return rc;
}

static void write_vocab(const struct tok *t, FILE *f)
{
    putc('{', f);
    for (int id = 0; id < t->vocab_size; id++) {
        fputs(id ? ",\"" : "\"", f);
        put_symbols(f, t->text + t->offset[id], t->offset[id + 1] - t->offset[id], 1);
        fprintf(f, "\":%d", id);
    }
    fputs("}\n", f);
}

static void write_merges(const struct tok *t, FILE *f)
{
    fputs("#version: 0.2\n", f);
    for (int r = 0; r < t->n_merges; r++) {
        for (int k = 0; k < 2; k++) {
            int id = t->merges[3 * r + k];
            put_symbols(f, t->text + t->offset[id], t->offset[id + 1] - t->offset[id], 0);
            putc(k ? '\n' : ' ', f);
        }
    }
}

int tok_save(const struct tok *t, const char *dir, struct pl_err *err)
{
    if (t->kind != TOK_BPE)
        return PL_OK;
    int rc = save_file(t, dir, "vocab.json", write_vocab, err);
    return rc ? rc : save_file(t, dir, "merges.txt", write_merges, err);
}

/* ---- encoding ---- */

void tok_buf_release(struct tok_buf *b)
{
    pl_free(b->ids);
    pl_free(b->scratch);
    pcre2_match_data_free(b->match);
    memset(b, 0, sizeof *b);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, struct pl_err *err)
{
    if (need <= *cap)
        return PL_OK;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *q = pl_realloc(*p, cap2 * elem);
    if (!q)
        return pl_oom(err, "token buffer");
    *p = q;
    *cap = cap2;
    return PL_OK;
}

static int32_t pair_rank(const struct tok *t, int left, int right)
{
    const struct tok_merge *m = merge_slot(t, pair_key(left, right));
    return m->key == EMPTY_KEY ? NO_RANK : m->rank;
}

static void heap_push(uint64_t *heap, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    for (; i > 0 && heap[(i - 1) / 2] > v; i = (i - 1) / 2)
        heap[i] = heap[(i - 1) / 2];
    heap[i] = v;
}

static uint64_t heap_pop(uint64_t *heap, size_t *n)
{
    uint64_t top = heap[0], v = heap[--*n];
    size_t i = 0;
    for (size_t c; (c = 2 * i + 1) < *n; i = c) {
        if (c + 1 < *n && heap[c + 1] < heap[c])
            c++;
        if (v <= heap[c])
            break;
        heap[i] = heap[c];
    }
    heap[i] = v;
    return top;
}

/* encoder.py's bpe() on the n symbols w[0 .. n): while some adjacent pair has a
 * merge, take the pair of lowest rank and merge every occurrence of it, left to
 * right. rank has room for n - 1 entries. Returns the new symbol count. Each
 * pass rescans the word, so this is for short words. */
static size_t bpe_scan(const struct tok *t, int *w, size_t n, int32_t *rank)
{
    for (size_t i = 0; i + 1 < n; i++)
        rank[i] = pair_rank(t, w[i], w[i + 1]);
    while (n > 1) {
        size_t k = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[k])
                k = i;
        if (rank[k] == NO_RANK)
            break;
        int left = w[k], right = w[k + 1], merged = merge_slot(t, pair_key(left, right))->id;
        size_t j = k;
        for (size_t i = k; i < n;) {
            if (i + 1 < n && w[i] == left && w[i + 1] == right) {
                w[j++] = merged;
                i += 2;
            } else {
                w[j++] = w[i++];
            }
        }
        n = j;
        for (size_t i = k ? k - 1 : 0; i + 1 < n; i++)
            rank[i] = pair_rank(t, w[i], w[i + 1]);
    }
    return n;
}

/* Words at least this long go through the heap, shorter ones through the scan
 * (faster on the 3-6 byte words of ordinary text). */
#define BPE_HEAP_MIN 24

/* Append the BPE ids of one pre-token s[0 .. n) (n >= 1; out->ids has room).
 * bpe_scan is quadratic in n, which a long unbroken word makes hurt. For long
 * words a heap keyed (rank, position) yields the same passes in O(n log n):
 * each pass pops every pair of its rank in position order, and the pairs it
 * creates wait until it ends, as they do in bpe(). */
static int bpe_piece(const struct tok *t, struct tok_buf *out, const char *s, size_t n,
                     struct pl_err *err)
{
    int *w = out->ids + out->n;
    for (size_t i = 0; i < n; i++)
        w[i] = t->byte_id[(unsigned char)s[i]];
    if (n == 1) {
        out->n++;
        return PL_OK;
    }
    if (n < BPE_HEAP_MIN) {
        int rc = grow(&out->scratch, &out->scratch_cap, n * sizeof(int32_t), 1, err);
        if (!rc)
            out->n += bpe_scan(t, w, n, out->scratch);
        return rc;
    }
    if (n > INT32_MAX)
        return pl_errf(err, PL_EINVAL, "cannot tokenize a run of %zu bytes without a break", n);
    int rc = grow(&out->scratch, &out->scratch_cap,
                  n * (5 * sizeof(uint64_t) + 2 * sizeof(int32_t)), 1, err);
    if (rc)
        return rc;
    /* A merge removes one symbol and adds at most two pairs: 3n heap entries. */
    uint64_t *heap = out->scratch, *pending = heap + 3 * n;
    int32_t *next = (int32_t *)(pending + 2 * n), *prev = next + n, end = (int32_t)n;
    size_t nh = 0;
    for (int32_t i = 0; i < end; i++) {
        next[i] = i + 1;
        prev[i] = i - 1;
        int32_t r = i + 1 < end ? pair_rank(t, w[i], w[i + 1]) : NO_RANK;
        if (r != NO_RANK)
            heap_push(heap, &nh, (uint64_t)r << 32 | (uint32_t)i);
    }
    while (nh > 0) {
        uint64_t rank = heap[0] >> 32;
        const int32_t *m = t->merges + 3 * rank; /* left, right, merged */
        size_t np = 0;
        while (nh > 0 && heap[0] >> 32 == rank) {
            int32_t i = (int32_t)(uint32_t)heap_pop(heap, &nh), j = next[i];
            /* Stale when an earlier merge took either symbol (dead ones are -1). */
            if (w[i] != m[0] || j == end || w[j] != m[1])
                continue;
            w[i] = m[2];
            w[j] = -1;
            next[i] = next[j];
            if (next[i] < end)
                prev[next[i]] = i;
            int32_t r = prev[i] >= 0 ? pair_rank(t, w[prev[i]], w[i]) : NO_RANK;
            if (r != NO_RANK)
                pending[np++] = (uint64_t)r << 32 | (uint32_t)prev[i];
            r = next[i] < end ? pair_rank(t, w[i], w[next[i]]) : NO_RANK;
            if (r != NO_RANK)
                pending[np++] = (uint64_t)r << 32 | (uint32_t)i;
        }
        for (size_t k = 0; k < np; k++)
            heap_push(heap, &nh, pending[k]);
    }
    /* Symbol 0 always survives: a merge keeps its left symbol. */
    size_t k = 0;
    for (int32_t i = 0; i < end; i = next[i])
        w[k++] = w[i];
    out->n += k;
    return PL_OK;
}

/* Encode text without special tokens; out->ids has room for len more ids. */
static int encode_plain(const struct tok *t, struct tok_buf *out, const char *text, size_t len,
                        struct pl_err *err)
{
    if (t->kind == TOK_BYTE) {
        for (size_t i = 0; i < len; i++)
            out->ids[out->n++] = (unsigned char)text[i];
        return PL_OK;
    }
    if (!out->match && !(out->match = pcre2_match_data_create(1, t->pcre_ctx)))
        return pl_oom(err, "token buffer");
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(out->match);
    size_t at = 0;
    while (at < len) {
        int m = pcre2_match(t->re, (PCRE2_SPTR)text, len, at, 0, out->match, NULL);
        size_t start = len, stop = len;
        if (m >= 0) {
            start = ov[0];
            stop = ov[1];
        } else if (m == PCRE2_ERROR_NOMEMORY) {
            return pl_oom(err, "tokenizer regex");
        } else if (m != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            return pl_errf(err, PL_EFORMAT, "tokenizer regex failed: %s", (const char *)msg);
        }
        /* Bytes the regex skipped are invalid UTF-8: one pre-token per run. */
        int rc = start > at ? bpe_piece(t, out, text + at, start - at, err) : PL_OK;
        if (!rc && stop > start)
            rc = bpe_piece(t, out, text + start, stop - start, err);
        if (rc)
            return rc;
        at = stop;
    }
    return PL_OK;
}

static const char *find_eot(const char *p, const char *end)
{
    while ((size_t)(end - p) >= EOT_LEN) {
        const char *q = memchr(p, '<', (size_t)(end - p) - EOT_LEN + 1);
        if (!q || memcmp(q, EOT, EOT_LEN) == 0)
            return q;
        p = q + 1;
    }
    return NULL;
}

int tok_encode(const struct tok *t, struct tok_buf *out, const char *text, size_t len,
               unsigned flags, struct pl_err *err)
{
    size_t n0 = out->n;
    /* Never more ids than bytes: so no growing inside the loop. */
    int rc = grow((void **)&out->ids, &out->cap, out->n + len, sizeof *out->ids, err);
    const char *p = text, *end = text + len;
    while (!rc) {
        const char *eot = flags & TOK_SPECIAL ? find_eot(p, end) : NULL;
        rc = encode_plain(t, out, p, (size_t)((eot ? eot : end) - p), err);
        if (!eot)
            break;
        out->ids[out->n++] = t->eos;
        p = eot + EOT_LEN;
    }
    if (rc)
        out->n = n0;
    return rc;
}

/* ---- decoding ---- */

const char *tok_piece(const struct tok *t, int id, size_t *len)
{
    if (id < 0 || id >= t->vocab_size)
        return NULL;
    *len = t->offset[id + 1] - t->offset[id];
    return t->text + t->offset[id];
}

int tok_decode(const struct tok *t, char **text, size_t *len, const int *ids, size_t n,
               struct pl_err *err)
{
    *text = NULL;
    size_t total = 0, k;
    for (size_t i = 0; i < n; i++) {
        if (!tok_piece(t, ids[i], &k))
            return pl_errf(err, PL_EINVAL, "token id %d out of range (vocab size %d)", ids[i],
                           t->vocab_size);
        total += k;
    }
    char *s = pl_malloc(total + 1);
    if (!s)
        return pl_oom(err, "decoded text");
    char *w = s;
    for (size_t i = 0; i < n; i++) {
        const char *piece = tok_piece(t, ids[i], &k);
        memcpy(w, piece, k);
        w += k;
    }
    *w = '\0';
    *text = s;
    *len = total;
    return PL_OK;
}
