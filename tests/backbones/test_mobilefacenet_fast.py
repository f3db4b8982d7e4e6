"""mobilefacenet_fast, the CPU default: shape, size, its cheap 56×56 stage, ONNX export."""

import onnx
import pytest
import torch
from torch import nn

from femb.backbones import build_backbone, list_backbones
from femb.export import export_onnx
from femb.export.parity import face_batch
from femb.training.config import TrainConfig


def test_registered_and_the_cpu_default():
    assert "mobilefacenet_fast" in list_backbones()
    assert TrainConfig().backbone == "mobilefacenet_fast"


def test_shape_and_parameter_count():
    model = build_backbone("mobilefacenet_fast", embed_dim=128)
    assert sum(p.numel() for p in model.parameters()) == 302_976
    assert model(torch.randn(2, 3, 112, 112)).shape == (2, 128)
    assert build_backbone("mobilefacenet_fast", embed_dim=64)(torch.randn(2, 3, 112, 112)).shape == (2, 64)


def test_nothing_wider_than_the_stem_runs_at_56x56():
    """The design's point: the full-resolution layers are what a CPU step pays for."""
    model = build_backbone("mobilefacenet_fast", embed_dim=32)
    widths: dict[int, int] = {}

    def record(module, inputs, output):
        if output.dim() == 4:
            widths[output.shape[-1]] = max(widths.get(output.shape[-1], 0), output.shape[1])

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.PReLU)):
            module.register_forward_hook(record)
    model(torch.randn(2, 3, 112, 112))
    assert widths[56] == 32 and max(widths) == 56
    assert widths[7] == 256  # the GDC tail's input width


def test_blocks_are_checked():
    with pytest.raises(ValueError, match="one count per stage"):
        build_backbone("mobilefacenet_fast", blocks=(1, 2, 2, 1))


def test_onnx_export_parity(tmp_path):
    torch.manual_seed(0)
    model = build_backbone("mobilefacenet_fast", embed_dim=32)
    # BatchNorm statistics from faces, so that eval-mode embeddings are not near zero.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model.train()((face_batch(4).float() - 127.5) / 127.5)
    report = export_onnx(model.eval(), tmp_path / "fast.onnx", parity_batches=(1, 8))
    onnx.checker.check_model(onnx.load(str(report.path)), full_check=True)
    assert report.parity_ok and report.min_cosine >= 0.9999
