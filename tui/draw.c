/* ncursesw's wide-character functions are X/Open. */
#define _XOPEN_SOURCE 700

#include "draw.h"

#include <curses.h>
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help_text[] =
    "plumb label: rank the completions, best first\n"
    "\n"
    "  1-9        place that completion next in the ranking (best first)\n"
    "  t          tie the last two placed (again: untie)\n"
    "  Backspace  take back the last placed\n"
    "  Enter      submit (when all are placed; with one left, it goes last)\n"
    "  s          skip: the item comes back after the others\n"
    "  u          undo the last submitted label or skip (written as an undo record)\n"
    "  n / p      next / previous item (a labelled one shows its label)\n"
    "  l then 1-7 Likert rating of the best completion's quality (l 0: none)\n"
    "  h / x      flag hallucination / harmful content\n"
    "  Tab        focus the next completion; arrows, PgUp, PgDn, Home scroll it\n"
    "  g          the guidelines (--guidelines)\n"
    "  ?          this help\n"
    "  q          quit (every label is already on disk; a start resumes)\n"
    "\n"
    "Control characters in model text are shown as ^X, <9B> or U+FFFD, never\n"
    "sent to the terminal. Any key closes this help.\n";

static const char legend_long[] = " 1-9 rank  t tie  Bksp back  Enter submit  s skip  u undo  "
                                  "n/p item  l likert  h/x flag  g guide  ? help  q quit";
static const char legend_short[] =
    " 1-9 rank  t tie  Bksp back  Enter save  s skip  u undo  n/p go  ? keys  q quit";

int tui_draw_open(struct tui_draw *d, const char *guide, size_t guide_len, int tick_ms,
                  struct pl_err *err)
{
    memset(d, 0, sizeof *d);
    d->guide = guide;
    d->guide_len = guide_len;
    if (!setlocale(LC_ALL, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
        setlocale(LC_ALL, "C.UTF-8");
    /* newterm, unlike initscr, returns an error instead of exiting on an unknown TERM. */
    if (!(d->screen = newterm(NULL, stdout, stdin)))
        return pl_errf(err, PL_EIO, "cannot use the terminal '%s' (is TERM right?)",
                       getenv("TERM") ? getenv("TERM") : "");
    d->open = true;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    wtimeout(stdscr, tick_ms);
    curs_set(0);
    return PL_OK;
}

void tui_draw_close(struct tui_draw *d)
{
    if (!d->open)
        return;
    d->open = false;
    endwin();
    delscreen(d->screen);
}

int tui_draw_key(struct tui_draw *d)
{
    (void)d;
    wint_t c;
    int r = wget_wch(stdscr, &c);
    if (r == ERR)
        return 0;
    if (r == KEY_CODE_YES) {
        switch (c) {
        case KEY_RESIZE:
            return -1;
        case KEY_BACKSPACE:
        case KEY_DC:
            return TUI_KEY_BACKSPACE;
        case KEY_ENTER:
            return TUI_KEY_ENTER;
        case KEY_BTAB:
            return TUI_KEY_BTAB;
        case KEY_UP:
            return TUI_KEY_UP;
        case KEY_DOWN:
            return TUI_KEY_DOWN;
        case KEY_PPAGE:
            return TUI_KEY_PGUP;
        case KEY_NPAGE:
            return TUI_KEY_PGDN;
        case KEY_HOME:
            return TUI_KEY_HOME;
        case KEY_LEFT:
            return 'p';
        case KEY_RIGHT:
            return 'n';
        default:
            return ' ';
        }
    }
    switch (c) {
    case '\r':
    case '\n':
        return TUI_KEY_ENTER;
    case 127:
    case 8:
        return TUI_KEY_BACKSPACE;
    case 27:
        return TUI_KEY_ESC;
    case '\t':
        return TUI_KEY_TAB;
    case 3: /* Ctrl-C reaches here only if the terminal does not make it a signal */
        return 'q';
    default:
        return c < 128 ? (int)c : ' ';
    }
}

/* s[0, n) at (y, x), cut to the screen's width; returns the columns used. */
static int put_str(int y, int x, const char *s, attr_t a)
{
    int w = COLS - x;
    if (w <= 0 || y < 0 || y >= LINES)
        return 0;
    attron(a);
    mvaddnstr(y, x, s, w);
    attroff(a);
    int n = (int)strlen(s);
    return n < w ? n : w;
}

static void put_span(int y, int x, const struct tui_text *t, int line, attr_t a)
{
    if (line < 0 || line >= t->n_lines || y < 0 || y >= LINES)
        return;
    const struct tui_span *l = &t->lines[line];
    attron(a);
    mvaddnwstr(y, x, t->s + l->start, (int)l->len);
    attroff(a);
}

/* The overlay (help or guidelines) over the whole screen. */
static int draw_overlay(struct tui_draw *d, struct tui_state *s, struct pl_err *err)
{
    const char *text = s->mode == TUI_HELP ? help_text : d->guide;
    size_t len = s->mode == TUI_HELP ? strlen(help_text) : d->guide_len;
    if (!text) {
        text = "No guidelines were given: start plumb label with --guidelines FILE.md.\n";
        len = strlen(text);
    }
    int rc = tui_text_set(&d->overlay, text, len, COLS > 2 ? COLS - 2 : 1, err);
    if (rc)
        return rc;
    int rows = LINES - 2 > 1 ? LINES - 2 : 1;
    int max = d->overlay.n_lines > rows ? d->overlay.n_lines - rows : 0;
    if (s->overlay_scroll > max)
        s->overlay_scroll = max;
    s->page = rows;
    put_str(0, 0, s->mode == TUI_HELP ? " keys " : " guidelines ", A_REVERSE);
    for (int i = 0; i < rows; i++)
        put_span(1 + i, 1, &d->overlay, s->overlay_scroll + i, A_NORMAL);
    char foot[128];
    snprintf(foot, sizeof foot,
             " lines %d-%d of %d: arrows and PgUp/PgDn scroll, any other key "
             "closes ",
             s->overlay_scroll + 1,
             s->overlay_scroll + rows < d->overlay.n_lines ? s->overlay_scroll + rows
                                                           : d->overlay.n_lines,
             d->overlay.n_lines);
    put_str(LINES - 1, 0, foot, A_REVERSE);
    return PL_OK;
}

static void draw_title(struct tui_state *s)
{
    struct tui_progress p;
    tui_state_progress(s, &p);
    char left[256], right[128];
    if (s->cur >= 0)
        snprintf(left, sizeof left, " %s | item %s (%ld of %zu) ", s->annotator,
                 s->items->v[s->cur].id, s->seq[s->cur] + 1, s->items->n);
    else
        snprintf(left, sizeof left, " %s | no item left ", s->annotator);
    int bar = 12;
    char fill[16];
    int full = p.total ? (int)((long)bar * p.done / p.total) : bar;
    for (int i = 0; i < bar; i++)
        fill[i] = i < full ? '#' : '.';
    fill[bar] = '\0';
    /* The whole progress when it fits beside the item, else without the time, then the bar. */
    int room = COLS - (int)strlen(left);
    snprintf(right, sizeof right, " done %ld/%ld [%s] skipped %ld | %.1f s/item ", p.done, p.total,
             fill, p.skipped, p.per_item);
    if (p.per_item <= 0 || (int)strlen(right) > room)
        snprintf(right, sizeof right, " done %ld/%ld [%s] skipped %ld ", p.done, p.total, fill,
                 p.skipped);
    if ((int)strlen(right) > room)
        snprintf(right, sizeof right, " done %ld/%ld skipped %ld ", p.done, p.total, p.skipped);
    attron(A_REVERSE);
    mvhline(0, 0, ' ', COLS);
    attroff(A_REVERSE);
    put_str(0, 0, left, A_REVERSE | A_BOLD);
    int rl = (int)strlen(right);
    if (rl <= room)
        put_str(0, COLS - rl, right, A_REVERSE);
}

/* A horizontal rule across row y (U+2500: the locale is UTF-8, and ACS line drawing depends on
 * the terminal description matching the terminal). */
static void rule(int y)
{
    cchar_t c;
    wchar_t line[] = {0x2500, 0};
    setcchar(&c, line, A_NORMAL, 0, NULL);
    mvhline_set(y, 0, &c, COLS);
}

/* Rows for each completion's text: all it has when everything fits, else fair shares. */
static void share_rows(const int *need, int k, int budget, int *rows)
{
    for (int i = 0; i < k; i++)
        rows[i] = 1;
    budget -= k;
    for (bool more = true; budget > 0 && more;) {
        more = false;
        for (int i = 0; i < k && budget > 0; i++)
            if (rows[i] < need[i]) {
                rows[i]++;
                budget--;
                more = true;
            }
    }
}

/* Where completion c is in the ranking: "#2", "#2=" when tied with the one above, "" if not
 * placed. */
static void place_of(const struct tui_rank *r, int c, char *out, size_t n)
{
    out[0] = '\0';
    for (int i = 0; i < r->n; i++)
        if (r->order[i] == c) {
            int pos = i;
            while (pos > 0 && r->tie[pos])
                pos--;
            snprintf(out, n, "#%d%s", pos + 1,
                     r->tie[i] || (i + 1 < r->n && r->tie[i + 1]) ? "=" : "");
        }
}

static void draw_ranking_line(struct tui_state *s, int y)
{
    const struct tui_item *it = &s->items->v[s->cur];
    char b[256];
    int n = snprintf(b, sizeof b, " ranking: ");
    for (int i = 0; i < it->k && n < (int)sizeof b - 8; i++) {
        if (i > 0)
            n += snprintf(b + n, sizeof b - (size_t)n,
                          i < s->rank.n && s->rank.tie[i] ? " = " : " > ");
        n += i < s->rank.n ? snprintf(b + n, sizeof b - (size_t)n, "%d", s->rank.order[i] + 1)
                           : snprintf(b + n, sizeof b - (size_t)n, "_");
    }
    if (s->rank.likert && n < (int)sizeof b - 16)
        n += snprintf(b + n, sizeof b - (size_t)n, "   likert %d", s->rank.likert);
    if (s->rank.flags && n < (int)sizeof b - 40)
        n += snprintf(b + n, sizeof b - (size_t)n, "   flags:%s%s",
                      s->rank.flags & TUI_FLAG_HALLUCINATION ? " hallucination" : "",
                      s->rank.flags & TUI_FLAG_HARMFUL ? " harmful" : "");
    if (n < (int)sizeof b - 16)
        snprintf(b + n, sizeof b - (size_t)n, "%s",
                 s->saved                ? "   [saved]"
                 : s->mode == TUI_LIKERT ? "   likert 1-7?"
                                         : "");
    put_str(y, 0, b, A_BOLD);
}

static int draw_item(struct tui_draw *d, struct tui_state *s, struct pl_err *err)
{
    const struct tui_item *it = &s->items->v[s->cur];
    int width = COLS - 2 > 1 ? COLS - 2 : 1;
    int rc = tui_text_set(&d->prompt, it->prompt, strlen(it->prompt), width, err);
    for (int i = 0; rc == PL_OK && i < it->k; i++)
        rc = tui_text_set(&d->comp[i], it->completions[i], strlen(it->completions[i]), width, err);
    if (rc)
        return rc;
    int bottom = 3; /* ranking, message, legend */
    int prompt_rows = d->prompt.n_lines;
    int prompt_max = LINES / 6 > 1 ? LINES / 6 : 1;
    if (prompt_rows > prompt_max)
        prompt_rows = prompt_max;
    int top = 1 + 1 + prompt_rows;
    int budget = LINES - top - bottom - it->k; /* minus one header line per completion */
    if (budget < it->k || COLS < 40) {
        put_str(1, 0, "Too small: make the terminal larger (80x24 is enough).", A_BOLD);
        return PL_OK;
    }
    put_str(1, 0, "Prompt:", A_BOLD);
    for (int i = 0; i < prompt_rows; i++)
        put_span(2 + i, 1, &d->prompt, i, A_NORMAL);
    if (prompt_rows < d->prompt.n_lines)
        put_str(1 + prompt_rows, COLS - 12, " [cut] ", A_REVERSE);
    int need[TUI_MAX_K], rows[TUI_MAX_K];
    for (int i = 0; i < it->k; i++)
        need[i] = d->comp[i].n_lines;
    share_rows(need, it->k, budget, rows);
    int y = top;
    s->page = 1;
    for (int i = 0; i < it->k; i++) {
        int max = need[i] > rows[i] ? need[i] - rows[i] : 0;
        if (s->scroll[i] > max)
            s->scroll[i] = max;
        if (i == s->focus && rows[i] > 1)
            s->page = rows[i] - 1;
        char place[16], head[96];
        place_of(&s->rank, i, place, sizeof place);
        attr_t a = i == s->focus ? A_REVERSE | A_BOLD : A_BOLD;
        rule(y);
        int x = put_str(y, 0, " ", A_NORMAL);
        snprintf(head, sizeof head, "[%d]", i + 1);
        x += put_str(y, x, head, a);
        if (place[0])
            x += put_str(y, x + 1, place, A_BOLD) + 1;
        if (max > 0) {
            snprintf(head, sizeof head, " lines %d-%d of %d ", s->scroll[i] + 1,
                     s->scroll[i] + rows[i], need[i]);
            put_str(y, COLS - (int)strlen(head) - 1, head, A_NORMAL);
        }
        for (int l = 0; l < rows[i]; l++)
            put_span(y + 1 + l, 1, &d->comp[i], s->scroll[i] + l, A_NORMAL);
        y += 1 + rows[i];
    }
    draw_ranking_line(s, LINES - 3);
    return PL_OK;
}

int tui_draw_screen(struct tui_draw *d, struct tui_state *s, struct pl_err *err)
{
    erase();
    int rc = PL_OK;
    if (s->mode == TUI_HELP || s->mode == TUI_GUIDE)
        rc = draw_overlay(d, s, err);
    else {
        draw_title(s);
        if (s->cur >= 0)
            rc = draw_item(d, s, err);
        else
            put_str(2, 1, "Every item is labelled. u undoes the last label, p goes back, q quits.",
                    A_BOLD);
        const char *msg = s->mode == TUI_CONFIRM_QUIT
                              ? "Quit and drop the ranking not yet submitted? y quits, any other "
                                "key stays"
                              : s->msg;
        put_str(LINES - 2, 1, msg, A_BOLD);
        put_str(LINES - 1, 0, COLS >= (int)strlen(legend_long) ? legend_long : legend_short, A_DIM);
    }
    refresh();
    return rc;
}

void tui_draw_release(struct tui_draw *d)
{
    tui_draw_close(d);
    tui_text_release(&d->prompt);
    for (int i = 0; i < TUI_MAX_K; i++)
        tui_text_release(&d->comp[i]);
    tui_text_release(&d->overlay);
}
