# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Several referring expressions of one image in one sample (GSVA's multi-target prompts)."""

from __future__ import annotations

import copy
import json
import os.path as osp
from collections.abc import Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmrefvlm.datasets import RefVLMDataset
from mmrefvlm.registry import DATASETS, TRANSFORMS
from mmrefvlm.trp import phrase_text


def _expressions(record: dict) -> list[dict]:
    """The phrase groups of a single-turn referring record (one user turn with an ``expr`` slot,
    one structured assistant answer); [] for anything else."""
    turns = [t for t in record['conversation'] if t.get('role') != 'system']
    if len(turns) != 2 or record.get('visual_prompts'):
        return []
    answer = turns[1].get('answer')
    if isinstance(answer, str) or 'expr' not in (turns[0].get('slots') or {}):
        return []
    return [seg for seg in answer if isinstance(seg, dict) and seg.get('groups')]


def _remap(group_list: list[dict], offset: int) -> list[dict]:
    out = copy.deepcopy(group_list)
    for g in out:
        g['targets'] = [None if t is None else int(t) + offset for t in g.get('targets') or []]
    return out


@DATASETS.register_module()
class GroupedExpressionDataset(RefVLMDataset):
    """Records of one image from several JSONL files merged into multi-expression records.

    GSVA puts several expressions of one image into one prompt (``What are e1, e2, e3 in this
    image?``, answered ``Sure, e1:[SEG], e2:[REJ], e3:[SEG].``): it trains with up to 5 per
    sample and its public code evaluates all expressions of an image at once. This dataset reads
    single-expression records (the demo's, or converted RefCOCO / gRefCOCO ones: one user turn
    with an ``expr`` slot, one structured answer), groups them by image path, drops repeated
    expression texts, and writes one record per image (or per ``max_expressions`` chunk): the
    user turn references ``template`` with ``expr = 'e1, e2, e3'``, the answer lists the
    phrase groups in the same order (their targets re-indexed into the merged ``instances``).

    Args:
        ann_files (Sequence[str]): JSONL files, relative to ``data_root`` unless absolute.
        data_root (str): Root of the annotation, image and depth paths.
        task (str): ``task`` of the merged records. Defaults to ``'gres'``.
        template (str): Template set of their user turn (``expr`` slot). Defaults to ``'gres'``.
        max_expressions (int): Most expressions per record. Defaults to 5 (GSVA).
        **kwargs: :class:`RefVLMDataset` arguments (``pipeline``, ``test_mode``...).
    """

    def __init__(
        self,
        ann_files: Sequence[str],
        data_root: str = '',
        *,
        task: str = 'gres',
        template: str = 'gres',
        max_expressions: int = 5,
        **kwargs,
    ) -> None:
        if isinstance(ann_files, str) or not ann_files:
            raise ValueError(f'ann_files must be a non-empty list of files, got {ann_files!r}')
        if max_expressions < 1:
            raise ValueError(f'max_expressions must be >= 1, got {max_expressions}')
        self.ann_files = list(ann_files)
        self.group_task, self.template, self.max_expressions = task, template, max_expressions
        super().__init__(ann_file=self.ann_files[0], data_root=data_root, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Read every file, group by image, split into records of ``max_expressions``."""
        records: list[dict] = []
        for name in self.ann_files:
            self.ann_file = name if osp.isabs(name) else osp.join(self.data_root, name)
            records += super().load_data_list()
        by_image: dict[str, list[dict]] = {}
        for rec in records:
            if rec.get('image') and _expressions(rec):
                by_image.setdefault(rec['image']['path'], []).append(rec)
        return [out for recs in by_image.values() for out in self._merge(recs)]

    def _merge(self, recs: list[dict]) -> list[dict]:
        instances: list[dict] = []
        seen_instances: dict[str, int] = {}  # identical instance lists are shared, not repeated
        phrases: list[dict] = []
        texts: set[str] = set()
        for rec in recs:
            key = json.dumps(rec.get('instances') or [], sort_keys=True)
            if key not in seen_instances:
                seen_instances[key] = len(instances)
                instances += copy.deepcopy(rec.get('instances') or [])
            for pg in _expressions(rec):
                text = phrase_text(pg)
                if text not in texts:
                    texts.add(text)
                    phrases.append(
                        {'phrase': text, 'groups': _remap(pg['groups'], seen_instances[key])}
                    )
        first = recs[0]
        out = []
        for k in range(0, len(phrases), self.max_expressions):
            chunk = phrases[k : k + self.max_expressions]
            answer: list = []
            for i, pg in enumerate(chunk):
                answer += [', ', pg] if i else [pg]
            out.append(
                dict(
                    id=f'{first["id"]}-grouped{k // self.max_expressions}',
                    task=self.group_task,
                    image=first['image'],
                    instances=instances,
                    depth=None,
                    visual_prompts=[],
                    conversation=[
                        dict(
                            role='user',
                            template=self.template,
                            slots={'expr': ', '.join(pg['phrase'] for pg in chunk)},
                        ),
                        dict(role='assistant', answer=answer + ['.']),
                    ],
                    meta=dict(first.get('meta') or {}, grouped_ids=[r['id'] for r in recs]),
                    data_root=first['data_root'],
                )
            )
        return out


@TRANSFORMS.register_module()
class SampleExpressions(BaseTransform):
    """Keep a random subset of a grouped record's expressions, in random order (training).

    The number kept is uniform in ``[1, n]``; question and answer are rewritten consistently.
    The draw is a pure function of ``seed`` and the sample index (reproducible, resumable), so
    a record keeps its subset across epochs. Without shuffling, the demo's task order (rec, res,
    gres) would tell the model that only the last slot can be ``[REJ]``.

    Args:
        seed (int): Seed. Defaults to 0.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def transform(self, results: dict) -> dict:  # noqa: D102
        conv = copy.deepcopy(results['conversation'])
        user = next(t for t in conv if t.get('role') == 'user')
        assistant = next(t for t in conv if t.get('role') == 'assistant')
        phrases = [s for s in assistant['answer'] if isinstance(s, dict)]
        rng = np.random.default_rng([self.seed, int(results.get('sample_idx', 0)), 7])
        keep = int(rng.integers(1, len(phrases) + 1))
        chosen = [phrases[i] for i in rng.permutation(len(phrases))[:keep]]
        answer: list = []
        for i, pg in enumerate(chosen):
            answer += [', ', pg] if i else [pg]
        assistant['answer'] = answer + ['.']
        user['slots'] = dict(user.get('slots') or {}, expr=', '.join(pg['phrase'] for pg in chosen))
        results['conversation'] = conv
        return results
