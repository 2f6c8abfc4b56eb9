/* reports-text: untrusted text made safe for HTML and Markdown: markup characters as entities,
 * C0, DEL and C1 controls dropped, invalid UTF-8 as U+FFFD, valid UTF-8 kept, Markdown's
 * structural characters escaped and newlines folded; and the figure format. */
#include "reports/text.h"

#include "model/pl.h"
#include "tests/tap.h"

#include <math.h>
#include <string.h>

static void html_is(const char *in, size_t n, const char *want, const char *what)
{
    struct pl_buf b = {0};
    pl_buf_str(&b, "");
    report_text_html(&b, in, n);
    tap_is_str(b.p, want, "html: %s", what);
    pl_buf_release(&b);
}

static void md_is(const char *in, const char *want, const char *what)
{
    struct pl_buf b = {0};
    pl_buf_str(&b, "");
    report_text_md_str(&b, in);
    tap_is_str(b.p, want, "markdown: %s", what);
    pl_buf_release(&b);
}

int main(void)
{
    const char *s = "<script>alert(\"x\")</script>";
    html_is(s, strlen(s), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;", "a script tag");
    html_is("a & b 'c'", 9, "a &amp; b &#39;c&#39;", "ampersand and apostrophes");
    html_is("a\x01\x1b[31mb\x7f", 10, "a[31mb", "C0 controls (ESC too) and DEL dropped");
    html_is("x\xc2\x85y\xc2\x9fz", 7, "xyz", "C1 controls (U+0085, U+009F) dropped");
    html_is("l1\nl2\tt\r", 9, "l1\nl2\tt", "newline and tab kept, carriage return dropped");
    html_is("caf\xc3\xa9 \xe2\x96\xb2 \xf0\x9f\x98\x80", 14,
            "caf\xc3\xa9 \xe2\x96\xb2 \xf0\x9f\x98\x80", "valid UTF-8 kept");
    html_is("a\xff"
            "b\xc3",
            4,
            "a\xef\xbf\xbd"
            "b\xef\xbf\xbd",
            "invalid bytes become U+FFFD");
    html_is("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", "a surrogate is invalid");
    html_is("\xc0\xbc", 2, "\xef\xbf\xbd\xef\xbf\xbd", "an overlong '<' stays invalid, not '<'");
    html_is("a\0b", 3, "ab", "a NUL byte dropped");

    md_is("a|b", "a\\|b", "a pipe cannot end a cell");
    md_is("*x* _y_ `z` [l](http://e) ~s~ {b} \\",
          "\\*x\\* \\_y\\_ \\`z\\` \\[l\\](http://e) "
          "\\~s\\~ \\{b\\} \\\\",
          "emphasis, code, links and backslashes escaped");
    md_is("line1\nline2\tx", "line1 line2 x", "newline and tab folded into spaces");
    md_is("<img src=x onerror=alert(1)> & \"q\"",
          "&lt;img src=x onerror=alert(1)&gt; &amp; "
          "&quot;q&quot;",
          "HTML in Markdown stays text");
    md_is("\x1b]0;title\x07", "\\]0;title", "terminal escapes dropped");

    char buf[32];
    tap_is_str(report_text_num(buf, 0.48751), "0.488", "a figure with 3 decimals");
    tap_is_str(report_text_num(buf, -2), "-2.000", "a negative figure");
    tap_is_str(report_text_num(buf, 123456), "1.235e+05", "a large figure with 4 digits");
    tap_is_str(report_text_num(buf, NAN), "-", "NaN is '-'");
    tap_is_str(report_text_num(buf, INFINITY), "-", "infinity is '-'");
    return tap_done();
}
