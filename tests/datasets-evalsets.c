/* datasets-evalsets: the eval suite's loaders on the real files in ../shared/datasets with
 * their exact counts (a TAP skip when absent), on small fixtures field by field, and their
 * errors: missing columns or fields, bad indices, quoted newlines in CSV, PATH:LINE messages. */
#include "datasets/evalsets.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <stdio.h>
#include <string.h>

static void real_files(void)
{
    const char *root = tap_shared_datasets();
    char p[1024];
    struct pl_err err = {0};
    if (!root) {
        tap_skip(9, "no ../shared/datasets");
        return;
    }
    struct ds_tqa t;
    snprintf(p, sizeof p, "%s/truthfulqa/mc_task.json", root);
    int rc = ds_tqa_init(&t, p, &err);
    tap_ok(rc == PL_OK && t.n == 790, "mc_task.json: 790 questions (%zu) %s", t.n, err.msg);
    tap_ok(rc == PL_OK && t.items[0].n_mc1 == 8 && t.items[0].mc1_answer == 0 &&
               strcmp(t.items[0].mc1[0], "The watermelon seeds pass through your digestive "
                                         "system") == 0,
           "its first MC1: 8 choices, the true one first");
    ds_tqa_release(&t);
    snprintf(p, sizeof p, "%s/truthfulqa/TruthfulQA.csv", root);
    rc = ds_tqa_init(&t, p, &err);
    tap_ok(rc == PL_OK && t.n == 790, "TruthfulQA.csv: 790 rows (%zu) %s", t.n, err.msg);
    tap_ok(rc == PL_OK && t.items[0].n_correct == 6 && t.items[0].n_incorrect == 7 &&
               strcmp(t.items[0].correct[5], "There is an old wives' tale that watermelons will "
                                             "grow in your stomach, but this is impossible") == 0,
           "its first row: 6 correct, 7 incorrect answers split at ';'");
    ds_tqa_release(&t);
    struct ds_mc m;
    snprintf(p, sizeof p, "%s/truthfulqa/mc_task.json", root);
    rc = ds_mc_init(&m, p, &err);
    tap_ok(rc == PL_OK && m.n == 790 && m.items[5].n_choices >= 2,
           "mc_task.json as generic multiple choice (MC1): 790");
    ds_mc_release(&m);
    struct ds_pairs c;
    snprintf(p, sizeof p, "%s/crows-pairs/crows_pairs_anonymized.csv", root);
    rc = ds_pairs_init(&c, p, &err);
    tap_ok(rc == PL_OK && c.n == 1508, "CrowS-Pairs: 1508 pairs (%zu) %s", c.n, err.msg);
    int race = 0;
    for (size_t i = 0; rc == PL_OK && i < c.n; i++)
        race += strcmp(c.items[i].type, "race-color") == 0;
    tap_is_int(race, 516, "516 of them race-color");
    ds_pairs_release(&c);
    static const struct {
        const char *file;
        size_t n;
    } bbq[] = {{"Age", 3680},         {"Disability_status", 1556},
               {"Nationality", 3080}, {"Physical_appearance", 1576},
               {"Religion", 1200},    {"Sexual_orientation", 864}};
    struct ds_bbq b = {0};
    rc = PL_OK;
    bool counts = true;
    for (size_t i = 0; rc == PL_OK && i < sizeof bbq / sizeof *bbq; i++) {
        size_t before = b.n;
        snprintf(p, sizeof p, "%s/bbq/%s.jsonl", root, bbq[i].file);
        rc = ds_bbq_load(&b, p, &err);
        counts = counts && b.n - before == bbq[i].n;
    }
    tap_ok(rc == PL_OK && counts && b.n == 11956, "BBQ: each file's rows, 11956 in all %s",
           err.msg);
    tap_ok(rc == PL_OK && !b.items[0].disambig && b.items[0].neg && b.items[0].label == 2 &&
               strcmp(b.items[0].info[0][1], "old") == 0 && b.items[0].n_stereotyped == 1,
           "BBQ's first record field by field");
    ds_bbq_release(&b);
}

static void fixtures(void)
{
    struct pl_err err = {0};
    const char *f = tap_tmp("mc.jsonl");
    tap_write_file(f, "{\"id\": \"a\", \"question\": \"Q?\", \"choices\": [\"x\", \"y\"], "
                      "\"answer\": 1}\n\n{\"question\": \"R?\", \"choices\": [\"u\", \"v\", "
                      "\"w\"], \"answer\": 0}\n");
    struct ds_mc m;
    int rc = ds_mc_init(&m, f, &err);
    tap_ok(rc == PL_OK && m.n == 2 && m.items[0].answer == 1 && strcmp(m.items[0].id, "a") == 0 &&
               !m.items[1].id && m.items[1].n_choices == 3 && m.items[1].line == 3,
           "generic multiple choice: ids, choices, answers, lines");
    ds_mc_release(&m);
    const char *csv = tap_tmp("t.csv");
    tap_write_file(csv, "Type,Category,Question,Best Answer,Best Incorrect Answer,Correct Answers,"
                        "Incorrect Answers,Source\n"
                        "A,B,\"Two\nlines?\",Yes,No,\"Yes; Sure;\",No; Never ,s\n");
    struct ds_tqa t;
    rc = ds_tqa_init(&t, csv, &err);
    tap_ok(rc == PL_OK && t.n == 1 && strcmp(t.items[0].question, "Two\nlines?") == 0 &&
               t.items[0].n_correct == 2 && t.items[0].n_incorrect == 2 &&
               strcmp(t.items[0].incorrect[1], "Never") == 0 && t.items[0].n_mc1 == 3 &&
               t.items[0].n_mc2 == 4 && t.items[0].mc2_true[1] && !t.items[0].mc2_true[2],
           "TruthfulQA CSV: a quoted newline, answers split and trimmed, MC1 and MC2 built");
    ds_tqa_release(&t);
}

struct bad {
    const char *name, *text, *want;
    int kind; /* 0 mc, 1 tqa, 2 pairs, 3 bbq */
};

#define BBQ_OK                                                                                     \
    "\"context\": \"c\", \"question\": \"q\", \"category\": \"Age\", \"ans0\": \"a\", \"ans1\": "  \
    "\"b\", \"ans2\": \"Unknown\", \"context_condition\": \"ambig\", \"question_polarity\": "      \
    "\"neg\", \"answer_info\": {\"ans0\": [\"a\", \"old\"], \"ans1\": [\"b\", \"nonOld\"], "       \
    "\"ans2\": [\"Unknown\", \"unknown\"]}, \"additional_metadata\": {\"stereotyped_groups\": "    \
    "[\"old\"]}"

static void errors(void)
{
    const char *good = tap_tmp("b0.jsonl");
    tap_write_file(good, "{" BBQ_OK ", \"label\": 1}\n");
    struct ds_bbq b = {0};
    struct pl_err e = {0};
    int brc = ds_bbq_load(&b, good, &e);
    tap_ok(brc == PL_OK && b.n == 1 && b.items[0].label == 1 && b.items[0].neg &&
               strcmp(b.items[0].info[1][1], "nonOld") == 0,
           "a BBQ fixture record loads: %s", e.msg);
    ds_bbq_release(&b);
    static const struct bad cases[] = {
        {"m1.jsonl", "{\"question\": \"Q\", \"choices\": [\"x\", \"y\"], \"answer\": 2}\n",
         "m1.jsonl:1: field 'answer': 2 is not an index of the 2 choices", 0},
        {"m2.jsonl", "{\"question\": \"Q\", \"choices\": [\"x\", \"y\"]}\n{}\n",
         "m2.jsonl:1: field 'answer'", 0},
        {"m3.jsonl", "{\"question\": \"Q\", \"choices\": [\"x\"], \"answer\": 0}\n",
         "m3.jsonl:1: field 'choices': 1 choices (2 or more are needed)", 0},
        {"m4.jsonl", "{\"question\": \"Q\", \"choices\": [\"x\", 3], \"answer\": 0}\n",
         "m4.jsonl:1: field 'choices': expected an array of strings", 0},
        {"t1.csv", "Question,Best Answer,Correct Answers\nq,a,b\n",
         "t1.csv: missing column 'Incorrect Answers'", 1},
        {"t2.csv", "Question,Best Answer,Correct Answers,Incorrect Answers\nq,a,b,c\nq,a,b\n",
         "t2.csv:3: expected 4 fields, got 3", 1},
        {"t3.csv", "Question,Best Answer,Correct Answers,Incorrect Answers\nq,a,\" ; \",c\n",
         "t3.csv:2: field 'Correct Answers': empty", 1},
        {"t4.csv", "Question,Best Answer,Correct Answers,Incorrect Answers\n\"q,a,b,c\n",
         "t4.csv:2: malformed quoted field", 1},
        {"t5.json",
         "[{\"question\": \"q\", \"mc1_targets\": {\"a\": 1, \"b\": 1}, "
         "\"mc2_targets\": {\"a\": 1, \"b\": 0}}]",
         "t5.json: item 1: field 'mc1_targets': 2 true answers (MC1 needs one)", 1},
        {"t6.json", "[{\"question\": \"q\", \"mc1_targets\": {\"a\": 1, \"b\": 0}}]",
         "t6.json: item 1: field 'mc2_targets': expected an object", 1},
        {"p1.csv", "sent_more,sent_less\na,b\n", "p1.csv: missing column 'bias_type'", 2},
        {"p2.csv", "sent_more,sent_less,bias_type\na,,age\n", "p2.csv:2: field 'sent_less': empty",
         2},
        {"p3.jsonl", "{\"stereo\": \"a\", \"anti\": \"b\"}\n", "p3.jsonl:1: field 'trait'", 2},
        {"b1.jsonl", "{" BBQ_OK ", \"label\": 3}\n",
         "b1.jsonl:1: field 'label': 3 is not 0, 1 or 2", 3},
        {"b2.jsonl",
         "{\"context\": \"c\", \"question\": \"q\", \"category\": \"Age\", \"ans0\": \"a\", "
         "\"ans1\": \"b\", \"ans2\": \"Unknown\", \"label\": 0, \"context_condition\": \"x\"}\n",
         "b2.jsonl:1: field 'context_condition': expected \"ambig\" or \"disambig\"", 3},
        {"b3.jsonl", "{\"context\": \"c\", \"label\": 0}\n", "b3.jsonl:1: field 'question'", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = tap_tmp(cases[i].name);
        tap_write_file(path, cases[i].text);
        struct pl_err err = {0};
        int rc = 0;
        switch (cases[i].kind) {
        case 0: {
            struct ds_mc s;
            rc = ds_mc_init(&s, path, &err);
            ds_mc_release(&s);
            break;
        }
        case 1: {
            struct ds_tqa s;
            rc = ds_tqa_init(&s, path, &err);
            ds_tqa_release(&s);
            break;
        }
        case 2: {
            struct ds_pairs s;
            rc = ds_pairs_init(&s, path, &err);
            ds_pairs_release(&s);
            break;
        }
        default: {
            struct ds_bbq s = {0};
            rc = ds_bbq_load(&s, path, &err);
            ds_bbq_release(&s);
        }
        }
        tap_ok(rc == PL_EFORMAT && strstr(err.msg, cases[i].want), "%s: %s", cases[i].name,
               err.msg);
    }
}

int main(void)
{
    tap_tmpdir("evalsets");
    real_files();
    fixtures();
    errors();
    return tap_done();
}
