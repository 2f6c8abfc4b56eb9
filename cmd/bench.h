/* bench: `plumb bench`, speed as ratios measured in one run (model/bench.h), on the two shapes
 * of the README's tables or one --config shape, then GPT-2 BPE encoding speed. Takes argv[0] =
 * its name and returns the exit status (args.h). */
#ifndef CMD_BENCH_H
#define CMD_BENCH_H

int cmd_bench(int argc, char **argv);

#endif
