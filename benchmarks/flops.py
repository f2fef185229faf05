# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""FLOPs of one RefVLM training step, for model FLOPs utilisation (MFU).

One multiply-add counts as 2 FLOPs. ``T = B x s`` LLM tokens per step (``s``: padded sequence
length, every position is computed), ``T_lab`` the labelled positions that reach the LM head
(``labels[:, 1:] != -100``; ``lm_loss`` computes logits for those only).

**LLM** (Llama layer: q/k/v/o, SwiGLU gate/up/down, no biases),
``N = L (2 h^2 + 2 h h_kv + 3 h I)`` matmul parameters of the decoder stack (embeddings excluded:
a lookup does no multiply-add):

* linear layers: ``6 N T`` when their weights are trained (forward 2, input gradient 2, weight
  gradient 2); ``4 N T`` when frozen (LoRA: no weight gradient, but the input gradient still
  flows to the adapters and to the projector below);
* LoRA adapters (rank ``r``, per adapted ``in -> out`` projection ``r (in + out)`` parameters):
  ``6 N_lora T``;
* attention scores and weighted values: ``12 L h s^2 B`` (forward ``QK^T`` and ``AV``,
  ``2 x 2 s^2 h`` per layer and sequence; backward twice the forward), **without** a causal
  discount, the PaLM / Megatron convention (a causal flash kernel does about half);
* LM head: ``6 h V T_lab`` when any of its weights is trained (full fine-tuning; LoRA's trainable
  token rows, since peft's ``TrainableTokensLayer`` multiplies by a merged weight that requires
  grad, so the whole weight gradient is computed), else ``4 h V T_lab``.

``model`` FLOPs (what MFU divides) = the sum of the above + the vision and decoder terms below.
Activation checkpointing recomputes the forward of every decoder layer once more
(``2 N T + 2 N_lora T + 4 L h s^2 B``): reported apart as ``recompute`` and **not** counted in
MFU (the convention of PaLM's MFU; ``hfu`` in the results counts it). It is an upper bound:
non-reentrant checkpointing stops a layer's recomputation after its last tensor saved for
backward, which skips the trailing ``down_proj`` without LoRA (``2 h I T`` per layer less;
checked against ``FlopCounterMode`` in ``tests/test_benchmarks/test_flops.py``).

**Vision, projector, decoders**: forward FLOPs per sample counted by
``torch.utils.flop_counter.FlopCounterMode`` on the built modules (matmuls, convolutions,
attention), times 1 for a frozen module (run under ``no_grad``) and times 3 for a trained one
(forward + input and weight gradients). Decoders run with the step's ``<REF>`` queries per
sample. Not counted: elementwise work (norms, activations, softmax, losses, the matching costs),
the visual-prompt aggregation (9 tokens per prompt) and the optimizer.

``flops_6n``: the issue's convention, ``6 N T`` for every LLM linear layer whatever is trained
(plus LoRA, attention and a trained LM head); equal to ``model`` for full fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

#: LoRA target name -> (in, out) as multiples of (hidden, kv width, intermediate), see lora_params.
LORA_TARGETS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')


@dataclass(frozen=True)
class LlamaShape:
    """The shape of a Llama-style decoder stack.

    Attributes:
        hidden (int): Model width ``h``.
        intermediate (int): SwiGLU width ``I``.
        layers (int): Decoder layers ``L``.
        heads (int): Query heads.
        kv_heads (int): Key/value heads (GQA; equal to ``heads`` for Vicuna-7B).
        vocab (int): LM-head rows ``V``.
    """

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    @classmethod
    def from_hf_config(cls, cfg: Any) -> LlamaShape:
        """From a transformers ``LlamaConfig`` (or any config with the same field names)."""
        return cls(
            hidden=cfg.hidden_size,
            intermediate=cfg.intermediate_size,
            layers=cfg.num_hidden_layers,
            heads=cfg.num_attention_heads,
            kv_heads=getattr(cfg, 'num_key_value_heads', None) or cfg.num_attention_heads,
            vocab=cfg.vocab_size,
        )

    @property
    def kv_width(self) -> int:
        """Width of the key / value projections (``kv_heads x head_dim``)."""
        return self.kv_heads * (self.hidden // self.heads)

    def projection_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of every linear layer of one decoder layer."""
        h, kv, inter = self.hidden, self.kv_width, self.intermediate
        return dict(
            q_proj=(h, h),
            k_proj=(h, kv),
            v_proj=(h, kv),
            o_proj=(h, h),
            gate_proj=(h, inter),
            up_proj=(h, inter),
            down_proj=(inter, h),
        )


def llama_linear_params(shape: LlamaShape) -> int:
    """``N``: matmul parameters of the decoder stack (no embeddings, no LM head, no norms)."""
    return shape.layers * sum(i * o for i, o in shape.projection_shapes().values())


def lora_linear_params(shape: LlamaShape, r: int, targets: Iterable[str]) -> int:
    """``N_lora``: LoRA A and B parameters, ``r (in + out)`` per adapted projection per layer."""
    shapes = shape.projection_shapes()
    targets = list(targets)
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f'no Llama projection named {sorted(unknown)}; known: {sorted(shapes)}')
    return shape.layers * sum(r * sum(shapes[t]) for t in targets)


def llm_train_flops(
    shape: LlamaShape,
    *,
    batch: int,
    seq: int,
    labelled: int,
    base_trainable: bool,
    head_trainable: bool,
    lora_r: int | None = None,
    lora_targets: Iterable[str] = (),
    checkpointing: bool = False,
) -> dict[str, float]:
    """Training FLOPs of the LLM for one step (see the module docstring for every term).

    Args:
        shape (LlamaShape): The decoder stack.
        batch (int): ``B``.
        seq (int): ``s``, padded tokens per sample.
        labelled (int): ``T_lab``, positions whose logits are computed (whole batch).
        base_trainable (bool): The decoder-stack linear weights get gradients.
        head_trainable (bool): Some LM-head weight gets a gradient.
        lora_r (int, optional): LoRA rank (None: no adapters).
        lora_targets (Iterable[str]): Adapted projections.
        checkpointing (bool): Activation checkpointing (sets ``recompute``).

    Returns:
        dict[str, float]: ``linear``, ``lora``, ``attention``, ``lm_head``, ``model`` (their sum),
        ``recompute`` (0 without checkpointing) and ``flops_6n``.
    """
    tokens = batch * seq
    n = llama_linear_params(shape)
    n_lora = lora_linear_params(shape, lora_r, lora_targets) if lora_r else 0
    attn_fwd = 4 * shape.layers * shape.hidden * seq * seq * batch
    out = dict(
        linear=float((6 if base_trainable else 4) * n * tokens),
        lora=float(6 * n_lora * tokens),
        attention=float(3 * attn_fwd),
        lm_head=float((6 if head_trainable else 4) * shape.hidden * shape.vocab * labelled),
    )
    out['model'] = sum(out.values())
    out['recompute'] = float(2 * (n + n_lora) * tokens + attn_fwd) if checkpointing else 0.0
    out['flops_6n'] = out['model'] - out['linear'] + 6.0 * n * tokens
    if not head_trainable:
        out['flops_6n'] += 2.0 * shape.hidden * shape.vocab * labelled
    return out


def forward_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the ops ``fn`` runs, counted by ``torch.utils.flop_counter.FlopCounterMode``
    (matmuls, convolutions, attention kernels; elementwise ops count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def is_trained(module: Any) -> bool:
    """Whether any parameter of ``module`` requires grad (a frozen module counts its forward x1,
    a trained one x3)."""
    return any(p.requires_grad for p in module.parameters())


def step_flops(
    llm: Mapping[str, float],
    per_sample_forward: Mapping[str, tuple[float, bool]],
    batch: int,
) -> dict[str, Any]:
    """Total model FLOPs of a step: the LLM terms plus ``factor x forward x batch`` per module.

    Args:
        llm (Mapping[str, float]): :func:`llm_train_flops` output.
        per_sample_forward (Mapping[str, tuple[float, bool]]): module name -> (forward FLOPs per
            sample, trained?).
        batch (int): Samples in the step.

    Returns:
        dict: ``model``, ``flops_6n``, ``recompute``, ``hardware`` (model + recompute) and the
        ``breakdown`` per term (FLOPs of the whole step).
    """
    breakdown = {f'llm {k}': v for k, v in llm.items() if k not in ('model', 'flops_6n')}
    breakdown.pop('llm recompute')
    others = 0.0
    for name, (fwd, trained) in per_sample_forward.items():
        breakdown[name] = (3 if trained else 1) * fwd * batch
        others += breakdown[name]
    return dict(
        model=llm['model'] + others,
        flops_6n=llm['flops_6n'] + others,
        recompute=llm['recompute'],
        hardware=llm['model'] + others + llm['recompute'],
        breakdown=breakdown,
    )


def refvlm_module_flops(model, *, refs: int, device: torch.device) -> dict[str, tuple[float, bool]]:
    """Forward FLOPs per sample of the encoders, projector and decoders (and whether each is
    trained), counted on this model with one sample and ``refs`` queries per decoder, under bf16
    autocast as the configs train (bf16 encoder outputs meet fp32 projector weights)."""
    from mmrefvlm.structures import UnitQueries, VisualContext

    sizes = model.data_preprocessor.image_sizes
    keys = model.image_keys
    llm: Any = model.llm
    hidden = llm.get_input_embeddings().weight.shape[1]
    out: dict[str, tuple[float, bool]] = {}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        vit = torch.zeros(1, 3, sizes[keys['vision']], sizes[keys['vision']], device=device)
        clip = model.vision_encoder(vit)
        out['vision encoder'] = (
            forward_flops(lambda: model.vision_encoder(vit)),
            is_trained(model.vision_encoder),
        )
        pyramid: tuple = (clip,)
        if model.pyramid_encoder is not None:
            side = sizes[keys['pyramid']]
            pyr_in = torch.zeros(1, 3, side, side, device=device)
            pyramid = tuple(model.pyramid_encoder(pyr_in))
            out['pyramid encoder'] = (
                forward_flops(lambda: model.pyramid_encoder(pyr_in)),
                is_trained(model.pyramid_encoder),
            )
        tokens = clip.flatten(2).transpose(1, 2)
        out['projector'] = (
            forward_flops(lambda: model.projector(tokens)),
            is_trained(model.projector),
        )
        vis = VisualContext(pyramid=pyramid, clip=clip, valid_hw=torch.ones(1, 2, device=device))
        queries = UnitQueries(
            embeds=torch.randn(1, refs, hidden, device=device),
            mask=torch.ones(1, refs, dtype=torch.bool, device=device),
            group_ids=torch.zeros(1, refs, dtype=torch.long, device=device),
        )
        for unit, dec in model.unit_decoders.items():
            out[f'decoder: {unit}'] = (
                forward_flops(lambda d=dec: d(queries, vis)),
                is_trained(dec),
            )
    return out
