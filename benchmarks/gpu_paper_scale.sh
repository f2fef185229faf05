#!/usr/bin/env bash
# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
#
# Issue 13, part 1: the paper-scale measurements on one GPU, as one prepared run of at most 225 s
# (the sum of the per-step timeouts below; about 110 s expected on an H200). Run from the
# repository root on the GPU machine, after the install of ../shared/gpu/README.md step 2 (the
# script does that install itself, within its budget, when mmengine is missing and .whl/ exists):
#
#     OUT=/path/for/results bash benchmarks/gpu_paper_scale.sh
#
# Every step runs under `timeout`, writes its log to $LOGS, and its JSON to benchmarks/results/
# (rewritten after every measured point, so a step killed by its timeout keeps what it measured);
# at the end logs, JSON files and a summary are copied to $OUT when it is set. A failing step does
# not stop the others; the exit status is 1 when any step failed.
#
# Duration estimates (H200; ~400 TFLOP/s effective bf16; per process ~12 s of imports + CUDA
# context and ~5 s to build the 7B model on the meta device and materialise it):
#   LoRA stage 2: executed FLOPs per 1024-token sample ~ 4 N T (frozen 7B) + 6 N_lora T + attention
#     + recompute ~ 44 TFLOP -> ~0.11 s per sample; B = 1, 2, 4, 8, 16 x (1 warm-up + 2 timed)
#     = 93 samples ~ 10 s, + first-step / FLOP-count overheads ~ 6 s      -> ~33 s (timeout 50)
#   the same without checkpointing, B = 4, 8, 16: 84 samples at ~0.08 s      -> ~30 s (timeout 45)
#   full-LLM stage 2 (fp32 master weights, checkpointing): 6 N T + recompute ~ 56 TFLOP -> ~0.14 s
#     per sample + ~0.1 s AdamW per step; B = 1, 4, 16 x 3 steps = 63 samples ~ 9 s, + AdamW
#     state allocation / overheads ~ 6 s; B = 16 needs ~120 GiB (OOM is recorded) -> ~32 s (50)
#   inference, bf16 LLM: 3 rounds x (32 + 1 tokens) at B = 1, 8, 32: ~4 s per round    -> ~30 s (40)
#   grouped matching, 4 cases x 3 methods x 8 calls, a few ms each                     -> ~12 s (20)
#   install of .whl/ when needed                                                       -> ~10 s (20)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${LOGS:-benchmarks/results/gpu_logs}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Less fragmentation near the memory limit (the measured peak, max_memory_allocated, is unaffected)
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
START=$(date +%s)
FAILED=0
SUMMARY="$LOGS/summary.txt"
RESULTS="train_step_stage2_lora_cuda train_step_stage2_lora_nockpt_cuda train_step_stage2_cuda inference_stage2_cuda matching_cuda"
for f in $RESULTS; do rm -f "benchmarks/results/$f.json"; done  # no stale file is copied below
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
} > "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout -k 3 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  [ "$rc" -eq 0 ] || FAILED=$(( FAILED + 1 ))
  echo "$name: rc=$rc, $(( $(date +%s) - t0 )) s (limit $limit s)" | tee -a "$SUMMARY"
}

if ! $PY -c 'import mmengine, mmdet' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  step install 20 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
fi
# The repository on the path instead of `pip install -e .`: offline, setuptools >= 80 turns the
# editable install into a nested pip call that needs the index (seen on the H200, 2026-12-04).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# 1. LoRA stage 2 (configs/refvlm/stage2_lora.py: frozen bf16 LLM + LoRA r=64, checkpointing).
step train_lora 50 $PY benchmarks/bench_train_step.py --config configs/refvlm/stage2_lora.py \
  --device cuda --random-init --batch-sizes 1 2 4 8 16 --warmup 1 --steps 2 --time-limit 33
# 1b. The same without activation checkpointing (no recompute: the MFU goal's best chance; the
#     7B LLM alone fit batch 16 in 26 GiB with it, about 50 GiB at batch 8 without is expected).
step train_lora_nockpt 45 $PY benchmarks/bench_train_step.py --config configs/refvlm/stage2_lora.py \
  --device cuda --random-init --gradient-checkpointing off --batch-sizes 4 8 16 --warmup 1 \
  --steps 2 --time-limit 30 --name train_step_stage2_lora_nockpt_cuda
# 2. Full-LLM stage 2 with activation checkpointing (configs/refvlm/stage2.py: fp32 LLM, bf16 AMP).
step train_full 50 $PY benchmarks/bench_train_step.py --config configs/refvlm/stage2.py \
  --device cuda --random-init --gradient-checkpointing on --batch-sizes 1 4 16 --warmup 1 \
  --steps 2 --time-limit 33
# 3. Generation throughput of the 7B-shaped model (LLM in bf16), B = 1, 8, 32, 32 new tokens.
step inference 40 $PY benchmarks/bench_inference.py --config configs/refvlm/stage2.py \
  --device cuda --random-init --batch-sizes 1 8 32 --max-new-tokens 32 --repeats 2 --time-limit 24
# 4. Grouped Hungarian assignment (box and 64 x 64 mask costs) vs the per-group loop, on the GPU.
step matching 20 $PY benchmarks/bench_matching.py --device cuda --repeats 7

echo "total: $(( $(date +%s) - START )) s" | tee -a "$SUMMARY"
for f in $RESULTS; do
  [ -f "benchmarks/results/$f.json" ] && cp "benchmarks/results/$f.json" "$LOGS/"
done
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp -r "$LOGS"/. "$OUT"/
fi
# The Markdown tables, for the log of whoever runs this.
grep -h -A 12 '^configs/\|^workload' "$LOGS"/train_lora.log "$LOGS"/train_lora_nockpt.log \
  "$LOGS"/train_full.log \
  "$LOGS"/inference.log "$LOGS"/matching.log 2>/dev/null | grep -v '^--$' || true
[ "$FAILED" -eq 0 ]
