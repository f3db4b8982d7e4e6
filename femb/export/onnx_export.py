"""Export a backbone to one self-contained ONNX file, check it, and prove it agrees with PyTorch.

The training-only header is never exported. The graph's input is ``input`` (``N×3×112×112``
float32 RGB, ``(x-127.5)/127.5``), its output ``embedding`` (``N×D`` float32, raw, not
L2-normalised), the batch axis dynamic.

With ``normalize_in_graph`` the input is the same ``N×3×112×112`` float32 RGB, but raw pixels in
[0, 255]: the graph's first two nodes, named ``Sub_input_mean`` and ``Mul_input_scale``, compute
``(x-127.5)·(1/127.5)``. insightface's ``ArcFaceONNX`` recognises those names and then feeds raw
pixels (mean 0, std 1), so such a file serves through ``insightface.model_zoo.get_model`` as is;
the metadata says mean 0, std 1.

Building the graph is :mod:`femb.export.graph`, the parity check :mod:`femb.export.parity`, the
sources and output paths :mod:`femb.export.source`; this module runs them in order and writes.
Nothing is written unless ``onnx.checker`` passes and the parity check holds: the file at
``output`` is always a model that agrees with PyTorch within the bound.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import femb
from femb.data.transforms import normalize
from femb.errors import one_line
from femb.export.graph import (
    ERROR_CHARS,
    EXPORTERS,
    MIN_OPSET,
    ExportError,
    ExportGraph,
    check_model,
    check_opset,
    export_graph,
    name_input_nodes,
    opset_of,
    output_dim,
)
from femb.export.int8 import Int8Options, Int8Report, int8_stage
from femb.export.metadata import build_metadata, set_metadata
from femb.export.parity import DEFAULT_PARITY_BATCHES, ParityResult, check_parity, face_batch, format_cosine
from femb.export.source import ExportSource, check_output, default_output_path, name_from_path, resolve_source
from femb.fileio import atomic_write_bytes

DEFAULT_MIN_COSINE = 0.9999
# fp16 rounds every layer to 11 significant bits, so its bound is looser than fp32's; the fp16
# exports' parity figures are in benchmarks/RESULTS.md.
DEFAULT_MIN_COSINE_FP16 = 0.999


class ParityError(ExportError):
    """The exported model disagrees with PyTorch beyond the bound; ``report`` has the figures."""

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


class GateError(ParityError):
    """The int8 model verifies worse than its fp32 twin beyond the gate; ``report.int8`` has the figures."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` did: the file, the model, what was stripped, and the parity figures."""

    path: Path | None
    backbone: str
    embed_dim: int
    num_parameters: int
    header: str | None
    header_parameters_removed: int
    opset: int
    exporter: str
    fp16: bool
    normalize_in_graph: bool
    min_cosine_bound: float
    parity: list[ParityResult] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0
    export_seconds: float = 0.0
    source: str | None = None
    notes: list[str] = field(default_factory=list)
    int8: Int8Report | None = None

    @property
    def precision(self) -> str:
        return "int8" if self.int8 is not None else "fp16" if self.fp16 else "fp32"

    @property
    def min_cosine(self) -> float:
        return min((p.min_cosine for p in self.parity), default=float("nan"))

    @property
    def max_abs_diff(self) -> float:
        return max((p.max_abs_diff for p in self.parity), default=float("nan"))

    @property
    def parity_ok(self) -> bool:
        # Written so that a NaN cosine fails.
        return bool(self.parity) and all(p.min_cosine >= self.min_cosine_bound for p in self.parity)

    @property
    def input_spec(self) -> str:
        return (
            "float32 N×3×112×112 (RGB pixels 0-255, normalised in the graph)"
            if self.normalize_in_graph
            else "float32 N×3×112×112 (RGB, (x-127.5)/127.5)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": None if self.path is None else str(self.path),
            "source": self.source,
            "backbone": self.backbone,
            "embed_dim": self.embed_dim,
            "num_parameters": self.num_parameters,
            "header": self.header,
            "header_parameters_removed": self.header_parameters_removed,
            "opset": self.opset,
            "exporter": self.exporter,
            "fp16": self.fp16,
            "normalize_in_graph": self.normalize_in_graph,
            "min_cosine_bound": self.min_cosine_bound,
            "parity": [p.to_dict() for p in self.parity],
            "file_size": self.file_size,
            "export_seconds": self.export_seconds,
            "metadata": dict(self.metadata),
            "precision": self.precision,
            "int8": None if self.int8 is None else self.int8.to_dict(),
        }


def export_onnx(
    source: str | os.PathLike | nn.Module | dict,
    output: str | os.PathLike | None = None,
    *,
    fp16: bool = False,
    normalize_in_graph: bool = False,
    opset: int = MIN_OPSET,
    parity_bound: float | None = None,
    parity_batches: tuple[int, ...] = DEFAULT_PARITY_BATCHES,
    exporter: str = "torchscript",
    metadata: dict[str, Any] | None = None,
    run_name: str | None = None,
    on_stage: Callable[[int, int, str], None] | None = None,
    any_suffix: bool = False,
    int8: Int8Options | None = None,
) -> ExportReport:
    """Export the backbone of ``source`` to ``output`` and check it.

    ``source``: a run directory, a checkpoint or saved model file, a loaded checkpoint dict, a
    :class:`~femb.FaceEmbeddingModel` (its header is dropped) or a backbone module.
    ``output``: the ``.onnx`` path [default: ``exports/<run-name>.onnx``].
    ``parity_bound``: the smallest acceptable cosine between ONNX and PyTorch embeddings
    [default 0.9999; 0.999 with ``fp16``]. ``metadata``: extra properties (values that are not
    strings are stored as JSON). ``on_stage(done, total, name)``: called as each stage starts
    (export, checker, one parity batch each), for a progress display. ``any_suffix``: allow an
    ``output`` that does not end in ``.onnx``. An output that is the source, or inside the
    source's run folder, is always refused (:func:`~femb.export.source.check_output`).
    ``int8``: write the statically quantized int8 model instead, once it has passed its gate
    against the checked fp32 model (:mod:`femb.export.int8`); a :class:`GateError` (nothing
    written) when it fails, unless ``int8.force``.

    Raises :class:`~femb.checkpoint.CheckpointError` for an unreadable source,
    :class:`ExportError` when export or ``onnx.checker`` fails, :class:`ParityError` when the
    exported model disagrees with PyTorch (nothing is written then).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choices: {', '.join(EXPORTERS)}")
    opset = check_opset(opset, exporter)
    if int8 is not None and fp16:
        raise ValueError("int8 and fp16 exclude each other: an int8 model is quantized from the fp32 one")
    if not parity_batches or any(int(b) < 1 for b in parity_batches):
        raise ValueError(f"parity_batches must be positive batch sizes, got {parity_batches}")
    bound = (
        parity_bound
        if parity_bound is not None
        else (DEFAULT_MIN_COSINE_FP16 if fp16 else DEFAULT_MIN_COSINE)
    )
    src = resolve_source(source)
    run_name = run_name or src.run_name or (name_from_path(src.path) if src.path else None)
    output = Path(output) if output is not None else default_output_path(source, run_name)
    check_output(output, src.path or _source_path(source), any_suffix)

    started = time.perf_counter()
    reference = copy.deepcopy(src.backbone).cpu().float().eval()
    graph_backbone = copy.deepcopy(reference)
    if fp16:
        graph_backbone = graph_backbone.half()
    graph = ExportGraph(graph_backbone, fp16=fp16, normalize_in_graph=normalize_in_graph).eval()
    dummy = _dummy_input(2, normalize_in_graph)

    stages = 2 + len(parity_batches) + (int8 is not None)
    stage = on_stage or (lambda done, total, name: None)
    notes: list[str] = []
    used = "dynamo" if exporter == "dynamo" else "torchscript"
    stage(0, stages, f"{used} export")
    try:
        model = export_graph(graph, dummy, used, opset)
    except Exception as error:  # noqa: BLE001 - any exporter failure is reported the same way
        if exporter != "auto":
            raise ExportError(
                f"ONNX export of {src.name} failed ({used} exporter): {one_line(error, ERROR_CHARS)}"
            ) from None
        reason = one_line(error, ERROR_CHARS)
        notes.append(f"TorchScript exporter failed ({reason}); used the dynamo exporter")
        used = "dynamo"
        try:
            model = export_graph(graph, dummy, used, opset)
        except Exception as second:  # noqa: BLE001
            raise ExportError(f"ONNX export of {src.name} failed: {one_line(second, ERROR_CHARS)}") from None
    if normalize_in_graph:
        name_input_nodes(model, src.name)

    embed_dim = int(src.kwargs.get("embed_dim") or output_dim(reference))
    meta = build_metadata(
        femb_version=femb.__version__,
        backbone=src.name,
        backbone_kwargs=src.kwargs,
        embed_dim=embed_dim,
        head=src.header,
        run_name=run_name,
        training=src.training,
        fp16=fp16,
        normalize_in_graph=normalize_in_graph,
        exporter=used,
        extras=metadata,
    )
    set_metadata(model, meta)
    model.doc_string = f"femb {src.name} face-embedding backbone ({embed_dim}-d); header stripped"
    stage(1, stages, "onnx.checker")
    check_model(model, src.name)
    data = model.SerializeToString()

    report = ExportReport(
        path=None,
        backbone=src.name,
        embed_dim=embed_dim,
        num_parameters=sum(p.numel() for p in reference.parameters()),
        header=src.header["name"] if src.header else None,
        header_parameters_removed=src.header_parameters,
        opset=opset_of(model),
        exporter=used,
        fp16=fp16,
        normalize_in_graph=normalize_in_graph,
        min_cosine_bound=float(bound),
        metadata=meta,
        file_size=len(data),
        source=src.path,
        notes=notes,
    )

    def parity_stage(index: int, batch: int) -> None:
        stage(2 + index, stages, f"parity, batch of {batch}")

    report.parity = check_parity(data, reference, parity_batches, parity_stage)
    report.export_seconds = time.perf_counter() - started
    if not report.parity_ok:
        raise ParityError(
            f"parity check failed: min cosine {format_cosine(report.min_cosine)} < {bound} "
            f"(max |difference| {report.max_abs_diff:.3g}); {output} was not written",
            report,
        )
    if int8 is not None:
        stage(stages - 1, stages, "int8: quantize, gate, throughput")
        data, report.int8 = int8_stage(data, meta, int8, normalize_in_graph)
        report.metadata, report.file_size = {**meta, **report.int8.metadata()}, len(data)
        report.export_seconds = time.perf_counter() - started
        if not report.int8.gate.passed and not int8.force:
            failed = report.int8.gate.summary()
            raise GateError(f"int8 gate failed ({failed}); {output} was not written", report)
    stage(stages, stages, "done")
    atomic_write_bytes(output, data)
    report.path = output
    return report


def _source_path(source: Any) -> str | None:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else None


def _dummy_input(batch_size: int, normalize_in_graph: bool) -> torch.Tensor:
    # A batch of 2: torch specialises sizes 0 and 1, which would pin the batch axis.
    faces = face_batch(batch_size)
    return faces.float() if normalize_in_graph else normalize(faces)


__all__ = [
    "DEFAULT_MIN_COSINE",
    "DEFAULT_MIN_COSINE_FP16",
    "ExportError",
    "ExportReport",
    "ExportSource",
    "GateError",
    "ParityError",
    "ParityResult",
    "check_parity",
    "default_output_path",
    "export_onnx",
    "name_from_path",
]
