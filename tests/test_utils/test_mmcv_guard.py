# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
import importlib

import pytest
import torch

import mmrefvlm  # noqa: F401  (installs the guard)
from mmrefvlm.utils import MMCVOpsUnavailableError, install_mmcv_ops_guard, mmcv_ops_guard_installed


def test_guard_installed_once_and_idempotent():
    assert mmcv_ops_guard_installed()
    import sys

    before = sys.modules['mmcv._ext']
    assert install_mmcv_ops_guard() is True
    assert sys.modules['mmcv._ext'] is before


@pytest.mark.parametrize(
    'module',
    [
        'mmdet.structures.bbox',
        'mmdet.structures.mask',
        'mmdet.evaluation',
        'mmdet.models',
        'mmdet.models.task_modules',
        'mmdet.models.losses',
        'mmdet.models.layers',
        'mmdet.datasets',
    ],
)
def test_mmdet_pure_python_parts_import(module):
    importlib.import_module(module)


def test_compiled_op_raises_clear_error():
    from mmcv.ops import nms

    with pytest.raises(MMCVOpsUnavailableError, match='nms'):
        nms(torch.rand(3, 4), torch.rand(3), 0.5)


def test_mmdet_pure_components_work():
    from mmdet.models.losses import DiceLoss, GIoULoss
    from mmdet.structures.bbox import bbox_overlaps

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    iou = bbox_overlaps(boxes, boxes)
    assert torch.allclose(iou[0, 1], torch.tensor(25.0 / 175.0))
    loss = GIoULoss(reduction='none')(boxes, boxes)
    assert torch.allclose(loss, torch.zeros(2), atol=1e-6)
    pred = torch.full((1, 4, 4), 10.0)
    assert DiceLoss(use_sigmoid=True)(pred, torch.ones(1, 4, 4)) < 1e-3
