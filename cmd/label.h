/* label: `plumb simlabel`, the toy world's simulated annotators (datasets/sim.h) labelling a
 * samples file in the TUI's format. Takes argv[0] = its name and returns the exit status
 * (args.h). */
#ifndef CMD_LABEL_H
#define CMD_LABEL_H

int cmd_simlabel(int argc, char **argv);

#endif
