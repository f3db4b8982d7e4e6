"""Checkpoints hold finite weights and buffers only; a stop names the step of one that does (issue 22.3).

A learning rate far too high first blows up BatchNorm's running variance while the training-mode
loss (which normalises with the batch's own statistics) still looks finite: the checkpoint
written at that step used to hold inf and was still called "the last good checkpoint".
"""

import pytest
import torch
from torch.utils.data import TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import load_checkpoint, save_checkpoint
from femb.headers import CosFaceHeader
from femb.training.events import read_events


def diverging_run(run_dir, resume=None, lr=1e6):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 112, 112, generator=generator), torch.arange(32) % 4)
    header = CosFaceHeader(8, 4, s=16.0, m=0.2)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=8), header)
    optimizer = torch.optim.SGD(model.params, lr=lr, momentum=0.9)
    return model.fit(
        data,
        batch_size=8,
        device="cpu",
        optimizer=optimizer,
        run_dir=run_dir,
        max_training_steps=12,
        checkpoint_every=1,
        resume=resume,
    )


def all_finite(payload: dict) -> bool:
    tensors = [*payload["backbone"]["state_dict"].values(), *payload["header"]["state_dict"].values()]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def end_message(run_dir) -> str:
    return read_events(run_dir / "metrics.jsonl")[-1]["message"]


def test_a_diverging_run_keeps_only_finite_checkpoints_and_names_their_step(tmp_path):
    run = tmp_path / "run"
    result = diverging_run(run)
    assert result.reason == "nonfinite"
    saved = load_checkpoint(run, prefer="last")
    assert all_finite(saved), "last.pt holds NaN or inf"
    step = saved["training"]["step"]
    assert step < result.step
    assert f"the last checkpoint (step {step}, finite) is intact" in end_message(run)


def test_a_resumed_run_that_diverges_again_names_the_step_it_resumed_from(tmp_path):
    run = tmp_path / "run"
    diverging_run(run)
    step = load_checkpoint(run, prefer="last")["training"]["step"]
    result = diverging_run(run, resume=run)
    assert result.reason == "nonfinite"
    message = end_message(run)
    assert "None" not in message
    assert f"(step {step}, finite)" in message
    assert all_finite(load_checkpoint(run, prefer="last"))


def test_a_checkpoint_holding_inf_is_refused_on_resume(tmp_path):
    run = tmp_path / "run"
    diverging_run(run, lr=0.01)  # a sane run: 12 finite checkpoints
    path = run / "checkpoints" / "last.pt"
    payload = load_checkpoint(path)
    weights = payload["backbone"]["state_dict"]
    weights[next(k for k in weights if k.endswith("running_var"))].fill_(float("inf"))
    save_checkpoint({k: v for k, v in payload.items() if k != "path"}, path)
    with pytest.raises(ValueError, match="non-finite values .*running_var.*cannot be resumed"):
        diverging_run(run, resume=run)
