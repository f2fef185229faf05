# Copyright (c) mmrefvlm contributors. Licensed under the Apache License 2.0.
"""tools/misc/prepare_weights.py never downloads in tests: offline it prints what to place where;
the conversion step runs on a tiny open_clip checkpoint; the online path is driven with a fake
hub client."""

import io
import json

import pytest
import torch

from mmrefvlm.testing.tool_helpers import load_tool
from mmrefvlm.utils.paper_assets import PAPER_WEIGHTS


@pytest.fixture
def tool(monkeypatch):
    """The tool module, with every network entry point made to fail loudly."""
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError('prepare_weights tried to use the network in a test')

    for name in ('snapshot_download', 'HfApi'):
        monkeypatch.setattr(huggingface_hub, name, no_network)
    module = load_tool('misc/prepare_weights')
    monkeypatch.setattr(module.urllib.request, 'urlopen', no_network)
    return module


def _tiny_open_clip(path):
    """An open_clip-layout ConvNeXt (2 stages would not match ConvNeXt; 4 tiny ones)."""
    from tests.test_models.test_vision.test_open_clip_convnext_converter import (
        as_open_clip,
        make_timm_convnext,
    )

    path.parent.mkdir(parents=True)
    torch.save(as_open_clip(make_timm_convnext([1, 1, 1, 1], [8, 16, 24, 32])), path)


def test_offline_prints_what_to_place_where(tool, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    root = tmp_path / 'ckpt'
    assert tool.main(['--root', str(root), '--stage', 'stage3_sam']) == 1
    out = capsys.readouterr().out
    for asset in PAPER_WEIGHTS:
        assert f'missing: {asset.name} ({asset.licence}, {asset.size})' in out
    assert 'place the files of hub repo lmsys/vicuna-7b-v1.5 (config.json' in out
    assert f'in {root}/vicuna-7b-v1.5/' in out
    assert f'in {root}/clip-vit-large-patch14-336/' in out
    convnext = next(a for a in PAPER_WEIGHTS if a.convert)
    assert f'place {convnext.repo_id} (file ' in out and f'{root}/CLIP-ConvNext/' in out
    assert (
        f'open_clip_convnext_to_hf.py {root}/CLIP-ConvNext/open_clip_pytorch_model.bin '
        f'{root}/clip-convnext-large-512-hf --image-size 512'
    ) in out
    sam = 'https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth'
    assert f'download {sam} to {root}/sam_vit_l_0b3195.pth' in out
    assert '4 asset(s) missing' in out and not root.exists()  # nothing written


def test_offline_conversion_of_a_placed_open_clip_checkpoint(tool, tmp_path, capsys):
    root = tmp_path / 'ckpt'
    _tiny_open_clip(root / 'CLIP-ConvNext' / 'open_clip_pytorch_model.bin')
    assert tool.main(['--root', str(root), '--only', 'clip-convnext-large', '--offline']) == 0
    out_dir = root / 'clip-convnext-large-512-hf'
    config = json.loads((out_dir / 'config.json').read_text())
    assert config['hidden_sizes'] == [8, 16, 24, 32] and config['image_size'] == 512
    assert (out_dir / 'model.safetensors').is_file()
    assert 'converting' in capsys.readouterr().out
    # a second run finds it ready and does nothing
    assert tool.main(['--root', str(root), '--only', 'clip-convnext-large', '--offline']) == 0
    assert f'ok: clip-convnext-large in {out_dir}' in capsys.readouterr().out


def test_online_fetches_one_weight_format_then_converts(tool, tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def list_repo_files(self, repo_id):
            return ['config.json', 'model.safetensors', 'pytorch_model.bin']

    def fake_snapshot(repo_id, local_dir, allow_patterns):
        calls.append((repo_id, allow_patterns))
        if 'convnext' in repo_id:
            _tiny_open_clip(tmp_path / 'ckpt' / 'CLIP-ConvNext' / 'open_clip_pytorch_model.bin')

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, 'HfApi', FakeApi)
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', fake_snapshot)
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('TRANSFORMERS_OFFLINE', raising=False)
    root = str(tmp_path / 'ckpt')
    assert tool.main(['--root', root, '--only', 'clip-convnext-large']) == 0
    ((repo, patterns),) = calls
    assert repo.startswith('laion/CLIP-convnext_large') and '*.safetensors' in patterns
    assert '*.bin' not in patterns  # one weight format only
    assert (tmp_path / 'ckpt' / 'clip-convnext-large-512-hf' / 'config.json').is_file()


class _Response(io.BytesIO):
    """What ``urllib.request.urlopen`` returns, with a ``Content-Length`` header."""

    def __init__(self, body: bytes, length: int | None) -> None:
        super().__init__(body)
        self.headers = {} if length is None else {'Content-Length': str(length)}


def _checkpoint_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({'image_encoder.weight': torch.ones(2, 2)}, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    'body, length, error',
    [
        (_checkpoint_bytes(), len(_checkpoint_bytes()), None),
        (_checkpoint_bytes(), None, None),  # no header: the load check still runs
        (_checkpoint_bytes()[:100], len(_checkpoint_bytes()), 'stopped after 100 of'),
        (b'<html>rate limited</html>', 25, 'not a readable weights-only checkpoint'),
    ],
)
def test_url_download_is_checked_before_it_lands(tool, tmp_path, monkeypatch, body, length, error):
    monkeypatch.setattr(tool.urllib.request, 'urlopen', lambda url: _Response(body, length))
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('TRANSFORMERS_OFFLINE', raising=False)
    (sam,) = [a for a in PAPER_WEIGHTS if a.url]
    target = tmp_path / sam.folder
    if error is None:
        tool.download(sam, str(tmp_path))
        assert torch.load(target, weights_only=True)['image_encoder.weight'].sum() == 4
    else:
        with pytest.raises(SystemExit, match=error):
            tool.download(sam, str(tmp_path))
        assert not target.exists()  # the configs never see a broken file
    assert not (tmp_path / (sam.folder + '.part')).exists()
