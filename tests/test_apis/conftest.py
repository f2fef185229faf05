# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Fixtures of the inference tests: one tiny demo-config inferencer (random weights) per run, its
checkpoint, and small test images."""

import os.path as osp

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'refvlm', 'demo_stage2.py')
#: A <REF> decoded by two units, and a second phrase (generated through ScriptedLM).
SCRIPTED = (
    '<Phrase>the red circle</Phrase>(<Unit>box,mask</Unit>[0]<REF>) '
    'is left of <Phrase>the blue square</Phrase>(<Unit>box</Unit>[0]<REF>).'
)


def make_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8: grey noise with a red disc and a blue square."""
    rng = np.random.RandomState(seed)
    img = rng.randint(90, 140, size=(h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - h / 2) ** 2 + (xx - w / 4) ** 2 < (min(h, w) / 6) ** 2] = (220, 30, 30)
    img[h // 3 : h // 3 + h // 4, 2 * w // 3 : 2 * w // 3 + h // 4] = (30, 30, 220)
    return img


@pytest.fixture(scope='session')
def tiny_inferencer():
    from mmrefvlm.apis import RefVLMInferencer

    torch.manual_seed(0)
    return RefVLMInferencer(DEMO_CONFIG, device='cpu', max_new_tokens=64)


@pytest.fixture(scope='session')
def tiny_checkpoint(tiny_inferencer, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    torch.save({'state_dict': tiny_inferencer.model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='session')
def image_files(tmp_path_factory):
    """Two PNGs of different sizes in one folder: ``a.png`` (40x56), ``b.png`` (64x48)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp('images')
    paths = []
    for name, (h, w) in (('a', (40, 56)), ('b', (64, 48))):
        path = folder / f'{name}.png'
        Image.fromarray(make_image(h, w, seed=len(paths))).save(path)
        paths.append(str(path))
    return paths
