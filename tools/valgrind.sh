#!/bin/sh
# tools/valgrind.sh PLUMB: run plumb's commands under valgrind's memcheck on tiny inputs made in a
# temporary folder (a 2-layer byte-level model, a few records, the toy world): one line per
# command; exit status 1 when any of them leaks (definitely, indirectly or possibly lost), touches
# memory it should not, or ends with another exit status than expected (the last lines try
# error paths, which must not leak either).
#
# Builds nothing: PLUMB must be a binary valgrind can decode. Valgrind 3.19 (Debian 12) knows no
# AVX-512, so `make valgrind` builds one with -O1 -g -march=x86-64-v3. BLIS's kernel set is
# plumb's own choice from CPUID, which valgrind reports without AVX-512: the haswell kernels
# run (PLUMB_BLIS_ARCH overrides it as usual). tools/valgrind.supp suppresses BLIS's and libgomp's
# own buffers, nothing of plumb's. VALGRIND_KEEP=1 keeps the folder (logs, inputs) on success too;
# it is always kept on a failure.
set -u
if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: tools/valgrind.sh PLUMB_BINARY" >&2
    exit 2
fi
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 1; }
P=$(realpath "$1")
SUPP=$(realpath "$(dirname "$0")/valgrind.supp")
T=$(mktemp -d /tmp/plumb-valgrind-XXXXXX)
export PLUMB_THREADS=1 OMP_WAIT_POLICY=PASSIVE
failed=0

# The inputs, made by the plumb under test without valgrind.
cd "$T" || exit 1
M='{"n_layer":2,"n_embd":32,"n_head":2,"vocab_size":257,"n_positions":64,"tokenizer":"byte"}'
inputs() {
    "$P" init --config "$M" --out base --seed 1 && "$P" world --out world || return 1
    for i in 1 2 3 4 5 6 7 8; do
        q="\"prompt\": \"User: River of place $i?\\nAssistant:\""
        printf '{%s, "response": " The Ost."}\n' "$q" >>sft.jsonl
        printf '{%s, "chosen": " The Ost.", "rejected": " No idea."}\n' "$q" >>pairs.jsonl
        printf '{"id": "p%s", %s}\n' "$i" "$q" >>prompts.jsonl
    done
    printf '{"text": "The river of place 3 is the Ost."}\n{"tokens": [72, 105, 256]}\n' >score.jsonl
    printf '{"prompt": "a", "response": "b"}\n{"prompt": 3}\n' >bad_sft.jsonl
    printf '{"prompt": "a", "chosen": "b"}\n' >bad_pairs.jsonl
    printf '{"tokens": [1, 2, 999]}\n' >bad_score.jsonl
    head -n 4 world/prompts.jsonl >world_prompts.jsonl
    "$P" rm train --model base --data pairs.jsonl --out rm --steps 2 --batch 2 --eval-every 0 &&
        "$P" sample --model base --prompts world_prompts.jsonl -k 3 --max-new-tokens 6 \
            --out world_samples.jsonl &&
        "$P" simlabel --samples world_samples.jsonl --world world --out labels.jsonl
}
inputs >inputs.log 2>&1 || { echo "valgrind.sh: cannot make the inputs: $T/inputs.log" >&2; exit 1; }

# ARGS as a shell would take them back: words with spaces or quotes in single quotes.
quoted() {
    for a in "$@"; do
        case $a in
        *[\ \"\'{}\$]*) printf " '%s'" "$(printf '%s' "$a" | sed "s/'/'\\\\''/g")" ;;
        *) printf ' %s' "$a" ;;
        esac
    done
}

# check NAME STATUS ARGS...: plumb ARGS under memcheck, which must exit with STATUS and report
# nothing; its log is NAME.log, its output NAME.out.
check() {
    name=$1
    want=$2
    shift 2
    t0=$(date +%s%N)
    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
        --error-exitcode=99 --suppressions="$SUPP" --num-callers=30 --log-file="$name.log" \
        "$P" "$@" >"$name.out" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    secs="$((ms / 1000)).$((ms % 1000 / 100))"
    if [ "$rc" -eq "$want" ]; then
        printf 'ok    %-20s %5s s  plumb%s\n' "$name" "$secs" "$(quoted "$@")"
        return
    fi
    failed=1
    why="exit status $rc, not $want"
    [ "$rc" -eq 99 ] && why="$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$name.log" |
        tail -n 1) valgrind errors"
    printf 'FAIL  %-20s %5s s  plumb%s  (%s: %s/%s.log)\n' "$name" "$secs" "$(quoted "$@")" "$why" \
        "$T" "$name"
}

check init 0 init --config "$M" --out init --seed 2
check world 0 world --out world2
check score 0 score --model base --input score.jsonl --out score.out.jsonl --threads 1
check tokenize 0 tokenize --model base --text "hello there"
check generate 0 generate --model base --prompt "User: hi" --n 2 --max-new-tokens 8 \
    --temperature 1 --top-k 20 --top-p 0.9 --threads 1
check generate-beam 0 generate --model base --prompt "User: hi" --beam 2 --max-new-tokens 6 \
    --threads 1
check sample 0 sample --model base --prompts prompts.jsonl -k 2 --max-new-tokens 6 \
    --out samples.jsonl --threads 1
check pretrain 0 pretrain --model base --data world/corpus.txt --out pre --steps 2 --batch 2 \
    --seq 32 --eval-every 2 --eval-rows 4 --threads 1
check sft 0 sft --model base --data sft.jsonl --mix-corpus world/corpus.txt --out sft --steps 3 \
    --batch 2 --seq 48 --eval-every 2 --save-every 2 --warmup 1 --threads 1
check sft-resume 0 sft --model base --data sft.jsonl --mix-corpus world/corpus.txt --out sft \
    --steps 4 --batch 2 --seq 48 --eval-every 2 --save-every 2 --warmup 1 --resume --threads 1
check sft-2-threads 0 sft --model base --data sft.jsonl --out sft2 --steps 2 --batch 2 --seq 48 \
    --eval-every 2 --threads 2
check rm-train 0 rm train --model base --data pairs.jsonl --out rm2 --steps 3 --batch 2 \
    --eval-every 2 --threads 1
check rm-eval 0 rm eval --model rm --data pairs.jsonl --json --threads 1
check rm-score 0 rm score --model rm --input samples.jsonl --out rewards.jsonl --threads 1
check simlabel 0 simlabel --samples world_samples.jsonl --world world --out labels2.jsonl
check agree 0 agree --labels labels.jsonl
check ppo 0 ppo --policy base --reward rm --prompts prompts.jsonl --out ppo --iterations 1 \
    --batch 4 --minibatch 2 --ppo-epochs 1 --max-new-tokens 8 --eval-prompts prompts.jsonl \
    --threads 1
check bon 0 bon --policy base --reward rm --prompts prompts.jsonl --out bon.jsonl -n 2 \
    --max-new-tokens 6 --threads 1
check critique 0 critique --model base --constitution world/constitution.json \
    --prompts prompts.jsonl --rounds 2 --ties --reward rm --max-new-tokens 8 --out revisions.jsonl \
    --threads 1
check critique-compare 0 critique --model base --constitution world/constitution.json \
    --compare samples.jsonl --out ai_pairs.jsonl --max-new-tokens 8 --threads 1
check eval-world 0 eval world --model base --data world/prompts.jsonl --split test --limit 6 \
    --bootstrap 50 --out world.json --threads 1
check eval-mc 0 eval mc --model base --data world/mc_eval.jsonl --limit 6 --bootstrap 50 \
    --out mc.json --threads 1
check eval-rules 0 eval rules --constitution world/constitution.json --input samples.jsonl \
    --out rules.json
check report 0 report --runs sft rm2 ppo --out report
check bad-sft-line 1 sft --model base --data bad_sft.jsonl --out bad1 --steps 2 --threads 1
check bad-pair 1 rm train --model base --data bad_pairs.jsonl --out bad2 --steps 2 --threads 1
check bad-token-id 1 score --model base --input bad_score.jsonl --out bad3.jsonl --threads 1
check resume-refused 1 sft --model base --data sft.jsonl --out sft --steps 4 --batch 2 --seq 48 \
    --resume --threads 1
check ppo-resume-refused 1 ppo --policy base --reward rm --prompts prompts.jsonl --out ppo \
    --iterations 1 --batch 8 --minibatch 2 --max-new-tokens 8 --resume --threads 1

if [ "$failed" -ne 0 ] || [ "${VALGRIND_KEEP:-0}" = 1 ]; then
    echo "valgrind.sh: logs kept in $T"
else
    rm -rf "$T"
fi
exit "$failed"
