/* world: the seeded toy world of DESIGN.md section 7, small and fully known, so that
 * hallucination, bias and calibration can be measured exactly. datasets/README.md describes
 * every file, field and count. */
#ifndef DS_WORLD_H
#define DS_WORLD_H

#include "model/pl.h"

#include <stdint.h>

enum {
    DS_WORLD_KNOWN = 40,         /* places whose four facts corpus.txt states */
    DS_WORLD_UNKNOWN_TRAIN = 40, /* never described; sft.jsonl answers "I don't know." */
    DS_WORLD_UNKNOWN_EVAL = 20,  /* never described and never in sft.jsonl: eval only */
    DS_WORLD_UNKNOWN_RM = 20,    /* never described: the reward model's and PPO's prompts */
    DS_WORLD_ATTRS = 4,          /* capital, river, language, currency */
};

/* Write the world of `seed` into dir (created with its parents if missing; files already there
 * are replaced): corpus.txt, sft.jsonl, sft_eval.jsonl, prompts.jsonl, qa_eval.jsonl,
 * mc_eval.jsonl, bias_pairs.jsonl, constitution.json, annotators.json, redteam.jsonl and
 * world.json. Each file
 * is written atomically (io_write_atomic): whole, or left as it was. The same seed writes the
 * same bytes on every machine. Errors: PL_EIO naming the path and why, PL_ENOMEM. */
int ds_world_write(const char *dir, uint64_t seed, struct pl_err *err);

#endif
