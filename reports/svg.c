#include "svg.h"

#include "text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define N_COLORS (int)(sizeof palette / sizeof *palette)

/* An axis: [lo, hi] rounded out to multiples of step. */
struct axis {
    double lo, hi, step;
};

/* Ticks of 1, 2 or 5 x 10^k, 3 to 8 of them over [lo, hi] (lo < hi, both finite). */
static struct axis nice_axis(double lo, double hi)
{
    if (!(lo < hi)) {
        double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    struct axis a = {floor(lo / step) * step, ceil(hi / step) * step, step};
    if (!(a.lo < a.hi))
        a.hi = a.lo + step;
    return a;
}

/* A tick value as text: %g of the value rounded to the step, so 0.30000000000000004 is "0.3"
 * and -0 is "0". */
static void tick_label(char *buf, size_t cap, double v, double step)
{
    double r = round(v / step) * step;
    if (fabs(r) < step * 1e-9)
        r = 0;
    snprintf(buf, cap, "%.6g", r);
}

static void open_svg(struct pl_buf *b, int w, int h, const char *title)
{
    pl_buf_printf(b,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
                  "height=\"%d\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" "
                  "aria-label=\"",
                  w, h, w, h);
    report_text_html_str(b, title);
    pl_buf_printf(b,
                  "\">\n<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<text x=\"%d\" y=\"18\" "
                  "text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">",
                  w, h, w / 2);
    report_text_html_str(b, title);
    pl_buf_str(b, "</text>\n");
}

/* The plot area and its two axes' mapping. */
struct frame {
    double x0, x1, y0, y1; /* pixels: left, right, top, bottom */
    struct axis ax, ay;
};

static double px(const struct frame *f, double x)
{
    return f->x0 + (x - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->x1 - f->x0);
}

static double py(const struct frame *f, double y)
{
    return f->y1 - (y - f->ay.lo) / (f->ay.hi - f->ay.lo) * (f->y1 - f->y0);
}

/* Axes, grid lines and tick labels of f. */
static void draw_axes(struct pl_buf *b, const struct frame *f, bool x_ticks)
{
    char t[64];
    pl_buf_str(b, "<g stroke=\"#ddd\">");
    for (double v = f->ay.lo; v <= f->ay.hi + f->ay.step * 1e-6; v += f->ay.step)
        pl_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", f->x0, py(f, v),
                      f->x1, py(f, v));
    pl_buf_str(b, "</g>\n<g text-anchor=\"end\">");
    for (double v = f->ay.lo; v <= f->ay.hi + f->ay.step * 1e-6; v += f->ay.step) {
        tick_label(t, sizeof t, v, f->ay.step);
        pl_buf_printf(b, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">%s</text>", f->x0 - 4,
                      py(f, v) + 4, t);
    }
    pl_buf_str(b, "</g>\n");
    if (x_ticks) {
        pl_buf_str(b, "<g text-anchor=\"middle\">");
        for (double v = f->ax.lo; v <= f->ax.hi + f->ax.step * 1e-6; v += f->ax.step) {
            tick_label(t, sizeof t, v, f->ax.step);
            pl_buf_printf(b,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>"
                          "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">%s</text>",
                          px(f, v), f->y1, px(f, v), f->y1 + 4, px(f, v), f->y1 + 16, t);
        }
        pl_buf_str(b, "</g>\n");
    }
    pl_buf_printf(b, "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#000\"/>\n", f->x0,
                  f->y0, f->y1, f->x1);
}

static void legend(struct pl_buf *b, const char *const *names, int n, double x, double y)
{
    for (int i = 0; i < n; i++) {
        pl_buf_printf(b,
                      "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\">",
                      x, y - 9, palette[i % N_COLORS], x + 14, y);
        report_text_html_str(b, names[i]);
        pl_buf_str(b, "</text>\n");
        x += 24 + 6.5 * (names[i] ? (double)strlen(names[i]) : 0);
    }
}

void report_svg_lines(struct pl_buf *b, const char *title, const char *xlabel, const char *ylabel,
                      const struct report_line *lines, int n_lines)
{
    enum { W = 640, H = 320 };
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    long points = 0;
    for (int l = 0; l < n_lines; l++)
        for (int i = 0; i < lines[l].n; i++) {
            double x = lines[l].x[i], y = lines[l].y[i];
            if (!isfinite(x) || !isfinite(y))
                continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x);
            ylo = fmin(ylo, y), yhi = fmax(yhi, y);
            points++;
        }
    if (points == 0)
        xlo = ylo = 0, xhi = yhi = 1;
    struct frame f = {
        70, W - 20, n_lines > 1 ? 44 : 32, H - 52, nice_axis(xlo, xhi), nice_axis(ylo, yhi)};
    open_svg(b, W, H, title);
    if (n_lines > 1) {
        const char *names[N_COLORS];
        int n = n_lines < N_COLORS ? n_lines : N_COLORS;
        for (int l = 0; l < n; l++)
            names[l] = lines[l].name;
        legend(b, names, n, f.x0, 36);
    }
    draw_axes(b, &f, true);
    pl_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", (f.x0 + f.x1) / 2,
                  H - 14);
    report_text_html_str(b, xlabel);
    pl_buf_printf(b,
                  "</text>\n<text transform=\"translate(14 %.1f) rotate(-90)\" "
                  "text-anchor=\"middle\">",
                  (f.y0 + f.y1) / 2);
    report_text_html_str(b, ylabel);
    pl_buf_str(b, "</text>\n");
    if (points == 0)
        pl_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no data</text>\n",
                      (f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2);
    for (int l = 0; l < n_lines; l++) {
        const struct report_line *ln = &lines[l];
        const char *color = palette[l % N_COLORS];
        pl_buf_printf(b,
                      "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
                      "stroke-width=\"1.5\" points=\"",
                      color);
        int shown = 0;
        for (int i = 0; i < ln->n; i++)
            if (isfinite(ln->x[i]) && isfinite(ln->y[i]))
                pl_buf_printf(b, "%s%.1f,%.1f", shown++ ? " " : "", px(&f, ln->x[i]),
                              py(&f, ln->y[i]));
        pl_buf_str(b, "\"/>\n");
        for (int i = 0; shown <= 20 && i < ln->n; i++)
            if (isfinite(ln->x[i]) && isfinite(ln->y[i]))
                pl_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>",
                              px(&f, ln->x[i]), py(&f, ln->y[i]), color);
        pl_buf_str(b, "\n");
    }
    pl_buf_str(b, "</svg>\n");
}

void report_svg_bars(struct pl_buf *b, const char *title, const char *const *cats, int n_cats,
                     const char *const *names, int n_names, const double *v, const double *lo,
                     const double *hi, double ref)
{
    enum { W = 640, BAR = 10, GAP = 12 };
    double vlo = ref, vhi = ref;
    for (int i = 0; i < n_cats * n_names; i++) {
        const double xs[3] = {v[i], lo ? lo[i] : NAN, hi ? hi[i] : NAN};
        for (int k = 0; k < 3; k++)
            if (isfinite(xs[k]))
                vlo = fmin(vlo, xs[k]), vhi = fmax(vhi, xs[k]);
    }
    double band = n_names * BAR + GAP;
    int h = (int)(60 + n_cats * band + 40);
    struct frame f = {150, W - 20, 44, h - 40, nice_axis(vlo, vhi), {0, 1, 1}};
    open_svg(b, W, h, title);
    legend(b, names, n_names, f.x0, 36);
    char t[64];
    pl_buf_str(b, "<g stroke=\"#ddd\" text-anchor=\"middle\">");
    for (double x = f.ax.lo; x <= f.ax.hi + f.ax.step * 1e-6; x += f.ax.step) {
        tick_label(t, sizeof t, x, f.ax.step);
        pl_buf_printf(b,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/><text class=\"tick\" "
                      "x=\"%.1f\" y=\"%.1f\" stroke=\"none\">%s</text>",
                      px(&f, x), f.y0, px(&f, x), f.y1, px(&f, x), f.y1 + 14, t);
    }
    pl_buf_str(b, "</g>\n");
    for (int c = 0; c < n_cats; c++) {
        double y = f.y0 + 6 + c * band;
        pl_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", f.x0 - 6,
                      y + n_names * BAR / 2.0 + 4);
        report_text_html_str(b, cats[c]);
        pl_buf_str(b, "</text>\n");
        for (int s = 0; s < n_names; s++) {
            int i = s * n_cats + c;
            double yb = y + s * BAR;
            if (!isfinite(v[i]))
                continue;
            double a = px(&f, fmin(ref, v[i])), z = px(&f, fmax(ref, v[i]));
            pl_buf_printf(b,
                          "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                          "height=\"%d\" fill=\"%s\"/>",
                          a, yb, fmax(z - a, 1), BAR - 2, palette[s % N_COLORS]);
            if (lo && hi && isfinite(lo[i]) && isfinite(hi[i]))
                pl_buf_printf(b,
                              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                              "stroke=\"#000\"/>",
                              px(&f, lo[i]), yb + (BAR - 2) / 2.0, px(&f, hi[i]),
                              yb + (BAR - 2) / 2.0);
        }
        pl_buf_str(b, "\n");
    }
    pl_buf_printf(b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" "
                  "stroke-dasharray=\"4 3\"/>\n<path d=\"M%.1f %.1fH%.1f\" stroke=\"#000\"/>\n"
                  "</svg>\n",
                  px(&f, ref), f.y0, px(&f, ref), f.y1, f.x0, f.y1, f.x1);
}

void report_svg_reliability(struct pl_buf *b, const char *title, const double *lo, const double *hi,
                            const double *conf, const double *acc, const long *count, int n)
{
    enum { W = 340, H = 340 };
    struct frame f = {50, W - 20, 32, H - 48, {0, 1, 0.2}, {0, 1, 0.2}};
    open_svg(b, W, H, title);
    draw_axes(b, &f, true);
    pl_buf_printf(b,
                  "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">confidence</text>"
                  "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">"
                  "accuracy</text>\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                  "stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n",
                  (f.x0 + f.x1) / 2, H - 12, (f.y0 + f.y1) / 2, px(&f, 0), py(&f, 0), px(&f, 1),
                  py(&f, 1));
    for (int i = 0; i < n; i++) {
        if (count[i] <= 0 || !isfinite(acc[i]) || !isfinite(lo[i]) || !isfinite(hi[i]))
            continue;
        double a = fmin(fmax(acc[i], 0), 1);
        double x0 = px(&f, fmin(fmax(lo[i], 0), 1)), x1 = px(&f, fmin(fmax(hi[i], 0), 1));
        pl_buf_printf(b,
                      "<rect class=\"bin\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                      "fill=\"%s\" fill-opacity=\"0.6\"><title>%ld answers</title></rect>",
                      x0, py(&f, a), fmax(x1 - x0 - 1, 1), f.y1 - py(&f, a), palette[0], count[i]);
        if (isfinite(conf[i]))
            pl_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>",
                          px(&f, fmin(fmax(conf[i], 0), 1)), py(&f, a), palette[1]);
        pl_buf_str(b, "\n");
    }
    pl_buf_str(b, "</svg>\n");
}
