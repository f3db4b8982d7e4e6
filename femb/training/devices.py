"""Device and mixed-precision choices, with one clear error for impossible requests."""

from __future__ import annotations

import torch

AMP_CHOICES = ("none", "bf16", "fp16", "auto")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        device_name = device.type
    else:
        device_name = str(device)
    if device_name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device_name!r} but CUDA is not available here; use device='cpu' or 'auto'")
    try:
        return torch.device(device_name)
    except RuntimeError:
        raise ValueError(f"unknown device {device_name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from None


def resolve_amp(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full fp32)."""
    if amp in (None, False, "none", "fp32", ""):
        return None
    if amp is True or amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None  # CPU autocast is slower than fp32 for these convolutions
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("amp='bf16' but this GPU does not support bfloat16; use amp='fp16'")
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; on the CPU use amp='bf16' or none")
        return torch.float16
    raise ValueError(f"unknown amp {amp!r}; choices: {', '.join(AMP_CHOICES)}")
