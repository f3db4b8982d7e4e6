"""Collectives for tensors whose first dimension differs across ranks (a ragged last batch).

``torch.distributed.all_gather`` wants the same shape on every rank. :func:`all_gather_variable`
gathers the sizes first, pads every block to the largest, gathers and trims: the result is the
blocks of ranks 0, 1, … in order. :func:`gather_variable` is the same gather with a gradient: its
backward gives each rank the sum over ranks of the gradient of *its own* rows (the
reduce-scatter of the gathered gradient), which is what a model-parallel head needs, since every
rank's loss depends on every rank's embeddings.

Everything here is the identity when ``torch.distributed`` is not initialised or the group has one
process, so the same code runs in a plain single-process job.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def distributed_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group``; ``(0, 1)`` when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _is_nccl(group: dist.ProcessGroup | None, tensor: Tensor) -> bool:
    return tensor.is_cuda and "nccl" in str(dist.get_backend(group)).lower()


def gather_sizes(tensor: Tensor, group: dist.ProcessGroup | None = None) -> list[int]:
    """The first dimension of ``tensor`` on every rank of ``group``, in rank order."""
    _, world_size = distributed_world(group)
    if world_size == 1:
        return [int(tensor.shape[0])]
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.empty_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size, group=group)
    return [int(s.item()) for s in sizes]


def _all_gather_padded(tensor: Tensor, sizes: list[int], group: dist.ProcessGroup | None) -> Tensor:
    tensor = tensor.contiguous()
    longest = max(sizes)
    if tensor.shape[0] < longest:
        padding = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        tensor = torch.cat([tensor, padding])
    blocks = [torch.empty_like(tensor) for _ in sizes]
    dist.all_gather(blocks, tensor, group=group)
    return torch.cat([block[:size] for block, size in zip(blocks, sizes, strict=True)])


def all_gather_variable(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order (no gradient; any dtype)."""
    _, world_size = distributed_world(group)
    if world_size == 1:
        return tensor
    return _all_gather_padded(tensor.detach(), gather_sizes(tensor, group), group)


def _reduce_scatter_rows(
    grad: Tensor, sizes: list[int], rank: int, group: dist.ProcessGroup | None
) -> Tensor:
    """Sum over ranks of ``grad`` (``sum(sizes) × …``), keeping this rank's rows."""
    start = sum(sizes[:rank])
    if _is_nccl(group, grad):
        # NCCL reduce-scatters equal blocks: pad every rank's rows to the longest.
        longest = max(sizes)
        padded = grad.new_zeros((len(sizes) * longest, *grad.shape[1:]))
        offset = 0
        for block, size in enumerate(sizes):
            padded[block * longest : block * longest + size] = grad[offset : offset + size]
            offset += size
        mine = grad.new_empty((longest, *grad.shape[1:]))
        dist.reduce_scatter_tensor(mine, padded, group=group)
        return mine[: sizes[rank]]
    # Gloo has no reduce-scatter for every dtype and layout: all-reduce the whole gradient, slice.
    total = grad.contiguous().clone()
    dist.all_reduce(total, group=group)
    return total[start : start + sizes[rank]]


class _GatherVariable(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, group: dist.ProcessGroup | None) -> Tensor:
        sizes = gather_sizes(tensor, group)
        ctx.sizes, ctx.group = sizes, group
        ctx.rank = dist.get_rank(group)
        return _all_gather_padded(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _reduce_scatter_rows(grad, ctx.sizes, ctx.rank, ctx.group), None


def gather_variable(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """All-gather along dim 0 (sizes may differ across ranks), differentiable.

    Backward: each rank receives the sum over all ranks of the gradient with respect to its own
    rows. The identity without torch.distributed or with one process.
    """
    _, world_size = distributed_world(group)
    if world_size == 1:
        return tensor
    return _GatherVariable.apply(tensor, group)


def all_reduce_sum(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """A new tensor: the sum of ``tensor`` over the ranks of ``group`` (no gradient)."""
    total = tensor.detach().clone()
    if distributed_world(group)[1] > 1:
        dist.all_reduce(total, group=group)
    return total


__all__ = [
    "all_gather_variable",
    "all_reduce_sum",
    "distributed_world",
    "gather_sizes",
    "gather_variable",
]
