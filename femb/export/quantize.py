"""Static int8 quantization of an exported fp32 model with onnxruntime's tools, and its verification gate.

QDQ format, per-channel int8 weights, uint8 activations calibrated on face images (the U8S8 pair
that x86 VNNI kernels run). Which calibration method and which nodes stay in float are defaults
chosen by measurement (benchmarks/RESULTS.md); the model's metadata names both.

The gate: on held-out pairs, the int8 model's 10-fold accuracy may lose at most
:data:`MAX_ACCURACY_DROP` and its TAR at FAR 1e-3 at most :data:`MAX_TAR_DROP` against the fp32
model it came from; the mean cosine between the two models' embeddings is reported beside them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from femb.export.graph import ExportError
from femb.inference.providers import captured_native_output
from femb.inference.runtime import create_session, model_feed, session_preprocessing

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Chosen by measurement (benchmarks/RESULTS.md, "int8 calibration method"): Percentile gave the
# highest cosine to the fp32 model, and the first convolution in float raised it further.
DEFAULT_METHOD = "percentile"
# Node roles that can stay in float: the first convolution (sees raw pixels) and the embedding
# layer (the last Gemm/MatMul and everything after it).
KEEP_FLOAT_ROLES = ("first_conv", "embedding")
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ("first_conv",)
# The operators quantized: the convolutions and the embedding layer carry the arithmetic, the
# residual Add keeps int8 between blocks. BatchNormalization and PRelu stay float: onnxruntime's
# CPU provider has no int8 kernels for them, and quantizing them only adds Q/DQ pairs (measured in
# benchmarks/RESULTS.md).
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Add")
MAX_ACCURACY_DROP = 0.005
MAX_TAR_DROP = 0.01
GATE_FAR = 1e-3
GATE_FOLDS = 10
CALIBRATION_BATCH = 32


def quantization_tools():
    """``onnxruntime.quantization``, or an :class:`ExportError` naming the package to install."""
    try:
        quantization = importlib.import_module("onnxruntime.quantization")
    except ImportError:
        raise ExportError(
            "int8 export needs onnxruntime's quantization tools (onnxruntime.quantization): "
            "pip install onnxruntime (or onnxruntime-gpu) 1.16 or later"
        ) from None
    return quantization


def keep_float_nodes(model: onnx.ModelProto, roles: Sequence[str]) -> list[str]:
    """The names of the nodes that play ``roles`` (see :data:`KEEP_FLOAT_ROLES`) in ``model``."""
    unknown = sorted(set(roles) - set(KEEP_FLOAT_ROLES))
    if unknown:
        raise ValueError(f"keep_float: unknown role {unknown[0]!r}; choices: {', '.join(KEEP_FLOAT_ROLES)}")
    nodes = list(model.graph.node)
    names: list[str] = []
    if "first_conv" in roles:
        names += [n.name for n in nodes if n.op_type == "Conv"][:1]
    if "embedding" in roles:
        last = max((i for i, n in enumerate(nodes) if n.op_type in ("Gemm", "MatMul")), default=None)
        if last is not None:
            names += [n.name for n in nodes[last:] if n.name]
    return names


def even_batch_size(count: int, largest: int = CALIBRATION_BATCH) -> int:
    """The largest batch of at most ``largest`` that splits ``count`` images into equal batches.

    onnxruntime's histogram calibrators (Percentile, Entropy) stack every batch's activations into
    one array, which fails on a ragged last batch.
    """
    return next(size for size in range(min(largest, max(count, 1)), 0, -1) if count % size == 0)


class _FacesReader:
    """onnxruntime's ``CalibrationDataReader`` protocol over femb float faces, in batches."""

    def __init__(self, faces: torch.Tensor, input_name: str, prep):
        size = even_batch_size(len(faces))
        self._batches = iter([{input_name: model_feed(chunk, prep)} for chunk in faces.split(size)])

    def get_next(self):
        return next(self._batches, None)

    def __len__(self) -> int:  # some onnxruntime versions ask
        return 0


def quantize_int8(
    fp32: bytes,
    faces: torch.Tensor,
    method: str = DEFAULT_METHOD,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    keep_nodes: Sequence[str] = (),
) -> bytes:
    """The int8 QDQ model of the serialized ``fp32`` model, calibrated on femb float ``faces``.

    ``keep_float``: node roles (:data:`KEEP_FLOAT_ROLES`) left in float; ``keep_nodes``: more
    nodes left in float, by name.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration_method: unknown {method!r}; choices: {', '.join(CALIBRATION_METHODS)}")
    quantization = quantization_tools()
    model = onnx.load_model_from_string(fp32)
    session = create_session(fp32)  # the calibration feed follows the model's own input rules
    reader = _FacesReader(faces, session.get_inputs()[0].name, session_preprocessing(session))
    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="femb-int8-") as folder, _quiet_quantizer():
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, source)
        # onnxruntime's pre-processing (shape inference, Conv+BatchNormalization fusion, Identity
        # removal) before quantizing: fewer float islands between the int8 operators.
        prepared = Path(folder) / "prepared.onnx"
        shape_inference = importlib.import_module("onnxruntime.quantization.shape_inference")
        shape_inference.quant_pre_process(source, prepared, skip_symbolic_shape=False)
        prepared_model = onnx.load(prepared)
        quantization.quantize_static(
            prepared,
            target,
            reader,
            quant_format=quantization.QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=[*keep_float_nodes(prepared_model, keep_float), *keep_nodes],
            calibrate_method=methods[method],
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        quantized = onnx.load(target)
    # quantize_static keeps the model's metadata_props; the caller rewrites precision and adds its own.
    return quantized.SerializeToString()


@dataclass(frozen=True)
class GateResult:
    """fp32 against int8 on the gate's pairs: 10-fold accuracy, TAR at FAR 1e-3, mean cosine."""

    pairs_name: str
    pairs: int
    fp32_accuracy: float
    int8_accuracy: float
    fp32_tar: float
    int8_tar: float
    mean_cosine: float
    notes: tuple[str, ...] = ()

    @property
    def accuracy_drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy

    @property
    def tar_drop(self) -> float:
        return self.fp32_tar - self.int8_tar

    @property
    def tar_measured(self) -> bool:
        """Whether the pairs resolve FAR 1e-3 (with fewer than 1,000 different-person pairs they do not)."""
        return not (math.isnan(self.fp32_tar) and math.isnan(self.int8_tar))

    @property
    def passed(self) -> bool:
        # Written so that a NaN accuracy fails; a TAR the pairs cannot resolve is judged by accuracy alone.
        tar_ok = self.tar_drop <= MAX_TAR_DROP or not self.tar_measured
        return bool(self.accuracy_drop <= MAX_ACCURACY_DROP and tar_ok)

    def to_dict(self) -> dict:
        figures = asdict(self)
        figures.pop("notes")
        return {**figures, "passed": self.passed}

    def to_json(self) -> str:
        return json.dumps({k: _finite(v) for k, v in self.to_dict().items()}, sort_keys=True)

    def summary(self) -> str:
        """``accuracy 99.20% → 99.10%, TAR@FAR=1e-3 97.00% → 96.50%``."""
        return (
            f"accuracy {100 * self.fp32_accuracy:.2f}% → {100 * self.int8_accuracy:.2f}%, "
            f"TAR@FAR={GATE_FAR:g} {100 * self.fp32_tar:.2f}% → {100 * self.int8_tar:.2f}%"
        )

    def lines(self) -> list[str]:
        """The figures, one line each, in points (percent)."""
        return [
            f"gate on {self.pairs_name} ({self.pairs:,} pairs, {GATE_FOLDS}-fold):",
            f"  accuracy       fp32 {100 * self.fp32_accuracy:.2f}%  int8 {100 * self.int8_accuracy:.2f}%  "
            f"drop {100 * self.accuracy_drop:+.2f} points (at most {100 * MAX_ACCURACY_DROP:.1f})",
            f"  TAR@FAR={GATE_FAR:g}  fp32 {100 * self.fp32_tar:.2f}%  int8 {100 * self.int8_tar:.2f}%  "
            f"drop {100 * self.tar_drop:+.2f} points (at most {100 * MAX_TAR_DROP:.1f})"
            if self.tar_measured
            else f"  TAR@FAR={GATE_FAR:g}  not measurable on these pairs (too few different-person pairs)",
            f"  mean cosine int8 vs fp32 {self.mean_cosine:.5f}",
        ]


def gate(
    fp32: bytes,
    int8: bytes,
    pairs_dataset,
    pairs_name: str,
    batch_size: int = 64,
    on_batch: Callable[[int, int], None] | None = None,
) -> GateResult:
    """Verify both serialized models on ``pairs_dataset`` (a ``PairsDataset`` or a labelled set)."""
    from femb.evaluation import VerificationEvaluator

    evaluator = VerificationEvaluator(n_folds=GATE_FOLDS, flip=True, far_targets=(GATE_FAR,))
    with warnings.catch_warnings(record=True) as caught:  # fewer pairs than asked: said as a note
        warnings.simplefilter("always")
        pairs = evaluator.check(pairs_dataset, pairs_name)
    results, embeddings = [], []
    for model in (fp32, int8):
        session = create_session(model)
        prep = session_preprocessing(session)
        name = session.get_inputs()[0].name

        def embed(batch, session=session, prep=prep, name=name):
            return session.run(None, {name: model_feed(batch, prep)})[0]

        vectors = evaluator.embed(embed, pairs.images, batch_size, on_batch=on_batch)
        embeddings.append(vectors)
        results.append(evaluator.evaluate_embeddings(vectors, pairs.pairs, pairs.issame, normalized=True))
    cosine = float(np.mean(np.sum(embeddings[0] * embeddings[1], axis=1)))
    return GateResult(
        pairs_name=pairs_name,
        pairs=int(results[0].num_pairs),
        fp32_accuracy=float(results[0].accuracy),
        int8_accuracy=float(results[1].accuracy),
        fp32_tar=float(results[0].tar_at_far[GATE_FAR]),
        int8_tar=float(results[1].tar_at_far[GATE_FAR]),
        mean_cosine=cosine,
        notes=tuple(f"gate {pairs_name}: {w.message}" for w in caught),
    )


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer logs advice ("consider pre-processing") on the root logger and its
    histogram calibrators print their progress: neither is for the user of an export."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        with captured_native_output():
            yield
    finally:
        root.setLevel(previous)


def _finite(value):
    return None if isinstance(value, float) and not np.isfinite(value) else value


__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_KEEP_FLOAT",
    "DEFAULT_METHOD",
    "KEEP_FLOAT_ROLES",
    "GateResult",
    "gate",
    "keep_float_nodes",
    "quantization_tools",
    "quantize_int8",
]
