# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""``UnitDecoderContract``: the checks every visual-unit decoder (core or plugin) must pass.

Usage (pytest collects the ``test_*`` methods of a ``Test*`` subclass)::

    from mmrefvlm.testing import UnitDecoderContract, tiny_decoder_cfg

    class TestNormalDecoder(UnitDecoderContract):
        unit = 'normal'
        tiny_cfg = dict(type='NormalUnitDecoder', in_channels=32, ...)
        input_kwargs = dict(...)                      # forwarded to make_inputs()

        def expected_output_shapes(self, batch, slots):
            return dict(normals=(batch, slots, 3, 16, 16))

        def check_prediction(self, pred, sample, rescale):
            ...

A plugin unit declares its synthetic targets and the suite runs unchanged::

    def line_targets(frame):  # frame: mmrefvlm.testing.SyntheticFrame, one sample
        return dict(lines=frame.boxes.view(-1, 2, 2))  # (N, 2, 2), square frame

    class TestLineDecoder(UnitDecoderContract):
        unit = 'line'
        synthetic_targets = staticmethod(line_targets)

Inputs that need more than targets (e.g. an extra image in each sample) come from overriding
:meth:`make_inputs` (it must return ``(UnitQueries, VisualContext, samples)`` with at least one
group of two queries in sample 0 at positions 0, 1 and a different group at position 2).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmrefvlm.registry import MODELS
from mmrefvlm.structures import RefVLMDataSample, UnitQueries, VisualContext

from .sync_counter import SyncCounter
from .unit_inputs import SyntheticTargets, demo_unit_inputs, pad_unit_inputs, swap_targets


def _total(outputs: dict[str, Tensor]) -> Tensor:
    total = sum(v.float().sum() for v in outputs.values())
    assert isinstance(total, Tensor), 'a decoder returns at least one output'
    return total


def _assert_finite_scalar(name: str, value: Tensor) -> None:
    assert isinstance(value, Tensor) and value.dim() == 0, f'{name} must be a scalar tensor'
    assert torch.isfinite(value), f'{name} = {value} is not finite'


class UnitDecoderContract:
    """Pytest mixin with the contract tests of ``BaseVisualUnitDecoder``.

    Class attributes / hooks for subclasses:
        unit (str): The decoder's unit name.
        tiny_cfg (dict): Tiny config, built with ``MODELS.build``.
        input_kwargs (dict): Extra arguments of :func:`demo_unit_inputs`.
        synthetic_targets (callable, optional): ``fn(frame: SyntheticFrame) -> dict`` making a
            plugin unit's ``gt_units.<unit>`` fields for one sample (None: a core unit's).
        atol (float): Tolerance of the padding-invariance comparisons.
        expected_output_shapes(batch, slots): dict of output name -> shape (required).
        expected_loss_keys(): set of loss keys, or None to only check the prefix.
        check_prediction(pred, sample, rescale): unit-specific checks of one prediction.
    """

    unit: ClassVar[str]
    tiny_cfg: ClassVar[dict]
    input_kwargs: ClassVar[dict[str, Any]] = {}
    synthetic_targets: ClassVar[SyntheticTargets | None] = None
    atol: ClassVar[float] = 1e-5

    # ------------------------------------------------------------------ hooks
    def build_decoder(self, seed: int = 0):
        """Build the decoder from a copy of ``tiny_cfg`` under ``torch.manual_seed(seed)``."""
        torch.manual_seed(seed)
        decoder = MODELS.build(copy.deepcopy(self.tiny_cfg))
        decoder.init_weights()
        return decoder

    def make_inputs(
        self, **overrides: Any
    ) -> tuple[UnitQueries, VisualContext, list[RefVLMDataSample]]:
        """Demo inputs of this unit (:func:`demo_unit_inputs` with :attr:`synthetic_targets`)."""
        kwargs: dict[str, Any] = {**self.input_kwargs, **overrides}
        targets = type(self).synthetic_targets  # via the class: a plain function stays unbound
        if targets is not None:
            kwargs.setdefault('targets', targets)
        return demo_unit_inputs(self.unit, **kwargs)

    def expected_output_shapes(self, batch: int, slots: int) -> dict[str, tuple[int, ...]]:
        """Shapes of every ``forward`` output for a (batch, slots) query tensor."""
        raise NotImplementedError

    def expected_loss_keys(self) -> set[str] | None:
        """The exact loss keys (None: only the ``loss_<unit>`` prefix is checked)."""
        return None

    def check_prediction(self, pred: InstanceData, sample: RefVLMDataSample, rescale: bool) -> None:
        """Unit-specific checks of one sample's prediction (e.g. coordinates inside the image)."""

    # ------------------------------------------------------------------ tests
    def test_builds_from_tiny_cfg(self):
        from mmrefvlm.models.unit_decoders.base import BaseVisualUnitDecoder

        decoder = self.build_decoder()
        assert isinstance(decoder, BaseVisualUnitDecoder)
        assert type(decoder).unit == self.unit
        assert decoder.in_channels == self.tiny_cfg['in_channels']
        assert sum(p.numel() for p in decoder.parameters()) > 0

    def test_forward_shapes(self):
        decoder = self.build_decoder().eval()
        queries, visual, _ = self.make_inputs()
        out = decoder(queries, visual)
        expected = self.expected_output_shapes(*queries.mask.shape)
        assert {k: tuple(v.shape) for k, v in out.items()} == expected
        for key, val in out.items():
            assert val.is_floating_point() and torch.isfinite(val).all(), key

    def test_loss_keys_prefixed_and_finite(self):
        decoder = self.build_decoder()
        queries, visual, samples = self.make_inputs()
        losses = decoder.loss(queries, visual, samples)
        assert losses, 'loss() returned no loss'
        for key, val in losses.items():
            assert key.startswith(f'loss_{self.unit}'), key
            _assert_finite_scalar(key, val)
        expected = self.expected_loss_keys()
        if expected is not None:
            assert set(losses) == expected

    def test_backward_reaches_every_parameter(self):
        decoder = self.build_decoder()
        queries, visual, samples = self.make_inputs()
        sum(decoder.loss(queries, visual, samples).values()).backward()
        for name, param in decoder.named_parameters():
            if param.requires_grad:
                assert param.grad is not None, f'{name} got no gradient from loss()'
                assert torch.isfinite(param.grad).all(), name

    def test_fake_input_reaches_every_parameter(self):
        # RefVLM keeps an inactive decoder in the graph: one real query, first image, 0 x outputs.
        decoder = self.build_decoder()
        queries, visual, _ = self.make_inputs()
        fake = UnitQueries(
            embeds=queries.embeds[:1, :1] * 0.0,
            mask=torch.ones(1, 1, dtype=torch.bool),
            group_ids=torch.zeros(1, 1, dtype=torch.long),
        )
        vis1 = VisualContext(
            pyramid=tuple(p[:1] for p in visual.pyramid),
            clip=visual.clip[:1],
            valid_hw=visual.valid_hw[:1],
        )
        (_total(decoder(fake, vis1)) * 0.0).backward()
        for name, param in decoder.named_parameters():
            if param.requires_grad:
                assert param.grad is not None, f'{name} is not reached by forward()'
                assert not param.grad.any(), name

    def test_padding_invariance(self):
        decoder = self.build_decoder().eval()
        queries, visual, samples = self.make_inputs()
        padded = pad_unit_inputs(queries, visual, samples)
        out_a, out_b = decoder(queries, visual), decoder(padded[0], padded[1])
        mask_a, mask_b = queries.mask.bool(), padded[0].mask.bool()
        for key in out_a:
            torch.testing.assert_close(
                out_b[key][mask_b],
                out_a[key][mask_a],
                atol=self.atol,
                rtol=1e-4,
                msg=f'padding changed output {key!r}',
            )
        loss_a, loss_b = decoder.loss(queries, visual, samples), decoder.loss(*padded)
        for key in loss_a:
            torch.testing.assert_close(loss_b[key], loss_a[key], atol=self.atol, rtol=1e-4)
        preds_a = decoder.predict(queries, visual, samples)
        preds_b = decoder.predict(*padded)
        assert len(preds_b) == len(preds_a) + 1 and len(preds_b[-1]) == 0
        # preds_b has one extra (empty) sample at the end, checked above.
        for pa, pb in zip(preds_a, preds_b[:-1], strict=True):
            for key in pa.keys():
                val_a, val_b = pa.get(key), pb.get(key)
                if val_a.dtype == torch.bool:  # thresholded outputs: allow boundary flips
                    assert (val_a != val_b).float().mean() < 1e-3, key
                else:
                    torch.testing.assert_close(val_b, val_a, atol=self.atol * 10, rtol=1e-4)

    def test_predict_per_sample(self):
        decoder = self.build_decoder().eval()
        queries, visual, samples = self.make_inputs()
        counts = queries.mask.sum(1).tolist()
        for rescale in (True, False):
            preds = decoder.predict(queries, visual, samples, rescale=rescale)
            assert len(preds) == len(samples)
            for pred, sample, num in zip(preds, samples, counts, strict=True):
                assert isinstance(pred, InstanceData)
                assert len(pred) == num
                assert pred.scores.shape == (num,) and pred.scores.is_floating_point()
                self.check_prediction(pred, sample, rescale)

    def test_matching_permutes_within_groups(self):
        decoder = self.build_decoder().eval()
        queries, visual, samples = self.make_inputs()
        groups = queries.group_ids[0].tolist()
        assert groups[0] == groups[1] != groups[2], f'need groups [g, g, h, ...], got {groups}'

        def total(batch_samples):
            with torch.no_grad():
                return float(sum(decoder.loss(queries, visual, batch_samples).values()))

        base = total(samples)
        same = total(swap_targets(samples, self.unit, 0, 0, 1))
        cross = total(swap_targets(samples, self.unit, 0, 1, 2))
        assert abs(same - base) <= 1e-5 * max(1.0, abs(base)), (base, same)
        assert abs(cross - base) > 1e-4 * max(1.0, abs(base)), (base, cross)

    def test_deterministic_under_seed(self):
        dec_a, dec_b = self.build_decoder(seed=3), self.build_decoder(seed=3)
        for (name, pa), pb in zip(
            dec_a.state_dict().items(), dec_b.state_dict().values(), strict=True
        ):
            assert torch.equal(pa, pb), name
        queries, visual, _ = self.make_inputs()
        torch.manual_seed(7)
        out_a = dec_a.train()(queries, visual)
        torch.manual_seed(7)
        out_b = dec_b.train()(queries, visual)
        for key in out_a:
            assert torch.equal(out_a[key], out_b[key]), key

    def test_loss_with_zero_queries_keeps_keys_and_graph(self):
        # Not called by RefVLM (it uses the fake-input path), but must not break: same keys,
        # zero values, every parameter still reached (DDP-safe).
        decoder = self.build_decoder()
        keys = set(decoder.loss(*self.make_inputs()))
        decoder.zero_grad()
        queries, visual, samples = self.make_inputs(num_queries=(0, 0))
        losses = decoder.loss(queries, visual, samples)
        assert set(losses) == keys
        assert all(float(v.detach()) == 0.0 for v in losses.values())
        sum(losses.values()).backward()
        assert all(p.grad is not None for p in decoder.parameters() if p.requires_grad)

    def test_bfloat16_loss_and_predict(self):
        decoder = self.build_decoder().to(torch.bfloat16)
        queries, visual, samples = self.make_inputs()
        queries = UnitQueries(queries.embeds.bfloat16(), queries.mask, queries.group_ids)
        visual = VisualContext(
            tuple(p.bfloat16() for p in visual.pyramid), visual.clip.bfloat16(), visual.valid_hw
        )
        losses = decoder.loss(queries, visual, samples)
        for key, val in losses.items():
            _assert_finite_scalar(key, val)
        sum(losses.values()).backward()
        for pred in decoder.predict(queries, visual, samples):
            for key, val in pred.items():
                assert val.dtype in (torch.float32, torch.bool), (key, val.dtype)

    def test_rejects_misaligned_targets(self):
        decoder = self.build_decoder()
        queries, visual, samples = self.make_inputs()
        broken = [copy.deepcopy(s) for s in samples]
        gt = broken[0].gt_units.get(self.unit)
        broken[0].gt_units.set_field(gt[: len(gt) - 1], self.unit)
        try:
            decoder.loss(queries, visual, broken)
        except ValueError:
            return
        raise AssertionError('loss() accepted a sample with fewer targets than queries')

    def test_two_phase_loss_reads_nothing_back_with_a_host_layout(self):
        # Decoders with ``loss_costs`` / ``loss_assigned``: given the host layout RefVLM plans,
        # the loss needs at most the one transfer of the matching costs (counted on CPU tensors as
        # if they were on an accelerator) and gives the same losses. One-call decoders: skipped.
        from mmrefvlm.models.matchers import query_layout
        from mmrefvlm.models.unit_decoders.base import has_two_phase_loss

        decoder = self.build_decoder().eval()
        if not has_two_phase_loss(decoder):
            return
        queries, visual, samples = self.make_inputs()
        planned = UnitQueries(
            queries.embeds, queries.mask, queries.group_ids, layout=query_layout(queries)
        )
        expected = decoder.loss(queries, visual, samples)
        with SyncCounter() as counter:
            losses = decoder.loss(planned, visual, samples)
        assert counter.num_syncs <= 1 and counter.num_h2d_pageable == 0, counter.report()
        assert list(losses) == list(expected)
        for key, val in losses.items():
            torch.testing.assert_close(val, expected[key], atol=self.atol, rtol=1e-5)
