#!/usr/bin/env bash
# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Multi-GPU / multi-node evaluation with torchrun (the mmdet-style wrapper of tools/test.py).
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS [test.py options...]
#   bash tools/dist_test.sh configs/refvlm/stage2.py work_dirs/stage2/iter_63000.pth 8
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: bash $0 CONFIG CHECKPOINT NUM_GPUS [tools/test.py options...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
TOOLS=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
