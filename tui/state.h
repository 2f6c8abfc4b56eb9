/* state: the labelling session as pure logic (no curses, no terminal): the items to rank, this
 * annotator's labels and everyone's in the labels file, the partial ranking being built, and
 * what each key does. tui/draw.h renders it; cmd/tui.c reads keys, appends the records this
 * module writes, and tells it when they are on disk.
 *
 * A label is the record of DESIGN.md section 5, exactly as datasets/ds.h's preference loader
 * reads it (and `plumb simlabel` writes it): {"id", "annotator", "ranking", "ties", "skipped":
 * false, "time", "completions", "prompt", "kind"?, "likert"?, "flags"?}; a skip is {"id",
 * "annotator", "skipped": true, "time"}; an undo {"id", "annotator", "undo": true, "time"}
 * retracts that annotator's latest unretracted record of that id. A record counts for an item
 * when its id is the item's; what an annotator says of an item is their latest unretracted
 * record of it (a label, a skip, or nothing).
 *
 * The session moves through the items in serving order: the first item this annotator has
 * neither labelled nor skipped (with an overlap N: among the items fewer than N other annotators
 * have labelled, those someone has started before those nobody has, then nothing else), then the
 * skipped ones again, oldest skip first. A restart therefore resumes at the first unlabelled
 * item. */
#ifndef TUI_STATE_H
#define TUI_STATE_H

#include "model/io.h"
#include "model/pl.h"

#include <stdbool.h>
#include <stddef.h>

/* Completions are ranked by their number keys, 1 to 9 (InstructGPT ranked 4 to 9). */
enum { TUI_MIN_K = 2, TUI_MAX_K = 9 };

/* ---- the items: a samples file ---- */

struct tui_item {
    const char *id, *prompt;
    const char *kind; /* the record's "kind" when it has one (carried into the label), or NULL */
    const char **completions; /* [k] */
    int k;
    long line; /* of the record in the samples file */
};

struct tui_items {
    char *path; /* owned copy, for messages */
    struct tui_item *v;
    size_t n, cap;
    long cut; /* a cut-short last line skipped (a `plumb sample` still writing, or killed) */
    struct io_arena arena;
    size_t *table, mask; /* id -> index + 1, open addressing */
};

/* Read {"id", "prompt", "completions": [...]} a line (plumb sample's records; other fields are
 * ignored, "kind" is kept). Errors, PL_EFORMAT naming the file and line: not a JSON object, a
 * missing or mistyped field, fewer than 2 or more than 9 completions, an id seen before; "PATH:
 * no records"; those of reading. */
int tui_items_init(struct tui_items *it, const char *path, struct pl_err *err);
/* Index of the item with this id, or -1. */
long tui_items_find(const struct tui_items *it, const char *id);
void tui_items_release(struct tui_items *it);

/* ---- rankings ---- */

enum { TUI_FLAG_HALLUCINATION = 1, TUI_FLAG_HARMFUL = 2 };

/* A ranking, complete or being built: order[0, n) completion indices best first; tie[i] says
 * that order[i] is tied with order[i - 1] (tie[0] is false). */
struct tui_rank {
    int order[TUI_MAX_K];
    bool tie[TUI_MAX_K];
    int n;
    int likert;     /* 1..7, or 0 for none */
    unsigned flags; /* TUI_FLAG_* */
};

/* ---- the session ---- */

/* Keys as the state machine knows them: printable ASCII as itself, the rest below. */
enum {
    TUI_KEY_BACKSPACE = 0x100,
    TUI_KEY_ENTER,
    TUI_KEY_ESC,
    TUI_KEY_TAB,
    TUI_KEY_BTAB,
    TUI_KEY_UP,
    TUI_KEY_DOWN,
    TUI_KEY_PGUP,
    TUI_KEY_PGDN,
    TUI_KEY_HOME,
};

enum tui_mode { TUI_RANKING, TUI_LIKERT, TUI_HELP, TUI_GUIDE, TUI_CONFIRM_QUIT };

/* What the caller does after a key. */
enum tui_act {
    TUI_NONE,   /* redraw */
    TUI_APPEND, /* append s->out (one whole line), then call tui_state_appended or _dropped */
    TUI_QUIT,
};

/* One record of the labels file about an item of the samples. */
struct tui_label {
    long item;
    int ann; /* index into annotators */
    bool skip, retracted;
    long prev; /* the previous record of the same annotator and item, or -1 */
    struct tui_rank rank;
};

struct tui_state {
    const struct tui_items *items;
    const char *annotator;
    int overlap;       /* 0: every item for every annotator */
    long *order;       /* [items->n] item indices, in the order items are served */
    long *seq;         /* [items->n] each item's place in order */
    char **annotators; /* [n_annotators], annotators[0] is this session's */
    int n_annotators, annotators_cap;
    struct tui_label *labels; /* every record read or written, in file order */
    size_t n_labels, labels_cap;
    long *latest; /* [n_annotators * items->n] latest record of (annotator, item), or -1 */

    /* The screen. */
    long cur;             /* the item shown, or -1 when none is left */
    struct tui_rank rank; /* being built for cur */
    bool saved;           /* rank is cur's label on disk, unchanged */
    enum tui_mode mode;
    int focus;             /* completion that the arrows scroll */
    int scroll[TUI_MAX_K]; /* first shown line of each completion (tui_draw clamps it) */
    int page;              /* lines a page key scrolls (tui_draw sets it) */
    int overlay_scroll;    /* of the help or guidelines */
    char msg[256];         /* one line for the user, "" for none */
    double shown;          /* when cur was shown */
    long submitted;        /* labels written this session */
    double seconds;        /* time spent on them */

    /* The record to append (TUI_APPEND) and what it does once it is on disk. */
    struct pl_buf out;
    enum { TUI_PENDING_NONE, TUI_PENDING_LABEL, TUI_PENDING_SKIP, TUI_PENDING_UNDO } pending;
    long pending_item;
    struct tui_rank pending_rank;
};

/* A session of `annotator` (borrowed, like items) over items, served in file order, or shuffled
 * by seed when shuffle; overlap as above (0 for none). No item is shown until tui_state_start.
 * Errors: PL_ENOMEM. */
int tui_state_init(struct tui_state *s, const struct tui_items *items, const char *annotator,
                   bool shuffle, uint64_t seed, int overlap, struct pl_err *err);
void tui_state_release(struct tui_state *s);

/* Read the labels file from byte *offset to its last newline, taking each record (whole lines
 * only: a last line without its newline is a crash's cut-short record or another annotator's
 * write in progress, and is left for later); *offset moves past what was read, *lineno (the
 * lines before *offset) with it. mine: take this session's annotator's records too (the first
 * read; later reads see only the others', since this session takes its own as it writes them).
 * A missing file reads as empty. A bad line stops the read, with *offset past it. Errors:
 * PL_EFORMAT "PATH:LINE: ..." for a line that is not a JSON object, a label whose ranking is not a
 * permutation of its item's completions or whose "completions" are not the item's ("one labels file
 * per samples file"); PL_EIO; PL_ENOMEM. Records of ids the samples do not have, and pairs, are
 * passed over. */
int tui_state_read(struct tui_state *s, const char *path, long *offset, long *lineno, bool mine,
                   struct pl_err *err);

/* Take one record (a line of the labels file, at path:line for messages), as tui_state_read. */
int tui_state_take(struct tui_state *s, const char *text, size_t len, const char *path, long line,
                   bool mine, struct pl_err *err);

/* Show the first item to do (the resume position). now: seconds, for the time per item. */
void tui_state_start(struct tui_state *s, double now);

/* Act on one key. time: the ISO-8601 time written into a record. */
enum tui_act tui_state_key(struct tui_state *s, int key, double now, const char *time);

/* s->out is on disk: take it and move on. */
void tui_state_appended(struct tui_state *s, double now);
/* s->out could not be written: nothing changes but the message, why. */
void tui_state_dropped(struct tui_state *s, const char *why);

/* This annotator's latest unretracted record of item: its label, NULL for none; *skip (may be
 * NULL) tells a skip from a label. */
const struct tui_label *tui_state_mine(const struct tui_state *s, long item, bool *skip);

struct tui_progress {
    long done;       /* items this annotator has labelled */
    long total;      /* done + the items still to do (skipped ones included) */
    long skipped;    /* items whose latest record of this annotator is a skip */
    double per_item; /* mean seconds per label this session, 0 before the first */
};
void tui_state_progress(const struct tui_state *s, struct tui_progress *p);

#endif
