# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLMInferencer``: ask a trained model about your own images (in the manner of mmdet's
``DetInferencer``).

    >>> from mmrefvlm.apis import RefVLMInferencer
    >>> infer = RefVLMInferencer('configs/refvlm/demo_stage2.py', 'work_dirs/demo/iter_4200.pth')
    >>> result = infer('photo.png', 'Where is the man in the black hat? Give its box.')[0]
    >>> result['answer'], result['instances'][0]['bbox']

The images go through the config's own test pipeline (no second copy of the preprocessing) and are
answered by ``RefVLM.predict`` in left-padded batches. See docs/inference.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import print_log

from mmrefvlm.datasets.collate import refvlm_collate
from mmrefvlm.datasets.transforms import FormatConversation, SampleLoadError

from .inference_inputs import (
    ImageInput,
    InferenceInputError,
    build_record,
    image_name,
    load_image,
)
from .inference_results import sample_to_result, save_result, unique_stem

#: Errors of one image's inputs: reported for that image, the others still run.
INPUT_ERRORS = (ValueError, SampleLoadError)


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the model.

    Attributes:
        name (str): The image's name (its path, or ``image_<i>``).
        img (np.ndarray): (H, W, 3) uint8 RGB.
        question (str): The question as sent (``[VPT]`` for each new visual prompt).
        data (dict): The test pipeline's output, ``dict(inputs=..., data_samples=...)``.
    """

    name: str
    img: np.ndarray
    question: str
    data: dict


def find_test_pipeline(cfg: Config) -> list:
    """The test pipeline of a config, wherever it sits.

    Looks at ``test_dataloader`` then ``val_dataloader``: ``dataset.pipeline``, else the first
    of ``dataset.datasets`` (``ConcatDataset``), else ``dataset.dataset`` (wrappers); finally a
    top-level ``test_pipeline``.

    Raises:
        ValueError: The config has none of these.
    """
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        dataset = loader.get('dataset') if loader else None
        while isinstance(dataset, Mapping):
            if dataset.get('pipeline'):
                return list(dataset['pipeline'])
            inner = dataset.get('datasets')
            dataset = inner[0] if inner else dataset.get('dataset')
    if cfg.get('test_pipeline'):
        return list(cfg.test_pipeline)
    raise ValueError(
        f'config {cfg.filename!r} has no test pipeline (test_dataloader.dataset.pipeline, '
        'val_dataloader.dataset.pipeline or test_pipeline)'
    )


def _per_image(value: Any, num: int, what: str, is_item) -> list:
    """One value for all images, or a list with one per image."""
    if value is None or is_item(value):
        return [value] * num
    value = list(value)
    if len(value) != num:
        raise ValueError(f'{what}: got {len(value)} entries for {num} images')
    return value


def _is_prompt_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(p, Mapping) for p in v)


class RefVLMInferencer:
    """Answer questions about images with a RefVLM config and checkpoint.

    Args:
        config (str | Config): Config file or object (its ``model`` and test pipeline are used).
        checkpoint (str, optional): ``.pth`` or ``.safetensors``, loaded weights-only and
            strictly. None: the weights the config builds (random for the tiny configs).
        device (str, optional): Default: ``cuda`` when available, else ``cpu``.
        cfg_options (Mapping, optional): Overrides, as ``--cfg-options`` of the tools.
        max_new_tokens (int, optional): Generation budget (default: the config's).

    On CUDA the model runs under autocast in ``optim_wrapper.dtype`` when the config trains with
    one (``bfloat16`` for the paper stages); on CPU it runs in the dtypes the config builds.
    """

    def __init__(
        self,
        config: str | Config,
        checkpoint: str | None = None,
        device: str | None = None,
        *,
        cfg_options: Mapping | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        from mmengine.registry import init_default_scope

        from mmrefvlm.apis.runner import load_config
        from mmrefvlm.registry import MODELS

        if isinstance(config, Config):
            cfg = config
            if cfg_options:
                cfg.merge_from_dict(dict(cfg_options))
        else:
            cfg = load_config(config, cfg_options=cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmrefvlm'))
        self.cfg = cfg
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        model = MODELS.build(cfg.model)
        if checkpoint is not None:
            self._load_checkpoint(model, checkpoint)
        else:
            print_log('RefVLMInferencer: no checkpoint, the weights are as built', 'current', 30)
        if max_new_tokens is not None:
            model.max_new_tokens = int(max_new_tokens)
        self.model = model.to(self.device).eval()
        self.units = list(getattr(model, 'units', []))
        self.pipeline = Compose(find_test_pipeline(cfg))
        formatters = [t for t in self.pipeline.transforms if isinstance(t, FormatConversation)]
        if len(formatters) != 1:
            raise ValueError(
                f'the test pipeline must hold one FormatConversation, found {len(formatters)}'
            )
        formatters[0].predict = True  # the test pipeline's own; set in case a config forgot it
        formatters[0].allow_open_turn = True  # questions end with the user turn: no answer yet
        amp = (cfg.get('optim_wrapper') or {}).get('dtype')
        self.autocast_dtype = (
            getattr(torch, amp) if isinstance(amp, str) and self.device.type == 'cuda' else None
        )

    @staticmethod
    def _load_checkpoint(model: torch.nn.Module, path: str) -> None:
        from mmrefvlm.utils.checkpoint import load_state_file

        ckpt = load_state_file(path, map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        state = {k.removeprefix('module.'): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f'checkpoint {path!r} does not fit the config: {len(missing)} missing weights '
                f'{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}'
            )

    # ------------------------------------------------------------------------------ inputs
    def preprocess(
        self,
        image: ImageInput,
        question: str,
        visual_prompts: Sequence[Mapping] | None = None,
        history: Sequence[Mapping] | None = None,
        *,
        task: str | None = None,
        name: str | None = None,
    ) -> PreparedImage:
        """One image through the test pipeline.

        Returns:
            PreparedImage: the decoded image, the question as sent and the pipeline output.

        Raises:
            InferenceInputError: Any bad input; the message starts with the image's name.
        """
        name = name or image_name(image, 0)
        img = load_image(image, name)
        path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        record = build_record(
            img,
            name,
            question,
            visual_prompts or (),
            history or (),
            task=task,
            units=self.units,
            path=path,
        )
        try:
            data = self.pipeline(record)
        except INPUT_ERRORS as err:
            msg = str(err)
            raise InferenceInputError(msg if name in msg else f'{name}: {msg}') from err
        if data is None:  # a transform dropped the sample
            raise InferenceInputError(f'{name}: the test pipeline dropped this image')
        return PreparedImage(name, img, record['conversation'][-1]['content'], data)

    # ------------------------------------------------------------------------------ predict
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def forward(self, batch: Sequence[dict]) -> list:
        """Predict a list of pipeline outputs in one left-padded batch (one generation)."""
        with self._autocast():
            return self.model.test_step(refvlm_collate(batch))

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        questions: str | Sequence[str],
        visual_prompts: Sequence[Any] | None = None,
        history: Sequence[Any] | None = None,
        *,
        task: str | Sequence[str | None] | None = None,
        batch_size: int = 1,
        return_vis: bool = False,
        out_dir: str | None = None,
        on_error: str = 'raise',
    ) -> list[dict]:
        """Answer one question per image.

        Args:
            images: A path, an RGB uint8 array or a PIL image, or a list of them.
            questions (str | Sequence[str]): One question for all images, or one per image.
                ``<region>`` marks where a visual prompt goes (else they are appended).
            visual_prompts: For one image, a list of prompt dicts (``{'type': 'point', 'point':
                [x, y]}``, ``'box'`` [x1, y1, x2, y2], ``'scribble'`` [[x, y], ...], ``'mask'``
                (H, W) bool or RLE; original pixels); for a list of images, one such list each.
            history: Earlier turns of the chat (``{'role': 'user', 'content'}``, ``{'role':
                'assistant', 'text': <a result's text>}``), for all images or one list each.
                The prompts of earlier turns come first in ``visual_prompts``.
            task (str | Sequence, optional): Task whose system command frames the question
                (``rec``, ``res``, ``vqa``, ``ig_box``...). None: ``ig_box`` with visual prompts,
                ``rec`` without.
            batch_size (int): Images generated together (one left-padded batch).
            return_vis (bool): Add ``vis``, the (H', W', 3) uint8 RGB overlay.
            out_dir (str, optional): Also write ``<stem>.json`` and ``<stem>.png`` per image.
            on_error (str): ``'raise'``: a bad input raises :class:`InferenceInputError` (naming
                every bad image) before anything runs. ``'skip'``: its result is
                ``{'image': name, 'error': message}`` and the other images still run.

        Returns:
            list[dict]: One result per image, in order: ``image``, ``task``, ``question``,
            ``text`` (raw TRP), ``answer`` (plain text), ``instances`` (``phrase``, ``unit``,
            ``group`` and ``bbox`` / ``mask`` (RLE) / ``keypoints`` / ``depth`` (array) /
            ``score``), ``warnings`` and optionally ``vis``.
        """
        if on_error not in ('raise', 'skip'):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        single = not isinstance(images, (list, tuple))
        image_list: list = list(images) if isinstance(images, (list, tuple)) else [images]
        n = len(image_list)
        if single and visual_prompts is not None and not _is_prompt_list(visual_prompts):
            raise ValueError(
                f'visual_prompts of one image must be a list of dicts, got {visual_prompts!r}'
            )
        qs = _per_image(questions, n, 'questions', lambda v: isinstance(v, str))
        vps = (
            [visual_prompts]
            if single
            else _per_image(visual_prompts, n, 'visual_prompts', lambda v: v is None)
        )
        hist = _per_image(history, n, 'history', _is_prompt_list)
        tasks = _per_image(task, n, 'task', lambda v: isinstance(v, str))
        results: list[dict | None] = [None] * n
        ready: list[tuple[int, PreparedImage]] = []
        errors = []
        for i, image in enumerate(image_list):
            name = image_name(image, i)
            try:
                prep = self.preprocess(image, qs[i], vps[i], hist[i], task=tasks[i], name=name)
            except INPUT_ERRORS as err:
                errors.append(str(err))
                results[i] = {'image': name, 'error': str(err)}
                continue
            ready.append((i, prep))
        if errors and on_error == 'raise':
            raise InferenceInputError('\n'.join(errors))
        used: set[str] = set()
        stems = [unique_stem(p.name, used) for _, p in ready]
        for chunk in _chunks(list(enumerate(ready)), batch_size):
            samples = self.forward([p.data for _, (_, p) in chunk])
            for (k, (i, prep)), sample in zip(chunk, samples, strict=True):
                result = sample_to_result(sample, prep.name, prep.question)
                if return_vis:
                    from mmrefvlm.visualization import draw_answer

                    result['vis'] = draw_answer(prep.img, result)
                if out_dir is not None:
                    save_result(result, prep.img, out_dir, stems[k])
                results[i] = result
        return [r for r in results if r is not None]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
