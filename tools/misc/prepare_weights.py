# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Fetch and convert the paper's pretrained weights into the folders the configs read.

Examples::

    python tools/misc/prepare_weights.py                      # stage 1 + 2: Vicuna, CLIP, ConvNeXt
    python tools/misc/prepare_weights.py --stage stage3_sam   # adds SAM ViT-L
    python tools/misc/prepare_weights.py --only clip-convnext-large --root /data/ckpts

Online, each checkpoint comes through ``huggingface_hub`` (SAM from its URL) and the open_clip
ConvNeXt is converted to an HF ``ConvNextModel`` folder. Offline (``--offline``, or
``HF_HUB_OFFLINE=1``) nothing is downloaded: it prints, for every missing asset, what to place
where, and still runs the conversion when the raw download is already in place. The table of
assets is :mod:`mmrefvlm.utils.paper_assets`; docs/prepare.md explains each step.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import sys
import urllib.request

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmrefvlm.utils.paper_assets import PAPER_WEIGHTS, WeightAsset  # noqa: E402
from mmrefvlm.utils.preflight import has_hf_weights, hub_offline  # noqa: E402

STAGES = ('stage1', 'stage2', 'stage3', 'stage3_sam')
_RAW_NAMES = ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', default='checkpoints', help='checkpoint root of the configs')
    p.add_argument(
        '--stage', default='stage2', choices=STAGES, help='fetch what this stage needs (stage2)'
    )
    p.add_argument(
        '--only',
        nargs='+',
        choices=[a.name for a in PAPER_WEIGHTS],
        help='these assets only (overrides --stage)',
    )
    p.add_argument('--offline', action='store_true', help='never download (also HF_HUB_OFFLINE=1)')
    return p.parse_args(argv)


def select(stage: str, only: list[str] | None) -> list[WeightAsset]:
    """The assets named by ``--only``, else those a stage needs (stage3 needs stage 2's)."""
    if only:
        return [a for a in PAPER_WEIGHTS if a.name in only]
    need = {'stage3', 'stage3_sam'} if stage == 'stage3_sam' else {stage}
    return [a for a in PAPER_WEIGHTS if need & set(a.stages)]


def is_ready(path: str) -> bool:
    """A checkpoint file, or an HF folder with ``config.json`` and weights that
    ``from_pretrained`` reads (the preflight check of tools/train.py asks the same)."""
    if osp.isfile(path):
        return True
    return osp.isfile(osp.join(path, 'config.json')) and has_hf_weights(path)


def raw_file(folder: str) -> str | None:
    """The open_clip checkpoint in a download folder, if there."""
    for name in _RAW_NAMES:
        if osp.isfile(osp.join(folder, name)):
            return osp.join(folder, name)
    return None


def placement(asset: WeightAsset, root: str) -> str:
    """The offline instructions for one asset: what to get and where to put it."""
    target = osp.join(root, asset.folder)
    lines = [f'missing: {asset.name} ({asset.licence}, {asset.size})']
    if asset.convert:
        raw = osp.join(root, asset.download_folder or '')
        lines.append(
            f'  place {asset.source} (file {" or ".join(_RAW_NAMES)}) in {raw}/ '
            'and run this script again to convert it, or convert by hand:'
        )
        src = osp.join(raw, _RAW_NAMES[1])
        lines.append('  ' + asset.convert.format(src=src, dst=target))
    elif asset.repo_id:
        lines.append(
            f'  place the files of hub repo {asset.repo_id} (config.json, tokenizer files, '
            f'*.safetensors or *.bin) in {target}/'
        )
    else:
        lines.append(f'  download {asset.source} to {target}')
    return '\n'.join(lines)


def weight_patterns(repo_id: str) -> list[str]:
    """Files to fetch: configs, tokenizer files, and one weight format (safetensors if any)."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(repo_id)
    fmt = '*.safetensors' if any(f.endswith('.safetensors') for f in files) else '*.bin'
    return ['*.json', '*.txt', '*.model', fmt]


def download(asset: WeightAsset, root: str) -> None:
    """Fetch one asset (hub repo or URL) into its (download) folder."""
    folder = osp.join(root, asset.download_folder or asset.folder)
    if asset.repo_id:
        from huggingface_hub import snapshot_download

        print(f'{asset.name}: fetching {asset.repo_id} ({asset.size}) into {folder}')
        snapshot_download(
            asset.repo_id, local_dir=folder, allow_patterns=weight_patterns(asset.repo_id)
        )
        return
    assert asset.url is not None  # every table entry has a hub id or a URL
    print(f'{asset.name}: downloading {asset.url} ({asset.size}) to {folder}')
    os.makedirs(osp.dirname(osp.abspath(folder)), exist_ok=True)
    part = folder + '.part'
    try:
        with urllib.request.urlopen(asset.url) as resp, open(part, 'wb') as out:  # noqa: S310
            length = resp.headers.get('Content-Length')
            shutil.copyfileobj(resp, out)
            written = out.tell()
        if length is not None and int(length) != written:
            raise SystemExit(
                f'{asset.name}: the download stopped after {written} of {length} bytes; '
                'run this script again'
            )
        check_checkpoint(part, asset.name)
    except BaseException:
        if osp.exists(part):
            os.remove(part)  # nothing half-written is left where the configs look
        raise
    os.replace(part, folder)


def check_checkpoint(path: str, name: str) -> None:
    """A downloaded ``.pth`` must load as the weights-only checkpoint the tools will read."""
    import torch

    try:
        torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:  # any reason: the file is not what the configs can load
        raise SystemExit(
            f'{name}: the downloaded file is not a readable weights-only checkpoint ({err}); '
            'run this script again, or download it by hand (docs/prepare.md)'
        ) from err


def convert(asset: WeightAsset, root: str) -> bool:
    """Run the conversion step when the raw download is there; False if it is not."""
    src = raw_file(osp.join(root, asset.download_folder or ''))
    if src is None:
        return False
    from mmrefvlm.models.vision.convert import convert_checkpoint

    dst = osp.join(root, asset.folder)
    print(f'{asset.name}: converting {src} -> {dst}')
    convert_checkpoint(src, dst, image_size=512)
    return True


def prepare(asset: WeightAsset, root: str, offline: bool) -> bool:
    """Make one asset ready; returns False (after printing instructions) when it cannot."""
    target = osp.join(root, asset.folder)
    if is_ready(target):
        print(f'ok: {asset.name} in {target}')
        return True
    if asset.convert and convert(asset, root):
        return True
    if offline:
        print(placement(asset, root))
        return False
    download(asset, root)
    if asset.convert and not convert(asset, root):
        raise SystemExit(f'{asset.name}: no open_clip checkpoint found after the download')
    print(f'ok: {asset.name} in {target}')
    return True


def main(argv: list[str] | None = None) -> int:
    """Prepare the selected assets; returns 1 when some are still missing (offline)."""
    args = parse_args(argv)
    offline = args.offline or hub_offline()
    assets = select(args.stage, args.only)
    missing = [a.name for a in assets if not prepare(a, args.root, offline)]
    if missing:
        print(
            f'{len(missing)} asset(s) missing ({", ".join(missing)}); offline, so nothing was '
            'downloaded. Place them as above (docs/prepare.md, "Model weights"), or run this '
            'script online.'
        )
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
