"""Softmax cross-entropy with the classes spread over the ranks, and which classes a rank holds.

Global row max and sum of exponentials are all-reduced, the target logit comes from the one shard
that holds it, the mean runs over the labelled rows of the global batch, and the gradient with
respect to each shard's logits is (softmax − onehot)/N: the loss and gradients equal the
single-process cross-entropy's.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)``: rank ``rank`` of ``world_size`` holds classes [start, stop).

    Contiguous blocks [r·C/W, (r+1)·C/W) with integer division: sizes differ by at most one.
    """
    num_classes, rank, world_size = int(num_classes), int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    if num_classes < world_size:
        raise ValueError(f"{num_classes} classes cannot give each of {world_size} ranks at least one")
    return rank * num_classes // world_size, (rank + 1) * num_classes // world_size


class ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over the labelled rows, the classes spread over the shards.

    ``targets``: this shard's column of the row's class, ``-1`` when the class is elsewhere (or
    the row is unlabelled). With ``inplace`` the softmax overwrites the logits' storage (saving
    an N×C buffer); a head that kept its output logits for its own backward makes autograd raise
    a version error there, never a silent wrong gradient (use ``inplace=False`` for such a head).
    """

    @staticmethod
    def forward(
        ctx,
        logits: Tensor,
        targets: Tensor,
        labelled: Tensor,
        group: dist.ProcessGroup | None,
        distributed: bool,
        inplace: bool,
    ) -> Tensor:
        count = int(labelled.sum())  # the same on every rank: labels are gathered
        rows = torch.nonzero(targets >= 0).squeeze(1)
        columns = targets[rows]
        with torch.no_grad():
            target_logit = logits.new_zeros(logits.shape[0])
            target_logit[rows] = logits[rows, columns]
            row_max = logits.max(dim=1).values
            if distributed:
                dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
            probs = logits.detach() if inplace else logits.detach().clone()
            probs.sub_(row_max.unsqueeze(1)).exp_()
            # One all-reduce for the denominators and the target logits (zero off the holding shard).
            sums = torch.stack([probs.sum(dim=1), target_logit])
            if distributed:
                dist.all_reduce(sums, group=group)
            sum_exp, target_logit = sums[0], sums[1]
            probs.div_(sum_exp.unsqueeze(1))
            row_loss = sum_exp.log() + row_max - target_logit
            loss = torch.where(labelled, row_loss, torch.zeros_like(row_loss)).sum() / max(count, 1)
        ctx.save_for_backward(probs, rows, columns, labelled)
        ctx.count = count
        ctx.used = False
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.used:
            raise RuntimeError("the sharded cross-entropy reuses its softmax buffer: backward only once")
        ctx.used = True
        probs, rows, columns, labelled = ctx.saved_tensors
        grad_logits = probs  # softmax − onehot, built in the saved buffer
        grad_logits[rows, columns] -= 1.0
        row_scale = torch.where(labelled, grad / max(ctx.count, 1), torch.zeros_like(grad))
        grad_logits.mul_(row_scale.unsqueeze(1))
        return grad_logits, None, None, None, None, None
