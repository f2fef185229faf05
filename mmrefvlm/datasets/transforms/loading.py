# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Load the image and depth map of a record, failing loudly on missing or corrupt files."""

from __future__ import annotations

import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image, UnidentifiedImageError

from mmrefvlm.registry import TRANSFORMS


class SampleLoadError(RuntimeError):
    """A sample's file (image, depth) is missing, corrupt or unusable.

    ``RefVLMDataset`` raises it by default, or, with ``skip_bad_samples=True``, counts and logs it
    and moves on to the next sample. A missing image never becomes a black image.
    """


def _resolve(path: str, data_root: str | None) -> str:
    if osp.isabs(path) or not data_root:
        return path
    return osp.join(data_root, path)


def read_rgb_image(path: str, *, max_pixels: int = 8192 * 8192, name: str | None = None):
    """Decode an image file as RGB uint8, refusing missing, corrupt and oversized files.

    Args:
        path (str): Image file.
        max_pixels (int): Refuse images with more pixels than this (checked from the file header
            before decoding).
        name (str, optional): What to call the sample in error messages (default: the path).

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.

    Raises:
        SampleLoadError: The file is missing, cannot be decoded or is too large; the message names
            ``name`` and ``path``.
    """
    who = f'{name}: ' if name else ''
    if not osp.isfile(path):
        raise SampleLoadError(f'{who}image file {path!r} does not exist')
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise SampleLoadError(
                    f'{who}image {path!r} is {w}x{h} = {w * h} pixels, more than '
                    f'max_pixels={max_pixels}; resize it offline or raise max_pixels'
                )
            return np.asarray(im.convert('RGB'))
    except SampleLoadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise SampleLoadError(
            f'{who}image {path!r} cannot be decoded ({err.__class__.__name__}: {err})'
        ) from err


@TRANSFORMS.register_module()
class LoadRecordImage(BaseTransform):
    """Read ``results['image']['path']`` (relative to ``results['data_root']``) as RGB uint8.

    Adds ``img`` ((H, W, 3) uint8, or None for text-only records), ``img_path``, ``ori_shape``.
    A record that already carries a decoded ``img`` ((H, W, 3) uint8, e.g. an image given to
    ``RefVLMInferencer`` as an array) is not read again; its ``image.path`` (optional) becomes
    ``img_path``.

    Args:
        max_pixels (int): Refuse images with more pixels than this (checked from the file header
            before decoding), so one huge file cannot exhaust memory. Default 8192 * 8192.
        check_size (bool): Require the decoded size to equal the record's ``width``/``height``.
    """

    def __init__(self, max_pixels: int = 8192 * 8192, check_size: bool = True) -> None:
        if max_pixels <= 0:
            raise ValueError(f'max_pixels must be positive, got {max_pixels}')
        self.max_pixels = max_pixels
        self.check_size = check_size

    def transform(self, results: dict) -> dict:  # noqa: D102
        image = results.get('image')
        rid = results.get('id', '?')
        preloaded = results.get('img')
        if preloaded is not None:
            arr = np.asarray(preloaded)
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise SampleLoadError(
                    f'record {rid}: a decoded image must be (H, W, 3) uint8 RGB, got '
                    f'{arr.dtype} {arr.shape}'
                )
            path = (image or {}).get('path')
            results.update(img=arr, img_path=path, ori_shape=arr.shape[:2])
            return results
        if image is None:
            results.update(img=None, img_path=None, ori_shape=None)
            return results
        path = _resolve(image['path'], results.get('data_root'))
        arr = read_rgb_image(path, max_pixels=self.max_pixels, name=f'record {rid}')
        h, w = arr.shape[:2]
        if self.check_size and (image.get('width'), image.get('height')) != (w, h):
            raise SampleLoadError(
                f'record {rid}: image {path!r} is {w}x{h} but the record says '
                f'{image.get("width")}x{image.get("height")}'
            )
        results.update(img=arr, img_path=path, ori_shape=(h, w))
        return results


@TRANSFORMS.register_module()
class LoadRecordDepth(BaseTransform):
    """Read ``results['depth']`` (png16 or npy, times ``scale``) as float32 metres in ``gt_depth``.

    Records without depth get ``gt_depth=None``. Zero (or non-finite) values are invalid pixels.
    """

    def transform(self, results: dict) -> dict:  # noqa: D102
        depth = results.get('depth')
        if not depth:
            results['gt_depth'] = None
            return results
        path = _resolve(depth['path'], results.get('data_root'))
        rid = results.get('id', '?')
        if not osp.isfile(path):
            raise SampleLoadError(f'record {rid}: depth file {path!r} does not exist')
        fmt = depth.get('format') or ('npy' if path.endswith('.npy') else 'png16')
        try:
            if fmt == 'npy':
                raw = np.load(path, allow_pickle=False)
            else:
                with Image.open(path) as im:
                    raw = np.asarray(im)
        except (OSError, ValueError, UnidentifiedImageError) as err:
            raise SampleLoadError(f'record {rid}: depth {path!r} cannot be read ({err})') from err
        out = raw.astype(np.float32) * float(depth.get('scale', 1.0))
        out[~np.isfinite(out)] = 0
        if results.get('ori_shape') is not None and out.shape[:2] != tuple(results['ori_shape']):
            raise SampleLoadError(
                f'record {rid}: depth {path!r} has shape {out.shape[:2]}, image '
                f'has {tuple(results["ori_shape"])}'
            )
        results['gt_depth'] = out
        return results
