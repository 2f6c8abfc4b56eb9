# plumb: one non-recursive Makefile. `make demo` and `make test` do all the set-up
# on a fresh Debian 12 machine (the deps target installs missing packages).

BUILD ?= build
CC ?= cc
OPT ?= -O3 -march=native
SAN ?=
CFLAGS_BASE := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -fopenmp -I.
CFLAGS_ALL = $(CFLAGS_BASE) $(OPT) $(SAN) $(CFLAGS)
LDLIBS_ALL = -lblis -lcjson -lcsv -lpcre2-8 -lncursesw -lz -lm -fopenmp $(SAN) $(LDLIBS)

DEB_PACKAGES := gcc make perl libblis-dev libcjson-dev libcsv-dev libncurses-dev libpcre2-dev \
	zlib1g-dev

# make MPI=1: plumb on MPI (mpicc) for data-parallel training under mpirun (trainer/dist.h).
ifeq ($(MPI),1)
CC := mpicc
CFLAGS_BASE += -DPLUMB_MPI
DEB_PACKAGES += libopenmpi-dev openmpi-bin
# Objects and binary of its own (build/mpi/plumb): the default build's objects lack PLUMB_MPI.
ifeq ($(BUILD),build)
BUILD := build/mpi
endif
.DEFAULT_GOAL := $(BUILD)/plumb
endif

SRC_DIRS := model datasets trainer reward rlhf eval reports tui cmd
LIB_SRCS := $(wildcard $(addsuffix /*.c,$(SRC_DIRS)))
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
TEST_SRCS := $(filter-out tests/tap.c tests/fixture.c,$(wildcard tests/*.c))
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%.t,$(TEST_SRCS))
LIB := $(BUILD)/libplumb.a

.PHONY: all deps test check-asan bench demo demo-clean demo-label demo-human eval-demo datasets \
	clean format
# Keep test objects between runs so an unchanged test is not rebuilt.
.SECONDARY:

all: plumb

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

plumb: $(BUILD)/obj/plumb.o $(LIB)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/plumb: $(BUILD)/obj/plumb.o $(LIB)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/%.t: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/tap.o $(BUILD)/obj/tests/fixture.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(filter-out $(LIB),$^) $(LIB) $(LDLIBS_ALL)

# The fuzz targets' replay test also links the targets (tests/fuzz/targets.h).
$(BUILD)/tests/tools-fuzz.t: $(BUILD)/obj/tests/fuzz/targets.o

# Tests find the plumb binary of their own build through PLUMB_BIN.
test: $(TESTS) $(BUILD)/plumb
	PLUMB_BIN=$(BUILD)/plumb prove $(BUILD)/tests

# The 2-rank tests (tests/trainer-dist.c) against an MPI build of its own, $(BUILD)/mpi/plumb.
.PHONY: test-mpi
test-mpi: $(BUILD)/tests/trainer-dist.t
	$(MAKE) --no-print-directory MPI=1 BUILD=$(BUILD)/mpi $(BUILD)/mpi/plumb
	PLUMB_MPI_BIN=$(BUILD)/mpi/plumb prove $(BUILD)/tests/trainer-dist.t

check-asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -march=native -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

# Memcheck on plumb's commands with tiny inputs (tools/valgrind.sh). Valgrind 3.19 decodes no
# AVX-512, so its binary is built apart, -O1 for x86-64-v3 (AVX2); plumb then picks BLIS's
# haswell kernels itself, since valgrind's CPUID shows no AVX-512.
.PHONY: valgrind
valgrind:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES=valgrind
	@$(MAKE) --no-print-directory BUILD=build/valgrind OPT="-O1 -march=x86-64-v3" build/valgrind/plumb
	tools/valgrind.sh build/valgrind/plumb

bench: plumb
	./plumb bench

# The toy world end to end, a chain of rules (tools/demo.mk) whose outputs go under runs/demo/:
# an interrupted demo resumes, a finished stage is not redone; demo-clean starts over.
demo: plumb
	@$(MAKE) --no-print-directory -f tools/demo.mk PLUMB=./plumb

# A person's own rankings in the labelling TUI instead of the simulated annotators', and every
# eval suite on the demo's models (tools/demo.mk).
demo-label demo-human eval-demo: plumb
	@$(MAKE) --no-print-directory -f tools/demo.mk PLUMB=./plumb $@

demo-clean:
	rm -rf runs/demo

datasets:
	sh datasets/fetch.sh

format:
	clang-format -i $(LIB_SRCS) $(TEST_SRCS) tests/tap.c tests/fixture.c plumb.c $(wildcard */*.h)

clean:
	rm -rf build plumb

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# plumb/torch ratios of training-step, scoring, generation and PPO-iteration speed, one table
# from one run of each, the same thread count: Debian's python3-torch on the OpenMP build of
# OpenBLAS first on the library path (torch's OpenMP threads are then OpenBLAS's: the pthread
# build makes two pools fight over the cores), OpenBLAS's own CPU detection (no
# OPENBLAS_CORETYPE / L2 size override) so that it runs its AVX-512 kernels (the script prints
# the core it picked), and glibc malloc on huge pages, never mapping anew below 4 GiB nor
# trimming, so a step does not pay first-touch page faults.
.PHONY: bench-peer
bench-peer: $(BUILD)/plumb
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="python3-torch libopenblas0-openmp"
	$(BUILD)/plumb bench --json > $(BUILD)/bench.json
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	  GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736 \
	  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
	  /usr/bin/python3 bench/peer_torch.py --plumb $(BUILD)/bench.json

# make fuzz [FUZZ_SECONDS=N] [FUZZ_NAMES="..."]: the libFuzzer targets of tests/fuzz (tools/fuzz.mk).
-include tools/fuzz.mk
