#!/usr/bin/env bash
# The GPU run of the planner's LoRA training, on a machine without network,
# from the repository root, in two calls (64 MiB may travel per call; the
# files come from planner/train/split_for_device.sh):
#
#   device_train.sh stash          call 1, carrying .xfer/gguf.part1: keeps it
#                                  in /tmp/rosetta-xfer/ and checks GPU and JAX
#   device_train.sh train [ARGS]   call 2, carrying .xfer/gguf.part2,
#                                  .xfer/gguf.sha256, .xfer/corpus.jsonl.gz
#                                  (and .xfer/corpus.info): joins and checks the
#                                  GGUF, trains, writes into $OUT/:
#                                    smollm2-135m-plan.safetensors  the adapter
#                                    smollm2-135m-plan.json         run figures
#                                    smollm2-135m-plan.csv          loss curve
#                                    train.log                      the output
#
# ARGS go to planner/train/lora_gpu.py after the defaults below (a later
# option wins), e.g. `train --epochs 2 --lr 2e-3`. TIME_BUDGET_S (default 240)
# bounds the trainer's wall time, JIT compilation included.
#
# Needs python3 with jax (CUDA), optax, numpy and safetensors; nothing else.
set -euo pipefail

stash=/tmp/rosetta-xfer
mode=${1:-}
shift || true

# ALLOW_CPU=1 skips the GPU checks (to try this script on a CPU machine).
check_device() {
    if [[ ${ALLOW_CPU:-0} == 1 ]]; then
        python3 -c 'import jax; print("jax", jax.__version__, jax.devices())'
        return
    fi
    nvidia-smi -L
    python3 -c 'import jax; d = jax.devices(); print("jax", jax.__version__, d); assert d[0].platform == "gpu", "JAX sees no GPU"'
}

case $mode in
stash)
    [[ -f .xfer/gguf.part1 ]] || { echo "no .xfer/gguf.part1: carry it in this call" >&2; exit 1; }
    mkdir -p "$stash"
    cp .xfer/gguf.part1 "$stash/"
    ls -l "$stash"
    check_device
    ;;
train)
    out=${OUT:?OUT (where results go) is not set}
    part1=$stash/gguf.part1
    [[ -f $part1 ]] || part1=.xfer/gguf.part1
    if [[ ! -f $part1 ]]; then
        echo "gguf.part1 is missing from $stash: the machine was recycled since call 1; run 'device_train.sh stash' (carrying .xfer/gguf.part1) again" >&2
        exit 1
    fi
    for f in .xfer/gguf.part2 .xfer/gguf.sha256 .xfer/corpus.jsonl.gz; do
        [[ -f $f ]] || { echo "no $f: carry it in this call" >&2; exit 1; }
    done
    mkdir -p "$stash"
    cat "$part1" .xfer/gguf.part2 >"$stash/model.gguf"
    got=$(sha256sum "$stash/model.gguf" | cut -d' ' -f1)
    if [[ $got != "$(cat .xfer/gguf.sha256)" ]]; then
        echo "the joined GGUF has sha256 $got, not $(cat .xfer/gguf.sha256): parts from different splits? rerun split_for_device.sh and both calls" >&2
        exit 1
    fi
    echo "GGUF joined and checked ($(stat -c %s "$stash/model.gguf") bytes)"
    [[ -f .xfer/corpus.info ]] && echo "corpus: $(cat .xfer/corpus.info)"
    check_device
    mkdir -p "$out"
    python3 -u planner/train/lora_gpu.py \
        --gguf "$stash/model.gguf" \
        --data .xfer/corpus.jsonl.gz \
        --out "$out/smollm2-135m-plan.safetensors" \
        --time-budget-s "${TIME_BUDGET_S:-240}" \
        --epochs 3 --batch 32 --lr 1e-3 --rank 16 --alpha 32 \
        "$@" 2>&1 | tee "$out/train.log"
    echo "== figures"
    grep -E '^(compiled|held-out|time budget|stopped|RESULT)' "$out/train.log" || true
    ls -l "$out"
    ;;
*)
    echo "usage: $0 stash | train [lora_gpu.py options]" >&2
    exit 2
    ;;
esac
