/* wcwidth is X/Open. */
#define _XOPEN_SOURCE 700

#include "text.h"

#include "model/io.h"

#include <string.h>

/* Room for n more characters in t->s. */
static bool text_room(struct tui_text *t, size_t n)
{
    wchar_t *s = io_grow(t->s, &t->s_cap, t->n + n + 1, sizeof *s);
    if (!s)
        return false;
    t->s = s;
    return true;
}

static void put(struct tui_text *t, wchar_t c)
{
    t->s[t->n++] = c;
}

static void put_ascii(struct tui_text *t, const char *a)
{
    while (*a)
        put(t, (wchar_t)*a++);
}

/* The code point of a valid UTF-8 sequence at p[0, n) in *cp and its length; 0 when p does not
 * start one (a stray byte, a cut-short, overlong or surrogate sequence, or one past U+10FFFF). */
static int utf8_decode(const unsigned char *p, size_t n, unsigned long *cp)
{
    int len = p[0] < 0x80                   ? 1
              : p[0] >= 0xC2 && p[0] < 0xE0 ? 2
              : p[0] >= 0xE0 && p[0] < 0xF0 ? 3
              : p[0] >= 0xF0 && p[0] < 0xF5 ? 4
                                            : 0;
    if (len == 0 || (size_t)len > n)
        return 0;
    unsigned long c = len == 1 ? p[0] : p[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3F);
    }
    static const unsigned long least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < least[len] || (c >= 0xD800 && c < 0xE000) || c > 0x10FFFF)
        return 0;
    *cp = c;
    return len;
}

int tui_text_clean(struct tui_text *t, const char *text, size_t len, struct pl_err *err)
{
    const unsigned char *p = (const unsigned char *)text;
    t->n = 0;
    /* At most 4 characters ("<9F>", a tab's spaces) come from one input byte. */
    if (!text_room(t, 4 * len))
        return pl_oom(err, "text");
    for (size_t i = 0; i < len;) {
        unsigned long cp;
        int n = utf8_decode(p + i, len - i, &cp);
        i += n ? (size_t)n : 1;
        if (n == 0)
            put(t, 0xFFFD);
        else if (cp == '\n')
            put(t, L'\n');
        else if (cp == '\t')
            put_ascii(t, "    ");
        else if (cp < 0x20) {
            put(t, L'^');
            put(t, (wchar_t)(cp + 0x40));
        } else if (cp == 0x7F)
            put_ascii(t, "^?");
        else if (cp >= 0x80 && cp < 0xA0) {
            static const char hex[] = "0123456789ABCDEF";
            put(t, L'<');
            put(t, (wchar_t)hex[cp >> 4]);
            put(t, (wchar_t)hex[cp & 15]);
            put(t, L'>');
        } else
            put(t, wcwidth((wchar_t)cp) < 0 ? (wchar_t)0xFFFD : (wchar_t)cp);
    }
    t->s[t->n] = L'\0';
    return PL_OK;
}

int tui_text_cols(wchar_t c)
{
    int w = wcwidth(c);
    return w < 0 ? 1 : w;
}

static int add_line(struct tui_text *t, size_t start, size_t end, struct pl_err *err)
{
    struct tui_span *l = io_grow(t->lines, &t->lines_cap, (size_t)t->n_lines + 1, sizeof *l);
    if (!l)
        return pl_oom(err, "text lines");
    t->lines = l;
    int cols = 0;
    for (size_t i = start; i < end; i++)
        cols += tui_text_cols(t->s[i]);
    l[t->n_lines++] = (struct tui_span){.start = start, .len = end - start, .cols = cols};
    return PL_OK;
}

int tui_text_wrap(struct tui_text *t, int width, struct pl_err *err)
{
    t->n_lines = 0;
    size_t start = 0, space = 0; /* space: just after the line's last space, or 0 */
    int cols = 0;
    for (size_t i = 0; i <= t->n; i++) {
        if (i == t->n || t->s[i] == L'\n') {
            int rc = add_line(t, start, i, err);
            if (rc)
                return rc;
            start = i + 1;
            space = 0;
            cols = 0;
            continue;
        }
        int w = tui_text_cols(t->s[i]);
        if (cols + w > width && i > start) {
            size_t cut = space > start ? space : i;
            int rc = add_line(t, start, cut, err);
            if (rc)
                return rc;
            start = cut;
            space = 0;
            cols = 0;
            for (size_t j = start; j < i; j++)
                cols += tui_text_cols(t->s[j]);
        }
        cols += w;
        if (t->s[i] == L' ')
            space = i + 1;
    }
    return PL_OK;
}

int tui_text_set(struct tui_text *t, const char *text, size_t len, int width, struct pl_err *err)
{
    int rc = tui_text_clean(t, text, len, err);
    return rc ? rc : tui_text_wrap(t, width, err);
}

void tui_text_release(struct tui_text *t)
{
    pl_free(t->s);
    pl_free(t->lines);
    memset(t, 0, sizeof *t);
}
