# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``RefVLM``: encoders -> projector -> LLM -> router -> visual-unit decoders (DESIGN §2, §5)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from mmengine.model import BaseModel, ModuleDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmrefvlm.registry import MODELS, TASK_UTILS
from mmrefvlm.structures import HostBatch, SampleList, VisualContext
from mmrefvlm.tokenization import RefTokenizer, build_tokenizer

from .generation import greedy_generate, split_llm
from .host_index import IndexPack, host_to_device
from .llms import build_causal_lm, resize_embeddings_mean
from .matchers import GroupSlots
from .model_hooks import RefStateContext
from .refvlm_loss import (
    check_alignment,
    decoder_losses,
    host_valid_hw,
    label_refs,
    llm_attention_mask,
)
from .refvlm_utils import (
    IGNORE_INDEX,
    apply_lora,
    lm_loss,
    merge_instances,
    select_rows,
    splice,
    splice_at,
)
from .routers import RoutingResult, find_refs
from .step_plan import TokenPlan


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
        ref_parser (dict | Callable, optional): Finds the reference tokens of an answer (labels in
            training, generated ids in prediction), with the signature and return value of
            :func:`~mmrefvlm.models.routers.find_refs`; a dict is built from ``TASK_UTILS``. None
            (default): TRP. ``SpecialTokenRefParser`` reads answers whose special tokens are the
            references themselves (LISA's ``[SEG]``; GSVA's ``[SEG]`` / ``[REJ]``).
        input_encoders (Mapping[str, dict | nn.Module], optional): Placeholder token -> encoder
            of extra inputs (:class:`~mmrefvlm.models.model_hooks.InputEncoder`); its rows
            replace the token's positions, like image tokens replace ``<image>``.
        ref_refiner (dict | object, optional): Rewrites the reference tokens' hidden states
            before routing (:class:`~mmrefvlm.models.model_hooks.RefStateRefiner`); a dict is
            built from ``TASK_UTILS``. None (default): the states are routed as they are.
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
        ref_parser: dict | Callable | None = None,
        input_encoders: Mapping[str, dict | nn.Module] | None = None,
        ref_refiner: Any = None,
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
        # A prompt encoder taking the host-planned prompt layout reads nothing back from the device.
        self._prompt_slots = 'slots' in inspect.signature(self.prompt_encoder.forward).parameters
        self.router = _build(router or dict(type='LatentEmbeddingRouter'))
        if isinstance(ref_parser, Mapping):
            ref_parser = TASK_UTILS.build(ref_parser)
        if ref_parser is not None and not callable(ref_parser):
            raise TypeError(f'ref_parser must be callable, got {type(ref_parser).__name__}')
        self.ref_parser: Callable = ref_parser or find_refs
        self.input_encoders = ModuleDict()
        for token, enc in (input_encoders or {}).items():
            if token not in self.tokenizer.ids:
                raise ValueError(
                    f'input_encoders: {token!r} is not a special token of the tokenizer'
                )
            self.input_encoders[token] = _build(enc, out_channels=hidden)
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
        if isinstance(ref_refiner, Mapping):
            ref_refiner = TASK_UTILS.build(ref_refiner)
        if ref_refiner is not None and not callable(ref_refiner):
            raise TypeError(f'ref_refiner must be callable, got {type(ref_refiner).__name__}')
        self.ref_refiner = ref_refiner
        if hasattr(ref_refiner, 'attach'):
            ref_refiner.attach(self.llm)

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
        valid = host_to_device(torch.from_numpy(host_valid_hw(data_samples)), clip.device)
        vis = VisualContext(pyramid=pyramid, clip=clip, valid_hw=valid)
        tokens = self.projector(clip.flatten(2).transpose(1, 2))
        return vis, tokens

    def host_batch(self, inputs: dict) -> HostBatch:
        """The batch's host data: ``inputs['host']`` from the data preprocessor, or read back
        from the device tensors (a synchronisation) when it is missing."""
        host = inputs.get('host')
        return host if isinstance(host, HostBatch) else HostBatch.from_inputs(inputs)

    def plan_tokens(self, inputs: dict, pack: IndexPack | None = None) -> TokenPlan:
        """Placeholder, LM-loss and prompt indices of the batch (:class:`TokenPlan`). With
        ``pack`` the caller sends the indices to the device; without, they are sent here."""
        ids = self.tokenizer.ids
        if pack is not None:
            return TokenPlan(self.host_batch(inputs), ids.image, ids.vpt, pack)
        own = IndexPack()
        plan = TokenPlan(self.host_batch(inputs), ids.image, ids.vpt, own)
        return plan.bind(own.to(inputs['input_ids'].device))

    def embed_inputs(
        self,
        inputs: dict,
        vis: VisualContext,
        image_tokens: Tensor,
        plan: TokenPlan | None = None,
        data_samples: SampleList | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Token embeddings with ``<image>`` / ``[VPT]`` (and input-encoder placeholder)
        positions replaced; also a zero-valued term that keeps the unused visual paths in the
        graph (text-only batches, no prompts, no extra inputs).

        Every ``<image>`` / ``[VPT]`` count and position comes from ``plan`` (host data): nothing
        is read back from the device. Input encoders (none by default) check their placeholder
        counts on the device (one synchronisation each)."""
        plan = plan if plan is not None else self.plan_tokens(inputs)
        ids = inputs['input_ids']
        hf_llm: Any = self.llm  # an HF PreTrainedModel: nn.Module does not declare its API
        embeds = hf_llm.get_input_embeddings()(ids)
        host = self.host_batch(inputs)
        plan.check_counts('<image>', plan.image_counts, host.has_image * image_tokens.shape[1])
        values = image_tokens if plan.all_images else image_tokens.index_select(0, plan.image_index)
        embeds = splice_at(embeds, plan.image_pos, values.flatten(0, 1))
        zero = image_tokens.sum() * 0.0 if not plan.all_images else embeds.new_zeros(())
        if self.training:  # pyramid levels no decoder reads this step stay in the graph
            zero = zero + sum(p.float().sum() for p in vis.pyramid) * 0.0
        masks, bidx = inputs['prompt_masks'], inputs['prompt_batch_idx']
        plan.check_counts(
            '[VPT]', plan.vpt_counts, plan.prompt_counts * self.prompt_encoder.num_tokens
        )
        if masks.shape[0] > 0:
            slots = dict(slots=plan.prompt_slots) if self._prompt_slots else {}
            prompts = self.projector(self.prompt_encoder(vis.clip, masks.float(), bidx, **slots))
            embeds = splice_at(embeds, plan.vpt_pos, prompts.flatten(0, 1))
        elif self.training:  # fake prompt: keeps the visual-prompt path in every step's graph
            zero = zero + self._fake_prompt(vis, masks) * 0.0
        for token, encoder in self.input_encoders.items():
            if data_samples is None:
                raise ValueError(f'input encoder {token!r} needs the data samples')
            values, counts = encoder(
                data_samples,
                visual=vis,
                vision_encoder=self.vision_encoder,
                projector=self.projector,
            )
            embeds = splice(embeds, ids, self.tokenizer.ids[token], values, counts, token)
            zero = zero + values.sum() * 0.0
        return embeds, zero

    def _fake_prompt(self, vis: VisualContext, masks: Tensor) -> Tensor:
        """Sum of the projected tokens of one empty prompt on the first image."""
        dev = vis.clip.device
        fake = torch.zeros(1, *masks.shape[1:], device=dev)
        one = torch.zeros(1, dtype=torch.long, device=dev)
        slots = {}
        if self._prompt_slots:  # one prompt on image 0: the layout is known
            slots = dict(slots=GroupSlots(one + 1, one, 1, one))
        return self.projector(self.prompt_encoder(vis.clip[:1], fake, one, **slots)).sum()

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

    def _llm_hidden(self, inputs: dict, data_samples: SampleList, plan: TokenPlan | None = None):
        plan = plan if plan is not None else self.plan_tokens(inputs)
        vis, image_tokens = self.encode_images(inputs, data_samples)
        embeds, zero = self.embed_inputs(inputs, vis, image_tokens, plan, data_samples)
        decoder, head, _ = split_llm(self.llm)
        mask = llm_attention_mask(self.llm, embeds, inputs['attention_mask'], plan.has_padding)
        hidden = decoder(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return vis, hidden.last_hidden_state, head, zero

    def _forward(self, inputs: dict, data_samples: SampleList | None = None) -> dict[str, Tensor]:
        """Teacher-forced tensors: last-layer ``hidden`` (B, L, D) and per-unit decoder outputs."""
        assert data_samples is not None, 'the image metainfo comes from data_samples'
        vis, hidden, _, _ = self._llm_hidden(inputs, data_samples)
        routing = self._route_labels(inputs, hidden, data_samples)
        outs = {u: self.unit_decoders[u](q, vis) for u, q in routing.queries.items()}
        return dict(hidden=hidden, **{f'{u}/{k}': v for u, o in outs.items() for k, v in o.items()})

    def _route_labels(
        self, inputs: dict, hidden: Tensor, data_samples: SampleList | None = None
    ) -> RoutingResult:
        """The labels' ``<REF>`` states routed over every batch row (teacher-forced tensors)."""
        pack = IndexPack()
        route = self._plan_routes(inputs, data_samples, pack, select_rows=False)
        routed = self._refine_labels(inputs, hidden, route)
        queries = self.router.pack(routed, route, pack.to(hidden.device))
        return RoutingResult(queries=queries, refs=route.refs, warnings=route.warnings)

    def _plan_routes(
        self, inputs: dict, data_samples: SampleList | None, pack: IndexPack, *, select_rows: bool
    ):
        """Route the ``<REF>`` tokens of the labels on the host (``router.plan``)."""
        host = self.host_batch(inputs)
        refs = label_refs(
            host, data_samples, self.tokenizer, set(self.unit_decoders), parser=self.ref_parser
        )
        caps = {u: d.num_queries for u, d in self.unit_decoders.items()}
        return self.router.plan(
            refs, caps, batch_size=host.batch_size, pack=pack, select_rows=select_rows
        )

    def _refine_labels(self, inputs: dict, hidden: Tensor, route: Any) -> Tensor:
        """The teacher-forced states the router reads, after the ``ref_refiner`` (if any)."""
        if self.ref_refiner is None:
            return hidden
        context = RefStateContext(
            answer_mask=torch.from_numpy(self.host_batch(inputs).labels != IGNORE_INDEX),
            key_mask=inputs['attention_mask'].bool(),
            offset=0,
        )
        return self.ref_refiner(hidden, _ref_positions(route.refs, self.router.shift), context)

    def _plan_step(self, inputs: dict, data_samples: SampleList):
        """Everything the loss indexes, planned on the host and sent to the device in one
        pinned, non-blocking copy: the token plan, the routing plan and the device indices."""
        pack = IndexPack()
        tokens = self.plan_tokens(inputs, pack)
        route = self._plan_routes(inputs, data_samples, pack, select_rows=True)
        check_alignment(route, data_samples)
        dev = pack.to(inputs['input_ids'].device)
        return tokens.bind(dev), route, dev

    def loss(self, inputs: dict, data_samples: SampleList) -> dict[str, Tensor]:
        """``w_llm * CE + sum_u w_u * L_u``, every term logged; inactive decoders get fake
        inputs.

        Synchronises with the host at most once: the step is planned on the host from host data
        (``inputs['host']``, the samples' ``label_refs``; parsed/read back when missing), and the
        grouped matching of all decoders needs one device->host copy of their costs (none when
        every phrase group has a single ``<REF>``). Decoders without the two-phase loss API
        synchronise inside their own ``loss``.
        """
        tokens, route, dev = self._plan_step(inputs, data_samples)
        vis, hidden, head, zero = self._llm_hidden(inputs, data_samples, tokens)
        ce = lm_loss(
            hidden, inputs['labels'], head, index=tokens.lm_index, targets=tokens.lm_targets
        )
        losses = {'loss_llm': ce * self.loss_weights['llm']}
        queries = self.router.pack(self._refine_labels(inputs, hidden, route), route, dev)
        losses.update(
            decoder_losses(
                self.unit_decoders,
                self.loss_weights,
                queries,
                route,
                dev,
                hidden,
                vis,
                data_samples,
            )
        )
        losses['loss_llm'] = losses['loss_llm'] + zero
        return losses

    def parse_losses(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """MMEngine's ``parse_losses``, with every logged value read back in one device->host copy
        (the runner's hooks would call ``.item()`` on each: one synchronisation per loss key)."""
        loss, log_vars = super().parse_losses(losses)
        values = torch.stack([v.detach().float().reshape(()) for v in log_vars.values()])
        return loss, dict(zip(log_vars, values.cpu().tolist(), strict=True))

    # ----------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict(self, inputs: dict, data_samples: SampleList) -> SampleList:
        """Greedy generation (KV cache, left-padded batch) -> TRP parse -> route -> decode.

        Writes ``pred_text``, ``pred_answer``, ``pred_instances`` (original pixels; ``labels`` are
        phrase texts, ``units`` the decoder of each entry) and ``warnings`` on each sample. Never
        raises on malformed generations: problems become warnings.
        """
        vis, image_tokens = self.encode_images(inputs, data_samples)
        embeds, _ = self.embed_inputs(inputs, vis, image_tokens, data_samples=data_samples)
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
            r, w, results = self.ref_parser(
                ids, self.tokenizer, known_units=set(self.unit_decoders)
            )
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
        if self.ref_refiner is not None:
            steps = torch.arange(states.shape[1], device=states.device)
            context = RefStateContext(
                # states index 0 is the prompt's last state, 1..n the generated tokens
                answer_mask=(steps[None] >= 1) & (steps[None] <= gen.lengths[:, None]),
                key_mask=torch.cat(
                    [
                        inputs['attention_mask'].bool(),
                        torch.ones_like(gen.tokens, dtype=torch.bool),
                    ],
                    1,
                ),
                offset=embeds.shape[1] - 1,
            )
            states = self.ref_refiner(states, [[r[0] for r in rs] for rs in refs], context)
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


def _ref_positions(routed: list[list[Any]], shift: int) -> list[list[int]]:
    """Per sample, the distinct positions of its routed references' tokens (a reference routed
    to several units is refined once); ``shift`` maps the state the router reads back to its
    reference token (the ``ref_refiner`` contract, as in ``predict``)."""
    return [sorted({r.position + shift for r in refs}) for refs in routed]
