#include "text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum mode { HTML, MD };

/* The length of the valid UTF-8 sequence at s[0, n) (1..4), or 0 when s[0] starts none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    unsigned cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static void escape(struct pl_buf *b, const char *s, size_t n, enum mode m)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_len(u + i, n - i);
        if (len == 0) {
            pl_buf_str(b, "\xef\xbf\xbd");
            i++;
            continue;
        }
        if (len > 1) {
            /* C1 controls are U+0080..U+009F: 0xc2 0x80..0x9f. */
            if (!(len == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0))
                pl_buf_add(b, s + i, len);
            i += len;
            continue;
        }
        char c = s[i++];
        if (c == '\n' || c == '\t') {
            pl_buf_str(b, m == HTML ? (c == '\n' ? "\n" : "\t") : " ");
            continue;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f)
            continue;
        switch (c) {
        case '&':
            pl_buf_str(b, "&amp;");
            break;
        case '<':
            pl_buf_str(b, "&lt;");
            break;
        case '>':
            pl_buf_str(b, "&gt;");
            break;
        case '"':
            pl_buf_str(b, "&quot;");
            break;
        case '\'':
            pl_buf_str(b, "&#39;");
            break;
        default:
            if (m == MD && strchr("\\`*_{}[]|~", c))
                pl_buf_add(b, "\\", 1);
            pl_buf_add(b, &c, 1);
        }
    }
}

void report_text_html(struct pl_buf *b, const char *s, size_t n)
{
    escape(b, s, n, HTML);
}

void report_text_html_str(struct pl_buf *b, const char *s)
{
    if (s)
        escape(b, s, strlen(s), HTML);
}

void report_text_md(struct pl_buf *b, const char *s, size_t n)
{
    escape(b, s, n, MD);
}

void report_text_md_str(struct pl_buf *b, const char *s)
{
    if (s)
        escape(b, s, strlen(s), MD);
}

char *report_text_num(char *buf, double v)
{
    if (!isfinite(v))
        snprintf(buf, 32, "-");
    else if (fabs(v) < 1000)
        snprintf(buf, 32, "%.3f", v);
    else
        snprintf(buf, 32, "%.4g", v);
    return buf;
}
