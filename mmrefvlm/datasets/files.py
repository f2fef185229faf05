# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Record files: where a record's path may point, and safe header checks of images and depth maps.

Used by both the record validator (``records.validate_record``) and the data pipeline
(``LoadRecordImage``, ``LoadRecordDepth``), so the two cannot disagree:

* :func:`resolve_record_path` is the only place that turns a record's ``path`` into a file name.
  Paths are relative to the data root and must resolve inside it (symbolic links count as what
  they point to) unless ``allow_outside_data_root`` is set. The check runs before the file system
  is asked whether a file exists, and its message is the same for every path outside the root,
  so a record cannot probe for files outside it.
* :func:`open_image` / :func:`open_depth` read the header only, refuse more than ``max_pixels``
  pixels before anything is decoded (PIL's own decompression-bomb error included), and return an
  object to decode from.
"""

from __future__ import annotations

import os
import os.path as osp
import warnings
from typing import Any

import numpy as np

__all__ = [
    'DEFAULT_MAX_PIXELS',
    'RecordFileError',
    'resolve_record_path',
    'record_path_error',
    'open_image',
    'image_to_rgb8',
    'open_depth',
    'check_depth_spec',
    'check_depth_file',
    'image_size_error',
    'check_image_file',
]

#: Default pixel limit of images and depth maps (8192 x 8192), checked from the file header.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: Depth formats and their file extensions.
DEPTH_FORMATS = {'png16': '.png', 'npy': '.npy'}
#: 16-bit single-channel PIL modes (``I;16`` and its byte orders).
_MODES_16 = ('I;16', 'I;16L', 'I;16B', 'I;16N')


class RecordFileError(ValueError):
    """A record's file path is not allowed, or its file header is unusable."""


def _is_absolute(path: str) -> bool:
    return osp.isabs(path) or path.startswith(('/', '\\')) or (len(path) > 1 and path[1] == ':')


def _leaves_root(path: str) -> bool:
    norm = osp.normpath(path)
    return norm == os.pardir or norm.startswith(os.pardir + os.sep)


def _outside(what: str, path: str, root: str) -> RecordFileError:
    # One message for every path outside the root, whether or not something exists there.
    return RecordFileError(
        f'{what} {path!r} is outside the data root {root or "."!r}; record paths must resolve '
        'inside it (symbolic links count as their target; set allow_outside_data_root=True to '
        'allow this)'
    )


def _string_error(path: Any, allow_outside: bool, what: str, root: str) -> str | None:
    if not isinstance(path, str) or not path or '\0' in path:
        return f'{what} must be a non-empty string without NUL, got {path!r}'
    if allow_outside:
        return None
    if _is_absolute(path):
        return (
            f'{what} {path!r} is absolute; write it relative to the data root (or set '
            'allow_outside_data_root=True)'
        )
    if _leaves_root(path):  # decided from the string alone, before any file system access
        return str(_outside(what, path, root))
    return None


def resolve_record_path(
    path: Any, data_root: str | None, *, allow_outside: bool = False, what: str = 'path'
) -> str:
    """The file a record's ``path`` names, refused when it lies outside ``data_root``.

    Args:
        path (Any): The record's path string (relative to the data root).
        data_root (str, optional): The dataset root; None or ``''`` means the working directory.
        allow_outside (bool): Accept absolute paths and paths leaving the root (the dataset's
            ``allow_outside_data_root`` switch). Default False.
        what (str): Name used in messages (``'image.path'``...).

    Returns:
        str: The path to open (``data_root`` joined with ``path``).

    Raises:
        RecordFileError: Not a non-empty string, absolute, or resolving outside the root. The
            message never depends on whether anything exists outside the root.
    """
    root = data_root or ''
    err = _string_error(path, allow_outside, what, root)
    if err is not None:
        raise RecordFileError(err)
    if allow_outside and _is_absolute(path):
        return path
    full = osp.join(root, path)
    if not allow_outside:
        real_root = osp.realpath(root or os.curdir)
        if osp.commonpath([real_root, osp.realpath(full)]) != real_root:
            raise _outside(what, path, root)
    return full


def record_path_error(
    path: Any, data_root: str | None, *, allow_outside: bool = False, what: str = 'path'
) -> str | None:
    """The message of :func:`resolve_record_path`, or None if the path is allowed.

    Without ``data_root`` only the rules on the string itself apply (a non-empty relative path
    that does not leave the root with ``..``); links are then not followed.
    """
    if data_root is None:
        return _string_error(path, allow_outside, what, '<data root>')
    try:
        resolve_record_path(path, data_root, allow_outside=allow_outside, what=what)
    except RecordFileError as err:
        return str(err)
    return None


def _open_pil(path: str, max_pixels: int, what: str) -> Any:
    """Open an image lazily (header only) and refuse it above ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # our own limit replaces PIL's warning
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as err:
        raise RecordFileError(
            f'{what} {path!r} has more pixels than PIL decodes ({err}); max_pixels={max_pixels}; '
            'resize it offline'
        ) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise RecordFileError(
            f'{what} {path!r} cannot be decoded ({err.__class__.__name__}: {err})'
        ) from err
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise RecordFileError(
            f'{what} {path!r} is {w}x{h} = {w * h} pixels, more than max_pixels={max_pixels}; '
            'resize it offline or raise max_pixels'
        )
    return im


def open_image(path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = 'image') -> Any:
    """Open an image file, header only, refusing it above ``max_pixels`` before decoding.

    Args:
        path (str): The file.
        max_pixels (int): Pixel limit. Default :data:`DEFAULT_MAX_PIXELS`.
        what (str): Name used in messages.

    Returns:
        PIL.Image.Image: The lazily opened image (the caller closes it).

    Raises:
        RecordFileError: Unreadable header, too many pixels (also PIL's decompression-bomb
            limit), before any pixel is decoded.
    """
    return _open_pil(path, max_pixels, what)


def image_to_rgb8(im: Any) -> np.ndarray:
    """Decode an opened image to (H, W, 3) uint8 RGB, scaling 16-bit grey to 8 bits.

    ``Image.convert('RGB')`` clips 16-bit values to 255 (a white image); here a 16-bit grey value
    v becomes round(v / 257), the 8-bit value of the same brightness.

    Raises:
        RecordFileError: A 32-bit integer image with values outside 0..65535, or a float image
            (no defined brightness scale).
    """
    mode = im.mode
    if mode in _MODES_16 or mode == 'I':
        arr = np.asarray(im).astype(np.int64)
        if mode == 'I' and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise RecordFileError(
                f'a 32-bit integer image with values {arr.min()}..{arr.max()} has no 8-bit '
                'equivalent; convert it to 8-bit RGB offline'
            )
        grey = ((arr * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == 'F':
        raise RecordFileError('a floating-point image has no 8-bit equivalent; convert it offline')
    return np.asarray(im.convert('RGB'))


def open_depth(
    path: str, fmt: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = 'depth'
) -> Any:
    """Open a depth map header-first: a 16-bit PNG (``png16``) or a 2-D numeric ``.npy``.

    Args:
        path (str): The file.
        fmt (str): ``'png16'`` or ``'npy'``.
        max_pixels (int): Pixel limit, checked before decoding.
        what (str): Name used in messages.

    Returns:
        PIL.Image.Image | np.memmap: The lazily opened PNG (the caller closes it), or a
        read-only memory map of the array (no data read yet).

    Raises:
        RecordFileError: Unreadable, wrong kind (8-bit PNG, 3-D array...) or too large.
    """
    if fmt == 'png16':
        im = _open_pil(path, max_pixels, what)
        if im.format != 'PNG' or im.mode not in (*_MODES_16, 'I'):
            im.close()
            raise RecordFileError(
                f'{what} {path} is not a 16-bit PNG (format {im.format}, mode {im.mode})'
            )
        return im
    if fmt != 'npy':
        raise RecordFileError(f'unknown depth format {fmt!r} (expected "png16" or "npy")')
    try:
        shape, dtype = _npy_header(path)
    except (OSError, ValueError, SyntaxError) as err:
        raise RecordFileError(f'cannot read {what} {path}: {err}') from err
    if len(shape) != 2 or dtype.kind not in 'uif':
        raise RecordFileError(f'{what} {path} must hold a 2-D numeric array, got {dtype} {shape}')
    if shape[0] * shape[1] > max_pixels:
        raise RecordFileError(
            f'{what} {path!r} is {shape[1]}x{shape[0]} = {shape[0] * shape[1]} pixels, more than '
            f'max_pixels={max_pixels}; resize it offline or raise max_pixels'
        )
    try:
        return np.load(path, mmap_mode='r', allow_pickle=False)
    except (OSError, ValueError) as err:
        raise RecordFileError(f'cannot read {what} {path}: {err}') from err


def _npy_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without mapping or reading the data."""
    from numpy.lib import format as npy_format

    with open(path, 'rb') as f:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(f)
        else:
            shape, _, dtype = npy_format.read_array_header_2_0(f)
    return tuple(shape), dtype


def check_depth_file(
    path: str,
    fmt: str,
    width: int | None,
    height: int | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> str | None:
    """Header check of a depth map (see :func:`open_depth`) and of its size against the image's.

    Returns:
        str | None: The error message, or None.
    """
    if not osp.isfile(path):
        return f'file {path} not found'
    try:
        depth = open_depth(path, fmt, max_pixels=max_pixels)
    except RecordFileError as err:
        return str(err)
    if fmt == 'png16':
        (w, h) = depth.size
        depth.close()
    else:
        h, w = depth.shape
    if width is not None and height is not None and (w, h) != (width, height):
        return f'depth map is {w}x{h}, the image is {width}x{height}'
    return None


def check_depth_spec(depth: Any) -> list[tuple[str, str]]:
    """Problems of a record's ``depth`` object (format, scale, path string), as ``(field,
    message)``; the file itself is checked by :func:`check_depth_file`."""
    if not isinstance(depth, dict):
        return [('depth', 'must be an object {path, scale, format} or null')]
    out = []
    fmt, scale, path = depth.get('format'), depth.get('scale'), depth.get('path')
    if fmt not in DEPTH_FORMATS:
        out.append(('depth.format', f'must be "png16" or "npy", got {fmt!r}'))
    if (
        not isinstance(scale, (int, float))
        or isinstance(scale, bool)
        or not np.isfinite(scale)
        or scale <= 0
    ):
        out.append(
            ('depth.scale', f'must be a positive number (metres per stored unit), got {scale!r}')
        )
    err = _string_error(path, True, 'path', '')
    if err:
        out.append(('depth.path', err))
    elif fmt in DEPTH_FORMATS and not str(path).lower().endswith(DEPTH_FORMATS[fmt]):
        out.append(('depth.path', f'format {fmt} needs a {DEPTH_FORMATS[fmt]} file, got {path!r}'))
    return out


def image_size_error(path: str, size: tuple[int, int], width: Any, height: Any) -> str | None:
    """The message when an image's (w, h) differs from the record's ``width`` / ``height``."""
    if (width, height) != tuple(size):
        return f'image {path!r} is {size[0]}x{size[1]} but the record says {width}x{height}'
    return None


def check_image_file(
    path: str, width: Any, height: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> str | None:
    """Header check of an image file: exists, readable, at most ``max_pixels``, of the record's
    size. Nothing is decoded. Returns the message or None."""
    if not osp.isfile(path):
        return f'file {path} not found'
    try:
        im = open_image(path, max_pixels=max_pixels)
    except RecordFileError as err:
        return str(err)
    size = im.size
    im.close()
    return image_size_error(path, size, width, height)
