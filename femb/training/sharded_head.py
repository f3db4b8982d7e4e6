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

Partial FC (``sample_rate`` < 1)
--------------------------------
Each training step every rank keeps the centres of the positive classes it holds plus a uniform
random sample of its other centres, ``ceil(sample_rate × shard)`` rows in all (more if there are
more positives), sorted by class. The head runs on a fresh leaf copy of those rows
(``torch.func.functional_call`` with the per-class parameters — ``weight``, and ``bias`` where
there is one — replaced by ``param[index]``), so the full shard never gets a ``.grad``.

The optimizer contract (both modes):

* Give the optimizer ``loss.parameters()`` (or the head's, through ``model.params``) as usual.
* Wrap its step: ``with loss.sampled_step(optimizer): optimizer.step()`` (or
  ``scaler.step(optimizer)``). Without Partial FC this does nothing. With it, the sampled
  leaves take the place of the full per-class parameters in the optimizer's param group, with
  the sampled rows of their optimizer state (momentum, Adam moments), so the optimizer's own
  update — learning rate from its scheduler, momentum, weight decay — runs on the sampled rows
  only; afterwards the rows and their state are written back into the full shard.
* Outside that block the full per-class parameters have no gradient, and torch's optimizers
  skip a parameter without a gradient: no momentum, no weight decay on rows that were not
  sampled. A row not sampled for k steps stays bit-identical.
* One training forward per step: the step applies to the rows sampled by the most recent
  forward (a forward whose step is skipped, e.g. after a non-finite loss, just drops its
  sample). SGD with ``dampening = 0`` gives exactly the dense head's update at
  ``sample_rate = 1``; for a state that is not per row (Adam's ``step`` count) the shared value
  is kept, so a rarely sampled row gets Adam's bias correction of the global step count.
* The full shard's optimizer state lives in this module (``row_state``), not in the optimizer;
  :func:`full_head_state` / :func:`load_full_head_state` save and restore it.

Use with DDP
------------
Keep this module out of ``DistributedDataParallel``: its parameters differ across ranks (DDP
would broadcast rank 0's shard at start and average the shards' gradients). The embeddings'
gradient on each rank is already the gradient of the *global* loss with respect to that rank's
rows; DDP then averages the backbone's gradients over ranks, i.e. divides the single-process
gradient by W (as InsightFace does). To match the single-process step exactly, scale the loss by
W for the backward or use a DDP communication hook that sums.

Checkpoints independent of the world size
-----------------------------------------
:func:`full_head_state` gathers the head into one state dict of a single-process head with
``out_features = num_classes`` (plus the per-row optimizer state), identical on every rank;
:func:`load_full_head_state` slices such a state for any rank of any world size.
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

from femb.headers.registry import header_spec
from femb.training.collectives import (
    all_gather_variable,
    all_reduce_sum,
    distributed_world,
    gather_variable,
)

STATE_FORMAT = "femb.sharded_head/1"


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


class _ShardedCrossEntropy(torch.autograd.Function):
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


class ShardedMarginLoss(nn.Module):
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

    def per_class_names(self) -> list[str]:
        """The header's parameters with rows per class (``weight``, ``bias``): what Partial FC samples."""
        return [
            name
            for name, param in self.header.named_parameters()
            if param.dim() >= 1 and param.shape[0] == self.shard_rows
        ]

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
            loss = _ShardedCrossEntropy.apply(
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

    # ------------------------------------------------------------------ Partial FC
    def sample_classes(self, targets: Tensor) -> Tensor:
        """Sorted shard classes for this step: every positive of ``targets`` plus uniform others."""
        device = self.header.weight.device
        if self.num_sampled >= self.shard_size:
            return torch.arange(self.shard_size, device=device)
        positives = targets[targets >= 0].unique()
        # Seeded from the global generator's seed, which the training loop sets before every step
        # from (seed, step, rank): a resumed run samples exactly the classes the uninterrupted one
        # did, and no draw is taken from the global stream (the head's own draws stay as they were).
        generator = torch.Generator(device=device)
        generator.manual_seed((torch.initial_seed() * 1_000_003 + self.seed) % (1 << 63))
        score = torch.rand(self.shard_size, generator=generator, device=device)
        score[positives] = 2.0  # above every uniform draw: positives are always kept
        keep = max(self.num_sampled, int(positives.numel()))
        return torch.topk(score, keep, sorted=False).indices.sort().values

    def _sampled_logits(self, embeddings: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            classes = self.sample_classes(targets)
            position = torch.searchsorted(classes, targets.clamp_min(0))
            targets = torch.where(targets >= 0, position, targets)
            index = self.class_rows(classes)
        params = dict(self.header.named_parameters())
        leaves = {
            name: params[name].detach().index_select(0, index).requires_grad_(params[name].requires_grad)
            for name in self.per_class_names()
        }
        # The head sees the sampled classes only; a head that reads `out_features` in its forward
        # (sub-centres: logits viewed as N × out_features × K) must see their number.
        out_features = self.header.out_features
        self.header.out_features = int(classes.numel())
        try:
            logits = torch.func.functional_call(self.header, leaves, (embeddings, targets), strict=False)
        finally:
            self.header.out_features = out_features
        self._pending = (index, leaves)
        self.last_index = classes
        return logits, targets

    def class_rows(self, classes: Tensor) -> Tensor:
        """The per-class parameter rows of shard ``classes`` (class-major, K per class)."""
        per_class = self.centres_per_class
        if per_class == 1:
            return classes
        offsets = torch.arange(per_class, device=classes.device)
        return (classes.unsqueeze(1) * per_class + offsets).flatten()

    @contextmanager
    def sampled_step(self, optimizer: torch.optim.Optimizer) -> Iterator[None]:
        """Wrap ``optimizer.step()``: with Partial FC it updates the sampled rows only.

        A no-op without sampled rows (``sparse_rows`` off) or without a training forward since
        the last step.
        """
        pending, self._pending = self._pending, None
        if not self.sparse_rows or pending is None:
            yield
            return
        index, leaves = pending
        params = dict(self.header.named_parameters())
        slots = {name: _find_param(optimizer, params[name], name) for name in leaves}
        for name, leaf in leaves.items():
            group, position = slots[name]
            optimizer.param_groups[group]["params"][position] = leaf
            state = self._sampled_state(name, index)
            if state:
                optimizer.state[leaf] = state
        try:
            yield
        except BaseException:
            for name, leaf in leaves.items():
                group, position = slots[name]
                optimizer.param_groups[group]["params"][position] = params[name]
                optimizer.state.pop(leaf, None)
            raise
        with torch.no_grad():
            for name, leaf in leaves.items():
                group, position = slots[name]
                optimizer.param_groups[group]["params"][position] = params[name]
                params[name].index_copy_(0, index, leaf.detach())
                self._store_state(name, index, optimizer.state.pop(leaf, {}))

    def _sampled_state(self, name: str, index: Tensor) -> dict[str, Any]:
        state = {}
        for key, value in self.row_state.get(name, {}).items():
            if _is_row_state(value, self.shard_rows):
                state[key] = value.index_select(0, index)
            else:
                state[key] = value
        return state

    def _store_state(self, name: str, index: Tensor, state: dict[str, Any]) -> None:
        full = self.row_state.setdefault(name, {})
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == index.numel():
                if key not in full:
                    full[key] = value.new_zeros((self.shard_rows, *value.shape[1:]))
                full[key].index_copy_(0, index, value)
            else:
                full[key] = value


def _identity(tensor: Tensor) -> Tensor:
    return tensor


def _is_row_state(value: Any, rows: int) -> bool:
    return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == rows


def _find_param(optimizer: torch.optim.Optimizer, param: Tensor, name: str) -> tuple[int, int]:
    for group_index, group in enumerate(optimizer.param_groups):
        for position, candidate in enumerate(group["params"]):
            if candidate is param:
                return group_index, position
    raise ValueError(
        f"the optimizer does not hold header.{name}: give it the sharded loss's parameters "
        "(or the model's, with the sharded loss as its header)"
    )


# ---------------------------------------------------------------------- world-size-free state
def _agreed_keys(loss: ShardedMarginLoss, keys: list[str]) -> list[str]:
    """The union of ``keys`` over the ranks, sorted: every rank then runs the same collectives."""
    if not loss.distributed:
        return sorted(keys)
    every: list[list[str] | None] = [None] * loss.world_size
    dist.all_gather_object(every, sorted(keys), group=loss.group)
    return sorted({key for rank_keys in every for key in (rank_keys or [])})


def _optimizer_rows(
    loss: ShardedMarginLoss, optimizer: torch.optim.Optimizer | None
) -> dict[str, dict[str, Any]]:
    """This shard's optimizer state of the per-class parameters, wherever it is held."""
    if loss.sparse_rows:
        return loss.row_state
    if optimizer is None:
        return {}
    params = dict(loss.header.named_parameters())
    return {name: dict(optimizer.state.get(params[name], {})) for name in loss.per_class_names()}


def full_head_state(
    loss: ShardedMarginLoss, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """The whole head, gathered from every shard (a collective: call it on every rank).

    Returns, identical on every rank::

        {"format", "num_classes",
         "header": header_spec of the single-process head (out_features = num_classes), or None,
         "state_dict": state dict of that single-process head,
         "optimizer_rows": {param name: {state key: full tensor, or a shared value}}}

    ``optimizer_rows`` holds the optimizer state of the per-class rows (momentum): from
    ``loss.row_state`` with Partial FC, from ``optimizer`` (when given) otherwise.
    """
    names = set(loss.per_class_names())

    def gather(tensor: Tensor) -> Tensor:
        return all_gather_variable(tensor, loss.group).clone() if loss.distributed else tensor.clone()

    state_dict = {}
    local = loss.header.state_dict()
    for key in sorted(local):
        value = local[key]
        state_dict[key] = gather(value) if key in names else value.clone()
    rows = _optimizer_rows(loss, optimizer)
    optimizer_rows: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        local_state = rows.get(name, {})
        keys = _agreed_keys(loss, [k for k, v in local_state.items() if _is_row_state(v, loss.shard_rows)])
        gathered = {}
        for key in keys:
            value = local_state.get(key)
            if value is None:  # not stepped yet on this rank: its rows have no state
                reference = loss.header.get_parameter(name)
                value = torch.zeros_like(reference)
            gathered[key] = gather(value)
        shared = {k: v for k, v in local_state.items() if not _is_row_state(v, loss.shard_rows)}
        if gathered or shared:
            optimizer_rows[name] = {**shared, **gathered}
    try:
        spec = header_spec(loss.header)
        spec["kwargs"]["out_features"] = loss.num_classes
    except ValueError:  # an unregistered head: the state dict still loads into the same class
        spec = None
    return {
        "format": STATE_FORMAT,
        "num_classes": loss.num_classes,
        "header": spec,
        "state_dict": state_dict,
        "optimizer_rows": optimizer_rows,
    }


def load_full_head_state(
    loss: ShardedMarginLoss, state: dict[str, Any], optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Load a :func:`full_head_state` (from any world size) into this rank's shard.

    The per-class rows [start, stop) go into the header; its other entries (SphereFace's
    ``iter``, EMA buffers) as they are. The per-row optimizer state goes into ``loss.row_state``
    with Partial FC, into ``optimizer.state`` otherwise (skipped when ``optimizer`` is None).
    """
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"not a full head state ({STATE_FORMAT}): format={state.get('format')!r}")
    if int(state["num_classes"]) != loss.num_classes:
        raise ValueError(f"the state has {state['num_classes']} classes, this head {loss.num_classes}")
    names = set(loss.per_class_names())

    per_class = loss.centres_per_class

    def shard(value: Any) -> Any:
        if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == loss.num_classes * per_class:
            return value[loss.start * per_class : loss.stop * per_class].clone()
        return value

    loss.header.load_state_dict(
        {key: shard(value) if key in names else value for key, value in state["state_dict"].items()}
    )
    params = dict(loss.header.named_parameters())
    for name, entries in state.get("optimizer_rows", {}).items():
        sliced = {key: shard(value) for key, value in entries.items()}
        sliced = {
            key: value.to(params[name].device) if isinstance(value, Tensor) else value
            for key, value in sliced.items()
        }
        if loss.sparse_rows:
            loss.row_state[name] = sliced
        elif optimizer is not None:
            optimizer.state[params[name]] = sliced


__all__ = [
    "ShardedMarginLoss",
    "full_head_state",
    "load_full_head_state",
    "shard_range",
]
