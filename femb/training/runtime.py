"""Where a training runs: device, mixed precision, and this process's place among its peers.

One process (``fit`` in a notebook) and several (``torchrun`` or the command line's process count)
go through the same object. With several, the process group comes from the launcher's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL on
CUDA, gloo on the CPU or where NCCL is missing. Every control decision (stop, pause, a
non-finite loss) goes through :meth:`Runtime.any_rank`, one tiny all-reduce, so all ranks take
the same branch at the same step; a rank that took another would wait forever in a collective.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from femb.training.devices import resolve_amp, resolve_device
from femb.training.sampler import EpochSampler

# A collective that waits longer than this means a peer has died or hung: fail, never hang.
TIMEOUT_ENV = "FEMB_COLLECTIVE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


def collective_timeout() -> datetime.timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    return datetime.timedelta(seconds=max(1.0, seconds))


def launched_world_size() -> int:
    """The number of processes the launcher started (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise ValueError(f"RANK={os.environ['RANK']!r} is not an integer") from None


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None = None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False

    @classmethod
    def create(cls, device: str | torch.device = "auto", amp: str | bool | None = None) -> Runtime:
        """This process's runtime; joins (or starts) the process group when launched as several."""
        world_size = dist.get_world_size() if dist.is_initialized() else launched_world_size()
        resolved = resolve_device(device)
        if world_size <= 1:
            return cls(resolved, resolve_amp(amp, resolved))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if resolved.type == "cuda":
            resolved = torch.device("cuda", local_rank)
            torch.cuda.set_device(resolved)
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if resolved.type == "cuda" and dist.is_nccl_available() else "gloo"
            dist.init_process_group(backend, timeout=collective_timeout())
            owns = True
        return cls(
            resolved,
            resolve_amp(amp, resolved),
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=local_rank,
            owns_process_group=owns,
        )

    # ------------------------------------------------------------------ who am I
    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        """Rank 0: the one that logs, writes the run directory and shows the dashboard."""
        return self.rank == 0

    # ------------------------------------------------------------------ compute
    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def grad_scaler(self) -> torch.amp.GradScaler:
        # Only fp16 needs loss scaling; bf16 has fp32's exponent range.
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def sampler(self, num_samples: int, seed: int) -> EpochSampler:
        """The seeded epoch sampler; each rank takes its own slice of the same permutation."""
        return EpochSampler(num_samples, seed=seed, rank=self.rank, world_size=self.world_size)

    def batch_seed(self, seed: int, step: int) -> int:
        """The seed of one step's random draws (augmentation, dropout): different on every rank."""
        return (seed * 1_000_003 + step) * self.world_size + self.rank

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP when there are several processes, else itself."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    # ------------------------------------------------------------------ agreement
    def agree(self, flags: list[bool]) -> list[bool]:
        """Each flag made true on every rank when it is true on at least one (a stop, a NaN, a
        pause), in one all-reduce: all ranks then take the same branch at the same step."""
        if not self.distributed:
            return [bool(flag) for flag in flags]
        values = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=self._collective_device())
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v > 0) for v in values.tolist()]

    def any_rank(self, flag: bool) -> bool:
        return self.agree([flag])[0]

    def sum(self, value: float) -> float:
        """The sum of ``value`` over ranks (images per step, for the global throughput)."""
        if not self.distributed:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(tensor)
        return float(tensor.item())

    def same_everywhere(self, description: dict) -> None:
        """Refuse to start when ranks were configured differently (head, classes, seed, …)."""
        if not self.distributed:
            return
        gathered: list[dict | None] = [None] * self.world_size
        dist.all_gather_object(gathered, description)
        for rank, other in enumerate(gathered):
            if other != gathered[0]:
                keys = sorted(k for k in set(other) | set(gathered[0]) if other.get(k) != gathered[0].get(k))
                raise ValueError(
                    f"rank {rank} was started with another configuration than rank 0 "
                    f"({', '.join(f'{k}: {gathered[0].get(k)!r} vs {other.get(k)!r}' for k in keys)})"
                )

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def shutdown(self) -> None:
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()

    def _collective_device(self) -> torch.device:
        # NCCL only reduces CUDA tensors; gloo only CPU ones.
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


class PeerLostError(ConnectionError):
    """A collective failed: another rank died or hung. An OSError, so the CLI says it in one line."""


def is_collective_failure(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, torch.distributed.DistError) or any(
        marker in text for marker in ("gloo", "NCCL", "Connection closed by peer", "Timed out")
    )
