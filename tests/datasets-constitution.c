/* datasets-constitution: the constitution loader and its rule checker: every rule kind broken
 * and kept, labels, the shipped constitutions, the prompt format, bad files (each message names
 * the file and the principle, PCRE2's message and offset for a bad pattern) and allocation
 * failure. */
#include "datasets/constitution.h"

#include "datasets/world.h"
#include "model/io.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <stdio.h>
#include <string.h>

static const char good[] =
    "{\"principles\": ["
    "{\"name\": \"honest\", \"critique_request\": \"Is it true?\", \"revision_request\": "
    "\"Make it true.\", \"rules\": ["
    "{\"kind\": \"forbid_regex\", \"pattern\": \"(?i)\\\\bsurely\\\\b\"},"
    "{\"kind\": \"require_regex\", \"pattern\": \"[.!?]$\"},"
    "{\"kind\": \"max_words\", \"max\": 4}]},"
    "{\"name\": \"safe\", \"critique_request\": \"Could it hurt?\", \"revision_request\": "
    "\"Decline.\", \"rules\": ["
    "{\"kind\": \"refuse_if_regex\", \"pattern\": \"(?i)poison\", \"refusal\": \"(?i)sorry\", "
    "\"critique\": \"It could hurt.\"}]},"
    "{\"name\": \"plain\", \"critique_request\": \"Plain?\", \"revision_request\": \"Be plain.\"}"
    "]}";

static int load_text(struct ds_constitution *c, const char *name, const char *text,
                     struct pl_err *err)
{
    const char *path = tap_tmp(name);
    tap_write_file(path, text);
    return ds_constitution_load(c, path, err);
}

/* The rules each (prompt, response) breaks, as a string of 0 and 1. */
static const char *verdict(const struct ds_constitution *c, const char *prompt,
                           const char *response)
{
    static char out[64];
    bool broken[16];
    int n = -1;
    static struct pl_err err;
    if (ds_constitution_check(c, prompt, response, broken, &n, &err) != PL_OK)
        return err.msg;
    int count = 0;
    for (int r = 0; r < c->n_rules; r++) {
        out[r] = broken[r] ? '1' : '0';
        count += broken[r];
    }
    out[c->n_rules] = '\0';
    return count == n ? out : "count differs";
}

static void test_rules(void)
{
    struct ds_constitution c;
    struct pl_err err = {0};
    int rc = load_text(&c, "good.json", good, &err);
    tap_is_int(rc, PL_OK, "a good constitution loads (%s)", err.msg);
    if (rc) {
        tap_skip(13, "no constitution");
        return;
    }
    tap_ok(c.n_principles == 3 && c.n_rules == 4 && c.principles[0].n_rules == 3 &&
               c.principles[1].first_rule == 3 && c.principles[2].n_rules == 0,
           "3 principles, 4 rules, a principle without rules");
    tap_is_str(c.rules[2].label, "honest/max_words:3", "a rule's label");
    tap_is_str(c.principles[1].revision_request, "Decline.", "a revision request");
    tap_ok(c.rules[3].critique && strcmp(c.rules[3].critique, "It could hurt.") == 0 &&
               !c.rules[0].critique,
           "a rule's own critique, and a rule without one");
    const char *q = "User: hi\nAssistant:";
    tap_is_str(verdict(&c, q, "It is blue."), "0000", "a clean answer breaks nothing");
    tap_is_str(verdict(&c, q, "It is SURELY blue."), "1000", "forbid_regex, case-insensitive");
    tap_is_str(verdict(&c, q, "It is blue"), "0100", "require_regex: no full stop");
    tap_is_str(verdict(&c, q, "It is very blue."), "0000", "max_words: 4 words are allowed");
    tap_is_str(verdict(&c, q, "It is  very\tdark blue."), "0010", "max_words: 5 words are not");
    tap_is_str(verdict(&c, "User: how to poison a well?\nAssistant:", "Use salt."), "0001",
               "refuse_if_regex: a harmful request answered");
    tap_is_str(verdict(&c, "User: how to poison a well?\nAssistant:", "Sorry, no."), "0000",
               "refuse_if_regex: a harmful request refused");
    tap_is_str(verdict(&c, q, "\xff\xfe surely."), "1000",
               "invalid UTF-8 is no error; the valid text around it is checked");
    tap_ok(ds_constitution_find(&c, "safe") == 1 && ds_constitution_find(&c, "x") == -1,
           "principles by name");
    ds_constitution_release(&c);
    ds_constitution_release(&c);
}

static void test_bad(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"principles\": [", "bad.json:1: not valid JSON"},
        {"{\"principles\": []}", "bad.json: field 'principles': expected a non-empty array"},
        {"{\"principles\": [{\"critique_request\": \"a\", \"revision_request\": \"b\"}]}",
         "bad.json: principle 1: field 'name': expected a non-empty string"},
        {"{\"principles\": [{\"name\": \"p\", \"revision_request\": \"b\"}]}",
         "bad.json: principle 'p': field 'critique_request': expected a non-empty string"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\"}]}",
         "bad.json: principle 'p': field 'revision_request': expected a non-empty string"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": [{\"kind\": \"forbid_regex\", \"pattern\": \"(ab\"}]}]}",
         "bad.json: principle 'p': rule 1: field 'pattern': cannot compile the pattern: missing "
         "closing parenthesis (at 3)"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": [{\"kind\": \"max_words\", \"max\": 2}, {\"kind\": \"refuse_if_regex\","
         " \"pattern\": \"x\", \"refusal\": \"[z\"}]}]}",
         "bad.json: principle 'p': rule 2: field 'refusal': cannot compile the pattern: missing "
         "terminating ] for character class (at 2)"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": [{\"kind\": \"ban\"}]}]}",
         "bad.json: principle 'p': rule 1: field 'kind': expected \"forbid_regex\", "
         "\"require_regex\", \"max_words\" or \"refuse_if_regex\""},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": [{\"kind\": \"max_words\", \"max\": 2.5}]}]}",
         "bad.json: principle 'p': rule 1: field 'max': expected a whole number of words"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": [{\"kind\": \"refuse_if_regex\", \"pattern\": \"x\"}]}]}",
         "bad.json: principle 'p': rule 1: field 'refusal': expected a PCRE2 pattern"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\"}, {\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": \"b\"}]}",
         "bad.json: principle 'p': field 'name': the same name as principle 1"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": [{\"kind\": \"max_words\", \"max\": 2, \"critique\": \"\"}]}]}",
         "bad.json: principle 'p': rule 1: field 'critique': expected a non-empty string"},
        {"{\"principles\": [{\"name\": \"p\", \"critique_request\": \"a\", \"revision_request\": "
         "\"b\", \"rules\": {}}]}",
         "bad.json: principle 'p': field 'rules': expected an array of rules"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct ds_constitution c;
        struct pl_err err = {0};
        int rc = load_text(&c, "bad.json", cases[i].text, &err);
        const char *msg = strstr(err.msg, "bad.json");
        tap_ok(rc == PL_EFORMAT && msg && strcmp(msg, cases[i].want) == 0 &&
                   strncmp(err.msg, tap_tmpdir("constitution"),
                           strlen(tap_tmpdir("constitution"))) == 0,
               "bad constitution %zu: %s", i + 1, err.msg);
        ds_constitution_release(&c);
    }
    struct ds_constitution c;
    struct pl_err err = {0};
    tap_is_int(ds_constitution_load(&c, tap_tmp("missing.json"), &err), PL_ENOTFOUND,
               "a missing file");
}

static void test_shipped(void)
{
    struct ds_constitution c;
    struct pl_err err = {0};
    int rc = ds_constitution_load(&c, "datasets/constitution.json", &err);
    tap_ok(rc == PL_OK && c.n_principles >= 4 && c.n_rules >= 4,
           "datasets/constitution.json loads: %d principles, %d rules (%s)", c.n_principles,
           c.n_rules, err.msg);
    ds_constitution_release(&c);
    rc = ds_world_write(tap_tmp("world"), 1, &err);
    if (!rc)
        rc = ds_constitution_load(&c, tap_tmp("world/constitution.json"), &err);
    tap_ok(rc == PL_OK && c.n_principles == 2, "the toy world's constitution loads (%s)", err.msg);
    const char *harm = "User: How can I poison the well?\nAssistant:";
    tap_is_str(rc ? "" : verdict(&c, harm, "The capital of Bria is Dun."), "000100",
               "the world's rules: an answer to a harmful request breaks refuse_if_regex");
    tap_is_str(rc ? "" : verdict(&c, harm, "I'm sorry, but I can't help with that."), "000000",
               "the world's rules: its refusal breaks nothing");
    ds_constitution_release(&c);
}

static void test_format(void)
{
    struct pl_buf b = {0};
    ds_critique_text(&b, "User: Q?\nAssistant:", "  An answer.\n", "Is it good?", NULL, NULL);
    tap_is_str(b.p, "User: Q?\nAssistant: An answer.\nCritique Request: Is it good?\nCritique:",
               "the critique context");
    b.len = 0;
    ds_critique_text(&b, "User: Q?\nAssistant:", "An answer.", "Is it good?", " It is.\n",
                     "Make it better.");
    tap_is_str(b.p,
               "User: Q?\nAssistant: An answer.\nCritique Request: Is it good?\nCritique: It "
               "is.\nRevision Request: Make it better.\nRevision:",
               "the revision context");
    pl_buf_release(&b);
}

static void test_alloc(void)
{
    const char *path = tap_tmp("good.json");
    long total = 0;
    int bad = 0;
    for (long n = 0; n < 2000; n++) {
        struct ds_constitution c;
        struct pl_err err = {0};
        pl_alloc_fail_at(n);
        int rc = ds_constitution_load(&c, path, &err);
        bool broke = false;
        int nb = 0;
        if (rc == PL_OK)
            rc = ds_constitution_check(&c, "poison", "surely not", NULL, &nb, &err);
        long made = pl_alloc_count();
        pl_alloc_fail_at(-1);
        ds_constitution_release(&c);
        if (made <= n && rc == PL_OK)
            break;
        total++;
        broke = rc != PL_ENOMEM;
        bad += broke;
    }
    tap_ok(total > 0 && bad == 0, "alloc: each of %ld failures gives PL_ENOMEM", total);
}

int main(void)
{
    tap_tmpdir("constitution");
    test_rules();
    test_bad();
    test_shipped();
    test_format();
    test_alloc();
    return tap_done();
}
