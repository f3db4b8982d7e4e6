"""Partial FC: each step a rank's sharded head runs on a sample of its classes' centres.

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
* The full shard's optimizer state lives in the loss module (``row_state``), not in the optimizer;
  :func:`full_head_state` / :func:`load_full_head_state` save and restore it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class PartialFCSampling:
    """The Partial FC part of :class:`femb.training.sharded_head.ShardedMarginLoss`.

    Reads the loss's ``header``, ``shard_size``, ``shard_rows``, ``centres_per_class``,
    ``num_sampled``, ``sparse_rows`` and ``seed``; keeps the full shard's optimizer state in
    ``row_state`` and the last forward's sample in ``last_index``.
    """

    header: nn.Module
    shard_size: int
    shard_rows: int
    centres_per_class: int
    num_sampled: int
    sparse_rows: bool
    seed: int
    row_state: dict[str, dict[str, Any]]
    last_index: Tensor | None
    _pending: tuple[Tensor, dict[str, Tensor]] | None

    def per_class_names(self) -> list[str]:
        """The header's parameters with rows per class (``weight``, ``bias``): what Partial FC samples."""
        return [
            name
            for name, param in self.header.named_parameters()
            if param.dim() >= 1 and param.shape[0] == self.shard_rows
        ]

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
            if is_row_state(value, self.shard_rows):
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


def is_row_state(value: Any, rows: int) -> bool:
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
