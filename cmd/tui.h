/* tui: `plumb label`, the labelling screen (tui/), and `plumb agree`, agreement between the
 * annotators of label files. Each takes argv[0] = its name and returns the exit status
 * (args.h). */
#ifndef CMD_TUI_H
#define CMD_TUI_H

int cmd_label(int argc, char **argv);
int cmd_agree(int argc, char **argv);

#endif
