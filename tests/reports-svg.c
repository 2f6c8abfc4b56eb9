/* reports-svg: the report's charts for known series: axis ranges from the tick labels, one
 * coordinate pair per finite point, every coordinate finite and inside the chart, a constant
 * series, a single point, gaps, empty series, bars and reliability bins, and escaped names. */
#include "reports/svg.h"

#include "model/pl.h"
#include "tests/tap.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Pairs in the n-th (0-based) points="..." of svg: their count, and whether each coordinate
 * is a finite number inside [0, w] x [0, h]. */
static int points(const char *svg, int nth, int w, int h, bool *inside)
{
    const char *p = svg;
    for (int i = 0; i <= nth; i++) {
        p = strstr(p, "points=\"");
        if (!p)
            return -1;
        p += 8;
    }
    int n = 0;
    *inside = true;
    while (*p && *p != '"') {
        char *end;
        double x = strtod(p, &end);
        if (end == p || *end != ',') {
            *inside = false;
            return n;
        }
        double y = strtod(end + 1, &end);
        *inside &= isfinite(x) && isfinite(y) && x >= 0 && x <= w && y >= 0 && y <= h;
        n++;
        p = end;
        while (*p == ' ')
            p++;
    }
    return n;
}

/* The first and last tick label values of the axis whose labels are drawn with `anchor`. */
static void tick_range(const char *svg, const char *group, double *first, double *last)
{
    const char *g = strstr(svg, group);
    *first = *last = NAN;
    const char *end = g ? strstr(g, "</g>") : NULL;
    for (const char *p = g; p && (p = strstr(p, "class=\"tick\"")) && p < end; p++) {
        const char *v = strchr(p, '>');
        double x = strtod(v + 1, NULL);
        if (isnan(*first))
            *first = x;
        *last = x;
    }
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static bool clean(const char *svg)
{
    return !strstr(svg, "nan") && !strstr(svg, "inf") && !strstr(svg, "NaN") &&
           strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0 &&
           strstr(svg, "</svg>\n") == svg + strlen(svg) - 7;
}

static void known_series(void)
{
    const double x[] = {0, 1, 2, 3, 4}, y[] = {0, 10, 20, 30, 40};
    const double y2[] = {5, 4, 3, 2, 1};
    struct report_line lines[] = {{"up", x, y, 5}, {"down", x, y2, 5}};
    struct pl_buf b = {0};
    report_svg_lines(&b, "two lines", "step", "value", lines, 2);
    bool in1, in2;
    tap_ok(!b.oom && clean(b.p), "a line chart is one whole <svg> without NaN or infinity");
    tap_is_int(points(b.p, 0, 640, 320, &in1), 5, "5 points of the first line");
    tap_ok(in1, "every point of the first line lies inside the chart");
    tap_is_int(points(b.p, 1, 640, 320, &in2), 5, "5 points of the second line");
    tap_ok(in2, "every point of the second line lies inside the chart");
    double lo, hi;
    tick_range(b.p, "<g text-anchor=\"end\">", &lo, &hi);
    tap_ok(lo == 0 && hi == 40, "y axis 0..40 holds every value (got %g..%g)", lo, hi);
    tick_range(b.p, "<g text-anchor=\"middle\">", &lo, &hi);
    tap_ok(lo == 0 && hi == 4, "x axis 0..4 (got %g..%g)", lo, hi);
    tap_ok(strstr(b.p, ">step</text>") && strstr(b.p, ">value</text>"), "both axes are labelled");
    tap_ok(strstr(b.p, ">up</text>") && strstr(b.p, ">down</text>"), "a legend names the lines");
    tap_is_int(count(b.p, "<circle"), 10, "a marker per point of short lines");
    pl_buf_release(&b);

    /* The first point's pixel is the axis origin, the last the far corner. */
    const double x3[] = {-3, 7}, y3[] = {0.25, 0.75};
    struct report_line l3 = {"l", x3, y3, 2};
    report_svg_lines(&b, "t", "x", "y", &l3, 1);
    tick_range(b.p, "<g text-anchor=\"end\">", &lo, &hi);
    tap_ok(lo <= 0.25 && hi >= 0.75 && hi - lo <= 1, "y range rounds out to ticks (%g..%g)", lo,
           hi);
    tick_range(b.p, "<g text-anchor=\"middle\">", &lo, &hi);
    tap_ok(lo <= -3 && hi >= 7 && hi - lo <= 12, "x range with a negative start (%g..%g)", lo, hi);
    tap_ok(!strstr(b.p, ">l</text>"), "no legend for a single line");
    pl_buf_release(&b);
}

static void edge_cases(void)
{
    struct pl_buf b = {0};
    bool in;
    double lo, hi;
    const double x[] = {0, 1, 2, 3}, flat[] = {5, 5, 5, 5};
    struct report_line c = {"flat", x, flat, 4};
    report_svg_lines(&b, "constant", "step", "v", &c, 1);
    tap_ok(clean(b.p), "a constant series: no NaN (no division by a zero range)");
    tap_is_int(points(b.p, 0, 640, 320, &in), 4, "a constant series keeps its 4 points");
    tap_ok(in, "inside the chart");
    tick_range(b.p, "<g text-anchor=\"end\">", &lo, &hi);
    tap_ok(lo < 5 && hi > 5, "its y range is padded around 5 (%g..%g)", lo, hi);
    pl_buf_release(&b);

    const double zero[] = {0, 0, 0, 0};
    struct report_line z = {"zero", x, zero, 4};
    report_svg_lines(&b, "zeros", "step", "v", &z, 1);
    tick_range(b.p, "<g text-anchor=\"end\">", &lo, &hi);
    tap_ok(clean(b.p) && lo < 0 && hi > 0, "an all-zero series gets a range around 0");
    pl_buf_release(&b);

    const double x1[] = {7}, y1[] = {0.5};
    struct report_line one = {"one", x1, y1, 1};
    report_svg_lines(&b, "single", "step", "v", &one, 1);
    tap_ok(clean(b.p), "a single point: no NaN");
    tap_is_int(points(b.p, 0, 640, 320, &in), 1, "one point");
    tap_ok(in && count(b.p, "<circle") == 1, "inside the chart, with a marker");
    pl_buf_release(&b);

    const double xg[] = {0, 1, 2, 3, NAN}, yg[] = {1, NAN, INFINITY, 2, 3};
    struct report_line gap = {"gap", xg, yg, 5};
    report_svg_lines(&b, "gaps", "step", "v", &gap, 1);
    tap_ok(clean(b.p), "non-finite values leave no NaN or inf in the chart");
    tap_is_int(points(b.p, 0, 640, 320, &in), 2, "only the 2 finite points are drawn");
    pl_buf_release(&b);

    struct report_line empty = {"none", x, flat, 0};
    report_svg_lines(&b, "empty", "step", "v", &empty, 1);
    tap_ok(clean(b.p) && strstr(b.p, "no data"), "an empty series: axes and 'no data'");
    tap_is_int(points(b.p, 0, 640, 320, &in), 0, "no point");
    pl_buf_release(&b);
    report_svg_lines(&b, "no lines", "step", "v", NULL, 0);
    tap_ok(clean(b.p) && strstr(b.p, "no data") && !strstr(b.p, "polyline"),
           "no lines at all: axes and 'no data'");
    pl_buf_release(&b);

    const double nan_only[] = {NAN, NAN};
    struct report_line nn = {"nan", nan_only, nan_only, 2};
    report_svg_lines(&b, "all missing", "step", "v", &nn, 1);
    tap_ok(clean(b.p) && strstr(b.p, "no data"), "a series of NaN only is no data");
    pl_buf_release(&b);
}

static void bars_and_bins(void)
{
    struct pl_buf b = {0};
    const char *cats[] = {"age", "<b>race</b>"}, *names[] = {"base", "sft"};
    const double v[] = {0.6, NAN, 0.45, 0.5}, lo[] = {0.5, NAN, 0.4, 0.45},
                 hi[] = {0.7, NAN, 0.5, 0.55};
    report_svg_bars(&b, "bias", cats, 2, names, 2, v, lo, hi, 0.5);
    tap_ok(clean(b.p), "bars: one whole <svg> without NaN");
    tap_is_int(count(b.p, "class=\"bar\""), 3, "a bar per finite value (the NaN one is left out)");
    tap_ok(strstr(b.p, "&lt;b&gt;race&lt;/b&gt;") && !strstr(b.p, "<b>"),
           "category names are escaped");
    tap_ok(strstr(b.p, "stroke-dasharray") != NULL, "a dashed line marks the reference value");
    double first, last;
    tick_range(b.p, "<g stroke=\"#ddd\" text-anchor=\"middle\">", &first, &last);
    tap_ok(first <= 0.4 && last >= 0.7, "the value axis holds every interval (%g..%g)", first,
           last);
    pl_buf_release(&b);

    const double blo[] = {0, 0.5}, bhi[] = {0.5, 1}, conf[] = {0.3, 0.9}, acc[] = {NAN, 0.6};
    const long n[] = {0, 10};
    report_svg_reliability(&b, "reliability", blo, bhi, conf, acc, n, 2);
    tap_ok(clean(b.p), "a reliability diagram without NaN");
    tap_is_int(count(b.p, "class=\"bin\""), 1, "an empty bin draws no bar");
    tap_ok(strstr(b.p, ">confidence</text>") && strstr(b.p, ">accuracy</text>"),
           "both axes are labelled");
    pl_buf_release(&b);
}

static void escaped_names(void)
{
    struct pl_buf b = {0};
    const double x[] = {0, 1}, y[] = {1, 2};
    struct report_line l[] = {{"<script>alert(1)</script>", x, y, 2}, {"a&b\"c'\x01", x, y, 2}};
    report_svg_lines(&b, "<script>t</script>", "x\"", "y'", l, 2);
    tap_ok(!strstr(b.p, "<script"), "no <script> element from a title or a name");
    tap_ok(strstr(b.p, "a&amp;b&quot;c&#39;<") != NULL, "& \" ' escaped, the control character "
                                                        "dropped");
    pl_buf_release(&b);
}

int main(void)
{
    known_series();
    edge_cases();
    bars_and_bins();
    escaped_names();
    return tap_done();
}
