"""Checkpoints of a sharded head that do not depend on the world size.

:func:`full_head_state` gathers the head into one state dict of a single-process head with
``out_features = num_classes`` (plus the per-row optimizer state), identical on every rank;
:func:`load_full_head_state` slices such a state for any rank of any world size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from femb.headers.registry import header_spec
from femb.training.collectives import all_gather_variable
from femb.training.partial_fc import is_row_state

if TYPE_CHECKING:
    from femb.training.sharded_head import ShardedMarginLoss

STATE_FORMAT = "femb.sharded_head/1"


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
        keys = _agreed_keys(loss, [k for k, v in local_state.items() if is_row_state(v, loss.shard_rows)])
        gathered = {}
        for key in keys:
            value = local_state.get(key)
            if value is None:  # not stepped yet on this rank: its rows have no state
                reference = loss.header.get_parameter(name)
                value = torch.zeros_like(reference)
            gathered[key] = gather(value)
        shared = {k: v for k, v in local_state.items() if not is_row_state(v, loss.shard_rows)}
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
