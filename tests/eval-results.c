/* eval-results: SHA-256 against FIPS 180-4's examples, the bootstrap interval (reproducible by
 * seed, a point mass gives a point, a ratio's interval holds its value) and the results object. */
#include "eval/results.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_sha256(void)
{
    char hex[65];
    eval_sha256("", 0, hex);
    tap_is_str(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
               "sha256 of nothing");
    eval_sha256("abc", 3, hex);
    tap_is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               "sha256 of 'abc'");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    eval_sha256(two, strlen(two), hex);
    tap_is_str(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
               "sha256 of 56 bytes (padding spills into a second block)");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    const char *path = tap_tmp("million");
    FILE *f = fopen(path, "wb");
    fwrite(a, 1, 1000000, f);
    fclose(f);
    free(a);
    struct pl_err err = {0};
    int rc = eval_sha256_file(path, hex, &err);
    tap_ok(rc == PL_OK && strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39cc"
                                      "c7112cd0") == 0,
           "sha256 of a file of a million 'a' read in chunks");
    rc = eval_sha256_file(tap_tmp("missing"), hex, &err);
    tap_ok(rc == PL_ENOTFOUND && strstr(err.msg, "missing"), "a missing file is PL_ENOTFOUND: %s",
           err.msg);
}

static void test_bootstrap(void)
{
    double num[40], den[40];
    for (int i = 0; i < 40; i++) {
        num[i] = i % 4 == 0;
        den[i] = 1;
    }
    struct eval_ratio r = {num, den};
    double a[2], b[2], c[2];
    struct pl_err err = {0};
    eval_bootstrap(40, eval_ratio_stat, &r, 7, 1000, a, &err);
    eval_bootstrap(40, eval_ratio_stat, &r, 7, 1000, b, &err);
    eval_bootstrap(40, eval_ratio_stat, &r, 8, 1000, c, &err);
    tap_ok(a[0] == b[0] && a[1] == b[1], "the same seed gives the same interval [%g, %g]", a[0],
           a[1]);
    tap_ok(a[0] != c[0] || a[1] != c[1], "another seed another one [%g, %g]", c[0], c[1]);
    tap_ok(a[0] < 0.25 && a[1] > 0.25 && a[0] > 0.05 && a[1] < 0.45,
           "the interval of a 10/40 share holds 0.25 and is about +-0.13 wide");
    /* The normal approximation: sd = sqrt(.25 * .75 / 40) = 0.0685, so +-0.134. */
    tap_is_float(a[1] - a[0], 2 * 1.96 * sqrt(0.25 * 0.75 / 40), 0.05,
                 "its width is near the normal approximation's");
    for (int i = 0; i < 40; i++)
        num[i] = 1;
    eval_bootstrap(40, eval_ratio_stat, &r, 7, 200, a, &err);
    tap_ok(a[0] == 1 && a[1] == 1, "every item a success: the interval is [1, 1]");
    for (int i = 0; i < 40; i++)
        den[i] = 0;
    eval_bootstrap(40, eval_ratio_stat, &r, 7, 200, a, &err);
    tap_ok(isnan(a[0]) && isnan(a[1]), "an undefined ratio has no interval");
    eval_bootstrap(0, eval_ratio_stat, &r, 7, 200, a, &err);
    tap_ok(isnan(a[0]) && isnan(a[1]), "no items, no interval");
}

static void test_results(void)
{
    const char *data = tap_tmp("data.jsonl");
    tap_write_file(data, "abc");
    struct eval_header h = {"unit", NULL, data, 3, 42, 100, "9.9"};
    cJSON *res = NULL;
    struct pl_err err = {0};
    int rc = eval_results_new(&res, &h, &err);
    double num[3] = {1, 0, 1}, den[3] = {1, 1, 1};
    struct eval_ratio r = {num, den};
    if (!rc)
        rc = eval_put_ratio(res, "acc", &r, 3, 42, 100, &err);
    struct io_out o = {0};
    const char *out = tap_tmp("results.json");
    if (!rc)
        rc = io_out_open(&o, out, &err);
    if (!rc)
        rc = eval_results_write(&o, res, &err);
    io_out_abort(&o);
    cJSON_Delete(res);
    tap_is_int(rc, PL_OK, "a results file is written: %s", err.msg);
    cJSON *back = NULL;
    rc = io_json_load(out, &back, &err);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(back, "metrics");
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(m, "acc");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(acc, "value");
    const cJSON *ci = cJSON_GetObjectItemCaseSensitive(acc, "ci95");
    tap_ok(cJSON_IsNumber(v) && fabs(v->valuedouble - 2.0 / 3) < 1e-12 &&
               cJSON_GetArraySize(ci) == 2,
           "metrics.acc = {\"value\": 2/3, \"ci95\": [lo, hi]}");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(back, "sha256");
    tap_is_str(cJSON_IsString(sha) ? sha->valuestring : "",
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
               "sha256 of the dataset");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(back, "model");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(back, "seed");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(back, "plumb_version");
    tap_ok(cJSON_IsNull(model) && cJSON_IsNumber(seed) && seed->valuedouble == 42 &&
               cJSON_IsString(ver) && strcmp(ver->valuestring, "9.9") == 0,
           "model null, seed and version in the header");
    cJSON_Delete(back);
}

int main(void)
{
    tap_tmpdir("eval-results");
    test_sha256();
    test_bootstrap();
    test_results();
    return tap_done();
}
