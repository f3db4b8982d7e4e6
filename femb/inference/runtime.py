"""The one place femb creates onnxruntime sessions, and the one place the model-input rules live.

Input rules: femb's float faces (``N×3×H×W``, RGB, ``(x-127.5)/127.5``) become what a model's
metadata asks for: its colour order, its mean/std (mean 0 and std 1, raw pixels, for a graph that
normalises itself) and its float type (float32, or float16 for a graph whose interface is fp16).
The graph's declared input type wins over the metadata.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from femb.data.transforms import MEAN, STD
from femb.export.metadata import Preprocessing

CPU_PROVIDER = "CPUExecutionProvider"
# The onnxruntime input types femb feeds, and the numpy type of each.
FLOAT_INPUTS = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def create_session(
    model: bytes | str | os.PathLike,
    providers: Sequence[str] = (CPU_PROVIDER,),
    threads: int | None = None,
):
    """An onnxruntime session over serialized ONNX bytes or a path.

    Log level 3 hides onnxruntime's warnings such as "some nodes were not assigned to the preferred
    execution providers" (shape arithmetic on the CPU is intended). ``threads``: intra-op threads
    [default: onnxruntime's choice, one per core].
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=list(providers))


def input_preprocessing(
    model_input,
    metadata: dict[str, str],
    fallback: dict[str, str] | None = None,
    *,
    mean: float | None = None,
    std: float | None = None,
    bgr: bool | None = None,
) -> Preprocessing:
    """What to feed ``model_input`` (an onnxruntime ``NodeArg``), from the model's ``metadata``.

    ``fallback``: values for keys the metadata lacks (a foreign model's guessed convention).
    ``mean``, ``std``, ``bgr`` override both. A ``ValueError`` for an input femb cannot feed.
    """
    dtype = FLOAT_INPUTS.get(model_input.type)
    if dtype is None:
        raise ValueError(
            f"its input {model_input.name!r} is {model_input.type}; femb feeds float32 or float16 N×3×H×W"
        )
    meta = {**(fallback or {}), **metadata, "input_dtype": dtype}
    if mean is not None:
        meta["mean"] = str(float(mean))
    if std is not None:
        meta["std"] = str(float(std))
    if bgr is not None:
        meta["color_order"] = "BGR" if bgr else "RGB"
    return Preprocessing.from_metadata(meta)


def session_preprocessing(session) -> Preprocessing:
    """The preprocessing a session's model asks for in its own metadata."""
    return input_preprocessing(session.get_inputs()[0], dict(session.get_modelmeta().custom_metadata_map))


def model_feed(faces: torch.Tensor, prep: Preprocessing) -> np.ndarray:
    """femb float faces ``N×3×H×W`` → the array the model's input takes (see the module docstring)."""
    if prep.size != (faces.shape[2], faces.shape[3]):
        raise ValueError(
            f"this model expects {prep.size[0]}×{prep.size[1]} images, got {tuple(faces.shape[2:])}"
        )
    if prep.color_order == "BGR":
        faces = faces.flip(1)
    if (prep.mean, prep.std) != (MEAN, STD):
        faces = (faces * STD + MEAN - prep.mean) / prep.std
    return faces.numpy().astype(np.float16 if prep.dtype == "float16" else np.float32, copy=False)


def run_session(session, faces: torch.Tensor, prep: Preprocessing | None = None) -> np.ndarray:
    """The session's first output for femb float ``faces``, fed by the model's input rules."""
    prep = prep or session_preprocessing(session)
    return session.run(None, {session.get_inputs()[0].name: model_feed(faces, prep)})[0]


__all__ = [
    "CPU_PROVIDER",
    "create_session",
    "input_preprocessing",
    "model_feed",
    "run_session",
    "session_preprocessing",
]
