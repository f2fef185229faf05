# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Random scenes of the embedded demo dataset: coloured shapes on a plain background, with depth.

Everything here is a pure function of a ``numpy.random.Generator``: the same generator state
gives the same pixels, masks, keypoints and depth values.

Geometry conventions (the ones of ``docs/data_format.md``): pixel ``(row y, col x)`` covers
``[x, x + 1) x [y, y + 1)``; a box is ``[x1, y1, x2, y2]`` with ``x2 = last column + 1``; a point
on a pixel is its centre ``(x + 0.5, y + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

#: Colour name -> nominal RGB. Six hues far apart, all saturated (the background is grey-ish).
COLOURS: dict[str, tuple[int, int, int]] = {
    'red': (220, 30, 30),
    'green': (30, 170, 40),
    'blue': (35, 70, 225),
    'yellow': (235, 215, 25),
    'magenta': (205, 40, 205),
    'cyan': (25, 205, 215),
}
#: Shape names; also the instance categories (``instances[i].category``).
SHAPES: tuple[str, ...] = ('circle', 'square', 'triangle', 'diamond', 'cross')
PLURALS: dict[str, str] = {
    'circle': 'circles',
    'square': 'squares',
    'triangle': 'triangles',
    'diamond': 'diamonds',
    'cross': 'crosses',
}
#: Size name -> inclusive range of the object's extent in pixels (bbox width and height).
SIZES: dict[str, tuple[int, int]] = {'small': (11, 14), 'large': (20, 25)}
#: Depth range in millimetres per size: large objects are nearer (a monocular size cue).
OBJECT_DEPTH_MM: dict[str, tuple[int, int]] = {'large': (1000, 1600), 'small': (1900, 2500)}
#: Background plane depth in millimetres at the top and the bottom image row.
BACKGROUND_DEPTH_MM: tuple[int, int] = (6000, 3000)
KEYPOINT_NAMES: tuple[str, ...] = ('centre', 'top', 'right', 'bottom', 'left')
DEPTH_SCALE = 0.001  # stored uint16 value * scale = metres
_GAP = 3  # minimum free pixels between two object boxes and between a box and the border
_COLOUR_JITTER = 12


@dataclass(frozen=True)
class DemoObject:
    """One object of a demo scene.

    Attributes:
        colour (str): Key of :data:`COLOURS`.
        shape (str): One of :data:`SHAPES`.
        size (str): ``'small'`` or ``'large'``.
        mask (np.ndarray): (H, W) bool, the painted pixels.
        bbox (tuple[float, ...]): ``(x1, y1, x2, y2)`` tight box of the mask, pixel edges.
        keypoints (tuple[float, ...]): 15 values, ``x, y, v`` for :data:`KEYPOINT_NAMES`.
        depth_mm (int): Constant depth of the object in millimetres.
    """

    colour: str
    shape: str
    size: str
    mask: np.ndarray
    bbox: tuple[float, float, float, float]
    keypoints: tuple[float, ...]
    depth_mm: int

    @property
    def centre(self) -> tuple[float, float]:
        """Centre ``(x, y)`` of the box."""
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass(frozen=True)
class DemoScene:
    """A rendered scene.

    Attributes:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        depth_mm (np.ndarray): (H, W) uint16 depth in millimetres (never 0).
        objects (list[DemoObject]): 1-4 objects, non-overlapping, unique (colour, shape) pairs.
    """

    image: np.ndarray
    depth_mm: np.ndarray
    objects: list[DemoObject]

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.image.shape[1])


def shape_mask(shape: str, height: int, width: int, x0: int, y0: int, extent: int) -> np.ndarray:
    """Rasterise one shape whose bounding square is ``[x0, x0 + extent) x [y0, y0 + extent)``.

    Args:
        shape (str): One of :data:`SHAPES`.
        height (int): Canvas height.
        width (int): Canvas width.
        x0 (int): Left column of the bounding square.
        y0 (int): Top row of the bounding square.
        extent (int): Side of the bounding square in pixels (>= 5).

    Returns:
        np.ndarray: (height, width) bool mask (no anti-aliasing).
    """
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1 = x0 + extent - 1, y0 + extent - 1  # PIL coordinates are inclusive pixel indices
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == 'circle':
        draw.ellipse([x0, y0, x1, y1], fill=1)
    elif shape == 'square':
        draw.rectangle([x0, y0, x1, y1], fill=1)
    elif shape == 'triangle':
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=1)
    elif shape == 'diamond':
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=1)
    elif shape == 'cross':
        arm = max(extent // 3, 2)
        a0 = x0 + (extent - arm) // 2
        b0 = y0 + (extent - arm) // 2
        draw.rectangle([a0, y0, a0 + arm - 1, y1], fill=1)
        draw.rectangle([x0, b0, x1, b0 + arm - 1], fill=1)
    else:
        raise ValueError(f'unknown shape {shape!r}; expected one of {SHAPES}')
    return np.asarray(canvas, dtype=np.uint8) > 0


def mask_geometry(
    mask: np.ndarray,
) -> tuple[tuple[float, float, float, float], tuple[float, ...]]:
    """Tight box and the five extreme/centre keypoints of a mask.

    The centre keypoint is the centroid of the pixel centres; ``top`` / ``bottom`` lie on the
    box's top / bottom edge at the middle of the first / last row's pixels, ``left`` / ``right``
    on the left / right edge at the middle of the first / last column's pixels, so the four
    extreme keypoints span exactly the box.

    Args:
        mask (np.ndarray): (H, W) bool, non-empty.

    Returns:
        tuple: ``(bbox, keypoints)``; bbox ``(x1, y1, x2, y2)`` floats, keypoints 15 floats.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError('mask is empty')
    x1, x2 = int(xs.min()), int(xs.max()) + 1
    y1, y2 = int(ys.min()), int(ys.max()) + 1

    def mid(values: np.ndarray) -> float:
        return (float(values.min()) + float(values.max()) + 1) / 2

    centre = (round(float(xs.mean()) + 0.5, 2), round(float(ys.mean()) + 0.5, 2))
    top = (mid(xs[ys == y1]), float(y1))
    right = (float(x2), mid(ys[xs == x2 - 1]))
    bottom = (mid(xs[ys == y2 - 1]), float(y2))
    left = (float(x1), mid(ys[xs == x1]))
    kpts: list[float] = []
    for x, y in (centre, top, right, bottom, left):
        kpts.extend((x, y, 2.0))
    return (float(x1), float(y1), float(x2), float(y2)), tuple(kpts)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 grey-ish background, plain or with mild noise / stripes."""
    level = rng.uniform(80, 165)
    tint = rng.uniform(-10, 10, size=3)
    img = np.broadcast_to(level + tint, (height, width, 3)).astype(np.float32)
    style = rng.integers(3)
    if style == 1:  # mild noise
        img = img + rng.normal(0, 4, size=(height, width, 1)).astype(np.float32)
    elif style == 2:  # faint stripes
        period = rng.uniform(6, 16)
        phase = rng.uniform(0, 2 * np.pi)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        proj = xx * np.cos(ang) + yy * np.sin(ang)
        img = img + (6 * np.sin(2 * np.pi * proj / period + phase))[..., None].astype(np.float32)
    return img


def _place(
    rng: np.random.Generator,
    height: int,
    width: int,
    extent: int,
    boxes: list[tuple[int, int, int, int]],
    tries: int = 50,
) -> tuple[int, int] | None:
    """Random top-left corner for an ``extent`` square clear of ``boxes``; None if none found."""
    hi_x, hi_y = width - _GAP - extent, height - _GAP - extent
    if hi_x < _GAP or hi_y < _GAP:
        return None
    for _ in range(tries):
        x0 = int(rng.integers(_GAP, hi_x + 1))
        y0 = int(rng.integers(_GAP, hi_y + 1))
        if all(
            x0 >= bx2 + _GAP
            or x0 + extent + _GAP <= bx1
            or y0 >= by2 + _GAP
            or y0 + extent + _GAP <= by1
            for bx1, by1, bx2, by2 in boxes
        ):
            return x0, y0
    return None


def sample_scene(
    rng: np.random.Generator, width: int, height: int, max_objects: int = 4
) -> DemoScene:
    """Draw one random scene.

    Steps: 1. background; 2. pick 1..max_objects distinct (colour, shape) pairs and a size each;
    3. place each object where its box stays ``_GAP`` pixels away from the others and the border
    (a large object that does not fit after a few tries becomes small, a small one is dropped;
    the first object always fits in 32 px);
    4. paint, and build the depth map (background plane + constant object depth).

    Args:
        rng (np.random.Generator): Source of randomness.
        width (int): Image width (>= 32).
        height (int): Image height (>= 32).
        max_objects (int): Maximum number of objects. Default 4.

    Returns:
        DemoScene: The scene.
    """
    if width < 32 or height < 32:
        raise ValueError(f'demo images must be at least 32x32, got {width}x{height}')
    img = _background(rng, height, width)
    num = int(rng.integers(1, max_objects + 1))
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    chosen = rng.choice(len(pairs), size=num, replace=False)
    boxes: list[tuple[int, int, int, int]] = []
    objects: list[DemoObject] = []
    depth = _background_depth(height, width)
    for k in chosen:
        colour, shape = pairs[int(k)]
        size = 'small' if rng.random() < 0.5 else 'large'
        extent = int(rng.integers(SIZES[size][0], SIZES[size][1] + 1))
        pos = _place(rng, height, width, extent, boxes)
        if pos is None and size == 'large':  # no room: fall back to the smallest small size
            size, extent = 'small', SIZES['small'][0]
            pos = _place(rng, height, width, extent, boxes)
        if pos is None:
            continue
        mask = shape_mask(shape, height, width, pos[0], pos[1], extent)
        bbox, kpts = mask_geometry(mask)
        boxes.append((pos[0], pos[1], pos[0] + extent, pos[1] + extent))
        rgb = np.asarray(COLOURS[colour], np.float32) + rng.integers(
            -_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3
        )
        img[mask] = rgb
        depth_mm = int(rng.integers(OBJECT_DEPTH_MM[size][0], OBJECT_DEPTH_MM[size][1] + 1))
        depth[mask] = depth_mm
        objects.append(DemoObject(colour, shape, size, mask, bbox, kpts, depth_mm))
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return DemoScene(image=image, depth_mm=depth, objects=objects)


def _background_depth(height: int, width: int) -> np.ndarray:
    """(H, W) uint16 plane: :data:`BACKGROUND_DEPTH_MM` from the top row to the bottom row."""
    top, bottom = BACKGROUND_DEPTH_MM
    rows = np.rint(np.linspace(top, bottom, height)).astype(np.uint16)
    return np.repeat(rows[:, None], width, axis=1)
