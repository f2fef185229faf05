#!/usr/bin/env bash
# GPU checks of the synchronisation-free training step (issue 13, part 2), in one run of about
# 6-8 minutes. From the repository root, on a GPU machine set up as ../shared/gpu/README.md says
# (wheels installed, `pip install -e .`). Logs and result JSONs go to ${OUT:-gpu_logs}/.
#   1. the @pytest.mark.gpu tests of the step and of SyncCounter (set_sync_debug_mode('warn'));
#   2. syncs per training step of the demo config on CUDA (counter + debug-mode warnings);
#   3. the demo training-step breakdown on CUDA (sections synchronised).
set -u
out=${OUT:-gpu_logs}
py=${PYTHON:-python3}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1

step() {  # step NAME TIMEOUT_S CMD...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "   rc=$? in $((SECONDS - start)) s"
    tail -n 4 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total --format=csv >"$out/gpu.txt" 2>&1
git rev-parse HEAD >"$out/commit.txt" 2>&1
step gpu_tests 300 "$py" -m pytest -q -m gpu tests/test_models/test_sync_free_loss.py \
    tests/test_testing/test_sync_counter.py
step count_syncs 240 "$py" benchmarks/count_syncs.py --device cuda --steps 8
cp benchmarks/results/sync_counts.json "$out/" 2>/dev/null
step bench_train_step 420 "$py" benchmarks/bench_train_step.py --device cuda --iters 60 \
    --warmup 10 --profile-iters 2
cp benchmarks/results/train_step.json "$out/" 2>/dev/null
