# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Ask a trained RefVLM about images: ``python tools/infer.py CONFIG CHECKPOINT --image
PATH|DIR|GLOB --question TEXT [--box X1 Y1 X2 Y2] [--point X Y] [--mask PNG] [--task TASK]
[--batch-size N] [--device D] --out-dir DIR``.

Writes ``DIR/<image stem>.json`` (``text``, ``answer``, ``instances``, ``warnings``; depth maps as
``<stem>_depth<i>.png``) and ``DIR/<image stem>.png`` (the overlay, phrases colour-coded like the
answer text under it). A bad image (missing, unreadable, prompt outside it...) is reported with its
name and the others still run; the exit status is then 1. See docs/inference.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.gif')


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description='Answer a question about images with a RefVLM')
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint (.pth or .safetensors, loaded weights-only)')
    p.add_argument('--image', required=True, nargs='+', help='image file(s), folder(s) or globs')
    p.add_argument('--question', required=True, help='the question; <region> marks the prompt')
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument('--box', nargs=4, type=float, metavar=('X1', 'Y1', 'X2', 'Y2'))
    prompt.add_argument('--point', nargs=2, type=float, metavar=('X', 'Y'))
    prompt.add_argument('--mask', metavar='PNG', help='binary mask image (non-zero = region)')
    p.add_argument('--task', help="task of the system command (default: 'ig_box' with a visual "
                   "prompt, 'rec' without)")  # fmt: skip
    p.add_argument('--batch-size', type=int, default=1, help='images generated together')
    p.add_argument('--device', help='cpu, cuda, cuda:1... (default: cuda when available)')
    p.add_argument('--max-new-tokens', type=int, help="generation budget (default: config's)")
    p.add_argument('--out-dir', required=True, help='where the JSON and PNG files go')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def expand_images(specs: list[str]) -> tuple[list[str], list[str]]:
    """Files, folders (their images, sorted) and globs -> (image paths, specs that matched
    nothing). A path that does not exist is kept, so that it is reported as a missing image."""
    images, unmatched = [], []
    for spec in specs:
        if osp.isdir(spec):
            found = sorted(
                osp.join(spec, f) for f in os.listdir(spec) if f.lower().endswith(IMAGE_EXTS)
            )
        elif glob.has_magic(spec):
            found = sorted(f for f in glob.glob(spec) if osp.isfile(f))
        else:
            found = [spec]
        if not found:
            unmatched.append(spec)
        images += found
    return images, unmatched


def visual_prompt(args: argparse.Namespace) -> dict | None:
    """``--box`` / ``--point`` / ``--mask`` as a prompt dict (the same for every image)."""
    if args.box:
        return {'type': 'box', 'box': list(args.box)}
    if args.point:
        return {'type': 'point', 'point': list(args.point)}
    if args.mask:
        import numpy as np
        from PIL import Image

        if not osp.isfile(args.mask):
            raise SystemExit(f'--mask {args.mask!r} does not exist')
        with Image.open(args.mask) as im:
            return {'type': 'mask', 'mask': np.asarray(im.convert('L')) > 0}
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.logging import print_log
    from tqdm import tqdm

    from mmrefvlm.apis import RefVLMInferencer
    from mmrefvlm.apis.inference_results import save_result, unique_stem

    images, unmatched = expand_images(args.image)
    for spec in unmatched:
        print(f'error: {spec}: no image matches', file=sys.stderr)  # noqa: T201 (CLI output)
    if not images:
        raise SystemExit('no images to run on')
    infer = RefVLMInferencer(
        args.config,
        args.checkpoint,
        args.device,
        cfg_options=args.cfg_options,
        max_new_tokens=args.max_new_tokens,
    )
    prompt = visual_prompt(args)
    failed = 0
    step = args.batch_size
    bar = tqdm(total=len(images), desc='infer', unit='img', dynamic_ncols=True)
    stems: set[str] = set()
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        results = infer(
            chunk,
            args.question,
            visual_prompts=[[prompt] if prompt else [] for _ in chunk],
            task=args.task,
            batch_size=step,
            return_vis=True,
            on_error='skip',
        )
        for path, result in zip(chunk, results, strict=True):
            if 'error' in result:
                failed += 1
                tqdm.write(f'error: {result["error"]}', file=sys.stderr)
                continue
            save_result(result, None, args.out_dir, unique_stem(path, stems))
            bar.set_postfix_str(osp.basename(path))
        bar.update(len(chunk))
    bar.close()
    print_log(
        f'{len(images) - failed} of {len(images)} images answered; results in {args.out_dir}',
        'current',
    )
    return 1 if failed or unmatched else 0


if __name__ == '__main__':
    sys.exit(main())
