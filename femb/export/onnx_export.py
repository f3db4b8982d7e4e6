"""Export a backbone to one self-contained ONNX file, check it, and prove it agrees with PyTorch.

The training-only header is never exported. The graph's input is ``input`` (``N×3×112×112``
float32 RGB, ``(x-127.5)/127.5``), its output ``embedding`` (``N×D`` float32, raw, not
L2-normalised), the batch axis dynamic.

With ``normalize_in_graph`` the input is the same ``N×3×112×112`` float32 RGB, but raw pixels in
[0, 255]: the graph's first two nodes, named ``Sub_input_mean`` and ``Mul_input_scale``, compute
``(x-127.5)·(1/127.5)``. insightface's ``ArcFaceONNX`` recognises those names and then feeds raw
pixels (mean 0, std 1), so such a file serves through ``insightface.model_zoo.get_model`` as is;
the metadata says mean 0, std 1. (femb before this took uint8 ``N×112×112×3`` there; readers still
accept such files.)

Exporter: PyTorch's TorchScript-based exporter by default. On these convolutional backbones it
gives the same numbers as the torch.export-based ("dynamo") exporter, exports 3-5× faster (about
1 s against 5 s for MobileFaceNet on two CPU cores), needs no ``onnxscript`` and works on every
torch this package admits. ``exporter="auto"`` falls back to the dynamo exporter when the legacy
one fails or is gone from a future torch; ``exporter="dynamo"`` asks for it directly.

Nothing is written unless ``onnx.checker`` passes and the parity check holds: the file at
``output`` is always a model that agrees with PyTorch within the bound.
"""

from __future__ import annotations

import copy
import inspect
import io
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

import femb
from femb.data.transforms import MEAN, STD, normalize
from femb.errors import one_line
from femb.export.metadata import build_metadata, set_metadata
from femb.export.parity import ParityResult, compare_embeddings, face_batch, format_cosine
from femb.fileio import atomic_write_bytes

MIN_OPSET = 17
DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter emits opset 18 or later
DEFAULT_MIN_COSINE = 0.9999
# fp16 weights and activations round every layer to 11 significant bits; on trained iresnet and
# MobileFaceNet models the worst cosine to the fp32 model is typically 0.9995-0.99999.
DEFAULT_MIN_COSINE_FP16 = 0.999
DEFAULT_PARITY_BATCHES = (1, 32)
EXPORTERS = ("torchscript", "dynamo", "auto")
PROTOBUF_LIMIT = 2**31 - 1
ERROR_CHARS = 300  # exporter errors can run to pages; the line keeps their start


class ExportError(ValueError):
    """The model could not be exported to a valid, self-contained ONNX file."""


class ParityError(ExportError):
    """The exported model disagrees with PyTorch beyond the bound; ``report`` has the figures."""

    def __init__(self, message: str, report: ExportReport):
        super().__init__(message)
        self.report = report


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
        }


@dataclass
class _Source:
    backbone: nn.Module
    name: str
    kwargs: dict[str, Any]
    header: dict[str, Any] | None
    header_parameters: int
    training: dict[str, Any] | None
    run_name: str | None
    path: str | None


class _ExportGraph(nn.Module):
    """The backbone plus the interface around it: optional in-graph normalisation and fp16 casts."""

    def __init__(self, backbone: nn.Module, fp16: bool, normalize_in_graph: bool):
        super().__init__()
        self.backbone = backbone
        self.fp16 = fp16
        self.normalize_in_graph = normalize_in_graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_in_graph:
            # A Sub then a Mul, as insightface's ArcFaceONNX looks for (see _name_input_nodes).
            # x·(1/127.5) differs from femb's x/127.5 by at most an ulp.
            x = (x - MEAN) * (1.0 / STD)
        if self.fp16:
            x = x.to(torch.float16)
        # The interface stays float32 even when the weights are fp16.
        return self.backbone(x).to(torch.float32)


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
) -> ExportReport:
    """Export the backbone of ``source`` to ``output`` and check it.

    ``source``: a run directory, a checkpoint or saved model file, a loaded checkpoint dict, a
    :class:`~femb.FaceEmbeddingModel` (its header is dropped) or a backbone module.
    ``output``: the ``.onnx`` path [default: ``exports/<run-name>.onnx``].
    ``parity_bound``: the smallest acceptable cosine between ONNX and PyTorch embeddings
    [default 0.9999; 0.999 with ``fp16``]. ``metadata``: extra properties (values that are not
    strings are stored as JSON). ``on_stage(done, total, name)``: called as each stage starts
    (export, checker, one parity batch each), for a progress display.

    Raises :class:`~femb.checkpoint.CheckpointError` for an unreadable source,
    :class:`ExportError` when export or ``onnx.checker`` fails, :class:`ParityError` when the
    exported model disagrees with PyTorch (nothing is written then).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choices: {', '.join(EXPORTERS)}")
    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset must be {MIN_OPSET} or later, got {opset}")
    if not parity_batches or any(int(b) < 1 for b in parity_batches):
        raise ValueError(f"parity_batches must be positive batch sizes, got {parity_batches}")
    bound = (
        parity_bound
        if parity_bound is not None
        else (DEFAULT_MIN_COSINE_FP16 if fp16 else DEFAULT_MIN_COSINE)
    )
    src = _resolve_source(source)
    run_name = run_name or src.run_name or (name_from_path(src.path) if src.path else None)
    output = Path(output) if output is not None else default_output_path(source, run_name)

    started = time.perf_counter()
    reference = copy.deepcopy(src.backbone).cpu().float().eval()
    graph_backbone = copy.deepcopy(reference)
    if fp16:
        graph_backbone = graph_backbone.half()
    graph = _ExportGraph(graph_backbone, fp16=fp16, normalize_in_graph=normalize_in_graph).eval()
    dummy = _dummy_input(2, normalize_in_graph)

    stages = 2 + len(parity_batches)
    stage = on_stage or (lambda done, total, name: None)
    notes: list[str] = []
    used = "dynamo" if exporter == "dynamo" else "torchscript"
    stage(0, stages, f"{used} export")
    try:
        model = _export(graph, dummy, used, int(opset))
    except Exception as error:  # noqa: BLE001 - any exporter failure is reported the same way
        if exporter != "auto":
            raise ExportError(
                f"ONNX export of {src.name} failed ({used} exporter): {one_line(error, ERROR_CHARS)}"
            ) from None
        reason = one_line(error, ERROR_CHARS)
        notes.append(f"TorchScript exporter failed ({reason}); used the dynamo exporter")
        used = "dynamo"
        try:
            model = _export(graph, dummy, used, int(opset))
        except Exception as second:  # noqa: BLE001
            raise ExportError(f"ONNX export of {src.name} failed: {one_line(second, ERROR_CHARS)}") from None
    if normalize_in_graph:
        _name_input_nodes(model, src.name)

    embed_dim = int(src.kwargs.get("embed_dim") or _output_dim(reference))
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
    _check(model, src.name)
    data = model.SerializeToString()

    report = ExportReport(
        path=None,
        backbone=src.name,
        embed_dim=embed_dim,
        num_parameters=sum(p.numel() for p in reference.parameters()),
        header=src.header["name"] if src.header else None,
        header_parameters_removed=src.header_parameters,
        opset=_opset_of(model),
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

    report.parity = check_parity(data, reference, parity_batches, normalize_in_graph, parity_stage)
    stage(stages, stages, "parity done")
    report.export_seconds = time.perf_counter() - started
    if not report.parity_ok:
        raise ParityError(
            f"parity check failed: min cosine {format_cosine(report.min_cosine)} < {bound} "
            f"(max |difference| {report.max_abs_diff:.3g}); {output} was not written",
            report,
        )
    atomic_write_bytes(output, data)
    report.path = output
    return report


def check_parity(
    model: bytes | str | os.PathLike,
    backbone: nn.Module,
    batch_sizes: tuple[int, ...] = DEFAULT_PARITY_BATCHES,
    normalize_in_graph: bool | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[ParityResult]:
    """Run onnxruntime (CPU) and the fp32 PyTorch ``backbone`` on the same face batches and compare.

    ``model``: serialized ONNX bytes or a path. ``normalize_in_graph``: whether the graph takes
    raw pixels and normalises them itself [default: read from the model's input type and metadata].
    ``on_batch(index, batch_size)``: called as each batch starts.
    """
    session = onnx_session(model)
    backbone = backbone.cpu().float().eval()
    results = []
    for index, batch_size in enumerate(batch_sizes):
        if on_batch is not None:
            on_batch(index, int(batch_size))
        faces = face_batch(int(batch_size))
        with torch.no_grad():
            expected = backbone(normalize(faces)).float().numpy()
        results.append(compare_embeddings(expected, onnx_embeddings(session, faces, normalize_in_graph)))
    return results


def onnx_session(model: bytes | str | os.PathLike):
    """An onnxruntime CPU session over serialized ONNX bytes or a path (warnings silenced)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_embeddings(session, faces: torch.Tensor, normalize_in_graph: bool | None = None) -> np.ndarray:
    """The session's output for uint8 ``N×3×H×W`` ``faces``, fed as the femb contract says: raw
    float32 pixels NCHW to a graph that normalises them itself, uint8 NHWC to such a graph from an
    older femb (uint8 input), else float ``(x-127.5)/127.5`` NCHW.

    ``normalize_in_graph`` [default: the metadata's ``normalize_in_graph``]."""
    input_meta = session.get_inputs()[0]
    if input_meta.type == "tensor(uint8)":
        feed = faces.permute(0, 2, 3, 1).contiguous().numpy()
    else:
        if normalize_in_graph is None:
            meta = session.get_modelmeta().custom_metadata_map
            normalize_in_graph = meta.get("normalize_in_graph", "false").lower() == "true"
        feed = faces.float().numpy() if normalize_in_graph else normalize(faces).numpy()
    return session.run(None, {input_meta.name: feed})[0]


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
    return Path(folder) / f"{_safe_name(name or 'model')}.onnx"


def name_from_path(source: str | os.PathLike) -> str:
    """A run's name from its path: the run folder (``run/``, ``run/checkpoints/best.pt``), else the stem."""
    path = Path(source).resolve()
    if path.is_dir():
        return path.name
    if path.parent.name == "checkpoints" and path.stem in ("best", "last"):
        return path.parent.parent.name
    return path.stem


# ---------------------------------------------------------------------------------------- internals
def _resolve_source(source: Any) -> _Source:
    from femb.model import FaceEmbeddingModel, backbone_from_checkpoint, load_backbone

    if isinstance(source, (str, os.PathLike)):
        backbone, payload = load_backbone(source)
        return _source_from_payload(backbone, payload)
    if isinstance(source, dict):
        return _source_from_payload(backbone_from_checkpoint(source), source)
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
    return _Source(backbone, spec["name"], dict(spec["kwargs"]), header, removed, None, None, None)


def _source_from_payload(backbone: nn.Module, payload: dict) -> _Source:
    header = payload.get("header")
    removed = 0
    if header:
        removed = sum(t.numel() for t in header.get("state_dict", {}).values() if isinstance(t, torch.Tensor))
        header = {"name": header.get("name"), "kwargs": header.get("kwargs", {})}
    spec = payload["backbone"]
    return _Source(
        backbone=backbone,
        name=spec["name"],
        kwargs=dict(spec.get("kwargs", {})),
        header=header,
        header_parameters=removed,
        training=payload.get("training"),
        run_name=payload.get("run_name"),
        path=payload.get("path"),
    )


def _dummy_input(batch_size: int, normalize_in_graph: bool) -> torch.Tensor:
    # A batch of 2: torch specialises sizes 0 and 1, which would pin the batch axis.
    faces = face_batch(batch_size)
    return faces.float() if normalize_in_graph else normalize(faces)


def _export(graph: nn.Module, dummy: torch.Tensor, exporter: str, opset: int) -> onnx.ModelProto:
    if exporter == "dynamo":
        return _export_dynamo(graph, dummy, opset)
    return _export_torchscript(graph, dummy, opset)


def _export_torchscript(graph: nn.Module, dummy: torch.Tensor, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch >= 2.9 defaults to the dynamo exporter
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is deprecated. We chose it on purpose
        # (see the module docstring) and fall back to the dynamo exporter under "auto", so the
        # warning would only tell the user about our choice, on every export.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings(
            "ignore", message="The feature will be removed.*", category=DeprecationWarning
        )
        torch.onnx.export(
            graph,
            (dummy,),
            buffer,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            **kwargs,
        )
    return onnx.load_model_from_string(buffer.getvalue())


def _export_dynamo(graph: nn.Module, dummy: torch.Tensor, opset: int) -> onnx.ModelProto:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("the dynamo exporter needs onnxscript: pip install onnxscript") from None
    # The exporter logs a warning per missing torchvision operator: noise for these backbones.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    previous = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.export internals warn about their own pytree API; nothing the user can act on.
            warnings.filterwarnings("ignore", message=r".*treespec.*", category=FutureWarning)
            program = torch.onnx.export(
                graph,
                (dummy,),
                None,
                dynamo=True,
                input_names=["input"],
                output_names=["embedding"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=max(opset, DYNAMO_MIN_OPSET),
                external_data=False,
                verbose=False,
                optimize=True,
            )
    finally:
        registration_log.setLevel(previous)
    return program.model_proto


def _name_input_nodes(model: onnx.ModelProto, name: str) -> None:
    """Name the in-graph normalisation ``Sub_input_mean`` and ``Mul_input_scale`` and put it first.

    insightface's ``ArcFaceONNX`` feeds raw pixels (mean 0, std 1) only when the first 8 nodes
    include one named ``Sub…`` and one named ``Mul…``; the exporters name them ``/Sub``,
    ``node_sub``, … and may put constants or shape arithmetic before them. The two nodes (and the
    input-free ``Constant`` nodes they read) move to the front: still a topological order.
    """
    nodes = list(model.graph.node)
    input_name = model.graph.input[0].name
    sub = next((n for n in nodes if n.op_type == "Sub" and n.input and n.input[0] == input_name), None)
    mul = None
    if sub is not None:
        mul = next((n for n in nodes if n.op_type == "Mul" and sub.output[0] in n.input), None)
    if sub is None or mul is None:
        raise ExportError(f"{name}: no Sub and Mul of the input normalisation in the exported graph")
    producers = {out: n for n in nodes for out in n.output}
    constants = []
    for node in (sub, mul):
        for value in node.input:
            producer = producers.get(value)
            if producer is None or producer is sub or any(producer is c for c in constants):
                continue
            if producer.op_type != "Constant" or producer.input:
                raise ExportError(f"{name}: the input normalisation reads a computed value ({value})")
            constants.append(producer)
    taken = {n.name for n in nodes} - {sub.name, mul.name}
    if {"Sub_input_mean", "Mul_input_scale"} & taken:
        raise ExportError(f"{name}: node names Sub_input_mean / Mul_input_scale are already in use")
    sub.name, mul.name = "Sub_input_mean", "Mul_input_scale"
    first = [*constants, sub, mul]
    ordered = first + [n for n in nodes if all(n is not f for f in first)]
    copies = [onnx.NodeProto() for _ in ordered]
    for copy_, node in zip(copies, ordered, strict=True):
        copy_.CopyFrom(node)
    del model.graph.node[:]
    model.graph.node.extend(copies)


def _check(model: onnx.ModelProto, name: str) -> None:
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ExportError(f"{name}: the exporter wrote weights as external data; expected one file")
    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise ExportError(f"{name}: the model is {size / 2**30:.1f} GiB, over ONNX's 2 GiB single-file limit")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        reason = one_line(error, ERROR_CHARS)
        raise ExportError(f"{name}: onnx.checker rejected the exported model: {reason}") from None
    inputs, outputs = model.graph.input, model.graph.output
    if [i.name for i in inputs] != ["input"] or [o.name for o in outputs] != ["embedding"]:
        raise ExportError(
            f"{name}: unexpected graph interface {[i.name for i in inputs]} → {[o.name for o in outputs]}"
        )


def _opset_of(model: onnx.ModelProto) -> int:
    return max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)


def _output_dim(backbone: nn.Module) -> int:
    with torch.no_grad():
        return int(backbone(torch.zeros(2, 3, 112, 112)).shape[1])


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "model"


__all__ = [
    "DEFAULT_MIN_COSINE",
    "DEFAULT_MIN_COSINE_FP16",
    "ExportError",
    "ExportReport",
    "ParityError",
    "ParityResult",
    "check_parity",
    "default_output_path",
    "export_onnx",
    "onnx_embeddings",
    "onnx_session",
]
