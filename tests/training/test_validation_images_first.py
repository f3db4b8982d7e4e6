"""Validation images are decoded before the first step (issue 20's demo overhead, and "check every
input before the first step"): a damaged one stops the run before any training time is spent."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data.pairs import PairsDataset
from femb.data.transforms import normalize
from femb.data.verification_bin import load_verification_bin, write_verification_bin
from femb.evaluation import VerificationEvaluator
from femb.headers import CosFaceHeader
from femb_cli.dashboard.state import progress_text

PAIRS = 6


class CountingImages(torch.utils.data.Dataset):
    def __init__(self, count: int):
        self.pixels = torch.randint(
            0, 256, (count, 3, 112, 112), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
        )
        self.reads = 0

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> torch.Tensor:
        self.reads += 1
        return normalize(self.pixels[index])


def fit_with(val_dataset, tmp_path, callbacks=(), steps: int = 3, evaluation_steps: int = 2):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 112, 112), torch.arange(32) % 4)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=8), CosFaceHeader(8, 4, s=16.0, m=0.2)
    )
    return model.fit(
        data,
        batch_size=8,
        device="cpu",
        run_dir=tmp_path / "run",
        max_training_steps=steps,
        seed=0,
        evaluator=VerificationEvaluator(n_folds=2, batch_size=8),
        val_dataset=val_dataset,
        evaluation_steps=evaluation_steps,
        callbacks=list(callbacks),
    )


def test_every_validation_image_is_read_before_the_first_step_and_once(tmp_path):
    images = CountingImages(2 * PAIRS)
    pairs = PairsDataset(images, np.arange(2 * PAIRS).reshape(-1, 2), np.arange(PAIRS) % 2 == 0)
    events, reads_at_first_step = [], []

    def watch(event):
        events.append(event)
        if event["event"] == "step" and not reads_at_first_step:
            reads_at_first_step.append(images.reads)

    fit_with(pairs, tmp_path, callbacks=[watch], steps=4)
    assert reads_at_first_step == [2 * PAIRS]  # all of them, before step 1
    assert images.reads == 2 * PAIRS  # and never again: two evaluations embed them from memory
    assert [e["step"] for e in events if e["event"] == "eval"] == [2, 4]
    kinds = [e["event"] for e in events]
    reading = [e for e in events if e["event"] == "progress" and e["task"] == "validation images"]
    assert reading[0]["done"] == 0 and reading[-1]["done"] == reading[-1]["total"] == 2 * PAIRS
    assert kinds.index("start") < events.index(reading[-1]) < kinds.index("step")
    assert (
        progress_text(reading[-1])
        == f"reading the validation images at step 0: {2 * PAIRS}/{2 * PAIRS} images"
    )


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_a_damaged_validation_image_stops_the_run_before_its_first_step(tmp_path):
    encoded = [_png(seed) for seed in range(2 * PAIRS)]
    encoded[7] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40  # a PNG signature, then nothing readable
    path = write_verification_bin(tmp_path / "lfw.bin", encoded, [k % 2 == 0 for k in range(PAIRS)])
    events = []
    with pytest.raises(ValueError, match=r"lfw\.bin.*\[7\]"):
        fit_with(load_verification_bin(path), tmp_path, callbacks=[events.append], evaluation_steps=100)
    kinds = [e["event"] for e in events]
    assert "step" not in kinds and kinds[-1] == "end"  # no training time was spent on it
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
