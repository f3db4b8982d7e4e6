"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

# The ORL faces live beside the repository (never copied into it): <repo>/../shared/data/orl_faces.
ORL_ROOT = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "orl_faces").resolve()


@pytest.fixture(scope="session")
def orl_root() -> Path:
    """The ORL face set (40 identities s1..s40 × 10 grayscale 92×112 PGM); skips when absent."""
    if not (ORL_ROOT / "s1").is_dir():
        pytest.skip(f"ORL faces not found at {ORL_ROOT} (expected <repo>/../shared/data/orl_faces/s1..s40)")
    return ORL_ROOT


@pytest.fixture(scope="session")
def orl_dataset(orl_root: Path):
    """ORL as an evaluation ImageFolderDataset, decoded once into memory for the session."""
    from femb.data import ImageFolderDataset

    return ImageFolderDataset(orl_root, cache=True)


@pytest.fixture
def tiny_train_command() -> list[str]:
    """`femb train` in a subprocess, on a net and a data set small enough to take seconds."""
    import sys

    return [
        sys.executable,
        "-m",
        "femb_cli.main",
        "train",
        "--backbone",
        "iresnet_tiny",
        "--embed-dim",
        "16",
        "--data",
        "synthetic:6",
        "--val",
        "synthetic:4",
        "--batch-size",
        "16",
    ]
