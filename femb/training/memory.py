"""How much memory this process may still use, and whether a model of a given size fits in it.

Read from Linux's ``/proc/meminfo`` and the cgroup limit (a container's), else the physical
memory; an estimate is refused before a byte of it is allocated, instead of the kernel's OOM kill.
"""

from __future__ import annotations

import os
from pathlib import Path

from femb.training.schema import ConfigError

# A float32 weight costs itself, its gradient and the optimizer's momentum (AdamW: two moments).
BYTES_PER_WEIGHT = 4 * 3
# The widest input of any backbone's embedding layer (iresnet: 512 channels × 7 × 7).
MAX_EMBEDDING_LAYER_INPUTS = 512 * 7 * 7
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def available_memory() -> int | None:
    """Bytes of memory this process can still use: ``MemAvailable`` (Linux), else physical memory,
    capped by a cgroup limit; None when nothing says."""
    candidates = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    for limit_file in CGROUP_LIMIT_FILES:
        try:
            text = Path(limit_file).read_text().strip()
            if text.isdigit() and int(text) < 1 << 60:
                candidates.append(int(text))
        except OSError:
            pass
    candidates = [c for c in candidates if c > 0]
    return min(candidates) if candidates else None


def gib(size: float) -> str:
    return f"{size / 2**30:,.1f} GiB"


def model_bytes(num_classes: int, embed_dim: int) -> tuple[int, int]:
    """(head bytes, head + embedding layer bytes): a lower bound of a model's training memory,
    each weight with its gradient and momentum; activations come on top."""
    head = int(num_classes) * int(embed_dim) * BYTES_PER_WEIGHT
    return head, head + MAX_EMBEDDING_LAYER_INPUTS * int(embed_dim) * BYTES_PER_WEIGHT


def check_model_memory(embed_dim: int, num_classes: int, extra_bytes: int = 0) -> None:
    """Refuse, before allocating, a model (plus ``extra_bytes``) that memory cannot hold."""
    head, needed = model_bytes(num_classes, embed_dim)
    needed += int(extra_bytes)
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            "embed_dim",
            f"embed_dim {embed_dim} with {num_classes:,} identities needs at least {gib(needed)} of "
            f"memory (the head alone {gib(head)}); only {gib(available)} is available: use a smaller "
            "embed_dim or fewer identities",
        )
