"""`femb train`: options → TrainConfig → the training loop, with the live dashboard or progress lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from femb.headers import head_options, list_headers, parse_head_options
from femb.training.config import TrainConfig, normalize_head_table
from femb.training.run_dir import RunDir, RunLock
from femb.training.runtime import launched_rank, launched_world_size
from femb_cli.errors import fail

DATA, MODEL, HEAD, OPTIM, RUN = "Data", "Model", "Head", "Optimisation", "Run"
# One source of defaults: the library's TrainConfig.
DEFAULTS = TrainConfig()


def train_command(
    ctx: typer.Context,
    data: Annotated[
        str,
        typer.Option(
            help="An image folder (one sub-folder per identity) or synthetic[:N_IDENTITIES].",
            rich_help_panel=DATA,
        ),
    ] = DEFAULTS.data,
    val: Annotated[
        str | None,
        typer.Option(
            help="Validation: a .bin pairs file or an image folder (default: held-out synthetic identities).",
            rich_help_panel=DATA,
        ),
    ] = DEFAULTS.val,
    val_pairs: Annotated[
        int, typer.Option(help="Pairs drawn from a validation image folder.", rich_help_panel=DATA)
    ] = DEFAULTS.val_pairs,
    on_bad_image: Annotated[
        str,
        typer.Option(
            help="A training image that cannot be read: skip (counted, the first few named) | error.",
            rich_help_panel=DATA,
        ),
    ] = DEFAULTS.on_bad_image,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment",
            help="Augment training faces: a few pixels of shift and per cent of zoom, flip, colour "
            "jitter, light blur (seeded: resume stays exact).",
            rich_help_panel=DATA,
        ),
    ] = DEFAULTS.augment,
    backbone: Annotated[
        str, typer.Option(help="Backbone name (see `femb info`).", rich_help_panel=MODEL)
    ] = DEFAULTS.backbone,
    embed_dim: Annotated[
        int, typer.Option(help="Embedding size.", rich_help_panel=MODEL)
    ] = DEFAULTS.embed_dim,
    head: Annotated[
        str,
        typer.Option(help=f"{' | '.join(list_headers())} (options: below).", rich_help_panel=HEAD),
    ] = DEFAULTS.head,
    head_opt: Annotated[
        list[str] | None,
        typer.Option(
            "--head-opt",
            metavar="KEY=VALUE",
            help="An option of the head, e.g. --head-opt m=0.4 (repeatable; each head's options are below).",
            rich_help_panel=HEAD,
        ),
    ] = None,
    s: Annotated[
        float | None,
        typer.Option(help="The head's scale: short for --head-opt s=S.", rich_help_panel=HEAD),
    ] = None,
    m: Annotated[
        float | None,
        typer.Option(help="The head's margin: short for --head-opt m=M.", rich_help_panel=HEAD),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Images per step.", rich_help_panel=OPTIM)
    ] = DEFAULTS.batch_size,
    steps: Annotated[
        int, typer.Option(help="Training steps (0: unused; both 0 → 1000).", rich_help_panel=OPTIM)
    ] = DEFAULTS.steps,
    epochs: Annotated[
        int,
        typer.Option(help="Epochs (0: unused); the first limit reached ends the run.", rich_help_panel=OPTIM),
    ] = DEFAULTS.epochs,
    lr: Annotated[float, typer.Option(help="Peak learning rate.", rich_help_panel=OPTIM)] = DEFAULTS.lr,
    optimizer: Annotated[str, typer.Option(help="sgd | adamw.", rich_help_panel=OPTIM)] = DEFAULTS.optimizer,
    scheduler: Annotated[
        str, typer.Option(help="cosine | multistep | poly | constant (after warm-up).", rich_help_panel=OPTIM)
    ] = DEFAULTS.scheduler,
    warmup_steps: Annotated[
        int, typer.Option(help="Linear warm-up steps.", rich_help_panel=OPTIM)
    ] = DEFAULTS.warmup_steps,
    weight_decay: Annotated[
        float, typer.Option(help="Weight decay.", rich_help_panel=OPTIM)
    ] = DEFAULTS.weight_decay,
    amp: Annotated[
        str,
        typer.Option(
            help="none | bf16 | fp16 | auto (mixed precision; the margin maths stays fp32).",
            rich_help_panel=OPTIM,
        ),
    ] = DEFAULTS.amp,
    grad_clip: Annotated[
        float, typer.Option(help="Clip the gradient norm (0: off).", rich_help_panel=OPTIM)
    ] = DEFAULTS.grad_clip,
    skip_nonfinite: Annotated[
        bool, typer.Option(help="Skip steps with a NaN/inf loss instead of stopping.", rich_help_panel=OPTIM)
    ] = DEFAULTS.skip_nonfinite,
    eval_every: Annotated[
        int,
        typer.Option(help="Verify every N steps and at the end (0: never).", rich_help_panel=RUN),
    ] = DEFAULTS.eval_every,
    checkpoint_every: Annotated[
        int, typer.Option(help="Write checkpoints/last.pt every N steps.", rich_help_panel=RUN)
    ] = DEFAULTS.checkpoint_every,
    seed: Annotated[int, typer.Option(help="Random seed.", rich_help_panel=RUN)] = DEFAULTS.seed,
    device: Annotated[
        str, typer.Option(help="auto | cpu | cuda | cuda:N.", rich_help_panel=RUN)
    ] = DEFAULTS.device,
    workers: Annotated[
        int, typer.Option(help="DataLoader worker processes.", rich_help_panel=RUN)
    ] = DEFAULTS.workers,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run directory (default: runs/<name>-<time>).", rich_help_panel=RUN)
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name prefix.", rich_help_panel=RUN)] = DEFAULTS.name,
    config: Annotated[
        Path | None,
        typer.Option(help="A TOML file of options; the command line overrides it.", rich_help_panel=RUN),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue RUN_DIR from its last checkpoint to the same end.", rich_help_panel=RUN),
    ] = None,
    dashboard: Annotated[
        bool | None,
        typer.Option(
            "--dashboard/--no-dashboard",
            help="The live dashboard (default: when stdout is a terminal).",
            rich_help_panel=RUN,
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            help="Train in the background and return at once (watch: femb dashboard RUN_DIR).",
            rich_help_panel=RUN,
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the run already in --run-dir (never done without it).", rich_help_panel=RUN
        ),
    ] = False,
    init_backbone: Annotated[
        str | None,
        typer.Option(
            help="Start from these backbone weights: an arcface_torch backbone.pth, a MagFace checkpoint, "
            "or a femb checkpoint / run directory (a fresh head is trained for your identities).",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS.init_backbone,
    freeze_backbone_steps: Annotated[
        int,
        typer.Option(help="Fine-tuning: train only the head for the first N steps.", rich_help_panel=MODEL),
    ] = DEFAULTS.freeze_backbone_steps,
    backbone_lr_scale: Annotated[
        float,
        typer.Option(help="The backbone's learning rate as a multiple of --lr.", rich_help_panel=OPTIM),
    ] = DEFAULTS.backbone_lr_scale,
    sample_rate: Annotated[
        float,
        typer.Option(
            help="Partial FC: the share (0, 1] of each process's class centres used per step.",
            rich_help_panel=HEAD,
        ),
    ] = DEFAULTS.sample_rate,
    nproc_per_node: Annotated[
        int,
        typer.Option(
            help="Processes on this machine (torch.distributed; gloo on CPU, NCCL on CUDA).",
            rich_help_panel=RUN,
        ),
    ] = 1,
) -> None:
    """Train a face-embedding backbone with a margin head (default: the built-in synthetic faces)."""
    from femb.training.devices import resolve_amp, resolve_device
    from femb.training.recipe import build_datasets, load_run_config, prepare_run_dir

    options = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in ctx.params.items()
        if key not in ("config", "resume", "dashboard", "detach", "overwrite", "nproc_per_node", *HEAD_FLAGS)
    }
    # Compared by name: typer vendors its own click in recent versions.
    explicit = {key for key in options if getattr(ctx.get_parameter_source(key), "name", "") == "COMMANDLINE"}
    try:
        head_given = _head_values(head_opt, s, m)
        if resume is not None:
            train_config, folder = load_run_config(resume)
            _apply_on_resume(train_config, options, explicit, config, head_given)
            if launched_rank() == 0:
                with RunLock(folder):  # refused at once when another process owns the run
                    pass
        else:
            merged = _merge(options, explicit, config)
            if head_given:  # typed and checked by the head's own declarations; they win over the file
                table = merged.get("head_options") if isinstance(merged.get("head_options"), dict) else {}
                merged["head_options"] = {**table, **_parse_head_values(merged["head"], head_given)}
            train_config = TrainConfig.from_dict(merged, source=str(config or "options"))
            folder = None
        # Device and precision are checked before anything is written.
        resolve_amp(train_config.amp, resolve_device(train_config.device))
        # With the dashboard or --detach the training runs in a child process of its own.
        wants_dashboard = sys.stdout.isatty() if dashboard is None else dashboard
        in_front = launched_world_size() == 1 and (detach or wants_dashboard)
        if nproc_per_node > 1 and launched_world_size() == 1:
            folder = folder or prepare_run_dir(train_config, overwrite=overwrite)
            if not in_front:
                raise typer.Exit(_launch(nproc_per_node, train_config, folder, resume, dashboard, overwrite))
        datasets = build_datasets(train_config) if nproc_per_node == 1 else None
        if folder is None and launched_rank() > 0:
            folder = RunDir(Path(train_config.run_dir))  # rank 0 owns and checks the folder
        folder = folder or prepare_run_dir(train_config, overwrite=overwrite)
    except ValueError as error:
        raise fail(str(error)) from None

    from femb_cli.run_training import run_in_child, run_with_progress

    options = {"resume": resume is not None, "overwrite": overwrite}
    if in_front:
        raise typer.Exit(run_in_child(train_config, folder, detach=detach, nproc=nproc_per_node, **options))
    raise typer.Exit(run_with_progress(train_config, folder, datasets=datasets, **options))


def _launch(nproc: int, train_config: TrainConfig, folder: RunDir, resume, dashboard, overwrite) -> int:
    """Start the workers of this command: the same resolved options, the same run directory."""
    from femb_cli.launch import launch_workers, worker_args

    args = worker_args(train_config, folder, resume is not None, overwrite)
    if dashboard is not None:
        args.append("--dashboard" if dashboard else "--no-dashboard")
    return launch_workers(nproc, args)


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
    ignored = sorted(
        key for key in explicit - set(RESUME_CHANGEABLE) if options[key] != getattr(train_config, key, None)
    )
    recorded = {option.name: option.default for option in head_options(train_config.head)}
    recorded.update(train_config.head_options)
    for key, (flag, value) in head_given.items():
        try:
            same = parse_head_options(train_config.head, {key: value})[key] == recorded.get(key)
        except ValueError:
            same = False
        if not same:
            ignored.append(flag if flag != "--head-opt" else f"--head-opt {key}")
    if config_file is not None:
        ignored.append(f"--config {config_file}")
    if ignored:
        names = ", ".join(
            name if name.startswith("--") else "--" + name.replace("_", "-") for name in ignored
        )
        typer.secho(
            f"warning: --resume continues the recorded run; ignored: {names} "
            "(only --device and --workers apply)",
            err=True,
            fg=typer.colors.YELLOW,
        )


# The head's options on the command line: folded into TrainConfig.head_options.
HEAD_FLAGS = ("head_opt", "s", "m")


def _head_values(head_opt: list[str] | None, s: float | None, m: float | None) -> dict[str, tuple[str, Any]]:
    """``{key: (flag, value)}`` from ``--head-opt KEY=VALUE`` and the ``--s``/``--m`` shortcuts;
    the values are checked later, against the head they end up with."""
    given: dict[str, tuple[str, Any]] = {}
    for item in head_opt or []:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise ValueError(f"--head-opt {item!r}: expected KEY=VALUE, e.g. --head-opt m=0.4")
        given[key] = ("--head-opt", value.strip())  # the last of a repeated key wins
    for key, value in (("s", s), ("m", m)):
        if value is not None:
            if key in given:
                raise ValueError(f"--{key} and --head-opt {key}=… both set the head's {key}: give one")
            given[key] = (f"--{key}", value)
    return given


def _parse_head_values(head: str, given: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The given head options typed and range-checked by head ``head``; an error names the flag."""
    if head not in list_headers():
        raise ValueError(f"--head {head!r}: not one of {', '.join(list_headers())}")
    parsed = {}
    for key, (flag, value) in given.items():
        try:
            parsed.update(parse_head_options(head, {key: value}))
        except ValueError as error:
            raise ValueError(f"{flag}: {error}") from None
    return parsed


def train_epilog() -> str:
    """Every registered head's options and defaults, for ``femb train --help``."""
    lines = ["Head options (--head-opt KEY=VALUE; `femb info` explains each):"]
    for name in list_headers():
        options = ", ".join(
            f"{option.name}={'auto' if option.default is None else option.default}"
            for option in head_options(name)
        )
        lines.append(f"  {name}: {options or 'none'}")
    return "\n".join(lines)


def _merge(options: dict[str, Any], explicit: set[str], config_file: Path | None) -> dict[str, Any]:
    """Defaults ← config file ← options given on the command line."""
    if config_file is None:
        return options
    from femb.training.run_dir import read_toml

    known = set(TrainConfig.__dataclass_fields__)
    from_file = normalize_head_table(read_toml(config_file), known, str(config_file))
    merged = dict(options)
    for key, value in from_file.items():
        if key not in explicit:
            merged[key] = value
    return merged
