"""Backbones registered by name; ``create_backbone`` builds one and records how, for checkpoints."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a variant function ``fn(embed_dim=..., **kwargs) -> nn.Module`` under its name."""
    _REGISTRY[fn.__name__] = fn
    return fn


# Device types on which a backbone trains measurably faster with channels-last input and weights
# (``benchmarks/bench_channels_last.py``; figures in benchmarks/RESULTS.md). The trainer converts
# both for these pairs; every other pair keeps PyTorch's NCHW.
CHANNELS_LAST: dict[str, frozenset[str]] = {
    "iresnet18": frozenset({"cpu"}),
    "mobilefacenet_small": frozenset({"cpu"}),
    "mobilefacenet": frozenset({"cpu"}),
}


def prefers_channels_last(backbone: str | nn.Module, device_type: str) -> bool:
    """Whether ``backbone`` (a name, or a module from :func:`build_backbone`) is listed for the device."""
    name = backbone if isinstance(backbone, str) else getattr(backbone, "femb_spec", {}).get("name")
    return device_type in CHANNELS_LAST.get(name, frozenset())


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(backbone: str, embed_dim: int = 512, **kwargs) -> nn.Module:
    """A freshly initialised registered backbone, recording how it was built (``model.femb_spec``).

    :func:`femb.backbones.build_backbone` is the public entry point (it also loads weights).
    """
    if backbone not in _REGISTRY:
        raise ValueError(f"unknown backbone {backbone!r}; choices: {', '.join(list_backbones())}")
    if int(embed_dim) <= 0:
        raise ValueError(f"embed_dim must be positive, got {embed_dim}")
    model = _REGISTRY[backbone](embed_dim=int(embed_dim), **kwargs)
    # Recorded so that a checkpoint can rebuild the same network without pickling code.
    model.femb_spec = {"name": backbone, "kwargs": {"embed_dim": int(embed_dim), **kwargs}}
    return model


def backbone_spec(model: nn.Module) -> dict:
    spec = getattr(model, "femb_spec", None)
    if spec is None:
        raise ValueError(
            "this backbone was not built by femb.backbones.build_backbone, so a checkpoint cannot "
            "rebuild it; register it with @register_backbone and build it by name"
        )
    return spec
