# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
# PyTorch FSDP (full shard) through MMEngine's FlexibleRunner, on GPUs (nccl) or CPUs (gloo):
# DeviceAwareFSDPStrategy picks the device. One FSDP unit per transformer layer (LLM and CLIP),
# the rest of the model in the root unit; bf16 compute and reduction, float32 master weights.
# Checkpoints are full (unsharded) state dicts written by rank 0, so tools/test.py, `load_from`
# and DDP runs read them as they are. The strategy turns on the NaN-guard wrappers' global-norm
# gradient clipping over the shards (`sharded_grads`) and refuses other norm-clipping wrappers.
from mmrefvlm.engine import DeviceAwareFSDPStrategy
from mmrefvlm.engine.strategies import layer_name_wrap_policy

runner_type = 'FlexibleRunner'
fsdp_layer_names = ['LlamaDecoderLayer', 'CLIPEncoderLayer']
fsdp_mixed_precision = dict(
    param_dtype='bfloat16', reduce_dtype='bfloat16', buffer_dtype='bfloat16'
)
strategy = dict(
    type=DeviceAwareFSDPStrategy,
    state_dict_cfg='full',
    model_wrapper=dict(
        use_orig_params=True,  # frozen and trained weights may share one FSDP unit
        auto_wrap_policy=dict(type=layer_name_wrap_policy, layer_names=fsdp_layer_names),
        mixed_precision=fsdp_mixed_precision,
    ),
)
model_wrapper_cfg = None  # FlexibleRunner: the strategy wraps the model
