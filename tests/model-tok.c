#include "model/tok.h"
#include "tests/tap.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE "tests/data/tok_gpt2.json"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = NULL;
    size_t cap = 0, n = 0, got;
    do {
        cap = cap ? 2 * cap : 65536;
        s = realloc(s, cap + 1);
        got = fread(s + n, 1, cap - n, f);
        n += got;
    } while (n == cap);
    fclose(f);
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void clear_dir(const char *dir)
{
    static const char *const names[] = {"vocab.json", "merges.txt", "encoder.json", "vocab.bpe",
                                        "in.jsonl"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
}

static int same_ids(const int *a, size_t na, const int *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* Encode then decode s; 1 when the bytes come back unchanged. */
static int round_trips(const struct tok *t, const char *s, size_t n)
{
    struct tok_buf b = {0};
    struct pl_err err = {0};
    char *back = NULL;
    size_t len = 0;
    int ok = tok_encode(t, &b, s, n, 0, &err) == PL_OK &&
             tok_decode(t, &back, &len, b.ids, b.n, &err) == PL_OK && len == n &&
             memcmp(back, s, n) == 0;
    pl_free(back);
    tok_buf_release(&b);
    return ok;
}

static int random_round_trips(const struct tok *t, int count, uint64_t seed)
{
    struct pl_rng rng;
    pl_rng_seed(&rng, seed);
    char s[400];
    int bad = 0;
    for (int i = 0; i < count; i++) {
        size_t n = pl_rng_next(&rng) % sizeof s;
        for (size_t k = 0; k < n; k++) {
            /* Half the strings lean on spaces, ASCII and UTF-8 lead bytes, where
             * regex pieces and invalid sequences meet. */
            static const char pick[] = " \n\ta'1.\xc3\xa9\xe6\x97\xa5\xf0\x9f\x91\x8d\x80\xff";
            uint64_t r = pl_rng_next(&rng);
            s[k] = i % 2 ? (char)r : pick[r % (sizeof pick - 1)];
        }
        bad += !round_trips(t, s, n);
    }
    return bad;
}

/* ---- the byte tokenizer ---- */

static void test_byte(const char *tmp)
{
    struct tok t;
    struct pl_err err = {0};
    struct tok_buf b = {0};
    tap_is_int(tok_init_byte(&t, &err), PL_OK, "byte: init");
    tap_ok(t.kind == TOK_BYTE && tok_vocab_size(&t) == 257 && tok_eos(&t) == 256,
           "byte: 257 ids, eos 256");

    tok_encode(&t, &b, "hi\xff", 3, 0, &err);
    int want_hi[] = {104, 105, 255};
    tap_ok(same_ids(b.ids, b.n, want_hi, 3), "byte: ids are the bytes");

    b.n = 0;
    tok_encode(&t, &b, "a<|endoftext|>b", 15, TOK_SPECIAL, &err);
    int want_special[] = {97, 256, 98};
    tap_ok(same_ids(b.ids, b.n, want_special, 3), "byte: TOK_SPECIAL makes <|endoftext|> eos");
    b.n = 0;
    tok_encode(&t, &b, "a<|endoftext|>b", 15, 0, &err);
    tap_is_int((long)b.n, 15, "byte: without TOK_SPECIAL <|endoftext|> is plain text");

    size_t len;
    const char *piece = tok_piece(&t, 256, &len);
    tap_ok(piece && len == 13 && memcmp(piece, "<|endoftext|>", 13) == 0,
           "byte: eos decodes to <|endoftext|>");
    tap_ok(!tok_piece(&t, 257, &len) && !tok_piece(&t, -1, &len), "byte: tok_piece range check");

    int bad_ids[] = {1, 257};
    char *text = (char *)1;
    tap_is_int(tok_decode(&t, &text, &len, bad_ids, 2, &err), PL_EINVAL, "byte: decode bad id");
    tap_is_str(err.msg, "token id 257 out of range (vocab size 257)", "byte: decode message");
    tap_ok(text == NULL, "byte: failed decode leaves no text");

    tap_is_int(random_round_trips(&t, 300, 1), 0, "byte: random byte strings round-trip");

    tap_is_int(tok_save(&t, tmp, &err), PL_OK, "byte: save writes nothing and succeeds");
    char path[512];
    snprintf(path, sizeof path, "%s/vocab.json", tmp);
    tap_ok(access(path, F_OK) != 0, "byte: no vocab.json written");
    tok_release(&t);
    tok_release(&t);
    tap_ok(t.kind == 0 && t.text == NULL, "byte: release twice is safe");

    tap_is_int(tok_load(&t, tmp, &err), PL_OK, "load: folder without BPE files");
    tap_is_int(t.kind, TOK_BYTE, "load: gives the byte tokenizer");
    tok_release(&t);

    tap_is_int(tok_load(&t, "/nonexistent/plumb", &err), PL_ENOTFOUND, "load: missing folder");
    tap_is_str(err.msg, "model folder '/nonexistent/plumb' not found", "load: missing message");
    tok_release(&t);
    tok_buf_release(&b);
    tok_buf_release(&b);
}

/* ---- a small BPE written here, for exact expectations and every error ---- */

/* GPT-2's bytes_to_unicode(), written independently of tok.c. */
static void byte_symbol(int b, char out[3])
{
    int n = 0, cp = b;
    for (int x = 0; x <= b; x++) {
        int printable = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174);
        if (!printable)
            n++;
        if (x == b && !printable)
            cp = 255 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = '\0';
    }
}

static const char *const SMALL_TOKENS[] = {"he", "ll", "hell", "hello", "\xc4\xa0w"};
static const char SMALL_MERGES[] = "#version: 0.2\nh e\nl l\nhe ll\nhell o\n\xc4\xa0 w\n";
enum { SMALL_HELLO = 259, SMALL_SPACE_W = 260, SMALL_EOS = 261 };

/* vocab.json: every byte but skip_byte, SMALL_TOKENS, then <|endoftext|> if
 * eos; ids in that order; extra is raw JSON members appended. */
static void write_small_vocab(const char *dir, const char *name, int skip_byte, int eos,
                              const char *extra)
{
    static char json[8192];
    size_t n = 0;
    int id = 0;
    n += (size_t)snprintf(json + n, sizeof json - n, "{");
    for (int b = 0; b < 256; b++) {
        char sym[3];
        byte_symbol(b, sym);
        if (b == skip_byte)
            continue;
        n += (size_t)snprintf(json + n, sizeof json - n, "%s\"%s%s\": %d", id ? ",\n" : "",
                              b == '"' || b == '\\' ? "\\" : "", sym, id);
        id++;
    }
    for (size_t i = 0; i < sizeof SMALL_TOKENS / sizeof *SMALL_TOKENS; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, ",\n\"%s\": %d", SMALL_TOKENS[i], id++);
    if (eos)
        n += (size_t)snprintf(json + n, sizeof json - n, ",\n\"<|endoftext|>\": %d", id++);
    snprintf(json + n, sizeof json - n, "%s}\n", extra);
    write_file(dir, name, json);
}

static void write_small(const char *dir, const char *merges)
{
    clear_dir(dir);
    write_small_vocab(dir, "vocab.json", -1, 1, "");
    write_file(dir, "merges.txt", merges);
}

/* tok_load(dir) must fail with code and the message "<dir>/<file><rest>". */
static void expect_load_error(const char *dir, int code, const char *file, const char *rest,
                              const char *what)
{
    struct tok t;
    struct pl_err err = {0};
    char want[1024];
    snprintf(want, sizeof want, "%s/%s%s", dir, file, rest);
    tap_is_int(tok_load(&t, dir, &err), code, "error code: %s", what);
    tap_is_str(err.msg, want, "error message: %s", what);
    tap_ok(t.kind == 0 && t.text == NULL && t.re == NULL, "released after error: %s", what);
    tok_release(&t);
}

static void encode_is(const struct tok *t, const char *s, const int *want, size_t n,
                      const char *what)
{
    struct tok_buf b = {0};
    struct pl_err err = {0};
    int rc = tok_encode(t, &b, s, strlen(s), 0, &err);
    tap_ok(rc == PL_OK && same_ids(b.ids, b.n, want, n), "%s", what);
    tok_buf_release(&b);
}

static void test_small_bpe(const char *tmp, const char *tmp2)
{
    struct tok t;
    struct pl_err err = {0};
    write_small(tmp, SMALL_MERGES);
    tap_is_int(tok_load(&t, tmp, &err), PL_OK, "small: load");
    tap_ok(t.kind == TOK_BPE && t.vocab_size == 262 && t.eos == SMALL_EOS && t.n_merges == 5,
           "small: 262 tokens, 5 merges, eos last");

    int hello2[] = {SMALL_HELLO, ' ', SMALL_HELLO};
    encode_is(&t, "hello hello", hello2, 3, "small: merges apply in rank order");
    int space_w[] = {SMALL_SPACE_W, 'x'};
    encode_is(&t, " wx", space_w, 2, "small: merges cross the space symbol");
    encode_is(&t, "lll llll", (int[]){257, 'l', ' ', 257, 257}, 5,
              "small: a pair merges left to right, without overlap");
    encode_is(&t, "he\xffhello", (int[]){256, 0xff, SMALL_HELLO}, 3,
              "small: invalid UTF-8 is a pre-token of its own");
    /* Words of 24 bytes and more take the heap path. */
    int hello6[7] = {' '};
    for (int i = 1; i < 7; i++)
        hello6[i] = SMALL_HELLO;
    encode_is(&t, " hellohellohellohellohellohello", hello6, 7, "small: a long word");
    int l25[13];
    for (int i = 0; i < 12; i++)
        l25[i] = 257;
    l25[12] = 'l';
    encode_is(&t, "lllllllllllllllllllllllll", l25, 13,
              "small: a long word merges left to right, without overlap");

    /* Saved files load back to the same tokenizer and save byte-identically. */
    tap_is_int(tok_save(&t, tmp2, &err), PL_OK, "small: save");
    size_t len;
    char path[512];
    snprintf(path, sizeof path, "%s/merges.txt", tmp2);
    char *merges = read_all(path, &len);
    tap_is_str(merges, SMALL_MERGES, "small: merges.txt as written by tok_save");
    free(merges);
    snprintf(path, sizeof path, "%s/vocab.json", tmp2);
    char *vocab1 = read_all(path, NULL);
    struct tok t2;
    tap_is_int(tok_load(&t2, tmp2, &err), PL_OK, "small: load the saved files");
    tap_ok(t2.vocab_size == t.vocab_size && t2.n_merges == t.n_merges && t2.eos == t.eos &&
               memcmp(t2.text, t.text, t.offset[t.vocab_size]) == 0 &&
               memcmp(t2.offset, t.offset, (size_t)(t.vocab_size + 1) * sizeof *t.offset) == 0 &&
               memcmp(t2.merges, t.merges, 3 * (size_t)t.n_merges * sizeof *t.merges) == 0,
           "small: saved tokenizer equals the original");
    tok_save(&t2, tmp2, &err);
    char *vocab2 = read_all(path, NULL);
    tap_is_str(vocab2, vocab1, "small: saving again gives the same vocab.json");
    free(vocab1);
    free(vocab2);
    tok_release(&t2);
    clear_dir(tmp2);

    tap_is_int(random_round_trips(&t, 200, 2), 0, "small: random byte strings round-trip");

    /* Allocation failure N, for every N a load or an encode makes. */
    pl_alloc_fail_at(-1);
    struct tok t3;
    tok_load(&t3, tmp, &err);
    tok_release(&t3);
    long loads = pl_alloc_count(), bad = 0;
    for (long n = 0; n < loads; n++) {
        pl_alloc_fail_at(n);
        int rc = tok_load(&t3, tmp, &err);
        bad += rc != PL_ENOMEM || strncmp(err.msg, "out of memory", 13) != 0 || t3.kind != 0;
        tok_release(&t3);
    }
    pl_alloc_fail_at(-1);
    tap_ok(loads > 5 && bad == 0, "small: each of %ld load allocations failing gives PL_ENOMEM",
           loads);
    static const char both[] = "hello hellohellohellohellohellohello";
    struct tok_buf b = {0};
    tok_encode(&t, &b, both, sizeof both - 1, 0, &err);
    tok_buf_release(&b);
    long encodes = pl_alloc_count();
    bad = 0;
    for (long n = 0; n < encodes; n++) {
        pl_alloc_fail_at(n);
        b.n = 0;
        bad += tok_encode(&t, &b, both, sizeof both - 1, 0, &err) != PL_ENOMEM || b.n != 0;
        tok_buf_release(&b);
    }
    pl_alloc_fail_at(0);
    char *text;
    bad += tok_decode(&t, &text, &len, hello2, 3, &err) != PL_ENOMEM;
    pl_alloc_fail_at(-1);
    tap_ok(encodes >= 4 && bad == 0,
           "small: each of %ld encode allocations, and decode's, failing gives PL_ENOMEM", encodes);
    tok_release(&t);

    /* OpenAI's file names. */
    clear_dir(tmp);
    write_small_vocab(tmp, "encoder.json", -1, 1, "");
    write_file(tmp, "vocab.bpe", SMALL_MERGES);
    tap_is_int(tok_load(&t, tmp, &err), PL_OK, "small: encoder.json + vocab.bpe load");
    tap_ok(t.kind == TOK_BPE && t.n_merges == 5, "small: as BPE");
    tok_release(&t);

    clear_dir(tmp);
    write_small_vocab(tmp, "vocab.json", -1, 1, "");
    char want[600];
    snprintf(want, sizeof want, "'%s/vocab.json' has no 'merges.txt' beside it", tmp);
    tap_is_int(tok_load(&t, tmp, &err), PL_ENOTFOUND, "small: vocab.json alone");
    tap_is_str(err.msg, want, "small: vocab.json alone message");

    write_small(tmp, SMALL_MERGES);
    write_file(tmp, "vocab.json", "{\"a\": 0,\n\"b\": 1,,\n\"c\": 2}");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ":2: not valid JSON", "bad JSON");
    write_file(tmp, "vocab.json", "[0, 1]");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json",
                      ": expected a JSON object mapping tokens to ids", "not an object");
    write_small_vocab(tmp, "vocab.json", -1, 1, ",\n\"xy\": 1.5");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": token 'xy': expected an integer id",
                      "fractional id");
    write_small_vocab(tmp, "vocab.json", -1, 1, ",\n\"xy\": \"7\"");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": token 'xy': expected an integer id",
                      "string id");
    write_small_vocab(tmp, "vocab.json", -1, 1, ",\n\"xy\": 300");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json",
                      ": token 'xy': id 300 out of range (263 tokens)", "id out of range");
    write_small_vocab(tmp, "vocab.json", -1, 1, ",\n\"xy\": 38");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": token 'xy': id 38 already belongs to '&'",
                      "duplicate id");
    write_small_vocab(tmp, "vocab.json", -1, 1, ",\n\"x y\": 262");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": token 'x y': not a byte-level BPE symbol",
                      "space in a token");
    write_small_vocab(tmp, "vocab.json", -1, 1, ",\n\"he\": 262");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": token 'he' appears twice",
                      "repeated token");
    write_small_vocab(tmp, "vocab.json", 'A', 1, "");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": no token for byte 0x41", "missing byte");
    write_small_vocab(tmp, "vocab.json", -1, 0, "");
    expect_load_error(tmp, PL_EFORMAT, "vocab.json", ": no token '<|endoftext|>'", "missing eos");

    write_small(tmp, "#version: 0.2\nh e\nhe\n");
    expect_load_error(tmp, PL_EFORMAT, "merges.txt", ":3: expected two symbols", "one symbol");
    write_small(tmp, "h e\r\nl l x\r\n");
    expect_load_error(tmp, PL_EFORMAT, "merges.txt", ":2: expected two symbols", "three symbols");
    write_small(tmp, "#version: 0.2\nh zz\n");
    expect_load_error(tmp, PL_EFORMAT, "merges.txt", ":2: symbol 'zz' is not in the vocabulary",
                      "unknown symbol");
    write_small(tmp, "#version: 0.2\nh e\n\ne h\n");
    expect_load_error(tmp, PL_EFORMAT, "merges.txt",
                      ":4: merged symbol 'eh' is not in the vocabulary", "unknown merge result");
    write_small(tmp, "#version: 0.2\nh e\nl l\nh e\n");
    expect_load_error(tmp, PL_EFORMAT, "merges.txt", ":4: merge repeats the one of rank 0",
                      "repeated merge");
    clear_dir(tmp);
}

/* ---- GPT-2's own vocabulary against the reference encoder's output ---- */

static void encode_ref(const struct tok *t, struct tok_buf *b, const char *s, size_t n)
{
    struct pl_err err = {0};
    b->n = 0;
    tok_encode(t, b, s, n, 0, &err);
}

static void test_gpt2(const char *tmp)
{
    const char *shared = tap_shared_datasets();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/gpt2-bpe", shared ? shared : ".");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/vocab.bpe", dir);
    if (!shared || access(probe, R_OK) != 0) {
        tap_skip(1, "shared/datasets/gpt2-bpe is absent");
        return;
    }
    struct tok t;
    struct pl_err err = {0};
    tap_is_int(tok_load(&t, dir, &err), PL_OK, "gpt2: load %s", dir);
    if (err.msg[0])
        tap_diag("%s", err.msg);
    tap_ok(t.kind == TOK_BPE && t.vocab_size == 50257 && t.eos == 50256 && t.n_merges == 50000,
           "gpt2: 50257 tokens, 50000 merges, eos 50256");

    size_t len;
    char *json = read_all(FIXTURE, &len);
    cJSON *cases = json ? cJSON_Parse(json) : NULL;
    free(json);
    tap_ok(cJSON_GetArraySize(cases) > 40, "gpt2: fixture %s has its cases", FIXTURE);
    struct tok_buf b = {0};
    const cJSON *c;
    int decoded_bad = 0;
    cJSON_ArrayForEach(c, cases)
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *id;
        int *want = malloc(((size_t)cJSON_GetArraySize(ids) + 1) * sizeof *want);
        size_t n = 0;
        cJSON_ArrayForEach(id, ids) want[n++] = id->valueint;
        encode_ref(&t, &b, text, strlen(text));
        char label[64];
        size_t k = 0;
        for (const char *p = text; *p && k < 48; p++)
            label[k++] = (unsigned char)*p < 0x20 ? '~' : *p;
        label[k] = '\0';
        if (!tap_ok(same_ids(b.ids, b.n, want, n), "gpt2: encode '%s'", label)) {
            for (size_t i = 0; i < b.n; i++)
                tap_diag("got id %d", b.ids[i]);
        }
        decoded_bad += !round_trips(&t, text, strlen(text));
        free(want);
    }
    tap_is_int(decoded_bad, 0, "gpt2: every fixture text decodes back");
    cJSON_Delete(cases);

    /* Special tokens split the text first, as tiktoken and Hugging Face do. */
    struct tok_buf parts = {0};
    tok_encode(&t, &parts, "a  ", 3, 0, &err);
    parts.ids[parts.n++] = 50256;
    tok_encode(&t, &parts, "<|end", 5, 0, &err);
    b.n = 0;
    tok_encode(&t, &b, "a  <|endoftext|><|end", 21, TOK_SPECIAL, &err);
    tap_ok(same_ids(b.ids, b.n, parts.ids, parts.n), "gpt2: TOK_SPECIAL");

    /* Appending: a prompt then its response into one buffer. */
    b.n = 0;
    tok_encode(&t, &b, "hello", 5, 0, &err);
    tok_encode(&t, &b, " world", 6, 0, &err);
    tap_ok(same_ids(b.ids, b.n, (int[]){31373, 995}, 2), "gpt2: encode appends");

    /* Invalid UTF-8: the bytes the regex cannot match form one pre-token a run. */
    parts.n = 0;
    tok_encode(&t, &parts, "ab", 2, 0, &err);
    tok_encode(&t, &parts, "\xff\xfe", 2, 0, &err);
    tok_encode(&t, &parts, " cd", 3, 0, &err);
    encode_ref(&t, &b, "ab\xff\xfe cd", 7);
    tap_ok(same_ids(b.ids, b.n, parts.ids, parts.n), "gpt2: invalid bytes are their own piece");
    static const char *const invalid[] = {
        "\xff",
        "caf\xe9 au lait",
        "\xe6\x97",
        "\xe6\x97\xa5\xe6",
        "overlong \xc0\xaf",
        "\xed\xa0\x80 surrogate",
        "\xf4\x90\x80\x80",
        "a\x80\x80\x80-b",
        "  \xff  x",
        "<|endof\xfftext|>",
        "don\xe2\x80\x99t \xe2\x80",
    };
    int bad = !round_trips(&t, "\0\0 \0a\0", 6);
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
        bad += !round_trips(&t, invalid[i], strlen(invalid[i]));
    tap_is_int(bad, 0, "gpt2: invalid UTF-8 round-trips");
    tap_is_int(random_round_trips(&t, 500, 3), 0, "gpt2: random byte strings round-trip");

    /* Long single pieces: a run of spaces and one long word. */
    char *big = malloc(200000);
    memset(big, ' ', 100000);
    memset(big + 100000, 'a', 100000);
    tap_ok(round_trips(&t, big, 200000), "gpt2: 100k spaces then a 100k-letter word");
    free(big);

    tap_is_int(tok_save(&t, tmp, &err), PL_OK, "gpt2: save");
    struct tok t2;
    tap_is_int(tok_load(&t2, tmp, &err), PL_OK, "gpt2: load vocab.json + merges.txt");
    tap_ok(t2.vocab_size == t.vocab_size && t2.n_merges == t.n_merges && t2.eos == t.eos &&
               memcmp(t2.text, t.text, t.offset[t.vocab_size]) == 0 &&
               memcmp(t2.merges, t.merges, 3 * (size_t)t.n_merges * sizeof *t.merges) == 0,
           "gpt2: the saved tokenizer equals the original");
    tok_release(&t2);
    clear_dir(tmp);
    tok_buf_release(&parts);
    tok_buf_release(&b);
    tok_release(&t);
}

int main(void)
{
    char tmp[] = "/tmp/plumb-tok-XXXXXX", tmp2[] = "/tmp/plumb-tok-XXXXXX";
    if (!mkdtemp(tmp) || !mkdtemp(tmp2)) {
        tap_skip_all("cannot make a temporary folder");
        return 0;
    }
    test_byte(tmp);
    test_small_bpe(tmp, tmp2);
    test_gpt2(tmp);
    rmdir(tmp);
    rmdir(tmp2);
    return tap_done();
}
