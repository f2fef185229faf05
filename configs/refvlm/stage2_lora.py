# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# Stage 2 on one GPU: the LLM frozen in bf16 with LoRA adapters (float32, trained) on every
# projection, the new TRP-token rows trainable, activation checkpointing; decoders and projector
# trained as in stage2.py. Fits a 24 GB GPU at batch 2 per the memory model (docs/benchmarks.md);
# use gradient accumulation to reach the paper's batch.
from mmengine.config import read_base

with read_base():
    from .stage2 import *  # noqa: F401,F403

train_batch_size = 2
accumulative_counts = 8
model.llm.torch_dtype = 'bfloat16'
model.lora = dict(
    r=64,
    lora_alpha=128,
    lora_dropout=0.05,
    target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
)
train_dataloader.batch_size = train_batch_size
optim_wrapper.accumulative_counts = accumulative_counts
optim_wrapper.optimizer.lr = 2e-4  # LoRA rates are ~100x full fine-tuning rates
