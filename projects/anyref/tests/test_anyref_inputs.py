# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""AnyRef's reference inputs: a real short sound (a numpy chord written as a 16-bit WAV and read
back) through the registered spectrogram encoder and the linear projector; box and image
references through RoIAlign / pooling and the shared projector; the answer format; AVS metric."""

import numpy as np
import pytest
import torch
from torch import nn

from mmrefvlm.datasets.demo import read_wav
from mmrefvlm.datasets.demo.references import wav_bytes
from mmrefvlm.registry import MODELS
from mmrefvlm.structures import RefVLMDataSample, VisualContext
from projects.anyref.anyref_seg import (
    AudioReferenceEncoder,
    AVSMetric,
    ObjAnswerFormat,
    VisualReferenceEncoder,
    pool_grid,
    roi_align,
)
from projects.anyref.anyref_seg.audio import LogMelWindows

RATE = 8000


def chord(freqs, seconds=0.5, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    return (0.8 * wave * np.hanning(len(t))).astype(np.float32)


def wav_round_trip(samples, tmp_path, name):
    path = tmp_path / f'{name}.wav'
    path.write_bytes(wav_bytes(np.round(samples * 32767).astype(np.int16), RATE))
    wave, rate = read_wav(str(path))
    assert rate == RATE and wave.dtype == np.float32 and wave.ndim == 1
    return torch.from_numpy(wave)


def test_log_mel_puts_a_tone_in_its_band(tmp_path):
    low = wav_round_trip(chord([300]), tmp_path, 'low')
    high = wav_round_trip(chord([2500]), tmp_path, 'high')
    feats = LogMelWindows(RATE, num_windows=3, num_mels=32, n_fft=256, hop=64, frames=21)
    spec = feats(torch.stack([low, high]))  # (2, 3, 32, 21)
    assert spec.shape == (2, 3, 32, 21)
    band = spec[:, 1].mean(-1).argmax(-1)  # the loudest mel band of the middle window
    assert band[0] < band[1]  # 300 Hz sits below 2500 Hz on the mel axis


def _samples(sounds):
    out = []
    for refs in sounds:
        sample = RefVLMDataSample()
        sample.audio_refs = refs
        out.append(sample)
    return out


def test_audio_reference_encoder_on_real_sounds(tmp_path):
    torch.manual_seed(0)
    enc = MODELS.build(
        dict(
            type='AudioReferenceEncoder',
            out_channels=24,
            encoder=dict(type='SpectrogramAudioEncoder', out_dim=16, num_windows=3),
        )
    )
    assert isinstance(enc, AudioReferenceEncoder)
    a = wav_round_trip(chord([440, 660]), tmp_path, 'a')
    b = wav_round_trip(chord([1200, 1800]), tmp_path, 'b')
    kw = dict(visual=None, vision_encoder=None, projector=None)
    rows, counts = enc(_samples([[a], [], [a, b]]), **kw)
    assert counts.tolist() == [3, 0, 6] and rows.shape == (9, 24)
    assert torch.isfinite(rows).all()
    torch.testing.assert_close(rows[:3], rows[3:6])  # the same sound, the same rows
    assert (rows[3:6] - rows[6:9]).abs().max() > 1e-3  # another sound, other rows
    # the linear projector maps the encoder's embeddings
    emb = enc.encoder(a[None])[0]
    torch.testing.assert_close(rows[:3], enc.proj(emb))
    # a batch without sounds: no rows, but every parameter stays in the graph
    rows, counts = enc(_samples([[], []]), **kw)
    assert rows.shape == (0, 24) and counts.tolist() == [0, 0]
    (rows.sum() * 0.0).backward()
    assert all(p.grad is not None for p in enc.parameters())


class Identity(nn.Module):
    def forward(self, x):
        return x


def test_visual_references_box_and_image():
    torch.manual_seed(0)
    clip = torch.randn(2, 8, 6, 6)
    enc = VisualReferenceEncoder(size=4, pooling='2d')
    image = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    s0, s1 = RefVLMDataSample(), RefVLMDataSample()
    s0.visual_refs = [{'box': torch.tensor([0.0, 0.5, 0.5, 1.0])}]
    s1.visual_refs = [{'image': image}, {'box': torch.tensor([0.25, 0.0, 1.0, 0.75])}]
    seen = []

    def vision(pixels):
        seen.append(pixels)
        return (
            torch.arange(8 * 36, dtype=torch.float32)
            .view(1, 8, 6, 6)
            .expand(len(pixels), -1, -1, -1)
        )

    rows, counts = enc(
        [s0, s1],
        visual=VisualContext(clip=clip, pyramid=[clip], valid_hw=torch.full((2, 2), 6)),
        vision_encoder=vision,
        projector=Identity(),
    )
    assert counts.tolist() == [16, 32] and rows.shape == (48, 8)
    box0 = roi_align(clip, torch.tensor([[0.0, 0.0, 3.0, 3.0, 6.0]]), 4, 1.0, 2)
    torch.testing.assert_close(rows[:16], box0.flatten(2).transpose(1, 2)[0])
    grid = pool_grid(vision(torch.zeros(1, 3, 12, 12)), 4, '2d')[0]
    torch.testing.assert_close(rows[16:32], grid)
    box1 = roi_align(clip, torch.tensor([[1.0, 1.5, 0.0, 6.0, 4.5]]), 4, 1.0, 2)
    torch.testing.assert_close(rows[32:], box1.flatten(2).transpose(1, 2)[0])
    assert seen[0].shape == (1, 3, 12, 12) and seen[0].dtype == torch.float32  # CLIP-normalised
    with pytest.raises(ValueError):
        VisualReferenceEncoder(pooling='3d')


def test_obj_answer_format():
    fmt = ObjAnswerFormat()
    group = {'units': ['mask'], 'n': 1, 'targets': [0]}
    answer = [
        {'phrase': 'the red circle', 'groups': [group]},
        {'phrase': 'a cross', 'groups': [group]},
    ]
    assert fmt(answer) == 'the red circle<obj>, a cross<obj>.'
    with pytest.raises(ValueError, match='one <obj>'):
        fmt([{'phrase': 'x', 'groups': [{'units': ['mask'], 'n': 2, 'targets': [0, 1]}]}])


def test_avs_metric_by_hand():
    metric = AVSMetric()
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[:2, :] = True  # 8 px, 4 of them right
    iou, f = metric.process_sample(
        {
            'task': 'audio_ref_seg',
            'ori_shape': (4, 4),
            'gt_instances': {'masks': torch.from_numpy(gt[None]), 'units': ['mask']},
            'pred_instances': {'masks': torch.from_numpy(pred[None]), 'units': ['mask']},
        }
    )
    p, r = 0.5, 1.0
    assert iou == pytest.approx(0.5)
    assert f == pytest.approx(1.3 * p * r / (0.3 * p + r))
