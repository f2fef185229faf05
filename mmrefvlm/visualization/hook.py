# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLMVisualizationHook``: PNG overlays of predictions next to ground truth
(``--show-dir``)."""

from __future__ import annotations

import logging
import os
import os.path as osp

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import print_log
from PIL import Image

from mmrefvlm.registry import HOOKS

from .draw import depth_to_rgb, draw_instances, draw_panels, side_by_side
from .drawers import plan_drawing


@HOOKS.register_module()
class RefVLMVisualizationHook(Hook):
    """During ``test``/``val``, write ``<out_dir>/<record_id>.png`` for up to ``max_images``
    samples: ground truth | prediction (| GT depth | predicted depth maps when present), titled
    with the text. Every unit is drawn by its drawer in ``UNIT_DRAWERS``; a field without one is
    marked "not drawn" on the image and logged once.

    Args:
        out_dir (str): Output folder (created).
        max_images (int): Stop after this many images. Default 50.
        max_per_task (int): At most this many images of one task (so a mixed test set shows every
            task). Default 4.
        scale (int): Upscale factor of small images. Default 4.
    """

    priority = 'LOW'

    def __init__(
        self, out_dir: str, max_images: int = 50, max_per_task: int = 4, scale: int = 4
    ) -> None:
        self.out_dir = out_dir
        self.max_images = max_images
        self.max_per_task = max_per_task
        self.scale = scale
        self._count = 0
        self._per_task: dict[str, int] = {}
        self._warned: set[str] = set()

    def _one(self, sample) -> None:
        path = sample.metainfo.get('img_path')
        if not path or not osp.isfile(path):
            return
        img = np.asarray(Image.open(path).convert('RGB'))
        gt = sample.get('gt_instances')
        pred = sample.get('pred_instances')
        panels = [
            draw_instances(img, gt if gt is not None else {}, self.scale),
            draw_instances(img, pred if pred is not None else {}, self.scale),
        ]
        titles = [
            'GT: ' + str(sample.get('gt_text', ''))[:38],
            'pred: ' + str(sample.get('pred_text', ''))[:36],
        ]
        if sample.get('gt_depth') is not None:
            panels.append(depth_to_rgb(sample.gt_depth.detach().cpu().numpy()))
            titles.append('GT depth')
        for title, panel in draw_panels(pred, 'pred '):
            panels.append(panel)
            titles.append(title)
        self._warn_undrawn(gt, pred)
        rid = str(sample.metainfo.get('record_id', self._count)).replace('/', '_')
        Image.fromarray(side_by_side(panels, titles)).save(osp.join(self.out_dir, f'{rid}.png'))
        self._count += 1

    def _warn_undrawn(self, *insts) -> None:
        for inst in insts:
            if inst is None:
                continue
            for name, units in plan_drawing(inst).undrawn.items():
                if name not in self._warned:
                    self._warned.add(name)
                    print_log(
                        f'{type(self).__name__}: no drawer for field {name!r} (units {units}); '
                        'register a UnitDrawer in mmrefvlm.registry.UNIT_DRAWERS to draw it',
                        logger='current',
                        level=logging.WARNING,
                    )

    def _after_iter(
        self, runner, batch_idx: int, data_batch=None, outputs=None, mode: str = 'train'
    ) -> None:
        if mode == 'train' or not outputs or self._count >= self.max_images:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        for sample in outputs:
            if self._count >= self.max_images:
                break
            task = str(sample.metainfo.get('task'))
            if self._per_task.get(task, 0) >= self.max_per_task:
                continue
            self._per_task[task] = self._per_task.get(task, 0) + 1
            self._one(sample)
