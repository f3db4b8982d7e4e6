"""Partial FC through `fit` on one process: it trains, and a run resumed mid-way is exact."""

import pytest
import torch
from torch.utils.data import TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import load_checkpoint
from femb.headers import CosFaceHeader
from femb.training.control import TrainingControl


def make_run(tmp_path, name, **kwargs):
    torch.manual_seed(0)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 100, s=16.0, m=0.2)
    )
    optimizer = torch.optim.SGD(model.params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(40, 3, 112, 112, generator=generator), torch.arange(40) % 20)
    options = dict(batch_size=8, device="cpu", optimizer=optimizer, max_training_steps=6, seed=0)
    options.update(kwargs)
    return model.fit(data, run_dir=tmp_path / name, sample_rate=0.25, **options)


def losses(result):
    return {h["step"]: h["loss"] for h in result.history if h["event"] == "step"}


def test_partial_fc_resumed_mid_way_logs_the_same_losses(tmp_path):
    full = make_run(tmp_path, "full")
    control = TrainingControl()
    stop = lambda e: e["event"] == "step" and e["step"] == 3 and control.request_stop()  # noqa: E731
    make_run(tmp_path, "split", control=control, callbacks=[stop])
    checkpoint = load_checkpoint(tmp_path / "split", prefer="last")
    assert checkpoint["header"]["state_dict"]["weight"].shape == (100, 8)  # the whole head
    assert checkpoint["training"]["head_rows"]["weight"]["momentum_buffer"].shape == (100, 8)
    resumed = make_run(tmp_path, "split", resume=tmp_path / "split")
    after = losses(resumed)
    assert sorted(after) == [4, 5, 6]
    assert after == pytest.approx({k: losses(full)[k] for k in after}, rel=1e-6, abs=1e-6)
