/* svg: the report's charts as standalone SVG text (an <svg> element with its xmlns, so the same
 * text is inline in report.html and a file beside report.md): line charts with axes, ticks and
 * labels, grouped bars, and reliability diagrams. No script, no external font or link.
 *
 * Coordinates are finite by construction: a point with a non-finite coordinate is left out, a
 * constant series or a single point gets a padded axis range, and a chart with no point at all
 * draws its axes and says "no data". Names and titles are escaped (text.h). Each writer appends
 * to b; the caller checks b->oom once. */
#ifndef REPORT_SVG_H
#define REPORT_SVG_H

#include "model/pl.h"

/* One line of a line chart: n points (x[i], y[i]), both borrowed. */
struct report_line {
    const char *name;
    const double *x, *y;
    int n;
};

/* A 640 x 320 line chart: one polyline per line (its points as "X,Y" pairs in `points`, one
 * pair per finite point), a circle per point when a line has at most 20, axes whose ranges hold
 * every finite point (rounded out to tick steps of 1, 2 or 5 x 10^k), 3-8 ticks an axis with
 * their values, the x label under the axis, the y label beside it, and a legend when there is
 * more than one line. */
void report_svg_lines(struct pl_buf *b, const char *title, const char *xlabel, const char *ylabel,
                      const struct report_line *lines, int n_lines);

/* Horizontal grouped bars: for each of n_cats categories one bar per series (n_names), drawn
 * from the reference value `ref` (0.5 for a share of stereotyped choices, 0 for a bias score)
 * to the value v[s * n_cats + c], with its 95% interval [lo, hi] (arrays of the same shape, or
 * NULL) as a whisker, and a dashed line at ref. Non-finite values draw no bar. */
void report_svg_bars(struct pl_buf *b, const char *title, const char *const *cats, int n_cats,
                     const char *const *names, int n_names, const double *v, const double *lo,
                     const double *hi, double ref);

/* A reliability diagram: for each of n bins [lo[i], hi[i]) of confidence holding count[i]
 * answers, a bar as high as the bin's accuracy acc[i] and a dot at (conf[i], acc[i]) (the mean
 * confidence); empty bins (count 0 or non-finite acc) are left out; the diagonal is perfect
 * calibration. Axes 0..1. */
void report_svg_reliability(struct pl_buf *b, const char *title, const double *lo, const double *hi,
                            const double *conf, const double *acc, const long *count, int n);

#endif
