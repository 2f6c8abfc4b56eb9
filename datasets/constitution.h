/* constitution: the constitution file (DESIGN.md section 5), its prompt format and its
 * machine-checkable rules, for constitutional critique (rlhf/critique.h) and the rules eval
 * (eval/rules.h).
 *
 * A constitution is {"principles": [{"name", "critique_request", "revision_request", "rules":
 * [...]}]}; rules are optional, and each is one of
 *   {"kind": "forbid_regex", "pattern": P}     broken when the response matches P;
 *   {"kind": "require_regex", "pattern": P}    broken when it does not;
 *   {"kind": "max_words", "max": N}            broken when it has more than N words (runs of
 *                                              non-space characters);
 *   {"kind": "refuse_if_regex", "pattern": P, "refusal": R}
 *                                              broken when the prompt matches P (a request that
 *                                              must be refused) and the response does not
 *                                              match R (a refusal).
 * Any rule may also carry "critique": C, a non-empty text that the SL stage gives as the
 * critique, instead of the model's own, when the response breaks the rule under the round's
 * principle: a machine-checked rule then tells the model what is wrong where its own critique
 * would miss it (rlhf/critique.h).
 * Patterns are PCRE2 (UTF, invalid UTF-8 in model text matches nothing). Every error names the
 * file and the principle: "c.json: principle 'honesty': rule 2: field 'pattern': cannot compile
 * the pattern: missing closing parenthesis (at 7)". */
#ifndef DS_CONSTITUTION_H
#define DS_CONSTITUTION_H

#include "model/io.h"
#include "model/pl.h"

#include <stdbool.h>

enum ds_rule_kind {
    DS_RULE_FORBID = 1,
    DS_RULE_REQUIRE,
    DS_RULE_MAX_WORDS,
    DS_RULE_REFUSE_IF,
};

struct ds_rule {
    int kind;          /* enum ds_rule_kind */
    int principle;     /* index of the principle it belongs to */
    const char *label; /* "honesty/forbid_regex:1" (1-based within the principle): for reports */
    const char *pattern, *refusal; /* sources; NULL when the kind has none */
    const char *critique;          /* the rule's own critique; NULL: none */
    long max_words;
    void *re, *re_refusal; /* compiled (pcre2_code *) */
};

struct ds_principle {
    const char *name, *critique_request, *revision_request;
    int first_rule, n_rules; /* its rules: rules[first_rule, first_rule + n_rules) */
};

struct ds_constitution {
    struct ds_principle *principles; /* [n_principles] >= 1 */
    int n_principles;
    struct ds_rule *rules; /* [n_rules], principle by principle */
    int n_rules;
    /* Internal. */
    struct io_arena strings;
    void *gctx, *match; /* PCRE2 general context and match data */
};

/* Load and compile path. c is zeroed first and releasable on every return. Errors: PL_EFORMAT
 * "PATH:LINE: not valid JSON", "PATH: field 'principles': expected a non-empty array",
 * "PATH: principle 2: field 'name': expected a non-empty string", "PATH: principle 'x': field
 * 'critique_request': expected a non-empty string", a rule of an unknown kind or without its
 * fields, a pattern that does not compile (PCRE2's message and offset), a repeated name; those
 * of reading; PL_ENOMEM. */
int ds_constitution_load(struct ds_constitution *c, const char *path, struct pl_err *err);
void ds_constitution_release(struct ds_constitution *c);

/* Check (prompt, response) against every rule: broken[r] (may be NULL; [n_rules]) says whether
 * rule r is broken, *n_broken how many are. Not thread-safe: the match data is shared.
 * Errors: PL_ENOMEM, PL_EINVAL naming the rule when PCRE2 gives up (a match limit). */
int ds_constitution_check(const struct ds_constitution *c, const char *prompt, const char *response,
                          bool *broken, int *n_broken, struct pl_err *err);

/* Index of the principle called name, or -1. */
int ds_constitution_find(const struct ds_constitution *c, const char *name);

/* ---- the prompt format ----
 *
 * The step contexts of critique and revision (Anthropic's constitutional AI, in plumb's chat
 * format "User: ...\nAssistant:"):
 *   critique: PROMPT " " RESPONSE "\nCritique Request: " CRITIQUE_REQUEST "\nCritique:"
 *   revision: the critique context " " CRITIQUE "\nRevision Request: " REVISION_REQUEST
 *             "\nRevision:"
 * The model continues each with " " and one line. RESPONSE and CRITIQUE are stripped of
 * surrounding white space first (ds_strip). A context longer than a model's window keeps its
 * last tokens: the toy world's demonstrations are built exactly so. */

/* Append the critique context (critique == NULL) or the revision context to b. */
void ds_critique_text(struct pl_buf *b, const char *prompt, const char *response,
                      const char *critique_request, const char *critique,
                      const char *revision_request);

/* s[*from, *to) without leading and trailing spaces, tabs, '\r' and '\n'. */
void ds_strip(const char *s, size_t *from, size_t *to);

#endif
