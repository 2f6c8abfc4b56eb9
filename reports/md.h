/* md: report.md, the same tables as report.html in Markdown (GitHub's dialect), each chart as
 * an image link to its SVG file (report_chart.file, written beside report.md by the caller).
 * Every string from a file is escaped so it stays text inside its table cell (text.h). */
#ifndef REPORT_MD_H
#define REPORT_MD_H

#include "model/pl.h"
#include "report.h"

/* The document for r into out. Errors: PL_ENOMEM. */
int report_md(const struct report *r, const struct report_page *page, struct pl_buf *out,
              struct pl_err *err);

#endif
