/* draw: the labelling screen in curses (ncursesw, wide characters), drawn from a tui_state, and
 * the terminal it runs on: opening and restoring it, and reading keys as tui_state's key codes.
 * The only tui file that includes curses.h (which owns OK, ERR, move, clear and timeout).
 *
 * At 80x24 and larger, resized live: a title line with the item, the annotator and the progress
 * (done/total, a bar, skipped, seconds per item); the prompt (a few lines at most); the K
 * completions stacked, numbered, each in its own pane scrolled with the arrows once Tab has
 * focused it, with its place in the ranking beside its number; the ranking so far with the
 * Likert rating and flags; a message line; the key legend. All model text goes through
 * tui/text.h first, so it reaches the terminal without a control character. */
#ifndef TUI_DRAW_H
#define TUI_DRAW_H

#include "state.h"
#include "text.h"

#include <stdbool.h>

struct tui_draw {
    const char *guide; /* the guidelines text, or NULL */
    size_t guide_len;
    struct tui_text prompt, comp[TUI_MAX_K], overlay;
    void *screen; /* curses' SCREEN */
    bool open;    /* the terminal is in curses mode */
};

/* Take the terminal: set a UTF-8 locale (the environment's, else C.UTF-8), start curses, keys
 * one at a time without echo, wake every `tick_ms` milliseconds without a key (so that a signal
 * is noticed). guide (may be NULL) is borrowed. Errors: PL_EIO when curses cannot use the
 * terminal (an unknown TERM, say). */
int tui_draw_open(struct tui_draw *d, const char *guide, size_t guide_len, int tick_ms,
                  struct pl_err *err);

/* Give the terminal back as it was; safe when not open and twice. */
void tui_draw_close(struct tui_draw *d);

/* The next key as a tui_state key code: 0 when none came within the tick, -1 for a resize. */
int tui_draw_key(struct tui_draw *d);

/* Draw the whole screen for s (it clamps s->scroll and sets s->page). Errors: PL_ENOMEM. */
int tui_draw_screen(struct tui_draw *d, struct tui_state *s, struct pl_err *err);

void tui_draw_release(struct tui_draw *d);

#endif
