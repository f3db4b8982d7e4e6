"""The metadata an exported model carries: how to preprocess its input and where it came from.

Every value in ONNX ``metadata_props`` is a string. Numbers are written with ``repr`` so they
read back exactly; nested values (backbone and head hyper-parameters) are JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import onnx

# Keys written by femb (readers must ignore keys they do not know: extras may be added).
FORMAT_KEY = "femb.format"
FORMAT = "femb.embedding"

FLOAT_LAYOUT = "NCHW"
UINT8_LAYOUT = "NHWC"


@dataclass(frozen=True)
class Preprocessing:
    """What a model's input expects, read from its metadata (defaults: the femb contract)."""

    size: tuple[int, int] = (112, 112)
    color_order: str = "RGB"
    mean: float = 127.5
    std: float = 127.5
    layout: str = FLOAT_LAYOUT
    dtype: str = "float32"
    normalized_in_graph: bool = False

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> Preprocessing:
        size = meta.get("input_size", "112,112").replace("x", ",").split(",")
        in_graph = meta.get("normalize_in_graph", "false").lower() == "true"
        return cls(
            size=(int(size[0]), int(size[-1])),
            color_order=meta.get("color_order", "RGB").upper(),
            mean=float(meta.get("mean", 127.5)),
            std=float(meta.get("std", 127.5)),
            layout=meta.get("input_layout", UINT8_LAYOUT if in_graph else FLOAT_LAYOUT),
            dtype=meta.get("input_dtype", "uint8" if in_graph else "float32"),
            normalized_in_graph=in_graph,
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
        "mean": "127.5",
        "std": "127.5",
        "input_layout": UINT8_LAYOUT if normalize_in_graph else FLOAT_LAYOUT,
        "input_dtype": "uint8" if normalize_in_graph else "float32",
        "normalize_in_graph": "true" if normalize_in_graph else "false",
        "output_normalized": "false",
        "precision": "fp16" if fp16 else "fp32",
        "exporter": exporter,
        "run_name": run_name or "",
        "training_step": "" if step is None else str(int(step)),
        "best_accuracy": "" if best is None else repr(float(best)),
    }
    for key, value in (extras or {}).items():
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
