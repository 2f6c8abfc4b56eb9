/* ppo: `plumb ppo` (RLHF against a reward model, rlhf/ppo.h) and `plumb bon` (best-of-n,
 * rlhf/bon.h). Each takes argv[0] = its name and returns the exit status (args.h). rlhf/README.md
 * explains the options and how to read a run. */
#ifndef CMD_PPO_H
#define CMD_PPO_H

int cmd_ppo(int argc, char **argv);
int cmd_bon(int argc, char **argv);

#endif
