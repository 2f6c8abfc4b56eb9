/* text: model output made safe and laid out for the labelling screen, without curses.
 *
 * Model text is untrusted (DESIGN.md section 3): it may hold escape sequences, carriage
 * returns, invalid UTF-8 or characters the terminal cannot show. tui_text_clean turns it into
 * wide characters that are all printable: each C0 control but newline and tab becomes its caret
 * form ("^[" for ESC, "^M" for a carriage return), DEL "^?", a C1 control U+0080..U+009F
 * "<80>".."<9F>", a tab four spaces, each invalid UTF-8 byte and each character wcwidth calls
 * unprintable U+FFFD. So nothing in it can move the cursor, change a title or a colour, and what
 * the model did is still visible. wcwidth follows the locale: call setlocale with a UTF-8
 * locale first (cmd/tui.c does), or every non-ASCII character reads as unprintable. */
#ifndef TUI_TEXT_H
#define TUI_TEXT_H

#include "model/pl.h"

#include <stddef.h>
#include <wchar.h>

/* Cleaned text cut into display lines of at most `width` columns. */
struct tui_text {
    wchar_t *s; /* the cleaned text, NUL-terminated, newlines kept */
    size_t n;
    struct tui_span {
        size_t start, len; /* s[start, start + len): one display line, without its newline */
        int cols;          /* its width in columns */
    } * lines;
    int n_lines;
    size_t s_cap, lines_cap;
};

/* Clean text[0, len) into t->s (replacing what t held). Errors: PL_ENOMEM. */
int tui_text_clean(struct tui_text *t, const char *text, size_t len, struct pl_err *err);

/* Lay t->s out in lines of at most width (>= 1) columns: at each newline, and where a line would
 * be too wide, after its last space (a word longer than the line is cut where it overflows).
 * Errors: PL_ENOMEM. */
int tui_text_wrap(struct tui_text *t, int width, struct pl_err *err);

/* Both, for one text. */
int tui_text_set(struct tui_text *t, const char *text, size_t len, int width, struct pl_err *err);

/* Columns of one cleaned character (0 for a combining mark, 2 for a wide one). */
int tui_text_cols(wchar_t c);

void tui_text_release(struct tui_text *t);

#endif
