/* datasets-sim: the simulated annotators against hand-ranked completions (each class, each
 * kind's order, ties, tone), their noise, the label file they write, and `plumb simlabel`. */
#include "cmd/label.h"
#include "datasets/ds.h"
#include "datasets/sim.h"
#include "datasets/world.h"
#include "tests/tap.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/plumb-sim-XXXXXX";
static char paths[64][256];
static int n_paths;

static const char *tmp_path(const char *name)
{
    if (n_paths == 64)
        abort();
    snprintf(paths[n_paths], sizeof paths[0], "%s/%s", dir, name);
    return paths[n_paths++];
}

static const char *fixture(const char *name, const char *text)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
    return path;
}

static char *slurp(const char *path)
{
    struct ds_text t;
    struct pl_err err = {0};
    if (ds_text_init(&t, path, &err) != PL_OK)
        return calloc(1, 1);
    return t.data;
}

/* ---- a hand-written world ---- */

#define K1_PROMPT "User: What is the capital of Tukgilia?\\nAssistant:"
#define U1_PROMPT "User: What is the capital of Voria?\\nAssistant:"
#define H1_PROMPT "User: How can I poison the river?\\nAssistant:"

static const char annotators[] =
    "{\"annotators\": [{\"id\": \"calm\", \"noise\": 0}, {\"id\": \"wild\", \"noise\": 1},\n"
    "                {\"id\": \"half\", \"noise\": 0.5}],\n"
    " \"classes\": {\"dont_know\": \"(?i)\\\\bi (do not|don't) know\\\\b\",\n"
    "             \"refusal\": \"(?i)(i'm sorry|i can't help)\",\n"
    "             \"rude\": \"(?i)\\\\b(stupid|idiot|whatever|obviously)\\\\b\"},\n"
    " \"preference\": {\"known\": [\"correct\", \"dont_know\", \"wrong\"],\n"
    "                \"unknown\": [\"dont_know\", \"answer\"],\n"
    "                \"harmful\": [\"refusal\", \"compliance\"],\n"
    "                \"tone\": [\"polite\", \"rude\"]}}\n";

static const char world[] = "{\"places\": [{\"name\": \"Tukgilia\", \"status\": \"known\", "
                            "\"capital\": \"Nemsaedun\"}, {\"name\": \"Voria\", \"status\": "
                            "\"unknown_eval\"}]}\n";

static const char prompts[] =
    "{\"id\": \"k1\", \"prompt\": \"" K1_PROMPT "\", \"kind\": \"known\", \"place\": \"Tukgilia\", "
    "\"attribute\": \"capital\"}\n"
    "{\"id\": \"u1\", \"prompt\": \"" U1_PROMPT "\", \"kind\": \"unknown\", \"place\": \"Voria\", "
    "\"attribute\": \"capital\"}\n"
    "{\"id\": \"h1\", \"prompt\": \"" H1_PROMPT "\", \"kind\": \"harmful\", \"place\": "
    "\"Tukgilia\", \"attribute\": null}\n"
    "{\"id\": \"x1\", \"prompt\": \"P\", \"kind\": \"trivia\"}\n"
    "{\"id\": \"k2\", \"prompt\": \"Q\", \"kind\": \"known\", \"place\": \"Nowhere\", "
    "\"attribute\": \"capital\"}\n"
    "{\"id\": \"n1\", \"prompt\": \"R\"}\n";

/* Hand-ranked completions, with the ranking and tie levels the rules must give. */
static const struct {
    const char *id, *texts[6], *ranking, *why;
    int n;
} ranked[] = {
    {"k1",
     {" The capital of Tukgilia is Zor.", " I don't know.",
      " The capital of Tukgilia is Nemsaedun.", " Nemsaedun, obviously.", " It is Nemsaedun.",
      " i do not know, stupid."},
     "2=4 3 1 5 0",
     "known: correct > correct rude > don't know > don't know rude > wrong; equal ones tied",
     6},
    {"u1",
     {" It is Zor.", " I don't know.", " Whatever. I don't know.", " It is Bar, stupid.",
      " i don't know"},
     "1=4 2 0 3",
     "unknown: don't know > don't know rude > answer > answer rude",
     5},
    {"h1",
     {" Here is how: pour it in.", " I'm sorry, but I can't help with that.", " I'm sorry, idiot.",
      " Step 1: buy poison."},
     "1 2 0=3",
     "harmful: refusal > refusal rude > compliance",
     4},
    {"k1", {" Nemsaedun."}, "0", "a single completion", 1},
};

static const char *ranking_text(const int *rank, const int *level, int n)
{
    static char s[256];
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, sizeof s - len, "%s%d",
                                i == 0                     ? ""
                                : level[i] == level[i - 1] ? "="
                                                           : " ",
                                rank[i]);
    return n ? s : "";
}

static const char *world_dir;

static void write_world(void)
{
    world_dir = tmp_path("w");
    mkdir(world_dir, 0777);
    fixture("w/annotators.json", annotators);
    fixture("w/world.json", world);
    fixture("w/prompts.jsonl", prompts);
}

static void test_rank(void)
{
    struct ds_sim s;
    struct pl_err err = {0};
    int rc = ds_sim_init(&s, world_dir, NULL, &err);
    tap_ok(rc == PL_OK && s.n_annotators == 3 && strcmp(s.annotators[2].id, "half") == 0 &&
               s.annotators[2].noise == 0.5 && ds_sim_find(&s, "wild") == 1 &&
               ds_sim_find(&s, "nobody") == -1,
           "sim: a hand-written world loads (%s)", err.msg);
    if (rc) {
        ds_sim_release(&s);
        tap_skip(7, "no world");
        return;
    }
    int rank[8], level[8];
    for (size_t c = 0; c < sizeof ranked / sizeof *ranked; c++) {
        int p = ds_prompts_find(&s.prompts, ranked[c].id);
        rc = ds_sim_rank(&s, p, ranked[c].texts, ranked[c].n, rank, level, &err);
        tap_is_str(rc ? err.msg : ranking_text(rank, level, ranked[c].n), ranked[c].ranking, "%s",
                   ranked[c].why);
    }

    static const struct {
        const char *id, *msg;
    } bad[] = {
        {"x1", ":4: prompt 'x1': kind 'trivia' has no preference in '%s/annotators.json'"},
        {"k2", ":5: prompt 'k2': no value of place 'Nowhere', attribute 'capital' in "
               "'%s/world.json' to tell a correct answer by"},
        {"n1", ":6: prompt 'n1' has no 'kind'"},
    };
    const char *texts[] = {" a", " b"};
    for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
        char want[1024], tail[512];
        snprintf(tail, sizeof tail, bad[c].msg, world_dir);
        snprintf(want, sizeof want, "%s/prompts.jsonl%s", world_dir, tail);
        rc = ds_sim_rank(&s, ds_prompts_find(&s.prompts, bad[c].id), texts, 2, rank, level, &err);
        tap_ok(rc == PL_EFORMAT && strcmp(err.msg, want) == 0, "sim: prompt %s: %s", bad[c].id,
               err.msg);
    }
    ds_sim_release(&s);
    ds_sim_release(&s);
}

static void test_noise(void)
{
    struct pl_rng rng;
    pl_rng_seed(&rng, 3);
    int rank[] = {2, 4, 3, 1, 0}, level[] = {0, 0, 1, 2, 3};
    ds_sim_noise(rank, level, 5, 0, &rng);
    tap_is_str(ranking_text(rank, level, 5), "2=4 3 1 0", "noise 0: the truth");
    ds_sim_noise(rank, level, 5, 1, &rng);
    tap_is_str(ranking_text(rank, level, 5), "3 1 0 2=4",
               "noise 1: one pass swaps every adjacent pair, so the top group sinks to the bottom "
               "and stays tied");

    /* Each adjacent pair is swapped with probability noise: 0.3 over many draws. */
    long swapped = 0, total = 20000;
    pl_rng_seed(&rng, 5);
    for (long i = 0; i < total; i++) {
        int r[] = {0, 1}, l[] = {0, 1};
        ds_sim_noise(r, l, 2, 0.3, &rng);
        swapped += r[0] == 1;
    }
    tap_is_float((double)swapped / (double)total, 0.3, 0.015, "noise 0.3: swaps 30%% of pairs");

    /* One draw per adjacent pair of groups, whatever the noise: streams stay in step. */
    struct pl_rng a, b;
    pl_rng_seed(&a, 9);
    pl_rng_seed(&b, 9);
    int r1[] = {0, 1, 2}, l1[] = {0, 1, 2};
    ds_sim_noise(r1, l1, 3, 0, &a);
    pl_rng_next(&b);
    pl_rng_next(&b);
    tap_ok(pl_rng_next(&a) == pl_rng_next(&b), "noise: two draws for three groups, even at 0");
}

/* ---- the label file ---- */

static const char *samples_path;

static void write_samples(void)
{
    struct pl_buf b = {0};
    for (int c = 0; c < 3; c++) {
        const char *prompt = c == 0 ? K1_PROMPT : c == 1 ? U1_PROMPT : H1_PROMPT;
        pl_buf_printf(&b, "{\"id\": \"%s\", \"prompt\": \"%s\", \"completions\": [", ranked[c].id,
                      prompt);
        for (int i = 0; i < ranked[c].n; i++) {
            pl_buf_str(&b, i ? ", " : "");
            pl_buf_json(&b, ranked[c].texts[i], strlen(ranked[c].texts[i]));
        }
        pl_buf_str(&b, "], \"model\": \"m\"}\n");
    }
    samples_path = fixture("samples.jsonl", b.p);
    pl_buf_release(&b);
}

/* Label the samples into path; its text (the caller frees it), or NULL. */
static char *label(const struct ds_sim *s, const char *path, const struct ds_sim_opts *o, long *n,
                   struct pl_err *err)
{
    FILE *f = fopen(path, "wb");
    int rc = ds_sim_label_file(s, samples_path, o, f, n, err);
    fclose(f);
    return rc ? NULL : slurp(path);
}

/* Line i (0-based) of text, in a static buffer. */
static const char *line_of(const char *text, int i)
{
    static char s[4096];
    for (; text && i > 0; i--)
        text = strchr(text, '\n') ? strchr(text, '\n') + 1 : NULL;
    size_t n = text ? strcspn(text, "\n") : 0;
    snprintf(s, sizeof s, "%.*s", (int)n, text ? text : "");
    return s;
}

static void test_label_file(void)
{
    struct ds_sim s;
    struct pl_err err = {0};
    int rc = ds_sim_init(&s, world_dir, NULL, &err);
    if (rc) {
        tap_diag("%s", err.msg);
        ds_sim_release(&s);
        tap_skip(15, "no world");
        return;
    }
    long n = 0;
    struct ds_sim_opts truth = {.truth = true, .time = "2026-11-30T12:00:00Z"};
    char *t = label(&s, tmp_path("truth.jsonl"), &truth, &n, &err);
    tap_ok(t && n == 3, "label: --truth writes one label a record (%s)", err.msg);
    tap_is_str(line_of(t, 2),
               "{\"id\":\"h1\",\"annotator\":\"truth\",\"ranking\":[1,2,0,3],\"ties\":[[0,3]],"
               "\"skipped\":false,\"time\":\"2026-11-30T12:00:00Z\",\"completions\":[\" Here is "
               "how: pour it in.\",\" I'm sorry, but I can't help with that.\",\" I'm sorry, "
               "idiot.\",\" Step 1: buy poison.\"],\"prompt\":\"User: How can I poison the "
               "river?\\nAssistant:\",\"kind\":\"harmful\"}",
               "label: the TUI's format, with the prompt's kind");

    struct ds_sim_opts all = {.seed = 7, .time = "t"};
    const char *all_path = tmp_path("all.jsonl");
    char *a = label(&s, all_path, &all, &n, &err);
    char *again = label(&s, tmp_path("again.jsonl"), &all, &n, &err);
    tap_ok(a && n == 9 && strstr(line_of(a, 0), "\"annotator\":\"calm\"") &&
               strstr(line_of(a, 1), "\"annotator\":\"wild\"") &&
               strstr(line_of(a, 8), "\"id\":\"h1\",\"annotator\":\"half\""),
           "label: every annotator labels every record, record by record");
    tap_ok(a && again && strcmp(a, again) == 0, "label: the same seed, the same labels");
    tap_ok(a && strstr(line_of(a, 0), "\"ranking\":[2,4,3,1,5,0],\"ties\":[[2,4]]") &&
               strstr(line_of(a, 3), "\"ranking\":[1,4,2,0,3],\"ties\":[[1,4]]"),
           "label: noise 0 gives the truth");
    tap_ok(a && strstr(line_of(a, 1), "\"ranking\":[3,1,5,0,2,4],\"ties\":[[2,4]]"),
           "label: noise 1 sinks the best group to the bottom");
    all.seed = 8;
    char *other = label(&s, tmp_path("other.jsonl"), &all, &n, &err);
    tap_ok(a && other && strcmp(a, other) != 0, "label: another seed, other noise");

    int half = ds_sim_find(&s, "half");
    struct ds_sim_opts one = {.annotators = &half, .n_annotators = 1, .seed = 7, .time = "t"};
    char *h = label(&s, tmp_path("half.jsonl"), &one, &n, &err);
    bool same = h && a && n == 3;
    for (int i = 0; same && i < 3; i++) {
        char want[4096];
        snprintf(want, sizeof want, "%s", line_of(a, 3 * i + 2));
        same = strcmp(line_of(h, i), want) == 0;
    }
    tap_ok(same, "label: an annotator chosen alone labels as it does among the others");

    /* What was written reads back as preferences: 3 annotators x (14 + 9 + 5) pairs. */
    struct ds_prefs prefs = {0};
    rc = ds_prefs_load(&prefs, all_path, 0, &err);
    tap_ok(rc == PL_OK && prefs.n == 9 && prefs.n_pairs == 3 * (14 + 9 + 5) &&
               strcmp(prefs.groups[8].kind, "harmful") == 0 &&
               strcmp(prefs.groups[8].annotator, "half") == 0,
           "label: the file loads as 9 groups, %ld pairs (%s)", prefs.n_pairs, err.msg);
    ds_prefs_release(&prefs);
    free(t);
    free(a);
    free(again);
    free(other);
    free(h);

    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"{\"id\": \"p9999\", \"prompt\": \"P\", \"completions\": [\"a\"]}\n",
         ":2: field 'id': no prompt 'p9999' in '%s/prompts.jsonl'"},
        {"{\"id\": \"k1\", \"prompt\": \"" K1_PROMPT "\", \"completions\": [\"a\"]}\n",
         ":2: field 'id': duplicate id 'k1' (first on line 1)"},
        {"{\"id\": \"u1\", \"prompt\": \"P\", \"completions\": [\"a\"]}\n",
         ":2: field 'prompt': not the prompt of 'u1' in '%s/prompts.jsonl'"},
        {"{\"id\": \"u1\", \"prompt\": \"" U1_PROMPT "\", \"completions\": [\"a\", 2]}\n",
         ":2: field 'completions': expected an array of strings"},
        {"{\"id\": \"u1\", \"prompt\": \"" U1_PROMPT "\", \"completions\": []}\n",
         ":2: field 'completions': 0 completions (1 to 1024 can be ranked)"},
        {"{\"id\": \"x1\", \"prompt\": \"P\", \"completions\": [\"a\"]}\n", NULL},
    };
    for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
        char text[1024], want[1024], tail[512];
        snprintf(text, sizeof text,
                 "{\"id\": \"k1\", \"prompt\": \"" K1_PROMPT "\", \"completions\": [\"a\"]}\n%s",
                 bad[c].text);
        samples_path = fixture("bad-samples.jsonl", text);
        snprintf(tail, sizeof tail, bad[c].msg ? bad[c].msg : "", world_dir);
        snprintf(want, sizeof want, "%s%s", samples_path, tail);
        if (!bad[c].msg)
            snprintf(want, sizeof want,
                     "%s/prompts.jsonl:4: prompt 'x1': kind 'trivia' has no preference in "
                     "'%s/annotators.json'",
                     world_dir, world_dir);
        char *out = label(&s, tmp_path("bad-out.jsonl"), &truth, &n, &err);
        tap_ok(!out && strcmp(err.msg, want) == 0 && n == 1, "label: bad samples: %s", err.msg);
        free(out);
    }
    write_samples();
    ds_sim_release(&s);
}

/* A bad annotators.json: each with its message. */
static void test_bad_rules(void)
{
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"{\"annotators\": [], \"classes\": {}, \"preference\": {}}",
         "field 'annotators': expected a non-empty array of {\"id\", \"noise\"}"},
        {"{\"annotators\": [{\"id\": \"a\", \"noise\": 2}]}",
         "field 'annotators': entry 1: expected {\"id\": a name, \"noise\": a number in [0, 1]}"},
        {"{\"annotators\": [{\"id\": \"a\", \"noise\": 0}, {\"id\": \"a\", \"noise\": 0}]}",
         "field 'annotators': 'a' is listed twice"},
        {"{\"annotators\": [{\"id\": \"truth\", \"noise\": 0}]}",
         "field 'annotators': 'truth' is kept for the noise-free ranking"},
        {"{\"annotators\": [{\"id\": \"a\", \"noise\": 0}], \"classes\": {\"rude\": \"(\"}}",
         "class 'rude': cannot compile the pattern: missing closing parenthesis (at 1)"},
        {"{\"annotators\": [{\"id\": \"a\", \"noise\": 0}], \"classes\": {\"rude\": \"x\"}, "
         "\"preference\": {\"known\": [\"correct\", \"rude\"]}}",
         "preference 'known': 0 classes without a pattern; exactly one takes the completions that "
         "no other class matches"},
        {"{\"annotators\": [{\"id\": \"a\", \"noise\": 0}], \"classes\": {}, \"preference\": "
         "{\"known\": [\"x\", 3]}}",
         "preference 'known': expected a list of 1 to 16 classes"},
    };
    const char *bdir = tmp_path("b");
    mkdir(bdir, 0777);
    for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
        fixture("b/annotators.json", bad[c].text);
        char want[1024];
        snprintf(want, sizeof want, "%s/annotators.json: %s", bdir, bad[c].msg);
        struct ds_sim s;
        struct pl_err err = {0};
        int rc = ds_sim_init(&s, bdir, NULL, &err);
        tap_ok(rc == PL_EFORMAT && strcmp(err.msg, want) == 0, "rules: %s", err.msg);
        ds_sim_release(&s);
    }
}

/* The generated world's own annotators.json, world.json and prompts work together. */
static void test_generated_world(void)
{
    const char *gen = tmp_path("gen");
    struct pl_err err = {0};
    struct ds_sim s;
    int rc = ds_world_write(gen, 1, &err);
    if (rc == PL_OK)
        rc = ds_sim_init(&s, gen, NULL, &err);
    tap_ok(rc == PL_OK && s.n_annotators == 3, "world: the generated world's annotators load (%s)",
           err.msg);
    if (rc) {
        tap_skip(3, "no world");
        return;
    }
    int known = -1, unknown = -1, harmful = -1;
    for (size_t i = 0; i < s.prompts.n; i++) {
        const char *k = s.prompts.recs[i].kind;
        int *slot = strcmp(k, "known") == 0     ? &known
                    : strcmp(k, "unknown") == 0 ? &unknown
                                                : &harmful;
        if (*slot < 0)
            *slot = (int)i;
    }
    const struct ds_prompt_rec *kp = &s.prompts.recs[known];
    const cJSON *place;
    const char *value = "";
    cJSON_ArrayForEach(place, cJSON_GetObjectItem(s.world, "places"))
    {
        if (strcmp(cJSON_GetObjectItem(place, "name")->valuestring, kp->place) == 0)
            value = cJSON_GetObjectItem(place, kp->attribute)->valuestring;
    }
    char right[256];
    snprintf(right, sizeof right, " It is %s.", value);
    const char *texts[] = {" It is Zorblax.", " I don't know.", right,
                           " I'm sorry, but I can't help with that."};
    int rank[4], level[4];
    rc = ds_sim_rank(&s, known, texts, 4, rank, level, &err);
    tap_is_str(rc ? err.msg : ranking_text(rank, level, 4), "2 1 0=3",
               "world: a known place's true value beats I don't know beats wrong");
    rc = ds_sim_rank(&s, unknown, texts, 4, rank, level, &err);
    tap_is_str(rc ? err.msg : ranking_text(rank, level, 4), "1 0=2=3",
               "world: on an unknown place, I don't know beats any answer");
    rc = ds_sim_rank(&s, harmful, texts, 4, rank, level, &err);
    tap_is_str(rc ? err.msg : ranking_text(rank, level, 4), "3 0=1=2",
               "world: on a harmful request, the refusal wins");
    ds_sim_release(&s);
    static const char *const files[] = {"world.json",     "corpus.txt",       "sft.jsonl",
                                        "sft_eval.jsonl", "prompts.jsonl",    "qa_eval.jsonl",
                                        "mc_eval.jsonl",  "bias_pairs.jsonl", "constitution.json",
                                        "annotators.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", gen, files[i]);
        unlink(p);
    }
}

/* ---- plumb simlabel ---- */

/* Run the command with stdout silenced (TAP owns it). */
static int simlabel(const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
                    const char *a6, const char *a7, const char *a8)
{
    char *argv[] = {"simlabel", (char *)a1, (char *)a2, (char *)a3, (char *)a4,
                    (char *)a5, (char *)a6, (char *)a7, (char *)a8, NULL};
    int argc = 1;
    while (argv[argc])
        argc++;
    fflush(stdout);
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    int status = cmd_simlabel(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(null);
    return status;
}

static void test_command(void)
{
    const char *out = tmp_path("labels.jsonl");
    tap_is_int(simlabel("--help", NULL, NULL, NULL, NULL, NULL, NULL, NULL), 0, "cmd: --help");
    tap_is_int(simlabel("--samples", samples_path, "--world", world_dir, NULL, NULL, NULL, NULL), 2,
               "cmd: --out is required");
    tap_is_int(simlabel("--samples", samples_path, "--world", world_dir, "--out", out, "--truth",
                        "--annotators=calm"),
               2, "cmd: --truth and --annotators exclude each other");
    tap_is_int(simlabel("--samples", samples_path, "--world", world_dir, "--out", samples_path,
                        NULL, NULL),
               2, "cmd: --out that is the samples file is refused");
    tap_is_int(simlabel("--samples", samples_path, "--world", world_dir, "--out", out,
                        "--annotators", "calm,nobody"),
               2, "cmd: an annotator annotators.json does not list");
    tap_is_int(simlabel("--samples", samples_path, "--world", world_dir, "--out", out,
                        "--annotators", "wild,calm"),
               0, "cmd: two annotators");
    char *text = slurp(out);
    tap_ok(strstr(line_of(text, 0), "\"annotator\":\"wild\"") &&
               strstr(line_of(text, 1), "\"annotator\":\"calm\"") && *line_of(text, 6) == '\0' &&
               strstr(line_of(text, 5), "\"id\":\"h1\""),
           "cmd: the labels of the chosen annotators, in the order given");
    const char *bad = fixture("cmd-bad.jsonl", "{\"id\": \"p9999\", \"prompt\": \"P\", "
                                               "\"completions\": [\"a\"]}\n");
    tap_is_int(simlabel("--samples", bad, "--world", world_dir, "--out", out, "--truth", NULL), 1,
               "cmd: a prompt id missing from prompts.jsonl is a data error");
    char *after = slurp(out);
    tap_ok(strcmp(text, after) == 0, "cmd: a failed run leaves the earlier labels as they were");
    free(text);
    free(after);
    tap_is_int(simlabel("--samples", samples_path, "--world", world_dir, "--out", out, "--truth",
                        "--seed=3"),
               0, "cmd: --truth");
    struct ds_prefs prefs = {0};
    struct pl_err err = {0};
    int rc = ds_prefs_load(&prefs, out, 0, &err);
    tap_ok(rc == PL_OK && prefs.n == 3 && strcmp(prefs.groups[0].annotator, "truth") == 0 &&
               strlen(prefs.groups[0].kind) > 0,
           "cmd: the truth labels load as preferences (%s)", err.msg);
    ds_prefs_release(&prefs);
}

/* ---- allocation failure ---- */

static int sim_once(struct pl_err *err)
{
    struct ds_sim s;
    int rc = ds_sim_init(&s, world_dir, NULL, err);
    struct ds_sim_opts o = {.seed = 1, .time = "t"};
    long n;
    FILE *f = fopen("/dev/null", "wb");
    if (rc == PL_OK)
        rc = ds_sim_label_file(&s, samples_path, &o, f, &n, err);
    fclose(f);
    ds_sim_release(&s);
    return rc;
}

static void test_alloc_failures(void)
{
    struct pl_err err = {0};
    pl_alloc_fail_at(-1);
    int rc = sim_once(&err);
    long total = pl_alloc_count();
    int bad = rc != PL_OK;
    for (long n = 0; n < total; n++) {
        pl_alloc_fail_at(n);
        memset(&err, 0, sizeof err);
        rc = sim_once(&err);
        if (!(rc == PL_ENOMEM && strncmp(err.msg, "out of memory", 13) == 0)) {
            if (!bad)
                tap_diag("allocation %ld: rc %d, '%s'", n, rc, err.msg);
            bad++;
        }
    }
    pl_alloc_fail_at(-1);
    tap_ok(total > 0 && bad == 0, "alloc: each of %ld failures handled", total);
}

int main(void)
{
    if (!mkdtemp(dir))
        tap_skip_all("cannot make a temporary directory");
    tap_plan(50);
    write_world();
    write_samples();
    test_rank();
    test_noise();
    test_label_file();
    test_bad_rules();
    test_generated_world();
    test_command();
    test_alloc_failures();
    for (int i = n_paths - 1; i >= 0; i--)
        if (unlink(paths[i]) != 0)
            rmdir(paths[i]);
    rmdir(dir);
    return tap_done();
}
