# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""The one table of the paper's external assets: where each comes from and what provides it.

``tools/misc/prepare_weights.py`` fetches and converts the weights listed here, ``docs/prepare.md``
documents them, and :mod:`mmrefvlm.utils.preflight` turns the table into hints ("get it with ...")
for missing paths. Nothing here decides *which* paths a run needs: that comes from the config.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ['WeightAsset', 'PAPER_WEIGHTS', 'PATH_HINTS', 'find_weight']

PREPARE_DOC = 'docs/prepare.md'


@dataclass(frozen=True)
class WeightAsset:
    """One pretrained checkpoint of the paper.

    Args:
        name (str): Short name (``prepare_weights.py --only NAME``).
        folder (str): Folder (or file) under the checkpoint root that the configs read.
        repo_id (str, optional): Hugging Face hub repository it is fetched from.
        url (str, optional): Direct download URL, for files not on the hub.
        licence (str): Licence of the weights, as their model card states it.
        size (str): Approximate download size.
        download_folder (str, optional): Where the raw download goes when a conversion step turns
            it into ``folder`` (None: downloaded straight into ``folder``).
        convert (str, optional): The conversion command, with ``{src}`` / ``{dst}`` placeholders.
        stages (tuple[str, ...]): The stage configs that need it.
        section (str): Anchor of its section in docs/prepare.md.
    """

    name: str
    folder: str
    licence: str
    size: str
    repo_id: str | None = None
    url: str | None = None
    download_folder: str | None = None
    convert: str | None = None
    stages: tuple[str, ...] = ('stage1', 'stage2', 'stage3')
    section: str = '1-model-weights'

    @property
    def source(self) -> str:
        """The hub id or the URL, as text."""
        return self.repo_id or self.url or '?'

    def hint(self, checkpoint_root: str = 'checkpoints') -> str:
        """The command that provides this asset, and its doc section."""
        return (
            f'python tools/misc/prepare_weights.py --only {self.name} --root {checkpoint_root} '
            f'(or by hand: {PREPARE_DOC}#{self.section})'
        )


PAPER_WEIGHTS: tuple[WeightAsset, ...] = (
    WeightAsset(
        name='vicuna-7b-v1.5',
        folder='vicuna-7b-v1.5',
        repo_id='lmsys/vicuna-7b-v1.5',
        licence='Llama 2 Community License',
        size='13.5 GB (fp16)',
    ),
    WeightAsset(
        name='clip-vit-large-patch14-336',
        folder='clip-vit-large-patch14-336',
        repo_id='openai/clip-vit-large-patch14-336',
        licence='MIT (OpenAI CLIP)',
        size='1.7 GB (fp32, vision + text towers)',
    ),
    WeightAsset(
        name='clip-convnext-large',
        folder='clip-convnext-large-512-hf',
        repo_id='laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup',
        licence='MIT (LAION open_clip)',
        size='1.4 GB download, 0.8 GB converted (vision trunk only)',
        download_folder='CLIP-ConvNext',
        convert='python tools/model_converters/open_clip_convnext_to_hf.py {src} {dst} '
        '--image-size 512',
        # stage 1 trains no decoder, but its config still builds (and loads) the frozen tower
    ),
    WeightAsset(
        name='sam-vit-l',
        folder='sam_vit_l_0b3195.pth',
        url='https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth',
        licence='Apache-2.0 (segment-anything)',
        size='1.2 GB',
        stages=('stage3_sam',),
    ),
)

#: (fnmatch pattern on a normalised path, hint) for paths that are not weights: data and the
#: checkpoints of earlier stages. The first match wins; ``{config}`` is the config's path.
PATH_HINTS: tuple[tuple[str, str], ...] = (
    (
        '*vt_instruct*',
        'python tools/dataset_converters/build_vt_instruct.py --src data --config {config} '
        f'({PREPARE_DOC}#2-data-vt-instruct)',
    ),
    (
        '*data/demo*',
        'python tools/misc/make_demo_data.py --out data/demo (docs/demo_dataset.md)',
    ),
    (
        '*work_dirs/stage1*',
        'train stage 1 first: python tools/train.py configs/refvlm/stage1.py, or set the path '
        f'to your checkpoint ({PREPARE_DOC}#3-stages)',
    ),
    (
        '*work_dirs/stage2*',
        'train stage 2 first: python tools/train.py configs/refvlm/stage2.py, or set the path '
        f'to your checkpoint ({PREPARE_DOC}#3-stages)',
    ),
)


def find_weight(path: str) -> WeightAsset | None:
    """The paper weight whose folder (or hub id) ends ``path``, if any."""
    norm = path.replace('\\', '/').rstrip('/')
    for asset in PAPER_WEIGHTS:
        if norm == asset.repo_id or norm.split('/')[-1] == asset.folder:
            return asset
        if asset.download_folder and norm.split('/')[-1] == asset.download_folder:
            return asset
    return None
