# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Load the image and depth map of a record, failing loudly on missing or corrupt files."""

from __future__ import annotations

import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform

from mmrefvlm.datasets.files import (
    DEFAULT_MAX_PIXELS,
    RecordFileError,
    check_depth_spec,
    image_size_error,
    image_to_rgb8,
    open_depth,
    open_image,
    resolve_record_path,
)
from mmrefvlm.registry import TRANSFORMS

from .targets import record_error


class SampleLoadError(RuntimeError):
    """A sample's file (image, depth) is missing, corrupt or unusable.

    ``RefVLMDataset`` raises it by default, or, with ``skip_bad_samples=True``, counts and logs it
    and moves on to the next sample. A missing image never becomes a black image.
    """


def _file(results: dict, key: str) -> str:
    """The file of ``results[key]['path']``, through the one path rule of records
    (:func:`files.resolve_record_path`: inside the data root unless the dataset allows more)."""
    try:
        return resolve_record_path(
            results[key].get('path'),
            results.get('data_root'),
            allow_outside=bool(results.get('allow_outside_data_root', False)),
            what=f'{key}.path',
        )
    except RecordFileError as err:
        raise SampleLoadError(f'record {results.get("id", "?")}: {err}') from err


def read_rgb_image(
    path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> np.ndarray:
    """Decode an image file as RGB uint8, refusing missing, corrupt and oversized files.

    The header is checked first (:func:`files.open_image`: at most ``max_pixels``, PIL's
    decompression-bomb limit included), then the pixels are decoded (16-bit grey scaled to 8 bits,
    :func:`files.image_to_rgb8`).

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
        with open_image(path, max_pixels=max_pixels) as im:
            return image_to_rgb8(im)
    except RecordFileError as err:
        raise SampleLoadError(f'{who}{err}') from err
    except (OSError, ValueError, SyntaxError) as err:  # the pixel data, after the header
        raise SampleLoadError(
            f'{who}image {path!r} cannot be decoded ({err.__class__.__name__}: {err})'
        ) from err


@TRANSFORMS.register_module()
class LoadRecordImage(BaseTransform):
    """Read ``results['image']['path']`` (relative to ``results['data_root']``) as RGB uint8.

    Adds ``img`` ((H, W, 3) uint8, or None for text-only records), ``img_path``, ``ori_shape``.
    16-bit grey images are scaled to 8 bits (not clipped to white). The path must resolve inside
    the data root (:func:`files.resolve_record_path`). A record that already carries a decoded
    ``img`` ((H, W, 3) uint8, e.g. an image given to ``RefVLMInferencer`` as an array) is not read
    again; its ``image.path`` (optional) becomes ``img_path``.

    Args:
        max_pixels (int): Refuse images with more pixels than this (checked from the file header
            before decoding), so one huge file cannot exhaust memory. Default 8192 * 8192.
        check_size (bool): Require the decoded size to equal the record's ``width``/``height``.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS, check_size: bool = True) -> None:
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
        if not isinstance(image, dict):
            raise SampleLoadError(f'record {rid}: image must be an object {{path, width, height}}')
        path = _file(results, 'image')
        arr = read_rgb_image(path, max_pixels=self.max_pixels, name=f'record {rid}')
        h, w = arr.shape[:2]
        if self.check_size:
            msg = image_size_error(path, (w, h), image.get('width'), image.get('height'))
            if msg:
                raise SampleLoadError(f'record {rid}: {msg}')
        results.update(img=arr, img_path=path, ori_shape=(h, w))
        return results


@TRANSFORMS.register_module()
class LoadRecordDepth(BaseTransform):
    """Read ``results['depth']`` (png16 or npy, times ``scale``) as float32 metres in ``gt_depth``.

    Records without depth get ``gt_depth=None``. Zero (or non-finite) values are invalid pixels.
    The ``depth`` object is checked with the validator's rules (format, positive scale), and the
    file's header (size at most ``max_pixels``) before any pixel is read.

    Args:
        max_pixels (int): Refuse depth maps with more pixels than this. Default 8192 * 8192.
    """

    def __init__(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if max_pixels <= 0:
            raise ValueError(f'max_pixels must be positive, got {max_pixels}')
        self.max_pixels = max_pixels

    def _read(self, path: str, fmt: str, rid: str) -> np.ndarray:
        try:
            src = open_depth(path, fmt, max_pixels=self.max_pixels)
        except RecordFileError as err:
            raise SampleLoadError(f'record {rid}: {err}') from err
        try:
            if fmt == 'npy':
                return np.array(src, dtype=np.float32)  # one float32 copy of the memory map
            with src:
                return np.asarray(src).astype(np.float32)
        except (OSError, ValueError, SyntaxError) as err:
            raise SampleLoadError(f'record {rid}: depth {path!r} cannot be read ({err})') from err

    def transform(self, results: dict) -> dict:  # noqa: D102
        depth = results.get('depth')
        if not depth:
            results['gt_depth'] = None
            return results
        rid = results.get('id', '?')
        problems = check_depth_spec(depth)
        if problems:
            field, message = problems[0]
            raise record_error(rid, field, message)
        path = _file(results, 'depth')
        if not osp.isfile(path):
            raise SampleLoadError(f'record {rid}: depth file {path!r} does not exist')
        out = self._read(path, depth['format'], rid)
        out *= float(depth['scale'])  # in place: no second full-size array
        out[~np.isfinite(out)] = 0
        if results.get('ori_shape') is not None and out.shape[:2] != tuple(results['ori_shape']):
            raise SampleLoadError(
                f'record {rid}: depth {path!r} has shape {out.shape[:2]}, image '
                f'has {tuple(results["ori_shape"])}'
            )
        results['gt_depth'] = out
        return results
