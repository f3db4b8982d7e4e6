"""The int8 stage of an export: quantize the checked fp32 model, gate it on pairs, time both, label it.

The written model's metadata says ``precision=int8`` and carries ``int8_*`` keys: the calibration
set's name, image count and SHA-256 (of the chosen images' pixels), the calibration method, the
nodes kept in float, and the gate's figures (JSON), with ``int8_gate_forced`` when the gate failed
and the model was written anyway.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx

from femb.export.calibration_images import CalibrationImages
from femb.export.graph import name_input_nodes
from femb.export.metadata import set_metadata
from femb.export.parity import face_batch
from femb.export.quantize import DEFAULT_KEEP_FLOAT, DEFAULT_METHOD, GateResult, gate, quantize_int8
from femb.inference.runtime import create_session, run_session

THROUGHPUT_BATCH = 32
THROUGHPUT_ROUNDS = 3
INPUT_NODES = ("Sub_input_mean", "Mul_input_scale")


@dataclass
class Int8Options:
    """What an int8 export needs: calibration images, gate pairs (a ``PairsDataset`` or a labelled
    set), the calibration method and node roles kept in float, and ``force`` (write past a failed gate)."""

    calibration: CalibrationImages
    gate_pairs: Any
    gate_name: str
    method: str = DEFAULT_METHOD
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    force: bool = False


@dataclass
class Int8Report:
    method: str
    keep_float: tuple[str, ...]
    calibration_name: str
    calibration_images: int
    calibration_sha256: str
    gate: GateResult
    forced: bool = False
    fp32_images_per_second: float = float("nan")
    int8_images_per_second: float = float("nan")
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.int8_images_per_second / self.fp32_images_per_second

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "keep_float": list(self.keep_float),
            "calibration_set": self.calibration_name,
            "calibration_images": self.calibration_images,
            "calibration_sha256": self.calibration_sha256,
            "gate": self.gate.to_dict(),
            "forced": self.forced,
            "fp32_images_per_second": self.fp32_images_per_second,
            "int8_images_per_second": self.int8_images_per_second,
        }

    def metadata(self) -> dict[str, str]:
        meta = {
            "precision": "int8",
            "int8_calibration_set": self.calibration_name,
            "int8_calibration_images": str(self.calibration_images),
            "int8_calibration_sha256": self.calibration_sha256,
            "int8_calibration_method": self.method,
            "int8_keep_float": json.dumps(list(self.keep_float)),
            "int8_gate": self.gate.to_json(),
        }
        if self.forced:
            meta["int8_gate_forced"] = "true"
        return meta


def int8_stage(
    fp32: bytes,
    meta: dict[str, str],
    options: Int8Options,
    normalize_in_graph: bool,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[bytes, Int8Report]:
    """The int8 model (serialized, metadata set) of the checked ``fp32`` model, and what was measured.

    The gate's verdict is in the report; refusing to write a failed model is the caller's.
    """
    keep_nodes = INPUT_NODES if normalize_in_graph else ()
    faces = options.calibration.faces
    quantized = onnx.load_model_from_string(
        quantize_int8(fp32, faces, options.method, options.keep_float, keep_nodes)
    )
    if normalize_in_graph:
        # QDQ nodes went in front of the input normalisation; insightface looks for it in the first 8.
        name_input_nodes(quantized, "int8 model")
    calibration = options.calibration
    report = Int8Report(
        method=options.method,
        keep_float=tuple(options.keep_float),
        calibration_name=calibration.name,
        calibration_images=calibration.count,
        calibration_sha256=calibration.sha256,
        gate=gate(fp32, quantized.SerializeToString(), options.gate_pairs, options.gate_name, on_batch),
    )
    report.notes = [*calibration.notes, *report.gate.notes]
    report.forced = options.force and not report.gate.passed
    set_metadata(quantized, {**meta, **report.metadata()})
    data = quantized.SerializeToString()
    report.fp32_images_per_second, report.int8_images_per_second = throughput(fp32, data)
    return data, report


def throughput(*models: bytes, batch: int = THROUGHPUT_BATCH, rounds: int = THROUGHPUT_ROUNDS) -> list[float]:
    """Images per second of each serialized model on one batch of faces, on the CPU with
    onnxruntime's default threads: median of ``rounds`` forwards, run round-robin so that load from
    other processes falls on every model alike."""
    from femb.data.transforms import normalize

    faces = normalize(face_batch(batch))
    sessions = [create_session(model) for model in models]
    times: list[list[float]] = [[] for _ in sessions]
    for session in sessions:
        run_session(session, faces)  # warm-up: allocations, kernel caches
    for _ in range(rounds):
        for session, spent in zip(sessions, times, strict=True):
            started = time.perf_counter()
            run_session(session, faces)
            spent.append(time.perf_counter() - started)
    return [batch / statistics.median(spent) for spent in times]


def validation_set_of(payload: dict) -> tuple[Any, str]:
    """The validation set of the run a checkpoint came from, rebuilt from its recorded options."""
    from femb.data.set_names import named_paths
    from femb.training.config import TrainConfig
    from femb.training.recipe import build_datasets

    config = payload.get("config") or {}
    where = payload.get("path", "checkpoint")
    if not config:
        raise ValueError(f"{where}: records no training options to rebuild its validation set from")
    try:
        recipe = TrainConfig.from_dict(config, source=str(where))
        _, sets = build_datasets(recipe)
    except (ValueError, OSError) as error:
        raise ValueError(f"{where}: its validation set cannot be rebuilt ({error})") from None
    if not sets:
        raise ValueError(f"{where}: the run had no validation set")
    described = next(iter(named_paths(recipe.val).values()), "default")
    return next(iter(sets.values())), f"the run's validation set ({described})"  # its first, with several


__all__ = ["Int8Options", "Int8Report", "int8_stage", "throughput", "validation_set_of"]
