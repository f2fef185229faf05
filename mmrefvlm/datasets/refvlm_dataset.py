# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLMDataset``: JSONL records (docs/data_format.md) through the mmrefvlm pipeline."""

from __future__ import annotations

import json
import os.path as osp
from collections.abc import Callable, Sequence

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmrefvlm.registry import DATASETS

from .transforms.loading import SampleLoadError
from .transforms.targets import TargetError

#: Per-sample data problems: raised by default, counted and skipped with ``skip_bad_samples``.
DATA_ERRORS = (SampleLoadError, TargetError)


@DATASETS.register_module()
class RefVLMDataset(BaseDataset):
    """Records from one JSONL file, lazily initialised.

    Args:
        ann_file (str): JSONL file (relative to ``data_root`` unless absolute).
        data_root (str): Root for ``ann_file``, image and depth paths.
        pipeline (Sequence[dict | Callable]): Transforms (``mmrefvlm.datasets.transforms``).
        tasks (Sequence[str], optional): Keep only records of these tasks.
        skip_bad_samples (bool): On a missing/corrupt file or unusable target, log a warning, count
            it in ``num_skipped`` and use the next sample instead of raising. Default False: a data
            problem stops training with the record id and the reason.
        max_consecutive_skips (int): Give up (raise) after this many bad samples in a row, or
            once every sample of the dataset was tried (a dataset of N samples tries at most N
            distinct ones: a one-record dataset gives up after its one bad record).
        allow_outside_data_root (bool): Accept image and depth paths that are absolute or
            resolve outside ``data_root`` (symbolic links count as their target). Default False:
            such a record is refused (``SampleLoadError``), so a record cannot read arbitrary
            files.
        indices (int | Sequence[int], optional): Subset, as in MMEngine's ``BaseDataset``.
        test_mode (bool): Evaluation dataset (never skips silently: a bad sample raises).
        lazy_init (bool): Defer reading the JSONL until first use. Default True.
    """

    METAINFO = dict(dataset_type='refvlm')

    def __init__(
        self,
        ann_file: str,
        data_root: str = '',
        *,
        pipeline: Sequence[dict | Callable] = (),
        tasks: Sequence[str] | None = None,
        skip_bad_samples: bool = False,
        max_consecutive_skips: int = 50,
        allow_outside_data_root: bool = False,
        indices=None,
        test_mode: bool = False,
        lazy_init: bool = True,
        metainfo: dict | None = None,
    ) -> None:
        self.tasks = tuple(tasks) if tasks else None
        self.skip_bad_samples = skip_bad_samples
        if max_consecutive_skips < 0:
            raise ValueError(f'max_consecutive_skips must be >= 0, got {max_consecutive_skips}')
        self.max_consecutive_skips = max_consecutive_skips
        self.allow_outside_data_root = allow_outside_data_root
        self.num_skipped = 0
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            pipeline=list(pipeline),
            indices=indices,
            test_mode=test_mode,
            lazy_init=lazy_init,
            metainfo=metainfo,
            serialize_data=True,
        )

    def load_data_list(self) -> list[dict]:
        """Read the JSONL file; a malformed line is an error naming the file and line."""
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'annotation file {self.ann_file!r} does not exist')
        data_list = []
        with open(self.ann_file, 'rb') as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode('utf-8'))
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise ValueError(
                        f'{self.ann_file}:{lineno}: not a valid UTF-8 JSON record '
                        f'({err}); run tools/misc/validate_records.py'
                    ) from err
                if (
                    not isinstance(record, dict)
                    or 'task' not in record
                    or 'conversation' not in record
                ):
                    raise ValueError(
                        f'{self.ann_file}:{lineno}: a record needs `task` and '
                        '`conversation` (see docs/data_format.md)'
                    )
                if self.tasks and record['task'] not in self.tasks:
                    continue
                record['data_root'] = self.data_root
                record.setdefault('id', f'{osp.basename(self.ann_file)}:{lineno}')
                data_list.append(record)
        return data_list

    def prepare_data(self, idx: int):
        """The pipeline output of sample ``idx`` (``sample_idx`` is set for seeded templates)."""
        info = self.get_data_info(idx)
        info['sample_idx'] = idx
        info['allow_outside_data_root'] = self.allow_outside_data_root
        return self.pipeline(info)

    def __getitem__(self, idx: int) -> dict:
        self.full_init()  # no-op once initialised
        first_error, num = None, len(self)
        tries = min(self.max_consecutive_skips + 1, num)  # each index at most once
        for attempt in range(tries):
            cur = (idx + attempt) % num
            try:
                return self.prepare_data(cur)
            except DATA_ERRORS as err:
                if not self.skip_bad_samples or self.test_mode:
                    raise
                first_error = first_error or err
                self.num_skipped += 1
                print_log(
                    f'skipped bad sample {cur} ({self.num_skipped} skipped so far): {err}',
                    logger='current',
                    level=30,
                )
        every = ' (every sample of the dataset)' if tries == num else ''
        raise RuntimeError(
            f'{tries} consecutive bad samples from index {idx}{every}; first error: {first_error}'
        )
