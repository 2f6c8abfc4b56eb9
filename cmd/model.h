/* model: the commands that write a starting point. `plumb world` writes the toy world's datasets
 * (datasets/world.h); `plumb init` a randomly initialised model folder. Neither writes into a
 * folder that holds something else unless --force. Each takes argv[0] = its name and returns
 * the exit status (args.h). */
#ifndef CMD_MODEL_H
#define CMD_MODEL_H

int cmd_world(int argc, char **argv);
int cmd_init(int argc, char **argv);

#endif
