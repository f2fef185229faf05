# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The assembly shared by the DETR-like unit decoders (box, keypoint, mask and plugins).

``<REF>`` states -> :class:`~.layers.QueryProjection` -> cross-attention over a
:class:`~.layers.PyramidFusion` memory in a :class:`~.layers.QueryDecoder` -> a unit-specific
**head**. A DETR-like unit is a head class plus a config that composes the blocks, as mmdet
composes ``DeformableDETR`` from ``encoder=dict(...)`` and ``decoder=dict(...)``::

    BoxUnitDecoder(
        in_channels=4096,
        d_model=256,
        memory=dict(levels=(0, 1, 2), use_clip=True, size=128),  # PyramidFusion arguments
        decoder=dict(num_layers=6, num_heads=8, ffn_dim=2048),  # QueryDecoder arguments
        head=dict(type=BoxUnitHead, box_head='mlp'),
    )

Block contract (what :class:`DetrAssembly` passes; a ``type`` key swaps a block for another
class in ``MODELS`` with the same contract, a built ``nn.Module`` is used as it is):

* ``memory``: built with ``pyramid_channels``, ``clip_channels`` and ``d_model``;
  ``forward(visual) -> FusedMemory``.
* ``decoder``: built with ``d_model``; ``forward(content, query_pos, query_mask, memory) ->
  (B, Q, D)``, zeros on padded slots. ``None`` (or ``num_layers=0``): no decoder, the projected
  queries go to the head directly.
* ``head``: built with ``d_model``; ``forward(hidden, memory, queries, visual) -> dict`` of the
  unit's raw outputs over all (B, Q) slots. Padded slots must not influence real ones.

A unit decoder's partial ``memory`` / ``decoder`` / ``head`` dicts override its defaults key by key
(``decoder=dict(num_layers=2)`` keeps the default heads and widths); a dict whose ``type`` names
another class replaces the default entirely. The flat spelling of the earlier releases
(``num_layers=6, memory_size=128, ...``) is still accepted (:data:`LEGACY_DETR_ARGS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import UnitQueries, VisualContext

from .layers import FusedMemory, PyramidFusion, QueryDecoder, QueryProjection

__all__ = [
    'DETR_DECODER',
    'LEGACY_DETR_ARGS',
    'DetrOutput',
    'DetrAssembly',
    'compose_detr_blocks',
    'rename_legacy_keys',
    'register_legacy_keys',
]

#: REF-VLM's query decoder: 6 post-norm DETR layers, width from ``d_model``.
DETR_DECODER = dict(num_layers=6, num_heads=8, ffn_dim=2048, dropout=0.1)

#: Flat arguments of the earlier decoder signatures -> (block, key) of the composed form.
LEGACY_DETR_ARGS: dict[str, tuple[str, ...]] = dict(
    num_layers=('decoder', 'num_layers'),
    num_heads=('decoder', 'num_heads'),
    ffn_dim=('decoder', 'ffn_dim'),
    dropout=('decoder', 'dropout'),
    memory_levels=('memory', 'levels'),
    memory_use_clip=('memory', 'use_clip'),
    memory_size=('memory', 'size'),
    mask_memory_padding=('memory', 'mask_padding'),
)

BlockCfg = dict | nn.Module | None


class DetrOutput(NamedTuple):
    """Output of :class:`DetrAssembly`."""

    outputs: dict[str, Tensor]  # the head's raw outputs, every (B, Q) slot
    hidden: Tensor  # (B, Q, D) float, decoded queries (zeros on padded slots)
    memory: FusedMemory  # the memory the queries attended to


def _type_of(cfg: Mapping) -> Any:
    kind = cfg.get('type')
    return MODELS.get(kind) if isinstance(kind, str) else kind


def build_block(cfg: dict | nn.Module, default_type: type | None, **context: Any) -> nn.Module:
    """Build one block: a module is returned as is; a dict gets ``context`` for the keys it leaves
    out and ``default_type`` when it has no ``type``."""
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f'a block must be a config dict or an nn.Module, got {type(cfg).__name__}')
    cfg = dict(cfg)
    if 'type' not in cfg:
        if default_type is None:
            raise ValueError(f'a head config needs a `type`, got {cfg}')
        cfg['type'] = default_type
    for key, value in context.items():
        cfg.setdefault(key, value)
    return MODELS.build(cfg)


@MODELS.register_module()
class DetrAssembly(BaseModule):
    """Query projection -> pyramid memory -> query decoder -> head (the block contract above).

    Args:
        in_channels (int): Width of the ``<REF>`` states.
        num_queries (int): Slot embeddings of the query projection.
        d_model (int): Width of every block.
        pyramid_channels (Sequence[int]): Pyramid level channels, finest first.
        clip_channels (int): CLIP grid channels.
        memory (dict | nn.Module): Memory block (default type :class:`PyramidFusion`).
        decoder (dict | nn.Module, optional): Query decoder (default type :class:`QueryDecoder`);
            None or ``num_layers=0``: none.
        head (dict | nn.Module): The unit's head (``type`` required in a dict).
        init_cfg (dict | list[dict], optional): MMEngine init config.
    """

    def __init__(
        self,
        in_channels: int,
        num_queries: int,
        *,
        d_model: int,
        pyramid_channels: Sequence[int],
        clip_channels: int,
        memory: BlockCfg,
        decoder: BlockCfg,
        head: BlockCfg,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if memory is None or head is None:
            raise ValueError('DetrAssembly needs a memory and a head (None is only for decoder)')
        self.query_proj = QueryProjection(in_channels, d_model, num_queries)
        self.memory = build_block(
            memory,
            PyramidFusion,
            pyramid_channels=tuple(pyramid_channels),
            clip_channels=clip_channels,
            d_model=d_model,
        )
        if isinstance(decoder, Mapping) and decoder.get('num_layers') == 0:
            decoder = None
        self.decoder = (
            None if decoder is None else build_block(decoder, QueryDecoder, d_model=d_model)
        )
        self.head = build_block(head, None, d_model=d_model)

    def forward(self, queries: UnitQueries, visual: VisualContext) -> DetrOutput:
        """Decode every slot.

        Args:
            queries (UnitQueries): ``embeds`` (B, Q, C), ``mask`` (B, Q) bool.
            visual (VisualContext): The encoders' features.

        Returns:
            DetrOutput: The head's outputs, the decoded queries and the memory.
        """
        content, query_pos = self.query_proj(queries)
        memory = self.memory(visual)
        mask = queries.mask.bool()
        if self.decoder is not None:
            hidden = self.decoder(content, query_pos, mask, memory)
        else:
            hidden = (content + query_pos) * mask[..., None].to(content.dtype)
        return DetrOutput(self.head(hidden, memory, queries, visual), hidden, memory)


def _merge(default: BlockCfg, given: BlockCfg) -> BlockCfg:
    """``given`` over ``default`` key by key, unless it is a module, None or another type."""
    if not isinstance(given, Mapping) or not isinstance(default, Mapping):
        return given
    if 'type' in given and _type_of(given) is not _type_of(default):
        return dict(given)
    return {**default, **given}


def compose_detr_blocks(
    owner: str,
    defaults: Mapping[str, BlockCfg],
    given: Mapping[str, BlockCfg],
    legacy: Mapping[str, Any],
    head_legacy: Mapping[str, tuple[str, ...]] = {},
) -> dict[str, BlockCfg]:
    """Resolve a unit decoder's ``memory`` / ``decoder`` / ``head``: its defaults, then the given
    blocks (partial dicts merge), then flat legacy arguments.

    Args:
        owner (str): Class name, for error messages.
        defaults (Mapping[str, dict]): The unit's default ``memory``, ``decoder`` and ``head``.
        given (Mapping[str, dict | nn.Module | None]): The constructor's arguments.
        legacy (Mapping[str, Any]): Flat keyword arguments (:data:`LEGACY_DETR_ARGS` and
            ``head_legacy`` names).
        head_legacy (Mapping[str, tuple[str, ...]]): The unit's own flat names -> key path
            inside ``head`` (e.g. ``dict(box_head=('box_head',))``).

    Returns:
        dict: ``memory``, ``decoder`` and ``head`` for :class:`DetrAssembly`.

    Raises:
        TypeError: On an unknown flat argument, or a flat argument for a block given as a module.
    """
    blocks = {name: _merge(defaults[name], given[name]) for name in ('memory', 'decoder', 'head')}
    paths = {**LEGACY_DETR_ARGS, **{k: ('head', *v) for k, v in head_legacy.items()}}
    for key, value in legacy.items():
        if key not in paths:
            raise TypeError(f'{owner}.__init__() got an unexpected keyword argument {key!r}')
        block, *inner = paths[key]
        current = blocks[block]
        if current is None and block == 'decoder':  # flat arguments revive a removed decoder
            base = defaults['decoder']
            current = dict(base) if isinstance(base, Mapping) else {}
        if not isinstance(current, Mapping):
            raise TypeError(f'{owner}: {key}={value!r} needs `{block}` as a config dict')
        cfg: dict[str, Any] = dict(current)
        node = cfg
        for part in inner[:-1]:
            node[part] = node = dict(node.get(part) or {})
        node[inner[-1]] = value
        blocks[block] = cfg
    return blocks


def rename_legacy_keys(
    state: Mapping[str, Any], rules: Sequence[tuple[str, str]], prefix: str = ''
) -> dict[str, Any]:
    """A copy of ``state`` whose keys ``prefix + old + rest`` read ``prefix + new + rest``.

    Args:
        state (Mapping[str, Any]): A state dict.
        rules (Sequence[tuple[str, str]]): ``(old, new)`` key prefixes (relative to ``prefix``);
            the first rule that matches a key applies.
        prefix (str): The module's prefix in ``state``.

    Returns:
        dict[str, Any]: The renamed copy (same order).
    """
    out = {}
    for key, value in state.items():
        for old, new in rules:
            if key.startswith(prefix + old):
                key = prefix + new + key[len(prefix + old) :]
                break
        out[key] = value
    return out


def _legacy_keys_hook(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: rename a checkpoint's legacy keys in place."""
    rules = getattr(type(module), 'legacy_keys', ())
    if not rules:
        return
    olds = tuple(prefix + old for old, _ in rules)
    stale = [k for k in state_dict if k.startswith(olds)]
    for key, new in zip(
        stale, rename_legacy_keys(dict.fromkeys(stale), rules, prefix), strict=True
    ):
        state_dict[new] = state_dict.pop(key)


def register_legacy_keys(module: nn.Module) -> None:
    """Let ``module`` load checkpoints with the keys of its earlier layout.

    ``type(module).legacy_keys`` lists ``(old, new)`` key prefixes; ``load_state_dict`` (torch's
    and MMEngine's ``load_checkpoint``) renames matching keys before loading.
    """
    module.register_load_state_dict_pre_hook(_legacy_keys_hook)


def zero_padded(x: Tensor, queries: UnitQueries) -> Tensor:
    """(B, Q, ...) values with the padded slots set to zero (``x * mask``)."""
    mask = queries.mask.reshape(*queries.mask.shape, *([1] * (x.dim() - 2)))
    return x * mask.to(x.dtype)
