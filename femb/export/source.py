"""What an export reads (a run, a checkpoint, a model object) and where it may write."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from femb.export.graph import ExportError

ONNX_SUFFIX = ".onnx"


@dataclass
class ExportSource:
    backbone: nn.Module
    name: str
    kwargs: dict[str, Any]
    header: dict[str, Any] | None
    header_parameters: int
    training: dict[str, Any] | None
    run_name: str | None
    path: str | None


def resolve_source(source: Any) -> ExportSource:
    """The backbone to export and what is known about it, from any source ``export_onnx`` takes."""
    from femb.model import FaceEmbeddingModel, backbone_from_checkpoint, load_backbone

    if isinstance(source, (str, os.PathLike)):
        backbone, payload = load_backbone(source)
        return _from_payload(backbone, payload)
    if isinstance(source, dict):
        return _from_payload(backbone_from_checkpoint(source), source)
    if isinstance(source, FaceEmbeddingModel):
        header, removed = None, 0
        if source.header is not None:
            removed = sum(p.numel() for p in source.header.parameters())
            try:
                from femb.headers import header_spec

                header = header_spec(source.header)
            except ValueError:  # an unregistered header: still stripped, named by its class
                header = {"name": type(source.header).__name__, "kwargs": {}}
        backbone = source.backbone
    elif isinstance(source, nn.Module):
        header, removed, backbone = None, 0, source
    else:
        raise TypeError(
            f"cannot export {type(source).__name__}: expected a path, a checkpoint dict or a module"
        )
    spec = getattr(backbone, "femb_spec", None) or {"name": type(backbone).__name__, "kwargs": {}}
    return ExportSource(backbone, spec["name"], dict(spec["kwargs"]), header, removed, None, None, None)


def _from_payload(backbone: nn.Module, payload: dict) -> ExportSource:
    header = payload.get("header")
    removed = 0
    if header:
        removed = sum(t.numel() for t in header.get("state_dict", {}).values() if isinstance(t, torch.Tensor))
        header = {"name": header.get("name"), "kwargs": header.get("kwargs", {})}
    spec = payload["backbone"]
    return ExportSource(
        backbone=backbone,
        name=spec["name"],
        kwargs=dict(spec.get("kwargs", {})),
        header=header,
        header_parameters=removed,
        training=payload.get("training"),
        run_name=payload.get("run_name"),
        path=payload.get("path"),
    )


def check_output(output: str | os.PathLike, source_path: str | os.PathLike | None, any_suffix: bool) -> Path:
    """``output`` when an export may write it; an :class:`ExportError` when it would replace its source.

    Refused: the source file itself, any path inside the source's run folder (a run directory, or
    the run a ``checkpoints/*.pt`` belongs to), and, unless ``any_suffix``, a name not ending in
    ``.onnx`` (a typo there would otherwise overwrite whatever the name points at).
    """
    output = Path(output)
    if source_path is not None:
        source = Path(source_path).resolve()
        target = output.resolve()
        run = _run_folder(source)
        if target == source:
            raise ExportError(f"output {output} is the source itself; choose another .onnx path")
        if run is not None and target.is_relative_to(run):
            raise ExportError(
                f"output {output} is inside the source run {run}; write the model outside the run folder"
            )
    if not any_suffix and output.suffix.lower() != ONNX_SUFFIX:
        raise ExportError(f"output {output} does not end in {ONNX_SUFFIX} (pass any_suffix to allow it)")
    return output


def _run_folder(source: Path) -> Path | None:
    if source.is_dir():
        return source
    if source.parent.name == "checkpoints":
        return source.parent.parent
    return None


def default_output_path(
    source: Any, run_name: str | None = None, folder: str | os.PathLike = "exports"
) -> Path:
    """``exports/<run-name>.onnx``: the checkpoint's run name, else the run folder's or file's name."""
    name = run_name
    if not name and isinstance(source, dict):
        name = source.get("run_name") or (name_from_path(source["path"]) if source.get("path") else None)
    if not name and isinstance(source, (str, os.PathLike)):
        name = name_from_path(source)
    if not name and isinstance(source, nn.Module):
        spec = getattr(getattr(source, "backbone", source), "femb_spec", None)
        name = spec["name"] if spec else type(source).__name__.lower()
    return Path(folder) / f"{_safe_name(name or 'model')}{ONNX_SUFFIX}"


def name_from_path(source: str | os.PathLike) -> str:
    """A run's name from its path: the run folder (``run/``, ``run/checkpoints/best.pt``), else the stem."""
    path = Path(source).resolve()
    if path.is_dir():
        return path.name
    if path.parent.name == "checkpoints" and path.stem in ("best", "last"):
        return path.parent.parent.name
    return path.stem


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "model"
