"""`femb train`: options → TrainConfig → the training loop, with the live dashboard or progress lines.

Every training option is generated from the schema (:mod:`femb.training.config`): its flag, help,
panel, default and range. What only the command line has (a config file, resume, the dashboard,
the process count, the head's ``--s``/``--m`` shortcuts) is :data:`CLI_ONLY`, one entry each.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from femb.headers import head_options, list_headers, parse_head_options
from femb.training.config import HEAD, RUN, TrainConfig, normalize_head_table, schema
from femb.training.run_dir import RunDir, RunLock
from femb.training.runtime import launched_rank, launched_world_size
from femb.training.schema import Spec, value_type
from femb_cli.dashboard.starting import current as dashboard_drawn
from femb_cli.dashboard.starting import shows_dashboard
from femb_cli.errors import fail, flag, with_flags
from femb_cli.launch import MAX_LOCAL_PROCESSES


@dataclass(frozen=True)
class CliOption:
    """An option of `femb train` that is not a training option; ``to_workers``: the workers of
    ``--nproc-per-node`` are given it too."""

    annotation: Any
    default: Any
    option: Any
    to_workers: bool = False


CLI_ONLY = {
    "config": CliOption(
        Path | None,
        None,
        typer.Option(help="A TOML file of options; the command line overrides it.", rich_help_panel=RUN),
    ),
    "resume": CliOption(
        Path | None,
        None,
        typer.Option(help="Continue RUN_DIR from its last checkpoint to the same end.", rich_help_panel=RUN),
    ),
    "dashboard": CliOption(
        bool | None,
        None,
        typer.Option(
            "--dashboard/--no-dashboard",
            help="The live dashboard (default: when stdout is a terminal).",
            rich_help_panel=RUN,
        ),
        True,
    ),
    "detach": CliOption(
        bool,
        False,
        typer.Option(
            "--detach",
            help="Train in the background and return at once (watch: femb dashboard RUN_DIR).",
            rich_help_panel=RUN,
        ),
    ),
    "overwrite": CliOption(
        bool,
        False,
        typer.Option(
            "--overwrite",
            help="Replace the run already in --run-dir (never done without it).",
            rich_help_panel=RUN,
        ),
    ),
    "nproc_per_node": CliOption(
        int,
        1,
        typer.Option(
            help="Processes on this machine (torch.distributed; "
            f"gloo on CPU, NCCL on CUDA; 1 to {MAX_LOCAL_PROCESSES}).",
            rich_help_panel=RUN,
        ),
    ),
    "s": CliOption(
        float | None,
        None,
        typer.Option(
            help="The head's scale: short for --head-opt s=S (default: AdaCos's, from the class count; "
            "the papers use 64).",
            rich_help_panel=HEAD,
        ),
    ),
    "m": CliOption(
        float | None,
        None,
        typer.Option(help="The head's margin: short for --head-opt m=M.", rich_help_panel=HEAD),
    ),
}
HEAD_SHORTCUTS = ("s", "m")


def _help(spec: Spec, annotation: Any) -> str:
    """The schema's help with its choices and range, as ``--help`` shows them."""
    kind = value_type(annotation)
    item = typing.get_args(kind)[0] if typing.get_origin(kind) is list else kind
    if spec.allowed():  # parentheses: rich would take square brackets for markup
        return f"{spec.help} ({' | '.join(spec.allowed())})"
    if item in (int, float) and (spec.low is not None or spec.high is not None):
        return f"{spec.help} ({spec.range_text(item is int)})"
    return spec.help


def _parameter(name: str, annotation: Any, default: Any, info: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


def _schema_parameter(field, spec: Spec, annotation: Any) -> inspect.Parameter:
    """The flag of one schema field: a bool is ``--x/--no-x``; a list or a table is repeatable."""
    kind = value_type(annotation)
    default = field.default if typing.get_origin(kind) not in (list, dict) else None
    names: tuple[str, ...] = (flag(field.name),)
    metavar = spec.metavar
    if kind is bool:
        names = (f"{flag(field.name)}/--no-{flag(field.name)[2:]}",)
    elif typing.get_origin(kind) is dict:
        kind, metavar = list[str], metavar or "KEY=VALUE"
    if typing.get_origin(kind) is list or default is None:
        kind = kind | None
    info = typer.Option(*names, help=_help(spec, annotation), rich_help_panel=spec.panel, metavar=metavar)
    return _parameter(field.name, kind, default, info)


def command_signature() -> inspect.Signature:
    """`femb train`'s parameters: every schema field, then the command line's own options."""
    parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    parameters += [_schema_parameter(*entry) for entry in schema()]
    parameters += [_parameter(name, o.annotation, o.default, o.option) for name, o in CLI_ONLY.items()]
    return inspect.Signature(parameters)


def train_command(ctx: typer.Context, **values: Any) -> None:
    """Train a face-embedding backbone with a margin head (default: the built-in synthetic faces)."""
    from femb.training.devices import resolve_amp, resolve_device
    from femb.training.recipe import build_datasets, load_run_config, prepare_run_dir

    cli = {name: values.pop(name) for name in CLI_ONLY}
    # Compared by name: typer vendors its own click in recent versions.
    explicit = {key for key in values if getattr(ctx.get_parameter_source(key), "name", "") == "COMMANDLINE"}
    options = {key: value for key, value in values.items() if value is not None or key in explicit}
    config_file, resume = cli["config"], cli["resume"]
    try:
        if not 1 <= cli["nproc_per_node"] <= MAX_LOCAL_PROCESSES:
            raise ValueError(f"--nproc-per-node {cli['nproc_per_node']}: expected 1 to {MAX_LOCAL_PROCESSES}")
        head_given = _head_values(options.pop("head_options", None), cli)
        explicit.discard("head_options")  # merged over the file's table, key by key
        if resume is not None:
            try:
                train_config, folder = load_run_config(resume)
            except ValueError as error:
                raise ValueError(f"--resume {error}") from None
            _apply_on_resume(train_config, options, explicit, config_file, head_given)
            if launched_rank() == 0:
                with RunLock(folder):  # refused at once when another process owns the run
                    pass
        else:
            train_config = _new_config(options, explicit, config_file, head_given)
            folder = None
        # Device and precision are checked before anything is written.
        resolve_amp(train_config.amp, resolve_device(train_config.device))
        # With the dashboard or --detach the training runs in a child process of its own.
        in_front = launched_world_size() == 1 and (cli["detach"] or shows_dashboard(cli["dashboard"]))
        in_front = in_front or dashboard_drawn() is not None  # drawn before the options were read
        nproc = cli["nproc_per_node"]
        if nproc > 1 and launched_world_size() == 1:
            folder = folder or prepare_run_dir(train_config, overwrite=cli["overwrite"])
            if not in_front:
                raise typer.Exit(_launch(cli, train_config, folder))
        datasets = build_datasets(train_config) if nproc == 1 else None
        if folder is None and launched_rank() > 0:
            folder = RunDir(Path(train_config.run_dir))  # rank 0 owns and checks the folder
        folder = folder or prepare_run_dir(train_config, overwrite=cli["overwrite"])
    except ValueError as error:
        raise fail(with_flags(error, explicit, config_file)) from None

    from femb_cli.run_training import run_in_child, run_with_progress

    common = {"resume": resume is not None, "overwrite": cli["overwrite"]}
    if in_front:
        raise typer.Exit(run_in_child(train_config, folder, detach=cli["detach"], nproc=nproc, **common))
    raise typer.Exit(run_with_progress(train_config, folder, datasets=datasets, **common))


train_command.__signature__ = command_signature()  # type: ignore[attr-defined]


def _new_config(options: dict, explicit: set[str], config_file: Path | None, head_given: dict) -> TrainConfig:
    """Defaults ← config file ← the command line; the head's options typed by the head they end with."""
    merged = dict(options)
    if config_file is not None:
        from femb.training.run_dir import read_toml

        for key, value in normalize_head_table(read_toml(config_file), str(config_file)).items():
            if key not in explicit:
                merged[key] = value
    if head_given:  # typed and checked by the head's own declarations; they win over the file
        table = merged.get("head_options") if isinstance(merged.get("head_options"), dict) else {}
        merged["head_options"] = {
            **table,
            **_parse_head_values(merged.get("head", TrainConfig.head), head_given),
        }
    return TrainConfig.from_dict(merged, source=None)


def _launch(cli: dict[str, Any], train_config: TrainConfig, folder: RunDir) -> int:
    """Start the workers of this command: the same resolved options, the same run directory."""
    from femb_cli.launch import launch_workers, worker_args

    args = worker_args(train_config, folder, cli["resume"] is not None, cli["overwrite"])
    for name, option in CLI_ONLY.items():
        if option.to_workers and cli[name] is not None and cli[name] != option.default:
            args.append(_as_flag(name, cli[name]))
    return launch_workers(cli["nproc_per_node"], args)


def _as_flag(name: str, value: Any) -> str:
    """A bool CLI-only option as its on/off flag (``--dashboard`` / ``--no-dashboard``)."""
    return flag(name) if value else f"--no-{flag(name)[2:]}"


# Where a resumed run executes may change; the recipe (model, data, schedule) stays the recorded one.
RESUME_CHANGEABLE = ("device", "workers")


def _apply_on_resume(
    train_config: TrainConfig,
    options: dict,
    explicit: set[str],
    config_file,
    head_given: dict[str, tuple[str, Any]],
) -> None:
    """Apply the options a resume may change; name the ones it ignores, in one warning line."""
    for key in explicit & set(RESUME_CHANGEABLE):
        setattr(train_config, key, options[key])
    train_config.validate()
    ignored = [
        flag(key)
        for key in sorted(explicit - set(RESUME_CHANGEABLE))
        if key in options and options[key] != getattr(train_config, key, None)
    ]
    recorded = {option.name: option.default for option in head_options(train_config.head)}
    recorded.update(train_config.head_options)
    for key, (given_as, value) in head_given.items():
        try:
            same = parse_head_options(train_config.head, {key: value})[key] == recorded.get(key)
        except ValueError:
            same = False
        if not same:
            ignored.append(given_as if given_as != flag("head_options") else f"{given_as} {key}")
    if config_file is not None:
        ignored.append(f"--config {config_file}")
    if ignored:
        typer.secho(
            f"warning: --resume continues the recorded run; ignored: {', '.join(ignored)} "
            f"(only {' and '.join(flag(key) for key in RESUME_CHANGEABLE)} apply)",
            err=True,
            fg=typer.colors.YELLOW,
        )


def _head_values(head_opt: list[str] | None, cli: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """``{key: (flag, value)}`` from ``--head-opt KEY=VALUE`` and the ``--s``/``--m`` shortcuts;
    the values are checked later, against the head they end up with."""
    given: dict[str, tuple[str, Any]] = {}
    opt = flag("head_options")
    for item in head_opt or []:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ValueError(f"{opt} {item!r}: expected KEY=VALUE, e.g. {opt} m=0.4")
        given[key] = (opt, value.strip())  # the last of a repeated key wins
    for key in HEAD_SHORTCUTS:
        if cli[key] is not None:
            if key in given:
                raise ValueError(f"{flag(key)} and {opt} {key}=… both set the head's {key}: give one")
            given[key] = (flag(key), cli[key])
    return given


def _parse_head_values(head: Any, given: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The given head options typed and range-checked by head ``head``; an error names the flag."""
    if head not in list_headers():
        raise ValueError(f"{flag('head')} {head!r}: not one of {', '.join(list_headers())}")
    parsed = {}
    for key, (given_as, value) in given.items():
        try:
            parsed.update(parse_head_options(head, {key: value}))
        except ValueError as error:
            raise ValueError(f"{given_as}: {error}") from None
    return parsed


def train_epilog() -> str:
    """Every registered head's options and defaults, for ``femb train --help``."""
    lines = [f"Head options ({flag('head_options')} KEY=VALUE; `femb info` explains each):"]
    for name in list_headers():
        options = ", ".join(option.help_default() for option in head_options(name))
        lines.append(f"  {name}: {options or 'none'}")
    return "\n".join(lines)
