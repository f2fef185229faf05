# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``PackSamImage``: hand the SAM-sized image to the SAM decoder through the data sample."""

from __future__ import annotations

from mmcv.transforms import BaseTransform

from mmrefvlm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackSamImage(BaseTransform):
    """Move ``inputs['images'][key]`` into the data sample as ``sam_image``.

    Put it after ``PackRefVLMInputs``, with ``PrepareImages(sizes=dict(..., sam=1024))`` earlier
    in the pipeline: the image is the same square-padded frame the other encoders see (padding
    colour: the CLIP mean, within 1.3 of SAM's pixel mean, i.e. ~0 after SAM's normalisation),
    resized to SAM's input side. ``RefVLM`` passes data samples to the decoders' ``loss`` and
    ``predict``; the SAM decoder reads ``sam_image`` there. Text-only samples get nothing.

    Args:
        key (str): Name of the SAM image in ``PrepareImages(sizes=...)``. Defaults to ``'sam'``.
    """

    def __init__(self, key: str = 'sam') -> None:
        self.key = key

    def transform(self, results: dict) -> dict:  # noqa: D102
        images = results['inputs'].get('images') or {}
        if self.key in images:
            image = images.pop(self.key)
            results['data_samples'].set_field(image, 'sam_image')
        return results
