"""What a run is, in (label, value) rows for the dashboard's side panel and its one-line header."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from femb_cli.dashboard.fields import as_count, as_number, as_text

if TYPE_CHECKING:
    from femb_cli.dashboard.state import RunState


def config_summary(state: RunState) -> list[tuple[str, str]]:
    """(label, value) rows of what the run is: the start event's config, with fallbacks."""
    config = state.config
    # The config comes from the file as it is: every value is checked for its type here.
    names = ("head", "backbone", "data", "optimizer", "scheduler")
    text = {key: as_text(config.get(key), 60) for key in names}
    numbers = {key: as_number(config.get(key)) for key in ("lr", "sample_rate")}
    sample_rate = numbers["sample_rate"]
    partial_fc = f"Partial FC r={sample_rate:g}" if sample_rate is not None and 0 < sample_rate < 1 else None
    weights = as_text(config.get("init_backbone"), 4096)
    embed_dim = as_count(config.get("embed_dim"))
    amp = as_text(config.get("amp"), 20)
    classes = f"({state.num_classes:,} classes)" if state.num_classes else None
    embedding = _join(
        f"{embed_dim}-d" if embed_dim else None,
        f"{state.num_parameters / 1e6:.2f}M params" if state.num_parameters else None,
    )
    rows = [
        ("run", state.run_name),
        ("backbone", text["backbone"]),
        ("embed", embedding),
        ("weights", _path_tail(weights, WEIGHTS_WIDTH) if weights else None),
        ("head", _join(text["head"], head_option_text(_effective_head(state)), partial_fc)),
        ("data", _join(text["data"], classes)),
        ("batch", str(state.batch_size) if state.batch_size else None),
        (
            "optim",
            _join(
                text["optimizer"],
                f"lr {numbers['lr']:g}" if numbers["lr"] is not None else None,
                text["scheduler"],
            ),
        ),
        ("device", _join(state.device, f"amp {amp}" if amp not in (None, "none") else None)),
        ("processes", str(state.world_size) if state.world_size and state.world_size > 1 else None),
        ("steps", f"{state.total_steps:,}" if state.total_steps else None),
        ("options", _other_options(config)),
    ]
    return [(label, str(value)) for label, value in rows if value]


# Schema fields the rows above show; every other one is listed under "options" when it was changed.
SHOWN_OPTIONS = {"head", "backbone", "data", "optimizer", "scheduler", "lr", "sample_rate", "init_backbone"}
SHOWN_OPTIONS |= {"embed_dim", "amp", "batch_size", "steps", "device", "run_dir", "name"}


def _effective_head(state: RunState) -> dict[str, Any]:
    """The head's options as the run built them (the start event's head), else as configured."""
    from femb.training.config import config_rows

    if state.head_spec is None and "head" not in state.config:  # a bare fit: nothing to say
        return {}
    rows = config_rows(state.config, state.head_spec)
    return {key.removeprefix("head."): value for key, value, _ in rows if key.startswith("head.")}


def _other_options(config: dict[str, Any]) -> str | None:
    """``field=value`` of every other schema option the run set to something but its default."""
    from femb.training.config import config_rows

    defaults = {key: value for key, value, _ in config_rows({})}
    changed = [
        f"{key}={as_text(str(value), 40)}"
        for key, value, _ in config_rows(config)
        if key in defaults and key not in SHOWN_OPTIONS and "." not in key and value != defaults[key]
    ]
    return ", ".join(changed[:MAX_HEAD_OPTIONS]) or None


# Characters of a weights path the run panel shows: its end, where the file name is.
WEIGHTS_WIDTH = 29
MAX_HEAD_OPTIONS = 12


def head_option_text(options: Any) -> str | None:
    """``key=value …`` of a run's head options, whatever the head (the config's ``head_options``).

    Only keys and values of plain types are shown (numbers, bools, short strings): the table comes
    from a file like everything else here."""
    if not isinstance(options, dict):
        return None
    parts = []
    for key, value in list(options.items())[:MAX_HEAD_OPTIONS]:
        name = as_text(key, 20)
        if name is None:
            continue
        if isinstance(value, bool):
            shown = str(value).lower()
        elif as_number(value) is not None:
            shown = f"{as_number(value):g}"
        else:
            shown = as_text(value, 20)
        if shown is not None:
            parts.append(f"{name}={shown}")
    return " ".join(parts) or None


def _path_tail(path: str, width: int) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]


def _join(*parts: Any) -> str | None:
    kept = [str(part) for part in parts if part]
    return " ".join(kept) or None


def one_line_summary(state: RunState) -> str:
    """The run in one line, for the header where the side panel does not fit."""
    rows = dict(config_summary(state))
    parts = [
        rows.get("backbone"),
        rows.get("head"),
        f"batch {rows['batch']}" if "batch" in rows else None,
        rows.get("device"),
    ]
    return " · ".join(part for part in parts if part)
