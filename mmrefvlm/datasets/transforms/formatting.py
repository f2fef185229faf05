# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Assemble per-unit targets and pack a sample into ``inputs`` + ``RefVLMDataSample``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement, InstanceData

from mmrefvlm.registry import TASK_UTILS, TRANSFORMS
from mmrefvlm.structures import RefVLMDataSample

from .targets import BaseUnitTarget, TargetError, record_error


@TRANSFORMS.register_module()
class BuildUnitTargets(BaseTransform):
    """Build ``gt_units`` (square frame, for losses) and ``gt_instances`` (original pixels, for
    metrics) from ``ref_targets``, one target builder per unit.

    Args:
        unit_targets (Mapping[str, dict | BaseUnitTarget]): Unit name -> target builder config
            (``TASK_UTILS``), e.g. ``dict(box=dict(type='BoxTarget'), mask=dict(type='MaskTarget',
            size=336))``. A record using a unit not configured here is an error.
        with_original (bool): Also build ``gt_instances`` in original pixels (val/test).
    """

    def __init__(
        self, unit_targets: Mapping[str, dict | BaseUnitTarget], with_original: bool = True
    ) -> None:
        self.builders: dict[str, BaseUnitTarget] = {
            unit: cfg if isinstance(cfg, BaseUnitTarget) else TASK_UTILS.build(cfg)
            for unit, cfg in unit_targets.items()
        }
        self.with_original = with_original

    def transform(self, results: dict) -> dict:  # noqa: D102
        refs = results.get('ref_targets') or []
        instances = results.get('instances') or []
        rid = results.get('id', '?')
        if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
            raise record_error(rid, 'instances', 'must be a list of objects')
        per_unit: dict[str, list] = {}
        for ref in refs:
            for unit in ref.units:
                if unit not in self.builders:
                    raise TargetError(
                        f'record {rid}: unknown unit {unit!r}; configured units: '
                        f'{sorted(self.builders)}'
                    )
                if ref.target is not None and (
                    not isinstance(ref.target, int) or isinstance(ref.target, bool)
                ):
                    raise record_error(
                        rid, 'answer', f'a target must be an instance index, got {ref.target!r}'
                    )
                if ref.target is not None and not 0 <= ref.target < len(instances):
                    raise TargetError(
                        f'record {rid}: target index {ref.target} out of range '
                        f'({len(instances)} instances)'
                    )
                per_unit.setdefault(unit, []).append(ref)
        gt_units = BaseDataElement()
        originals = []
        for unit, unit_refs in per_unit.items():
            insts = [None if r.target is None else instances[r.target] for r in unit_refs]
            fields = self.builders[unit].build(insts, results)
            fields['group_ids'] = torch.tensor([r.group_id for r in unit_refs], dtype=torch.long)
            fields['instance_ids'] = torch.tensor(
                [-1 if r.target is None else r.target for r in unit_refs], dtype=torch.long
            )
            gt_units.set_field(InstanceData(**fields), unit)
            if self.with_original:
                originals.append(
                    (unit, unit_refs, self.builders[unit].build_original(insts, results))
                )
        results['gt_units'] = gt_units
        if self.with_original:
            results['gt_instances'] = _merge_original(originals)
        return results


def _merge_original(originals: list) -> InstanceData:
    """One InstanceData over all (ref, unit) entries; geometry fields a unit lacks stay absent
    only if no unit has them, else they are filled with NaN / False placeholders."""
    out = InstanceData()
    if not originals:
        out.labels, out.units = [], []
        out.group_ids = torch.zeros(0, dtype=torch.long)
        return out
    labels, units, gids = [], [], []
    geo: dict[str, list] = {}
    n_total = sum(len(r) for _, r, _ in originals)
    offset = 0
    for unit, refs, fields in originals:
        labels += [r.phrase for r in refs]
        units += [unit] * len(refs)
        gids += [r.group_id for r in refs]
        for key, val in fields.items():
            geo.setdefault(key, []).append((offset, val))
        offset += len(refs)
    out.labels, out.units = labels, units
    out.group_ids = torch.tensor(gids, dtype=torch.long)
    for key, parts in geo.items():
        proto = parts[0][1]
        fill = (
            torch.zeros
            if proto.dtype == torch.bool
            else (lambda *s, dtype: torch.full(s, float('nan'), dtype=dtype))
        )
        full = fill(n_total, *proto.shape[1:], dtype=proto.dtype)
        for start, val in parts:
            full[start : start + len(val)] = val
        out.set_field(full, key)
    return out


@TRANSFORMS.register_module()
class PackRefVLMInputs(BaseTransform):
    """Emit ``dict(inputs=..., data_samples=RefVLMDataSample)``.

    ``inputs``: ``input_ids`` (L,) long, ``labels`` (L,) long, ``images`` {encoder: (3, s, s) uint8}
    (empty for text-only records), ``prompt_masks`` (P, M, M) bool.
    """

    META_KEYS = ('id', 'task', 'img_path', 'ori_shape', 'square_size', 'sample_idx', 'prompt_types')

    def transform(self, results: dict) -> dict:  # noqa: D102
        inputs = dict(
            input_ids=results['input_ids'],
            labels=results['labels'],
            images=results.get('images') or {},
            prompt_masks=results.get('prompt_masks', torch.zeros(0, 1, 1, dtype=torch.bool)),
        )
        meta = {k: results.get(k) for k in self.META_KEYS}
        meta['record_id'] = meta.pop('id')
        meta['has_image'] = bool(results.get('images'))
        sample = RefVLMDataSample(metainfo=meta)
        sample.gt_units = results.get('gt_units', BaseDataElement())
        if 'gt_instances' in results:
            sample.gt_instances = results['gt_instances']
        for key in ('label_refs', 'gt_answer', 'gt_text', 'gt_captions', 'gt_vqa_answers'):
            if results.get(key) is not None:
                sample.set_field(results[key], key)
        if results.get('gt_depth') is not None:
            sample.set_field(torch.from_numpy(results['gt_depth']), 'gt_depth')
        return dict(inputs=inputs, data_samples=sample)
