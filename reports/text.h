/* text: untrusted text (model output, data fields, paths) made safe for a report: HTML and
 * Markdown escaping with control characters stripped, and number formatting shared by every
 * writer.
 *
 * Text from a file may hold any bytes. Every function here reads s[0, n) as UTF-8: each byte
 * that does not start a valid sequence becomes U+FFFD, the C0 controls (tab and newline too
 * unless said otherwise), DEL and the C1 controls U+0080..U+009F are dropped, so nothing can
 * break out of its element, start a script or reach a terminal as an escape. Output goes to a
 * pl_buf (whose oom flag the caller checks once). */
#ifndef REPORT_TEXT_H
#define REPORT_TEXT_H

#include "model/pl.h"

#include <stddef.h>

/* s as HTML text or a double-quoted attribute value: & < > " ' as entities. Newlines and tabs
 * are kept (a <pre> or white-space: pre-wrap element shows them). */
void report_text_html(struct pl_buf *b, const char *s, size_t n);
/* NUL-terminated s; NULL writes nothing. */
void report_text_html_str(struct pl_buf *b, const char *s);

/* s as the text of one Markdown table cell or inline text (never the start of a line): & < > "
 * ' as entities (HTML in Markdown stays text), the characters that make emphasis, code, links,
 * images or cells (\ ` * _ { } [ ] | ~) behind a backslash, and a newline or tab as one space,
 * so a cell stays in its row. */
void report_text_md(struct pl_buf *b, const char *s, size_t n);
void report_text_md_str(struct pl_buf *b, const char *s);

/* A figure for a table: "0.488" style (3 decimals below 1000, else 4 significant digits), "-"
 * for a non-finite value. buf holds at least 32 bytes; returns buf. */
char *report_text_num(char *buf, double v);

#endif
