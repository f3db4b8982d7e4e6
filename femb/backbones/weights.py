"""Backbone weights from elsewhere: arcface_torch, MagFace, femb checkpoints and run directories.

Every file is read with ``torch.load(weights_only=True)``: a pickle that would run code is refused.
The key mapping is explicit (below), never a fuzzy match, and every key and shape is checked
against the target network before anything is loaded.

Layouts recognised:

- a femb checkpoint or run directory (read by :func:`femb.checkpoint.load_checkpoint`);
- a plain state dict (arcface_torch's ``backbone.pth``): ``iresnet18``…``iresnet200`` keys are
  femb's own; arcface_torch ``mbf`` (``layers.*``, ``conv_sep.*``, ``features.layers.*``) is
  renamed to femb ``mobilefacenet`` (``body.*``, ``features.*``) by :func:`rename_arcface_mbf`;
- a MagFace checkpoint ``{'state_dict': {'module.features.<key>': ...}}`` (its head dropped);
- a state dict saved from ``DistributedDataParallel`` (``module.<key>``) or from a whole
  :class:`~femb.FaceEmbeddingModel` (``backbone.<key>``; the header dropped).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from femb.backbones.registry import create_backbone

# arcface_torch's names (``get_model(name)`` in its backbones/__init__.py) → femb's build arguments.
ARCFACE_TORCH_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "r18": ("iresnet18", {}),
    "r34": ("iresnet34", {}),
    "r50": ("iresnet50", {}),
    "r100": ("iresnet100", {}),
    "r200": ("iresnet200", {}),
    "mbf": ("mobilefacenet", {}),
    "mbf_large": ("mobilefacenet", {"blocks": (2, 8, 12, 4), "scale": 4}),
}

# Prefixes that wrap a backbone's keys; keys outside the prefix are dropped (a header's).
# MagFace's model is ``module.features`` (the backbone) + ``module.fc`` (the head) under
# DistributedDataParallel's ``module.``; a plain DDP backbone has its own ``module.features.*``
# (iresnet's last BatchNorm), so MagFace is recognised only when nothing else is under ``module.``.
MAGFACE_PREFIX, MAGFACE_HEAD = "module.features.", "module.fc."
DDP_PREFIX = "module."
MODEL_PREFIX = "backbone."  # a whole FaceEmbeddingModel's state dict

# arcface_torch ``mbf`` → femb ``mobilefacenet``. arcface_torch keeps its stages in a ModuleList
# ``layers`` whose blocks wrap their own Sequential in ``.layers``; femb's ``body`` is one
# Sequential of bare Sequentials. The number of indices in a key tells the block kind:
#   ConvBlock                layers.S.layers.K.p               → body.S.K.p
#   DepthWise (a stage)      layers.S.layers.B.layers.K.p      → body.S.layers.B.K.p
#   Residual → DepthWise     layers.S.layers.R.layers.B.layers.K.p → body.S.R.layers.B.K.p
#   conv_sep (ConvBlock)     conv_sep.layers.K.p               → body.8.K.p (after the 8 stages)
#   GDC's LinearBlock        features.layers.0.layers.K.p      → features.0.K.p
#   GDC's Linear / BN1d      features.layers.I.p               → features.I.p
_MBF_RULES = (
    (
        re.compile(r"^layers\.(\d+)\.layers\.(\d+)\.layers\.(\d+)\.layers\.(\d+)\.(\w+)$"),
        r"body.\1.\2.layers.\3.\4.\5",
    ),
    (re.compile(r"^layers\.(\d+)\.layers\.(\d+)\.layers\.(\d+)\.(\w+)$"), r"body.\1.layers.\2.\3.\4"),
    (re.compile(r"^layers\.(\d+)\.layers\.(\d+)\.(\w+)$"), r"body.\1.\2.\3"),
    (re.compile(r"^features\.layers\.0\.layers\.(\d+)\.(\w+)$"), r"features.0.\1.\2"),
    (re.compile(r"^features\.layers\.(\d+)\.(\w+)$"), r"features.\1.\2"),
)
_MBF_CONV_SEP = re.compile(r"^conv_sep\.layers\.(\d+)\.(\w+)$")
_MBF_STAGES = 8  # arcface_torch's ``layers``: two stem blocks and six stages, whatever ``blocks`` is


class WeightsError(ValueError):
    """A weights file that cannot be read safely or does not fit the requested backbone."""


@dataclass
class BackboneWeights:
    """A state dict in femb's key layout and where it came from."""

    state_dict: dict[str, torch.Tensor]
    layout: str
    path: Path

    def describe(self) -> str:
        return f"{self.path} ({self.layout})"


def resolve_backbone_name(name: str) -> tuple[str, dict[str, Any]]:
    """femb's backbone name and build kwargs for a femb name or an arcface_torch one (``r50``, ``mbf``)."""
    return ARCFACE_TORCH_NAMES.get(name, (name, {}))


def read_backbone_weights(path: str | os.PathLike) -> BackboneWeights:
    """Read ``path`` safely and bring its keys to femb's layout (nothing is checked against a model yet)."""
    from femb.checkpoint import FORMAT, CheckpointError, load_checkpoint

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such file or directory")
    if path.is_dir():
        try:
            payload = load_checkpoint(path)
        except CheckpointError as error:
            raise WeightsError(str(error)) from None
        return _from_femb_checkpoint(payload, Path(payload["path"]))
    payload = _safe_load(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        try:  # the one checkpoint reader checks the format version and fills in ``path``
            payload = load_checkpoint(path)
        except CheckpointError as error:
            raise WeightsError(str(error)) from None
        return _from_femb_checkpoint(payload, path)
    if not isinstance(payload, dict):
        raise WeightsError(f"{path}: expected a state dict, found a {type(payload).__name__}")
    layout = "state dict"
    if "state_dict" in payload and isinstance(payload["state_dict"], dict):
        payload, layout = payload["state_dict"], "checkpoint with a 'state_dict'"
    tensors = {k: v for k, v in payload.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(repr(k) for k in list(payload)[:6])
        raise WeightsError(f"{path}: no tensors found (top-level keys: {keys or 'none'})")
    tensors, layout = _unwrap(tensors, layout)
    if any(key.startswith("conv_sep.") for key in tensors):
        tensors = rename_arcface_mbf(tensors)
        layout = f"{layout}, arcface_torch mbf layout renamed to femb mobilefacenet"
    return BackboneWeights(tensors, layout, path)


def rename_arcface_mbf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """arcface_torch ``mbf`` keys → femb ``mobilefacenet`` keys, in the same order (see ``_MBF_RULES``)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if match := _MBF_CONV_SEP.match(key):
            new = f"body.{_MBF_STAGES}.{match.group(1)}.{match.group(2)}"
        else:
            for pattern, replacement in _MBF_RULES:
                new, count = pattern.subn(replacement, key)
                if count:
                    break
            else:
                raise WeightsError(f"arcface_torch mbf key {key!r} has no femb mobilefacenet counterpart")
        renamed[new] = value
    return renamed


def fit_state_dict(weights: BackboneWeights, model: nn.Module, target: str = "the model") -> dict:
    """``weights.state_dict`` checked key by key and shape by shape against ``model``.

    Raises :class:`WeightsError` naming the first mismatched key (in the model's order) and both
    shapes. BatchNorm's ``num_batches_tracked`` counters, absent from old files, are taken from
    the model.
    """
    expected = model.state_dict()
    given = weights.state_dict
    where = f"{weights.describe()} does not fit {target}"
    for key, tensor in expected.items():
        if key not in given:
            if key.endswith("num_batches_tracked"):
                continue
            first = next(iter(given))
            raise WeightsError(
                f"{where}: first mismatch at key {key!r}: missing from the file "
                f"(the model expects shape {tuple(tensor.shape)}; the file's first key is {first!r})"
            )
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise WeightsError(
                f"{where}: first mismatch at key {key!r}: the file has shape {tuple(given[key].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    for key, tensor in given.items():
        if key not in expected:
            raise WeightsError(
                f"{where}: first mismatch at key {key!r} (shape {tuple(tensor.shape)}): not in the model"
            )
    # A fresh counter for an absent num_batches_tracked: only BatchNorm's momentum=None path reads it.
    return {key: given[key] if key in given else torch.zeros((), dtype=torch.long) for key in expected}


def load_weights_into(model: nn.Module, path: str | os.PathLike) -> BackboneWeights:
    """Load the weights at ``path`` into ``model`` (built by name), strictly; returns what was read."""
    weights = read_backbone_weights(path)
    spec = getattr(model, "femb_spec", None) or {"name": type(model).__name__, "kwargs": {}}
    state = fit_state_dict(weights, model, _target_text(spec["name"], spec["kwargs"]))
    model.load_state_dict(state, strict=True)
    return weights


def backbone_from_weights(
    backbone_name: str, path: str | os.PathLike, embed_dim: int | None = None, **kwargs: Any
) -> tuple[nn.Module, BackboneWeights]:
    """A backbone built by name (femb's or arcface_torch's) and filled with the weights at ``path``.

    ``embed_dim`` [default: read from the file]. ``model.femb_weights`` says where they came from.
    """
    name, alias_kwargs = resolve_backbone_name(backbone_name)
    kwargs = {**alias_kwargs, **kwargs}
    weights = read_backbone_weights(path)
    if embed_dim is None:
        embed_dim = infer_embed_dim(name, weights, **kwargs)
    model = create_backbone(name, embed_dim=embed_dim, **kwargs)
    model.load_state_dict(fit_state_dict(weights, model, _target_text(name, model.femb_spec["kwargs"])))
    model.femb_weights = weights.describe()
    return model, weights


def load_backbone_weights(
    backbone_name: str, path: str | os.PathLike, embed_dim: int | None = None, **kwargs: Any
) -> dict[str, torch.Tensor]:
    """The state dict at ``path`` in femb's layout for ``backbone_name``, checked key by key.

    ``backbone_name``: a femb name (``iresnet50``, ``mobilefacenet``) or an arcface_torch one
    (``r50``, ``mbf``). ``embed_dim`` [default: read from the file]. The result loads with
    ``build_backbone(name, embed_dim).load_state_dict(state, strict=True)``.
    Raises :class:`WeightsError` (a ``ValueError``) for an unsafe or unreadable file, or one whose
    keys or shapes do not fit (naming the first mismatched key and both shapes).
    """
    name, alias_kwargs = resolve_backbone_name(backbone_name)
    kwargs = {**alias_kwargs, **kwargs}
    weights = read_backbone_weights(path)
    if embed_dim is None:
        embed_dim = infer_embed_dim(name, weights, **kwargs)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        target = create_backbone(name, embed_dim=embed_dim, **kwargs)
    return fit_state_dict(weights, target, _target_text(name, {"embed_dim": embed_dim, **kwargs}))


def infer_embed_dim(name: str, weights: BackboneWeights, **kwargs: Any) -> int:
    """The embedding size the file was trained with: the size of its tensors that scale with it."""
    with torch.device("meta"):
        small = create_backbone(name, embed_dim=8, **kwargs).state_dict()
        large = create_backbone(name, embed_dim=24, **kwargs).state_dict()
    for key, tensor in small.items():
        other = large[key].shape
        if tensor.shape != other and key in weights.state_dict:
            axis = next(i for i, (a, b) in enumerate(zip(tensor.shape, other, strict=True)) if a != b)
            found = weights.state_dict[key].shape
            if len(found) == len(other):
                return int(found[axis])
    raise WeightsError(
        f"{weights.describe()} does not fit {name}: none of its embedding-size tensors are in the file "
        f"(the file's first key is {next(iter(weights.state_dict))!r})"
    )


# ---------------------------------------------------------------------------------------- internals
def _safe_load(path: Path) -> Any:
    from femb.checkpoint import load_failure

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - what failed is said by load_failure
        runs_code, reason = load_failure(error)
        if runs_code:
            raise WeightsError(
                f"{path}: refused to load: the file holds Python objects that would run code when "
                f"unpickled, not plain tensors (torch.load weights_only=True: {reason})"
            ) from None
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({reason})") from None


def _unwrap(tensors: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], str]:
    wrapped = [key for key in tensors if key.startswith(DDP_PREFIX)]
    if any(key.startswith(MAGFACE_PREFIX) for key in wrapped) and all(
        key.startswith((MAGFACE_PREFIX, MAGFACE_HEAD)) for key in wrapped
    ):
        prefix, layout = MAGFACE_PREFIX, "MagFace checkpoint"
    elif wrapped:
        prefix, layout = DDP_PREFIX, f"{layout} from DistributedDataParallel"
    elif any(key.startswith(MODEL_PREFIX) for key in tensors):
        prefix, layout = MODEL_PREFIX, "FaceEmbeddingModel state dict"
    else:
        return tensors, layout
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}, layout


def _from_femb_checkpoint(payload: dict, path: Path) -> BackboneWeights:
    spec = payload.get("backbone")
    if not isinstance(spec, dict) or not isinstance(spec.get("state_dict"), dict):
        raise WeightsError(f"{path}: the femb checkpoint holds no backbone")
    return BackboneWeights(dict(spec["state_dict"]), f"femb checkpoint, {spec.get('name')}", path)


def _target_text(name: str, kwargs: dict) -> str:
    extras = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "embed_dim")
    return f"{name} (embed_dim {kwargs.get('embed_dim', '?')}{', ' + extras if extras else ''})"


__all__ = [
    "ARCFACE_TORCH_NAMES",
    "BackboneWeights",
    "backbone_from_weights",
    "WeightsError",
    "fit_state_dict",
    "infer_embed_dim",
    "load_backbone_weights",
    "load_weights_into",
    "read_backbone_weights",
    "rename_arcface_mbf",
    "resolve_backbone_name",
]
