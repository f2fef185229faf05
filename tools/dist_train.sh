#!/usr/bin/env bash
# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Multi-GPU / multi-node training with torchrun (the mmdet-style wrapper of tools/train.py).
#   bash tools/dist_train.sh CONFIG NUM_GPUS [train.py options...]
# One node, 8 GPUs:
#   bash tools/dist_train.sh configs/refvlm/stage2.py 8
# Two nodes, 8 GPUs each (run on every node; NODE_RANK 0 on the node at MASTER_ADDR):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh configs/refvlm/stage2.py 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh configs/refvlm/stage2.py 8
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG NUM_GPUS [tools/train.py options...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
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
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
