"""Helpers for the header tests: 2-D embeddings at known angles and planar class centres."""

from __future__ import annotations

import io
import math

import torch

from femb.headers import MarginHeader, build_header, header_class, header_spec, list_headers

# From the registry, so that a new head is covered by the parametrised tests without editing them.
ALL_HEADERS = list_headers()
MARGIN_HEADERS = [name for name in ALL_HEADERS if issubclass(header_class(name), MarginHeader)]

# Tolerances by the dtype the embeddings had: the heads compute in float32 either way, so under
# bf16 the only extra error is the rounding of the embeddings themselves (8-bit mantissa).
TOLERANCES = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-4},
    torch.bfloat16: {"rtol": 2e-2, "atol": 1.0},
}


# The papers' scale. femb's default `s` is AdaCos's fixed scale (from the number of classes);
# the reference maths is checked at the official constant, so the planar heads pass it.
PAPER_SCALE = 64.0


def planar_header(name: str, **kwargs) -> torch.nn.Module:
    """A head on 2-D embeddings with three class centres at 0°, 90° and 180° (sub-centres: all alike).

    Heads with a scale get the papers' ``s=64`` unless ``kwargs`` say otherwise.
    """
    if any(option.name == "s" for option in header_class(name).options):
        kwargs.setdefault("s", PAPER_SCALE)
    header = build_header(name, 2, 3, **kwargs)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    with torch.no_grad():
        header.weight.copy_(centres.repeat_interleave(header.centres_per_class, dim=0))
    return header


def class_centres(header: torch.nn.Module) -> torch.Tensor:
    """One unit centre per class: the first of each class's sub-centres (rows are class-major)."""
    return torch.nn.functional.normalize(header.weight.detach()[:: header.centres_per_class], dim=1)


def at_angles(degrees, norm: float = 1.0) -> torch.Tensor:
    """2-D embeddings of the given norm at the given angles (degrees) from the x axis."""
    radians = torch.as_tensor(degrees, dtype=torch.float64).reshape(-1) * math.pi / 180.0
    return (norm * torch.stack([torch.cos(radians), torch.sin(radians)], dim=1)).float()


def target_sweep(header: torch.nn.Module, steps: int = 2001, norm: float = 1.0) -> torch.Tensor:
    """The target logit of class 0 (centre at 0°) for θ from 0 to π, in eval mode."""
    header.eval()
    degrees = torch.linspace(0.0, 180.0, steps, dtype=torch.float64)
    with torch.no_grad():
        return header(at_angles(degrees, norm), torch.zeros(steps, dtype=torch.long))[:, 0]


def resumed_copy(header: torch.nn.Module) -> torch.nn.Module:
    """The head rebuilt from its spec and a saved-and-loaded state dict, in the same mode."""
    buffer = io.BytesIO()
    torch.save(header.state_dict(), buffer)
    buffer.seek(0)
    spec = header_spec(header)
    resumed = build_header(spec["name"], **spec["kwargs"])
    resumed.load_state_dict(torch.load(buffer))
    return resumed.train(header.training)
