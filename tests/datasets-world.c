/* datasets-world: the toy world is deterministic, parses with the ds loaders, and keeps its
 * promises (held-out facts, unknown places, group skew). */
#include "datasets/constitution.h"
#include "datasets/ds.h"
#include "datasets/world.h"
#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const files[] = {
    "world.json",    "corpus.txt",    "sft.jsonl",        "sft_eval.jsonl",    "prompts.jsonl",
    "qa_eval.jsonl", "mc_eval.jsonl", "bias_pairs.jsonl", "constitution.json", "annotators.json",
    "redteam.jsonl",
};
#define N_FILES ((int)(sizeof files / sizeof *files))

static char base[] = "/tmp/plumb-world-XXXXXX";

static const char *path_in(const char *sub, const char *file)
{
    static char paths[8][4096];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s%s%s", base, sub, file ? "/" : "", file ? file : "");
    return p;
}

static void remove_world(const char *sub)
{
    for (int i = 0; i < N_FILES; i++)
        unlink(path_in(sub, files[i]));
    rmdir(path_in(sub, NULL));
}

/* The whole file, or an empty text when it cannot be read. */
static struct ds_text slurp(const char *sub, const char *file)
{
    struct ds_text t;
    struct pl_err err = {0};
    if (ds_text_init(&t, path_in(sub, file), &err) != PL_OK)
        tap_diag("%s", err.msg);
    return t;
}

static void test_determinism(void)
{
    struct pl_err err = {0};
    int rc = ds_world_write(path_in("a", NULL), 1, &err);
    tap_is_int(rc, PL_OK, "write seed 1 (%s)", err.msg);
    rc = ds_world_write(path_in("b", NULL), 1, &err);
    tap_is_int(rc, PL_OK, "write seed 1 again");
    rc = ds_world_write(path_in("c", NULL), 2, &err);
    tap_is_int(rc, PL_OK, "write seed 2");
    for (int i = 0; i < N_FILES; i++) {
        struct ds_text a = slurp("a", files[i]), b = slurp("b", files[i]), c = slurp("c", files[i]);
        bool fixed =
            strcmp(files[i], "constitution.json") == 0 || strcmp(files[i], "annotators.json") == 0;
        tap_ok(a.len > 0 && a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
               "same seed, same bytes: %s (%zu bytes)", files[i], a.len);
        bool differs = a.len != c.len || memcmp(a.data, c.data, a.len) != 0;
        tap_ok(fixed ? !differs : differs, "seed 2 %s %s", fixed ? "keeps" : "changes", files[i]);
        ds_text_release(&a);
        ds_text_release(&b);
        ds_text_release(&c);
    }
}

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

/* "The same seed writes the same bytes on every machine": seed 1's files against sizes and
 * hashes committed here (from plumb 0.1.0's world, hashed apart from this test; the constitution
 * and redteam.jsonl since the red-team prompts). A change of
 * the RNG, of an iteration order, of libm or of the JSON writer shows up here first. */
static void test_known_bytes(void)
{
    static const struct {
        const char *file;
        size_t len;
        uint64_t fnv;
    } want[] = {
        {"world.json", 29330, 0x8021e93eeaa7c291ull},
        {"corpus.txt", 205124, 0x97fbe2efe00970baull},
        {"sft.jsonl", 83234, 0x5d88c0cb507444b0ull},
        {"sft_eval.jsonl", 21198, 0x8c75a84a3ed6351dull},
        {"prompts.jsonl", 101201, 0xd0b40a7222c35830ull},
        {"qa_eval.jsonl", 24233, 0xc8635ca07b8987ddull},
        {"mc_eval.jsonl", 30651, 0xc9ca237c55e7b8d8ull},
        {"bias_pairs.jsonl", 6796, 0x3535b7ddbd2a4c4eull},
        {"constitution.json", 993, 0xcda1b1ac1d6025c6ull},
        {"annotators.json", 560, 0x5c8ff68a208d82f3ull},
        {"redteam.jsonl", 24087, 0x17c9b0434f1735ffull},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        struct ds_text t = slurp("a", want[i].file);
        uint64_t h = fnv1a(t.data, t.len);
        tap_ok(t.len == want[i].len && h == want[i].fnv,
               "seed 1 %s: %zu bytes, FNV-1a %016llx (committed: %zu, %016llx)", want[i].file,
               t.len, (unsigned long long)h, want[i].len, (unsigned long long)want[i].fnv);
        ds_text_release(&t);
    }
    /* The critique demonstrations were appended from an RNG stream of their own: the chat
     * demonstrations before them are the bytes of plumb 0.1.0's sft.jsonl. */
    struct ds_text t = slurp("a", "sft.jsonl");
    uint64_t h = t.len >= 48497 ? fnv1a(t.data, 48497) : 0;
    tap_ok(h == 0xf71537a5289b65c5ull,
           "seed 1 sft.jsonl: its first 48497 bytes as before (%016llx)", (unsigned long long)h);
    ds_text_release(&t);
}

/* ---- world.json, read back ---- */

struct truth {
    cJSON *doc;
    cJSON *places, *groups;
};

static const char *str_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool is_status(const cJSON *place, const char *status)
{
    const char *s = str_of(place, "status");
    return s && strcmp(s, status) == 0;
}

static int load_truth(struct truth *t)
{
    struct pl_err err = {0};
    memset(t, 0, sizeof *t);
    int rc = io_json_load(path_in("a", "world.json"), &t->doc, &err);
    if (rc)
        tap_diag("%s", err.msg);
    t->places = cJSON_GetObjectItemCaseSensitive(t->doc, "places");
    t->groups = cJSON_GetObjectItemCaseSensitive(t->doc, "groups");
    return rc;
}

static void test_truth(const struct truth *t)
{
    int known = 0, unknown_train = 0, unknown_eval = 0, unknown_rm = 0, complete = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, t->places)
    {
        known += is_status(p, "known");
        unknown_train += is_status(p, "unknown_train");
        unknown_eval += is_status(p, "unknown_eval");
        unknown_rm += is_status(p, "unknown_rm");
        const char *held = str_of(p, "held_out"), *rm = str_of(p, "rm_attribute");
        complete += is_status(p, "known") && str_of(p, "name") && held && str_of(p, held) && rm &&
                    str_of(p, rm) && strcmp(held, rm) != 0 && str_of(p, "capital") &&
                    str_of(p, "river") && str_of(p, "language") && str_of(p, "currency");
    }
    tap_ok(known == DS_WORLD_KNOWN && unknown_train == DS_WORLD_UNKNOWN_TRAIN &&
               unknown_eval == DS_WORLD_UNKNOWN_EVAL && unknown_rm == DS_WORLD_UNKNOWN_RM,
           "world.json: %d known, %d unknown (train), %d unknown (eval), %d unknown (rm)", known,
           unknown_train, unknown_eval, unknown_rm);
    tap_is_int(complete, DS_WORLD_KNOWN,
               "world.json: every known place has 4 facts, a held-out one and another for the "
               "reward model");
    tap_is_int(cJSON_GetArraySize(t->groups), 2, "world.json: two groups");
}

/* ---- the files through the loaders ---- */

/* Calls check on every object of a JSONL file; returns how many objects failed it, or -1 when
 * the file does not load. */
static int each_object(const char *file, bool (*check)(const cJSON *o, const struct truth *t),
                       const struct truth *t, long *count)
{
    struct io_jsonl r;
    struct pl_err err = {0};
    int failed = 0;
    *count = 0;
    int rc = io_jsonl_init(&r, path_in("a", file), 0, &err);
    while (rc == PL_OK) {
        cJSON *obj = NULL;
        rc = io_jsonl_next(&r, &obj, NULL, &err);
        if (rc || !obj)
            break;
        (*count)++;
        if (!check(obj, t)) {
            if (!failed)
                tap_diag("%s:%ld: unexpected record", file, r.lines.lineno);
            failed++;
        }
        cJSON_Delete(obj);
    }
    if (rc)
        tap_diag("%s", err.msg);
    io_jsonl_release(&r);
    return rc ? -1 : failed;
}

/* The place named `name` in world.json, or NULL. */
static const cJSON *find_place(const struct truth *t, const char *name)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, t->places)
    {
        const char *n = str_of(p, "name");
        if (n && name && strcmp(n, name) == 0)
            return p;
    }
    return NULL;
}

/* Each split asks about its own places and attributes: SFT's two attributes of a known place
 * (train), the reward model's one (rm), the held-out one (test); unknown places of the split's
 * own status. */
static bool check_prompt(const cJSON *o, const struct truth *t)
{
    const char *split = str_of(o, "split"), *kind = str_of(o, "kind");
    const char *attr = str_of(o, "attribute");
    const cJSON *place = find_place(t, str_of(o, "place"));
    const cJSON *phrasing = cJSON_GetObjectItemCaseSensitive(o, "phrasing");
    if (!str_of(o, "id") || !str_of(o, "prompt") || !split || !kind || !place ||
        !cJSON_IsNumber(phrasing) || (phrasing->valueint != 0 && phrasing->valueint != 1))
        return false;
    bool train = strcmp(split, "train") == 0, rm = strcmp(split, "rm") == 0;
    bool test = strcmp(split, "test") == 0;
    if (strcmp(kind, "harmful") == 0)
        return is_status(place, "known") && (train || rm || test);
    if (strcmp(kind, "unknown") == 0)
        return is_status(place, train  ? "unknown_train"
                                : rm   ? "unknown_rm"
                                : test ? "unknown_eval"
                                       : "none");
    if (strcmp(kind, "known") != 0 || !attr || !is_status(place, "known"))
        return false;
    bool held = strcmp(attr, str_of(place, "held_out")) == 0;
    bool for_rm = strcmp(attr, str_of(place, "rm_attribute")) == 0;
    return train ? !held && !for_rm : rm ? for_rm : test && held;
}

/* A red-team request: harmful, about a known place. */
static bool check_redteam(const cJSON *o, const struct truth *t)
{
    const char *split = str_of(o, "split"), *kind = str_of(o, "kind");
    const cJSON *place = find_place(t, str_of(o, "place"));
    return str_of(o, "id") && str_of(o, "prompt") && split && strcmp(split, "redteam") == 0 &&
           kind && strcmp(kind, "harmful") == 0 && place && is_status(place, "known");
}

/* The answer is the truth for known places and null for unknown ones. */
static bool check_qa(const cJSON *o, const struct truth *t)
{
    const char *attr = str_of(o, "attribute"), *answer = str_of(o, "answer");
    const cJSON *place = find_place(t, str_of(o, "place"));
    if (!str_of(o, "id") || !str_of(o, "prompt") || !attr || !place)
        return false;
    if (is_status(place, "known"))
        return answer && strcmp(answer, str_of(place, attr)) == 0 &&
               strcmp(attr, str_of(place, "held_out")) == 0;
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "answer")) &&
           is_status(place, "unknown_eval");
}

static bool check_mc(const cJSON *o, const struct truth *t)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(o, "answer");
    const cJSON *place = find_place(t, str_of(o, "place"));
    const char *attr = str_of(o, "attribute");
    if (!str_of(o, "question") || !cJSON_IsArray(choices) || !cJSON_IsNumber(answer) || !place ||
        !attr || cJSON_GetArraySize(choices) != 4 || answer->valueint < 0 || answer->valueint > 3)
        return false;
    const cJSON *right = cJSON_GetArrayItem(choices, answer->valueint);
    return cJSON_IsString(right) && strcmp(right->valuestring, str_of(place, attr)) == 0;
}

/* stereo and anti differ only in the group's name. */
static bool check_bias(const cJSON *o, const struct truth *t)
{
    const char *stereo = str_of(o, "stereo"), *anti = str_of(o, "anti");
    const char *gs = str_of(o, "group_stereo"), *ga = str_of(o, "group_anti");
    (void)t;
    if (!stereo || !anti || !gs || !ga || !str_of(o, "trait"))
        return false;
    const char *at = strstr(stereo, gs);
    char swapped[1024];
    if (!at)
        return false;
    snprintf(swapped, sizeof swapped, "%.*s%s%s", (int)(at - stereo), stereo, ga, at + strlen(gs));
    return strcmp(swapped, anti) == 0;
}

static bool check_rule(const cJSON *rule)
{
    const char *kind = str_of(rule, "kind");
    if (!kind)
        return false;
    if (strcmp(kind, "max_words") == 0)
        return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rule, "max"));
    if (strcmp(kind, "refuse_if_regex") == 0)
        return str_of(rule, "pattern") && str_of(rule, "refusal");
    return (strcmp(kind, "forbid_regex") == 0 || strcmp(kind, "require_regex") == 0) &&
           str_of(rule, "pattern");
}

static void test_json_files(void)
{
    cJSON *doc = NULL;
    struct pl_err err = {0};
    int rc = io_json_load(path_in("a", "constitution.json"), &doc, &err);
    const cJSON *principles = cJSON_GetObjectItemCaseSensitive(doc, "principles"), *p;
    int good = 0, n = 0;
    cJSON_ArrayForEach(p, principles)
    {
        const cJSON *rules = cJSON_GetObjectItemCaseSensitive(p, "rules"), *r;
        bool ok = str_of(p, "name") && str_of(p, "critique_request") &&
                  str_of(p, "revision_request") && cJSON_GetArraySize(rules) > 0;
        cJSON_ArrayForEach(r, rules) ok = ok && check_rule(r);
        good += ok;
        n++;
    }
    tap_ok(rc == PL_OK && n >= 2 && good == n, "constitution.json: %d principles, all well formed",
           n);
    cJSON_Delete(doc);

    rc = io_json_load(path_in("a", "annotators.json"), &doc, &err);
    const cJSON *annotators = cJSON_GetObjectItemCaseSensitive(doc, "annotators"), *a;
    good = n = 0;
    cJSON_ArrayForEach(a, annotators)
    {
        const cJSON *noise = cJSON_GetObjectItemCaseSensitive(a, "noise");
        good += str_of(a, "id") && cJSON_IsNumber(noise) && noise->valuedouble >= 0 &&
                noise->valuedouble < 0.5;
        n++;
    }
    const cJSON *pref = cJSON_GetObjectItemCaseSensitive(doc, "preference");
    tap_ok(rc == PL_OK && n >= 2 && good == n &&
               cJSON_GetArraySize(cJSON_GetObjectItem(pref, "known")) == 3,
           "annotators.json: %d annotators and the preference order", n);
    cJSON_Delete(doc);
}

static void test_jsonl_files(const struct truth *t)
{
    struct pl_err err = {0};
    struct ds_sft sft, sft_eval;
    int rc = ds_sft_init(&sft, path_in("a", "sft.jsonl"), 0, &err);
    tap_ok(rc == PL_OK && sft.n >= 400, "sft.jsonl: %zu demonstrations", sft.n);
    rc = ds_sft_init(&sft_eval, path_in("a", "sft_eval.jsonl"), 0, &err);
    tap_ok(rc == PL_OK && sft_eval.n >= 100, "sft_eval.jsonl: %zu examples", sft_eval.n);

    /* Chat demonstrations: as many unknown-place answers as known-place ones. Every response
     * short and complete (the constitution's rules). Critique demonstrations: their contexts cut
     * to the 80 bytes `plumb critique` keeps for the demo's model, each step's record fitting its
     * 128-byte window. */
    size_t dont_know = 0, refusals = 0, tidy = 0, chat = 0, critiques = 0, revisions = 0;
    size_t fits = 0;
    for (size_t i = 0; i < sft.n; i++) {
        const char *r = sft.recs[i].response, *q = sft.recs[i].prompt;
        size_t len = strlen(r), words = 0, qlen = strlen(q);
        bool is_chat = strncmp(q, "User: ", 6) == 0;
        chat += is_chat;
        dont_know += is_chat && strcmp(r, " I don't know.\n") == 0;
        refusals += is_chat && strstr(r, "sorry") != NULL;
        critiques += !is_chat && io_has_suffix(q, "\nCritique:");
        revisions += !is_chat && io_has_suffix(q, "\nRevision:");
        fits += !is_chat && qlen <= 80 && qlen + len + 1 <= 128;
        for (size_t k = 1; k < len; k++)
            words += r[k] != ' ' && r[k - 1] == ' ';
        tidy += len > 3 && r[0] == ' ' && r[len - 1] == '\n' && r[len - 2] == '.' && words <= 30;
    }
    size_t known = chat - dont_know - refusals;
    tap_ok(known > 0 && dont_know * 5 >= known * 4 && dont_know * 4 <= known * 5,
           "sft.jsonl: %zu known answers, %zu \"I don't know.\", %zu refusals", known, dont_know,
           refusals);
    tap_is_int((long)tidy, (long)sft.n, "sft.jsonl: every response short and complete");
    tap_ok(critiques == 120 && revisions == 120 && chat + critiques + revisions == sft.n,
           "sft.jsonl: %zu critique and %zu revision demonstrations after %zu chat ones", critiques,
           revisions, chat);
    tap_is_int((long)fits, (long)(critiques + revisions),
               "sft.jsonl: every critique demonstration fits the demo's window");
    ds_sft_release(&sft);
    ds_sft_release(&sft_eval);

    struct ds_prompts prompts;
    rc = ds_prompts_init(&prompts, path_in("a", "prompts.jsonl"), 0, &err);
    tap_ok(rc == PL_OK && prompts.n >= 200, "prompts.jsonl: %zu prompts", prompts.n);
    ds_prompts_release(&prompts);

    static const struct {
        const char *file;
        bool (*check)(const cJSON *o, const struct truth *t);
        long min;
    } checks[] = {{"prompts.jsonl", check_prompt, 200},
                  {"qa_eval.jsonl", check_qa, 80},
                  {"mc_eval.jsonl", check_mc, DS_WORLD_KNOWN * DS_WORLD_ATTRS},
                  {"bias_pairs.jsonl", check_bias, 24},
                  {"redteam.jsonl", check_redteam, 100}};
    for (int i = 0; i < 5; i++) {
        long count = 0;
        int failed = each_object(checks[i].file, checks[i].check, t, &count);
        tap_ok(failed == 0 && count >= checks[i].min,
               "%s: %ld records, all consistent with the truth", checks[i].file, count);
    }
}

/* ---- the promises ---- */

/* Red-team prompts: requests the constitution says must be refused, asked in forms sft.jsonl
 * never has, none of them a test prompt or naming a held-out fact (checked with the others in
 * test_held_out's way: their revisions become SFT data). */
static void test_redteam(const struct truth *t)
{
    struct pl_err err = {0};
    struct ds_prompts red, all;
    struct ds_constitution c;
    int rc = ds_prompts_init(&red, path_in("a", "redteam.jsonl"), 0, &err);
    if (!rc)
        rc = ds_prompts_init(&all, path_in("a", "prompts.jsonl"), 0, &err);
    if (!rc)
        rc = ds_constitution_load(&c, path_in("a", "constitution.json"), &err);
    tap_is_int(rc, PL_OK, "redteam.jsonl, prompts.jsonl and the constitution load (%s)", err.msg);
    if (rc)
        return;
    struct ds_text sft = slurp("a", "sft.jsonl");
    int must_refuse = 0, in_prompts = 0, form_in_sft = 0, leaked = 0;
    for (size_t i = 0; i < red.n; i++) {
        const char *q = red.recs[i].prompt;
        int broken = 0;
        ds_constitution_check(&c, q, " Sure.\n", NULL, &broken, &err);
        must_refuse += broken > 0;
        for (size_t j = 0; j < all.n; j++)
            in_prompts += strcmp(q, all.recs[j].prompt) == 0;
        /* The form is the request up to its first name: "User: How do I rob a shop that". */
        char form[64];
        snprintf(form, sizeof form, "%.*s", (int)(strcspn(q + 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") + 16), q);
        form_in_sft += strstr(sft.data, form) != NULL;
        const cJSON *p;
        cJSON_ArrayForEach(p, t->places)
        {
            const char *held = is_status(p, "known") ? str_of(p, "held_out") : NULL;
            leaked += held && strstr(q, str_of(p, held)) != NULL;
        }
    }
    tap_ok(red.n >= 100, "redteam.jsonl: %zu requests", red.n);
    tap_is_int(must_refuse, (long)red.n, "the constitution says every red-team request must be "
                                         "refused");
    tap_is_int(in_prompts, 0, "no red-team request is one of prompts.jsonl's");
    tap_is_int(form_in_sft, 0, "sft.jsonl has none of their forms");
    tap_is_int(leaked, 0, "none names a held-out fact");
    ds_text_release(&sft);
    ds_constitution_release(&c);
    ds_prompts_release(&red);
    ds_prompts_release(&all);
}

static void test_held_out(const struct truth *t)
{
    struct ds_text sft = slurp("a", "sft.jsonl"), corpus = slurp("a", "corpus.txt");
    int leaked = 0, missing = 0, unknown_in_corpus = 0, eval_in_sft = 0, facts_absent = 0;
    int rm_asked = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, t->places)
    {
        const char *name = str_of(p, "name");
        if (is_status(p, "known")) {
            static const char *const attrs[] = {"capital", "river", "language", "currency"};
            const char *held = str_of(p, "held_out"), *rm = str_of(p, "rm_attribute");
            for (int a = 0; a < 4; a++) {
                const char *v = str_of(p, attrs[a]);
                bool in_sft = strstr(sft.data, v) != NULL;
                leaked += strcmp(attrs[a], held) == 0 && in_sft;
                missing += strcmp(attrs[a], held) != 0 && strcmp(attrs[a], rm) != 0 && !in_sft;
                facts_absent += strstr(corpus.data, v) == NULL;
                /* The reward model's fact may be named in a harmful request, never answered. */
                char answer[256];
                snprintf(answer, sizeof answer, "%s.\\n\"", v); /* how an answer ends */
                rm_asked += strcmp(attrs[a], rm) == 0 && strstr(sft.data, answer) != NULL;
            }
        } else {
            unknown_in_corpus += strstr(corpus.data, name) != NULL;
            eval_in_sft += !is_status(p, "unknown_train") && strstr(sft.data, name) != NULL;
        }
    }
    tap_is_int(leaked, 0, "sft.jsonl never names a held-out fact");
    tap_is_int(missing, 0, "sft.jsonl names every fact of the two attributes it teaches");
    tap_is_int(rm_asked, 0, "sft.jsonl never answers a reward-model question");
    tap_is_int(facts_absent, 0, "corpus.txt states every fact");
    tap_is_int(unknown_in_corpus, 0, "corpus.txt never names an unknown place");
    tap_is_int(eval_in_sft, 0, "sft.jsonl never names an eval-only or rm unknown place");
    tap_ok(corpus.len >= 150000 && corpus.len <= 400000, "corpus.txt: %zu bytes", corpus.len);
    ds_text_release(&sft);
    ds_text_release(&corpus);
}

/* Sentences of the corpus naming group g and a trait of list `list`. */
static int count_group(const struct ds_text *corpus, const char *group, const cJSON *traits)
{
    int n = 0;
    const char *s = corpus->data;
    while (*s) {
        size_t len = strcspn(s, ".\n");
        char sentence[512];
        snprintf(sentence, sizeof sentence, "%.*s", (int)len, s);
        const cJSON *trait;
        bool hit = false;
        cJSON_ArrayForEach(trait, traits) hit = hit || strstr(sentence, trait->valuestring);
        n += hit && strstr(sentence, group) != NULL;
        s += len + (s[len] != '\0');
    }
    return n;
}

static void test_group_skew(const struct truth *t)
{
    struct ds_text corpus = slurp("a", "corpus.txt");
    for (int g = 0; g < 2; g++) {
        const cJSON *group = cJSON_GetArrayItem(t->groups, g);
        const cJSON *other = cJSON_GetArrayItem(t->groups, 1 - g);
        const char *name = str_of(group, "name");
        int own = count_group(&corpus, name, cJSON_GetObjectItem(group, "traits"));
        int theirs = count_group(&corpus, name, cJSON_GetObjectItem(other, "traits"));
        double share = own + theirs ? (double)own / (own + theirs) : 0;
        tap_is_float(share, 0.8, 0.05,
                     "group %s: %d sentences with its traits, %d with the other's", name, own,
                     theirs);
    }
    ds_text_release(&corpus);
}

static void test_failures(void)
{
    struct pl_err err = {0};
    /* Missing parents are created; a folder under a file cannot be. */
    const char *bad = path_in("a/corpus.txt/world", NULL);
    char want[4200];
    int rc = ds_world_write(bad, 1, &err);
    snprintf(want, sizeof want, "cannot create folder '%s': Not a directory", bad);
    tap_is_int(rc, PL_EIO, "a folder under a file: code");
    tap_is_str(err.msg, want, "a folder under a file: message");

    pl_alloc_fail_at(-1);
    rc = ds_world_write(path_in("d", NULL), 3, &err);
    long total = pl_alloc_count();
    int bad_runs = 0;
    for (long n = 0; n < total; n++) {
        pl_alloc_fail_at(n);
        rc = ds_world_write(path_in("d", NULL), 3, &err);
        bad_runs += rc != PL_ENOMEM || strncmp(err.msg, "out of memory", 13) != 0;
    }
    pl_alloc_fail_at(-1);
    tap_ok(total > 0 && bad_runs == 0, "alloc: each of %ld failures gives PL_ENOMEM", total);
    remove_world("d");
}

/* plumb world, when the test knows its build's binary. */
static void test_cli(void)
{
    const char *bin = getenv("PLUMB_BIN");
    if (!bin) {
        tap_skip(3, "PLUMB_BIN not set");
        return;
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s world --out %s --seed 1 >/dev/null", bin, path_in("e", NULL));
    int status = system(cmd);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "plumb world: exit 0");
    struct ds_text a = slurp("a", "sft.jsonl"), e = slurp("e", "sft.jsonl");
    tap_ok(a.len > 0 && a.len == e.len && memcmp(a.data, e.data, a.len) == 0,
           "plumb world --seed 1 writes the library's bytes");
    ds_text_release(&a);
    ds_text_release(&e);
    snprintf(cmd, sizeof cmd, "%s world --seed 1 2>/dev/null", bin);
    status = system(cmd);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 2, "plumb world without --out: exit 2");
    remove_world("e");
}

int main(void)
{
    if (!mkdtemp(base))
        tap_skip_all("cannot make a temporary directory");
    test_determinism();
    test_known_bytes();
    struct truth t;
    if (load_truth(&t) == PL_OK) {
        test_truth(&t);
        test_json_files();
        test_jsonl_files(&t);
        test_held_out(&t);
        test_redteam(&t);
        test_group_skew(&t);
    }
    cJSON_Delete(t.doc);
    test_failures();
    test_cli();
    remove_world("a");
    remove_world("b");
    remove_world("c");
    rmdir(base);
    return tap_done();
}
