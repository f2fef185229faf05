#!/usr/bin/env bash
# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
#
# Everything the GPU issues need from one lent GPU machine, as one prepared run of at most
# $BUDGET seconds (default 570), from the repository root:
#
#     OUT=/path/for/results BUDGET=570 bash tools/misc/gpu_session.sh
#
# 1. install the carried wheels (.whl/, ../shared/gpu/README.md) when mmengine is missing, and put
#    the repository on PYTHONPATH (no editable install: it needs the package index there);
# 2. `make gpu-check` (the suite + the gpu tests, pytest-xdist, <= 345 s; issue 12) in the
#    background, and beside it the paper-scale benchmarks (benchmarks/gpu_paper_scale.sh, <= 235 s;
#    issue 13 part 1: 7B-shaped steps of seconds each, bound by the GPU; their peaks are the
#    process's own);
# 3. once gpu-check has finished (a host-bound step must not share the CPU with 10 test workers):
#    the demo step on CUDA (bench_train_step.py --device cuda and count_syncs.py --device cuda;
#    part 2);
# 4. with more than 240 s left: the GPU demo's dataset (tools/misc/make_demo_data.py) and the GPU
#    demo (tools/run_demo.py --config configs/refvlm/demo_gpu.py, its training cut to what is left
#    of the budget; part 3). With the default budget it usually does not fit after 2 and 3: run
#    `STAGES=demo` in a session of its own.
# Each step runs under `timeout`; logs go to $WORK; after every step $OUT receives summary.txt
# (and gpu-check's summary.md / failures.txt), so a run cut by the device's limit keeps them, and
# at the end gpu_session.tgz (everything). STAGES (default "check bench step demo") picks
# steps. The GPU demo's training budget: DEMO_TRAIN_S (default: what is left minus test time).
# Exit status: 0 when every step that ran exited 0, else 1 (summary.txt says which did not).
set -u
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-570}
STAGES=${STAGES:-check bench step demo}
WORK=${WORK:-work_dirs/gpu_session}
rm -rf "$WORK"; mkdir -p "$WORK"
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
log() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$WORK/summary.txt"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
FAILED="$WORK/failed_steps"  # a file: the gpu-check stage runs in a subshell
deliver() {  # what exists so far to $OUT: a run cut by the device's time limit keeps it
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  cp "$WORK/summary.txt" "$OUT/" 2>/dev/null
  for f in summary.md failures.txt; do
    [ -f "$WORK/gpu_check/$f" ] && cp "$WORK/gpu_check/$f" "$OUT/gpu_check_$f"
  done
  return 0
}
ran() {  # ran RC MESSAGE: log a step's exit status, remember a failure
  [ "$1" -eq 0 ] || echo "$2" >> "$FAILED"
  log "$2 rc=$1${3:+ $3}"
  deliver
}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log "start: commit $(git rev-parse --short HEAD 2>/dev/null), budget $BUDGET s, stages: $STAGES"
WHEEL_ARGS="-q --no-index --no-deps --no-compile --no-cache-dir"
if ! $PY -c 'import mmengine, mmdet' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  timeout 60 $PY -m pip install $WHEEL_ARGS .whl/*.whl > "$WORK/install.log" 2>&1
  rc=$?
  if ! $PY -c 'import mmengine, mmdet' 2>/dev/null; then
    # not root, or no writable site-packages: a private folder ahead of the machine's packages
    timeout 60 $PY -m pip install $WHEEL_ARGS --upgrade --target /tmp/site .whl/*.whl \
      >> "$WORK/install.log" 2>&1
    rc=$?
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
  err=$($PY -c 'import mmengine, mmdet' 2>&1 | tail -n 1)
  [ -z "$err" ] || rc=1
  ran $rc install "${err:+(still not importable: $err)}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$WORK/summary.txt" 2>&1
$PY -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__)' >> "$WORK/summary.txt" 2>&1

CHECK_PID=
if has check; then  # about 4-5 minutes on 10 workers; CPU-bound, light on the GPU
  ( timeout 345 $PY tools/misc/gpu_check.py --workers 10 --timeout 330 --out "$WORK/gpu_check" \
      > "$WORK/gpu_check.log" 2>&1; ran $? gpu-check ) &
  CHECK_PID=$!
fi
if has bench; then
  LOGS="$WORK/paper_scale" timeout 235 bash benchmarks/gpu_paper_scale.sh > "$WORK/paper_scale.log" 2>&1
  ran $? "paper-scale benchmarks"
fi
if has step; then
  if [ -n "$CHECK_PID" ]; then
    log "demo step: waiting for gpu-check to finish"
    wait "$CHECK_PID"
    CHECK_PID=
  fi
  if [ "$(left)" -ge 150 ]; then
    timeout 90 $PY benchmarks/bench_train_step.py --device cuda --iters 40 --warmup 10 \
      > "$WORK/demo_step_cuda.log" 2>&1
    ran $? "demo step on cuda"
    timeout 60 $PY benchmarks/count_syncs.py --device cuda --steps 8 > "$WORK/syncs_cuda.log" 2>&1
    ran $? "syncs per loss call on cuda" "($(head -n 1 "$WORK/syncs_cuda.log"))"
    cp benchmarks/results/train_step*cuda*.json benchmarks/results/sync_counts_cuda.json \
      "$WORK/" 2>/dev/null
  else
    log "demo step skipped: only $(left) s left (it needs 150 s)"
  fi
fi
if has demo; then
  if [ "$(left)" -gt 240 ] || [ -n "${DEMO_TRAIN_S:-}" ]; then
    timeout 120 $PY tools/misc/make_demo_data.py --out data/demo_gpu --num-train 12000 \
      --num-val 200 --workers 8 > "$WORK/demo_data.log" 2>&1
    ran $? "demo data"
    TRAIN_S=${DEMO_TRAIN_S:-$(( $(left) - 150 ))}
    timeout $(( TRAIN_S + 140 )) $PY tools/run_demo.py --config configs/refvlm/demo_gpu.py \
      --work-dir "$WORK/demo_gpu" --time-budget "$TRAIN_S" > "$WORK/demo_gpu.log" 2>&1
    ran $? "GPU demo" "(training budget $TRAIN_S s)"
    rm -f "$WORK"/demo_gpu/*.pth
  else
    log "GPU demo skipped: only $(left) s left (it needs > 240 s: data, >= 60 s of training, test)"
  fi
fi
wait
log "done${FAILED:+$([ -s "$FAILED" ] && echo "; failed: $(paste -sd, "$FAILED")")}"
deliver
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu_session.tgz" --exclude='*.pth' -C "$(dirname "$WORK")" "$(basename "$WORK")"
  [ -f "$WORK/demo_gpu/report.md" ] && cp "$WORK/demo_gpu/report.md" "$OUT/demo_gpu_report.md"
fi
[ ! -s "$FAILED" ]
