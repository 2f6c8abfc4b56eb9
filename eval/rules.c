#include "rules.h"

#include "datasets/ds.h"
#include "model/io.h"

#include <math.h>
#include <string.h>

static int check_one(const struct ds_constitution *c, const char *prompt, const char *response,
                     bool *broken, struct eval_rules *out, struct pl_err *err)
{
    int n;
    int rc = ds_constitution_check(c, prompt, response, broken, &n, err);
    if (rc)
        return rc;
    out->responses++;
    out->any += n > 0;
    for (int r = 0; r < c->n_rules; r++)
        out->rule[r] += broken[r];
    for (int p = 0; p < c->n_principles; p++) {
        const struct ds_principle *pr = &c->principles[p];
        bool any = false;
        for (int r = pr->first_rule; r < pr->first_rule + pr->n_rules; r++)
            any = any || broken[r];
        out->principle[p] += any;
    }
    return PL_OK;
}

/* The responses of one record, checked. */
static int check_record(const struct ds_constitution *c, const struct io_jsonl *in,
                        const cJSON *obj, bool *broken, struct eval_rules *out, struct pl_err *err)
{
    const char *prompt;
    int rc = io_get_str(in, obj, "prompt", &prompt, err);
    if (rc)
        return rc;
    if (cJSON_GetObjectItemCaseSensitive(obj, "completions")) {
        const cJSON *arr, *s;
        int n;
        rc = ds_get_strs(in, obj, "completions", &arr, &n, err);
        for (s = rc ? NULL : arr->child; s && !rc; s = s->next)
            rc = check_one(c, prompt, s->valuestring, broken, out, err);
        return rc;
    }
    if (!cJSON_GetObjectItemCaseSensitive(obj, "response"))
        return io_jsonl_errf(in, err, "expected 'completions' or 'response'");
    const char *response;
    rc = io_get_str(in, obj, "response", &response, err);
    return rc ? rc : check_one(c, prompt, response, broken, out, err);
}

int eval_rules_file(const struct ds_constitution *c, const char *input_path, unsigned flags,
                    struct eval_rules *out, struct pl_err *err)
{
    memset(out, 0, sizeof *out);
    out->n_rules = c->n_rules;
    out->n_principles = c->n_principles;
    out->rule = pl_calloc((size_t)c->n_rules + 1, sizeof *out->rule);
    out->principle = pl_calloc((size_t)c->n_principles + 1, sizeof *out->principle);
    bool *broken = pl_calloc((size_t)c->n_rules + 1, sizeof *broken);
    struct io_jsonl in;
    int rc = out->rule && out->principle && broken ? io_jsonl_init(&in, input_path, flags, err)
                                                   : pl_oom(err, "rules eval");
    bool opened = rc == PL_OK;
    cJSON *obj = NULL;
    while (!rc && !(rc = io_jsonl_next(&in, &obj, NULL, err)) && obj) {
        rc = check_record(c, &in, obj, broken, out, err);
        if (rc == PL_EFORMAT && (flags & IO_SKIP_BAD_LINES)) {
            out->skipped++;
            *err = (struct pl_err){0};
            rc = PL_OK;
        }
        cJSON_Delete(obj);
        obj = NULL;
    }
    if (opened) {
        out->skipped += in.skipped;
        io_jsonl_release(&in);
    }
    pl_free(broken);
    if (rc)
        eval_rules_release(out);
    return rc;
}

void eval_rules_release(struct eval_rules *r)
{
    pl_free(r->rule);
    pl_free(r->principle);
    memset(r, 0, sizeof *r);
}

double eval_rules_rate(const struct eval_rules *r, long count)
{
    return r->responses ? (double)count / (double)r->responses : NAN;
}

static void put_rate(struct pl_buf *b, double v)
{
    if (isfinite(v))
        pl_buf_printf(b, "%.6g", v);
    else
        pl_buf_str(b, "null");
}

void eval_rules_json(const struct eval_rules *r, const struct ds_constitution *c, struct pl_buf *b)
{
    pl_buf_printf(b, "{\"responses\": %ld, \"violation_rate\": ", r->responses);
    put_rate(b, eval_rules_rate(r, r->any));
    pl_buf_str(b, ", \"rules\": {");
    for (int i = 0; i < c->n_rules; i++) {
        pl_buf_str(b, i ? ", " : "");
        pl_buf_json(b, c->rules[i].label, strlen(c->rules[i].label));
        pl_buf_str(b, ": ");
        put_rate(b, eval_rules_rate(r, r->rule[i]));
    }
    pl_buf_str(b, "}, \"principles\": {");
    for (int p = 0; p < c->n_principles; p++) {
        pl_buf_str(b, p ? ", " : "");
        pl_buf_json(b, c->principles[p].name, strlen(c->principles[p].name));
        pl_buf_str(b, ": ");
        put_rate(b, eval_rules_rate(r, r->principle[p]));
    }
    pl_buf_str(b, "}}\n");
}
