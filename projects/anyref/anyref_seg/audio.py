# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""Audio encoders for AnyRef's audio references. ImageBind-H's audio tower (the paper's, frozen)
cannot be downloaded here; ``SpectrogramAudioEncoder`` is the small default and
``SpectrogramViTAudioEncoder`` has ImageBind-H audio's shapes (for paper-scale configs and their
parameter counts). Both are in ``MODELS``: a config swaps one for the other, or for a wrapper of
real ImageBind weights, by its ``type``."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmrefvlm.registry import MODELS


def mel_filterbank(num_mels: int, n_fft: int, sample_rate: int) -> Tensor:
    """(num_mels, n_fft // 2 + 1) triangular mel filters (HTK mel scale, area not normalised)."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = hz(np.linspace(mel(0.0), mel(sample_rate / 2), num_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / np.maximum(centre - lower, 1e-9)
    down = (upper - freqs[None]) / np.maximum(upper - centre, 1e-9)
    return torch.tensor(np.clip(np.minimum(up, down), 0, None), dtype=torch.float32)


class LogMelWindows(nn.Module):
    """Waveform -> ``num_windows`` log-mel spectrograms of equal length (ImageBind: a clip is
    padded and cut into fixed windows, one embedding each).

    Args:
        sample_rate (int): Input sample rate.
        num_windows (int): Windows per clip (the paper: 3 per 5-s clip).
        num_mels (int): Mel bands.
        n_fft (int): FFT size.
        hop (int): Hop length in samples.
        frames (int): Frames per window (the clip is zero-padded / cut to
            ``num_windows * frames`` frames).
    """

    def __init__(
        self,
        sample_rate: int,
        num_windows: int,
        num_mels: int,
        n_fft: int,
        hop: int,
        frames: int,
    ) -> None:
        super().__init__()
        self.num_windows, self.n_fft, self.hop, self.frames = num_windows, n_fft, hop, frames
        self.register_buffer('window', torch.hann_window(n_fft), persistent=False)
        self.register_buffer('mel', mel_filterbank(num_mels, n_fft, sample_rate), False)

    def forward(self, wave: Tensor) -> Tensor:
        """(N, T) float waveforms -> (N, num_windows, num_mels, frames) log-mel."""
        spec = (
            torch.stft(
                wave.float(), self.n_fft, self.hop, window=self.window, return_complex=True
            ).abs()
            ** 2
        )  # (N, F, frames_total)
        logmel = torch.log(self.mel @ spec + 1e-6)
        total = self.num_windows * self.frames
        logmel = F.pad(logmel, (0, max(total - logmel.shape[-1], 0)))[..., :total]
        n, m, _ = logmel.shape
        return logmel.view(n, m, self.num_windows, self.frames).permute(0, 2, 1, 3)


@MODELS.register_module()
class SpectrogramAudioEncoder(BaseModule):
    """A small audio encoder: log-mel windows, each standardised (loudness carries no meaning
    here) -> 3 conv blocks -> mean pool -> ``out_dim``.

    Args:
        out_dim (int): Embedding width per window. Defaults to 128.
        sample_rate (int): Defaults to 8000 (the demo's sounds).
        num_windows (int): Embeddings per clip. Defaults to 3 (the paper's).
        num_mels (int): Defaults to 32.
        n_fft (int): Defaults to 256.
        hop (int): Defaults to 64.
        frames (int): Frames per window. Defaults to 21 (0.5 s at 8 kHz / hop 64 in 3 windows).
        channels (tuple[int, int, int]): Conv widths. Defaults to (16, 32, 64).
    """

    def __init__(
        self,
        out_dim: int = 128,
        *,
        sample_rate: int = 8000,
        num_windows: int = 3,
        num_mels: int = 32,
        n_fft: int = 256,
        hop: int = 64,
        frames: int = 21,
        channels: tuple[int, int, int] = (16, 32, 64),
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.sample_rate, self.num_windows, self.out_dim = sample_rate, num_windows, out_dim
        self.features = LogMelWindows(sample_rate, num_windows, num_mels, n_fft, hop, frames)
        layers: list[nn.Module] = []
        cin = 1
        for c in channels:
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.GELU(), nn.MaxPool2d(2, ceil_mode=True)]
            cin = c
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(cin, out_dim)

    def forward(self, wave: Tensor) -> Tensor:
        """(N, T) float waveforms at ``sample_rate`` -> (N, num_windows, out_dim)."""
        spec = self.features(wave)  # (N, W, M, F)
        spec = (spec - spec.mean((2, 3), keepdim=True)) / (spec.std((2, 3), keepdim=True) + 1e-5)
        n, w = spec.shape[:2]
        x = self.convs(spec.reshape(n * w, 1, *spec.shape[2:]))
        return self.head(x.mean((2, 3))).view(n, w, -1)


@MODELS.register_module()
class SpectrogramViTAudioEncoder(BaseModule):
    """ImageBind-H's audio tower shape: a ViT over a 128-band log-mel window (16 x 16 patches,
    stride 10), a CLS token, ``depth`` pre-norm blocks, LayerNorm and a linear head to
    ``out_dim`` (ImageBind: 768 wide, 12 blocks, 12 heads, 1024-d output, 2-s windows at 16 kHz
    of 204 frames). Random weights here; used for paper-scale configs and parameter counts.

    Args:
        out_dim (int): Output width. Defaults to 1024.
        embed_dim (int): Defaults to 768.
        depth (int): Defaults to 12.
        num_heads (int): Defaults to 12.
        num_mels (int): Defaults to 128.
        frames (int): Frames per window. Defaults to 204.
        patch (int): Defaults to 16.
        stride (int): Defaults to 10.
        sample_rate (int): Defaults to 16000.
        num_windows (int): Defaults to 3.
        hop (int): Defaults to 160 (10 ms).
        n_fft (int): Defaults to 400.
    """

    def __init__(
        self,
        out_dim: int = 1024,
        *,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        num_mels: int = 128,
        frames: int = 204,
        patch: int = 16,
        stride: int = 10,
        sample_rate: int = 16000,
        num_windows: int = 3,
        hop: int = 160,
        n_fft: int = 400,
        init_cfg=None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.sample_rate, self.num_windows, self.out_dim = sample_rate, num_windows, out_dim
        self.features = LogMelWindows(sample_rate, num_windows, num_mels, n_fft, hop, frames)
        self.patch_embed = nn.Conv2d(1, embed_dim, patch, stride=stride, bias=False)
        grid = (math.floor((num_mels - patch) / stride) + 1) * (
            math.floor((frames - patch) / stride) + 1
        )
        self.cls = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos = nn.Parameter(torch.zeros(1, grid + 1, embed_dim))
        block = nn.TransformerEncoderLayer(
            embed_dim, num_heads, 4 * embed_dim, 0.0, 'gelu', batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, out_dim, bias=False)

    def forward(self, wave: Tensor) -> Tensor:
        """(N, T) float waveforms -> (N, num_windows, out_dim)."""
        spec = self.features(wave)
        n, w = spec.shape[:2]
        x = self.patch_embed(spec.reshape(n * w, 1, *spec.shape[2:])).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))[:, 0]
        return self.head(x).view(n, w, -1)
