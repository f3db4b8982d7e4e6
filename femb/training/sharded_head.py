"""A model-parallel margin head: class centres sharded over ranks, softmax across shards, Partial FC.

Rank r of W holds the contiguous classes :func:`shard_range` ``(C, r, W)`` = [r·C/W, (r+1)·C/W)
(integer division, so uneven splits are fine) in an ordinary femb head built with
``out_features = stop − start``. :class:`ShardedMarginLoss` wraps that head:

1. embeddings are all-gathered with a gradient (:func:`femb.training.collectives.gather_variable`;
   batch sizes may differ across ranks) and labels without one;
2. labels become this shard's column indices, ``-1`` where the class lives on another rank. The
   row still belongs in this shard's softmax denominator; a *global* label ``-1`` (unlabelled,
   as in :meth:`femb.model.FaceEmbeddingModel.compute_loss`) leaves the row out of the loss;
3. the head's own ``forward`` gives this shard's margin logits, so every registered head works
   (SphereFace's ‖x‖ scale and its λ counter, which advances once per step on every rank; the
   margin of any head added later through :meth:`femb.headers.base.MarginHeader.margin`);
4. cross-entropy across shards: global row max and sum of exponentials are all-reduced, the
   target logit comes from the one shard that holds it, the mean runs over the labelled rows of
   the global batch, and the gradient with respect to each shard's logits is
   (softmax − onehot)/N. The loss is the same scalar on every rank, and the loss and gradients
   equal the single-process head's;
5. a regulariser of the embeddings (``header.extra_loss``, MagFace's g(a)) is added once: rank 0
   adds it with its gradient (which reaches every rank's rows through the gather), the others
   add its value only, so that the reported loss is the same everywhere.

Statistics of the batch (the ``sum_over_shards`` hook)
------------------------------------------------------
Every rank sees the whole gathered batch, so statistics of the embeddings (AdaFace's norm
mean/std) agree on all ranks by construction. Statistics of the *target* cosines
(CurricularFace's t) do not: each shard holds the targets of its own classes only (``valid`` in
:meth:`~femb.headers.base.MarginHeader.update_statistics` marks them). During a forward the
wrapper replaces the head's :meth:`~femb.headers.base.MarginHeader.sum_over_shards` (the identity
on one process) with an all-reduce over the shards (no gradient). A head sums its partial
quantities through it — ``[Σ cosθ_y over valid rows, count]`` for a mean, or the per-row target
cosine with zeros where ``valid`` is false to give every shard every row's cosθ_y — and its EMA
buffers then stay identical on every rank and equal to the single-process head's.

Heads with several centres per class (``centres_per_class`` = K, rows class-major ``c·K + k``)
are sharded and sampled by class: a shard holds ``K·(stop − start)`` rows, Partial FC keeps all K
rows of a sampled class (and the head's ``out_features`` reads the number of sampled classes
during the forward).

Use with DDP
------------
Keep this module out of ``DistributedDataParallel``: its parameters differ across ranks (DDP
would broadcast rank 0's shard at start and average the shards' gradients). The embeddings'
gradient on each rank is already the gradient of the *global* loss with respect to that rank's
rows; DDP then averages the backbone's gradients over ranks, i.e. divides the single-process
gradient by W (as InsightFace does). To match the single-process step exactly, scale the loss by
W for the backward or use a DDP communication hook that sums.

Partial FC (``sample_rate`` < 1) and its optimizer contract: :mod:`femb.training.partial_fc`;
the softmax across shards: :mod:`femb.training.sharded_softmax`; checkpoints independent of the
world size (:func:`full_head_state`, :func:`load_full_head_state`): :mod:`femb.training.sharded_state`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from femb.training.collectives import (
    all_gather_variable,
    all_reduce_sum,
    distributed_world,
    gather_variable,
)
from femb.training.partial_fc import PartialFCSampling
from femb.training.sharded_softmax import ShardedCrossEntropy, shard_range
from femb.training.sharded_state import STATE_FORMAT, full_head_state, load_full_head_state


class ShardedMarginLoss(PartialFCSampling, nn.Module):
    """The loss of a margin head whose classes are sharded over the ranks; see the module docstring.

    Args:
        header: a femb head (``femb.headers.build_header``) with ``out_features`` equal to this
            rank's shard size, ``stop − start`` of :func:`shard_range`.
        num_classes: the number of classes C over all ranks.
        rank, world_size: this rank in ``group``; default: torch.distributed's (0 and 1 without it).
        sample_rate: Partial FC's r in (0, 1]; 1 uses every centre.
        group: the process group of the head (default: the world).
        sparse_rows: run the sampled-rows machinery (leaf copies, :meth:`sampled_step`) even at
            ``sample_rate = 1``; default: only when ``sample_rate < 1``.
        seed: mixed into the per-step sampling seed (the global generator's seed of the step).
        inplace_softmax: let the cross-entropy overwrite the logits with the softmax.
    """

    def __init__(
        self,
        header: nn.Module,
        num_classes: int,
        rank: int | None = None,
        world_size: int | None = None,
        sample_rate: float = 1.0,
        group: dist.ProcessGroup | None = None,
        *,
        sparse_rows: bool | None = None,
        seed: int = 0,
        inplace_softmax: bool = True,
    ) -> None:
        super().__init__()
        default_rank, default_world = distributed_world(group)
        self.rank = default_rank if rank is None else int(rank)
        self.world_size = default_world if world_size is None else int(world_size)
        self.num_classes = int(num_classes)
        self.start, self.stop = shard_range(self.num_classes, self.rank, self.world_size)
        self.centres_per_class = int(getattr(header, "centres_per_class", 1))
        weight = getattr(header, "weight", None)
        if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.shape[0] != self.shard_rows:
            shape = None if not isinstance(weight, Tensor) else tuple(weight.shape)
            raise ValueError(
                f"rank {self.rank} of {self.world_size} holds classes [{self.start}, {self.stop}) of "
                f"{self.num_classes}: build its header with out_features={self.shard_size} "
                f"(its weight is {shape})"
            )
        if not 0.0 < float(sample_rate) <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.header = header
        self.group = group
        self.sample_rate = float(sample_rate)
        self.sparse_rows = self.sample_rate < 1.0 if sparse_rows is None else bool(sparse_rows)
        self.num_sampled = min(self.shard_size, math.ceil(self.sample_rate * self.shard_size))
        self.seed = int(seed)
        self.inplace_softmax = bool(inplace_softmax)
        # Full-shard optimizer state of the per-class parameters (Partial FC): {name: {key: tensor}};
        # per-row tensors have shard_rows rows, other entries (Adam's step) are kept as they are.
        self.row_state: dict[str, dict[str, Any]] = {}
        self.last_index: Tensor | None = None  # the classes the last training forward used (sorted)
        self._pending: tuple[Tensor, dict[str, Tensor]] | None = None

    @property
    def shard_size(self) -> int:
        """The number of classes this rank holds."""
        return self.stop - self.start

    @property
    def shard_rows(self) -> int:
        """The rows of this rank's per-class parameters (``centres_per_class`` per class)."""
        return self.shard_size * self.centres_per_class

    def extra_repr(self) -> str:
        return (
            f"classes=[{self.start}, {self.stop}) of {self.num_classes}, rank={self.rank}, "
            f"world_size={self.world_size}, sample_rate={self.sample_rate}, sparse_rows={self.sparse_rows}"
        )

    # ------------------------------------------------------------------ forward
    def forward(self, local_embeddings: Tensor, local_labels: Tensor) -> Tensor:
        """The global batch's loss (the same scalar on every rank) from this rank's rows."""
        self._check_world()
        with torch.autocast(device_type=local_embeddings.device.type, enabled=False):
            embeddings, labels = local_embeddings.float(), local_labels.long()
            if self.distributed:
                embeddings = gather_variable(embeddings, self.group)
                labels = all_gather_variable(labels, self.group)
            self._check_batch(embeddings, labels)
            held = (labels >= self.start) & (labels < self.stop)
            targets = torch.where(held, labels - self.start, torch.full_like(labels, -1))
            with self._shard_sums():
                if self.sparse_rows and self.training and torch.is_grad_enabled():
                    logits, targets = self._sampled_logits(embeddings, targets)
                else:
                    self._pending = None
                    logits = self.header(embeddings, targets)
            loss = ShardedCrossEntropy.apply(
                logits, targets, labels >= 0, self.group, self.distributed, self.inplace_softmax
            )
            extra = self._extra_loss(embeddings)
        return loss if extra is None else loss + extra

    @property
    def distributed(self) -> bool:
        """Whether the shards talk: a one-process head never calls a collective (even inside a job)."""
        return self.world_size > 1

    def _check_world(self) -> None:
        actual = distributed_world(self.group) if self.distributed else (0, 1)
        if actual != (self.rank, self.world_size):
            raise RuntimeError(
                f"this head was built for rank {self.rank} of {self.world_size}, but torch.distributed "
                f"gives rank {actual[0]} of {actual[1]}"
            )

    def _check_batch(self, embeddings: Tensor, labels: Tensor) -> None:
        in_features = self.header.weight.shape[1]
        if embeddings.shape[-1] != in_features:
            raise ValueError(
                f"embedding size mismatch: got {embeddings.shape[-1]}-d embeddings, the header "
                f"expects in_features={in_features}"
            )
        bad = labels[(labels < -1) | (labels >= self.num_classes)]
        if bad.numel():
            raise ValueError(f"label {int(bad[0])} is outside [0, {self.num_classes}) (-1: unlabelled)")

    @contextmanager
    def _shard_sums(self) -> Iterator[None]:
        if self.distributed:
            self.header.sum_over_shards = partial(all_reduce_sum, group=self.group)
        else:
            self.header.sum_over_shards = _identity
        try:
            yield
        finally:
            del self.header.sum_over_shards

    def _extra_loss(self, embeddings: Tensor) -> Tensor | None:
        extra_loss = getattr(self.header, "extra_loss", None)
        if extra_loss is None:
            return None
        if self.rank == 0:
            return extra_loss(embeddings)
        with torch.no_grad():
            return extra_loss(embeddings)


def _identity(tensor: Tensor) -> Tensor:
    return tensor


__all__ = [
    "STATE_FORMAT",
    "ShardedMarginLoss",
    "full_head_state",
    "load_full_head_state",
    "shard_range",
]
