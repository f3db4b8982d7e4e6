"""femb train --init-backbone: start from released-style weights, freeze, scale the lr (issue 9)."""

import subprocess

import torch

from femb.backbones import build_backbone
from femb.checkpoint import load_checkpoint
from femb.training.run_dir import read_toml


def test_fine_tune_from_a_plain_state_dict(tmp_path, tiny_train_command):
    torch.manual_seed(7)
    released = build_backbone("iresnet_tiny", embed_dim=16)
    weights = tmp_path / "backbone.pth"  # an arcface_torch-style plain state dict
    torch.save(released.state_dict(), weights)
    run = tmp_path / "run"
    args = [
        *tiny_train_command,
        "--no-dashboard",
        "--init-backbone",
        str(weights),
        "--freeze-backbone-steps",
        "2",
        "--backbone-lr-scale",
        "0.5",
        "--steps",
        "3",
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--run-dir",
        str(run),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    config = read_toml(run / "config.toml")
    assert config["init_backbone"] == str(weights) and config["freeze_backbone_steps"] == 2

    start = {k: v for k, v in released.state_dict().items() if v.is_floating_point()}
    final = load_checkpoint(run, prefer="last")
    trained = final["backbone"]["state_dict"]
    # Three steps, the first two with the backbone frozen: the weights moved only in step 3 …
    moved = [k for k, p in released.named_parameters() if not torch.equal(trained[k], start[k])]
    assert moved
    # … and with the backbone's group at half the head's learning rate.
    groups = final["training"]["optimizer"]["param_groups"]
    lrs = {group["name"]: group["initial_lr"] for group in groups}
    assert lrs["backbone"] == 0.5 * lrs["header"]


def test_frozen_steps_leave_the_backbone_parameters_untouched(tmp_path):
    from torch.utils.data import TensorDataset

    from femb import FaceEmbeddingModel
    from femb.headers import CosFaceHeader

    torch.manual_seed(0)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 4, s=16.0, m=0.2)
    )
    before = {k: p.detach().clone() for k, p in model.backbone.named_parameters()}
    head_before = model.header.weight.detach().clone()
    data = TensorDataset(torch.randn(16, 3, 112, 112), torch.arange(16) % 4)
    model.fit(data, batch_size=8, device="cpu", max_training_steps=2, freeze_backbone_steps=2)
    assert all(torch.equal(p, before[k]) for k, p in model.backbone.named_parameters())
    assert not torch.equal(model.header.weight, head_before)
