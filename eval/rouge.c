#include "rouge.h"

#include "model/pl.h"

#include <string.h>

/* Tokens of s: spans [start[i], start[i] + len[i]) of the lower-cased copy low. */
struct toks {
    char *low;
    int *start, *len;
    int n;
};

static bool alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int tokenize(const char *s, struct toks *t)
{
    size_t n = strlen(s);
    t->low = pl_malloc(n + 1);
    t->start = pl_malloc((n / 2 + 1) * sizeof *t->start);
    t->len = pl_malloc((n / 2 + 1) * sizeof *t->len);
    t->n = 0;
    if (!t->low || !t->start || !t->len)
        return -1;
    for (size_t i = 0; i <= n; i++)
        t->low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    for (size_t i = 0; i < n;) {
        while (i < n && !alnum(t->low[i]))
            i++;
        size_t j = i;
        while (j < n && alnum(t->low[j]))
            j++;
        if (j > i) {
            t->start[t->n] = (int)i;
            t->len[t->n++] = (int)(j - i);
        }
        i = j;
    }
    return 0;
}

static void toks_free(struct toks *t)
{
    pl_free(t->low);
    pl_free(t->start);
    pl_free(t->len);
}

static bool same(const struct toks *a, int i, const struct toks *b, int j)
{
    return a->len[i] == b->len[j] &&
           memcmp(a->low + a->start[i], b->low + b->start[j], (size_t)a->len[i]) == 0;
}

double eval_rouge_l(const char *reference, const char *candidate)
{
    struct toks r = {0}, c = {0};
    int *row = NULL;
    double f = -1;
    if (tokenize(reference, &r) || tokenize(candidate, &c))
        goto done;
    if (r.n == 0 || c.n == 0) {
        f = 0;
        goto done;
    }
    /* LCS by dynamic programming, one row of the table. */
    row = pl_calloc((size_t)c.n + 1, sizeof *row);
    if (!row)
        goto done;
    for (int i = 0; i < r.n; i++) {
        int diag = 0;
        for (int j = 1; j <= c.n; j++) {
            int up = row[j];
            row[j] = same(&r, i, &c, j - 1) ? diag + 1 : (row[j - 1] > up ? row[j - 1] : up);
            diag = up;
        }
    }
    int lcs = row[c.n];
    double p = (double)lcs / c.n, q = (double)lcs / r.n;
    f = lcs == 0 ? 0 : 2 * p * q / (p + q);
done:
    pl_free(row);
    toks_free(&r);
    toks_free(&c);
    return f;
}
