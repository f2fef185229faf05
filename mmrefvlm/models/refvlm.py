# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLM``: encoders -> projector -> LLM -> router -> visual-unit decoders (DESIGN §2, §5)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.model import BaseModel, ModuleDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import SampleList, UnitQueries, VisualContext
from mmrefvlm.tokenization import RefTokenizer, build_tokenizer

from .generation import greedy_generate, split_llm
from .llms import build_causal_lm, resize_embeddings_mean
from .refvlm_utils import apply_lora, lm_loss, merge_instances, select_rows, splice
from .routers import find_refs


def _build(cfg, **defaults):
    """Build a sub-module from a config (or return a built module), filling ``defaults`` for the
    keys the config leaves out *and* the class's constructor accepts."""
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    cls = MODELS.get(cfg['type']) if isinstance(cfg.get('type'), str) else cfg.get('type')
    if cls is None:
        raise KeyError(f'{cfg.get("type")!r} is not registered in mmrefvlm.MODELS')
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for k, v in defaults.items():
        if k in params or takes_any:
            cfg.setdefault(k, v)
    return MODELS.build(cfg)


@MODELS.register_module()
class RefVLM(BaseModel):
    """A multimodal LLM that answers in TRP and decodes ``<REF>`` states into visual units.

    Args:
        tokenizer (dict | RefTokenizer): ``build_tokenizer`` kwargs (the same config the data
            pipeline and metrics use) or the object.
        llm (dict | nn.Module): ``build_causal_lm`` kwargs (``type`` optional) or a built HF
            causal LM; its embeddings are resized for the tokenizer.
        vision_encoder (dict | nn.Module): CLIP-ViT (``CLIPViTEncoder``): image tokens for the LLM.
        pyramid_encoder (dict | nn.Module, optional): CLIP-ConvNeXt (``ConvNeXtPyramid``): decoder
            features. None: the decoders get the CLIP grid as a one-level pyramid.
        projector (dict | nn.Module, optional): Shared vision->LLM projector (default
            ``MLPProjector`` sized from the encoder and the LLM).
        prompt_encoder (dict | nn.Module): Visual-prompt aggregator (``MaskGuidedAggregation``).
        router (dict | nn.Module): ``LatentEmbeddingRouter``.
        unit_decoders (Mapping[str, dict | nn.Module]): Unit name -> decoder; each decoder's
            ``unit`` must equal its key. Configs get ``in_channels`` (LLM width), ``clip_channels``
            and ``pyramid_channels`` (encoder widths) filled in when left out and accepted.
        loss_weights (Mapping[str, float]): ``llm`` and one weight per unit (default 1.0 each).
        freeze_llm (bool): Freeze the whole LLM (stage 1). Ignored parts: LoRA adapters and the
            new-token rows stay trainable when ``lora`` is set.
        freeze_projector (bool): Freeze the projector.
        lora (dict, optional): ``peft.LoraConfig`` kwargs (``r``, ``lora_alpha``,
            ``target_modules``...).
        gradient_checkpointing (bool): Activation checkpointing in the LLM.
        image_keys (Mapping[str, str]): Which ``inputs['images']`` entry feeds which encoder.
        max_new_tokens (int): Greedy generation budget in ``predict``.
        generation_cache (str): KV cache of ``predict``: ``'dynamic'`` (grown by concatenation)
            or ``'static'`` (preallocated, written in place); same outputs.
        data_preprocessor (dict, optional): ``RefVLMDataPreprocessor`` config; ``pad_token_id`` and
            ``image_sizes`` are filled in from the tokenizer and encoders.
    """

    def __init__(
        self,
        *,
        tokenizer: dict | RefTokenizer,
        llm: dict | nn.Module,
        vision_encoder: dict | nn.Module,
        pyramid_encoder: dict | nn.Module | None = None,
        projector: dict | nn.Module | None = None,
        prompt_encoder: dict | nn.Module | None = None,
        router: dict | nn.Module | None = None,
        unit_decoders: Mapping[str, dict | nn.Module] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        freeze_llm: bool = False,
        freeze_projector: bool = False,
        lora: dict | None = None,
        gradient_checkpointing: bool = False,
        image_keys: Mapping[str, str] = dict(vision='vit', pyramid='pyramid'),
        max_new_tokens: int = 128,
        generation_cache: str = 'dynamic',
        data_preprocessor: dict | None = None,
        init_cfg=None,
    ) -> None:
        self.tokenizer = (
            tokenizer
            if isinstance(tokenizer, RefTokenizer)
            else build_tokenizer(**{k: v for k, v in dict(tokenizer).items() if k != 'type'})
        )
        vision = _build(vision_encoder)
        pyramid = _build(pyramid_encoder)
        sizes = {image_keys['vision']: vision.image_size}
        if pyramid is not None:
            sizes[image_keys['pyramid']] = pyramid.image_size
        dp = dict(type='RefVLMDataPreprocessor', **(data_preprocessor or {}))
        dp.setdefault('pad_token_id', self.tokenizer.ids.pad)
        dp.setdefault('image_sizes', sizes)
        super().__init__(data_preprocessor=dp, init_cfg=init_cfg)
        self.vision_encoder, self.pyramid_encoder = vision, pyramid
        self.llm = self._build_llm(llm)
        hf_llm: Any = self.llm  # an HF PreTrainedModel: nn.Module does not declare its API
        hidden = hf_llm.get_input_embeddings().weight.shape[1]
        self.projector = _build(
            projector or dict(type='MLPProjector'),
            in_channels=vision.out_channels,
            out_channels=hidden,
        )
        self.prompt_encoder = _build(prompt_encoder or dict(type='MaskGuidedAggregation'))
        self.router = _build(router or dict(type='LatentEmbeddingRouter'))
        # MMEngine's ModuleDict (not torch's): BaseModel.init_weights reaches the decoders through
        # it
        self.unit_decoders = ModuleDict()
        feats = dict(
            in_channels=hidden,
            clip_channels=vision.out_channels,
            pyramid_channels=tuple(pyramid.out_channels)
            if pyramid is not None
            else (vision.out_channels,),
        )
        for unit, cfg in (unit_decoders or {}).items():
            dec = _build(cfg, **feats)
            if getattr(dec, 'unit', None) != unit:
                raise ValueError(
                    f'unit_decoders[{unit!r}] is a {type(dec).__name__} decoding '
                    f'{getattr(dec, "unit", None)!r}; the key must equal its unit'
                )
            self.unit_decoders[unit] = dec
        weights = dict(loss_weights or {})
        unknown = set(weights) - {'llm'} - set(self.unit_decoders)
        if unknown:
            raise ValueError(
                f'loss_weights has keys {sorted(unknown)} with no decoder; decoders: '
                f'{sorted(self.unit_decoders)}'
            )
        self.loss_weights = {
            'llm': float(weights.get('llm', 1.0)),
            **{u: float(weights.get(u, 1.0)) for u in self.unit_decoders},
        }
        self.image_keys = dict(image_keys)
        self.max_new_tokens = max_new_tokens
        if generation_cache not in ('static', 'dynamic'):
            raise ValueError(
                f"generation_cache must be 'static' or 'dynamic', got {generation_cache!r}"
            )
        self.generation_cache = generation_cache
        self._setup_training(freeze_llm, freeze_projector, lora, gradient_checkpointing)

    # ----------------------------------------------------------------------------- build
    def _build_llm(self, llm: dict | nn.Module) -> nn.Module:
        if isinstance(llm, nn.Module):
            resize_embeddings_mean(llm, len(self.tokenizer))
            return llm
        cfg = dict(llm)
        cfg.pop('type', None)
        return build_causal_lm(tokenizer=self.tokenizer, **cfg)

    def _setup_training(
        self,
        freeze_llm: bool,
        freeze_projector: bool,
        lora: dict | None,
        gradient_checkpointing: bool,
    ) -> None:
        if lora is not None:
            self.llm = apply_lora(self.llm, lora, sorted(set(self.tokenizer.ids.values())))
        elif freeze_llm:
            self.llm.requires_grad_(False)
        if freeze_projector:
            self.projector.requires_grad_(False)
        if gradient_checkpointing:
            hf_llm: Any = self.llm  # an HF PreTrainedModel: nn.Module does not declare its API
            hf_llm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={'use_reentrant': False}
            )

    @property
    def units(self) -> list[str]:
        """Units that have a decoder."""
        return list(self.unit_decoders)

    # ----------------------------------------------------------------------------- shared steps
    def encode_images(self, inputs: dict, data_samples: SampleList) -> tuple[VisualContext, Tensor]:
        """Run the encoders: the decoders' ``VisualContext`` and the (B, N, D) projected image
        tokens."""
        clip = self.vision_encoder(inputs['images'][self.image_keys['vision']])
        if self.pyramid_encoder is not None:
            pyramid = tuple(self.pyramid_encoder(inputs['images'][self.image_keys['pyramid']]))
        else:
            pyramid = (clip,)
        valid = []
        for s in data_samples:
            shape, side = s.metainfo.get('ori_shape'), s.metainfo.get('square_size')
            valid.append(
                (1.0, 1.0) if not shape or not side else (shape[0] / side, shape[1] / side)
            )
        vis = VisualContext(
            pyramid=pyramid,
            clip=clip,
            valid_hw=torch.tensor(valid, dtype=torch.float32, device=clip.device),
        )
        tokens = self.projector(clip.flatten(2).transpose(1, 2))
        return vis, tokens

    def embed_inputs(
        self, inputs: dict, vis: VisualContext, image_tokens: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Token embeddings with ``<image>`` / ``[VPT]`` positions replaced; also a zero-valued term
        that keeps the unused visual paths in the graph (text-only batches, no prompts)."""
        ids = inputs['input_ids']
        hf_llm: Any = self.llm  # an HF PreTrainedModel: nn.Module does not declare its API
        embed = hf_llm.get_input_embeddings()
        embeds = embed(ids)
        has_image = inputs['has_image']
        n_img = image_tokens.shape[1]
        embeds = splice(
            embeds,
            ids,
            self.tokenizer.ids.image,
            image_tokens[has_image].flatten(0, 1),
            has_image.long() * n_img,
            '<image>',
        )
        zero = image_tokens.sum() * 0.0 if not bool(has_image.all()) else embeds.new_zeros(())
        if self.training:  # pyramid levels no decoder reads this step stay in the graph
            zero = zero + sum(p.float().sum() for p in vis.pyramid) * 0.0
        masks, bidx = inputs['prompt_masks'], inputs['prompt_batch_idx']
        k2 = self.prompt_encoder.num_tokens
        if masks.shape[0] > 0:
            prompts = self.projector(self.prompt_encoder(vis.clip, masks.float(), bidx))
            counts = torch.bincount(bidx, minlength=ids.shape[0]) * k2
            embeds = splice(
                embeds, ids, self.tokenizer.ids.vpt, prompts.flatten(0, 1), counts, '[VPT]'
            )
        else:
            splice(
                embeds,
                ids,
                self.tokenizer.ids.vpt,
                embeds.new_zeros(0, embeds.shape[-1]),
                torch.zeros_like(has_image, dtype=torch.long),
                '[VPT]',
            )
            if self.training:  # fake prompt: keeps the visual-prompt path in every step's graph
                fake = torch.zeros(1, *masks.shape[1:], device=ids.device)
                zero = (
                    zero
                    + self.projector(
                        self.prompt_encoder(
                            vis.clip[:1], fake, torch.zeros(1, dtype=torch.long, device=ids.device)
                        )
                    ).sum()
                    * 0.0
                )
        return embeds, zero

    # ----------------------------------------------------------------------------- modes
    def forward(self, inputs: dict, data_samples: SampleList | None = None, mode: str = 'tensor'):
        """Dispatch to ``loss`` / ``predict`` / ``_forward`` as mmdet's ``BaseDetector`` does."""
        if mode == 'loss':
            assert data_samples is not None, 'loss mode needs data_samples'
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            assert data_samples is not None, 'predict mode needs data_samples'
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def _llm_hidden(self, inputs: dict, data_samples: SampleList):
        vis, image_tokens = self.encode_images(inputs, data_samples)
        embeds, zero = self.embed_inputs(inputs, vis, image_tokens)
        decoder, head, _ = split_llm(self.llm)
        hidden = decoder(
            inputs_embeds=embeds, attention_mask=inputs['attention_mask']
        ).last_hidden_state
        return vis, hidden, head, zero

    def _forward(self, inputs: dict, data_samples: SampleList | None = None) -> dict[str, Tensor]:
        """Teacher-forced tensors: last-layer ``hidden`` (B, L, D) and per-unit decoder outputs."""
        assert data_samples is not None, 'the image metainfo comes from data_samples'
        vis, hidden, _, _ = self._llm_hidden(inputs, data_samples)
        routing = self._route_labels(inputs, hidden)
        outs = {u: self.unit_decoders[u](q, vis) for u, q in routing.queries.items()}
        return dict(hidden=hidden, **{f'{u}/{k}': v for u, o in outs.items() for k, v in o.items()})

    def _route_labels(self, inputs: dict, hidden: Tensor):
        refs, warns = [], []
        for ids, labels in zip(inputs['input_ids'], inputs['labels'], strict=True):
            r, w, _ = find_refs(
                ids, self.tokenizer, known_units=set(self.unit_decoders), span_mask=labels != -100
            )
            refs.append(r)
            warns.append(w)
        caps = {u: d.num_queries for u, d in self.unit_decoders.items()}
        return self.router(hidden, refs, caps, warns)

    def loss(self, inputs: dict, data_samples: SampleList) -> dict[str, Tensor]:
        """``w_llm * CE + sum_u w_u * L_u``, every term logged; inactive decoders get fake
        inputs."""
        vis, hidden, head, zero = self._llm_hidden(inputs, data_samples)
        losses = {'loss_llm': lm_loss(hidden, inputs['labels'], head) * self.loss_weights['llm']}
        routing = self._route_labels(inputs, hidden)
        for unit, dec in self.unit_decoders.items():
            w = self.loss_weights[unit]
            queries = routing.queries.get(unit)
            if queries is None:
                # Fake input: one padded query on the first image. The decoder's loss with zero
                # real queries returns its usual keys as 0 x outputs, so every parameter is in the
                # graph (DDP-safe) and every step logs the same loss keys.
                fake = UnitQueries(
                    embeds=hidden[:1, :1] * 0.0,
                    mask=torch.zeros(1, 1, dtype=torch.bool, device=hidden.device),
                    group_ids=torch.full((1, 1), -1, dtype=torch.long, device=hidden.device),
                )
                vis1 = VisualContext(
                    pyramid=tuple(p[:1] for p in vis.pyramid),
                    clip=vis.clip[:1],
                    valid_hw=vis.valid_hw[:1],
                )
                for key, val in dec.loss(fake, vis1, data_samples[:1]).items():
                    losses[key] = val * 0.0
                continue
            self._check_alignment(unit, queries, data_samples)
            _, queries, unit_vis, unit_samples = select_rows(queries, vis, data_samples)
            for key, val in dec.loss(queries, unit_vis, unit_samples).items():
                losses[key] = val * w
        losses['loss_llm'] = losses['loss_llm'] + zero
        return losses

    @staticmethod
    def _check_alignment(unit: str, queries: UnitQueries, data_samples: SampleList) -> None:
        counts = queries.mask.sum(1).tolist()
        for n, s in zip(counts, data_samples, strict=True):
            gt = s.gt_units.get(unit) if 'gt_units' in s else None
            m = 0 if gt is None else len(gt)
            if n != m:
                raise ValueError(
                    f'sample {s.metainfo.get("record_id")}: {n} <REF> tokens of unit '
                    f'{unit!r} in the labels but {m} targets; the data pipeline and '
                    'the tokenized answer disagree'
                )

    # ----------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict(self, inputs: dict, data_samples: SampleList) -> SampleList:
        """Greedy generation (KV cache, left-padded batch) -> TRP parse -> route -> decode.

        Writes ``pred_text``, ``pred_answer``, ``pred_instances`` (original pixels; ``labels`` are
        phrase texts, ``units`` the decoder of each entry) and ``warnings`` on each sample. Never
        raises on malformed generations: problems become warnings.
        """
        vis, image_tokens = self.encode_images(inputs, data_samples)
        embeds, _ = self.embed_inputs(inputs, vis, image_tokens)
        gen = greedy_generate(
            self.llm,
            embeds,
            inputs['attention_mask'],
            eos_id=self.tokenizer.ids.eos,
            pad_id=self.tokenizer.ids.pad,
            max_new_tokens=self.max_new_tokens,
            cache=self.generation_cache,
        )
        # Hidden states indexed by generated position + 1; index 0 is the prompt's last state, so
        # the router's 'emitting' shift reads the state that predicted each token.
        states = torch.cat([gen.emit_states[:, :1], gen.states], 1)
        refs, warns, parsed = [], [], []
        for b in range(len(data_samples)):
            n = int(gen.lengths[b]) - int(gen.finished[b])  # drop the EOS token
            ids = gen.tokens[b, :n]
            r, w, results = find_refs(ids, self.tokenizer, known_units=set(self.unit_decoders))
            parsed.append((ids, results[0] if results else None))
            refs.append(
                [
                    (p + 1, u, g, ph, None if sp is None else (sp[0] + 1, sp[1] + 1))
                    for p, u, g, ph, sp in r
                ]
            )
            if not bool(gen.finished[b]):
                w = w + [f'generation stopped at max_new_tokens={self.max_new_tokens}']
            warns.append(w)
        caps = {u: d.num_queries for u, d in self.unit_decoders.items()}
        routing = self.router(states, refs, caps, warns)
        unit_preds = {}
        for u, q in routing.queries.items():  # each decoder only on the samples it has queries for
            rows, q, unit_vis, unit_samples = select_rows(q, vis, data_samples)
            preds = dict(
                zip(
                    rows,
                    self.unit_decoders[u].predict(q, unit_vis, unit_samples, rescale=True),
                    strict=True,
                )
            )
            unit_preds[u] = [preds.get(b, InstanceData()) for b in range(len(data_samples))]
        for b, sample in enumerate(data_samples):
            ids, res = parsed[b]
            sample.pred_text = self.tokenizer.decode(ids.tolist())
            sample.pred_answer = res.answer if res is not None else []
            sample.warnings = sorted(set(routing.warnings[b]), key=routing.warnings[b].index)
            parts = [
                (u, [r for r in routing.refs[b] if r.unit == u], preds[b])
                for u, preds in unit_preds.items()
            ]
            sample.pred_instances = (
                merge_instances(parts, len(routing.refs[b]))
                if parts
                else InstanceData(
                    labels=[], units=[], unit_fields=[], group_ids=torch.zeros(0, dtype=torch.long)
                )
            )
        return data_samples
