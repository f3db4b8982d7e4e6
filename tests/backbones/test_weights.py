"""Foreign backbone weights: arcface_torch (iresnet, mbf), MagFace, femb checkpoints; unsafe files refused.

``ArcfaceMbf`` below is written for this test from reading arcface_torch's
``backbones/mobilefacenet.py`` (module order and attribute names: a ModuleList ``layers`` of
ConvBlock / DepthWise / Residual whose own Sequential is also called ``layers``, then
``conv_sep`` and the GDC tail ``features``). Every weight and BatchNorm statistic is randomised,
so a wrong key mapping (two tensors of the same shape swapped) changes the outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.backbones.weights import (
    WeightsError,
    load_backbone_weights,
    read_backbone_weights,
    rename_arcface_mbf,
)
from femb.checkpoint import save_checkpoint


# ------------------------------------------------------------------ arcface_torch mbf, independently
class _Seq(nn.Module):
    """arcface_torch's blocks keep their layers in a Sequential attribute named ``layers``."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.layers = nn.Sequential(*modules)

    def forward(self, x):
        return self.layers(x)


def _conv(i, o, k=1, s=1, p=0, g=1, act=True):  # ConvBlock (act) / LinearBlock (no act)
    parts = [nn.Conv2d(i, o, k, s, p, groups=g, bias=False), nn.BatchNorm2d(o)]
    return _Seq(*(parts + [nn.PReLU(o)] if act else parts))


class _DepthWise(_Seq):
    def __init__(self, i, o, groups, stride, residual):
        super().__init__(
            _conv(i, groups), _conv(groups, groups, 3, stride, 1, groups), _conv(groups, o, act=False)
        )
        self.residual = residual

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


def _residual(c, n, groups):
    return _Seq(*[_DepthWise(c, c, groups, 1, True) for _ in range(n)])


class ArcfaceMbf(nn.Module):
    def __init__(self, num_features=512, blocks=(1, 4, 6, 2), scale=2):
        super().__init__()
        a, b = 64 * scale, 128 * scale
        stem = _conv(a, a, 3, 1, 1, 64) if blocks[0] == 1 else _residual(a, blocks[0], 128)
        self.layers = nn.ModuleList(
            [
                _conv(3, a, 3, 2, 1),
                stem,
                _DepthWise(a, a, 128, 2, False),
                _residual(a, blocks[1], 128),
                _DepthWise(a, b, 256, 2, False),
                _residual(b, blocks[2], 256),
                _DepthWise(b, b, 512, 2, False),
                _residual(b, blocks[3], 256),
            ]
        )
        self.conv_sep = _conv(b, 512)
        self.features = _Seq(
            _conv(512, 512, 7, 1, 0, 512, act=False),
            nn.Flatten(),
            nn.Linear(512, num_features, bias=False),
            nn.BatchNorm1d(num_features),
        )

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


# ------------------------------------------------------------------ helpers
def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics everywhere, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var") or (tensor.ndim == 1 and name.endswith("weight")):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.ndim == 1:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def faces(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 112, 112, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)


def same_outputs(a: nn.Module, b: nn.Module) -> None:
    x = faces()
    with torch.no_grad():
        expected, got = a.eval()(x), b.eval()(x)
    assert expected.abs().mean() > 1e-3  # a meaningful signal, not BatchNorm-flattened zeros
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ arcface_torch mbf
def test_mbf_key_table_by_hand():
    """Keys written out from reading arcface_torch's source, one per rule."""
    hand = {
        "layers.0.layers.0.weight": "body.0.0.weight",  # first ConvBlock: conv
        "layers.1.layers.2.weight": "body.1.2.weight",  # the stem's second ConvBlock: PReLU
        "layers.2.layers.1.layers.1.running_var": "body.2.layers.1.1.running_var",  # DepthWise's dw BN
        "layers.3.layers.3.layers.2.layers.0.weight": "body.3.3.layers.2.0.weight",  # Residual block 3
        "conv_sep.layers.2.weight": "body.8.2.weight",
        "features.layers.0.layers.1.num_batches_tracked": "features.0.1.num_batches_tracked",
        "features.layers.2.weight": "features.2.weight",  # Linear
        "features.layers.3.running_mean": "features.3.running_mean",  # BatchNorm1d
    }
    renamed = rename_arcface_mbf({key: torch.zeros(1) for key in hand})
    assert list(renamed) == list(hand.values())


@pytest.mark.parametrize(
    "arcface_kwargs, femb_kwargs",
    [
        ({}, {}),  # get_mbf defaults: scale 2, blocks (1, 4, 6, 2)
        ({"blocks": (2, 1, 2, 1), "scale": 1}, {"blocks": (2, 1, 2, 1), "scale": 1}),  # a Residual stem
    ],
    ids=["mbf", "residual-stem"],
)
def test_arcface_mbf_state_dict_loads_and_matches(tmp_path, arcface_kwargs, femb_kwargs):
    reference = randomise(ArcfaceMbf(num_features=64, **arcface_kwargs))
    path = tmp_path / "backbone.pth"
    torch.save(reference.state_dict(), path)

    model = build_backbone("mobilefacenet", embed_dim=64, weights=path, **femb_kwargs)
    same_outputs(reference, model)
    assert "arcface_torch mbf" in model.femb_weights and str(path) in model.femb_weights
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


def test_load_backbone_weights_mbf_by_arcface_name_infers_embed_dim(tmp_path):
    reference = randomise(ArcfaceMbf(num_features=128))
    path = tmp_path / "backbone.pth"
    torch.save(reference.state_dict(), path)
    state = load_backbone_weights("mbf", path)
    model = build_backbone("mobilefacenet", embed_dim=128)
    model.load_state_dict(state, strict=True)
    same_outputs(reference, model)


# ------------------------------------------------------------------ iresnet, MagFace, DDP, femb
@pytest.fixture(scope="module")
def iresnet():
    return randomise(build_backbone("iresnet_tiny", embed_dim=32), seed=3)


def test_iresnet_plain_state_dict_loads_strictly(tmp_path, iresnet):
    path = tmp_path / "backbone.pth"
    torch.save(dict(iresnet.state_dict()), path)  # what arcface_torch writes: a plain dict of tensors
    model = build_backbone("iresnet_tiny", embed_dim=32, weights=path)
    same_outputs(iresnet, model)
    assert read_backbone_weights(path).layout == "state dict"


def test_magface_checkpoint_unwraps_and_drops_its_head(tmp_path, iresnet):
    state = {f"module.features.{k}": v for k, v in iresnet.state_dict().items()}
    state["module.fc.weight"] = torch.randn(100, 32)  # MagFace's class centres: not the backbone's
    path = tmp_path / "magface_epoch_00025.pth"
    torch.save({"epoch": 25, "arch": "iresnet_tiny", "state_dict": state}, path)
    model = build_backbone("iresnet_tiny", embed_dim=32, weights=path)
    same_outputs(iresnet, model)
    assert "MagFace" in model.femb_weights


def test_ddp_prefixed_state_dict(tmp_path, iresnet):
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in iresnet.state_dict().items()}, path)
    same_outputs(iresnet, build_backbone("iresnet_tiny", embed_dim=32, weights=path))


def test_femb_checkpoint_file_and_run_directory(tmp_path, iresnet):
    model = FaceEmbeddingModel(iresnet)
    run = tmp_path / "run"
    save_checkpoint(model.checkpoint_payload(run_name="run"), run / "checkpoints" / "best.pt")
    for source in (run, run / "checkpoints" / "best.pt"):
        loaded = build_backbone("iresnet_tiny", embed_dim=32, weights=source)
        same_outputs(iresnet, loaded)
        assert "femb checkpoint, iresnet_tiny" in loaded.femb_weights


# ------------------------------------------------------------------ errors
def test_other_architecture_names_first_mismatched_key(tmp_path, iresnet):
    path = tmp_path / "tiny.pth"
    torch.save(iresnet.state_dict(), path)
    with pytest.raises(
        ValueError,
        match=r"first mismatch at key 'conv1.weight': the file has shape \(8, 3, 3, 3\), "
        r"the model expects \(64, 3, 3, 3\)",
    ):
        build_backbone("iresnet18", embed_dim=32, weights=path)
    with pytest.raises(
        WeightsError, match=r"mobilefacenet.*first mismatch at key 'body.0.0.weight': missing"
    ):
        build_backbone("mobilefacenet", embed_dim=32, weights=path)


def test_other_embedding_size_names_key_and_both_shapes(tmp_path, iresnet):
    path = tmp_path / "d32.pth"
    torch.save(iresnet.state_dict(), path)
    with pytest.raises(
        ValueError,
        match=r"embed_dim 64.*'fc.weight': the file has shape \(32, 3136\), "
        r"the model expects \(64, 3136\)",
    ):
        build_backbone("iresnet_tiny", embed_dim=64, weights=path)


def test_unsafe_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": Payload()}, path)
    with pytest.raises(WeightsError, match="refused to load.*would run code"):
        build_backbone("iresnet_tiny", embed_dim=32, weights=path)
    assert not marker.exists()
    # The control: an unsafe load of the same file does run the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file"):
        load_backbone_weights("iresnet_tiny", path)
    with pytest.raises(WeightsError, match="no such file"):
        load_backbone_weights("iresnet_tiny", Path(tmp_path / "missing.pth"))
