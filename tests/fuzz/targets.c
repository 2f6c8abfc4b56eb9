/* Fuzz targets: see targets.h. Each target is a function of the input alone: it writes its
 * files afresh, so no state carries over from one input to the next (the tiny models of the
 * weights and state targets are made once, and tiny_models says why that is safe). */
#include "tests/fuzz/targets.h"

#include "datasets/constitution.h"
#include "datasets/ds.h"
#include "datasets/evalsets.h"
#include "datasets/sim.h"
#include "eval/world.h"
#include "model/ckpt.h"
#include "model/gpt.h"
#include "model/io.h"
#include "model/pl.h"
#include "model/tok.h"
#include "reports/html.h"
#include "reports/md.h"
#include "reports/report.h"
#include "trainer/train.h"
#include "tui/agree.h"
#include "tui/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- findings ---- */

static _Noreturn void finding(const char *target, const char *what, const char *detail)
{
    fprintf(stderr, "fuzz %s: %s%s%s\n", target, what, detail ? ": " : "", detail ? detail : "");
    fflush(stderr);
    abort();
}

/* An error must be one of pl.h's codes with its message; PL_OK leaves nothing to check. */
static void check_rc(const char *target, int rc, const struct pl_err *err)
{
    if (getenv("PLUMB_FUZZ_VERBOSE")) /* what each input gives, to check a new seed */
        fprintf(stderr, "fuzz %s: %s\n", target, rc == PL_OK ? "ok" : err->msg);
    if (rc == PL_OK)
        return;
    if (rc < PL_EUSAGE || rc > PL_ENOMEM)
        finding(target, "a return code outside pl.h's", NULL);
    if (err->code != rc)
        finding(target, "err->code differs from the code returned", err->msg);
    if (!err->msg[0])
        finding(target, "an error without a message", pl_strerror(rc));
}

/* Touch every byte of a string the parser promised, so that ASan sees a dangling one. */
static void check_str(const char *target, const char *s, const char *what)
{
    if (!s)
        finding(target, "a NULL string", what);
    volatile size_t n = strlen(s);
    (void)n;
}

/* ---- files ---- */

static char fz_root[64];

static void remove_tree(const char *path, int depth)
{
    DIR *d = depth < 3 ? opendir(path) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *sub = io_path_join(path, e->d_name);
            if (sub)
                remove_tree(sub, depth + 1);
            pl_free(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void remove_root(void)
{
    if (fz_root[0])
        remove_tree(fz_root, 0);
}

/* Folder fz_root/sub (made once per process, emptied at exit). */
static const char *fz_dir(const char *sub)
{
    if (!fz_root[0]) {
        /* Memory, not disk, when there is a tmpfs: thousands of small files a second. */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_root, sizeof fz_root, "%s/plumb-fuzz-XXXXXX", base);
        if (!mkdtemp(fz_root))
            finding("setup", "cannot make a folder under /tmp", strerror(errno));
        atexit(remove_root);
    }
    static char path[8][256];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, sizeof path[0], "%s/%s", fz_root, sub);
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        finding("setup", "cannot make a folder", p);
    return p;
}

/* dir/name; the last 16 results stay valid. */
static const char *fz_path(const char *dir, const char *name)
{
    static char path[16][320];
    static int k;
    char *p = path[k++ % 16];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    return p;
}

/* A new file each time: ext4 writes a file rewritten in place through to disk on close. */
static void fz_write(const char *path, const void *data, size_t n)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) || close(fd) != 0)
        finding("setup", "cannot write", path);
}

/* Split data at lines that hold only FUZZ_SPLIT into at most n pieces (the last takes the
 * rest; a piece keeps the newline before the split line); returns how many there are. */
static int fz_split(const uint8_t *data, size_t size, const uint8_t **piece, size_t *len, int n)
{
    const size_t sl = sizeof FUZZ_SPLIT - 1;
    int k = 0;
    size_t start = 0, line = 0;
    while (line < size && k < n - 1) {
        const uint8_t *nl = memchr(data + line, '\n', size - line);
        size_t end = nl ? (size_t)(nl - data) : size;
        if (end - line == sl && memcmp(data + line, FUZZ_SPLIT, sl) == 0) {
            piece[k] = data + start;
            len[k++] = line - start;
            start = nl ? end + 1 : size;
        }
        line = end + 1;
    }
    piece[k] = data + start;
    len[k++] = size - start;
    return k;
}

/* Write the pieces of data as the files names[0, n) of dir; files without a piece are removed. */
static void fz_files(const char *dir, const char *const *names, int n, const uint8_t *data,
                     size_t size)
{
    const uint8_t *piece[8];
    size_t len[8];
    int k = fz_split(data, size, piece, len, n);
    for (int i = 0; i < n; i++) {
        const char *p = fz_path(dir, names[i]);
        if (i < k)
            fz_write(p, piece[i], len[i]);
        else
            unlink(p);
    }
}

/* One input as one file dir/name. */
static const char *fz_file(const char *sub, const char *name, const uint8_t *data, size_t size)
{
    const char *p = fz_path(fz_dir(sub), name);
    fz_write(p, data, size);
    return p;
}

/* ---- records ---- */

int fuzz_prompts(const uint8_t *data, size_t size)
{
    const char *path = fz_file("prompts", "prompts.jsonl", data, size);
    struct pl_err err = {0};
    struct ds_prompts set;
    memset(&set, 0, sizeof set);
    int rc = ds_prompts_init(&set, path, size & 1 ? IO_SKIP_BAD_LINES : 0, &err);
    check_rc("prompts", rc, &err);
    for (size_t i = 0; rc == PL_OK && i < set.n; i++) {
        check_str("prompts", set.recs[i].id, "id");
        check_str("prompts", set.recs[i].prompt, "prompt");
        if (ds_prompts_find(&set, set.recs[i].id) != (int)i)
            finding("prompts", "ds_prompts_find does not find a record's id", set.recs[i].id);
    }
    ds_prompts_release(&set);
    ds_prompts_release(&set);
    return 0;
}

static void sft_file(const char *target, const char *name, const uint8_t *data, size_t size)
{
    const char *path = fz_file(target, name, data, size);
    struct pl_err err = {0};
    struct ds_sft set;
    memset(&set, 0, sizeof set);
    int rc = ds_sft_init(&set, path, size & 1 ? IO_SKIP_BAD_LINES : 0, &err);
    check_rc(target, rc, &err);
    for (size_t i = 0; rc == PL_OK && i < set.n; i++) {
        check_str(target, set.recs[i].prompt, "prompt");
        check_str(target, set.recs[i].response, "response");
    }
    ds_sft_release(&set);
    ds_sft_release(&set);
}

int fuzz_sft(const uint8_t *data, size_t size)
{
    sft_file("sft", "sft.jsonl", data, size);
    return 0;
}

int fuzz_sft_csv(const uint8_t *data, size_t size)
{
    sft_file("sft_csv", "sft.csv", data, size);
    return 0;
}

/* Every preference group as ds.h promises it: texts, and pairs of two different texts. */
static void prefs_file(const char *target, const char *name, const uint8_t *data, size_t size)
{
    const char *path = fz_file(target, name, data, size);
    struct pl_err err = {0};
    struct ds_prefs set;
    memset(&set, 0, sizeof set);
    int rc = ds_prefs_load(&set, path, size & 1 ? IO_SKIP_BAD_LINES : 0, &err);
    check_rc(target, rc, &err);
    long pairs = 0;
    for (size_t i = 0; rc == PL_OK && i < set.n; i++) {
        const struct ds_pref_group *g = &set.groups[i];
        check_str(target, g->prompt, "prompt");
        if (g->n_texts < 1 || g->n_texts > DS_PREF_MAX_TEXTS || g->n_pairs < 1)
            finding(target, "a group without texts or pairs", g->prompt);
        for (int t = 0; t < g->n_texts; t++)
            check_str(target, g->texts[t], "completion");
        for (int p = 0; p < g->n_pairs; p++) {
            const struct ds_pref_pair *q = &g->pairs[p];
            if (q->better < 0 || q->better >= g->n_texts || q->worse < 0 ||
                q->worse >= g->n_texts || q->better == q->worse)
                finding(target, "a pair whose indices are not two texts of its group", NULL);
            if (!(q->p >= 0.0 && q->p <= 1.0))
                finding(target, "a pair probability outside [0, 1]", NULL);
        }
        pairs += g->n_pairs;
    }
    if (rc == PL_OK && pairs != set.n_pairs)
        finding(target, "n_pairs is not the sum of the groups' pairs", NULL);
    ds_prefs_release(&set);
    ds_prefs_release(&set);
}

int fuzz_labels(const uint8_t *data, size_t size)
{
    prefs_file("labels", "labels.jsonl", data, size);
    /* The same file as `plumb agree` reads it. */
    struct tui_agree_set set;
    memset(&set, 0, sizeof set);
    struct pl_err err = {0};
    int rc = tui_agree_load(&set, fz_path(fz_dir("labels"), "labels.jsonl"), &err);
    check_rc("labels", rc, &err);
    for (size_t i = 0; rc == PL_OK && i < set.n; i++)
        for (int j = 0; j < set.r[i].k; j++)
            if (set.r[i].level[j] < 1 || set.r[i].level[j] > set.r[i].k)
                finding("labels", "a ranking level outside 1..k", set.r[i].id);
    if (rc == PL_OK) {
        struct tui_agree g;
        rc = tui_agree_init(&g, &set, &err);
        check_rc("labels", rc, &err);
        tui_agree_release(&g);
        tui_agree_release(&g);
    }
    tui_agree_set_release(&set);
    tui_agree_set_release(&set);
    return 0;
}

int fuzz_pairs(const uint8_t *data, size_t size)
{
    prefs_file("pairs", "pairs.jsonl", data, size);
    return 0;
}

int fuzz_hh(const uint8_t *data, size_t size)
{
    prefs_file("hh", "hh.jsonl", data, size);
    /* The prompt length on its own: two NUL-terminated halves of the input. */
    const uint8_t *piece[2];
    size_t len[2];
    int k = fz_split(data, size, piece, len, 2);
    char *a = pl_malloc(len[0] + 1), *b = pl_malloc((k > 1 ? len[1] : 0) + 1);
    if (!a || !b)
        finding("hh", "out of memory", NULL);
    memcpy(a, piece[0], len[0]);
    a[len[0]] = '\0';
    if (k > 1)
        memcpy(b, piece[1], len[1]);
    b[k > 1 ? len[1] : 0] = '\0';
    size_t n = ds_hh_prompt_len(a, b);
    if (n > strlen(a) || n > strlen(b) || strncmp(a, b, n) != 0)
        finding("hh", "ds_hh_prompt_len beyond the common prefix", NULL);
    pl_free(a);
    pl_free(b);
    return 0;
}

int fuzz_samples(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"samples.jsonl", "labels.jsonl"};
    const char *dir = fz_dir("samples");
    fz_files(dir, names, 2, data, size);
    struct pl_err err = {0};
    struct tui_items items;
    int rc = tui_items_init(&items, fz_path(dir, names[0]), &err);
    check_rc("samples", rc, &err);
    for (size_t i = 0; rc == PL_OK && i < items.n; i++) {
        const struct tui_item *it = &items.v[i];
        check_str("samples", it->id, "id");
        check_str("samples", it->prompt, "prompt");
        if (it->k < TUI_MIN_K || it->k > TUI_MAX_K)
            finding("samples", "an item with a number of completions out of range", it->id);
        for (int j = 0; j < it->k; j++)
            check_str("samples", it->completions[j], "completion");
        if (tui_items_find(&items, it->id) != (long)i)
            finding("samples", "tui_items_find does not find an item's id", it->id);
    }
    if (rc == PL_OK) {
        struct tui_state s;
        rc = tui_state_init(&s, &items, "fuzzer", size & 1, size, (int)(size % 3), &err);
        check_rc("samples", rc, &err);
        long offset = 0, lineno = 0;
        if (rc == PL_OK) {
            rc = tui_state_read(&s, fz_path(dir, names[1]), &offset, &lineno, true, &err);
            check_rc("samples", rc, &err);
        }
        if (rc == PL_OK)
            tui_state_start(&s, 0.0);
        tui_state_release(&s);
        tui_state_release(&s);
    }
    tui_items_release(&items);
    tui_items_release(&items);
    return 0;
}

/* ---- CSV and the eval sets ---- */

int fuzz_csv(const uint8_t *data, size_t size)
{
    const char *path = fz_file("csv", "data.csv", data, size);
    struct pl_err err = {0};
    struct ds_csv t;
    memset(&t, 0, sizeof t);
    int rc = ds_csv_init(&t, path, size & 1 ? IO_SKIP_BAD_LINES : 0, &err);
    check_rc("csv", rc, &err);
    for (size_t c = 0; rc == PL_OK && c < t.ncols; c++) {
        size_t col = 0;
        check_str("csv", t.names[c], "column name");
        int r2 = ds_csv_column(&t, t.names[c], &col, &err);
        if (r2 != PL_OK || col > c || strcmp(t.names[col], t.names[c]) != 0)
            finding("csv", "ds_csv_column does not find a column of the header", t.names[c]);
    }
    for (size_t i = 0; rc == PL_OK && i < t.nrows * t.ncols; i++)
        check_str("csv", t.cells[i], "cell");
    ds_csv_release(&t);
    ds_csv_release(&t);
    return 0;
}

static void check_tqa(const char *target, const struct ds_tqa *set)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct ds_tqa_item *it = &set->items[i];
        check_str(target, it->question, "question");
        if (it->n_mc1 < 1 || it->mc1_answer < 0 || it->mc1_answer >= it->n_mc1)
            finding(target, "an MC1 answer that is not one of its choices", it->question);
        for (int j = 0; j < it->n_mc1; j++)
            check_str(target, it->mc1[j], "mc1 choice");
        for (int j = 0; j < it->n_mc2; j++) {
            check_str(target, it->mc2[j], "mc2 choice");
            volatile bool b = it->mc2_true[j];
            (void)b;
        }
        for (int j = 0; j < it->n_correct; j++)
            check_str(target, it->correct[j], "correct answer");
        for (int j = 0; j < it->n_incorrect; j++)
            check_str(target, it->incorrect[j], "incorrect answer");
    }
}

static void check_mc(const char *target, const struct ds_mc *set)
{
    for (size_t i = 0; i < set->n; i++) {
        const struct ds_mc_item *it = &set->items[i];
        check_str(target, it->question, "question");
        if (it->n_choices < 2 || it->answer < 0 || it->answer >= it->n_choices)
            finding(target, "an answer that is not one of at least two choices", it->question);
        for (int j = 0; j < it->n_choices; j++)
            check_str(target, it->choices[j], "choice");
    }
}

static void tqa_file(const char *target, const char *name, const uint8_t *data, size_t size)
{
    const char *path = fz_file(target, name, data, size);
    struct pl_err err = {0};
    struct ds_tqa set;
    memset(&set, 0, sizeof set);
    int rc = ds_tqa_init(&set, path, &err);
    check_rc(target, rc, &err);
    if (rc == PL_OK)
        check_tqa(target, &set);
    ds_tqa_release(&set);
    ds_tqa_release(&set);
    struct ds_mc mc;
    memset(&mc, 0, sizeof mc);
    err = (struct pl_err){0};
    rc = ds_mc_init(&mc, path, &err);
    check_rc(target, rc, &err);
    if (rc == PL_OK)
        check_mc(target, &mc);
    ds_mc_release(&mc);
    ds_mc_release(&mc);
}

int fuzz_tqa_csv(const uint8_t *data, size_t size)
{
    tqa_file("tqa_csv", "TruthfulQA.csv", data, size);
    return 0;
}

int fuzz_tqa_json(const uint8_t *data, size_t size)
{
    tqa_file("tqa_json", "mc_task.json", data, size);
    return 0;
}

static void pairs_file(const char *target, const char *name, const uint8_t *data, size_t size)
{
    const char *path = fz_file(target, name, data, size);
    struct pl_err err = {0};
    struct ds_pairs set;
    memset(&set, 0, sizeof set);
    int rc = ds_pairs_init(&set, path, &err);
    check_rc(target, rc, &err);
    for (size_t i = 0; rc == PL_OK && i < set.n; i++) {
        check_str(target, set.items[i].more, "more");
        check_str(target, set.items[i].less, "less");
        check_str(target, set.items[i].type, "type");
        if (!set.items[i].more[0] || !set.items[i].less[0])
            finding(target, "an empty sentence accepted", NULL);
    }
    ds_pairs_release(&set);
    ds_pairs_release(&set);
}

int fuzz_crows_csv(const uint8_t *data, size_t size)
{
    pairs_file("crows_csv", "crows_pairs.csv", data, size);
    return 0;
}

int fuzz_bias_pairs(const uint8_t *data, size_t size)
{
    pairs_file("bias_pairs", "bias_pairs.jsonl", data, size);
    return 0;
}

int fuzz_mc(const uint8_t *data, size_t size)
{
    const char *path = fz_file("mc", "mc_eval.jsonl", data, size);
    struct pl_err err = {0};
    struct ds_mc set;
    memset(&set, 0, sizeof set);
    int rc = ds_mc_init(&set, path, &err);
    check_rc("mc", rc, &err);
    if (rc == PL_OK)
        check_mc("mc", &set);
    ds_mc_release(&set);
    ds_mc_release(&set);
    return 0;
}

int fuzz_bbq(const uint8_t *data, size_t size)
{
    const char *path = fz_file("bbq", "bbq.jsonl", data, size);
    struct pl_err err = {0};
    struct ds_bbq set;
    memset(&set, 0, sizeof set);
    int rc = ds_bbq_load(&set, path, &err);
    check_rc("bbq", rc, &err);
    for (size_t i = 0; rc == PL_OK && i < set.n; i++) {
        const struct ds_bbq_item *it = &set.items[i];
        check_str("bbq", it->context, "context");
        check_str("bbq", it->question, "question");
        check_str("bbq", it->category, "category");
        for (int j = 0; j < 3; j++) {
            check_str("bbq", it->ans[j], "answer");
            check_str("bbq", it->info[j][0], "answer_info");
            check_str("bbq", it->info[j][1], "answer_info");
        }
        for (int j = 0; j < it->n_stereotyped; j++)
            check_str("bbq", it->stereotyped[j], "stereotyped group");
        if (it->label < 0 || it->label > 2)
            finding("bbq", "a label outside 0..2", NULL);
    }
    ds_bbq_release(&set);
    ds_bbq_release(&set);
    return 0;
}

/* ---- checkpoints ---- */

int fuzz_config(const uint8_t *data, size_t size)
{
    char *text = pl_malloc(size + 1);
    if (!text)
        finding("config", "out of memory", NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    struct gpt_config cfg;
    struct pl_err err = {0};
    int rc = ckpt_config_parse(text, "config.json", &cfg, &err);
    check_rc("config", rc, &err);
    if (rc == PL_OK && gpt_config_check(&cfg, &err) != PL_OK)
        finding("config", "a parsed config that gpt_config_check refuses", err.msg);
    if (rc == PL_OK) {
        struct gpt_opts opts = {.max_batch = 1, .max_seq = cfg.n_positions};
        volatile uint64_t bytes = gpt_memory_bytes(&cfg, &opts);
        (void)bytes;
        /* ckpt.h: the writer refuses only what the parser refuses, and what it writes reads
         * back as the same config. */
        const char *dir = fz_dir("config");
        struct gpt_config back;
        if (ckpt_config_write(dir, &cfg, &err) != PL_OK)
            finding("config", "a parsed config that ckpt_config_write refuses", err.msg);
        if (ckpt_config_read(dir, &back, &err) != PL_OK)
            finding("config", "a written config.json that does not read back", err.msg);
        if (back.vocab_size != cfg.vocab_size || back.n_positions != cfg.n_positions ||
            back.n_embd != cfg.n_embd || back.n_layer != cfg.n_layer ||
            back.n_head != cfg.n_head || back.layer_norm_epsilon != cfg.layer_norm_epsilon ||
            back.bos_token_id != cfg.bos_token_id || back.eos_token_id != cfg.eos_token_id ||
            strcmp(back.tokenizer, cfg.tokenizer) != 0 || back.score_head != cfg.score_head ||
            (cfg.score_head &&
             (back.reward_mean != cfg.reward_mean || back.reward_std != cfg.reward_std)))
            finding("config", "config.json reads back as another config", NULL);
    }
    pl_free(text);
    return 0;
}

static enum ckpt_dtype get_dtype(enum ckpt_dtype d)
{
    return d == CKPT_F16 || d == CKPT_BF16 ? CKPT_F32 : d;
}

int fuzz_safetensors(const uint8_t *data, size_t size)
{
    const char *path = fz_file("safetensors", "model.safetensors", data, size);
    struct pl_err err = {0};
    struct ckpt_file f;
    memset(&f, 0, sizeof f);
    int rc = ckpt_file_open(&f, path, &err);
    check_rc("safetensors", rc, &err);
    for (int i = 0; rc == PL_OK && i < f.n; i++) {
        const struct ckpt_tensor *t = &f.tensors[i];
        check_str("safetensors", t->name, "tensor name");
        if (ckpt_file_find(&f, t->name) != t)
            finding("safetensors", "ckpt_file_find does not find a tensor", t->name);
        if (t->ndim < 0 || t->ndim > CKPT_MAX_DIM)
            finding("safetensors", "a tensor with too many dimensions", t->name);
        size_t numel = ckpt_tensor_numel(t);
        if (numel > (1u << 20))
            continue;
        enum ckpt_dtype d = get_dtype(t->dtype);
        void *out = pl_malloc((numel ? numel : 1) * ckpt_dtype_size(d));
        if (!out)
            finding("safetensors", "out of memory", NULL);
        int r2 = ckpt_file_get(&f, t->name, d, out, numel, &err);
        if (r2 != PL_OK)
            finding("safetensors", "a validated tensor cannot be read", err.msg);
        pl_free(out);
    }
    if (rc == PL_OK) {
        const char *m = ckpt_file_meta(&f, "format");
        if (m)
            check_str("safetensors", m, "metadata");
    }
    ckpt_file_release(&f);
    ckpt_file_release(&f);
    return 0;
}

/* The tiny shape of the weights and state targets: 292 parameters, so seeds stay small. */
static struct gpt_config tiny_config(void)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 8;
    c.n_positions = 2;
    c.n_embd = 4;
    c.n_layer = 1;
    c.n_head = 1;
    c.bos_token_id = c.eos_token_id = 7;
    return c;
}

/* Made once per process (pl_alloc_big rounds each buffer up to 2 MiB and touches it, too slow
 * for every input); atexit releases them. A failed load changes no weight, and a resume sets
 * every weight and moment from the state file, so no input sees what an earlier one left. */
static struct gpt tiny_lm, tiny_rm, tiny_train;

static void tiny_release(void)
{
    gpt_release(&tiny_lm);
    gpt_release(&tiny_rm);
    gpt_release(&tiny_train);
}

static void tiny_models(void)
{
    static bool ready;
    if (ready)
        return;
    struct gpt_config cfg = tiny_config();
    struct gpt_opts lm = {.max_batch = 1, .max_seq = 2};
    struct gpt_opts rm = {.max_batch = 1, .max_seq = 2, .score_head = true};
    struct gpt_opts tr = {.trainable = true, .max_batch = 1, .max_seq = 2};
    struct pl_err err = {0};
    if (gpt_init(&tiny_lm, &cfg, &lm, &err) != PL_OK ||
        gpt_init(&tiny_rm, &cfg, &rm, &err) != PL_OK ||
        gpt_init(&tiny_train, &cfg, &tr, &err) != PL_OK)
        finding("setup", "cannot make the tiny models", err.msg);
    atexit(tiny_release);
    ready = true;
}

int fuzz_weights(const uint8_t *data, size_t size)
{
    const char *path = fz_file("weights", "model.safetensors", data, size);
    tiny_models();
    struct pl_err err = {0};
    int rc = ckpt_weights_load(size & 1 ? &tiny_rm : &tiny_lm, path, &err);
    check_rc("weights", rc, &err);
    return 0;
}

int fuzz_ckpt(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"config.json", "model.safetensors", "vocab.json",
                                        "merges.txt"};
    const char *dir = fz_dir("ckpt");
    fz_files(dir, names, 4, data, size);
    struct pl_err err = {0};
    struct gpt_config cfg;
    /* A valid config of a model too large to allocate here is not a finding. */
    int rc = ckpt_config_read(dir, &cfg, &err);
    check_rc("ckpt", rc, &err);
    if (rc != PL_OK)
        return 0;
    struct gpt_opts opts = {.max_batch = 1, .max_seq = cfg.n_positions};
    if (gpt_memory_bytes(&cfg, &opts) > (64u << 20))
        return 0;
    struct gpt m;
    struct tok t;
    rc = ckpt_load_model(&m, &t, dir, &opts, &err);
    check_rc("ckpt", rc, &err);
    if (rc == PL_OK && (t.vocab_size != m.cfg.vocab_size || t.eos != m.cfg.eos_token_id))
        finding("ckpt", "a model whose tokenizer does not match it", NULL);
    gpt_release(&m);
    gpt_release(&m);
    tok_release(&t);
    tok_release(&t);
    return 0;
}

/* ---- tokenizers ---- */

/* tok.h's promise: any bytes encode (never more ids than bytes) and decode back to themselves. */
static void round_trip(const char *target, const struct tok *t, struct tok_buf *b,
                       const char *text, size_t len, unsigned flags)
{
    struct pl_err err = {0};
    b->n = 0;
    int rc = tok_encode(t, b, text, len, flags, &err);
    check_rc(target, rc, &err);
    if (rc != PL_OK)
        return;
    if (b->n > len)
        finding(target, "more ids than bytes", NULL);
    for (size_t i = 0; i < b->n; i++)
        if (b->ids[i] < 0 || b->ids[i] >= t->vocab_size)
            finding(target, "an id outside the vocabulary", NULL);
    char *back = NULL;
    size_t n = 0;
    rc = tok_decode(t, &back, &n, b->ids, b->n, &err);
    check_rc(target, rc, &err);
    if (rc == PL_OK && (n != len || memcmp(back, text, len) != 0))
        finding(target, "decode(encode(text)) is not the text", NULL);
    pl_free(back);
}

int fuzz_tok(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"vocab.json", "merges.txt"};
    const char *dir = fz_dir("tok");
    fz_files(dir, names, 2, data, size);
    struct pl_err err = {0};
    struct tok t;
    int rc = tok_load(&t, dir, &err);
    check_rc("tok", rc, &err);
    if (rc == PL_OK) {
        static const char text[] = "Hello, world! The quick brown fox's 42 \xe2\x82\xac\xff\n\n "
                                   "<|endoftext|>  x";
        struct tok_buf b = {0};
        round_trip("tok", &t, &b, text, sizeof text - 1, 0);
        round_trip("tok", &t, &b, text, sizeof text - 1, TOK_SPECIAL);
        round_trip("tok", &t, &b, (const char *)data, size < 512 ? size : 512, 0);
        tok_buf_release(&b);
        tok_buf_release(&b);
        /* tok.h: tok_save writes what tok_load gives back. */
        const char *saved = fz_dir("tok-saved");
        struct tok back;
        if (tok_save(&t, saved, &err) != PL_OK)
            finding("tok", "a loaded tokenizer that tok_save cannot write", err.msg);
        if (tok_load(&back, saved, &err) != PL_OK)
            finding("tok", "a saved tokenizer that does not load", err.msg);
        if (back.vocab_size != t.vocab_size || back.eos != t.eos || back.n_merges != t.n_merges)
            finding("tok", "a saved tokenizer loads as another", NULL);
        for (int i = 0; i < t.vocab_size; i++) {
            size_t n1 = 0, n2 = 0;
            const char *p1 = tok_piece(&t, i, &n1), *p2 = tok_piece(&back, i, &n2);
            if (n1 != n2 || memcmp(p1, p2, n1) != 0)
                finding("tok", "a saved token reads back as other bytes", NULL);
        }
        if (t.n_merges > 0 && memcmp(back.merges, t.merges, (size_t)t.n_merges * 3 * sizeof *t.merges) != 0)
            finding("tok", "saved merges read back in another order", NULL);
        tok_release(&back);
    }
    tok_release(&t);
    tok_release(&t);
    return 0;
}

/* The tokenizers are read once; atexit releases them. */
static struct tok enc_bpe, enc_byte;

static void encode_release(void)
{
    tok_release(&enc_bpe);
    tok_release(&enc_byte);
}

int fuzz_encode(const uint8_t *data, size_t size)
{
    if (!enc_bpe.kind) {
        struct pl_err err = {0};
        const char *dir = getenv("PLUMB_FUZZ_TOK");
        if (tok_load(&enc_bpe, dir ? dir : "tests/data/tiny-gpt2", &err) != PL_OK ||
            enc_bpe.kind != TOK_BPE)
            finding("encode", "cannot read the test vocabulary (run from the repository root)",
                    err.msg);
        if (tok_init_byte(&enc_byte, &err) != PL_OK)
            finding("encode", "cannot make the byte tokenizer", err.msg);
        atexit(encode_release);
    }
    struct tok_buf b = {0};
    unsigned flags = size & 1 ? TOK_SPECIAL : 0;
    round_trip("encode", &enc_bpe, &b, (const char *)data, size, flags);
    round_trip("encode", &enc_byte, &b, (const char *)data, size, flags);
    tok_buf_release(&b);
    return 0;
}

/* ---- the constitution and the toy world ---- */

int fuzz_constitution(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"constitution.json", "prompt.txt", "response.txt"};
    const char *dir = fz_dir("constitution");
    const uint8_t *piece[3];
    size_t len[3];
    int k = fz_split(data, size, piece, len, 3);
    fz_files(dir, names, 1, data, k > 1 ? len[0] : size);
    struct pl_err err = {0};
    struct ds_constitution c;
    int rc = ds_constitution_load(&c, fz_path(dir, names[0]), &err);
    check_rc("constitution", rc, &err);
    if (rc == PL_OK) {
        for (int i = 0; i < c.n_principles; i++) {
            const struct ds_principle *p = &c.principles[i];
            check_str("constitution", p->name, "name");
            check_str("constitution", p->critique_request, "critique_request");
            check_str("constitution", p->revision_request, "revision_request");
            if (p->first_rule < 0 || p->n_rules < 0 || p->first_rule + p->n_rules > c.n_rules)
                finding("constitution", "a principle whose rules are not in the list", p->name);
            if (ds_constitution_find(&c, p->name) != i)
                finding("constitution", "ds_constitution_find does not find a principle",
                        p->name);
        }
        for (int i = 0; i < c.n_rules; i++)
            check_str("constitution", c.rules[i].label, "label");
        char *text[2];
        for (int i = 0; i < 2; i++) {
            size_t n = k > i + 1 ? len[i + 1] : 0;
            if (!(text[i] = pl_malloc(n + 1)))
                finding("constitution", "out of memory", NULL);
            memcpy(text[i], n ? piece[i + 1] : (const uint8_t *)"", n);
            text[i][n] = '\0';
        }
        bool *broken = pl_calloc((size_t)c.n_rules + 1, sizeof *broken);
        int n_broken = -1;
        rc = ds_constitution_check(&c, text[0], text[1], broken, &n_broken, &err);
        check_rc("constitution", rc, &err);
        int count = 0;
        for (int i = 0; rc == PL_OK && i < c.n_rules; i++)
            count += broken[i];
        if (rc == PL_OK && count != n_broken)
            finding("constitution", "n_broken is not the number of broken rules", NULL);
        struct pl_buf b = {0};
        ds_critique_text(&b, text[0], text[1], c.principles[0].critique_request, NULL, NULL);
        ds_critique_text(&b, text[0], text[1], c.principles[0].critique_request, text[1],
                         c.principles[0].revision_request);
        pl_buf_release(&b);
        pl_free(broken);
        pl_free(text[0]);
        pl_free(text[1]);
    }
    ds_constitution_release(&c);
    ds_constitution_release(&c);
    return 0;
}

int fuzz_world(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"annotators.json", "world.json", "qa_eval.jsonl",
                                        "samples.jsonl"};
    const char *dir = fz_dir("world");
    fz_files(dir, names, 4, data, size);
    struct pl_err err = {0};
    struct ds_sim s;
    memset(&s, 0, sizeof s);
    int rc = ds_sim_init(&s, dir, fz_path(dir, names[2]), &err);
    check_rc("world", rc, &err);
    if (rc == PL_OK) {
        FILE *f = fopen("/dev/null", "w");
        if (!f)
            finding("world", "cannot open /dev/null", strerror(errno));
        struct ds_sim_opts o = {.seed = size, .truth = size & 1, .time = "2026-11-30T00:00:00Z"};
        long n = 0;
        rc = ds_sim_label_file(&s, fz_path(dir, names[3]), &o, f, &n, &err);
        check_rc("world", rc, &err);
        fclose(f);
    }
    ds_sim_release(&s);
    ds_sim_release(&s);
    struct eval_world_opts o = {.data = fz_path(dir, names[2]),
                                .input = fz_path(dir, names[3]),
                                .gen = {.k = 1, .max_new_tokens = 1, .batch = 1},
                                .seed = 1,
                                .reps = 10,
                                .version = "fuzz"};
    cJSON *res = NULL;
    err = (struct pl_err){0};
    rc = eval_world_run(&o, &res, &err);
    check_rc("world", rc, &err);
    cJSON_Delete(res);
    return 0;
}

/* ---- resume ---- */

struct resume_task {
    uint64_t cursor[2];
    struct train_var var;
};

static int resume_next(void *ctx, struct train_step *st, struct pl_err *err)
{
    (void)ctx;
    (void)err;
    for (int i = 0; i < st->n_micro; i++)
        st->weight[i] = 1.0;
    st->tokens = 1;
    return PL_OK;
}

/* No gradient: a step only decays the weights, which is all a resume needs to run. */
static int resume_backward(void *ctx, struct train_model *models, struct train_step *st,
                           int micro, float scale, double *loss, struct pl_err *err)
{
    (void)ctx, (void)models, (void)st, (void)micro, (void)scale, (void)err;
    *loss = 0.0;
    return PL_OK;
}

/* Resume a run of the tiny model from the input's state.safetensors (and metrics.jsonl, the
 * second piece), with a run of 2 steps: a state at step 2 resumes into nothing, one at step 0
 * or 1 trains and saves. tests/fuzz/state's seeds are such states; the folder is made afresh
 * for every input. */
int fuzz_state(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"state.safetensors", "metrics.jsonl"};
    const char *dir = fz_dir("state");
    remove_tree(dir, 0);
    dir = fz_dir("state");
    fz_files(dir, names, 2, data, size);
    const char *model_dir = fz_path(dir, "model");
    tiny_models();
    struct pl_err err = {0};
    struct resume_task rt = {{0, 0}, {"cursor", TRAIN_U64, NULL, 2}};
    rt.var.data = rt.cursor;
    struct train_task task = {.label = "fuzz",
                              .ctx = &rt,
                              .next = resume_next,
                              .backward = resume_backward,
                              .vars = &rt.var,
                              .n_vars = 1};
    struct train_model tm = {.m = &tiny_train, .out = model_dir};
    train_optim_default(&tm.optim);
    struct train_opts o;
    train_opts_default(&o);
    o.out = dir;
    o.steps = 2;
    o.resume = true;
    o.log = NULL;
    o.version = "fuzz";
    struct train_result res;
    int rc = train_run(&tm, 1, &task, &o, &res, &err);
    check_rc("state", rc, &err);
    return 0;
}

/* ---- reports ---- */

int fuzz_report(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"run.json", "metrics.jsonl", "results.json",
                                        "answers.jsonl"};
    const char *dir = fz_dir("report");
    fz_files(dir, names, 4, data, size);
    struct pl_err err = {0};
    struct report r;
    memset(&r, 0, sizeof r);
    const char *dirs[] = {dir};
    int rc = report_load(&r, dirs, 1, NULL, &err);
    check_rc("report", rc, &err);
    if (rc == PL_OK) {
        struct report_page page = {"fuzz", "fuzz", dirs, 1};
        struct pl_buf out = {0};
        rc = report_json(&r, &page, &out, &err);
        check_rc("report", rc, &err);
        out.len = 0;
        if (rc == PL_OK)
            rc = report_html(&r, &page, &out, &err);
        check_rc("report", rc, &err);
        out.len = 0;
        if (rc == PL_OK)
            rc = report_md(&r, &page, &out, &err);
        check_rc("report", rc, &err);
        pl_buf_release(&out);
    }
    report_release(&r);
    report_release(&r);
    return 0;
}

/* ---- the table ---- */

#define FUZZ_X_ROW(name, what) {#name, fuzz_##name, what},
const struct fuzz_target fuzz_targets[] = {FUZZ_TARGETS(FUZZ_X_ROW)};
#undef FUZZ_X_ROW
const int fuzz_n_targets = (int)(sizeof fuzz_targets / sizeof fuzz_targets[0]);

const struct fuzz_target *fuzz_find(const char *name)
{
    for (int i = 0; i < fuzz_n_targets; i++)
        if (strcmp(fuzz_targets[i].name, name) == 0)
            return &fuzz_targets[i];
    return NULL;
}
