# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""SAM4MLLM-PPG training labels with SAM in the loop (paper §4.1).

For every target instance of the training records: sample ``--groups`` point groups (2 points on
the mask, 1 off it inside the box), give SAM each group with the instance's box, keep the
``--top`` groups whose masks have the highest IoU with the ground truth and pick one of them at
random. Writes ``{record id: [[[x, y, label] x 3] per target instance]}`` (original pixels), the
``labels`` of ``SAM4MLLMConversation``; prints the mean IoU of the chosen groups next to that of a
random group (what labelling without SAM would give).

    python projects/sam4mllm/tools/make_ppg_labels.py \
        [--sam-config projects/sam4mllm/configs/sam4mllm_tiny_sam_demo.py] \
        [--checkpoint work_dirs/sam4mllm_tiny_sam_demo/iter_500.pth] \
        [--data-root data/demo] [--tasks rec res gres] [--out data/demo/sam4mllm_ppg_labels.json]
"""

from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sam-config', default='projects/sam4mllm/configs/sam4mllm_tiny_sam_demo.py')
    p.add_argument('--checkpoint', default='work_dirs/sam4mllm_tiny_sam_demo/iter_500.pth')
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--split', default='train')
    p.add_argument('--tasks', nargs='+', default=['rec', 'res', 'gres'])
    p.add_argument('--groups', type=int, default=64, help='random point groups per target')
    p.add_argument('--top', type=int, default=16, help='best groups kept, one is chosen')
    p.add_argument('--limit', type=int, default=None, help='records per task (debugging)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, help='default <data-root>/sam4mllm_ppg_labels.json')
    return p.parse_args(argv)


def label_record(sam, record, data_root, args, rng):
    """Chosen groups (pixels) of one record's targets, and (chosen IoU, random IoU) per target."""
    import numpy as np
    import torch
    from PIL import Image

    from mmrefvlm.datasets.geometry import decode_mask
    from mmrefvlm.datasets.transforms.images import CLIP_MEAN_RGB, pad_to_square, resize_square
    from mmrefvlm.trp import iter_groups
    from projects.sam4mllm.sam4mllm_seg import sample_points

    targets = [
        int(t)
        for _, _, _, g in iter_groups(record['conversation'][-1]['answer'])
        for t in g.get('targets') or []
    ]
    if not targets:
        return [], []
    h, w = record['image']['height'], record['image']['width']
    img = np.asarray(Image.open(osp.join(data_root, record['image']['path'])).convert('RGB'))
    square = pad_to_square(img, CLIP_MEAN_RGB)
    side, size = square.shape[0], sam.image_size
    image = torch.from_numpy(resize_square(square, size).transpose(2, 0, 1).copy())
    with torch.no_grad():
        emb = sam.encode(image[None])
    scale = size / side
    chosen, ious = [], []
    for t in targets:
        inst = record['instances'][t]
        mask = decode_mask(inst['mask'], h, w)
        groups = [sample_points(mask, inst['bbox'], 2, 1, rng) for _ in range(args.groups)]
        pts = [
            torch.tensor(g, dtype=torch.float32) * torch.tensor([scale, scale, 1]) for g in groups
        ]
        box = torch.tensor(inst['bbox'], dtype=torch.float32) * scale
        with torch.no_grad():
            logits = sam.decode(
                emb.expand(len(groups), -1, -1, -1), box.expand(len(groups), 4), pts
            )
        pred = torch.nn.functional.interpolate(logits[:, None], size=(side, side))[:, 0, :h, :w] > 0
        gt = torch.from_numpy(mask)
        iou = (pred & gt).flatten(1).sum(1) / (pred | gt).flatten(1).sum(1).clamp(min=1)
        best = torch.argsort(iou, descending=True, stable=True)[: args.top].tolist()
        pick = best[int(rng.integers(len(best)))]
        chosen.append([[round(x, 2), round(y, 2), int(lab)] for x, y, lab in groups[pick]])
        ious.append((float(iou[pick]), float(iou[0])))
    return chosen, ious


def main(argv=None) -> dict:
    args = parse_args(argv)
    import numpy as np
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmrefvlm.registry import MODELS

    init_default_scope('mmrefvlm')
    import projects.sam4mllm.sam4mllm_seg  # noqa: F401  (registers PromptableSam)

    cfg = Config.fromfile(args.sam_config)
    sam_cfg = dict(cfg.model.sam)
    sam_cfg.update(checkpoint=args.checkpoint, checkpoint_format='hf', checkpoint_prefix='sam.sam.')
    sam = MODELS.build(sam_cfg).eval()
    labels, stats = {}, []
    start = time.time()
    for task in args.tasks:
        path = osp.join(args.data_root, 'annotations', f'{args.split}_{task}.jsonl')
        with open(path, encoding='utf-8') as f:
            records = [json.loads(line) for line in f][: args.limit]
        for i, rec in enumerate(records):
            rng = np.random.default_rng([args.seed, len(task), i])
            chosen, ious = label_record(sam, rec, args.data_root, args, rng)
            if chosen:
                labels[rec['id']] = chosen
                stats += ious
    out = args.out or osp.join(args.data_root, 'sam4mllm_ppg_labels.json')
    with open(out, 'w', encoding='utf-8') as f:
        json.dump(labels, f, separators=(',', ':'))
    arr = np.asarray(stats).reshape(-1, 2)
    summary = dict(
        records=len(labels),
        targets=len(arr),
        chosen_iou=float(arr[:, 0].mean()) if len(arr) else float('nan'),
        random_iou=float(arr[:, 1].mean()) if len(arr) else float('nan'),
        seconds=round(time.time() - start, 1),
    )
    print(json.dumps(summary))  # noqa: T201 (CLI output)
    return summary


if __name__ == '__main__':
    main()
