"""The metadata an exported model carries: how to preprocess its input and where it came from.

Every value in ONNX ``metadata_props`` is a string. Numbers are written with ``repr`` so they
read back exactly; nested values (backbone and head hyper-parameters) are JSON.

Input: float32 NCHW, fed ``(x - mean) / std``. A model exported with ``normalize_in_graph`` says
mean 0, std 1 (it takes raw pixels in [0, 255] and normalises them itself) and
``normalize_in_graph=true``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import onnx

from femb.data.transforms import MEAN, STD

# Keys written by femb (readers must ignore keys they do not know: extras may be added).
FORMAT_KEY = "femb.format"
FORMAT = "femb.embedding"

FLOAT_LAYOUT = "NCHW"


@dataclass(frozen=True)
class Preprocessing:
    """What a model's input expects, read from its metadata (defaults: the femb contract)."""

    size: tuple[int, int] = (112, 112)
    color_order: str = "RGB"
    mean: float = MEAN
    std: float = STD
    layout: str = FLOAT_LAYOUT
    dtype: str = "float32"
    normalized_in_graph: bool = False

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> Preprocessing:
        """The preprocessing a model's metadata asks for; one ValueError naming a key that does not parse."""
        size = meta.get("input_size", "112,112").replace("x", ",").split(",")
        in_graph = meta.get("normalize_in_graph", "false").lower() == "true"
        mean, std = _number(meta, "mean", float, str(MEAN)), _number(meta, "std", float, str(STD))
        if not std > 0 or not math.isfinite(mean):
            raise ValueError(f"metadata mean={mean!r}, std={std!r}: expected a finite mean and std > 0")
        try:
            height, width = int(size[0]), int(size[-1])
        except ValueError:
            raise ValueError(f"metadata input_size={meta['input_size']!r}: expected H,W") from None
        if not (16 <= height <= 4096 and 16 <= width <= 4096):
            raise ValueError(f"metadata input_size={meta['input_size']!r}: expected H,W between 16 and 4096")
        return cls(
            size=(height, width),
            color_order=meta.get("color_order", "RGB").upper(),
            mean=mean,
            std=std,
            dtype=meta.get("input_dtype", "float32"),
            normalized_in_graph=in_graph,
        )


THRESHOLD_SIMILARITIES = ("cos", "euclidean")
# ModelThreshold's fields → metadata keys.
THRESHOLD_KEYS = {
    "threshold": "threshold",
    "far": "threshold_far",
    "similarity": "threshold_similarity",
    "flip": "threshold_flip",
    "calibration_set": "calibration_set",
    "calibration_pairs": "calibration_pairs",
    "calibration_sha256": "calibration_sha256",
}


@dataclass(frozen=True)
class ModelThreshold:
    """A decision threshold calibrated at a target false-accept rate, as a model carries it.

    ``similarity``: ``cos`` (same person when the cosine is above ``threshold``) or ``euclidean``
    (squared L2 distance between normalised embeddings, same when below). ``flip``: whether the
    embeddings the threshold was chosen on add the mirrored image's. The calibration set is named,
    counted and fingerprinted so that a later reader knows what the threshold was measured on.
    """

    threshold: float
    far: float
    similarity: str = "cos"
    flip: bool = True
    calibration_set: str = ""
    calibration_pairs: int = 0
    calibration_sha256: str = ""

    def __post_init__(self) -> None:
        if self.similarity not in THRESHOLD_SIMILARITIES:
            raise ValueError(
                f"threshold similarity must be one of {', '.join(THRESHOLD_SIMILARITIES)}, "
                f"got {self.similarity!r}"
            )
        if not (0.0 < float(self.far) < 1.0):
            raise ValueError(f"threshold false-accept rate must lie in (0, 1), got {self.far}")
        if not float(self.threshold) == float(self.threshold):  # NaN
            raise ValueError("the threshold is NaN")

    @property
    def higher_is_same(self) -> bool:
        return self.similarity == "cos"

    def describe(self) -> str:
        """``0.3120 (cos, flip on) at FAR 1e-3, calibrated on lfw.bin (6,000 pairs)``."""
        calibrated = (
            f", calibrated on {self.calibration_set} ({self.calibration_pairs:,} pairs)"
            if self.calibration_set
            else ""
        )
        flip = "on" if self.flip else "off"
        return f"{self.threshold:.4f} ({self.similarity}, flip {flip}) at FAR {self.far:g}{calibrated}"

    def to_metadata(self) -> dict[str, str]:
        values = {
            "threshold": repr(float(self.threshold)),
            "far": repr(float(self.far)),
            "similarity": self.similarity,
            "flip": "true" if self.flip else "false",
            "calibration_set": self.calibration_set,
            "calibration_pairs": str(int(self.calibration_pairs)),
            "calibration_sha256": self.calibration_sha256,
        }
        return {THRESHOLD_KEYS[name]: value for name, value in values.items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelThreshold | None:
        """The threshold a model's metadata carries, None when it carries none; other keys are
        ignored. A threshold that is there but malformed is a ``ValueError`` naming the key."""
        if THRESHOLD_KEYS["threshold"] not in meta:
            return None
        threshold = _number(meta, THRESHOLD_KEYS["threshold"], float)
        far = _number(meta, THRESHOLD_KEYS["far"], float)
        pairs = _number(meta, THRESHOLD_KEYS["calibration_pairs"], int, "0")
        return cls(
            threshold=threshold,
            far=far,
            similarity=meta.get(THRESHOLD_KEYS["similarity"], "cos"),
            flip=meta.get(THRESHOLD_KEYS["flip"], "true").lower() == "true",
            calibration_set=meta.get(THRESHOLD_KEYS["calibration_set"], ""),
            calibration_pairs=pairs,
            calibration_sha256=meta.get(THRESHOLD_KEYS["calibration_sha256"], ""),
        )


def build_metadata(
    *,
    femb_version: str,
    backbone: str,
    backbone_kwargs: dict[str, Any],
    embed_dim: int,
    head: dict[str, Any] | None,
    run_name: str | None,
    training: dict[str, Any] | None,
    fp16: bool,
    normalize_in_graph: bool,
    exporter: str,
    extras: dict[str, Any] | None = None,
) -> dict[str, str]:
    """All metadata properties of an export, as strings."""
    training = training or {}
    best = training.get("best_accuracy")
    step = training.get("step")
    meta = {
        FORMAT_KEY: FORMAT,
        "femb_version": femb_version,
        "backbone": backbone,
        "backbone_kwargs": json.dumps(_jsonable(backbone_kwargs), sort_keys=True),
        "embed_dim": str(int(embed_dim)),
        "head": head["name"] if head else "none",
        "head_kwargs": json.dumps(_jsonable(head.get("kwargs", {})) if head else {}, sort_keys=True),
        "input_name": "input",
        "output_name": "embedding",
        "input_size": "112,112",
        "color_order": "RGB",
        # With normalize_in_graph the graph takes raw float pixels: what a reader feeds is x/1 - 0.
        "mean": repr(0.0 if normalize_in_graph else MEAN),
        "std": repr(1.0 if normalize_in_graph else STD),
        "input_layout": FLOAT_LAYOUT,
        "input_dtype": "float32",
        "normalize_in_graph": "true" if normalize_in_graph else "false",
        "output_normalized": "false",
        "precision": "fp16" if fp16 else "fp32",
        "exporter": exporter,
        "run_name": run_name or "",
        "training_step": "" if step is None else str(int(step)),
        "best_accuracy": "" if best is None else repr(float(best)),
    }
    for key, value in (extras or {}).items():
        if str(key) in meta or str(key) in THRESHOLD_KEYS.values():
            # A reader trusts these keys to preprocess and compare: they come from the model only.
            raise ValueError(f"metadata key {key!r} is written by femb itself and cannot be set by hand")
        meta[str(key)] = value if isinstance(value, str) else json.dumps(_jsonable(value))
    return meta


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Replace ``model.metadata_props`` with ``meta`` (keys sorted: stable files)."""
    del model.metadata_props[:]
    for key in sorted(meta):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, meta[key]


def read_metadata(source: str | os.PathLike | onnx.ModelProto) -> dict[str, str]:
    """The metadata properties of an ONNX model (a path or a loaded ModelProto).

    A path is read without its weights' external data: the properties live in the header.
    """
    if not isinstance(source, onnx.ModelProto):
        source = onnx.load(os.fspath(source), load_external_data=False)
    return {entry.key: entry.value for entry in source.metadata_props}


def _number(meta: dict[str, str], key: str, kind: type, default: str = "") -> Any:
    try:
        return kind(meta.get(key, default))
    except ValueError:
        raise ValueError(f"metadata {key}={meta.get(key)!r} is not a number") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
