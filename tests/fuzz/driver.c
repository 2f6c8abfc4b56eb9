/* libFuzzer's entry point for the target named by FUZZ_TARGET (tools/fuzz.mk builds one binary
 * per target: -DFUZZ_TARGET=prompts gives build/fuzz/fuzz-prompts). */
#include "tests/fuzz/targets.h"

#include <stddef.h>
#include <stdint.h>

#ifndef FUZZ_TARGET
#error "define FUZZ_TARGET, the name of a target of tests/fuzz/targets.h"
#endif

#define FUZZ_CAT(a, b) a##b
#define FUZZ_FN(name) FUZZ_CAT(fuzz_, name)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return FUZZ_FN(FUZZ_TARGET)(data, size);
}
