"""What one training step minimises, and how the head is kept in a checkpoint.

On one process with every class centre in use, the objective is the model's own
``compute_loss`` (any loss module the user gave). With several processes, or with Partial FC
(``sample_rate < 1``), the model's head is cut into this rank's block of classes and wrapped in
a :class:`~femb.training.sharded_head.ShardedMarginLoss` (softmax cross-entropy across the
shards). Either way a checkpoint holds the *full* head and the optimizer state of its rows by
parameter name (``training["head_rows"]``), so a run saved on W processes resumes on any other
number.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from femb.headers import build_header, header_spec
from femb.training.runtime import Runtime
from femb.training.sharded_head import (
    STATE_FORMAT,
    ShardedMarginLoss,
    full_head_state,
    load_full_head_state,
    shard_range,
)


class Objective:
    def __init__(
        self, model, optimizer: torch.optim.Optimizer, runtime: Runtime, sample_rate: float, seed: int
    ):
        if not 0.0 < float(sample_rate) <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.model, self.optimizer, self.runtime = model, optimizer, runtime
        self.sharded: ShardedMarginLoss | None = None
        if runtime.distributed or sample_rate < 1.0:
            self.sharded = _shard_model_head(model, optimizer, runtime, float(sample_rate), seed)

    @property
    def num_classes(self) -> int | None:
        """The number of classes over every shard (the model's head may hold a block of them)."""
        return self.sharded.num_classes if self.sharded is not None else self.model.num_classes

    @property
    def backward_scale(self) -> float:
        """DDP averages the backbone's gradients over ranks, while each rank's embedding gradient
        is already that of the global loss: scaling the backward by W gives the one-process step."""
        return float(self.runtime.world_size) if self.sharded is not None else 1.0

    def loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if self.sharded is None:
            return self.model.compute_loss(embeddings, labels)
        return self.sharded(embeddings, labels)

    def optimizer_step(self, step) -> None:
        """Run ``step()`` (the optimizer's or the grad scaler's); Partial FC updates sampled rows only."""
        context = self.sharded.sampled_step(self.optimizer) if self.sharded else contextlib.nullcontext()
        with context:
            step()

    # ------------------------------------------------------------------ checkpoints
    def head_checkpoint(self) -> tuple[dict, dict]:
        """(the full header entry of a checkpoint, the optimizer state of its rows by name).

        A collective when the head is sharded: call it on every rank.
        """
        if self.sharded is not None:
            full = full_head_state(self.sharded, self.optimizer)
            return {**full["header"], "state_dict": full["state_dict"]}, full["optimizer_rows"]
        header = self.model.header
        rows = {
            name: dict(self.optimizer.state.get(param, {})) for name, param in _named_rows(header).items()
        }
        return {**header_spec(header), "state_dict": header.state_dict()}, {
            k: v for k, v in rows.items() if v
        }

    def optimizer_state_without_head(self) -> dict:
        """The optimizer's state dict minus the head's rows (those go in ``head_rows``, by name)."""
        state = self.optimizer.state_dict()
        head_ids = {id(p) for p in _named_rows(self.model.header).values()}
        index = 0
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                if id(param) in head_ids:
                    state["state"].pop(index, None)
                index += 1
        return state

    def load_head(self, header_entry: dict, rows: dict[str, dict[str, Any]] | None) -> None:
        """Load a full head (and its rows' optimizer state) into this rank's head or shard."""
        num_classes = int(header_entry["kwargs"]["out_features"])
        if self.sharded is not None:
            state = {
                "format": STATE_FORMAT,
                "num_classes": num_classes,
                "state_dict": header_entry["state_dict"],
                "optimizer_rows": rows or {},
            }
            load_full_head_state(self.sharded, state, self.optimizer)
            return
        header = self.model.header
        header.load_state_dict(header_entry["state_dict"])
        device = header.weight.device
        for name, param in _named_rows(header).items():
            if rows and name in rows:
                self.optimizer.state[param] = {
                    k: v.to(device) if isinstance(v, Tensor) else v for k, v in rows[name].items()
                }


def _named_rows(header: nn.Module) -> dict[str, nn.Parameter]:
    return dict(header.named_parameters())


def _shard_model_head(model, optimizer, runtime: Runtime, sample_rate: float, seed: int) -> ShardedMarginLoss:
    """Replace ``model.header`` (all classes) by this rank's block, in the model and in the optimizer."""
    if (
        type(model.loss) is not nn.CrossEntropyLoss
        or model.loss.label_smoothing
        or model.loss.weight is not None
    ):
        raise ValueError(
            "a sharded or sampled head (several processes, or sample_rate < 1) computes plain softmax "
            f"cross-entropy itself; this model's loss is {model.loss!r}"
        )
    full = model.header
    spec = header_spec(full)
    num_classes = int(spec["kwargs"]["out_features"])
    start, stop = shard_range(num_classes, runtime.rank, runtime.world_size)
    if stop <= start:
        raise ValueError(f"{num_classes} classes cannot be split over {runtime.world_size} processes")
    shard = build_header(spec["name"], **{**spec["kwargs"], "out_features": stop - start})
    shard.train(full.training)
    loss = ShardedMarginLoss(
        shard, num_classes, runtime.rank, runtime.world_size, sample_rate=sample_rate, seed=seed
    )
    state = {"format": STATE_FORMAT, "num_classes": num_classes, "state_dict": full.state_dict()}
    load_full_head_state(loss, state)
    shard.to(runtime.device)
    replaced = {id(param): shard.get_parameter(name) for name, param in full.named_parameters()}
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(id(param), param) for param in group["params"]]
    model.header = shard
    return loss
