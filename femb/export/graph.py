"""Building the ONNX graph of a backbone: the exporters, the insightface-readable input nodes, the checker.

Exporter: PyTorch's TorchScript-based exporter by default. On these convolutional backbones it
gives the same numbers as the torch.export-based ("dynamo") exporter, exports several times
faster, needs no ``onnxscript`` and works on every torch this package admits (timings in
benchmarks/RESULTS.md). ``exporter="auto"`` falls back to the dynamo exporter when the legacy one
fails or is gone from a future torch; ``exporter="dynamo"`` asks for it directly.
"""

from __future__ import annotations

import inspect
import io
import logging
import warnings
from typing import Any

import onnx
import torch
from torch import nn

from femb.data.transforms import MEAN, STD
from femb.errors import one_line
from femb.inference.providers import captured_native_output

MIN_OPSET = 17
DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter emits opset 18 or later
EXPORTERS = ("torchscript", "dynamo", "auto")
PROTOBUF_LIMIT = 2**31 - 1
ERROR_CHARS = 300  # exporter errors can run to pages; the line keeps their start


class ExportError(ValueError):
    """The model could not be exported to a valid, self-contained ONNX file."""


class ExportGraph(nn.Module):
    """The backbone plus the interface around it: optional in-graph normalisation and fp16 casts."""

    def __init__(self, backbone: nn.Module, fp16: bool, normalize_in_graph: bool):
        super().__init__()
        self.backbone = backbone
        self.fp16 = fp16
        self.normalize_in_graph = normalize_in_graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize_in_graph:
            # A Sub then a Mul, as insightface's ArcFaceONNX looks for (see name_input_nodes).
            # x·(1/127.5) differs from femb's x/127.5 by at most an ulp.
            x = (x - MEAN) * (1.0 / STD)
        if self.fp16:
            x = x.to(torch.float16)
        # The interface stays float32 even when the weights are fp16.
        return self.backbone(x).to(torch.float32)


def max_opset(exporter: str) -> int:
    """The newest opset ``exporter`` writes with this torch (``auto`` may end on the dynamo exporter)."""
    from torch.onnx import _constants

    if exporter == "torchscript":
        return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))
    return int(getattr(_constants, "ONNX_MAX_OPSET", 23))


def check_opset(opset: int, exporter: str) -> int:
    """``opset`` when ``exporter`` can write it; one ``ValueError`` naming the range otherwise."""
    newest = max_opset(exporter)
    if not MIN_OPSET <= int(opset) <= newest:
        raise ValueError(
            f"opset must be {MIN_OPSET} or later and at most {newest} for the {exporter} exporter "
            f"of this torch, got {opset}"
        )
    return int(opset)


def export_graph(graph: nn.Module, dummy: torch.Tensor, exporter: str, opset: int) -> onnx.ModelProto:
    """The ONNX model of ``graph``. What the exporters print (an IR dump when they fail) is
    captured and dropped: the caller reports one line from the exception."""
    with captured_native_output():
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


def name_input_nodes(model: onnx.ModelProto, name: str) -> None:
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


def check_model(model: onnx.ModelProto, name: str) -> None:
    """One self-contained file under protobuf's limit that ``onnx.checker`` accepts, with femb's interface."""
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


def opset_of(model: onnx.ModelProto) -> int:
    return max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=0)


def output_dim(backbone: nn.Module) -> int:
    with torch.no_grad():
        return int(backbone(torch.zeros(2, 3, 112, 112)).shape[1])
