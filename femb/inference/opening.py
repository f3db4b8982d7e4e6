"""Opening a model by its path: an ONNX file in onnxruntime, a femb checkpoint or run in PyTorch."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from femb.fileio import require_regular_file
from femb.inference.embedder import DEFAULT_BATCH_SIZE, BatchEmbedder, ModelLoadError, OnnxEmbedder

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


class TorchEmbedder(BatchEmbedder):
    """The same interface over a PyTorch backbone (a checkpoint or run directory)."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        payload: dict | None = None,
    ):
        self.device = torch.device(device)
        self.backbone = backbone.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.payload = payload or {}
        self.provider = f"pytorch-{self.device.type}"
        self.note = ""
        spec = self.payload.get("backbone", {})
        self.embed_dim = int(spec.get("kwargs", {}).get("embed_dim", 0))
        self.metadata = {
            "backbone": spec.get("name", type(backbone).__name__),
            "run_name": self.payload.get("run_name") or "",
        }
        self.name = self.metadata["run_name"] or self.metadata["backbone"]

    @torch.no_grad()
    def _embed_batch(self, faces: torch.Tensor, flip: bool) -> np.ndarray:
        from femb.model import embed_batch

        return embed_batch(self.backbone, faces.to(self.device), flip).cpu().numpy()

    def describe(self) -> str:
        return f"PyTorch ({self.device.type})"


def open_embedder(
    source: str | os.PathLike,
    provider: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    bgr: bool | None = None,
) -> OnnxEmbedder | TorchEmbedder:
    """An :class:`OnnxEmbedder` for an ONNX file, a :class:`TorchEmbedder` for a checkpoint or run directory.

    ``mean``, ``std``, ``bgr``: preprocessing overrides for an ONNX model (see :class:`OnnxEmbedder`).
    Raises :class:`ModelLoadError` (one-line message) for a missing file or one that is neither.
    """
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or directory")
    if not path.is_dir():
        require_regular_file(path, "model")  # a FIFO or a device would hang the reads below
    overrides = {"mean": mean, "std": std, "bgr": bgr}
    if path.is_dir() or zipfile.is_zipfile(path) or path.name.endswith(CHECKPOINT_SUFFIXES):
        _no_overrides(path, overrides)
        return _torch_embedder(path, provider, batch_size)
    try:
        return OnnxEmbedder(path, provider=provider, batch_size=batch_size, threads=threads, **overrides)
    except ModelLoadError as onnx_error:
        if path.suffix.lower() == ".onnx":
            raise
        try:  # an old-style (non-zip) torch file under another name
            embedder = _torch_embedder(path, provider, batch_size)
        except ModelLoadError:
            raise ModelLoadError(f"{path}: neither an ONNX model nor a femb checkpoint") from onnx_error
        _no_overrides(path, overrides)
        return embedder


def is_onnx_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` parses as an ONNX model with a graph (external weights are not read)."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse failure means "no"
        return False
    # Protobuf parses many byte strings leniently; a real model has nodes and an opset.
    return len(model.graph.node) > 0 and len(model.opset_import) > 0


def _torch_embedder(path: Path, provider: str, batch_size: int) -> TorchEmbedder:
    from femb.checkpoint import CheckpointError
    from femb.model import load_backbone

    provider = provider.lower()
    if provider == "cuda" and not torch.cuda.is_available():
        from femb.inference.providers import ProviderError

        raise ProviderError("CUDA requested but PyTorch sees no CUDA device")
    device = "cuda" if provider in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    try:
        backbone, payload = load_backbone(path)
    except CheckpointError as error:
        raise ModelLoadError(str(error)) from None
    return TorchEmbedder(backbone, device=device, batch_size=batch_size, payload=payload)


def _no_overrides(path: Path, overrides: dict) -> None:
    given = [name for name, value in overrides.items() if value is not None]
    if given:
        raise ModelLoadError(
            f"{path}: {', '.join(given)} apply to ONNX models only; "
            "a femb checkpoint is fed the femb contract"
        )


__all__ = ["CHECKPOINT_SUFFIXES", "TorchEmbedder", "is_onnx_model", "open_embedder"]
