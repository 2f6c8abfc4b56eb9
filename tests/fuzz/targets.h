/* targets: one fuzz target per parser plumb has (issue 14), shared by the libFuzzer driver
 * (tests/fuzz/driver.c, built by tools/fuzz.mk with clang) and by tests/tools-fuzz.c, which
 * replays every file under tests/fuzz/<name>/ through its target in `make test`.
 *
 * A target feeds data[0, size) to a parser as a file (or as text, when the parser has an
 * in-memory entry point), walks what it returns, and releases everything. Any PL_E* error is an
 * ordinary outcome; a crash, a leak, undefined behaviour, a hang, or a broken contract (an
 * error without its message, a record that breaks the header's promises, text that does not
 * survive encode and decode) is a finding: the target aborts with a message on stderr.
 *
 * Targets that read several files take them from one input, split at lines holding only
 * FUZZ_SPLIT: the first piece is the first file, and so on; a missing piece is a missing file.
 * Files go into a folder /dev/shm/plumb-fuzz-XXXXXX (/tmp/... without /dev/shm) made once per
 * process and removed at exit.
 * With PLUMB_FUZZ_VERBOSE set in the environment, each parser's outcome goes to stderr. */
#ifndef FUZZ_TARGETS_H
#define FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_SPLIT "=====" /* a line of its own between the files of a multi-file input */

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

struct fuzz_target {
    const char *name; /* also the seed folder tests/fuzz/<name>/ */
    fuzz_fn fn;
    const char *what; /* the parser it drives */
};

extern const struct fuzz_target fuzz_targets[];
extern const int fuzz_n_targets;

/* The target called name, or NULL. */
const struct fuzz_target *fuzz_find(const char *name);

#define FUZZ_TARGETS(X)                                                                            \
    X(prompts, "prompts JSONL (ds_prompts_init)")                                                  \
    X(sft, "SFT JSONL (ds_sft_init)")                                                              \
    X(sft_csv, "SFT CSV (ds_sft_init on .csv)")                                                    \
    X(labels, "labels JSONL, rankings, ties, undos (ds_prefs_load, tui_agree_load)")            \
    X(pairs, "pairs and soft pairs JSONL (ds_prefs_load)")                                         \
    X(hh, "HH-RLHF dialogue pairs (ds_prefs_load, ds_hh_prompt_len)")                             \
    X(samples, "samples JSONL and a labels file against it (tui_items_init, tui_state_read)")     \
    X(csv, "RFC 4180 CSV (ds_csv_init)")                                                           \
    X(tqa_csv, "TruthfulQA CSV (ds_tqa_init, ds_mc_init)")                                         \
    X(tqa_json, "TruthfulQA mc_task.json (ds_tqa_init)")                                           \
    X(crows_csv, "CrowS-Pairs CSV (ds_pairs_init)")                                                \
    X(bias_pairs, "the toy world's bias_pairs.jsonl (ds_pairs_init)")                              \
    X(mc, "multiple-choice JSONL (ds_mc_init)")                                                    \
    X(bbq, "BBQ JSONL (ds_bbq_load)")                                                              \
    X(config, "config.json text (ckpt_config_parse)")                                              \
    X(safetensors, "a safetensors file, header and body (ckpt_file_open, ckpt_file_get)")         \
    X(weights, "model.safetensors into a tiny model (ckpt_weights_load)")                          \
    X(ckpt, "a model folder: config.json, model.safetensors, vocabulary (ckpt_load_model)")        \
    X(tok, "vocab.json + merges.txt (tok_load), then encode and decode")                           \
    X(encode, "any bytes through the test BPE and the byte tokenizer (tok_encode, tok_decode)")    \
    X(constitution, "constitution.json (ds_constitution_load) and its rules (check)")              \
    X(world, "annotators.json, world.json, qa_eval.jsonl, samples (ds_sim_*, eval_world_run)")     \
    X(state, "state.safetensors on resume (train_run)")                                            \
    X(report, "run.json, metrics.jsonl and results.json (report_load, report_json)")

#define FUZZ_X_DECL(name, what) int fuzz_##name(const uint8_t *data, size_t size);
FUZZ_TARGETS(FUZZ_X_DECL)
#undef FUZZ_X_DECL

#endif
