# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Demo samples whose referring input is not text: another image or a sound (AnyRef's image- and
audio-referring segmentation). Opt-in tasks (:data:`REFERENCE_TASKS`): the default dataset does
not write them; ``generate_demo_dataset(tasks=ALL_DEMO_TASKS)`` does.

* ``image_ref_seg``: an *exemplar image* (a new small scene holding an object of the same colour
  and shape as the target, plus at most one distractor) with the exemplar object's box; the model
  segments the matching object of the query image.
* ``audio_ref_seg``: a *sound* the target object "makes": two sine partials, the base frequency
  given by the shape and the second partial's ratio by the colour (so the 30 colour-shape pairs
  sound different), with per-sample jitter of pitch, phase, loudness, envelope and noise; 8 kHz,
  16-bit mono WAV.

Records carry a ``references`` list (``docs/data_format.md``); the user turn is literal text (a
plugin that consumes references renders its own prompt around them).
"""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
from PIL import Image

from ..records import REFERENCE_TASKS
from .scene import COLOURS, SHAPES, SIZES, DemoObject, _background, _place, shape_mask

#: Base frequency (Hz) of each shape's sound.
SHAPE_PITCH_HZ: dict[str, float] = dict(
    zip(SHAPES, (250.0, 350.0, 500.0, 700.0, 1000.0), strict=True)
)
#: Frequency ratio of the second partial for each colour.
COLOUR_PARTIAL_RATIO: dict[str, float] = dict(
    zip(COLOURS, (1.25, 1.5, 1.8, 2.2, 2.6, 3.0), strict=True)
)
AUDIO_SAMPLE_RATE = 8000
AUDIO_SECONDS = 0.5
_EXEMPLAR_SIDES = (32, 40, 48)

USER_TEXT = {
    'image_ref_seg': 'Segment the object in the image that matches the reference image.',
    'audio_ref_seg': 'Segment the object in the image that makes the reference sound.',
}


def object_sound(
    colour: str,
    shape: str,
    rng: np.random.Generator,
    *,
    sample_rate: int = AUDIO_SAMPLE_RATE,
    seconds: float = AUDIO_SECONDS,
) -> np.ndarray:
    """The sound of a (colour, shape) object, with per-call jitter.

    Args:
        colour (str): Key of :data:`COLOURS`.
        shape (str): One of :data:`SHAPES`.
        rng (np.random.Generator): Jitter source.
        sample_rate (int): Samples per second. Defaults to 8000.
        seconds (float): Duration. Defaults to 0.5.

    Returns:
        np.ndarray: (sample_rate * seconds,) int16 mono samples.
    """
    n = int(round(sample_rate * seconds))
    t = np.arange(n) / sample_rate
    base = SHAPE_PITCH_HZ[shape] * rng.uniform(0.98, 1.02)
    second = base * COLOUR_PARTIAL_RATIO[colour]
    wave_ = np.sin(2 * np.pi * base * t + rng.uniform(0, 2 * np.pi))
    wave_ += rng.uniform(0.5, 0.9) * np.sin(2 * np.pi * second * t + rng.uniform(0, 2 * np.pi))
    # 10-30 ms fade in/out at a random onset, the rest silence plus noise
    start = int(rng.uniform(0.0, 0.15) * n)
    stop = n - int(rng.uniform(0.0, 0.15) * n)
    fade = max(int(rng.uniform(0.01, 0.03) * sample_rate), 1)
    env = np.zeros(n)
    env[start:stop] = 1.0
    ramp = np.linspace(0.0, 1.0, fade)
    env[start : start + fade] *= ramp[: len(env[start : start + fade])]
    env[max(stop - fade, start) : stop] *= ramp[::-1][: stop - max(stop - fade, start)]
    signal = rng.uniform(0.3, 0.6) * env * wave_ / 1.9 + rng.normal(0, 0.01, n)
    return np.clip(np.rint(signal * 32767), -32768, 32767).astype(np.int16)


def wav_bytes(samples: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> bytes:
    """A 16-bit mono PCM WAV file holding ``samples`` (int16)."""
    buf = io.BytesIO()
    with wave.open(buf, 'wb') as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(np.ascontiguousarray(samples, dtype='<i2').tobytes())
    return buf.getvalue()


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """(samples float32 in [-1, 1], sample rate) of a 16-bit PCM WAV file (mono, or the mean of
    its channels)."""
    with wave.open(path, 'rb') as f:
        if f.getsampwidth() != 2:
            raise ValueError(
                f'{path}: only 16-bit PCM WAV is supported, got {8 * f.getsampwidth()}'
            )
        rate, channels = f.getframerate(), f.getnchannels()
        data = np.frombuffer(f.readframes(f.getnframes()), dtype='<i2').astype(np.float32)
    return data.reshape(-1, channels).mean(1) / 32768.0, rate


def exemplar_image(
    colour: str, shape: str, rng: np.random.Generator
) -> tuple[np.ndarray, list[float]]:
    """A new small scene with an object of ``colour`` and ``shape`` (random size and place), and
    at most one distractor of another colour-shape pair.

    Returns:
        tuple: (H, W, 3) uint8 image and the exemplar object's tight ``[x1, y1, x2, y2]`` box.
    """
    side = int(_EXEMPLAR_SIDES[int(rng.integers(len(_EXEMPLAR_SIDES)))])
    img = _background(rng, side, side)
    size = 'small' if rng.random() < 0.5 else 'large'
    extent = min(int(rng.integers(SIZES[size][0], SIZES[size][1] + 1)), side - 8)
    pos = _place(rng, side, side, extent, [])
    assert pos is not None  # an empty canvas of >= 32 px always fits one object of <= 24 px
    mask = shape_mask(shape, side, side, pos[0], pos[1], extent)
    img[mask] = np.asarray(COLOURS[colour], np.float32) + rng.integers(-12, 13, size=3)
    if rng.random() < 0.5:  # a distractor, when it fits
        others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) != (colour, shape)]
        oc, osh = others[int(rng.integers(len(others)))]
        ext = int(rng.integers(SIZES['small'][0], SIZES['small'][1] + 1))
        box = (pos[0], pos[1], pos[0] + extent, pos[1] + extent)
        where = _place(rng, side, side, ext, [box])
        if where is not None:
            dmask = shape_mask(osh, side, side, where[0], where[1], ext)
            img[dmask] = np.asarray(COLOURS[oc], np.float32) + rng.integers(-12, 13, size=3)
    ys, xs = np.nonzero(mask)
    box_ = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), box_


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file content of an (H, W, 3) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format='PNG', compress_level=6)
    return buf.getvalue()


def reference_sample(
    task: str,
    objs: list[DemoObject],
    rng: np.random.Generator,
    stem: str,
) -> tuple[list[dict], list[dict], dict[str, bytes]]:
    """Conversation, ``references`` and files of one ``image_ref_seg`` / ``audio_ref_seg`` sample.

    Args:
        task (str): One of :data:`REFERENCE_TASKS`.
        objs (list[DemoObject]): The query image's objects (the record's instances, in order).
        rng (np.random.Generator): The sample's generator.
        stem (str): File stem of the reference, relative to the data root (e.g.
            ``references/train/000012``); the extension is added here.

    Returns:
        tuple: conversation, references, ``{relative path: file bytes}`` to write.
    """
    target = int(rng.integers(len(objs)))
    obj = objs[target]
    answer: list[Any] = [
        {
            'phrase': f'the {obj.colour} {obj.shape}',
            'groups': [{'units': ['mask'], 'n': 1, 'targets': [target]}],
        },
        '.',
    ]
    conversation: list[dict] = [
        {'role': 'user', 'content': USER_TEXT[task]},
        {'role': 'assistant', 'answer': answer},
    ]
    if task == 'image_ref_seg':
        image, box = exemplar_image(obj.colour, obj.shape, rng)
        path = f'{stem}.png'
        ref = {
            'type': 'image',
            'path': path,
            'width': int(image.shape[1]),
            'height': int(image.shape[0]),
            'box': box,
            'instance': target,
        }
        return conversation, [ref], {path: png_bytes(image)}
    if task == 'audio_ref_seg':
        samples = object_sound(obj.colour, obj.shape, rng)
        path = f'{stem}.wav'
        ref = {
            'type': 'audio',
            'path': path,
            'sample_rate': AUDIO_SAMPLE_RATE,
            'num_samples': int(len(samples)),
            'instance': target,
        }
        return conversation, [ref], {path: wav_bytes(samples)}
    raise ValueError(f'unknown reference task {task!r}; expected one of {REFERENCE_TASKS}')
