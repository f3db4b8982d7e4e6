"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# The ORL faces live beside the repository (never copied into it): <repo>/../shared/data/orl_faces.
ORL_ROOT = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "orl_faces").resolve()


def require_orl(root: Path) -> Path:
    """``root`` if it holds the ORL faces; else a skip with its reason, or under CI (``CI=true``)
    a failure: CI must never pass by skipping the tests on real faces."""
    if not (root / "s1").is_dir():
        reason = f"ORL faces not found at {root} (expected <repo>/../shared/data/orl_faces/s1..s40)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def orl_requirement():
    """The rule above, for tests that check it."""
    return require_orl


@pytest.fixture(scope="session")
def orl_root() -> Path:
    """The ORL face set (40 identities s1..s40 × 10 grayscale 92×112 PGM)."""
    return require_orl(ORL_ROOT)


@pytest.fixture(scope="session")
def orl_dataset(orl_root: Path):
    """ORL as an evaluation ImageFolderDataset, decoded once into memory for the session."""
    from femb.data import ImageFolderDataset

    return ImageFolderDataset(orl_root, cache=True)


@pytest.fixture(scope="session")
def benchmark():
    """``benchmark(name)``: the module ``benchmarks/<name>.py``, for a test that runs the quick
    version of a benchmark with the benchmark's own code (benchmarks is not a package)."""
    import importlib
    import sys

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # as when a benchmark runs as a script
    return importlib.import_module


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
