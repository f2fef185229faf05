# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Convert an open_clip CLIP-ConvNeXt checkpoint into an HF ``ConvNextModel`` folder.

Example (the LAION CLIP-ConvNeXt-L used by REF-VLM, run at 512 px)::

    python tools/model_converters/open_clip_convnext_to_hf.py \\
        checkpoints/CLIP-ConvNext/open_clip_pytorch_model.bin checkpoints/clip_convnext_l_hf

then ``ConvNeXtPyramid(name_or_path='checkpoints/clip_convnext_l_hf')``. The input is loaded
weights-only (a pickle that needs code is refused); only ``visual.trunk.*`` is converted.
"""

from __future__ import annotations

import argparse
import sys

from mmrefvlm.utils import UnsafeCheckpointError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='open_clip checkpoint (.bin / .pt / .safetensors)')
    parser.add_argument('out_dir', help='output folder (config.json + model.safetensors)')
    parser.add_argument(
        '--prefix',
        default=None,
        help="trunk key prefix (default: detect 'visual.trunk.' or a bare timm ConvNeXt)",
    )
    parser.add_argument(
        '--image-size',
        type=int,
        default=512,
        help='image_size stored in the config (default 512, as REF-VLM)',
    )
    parser.add_argument(
        '--dtype',
        default=None,
        choices=['float32', 'float16', 'bfloat16'],
        help='cast the weights (default: keep the checkpoint dtype)',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; errors exit with a one-paragraph message (status 1)."""
    args = parse_args(argv)
    from mmrefvlm.models.vision.convert import convert_checkpoint

    try:
        convert_checkpoint(
            args.src, args.out_dir, prefix=args.prefix, image_size=args.image_size, dtype=args.dtype
        )
    except (ValueError, FileNotFoundError, UnsafeCheckpointError) as err:
        raise SystemExit(f'error: {err}') from err
    return 0


if __name__ == '__main__':
    sys.exit(main())
