# Fuzzing (issue 14): one libFuzzer binary per target of tests/fuzz/targets.h, built with clang
# under ASan and UBSan into $(FUZZ_DIR). Used alone (make -f tools/fuzz.mk fuzz) or included by
# the top Makefile (-include tools/fuzz.mk): every name here starts with FUZZ_ or fuzz.
#
#   make -f tools/fuzz.mk fuzz FUZZ_SECONDS=60     each target for 60 s, one after the other
#   make -f tools/fuzz.mk fuzz FUZZ_NAMES="tok csv"
#   make -f tools/fuzz.mk fuzz-build               the binaries only
#
# A run reads the seeds in tests/fuzz/NAME/ and what earlier runs found in
# $(FUZZ_DIR)/corpus/NAME/, and writes new inputs only to the latter. It prints each target's
# executions (libFuzzer's stat::number_of_executed_units) and fails when a target finds a crash,
# a leak, undefined behaviour or a hang: the input is then in $(FUZZ_DIR)/artifacts/NAME/ and
# belongs in tests/fuzz/NAME/crash-WHAT once the parser is fixed.

FUZZ_DIR ?= build/fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB ?= 2048
FUZZ_NICE ?= nice -n 10
FUZZ_FLAGS ?=
FUZZ_NAMES ?= $(shell sed -n 's/^ *X.\([a-z0-9_]*\), .*/\1/p' tests/fuzz/targets.h)

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -g -O1 -march=native \
	-fno-omit-frame-pointer -Wno-pass-failed -fopenmp -I. -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_LDLIBS := -lblis -lcjson -lcsv -lpcre2-8 -lncursesw -lz -lm -fopenmp
FUZZ_LIB_SRCS := $(wildcard $(addsuffix /*.c,model datasets trainer reward rlhf eval reports tui cmd))
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_LIB_SRCS))
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/fuzz-,$(FUZZ_NAMES))

.PHONY: fuzz fuzz-build
# Not .SECONDARY: in the top Makefile that would end its "every target is secondary".
.PRECIOUS: $(FUZZ_DIR)/obj/tests/fuzz/targets.o

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_DIR)/libplumb.a: $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/fuzz-%: tests/fuzz/driver.c $(FUZZ_DIR)/obj/tests/fuzz/targets.o $(FUZZ_DIR)/libplumb.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_TARGET=$* -o $@ $^ $(FUZZ_LDLIBS)

# One thread each (PLUMB_THREADS, OMP_NUM_THREADS), niced: the machine is shared.
fuzz: $(FUZZ_BINS)
	@mkdir -p $(FUZZ_DIR)/logs; fail=0; total=0; \
	for t in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
	  log=$(FUZZ_DIR)/logs/$$t.log; \
	  PLUMB_THREADS=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(FUZZ_NICE) \
	    $(FUZZ_DIR)/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
	    -rss_limit_mb=$(FUZZ_RSS_MB) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ $(FUZZ_FLAGS) \
	    $(FUZZ_DIR)/corpus/$$t tests/fuzz/$$t > $$log 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | tail -n 1); \
	  total=$$((total + $${execs:-0})); \
	  if [ $$rc -eq 0 ]; then \
	    printf 'fuzz %-12s %10s executions in %s s\n' $$t "$${execs:-?}" $(FUZZ_SECONDS); \
	  else \
	    fail=1; \
	    printf 'fuzz %-12s FAILED (status %d) after %s executions; see %s\n' \
	      $$t $$rc "$${execs:-?}" $$log; \
	    grep -m 3 -e '^==[0-9]*==ERROR' -e 'runtime error' -e '^fuzz ' \
	      -e 'Test unit written' -e 'ALARM' $$log | sed 's/^/  /'; \
	  fi; \
	done; \
	echo "fuzz: $$total executions over $(words $(FUZZ_NAMES)) targets"; \
	exit $$fail

-include $(shell find $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)
