/* html: report.html, one self-contained file: inline CSS and SVG, no script, nothing fetched
 * (a Content-Security-Policy that forbids every load says so to the browser too), readable
 * offline and printable. Sections, each always present (saying so when the runs hold nothing
 * for it), with these ids: summary, training, reliability, bias, samples, critique,
 * reward-model, provenance. Every string from a file goes through text.h's escaping. */
#ifndef REPORT_HTML_H
#define REPORT_HTML_H

#include "model/pl.h"
#include "report.h"

/* The page for r into out. Errors: PL_ENOMEM. */
int report_html(const struct report *r, const struct report_page *page, struct pl_buf *out,
                struct pl_err *err);

#endif
