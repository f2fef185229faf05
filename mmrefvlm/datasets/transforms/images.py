# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Pad the image to a square (right/bottom) and resize it once per vision encoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmrefvlm.registry import TRANSFORMS

#: OpenAI CLIP mean colour (0-255): the padding colour REF-VLM/LLaVA use.
CLIP_MEAN_RGB = (122, 116, 104)


def pad_to_square(img: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """Pad (H, W, 3) uint8 right/bottom to (S, S, 3), S = max(H, W), with colour ``fill``.

    Top-left placement keeps pixel coordinates unchanged: a normalised coordinate c in the square
    frame is ``c * S`` pixels in the original image.
    """
    h, w = img.shape[:2]
    s = max(h, w)
    return cv2.copyMakeBorder(
        img, 0, s - h, 0, s - w, cv2.BORDER_CONSTANT, value=tuple(int(v) for v in fill)
    )


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a square image to ``size`` (area interpolation down, bicubic up)."""
    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)


@TRANSFORMS.register_module()
class PrepareImages(BaseTransform):
    """Square-pad ``results['img']`` and resize it for each encoder.

    Adds ``images``: ``{encoder name: (3, size, size) uint8 tensor}`` and ``square_size`` (S).
    Text-only records (``img`` None) get ``images = {}`` (the data preprocessor fills zeros and
    marks them).

    Args:
        sizes (Mapping[str, int]): Input side per encoder, e.g. ``dict(vit=336, pyramid=512)``.
        pad_value (Sequence[int]): RGB fill of the padding (default: CLIP mean colour).
    """

    def __init__(self, sizes: Mapping[str, int], pad_value: Sequence[int] = CLIP_MEAN_RGB) -> None:
        if not sizes or any(int(s) <= 0 for s in sizes.values()):
            raise ValueError(f'sizes must map encoder names to positive sizes, got {sizes!r}')
        self.sizes = {k: int(v) for k, v in sizes.items()}
        self.pad_value = tuple(int(v) for v in pad_value)

    def transform(self, results: dict) -> dict:  # noqa: D102
        img = results.get('img')
        if img is None:
            results.update(images={}, square_size=None)
            return results
        square = pad_to_square(img, self.pad_value)
        cache: dict[int, torch.Tensor] = {}
        images = {}
        for name, size in self.sizes.items():
            if size not in cache:
                arr = resize_square(square, size)
                cache[size] = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
            images[name] = cache[size]
        results.update(images=images, square_size=square.shape[0])
        return results
