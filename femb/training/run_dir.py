"""The run directory: resolved config, metrics.jsonl, checkpoints, TensorBoard events, final weights."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def control(self) -> Path:
        return self.path / "control"

    @property
    def final_backbone(self) -> Path:
        return self.path / "backbone.pt"

    def create(self) -> RunDir:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        return self

    def write_config(self, config: dict) -> None:
        clean = {k: v for k, v in config.items() if v is not None}  # TOML has no null
        tmp = self.config_file.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(clean), encoding="utf-8")
        os.replace(tmp, self.config_file)

    def read_config(self) -> dict:
        return read_toml(self.config_file)


def new_run_dir(name: str = "run", root: str | os.PathLike = "runs") -> RunDir:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with a suffix if two runs start in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    path, counter = base, 1
    while path.exists():
        counter += 1
        path = base.with_name(f"{base.name}-{counter}")
    return RunDir(path).create()


def read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
