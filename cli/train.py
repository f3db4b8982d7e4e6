"""`femb train`: options → TrainConfig → the training loop, with the live dashboard or progress lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from femb.training.config import TrainConfig
from femb.training.run_dir import RunDir, RunLock, write_toml
from femb.training.runtime import launched_world_size
from femb_cli.app import app
from femb_cli.errors import fail

DATA, MODEL, HEAD, OPTIM, RUN = "Data", "Model", "Head", "Optimisation", "Run"
# One source of defaults: the library's TrainConfig.
DEFAULTS = TrainConfig()


@app.command("train")
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
    backbone: Annotated[
        str, typer.Option(help="Backbone name (see `femb info`).", rich_help_panel=MODEL)
    ] = DEFAULTS.backbone,
    embed_dim: Annotated[
        int, typer.Option(help="Embedding size.", rich_help_panel=MODEL)
    ] = DEFAULTS.embed_dim,
    head: Annotated[
        str,
        typer.Option(
            help="linear | sphereface | cosface | arcface | magface | combined.", rich_help_panel=HEAD
        ),
    ] = DEFAULTS.head,
    s: Annotated[
        float | None, typer.Option(help="Scale (default: the head's).", rich_help_panel=HEAD)
    ] = DEFAULTS.s,
    m: Annotated[
        float | None, typer.Option(help="Margin (default: the head's).", rich_help_panel=HEAD)
    ] = DEFAULTS.m,
    easy_margin: Annotated[
        bool | None,
        typer.Option(
            "--easy-margin/--no-easy-margin",
            help="ArcFace: margin only where cos θ > 0.",
            rich_help_panel=HEAD,
        ),
    ] = DEFAULTS.easy_margin,
    m1: Annotated[
        float | None, typer.Option(help="Combined: angle multiplier.", rich_help_panel=HEAD)
    ] = DEFAULTS.m1,
    m2: Annotated[
        float | None, typer.Option(help="Combined: additive angle.", rich_help_panel=HEAD)
    ] = DEFAULTS.m2,
    m3: Annotated[
        float | None, typer.Option(help="Combined: cosine subtraction.", rich_help_panel=HEAD)
    ] = DEFAULTS.m3,
    l_a: Annotated[
        float | None, typer.Option(help="MagFace: lower feature norm.", rich_help_panel=HEAD)
    ] = DEFAULTS.l_a,
    u_a: Annotated[
        float | None, typer.Option(help="MagFace: upper feature norm.", rich_help_panel=HEAD)
    ] = DEFAULTS.u_a,
    l_m: Annotated[
        float | None, typer.Option(help="MagFace: lower margin.", rich_help_panel=HEAD)
    ] = DEFAULTS.l_m,
    u_m: Annotated[
        float | None, typer.Option(help="MagFace: upper margin.", rich_help_panel=HEAD)
    ] = DEFAULTS.u_m,
    lambda_g: Annotated[
        float | None, typer.Option(help="MagFace: regulariser weight.", rich_help_panel=HEAD)
    ] = DEFAULTS.lambda_g,
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
        typer.Option(help="Verify every N steps (and at the end; 0: only at the end).", rich_help_panel=RUN),
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
        if key not in ("config", "resume", "dashboard", "overwrite", "nproc_per_node")
    }
    # Compared by name: typer vendors its own click in recent versions.
    explicit = {key for key in options if getattr(ctx.get_parameter_source(key), "name", "") == "COMMANDLINE"}
    try:
        if resume is not None:
            train_config, folder = load_run_config(resume)
            _apply_on_resume(train_config, options, explicit, config)
            if int(os.environ.get("RANK", "0")) == 0:
                with RunLock(folder):  # refused at once when another process owns the run
                    pass
        else:
            train_config = TrainConfig.from_dict(
                _merge(options, explicit, config), source=str(config or "options")
            )
            folder = None
        # Device and precision are checked before anything is written.
        resolve_amp(train_config.amp, resolve_device(train_config.device))
        if nproc_per_node > 1 and launched_world_size() == 1:
            folder = folder or prepare_run_dir(train_config, overwrite=overwrite)
            raise typer.Exit(_launch(nproc_per_node, train_config, folder, resume, dashboard, overwrite))
        datasets = build_datasets(train_config)
        if folder is None and int(os.environ.get("RANK", "0")) > 0:
            folder = RunDir(Path(train_config.run_dir))  # rank 0 owns and checks the folder
        folder = folder or prepare_run_dir(train_config, overwrite=overwrite)
    except ValueError as error:
        raise fail(str(error)) from None

    is_primary = int(os.environ.get("RANK", "0")) == 0
    use_dashboard = is_primary and (sys.stdout.isatty() if dashboard is None else dashboard)
    from femb_cli.run_training import run_with_dashboard, run_with_progress

    runner = run_with_dashboard if use_dashboard else run_with_progress
    code = runner(train_config, folder, datasets=datasets, resume=resume is not None, overwrite=overwrite)
    raise typer.Exit(code)


def _launch(nproc: int, train_config: TrainConfig, folder: RunDir, resume, dashboard, overwrite) -> int:
    """Start the workers of this command: the same resolved options, the same run directory."""
    from femb_cli.launch import launch_workers

    if resume is not None:
        args = ["train", "--resume", str(folder.path), "--device", train_config.device]
        args += ["--workers", str(train_config.workers)]
    else:
        train_config.run_dir = str(folder.path)
        launch_file = folder.path / "launch.toml"  # not a run yet: the workers start it
        write_toml(launch_file, train_config.to_dict())
        args = ["train", "--config", str(launch_file), "--run-dir", str(folder.path)]
        args += ["--overwrite"] if overwrite else []
    if dashboard is not None:
        args.append("--dashboard" if dashboard else "--no-dashboard")
    return launch_workers(nproc, args)


# Where a resumed run executes may change; the recipe (model, data, schedule) stays the recorded one.
RESUME_CHANGEABLE = ("device", "workers")


def _apply_on_resume(train_config: TrainConfig, options: dict, explicit: set[str], config_file) -> None:
    """Apply the options a resume may change; name the ones it ignores, in one warning line."""
    for key in explicit & set(RESUME_CHANGEABLE):
        setattr(train_config, key, options[key])
    ignored = sorted(
        key for key in explicit - set(RESUME_CHANGEABLE) if options[key] != getattr(train_config, key, None)
    )
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


def _merge(options: dict[str, Any], explicit: set[str], config_file: Path | None) -> dict[str, Any]:
    """Defaults ← config file ← options given on the command line."""
    if config_file is None:
        return options
    from femb.training.run_dir import read_toml

    from_file = read_toml(config_file)
    merged = dict(options)
    for key, value in from_file.items():
        if key not in explicit:
            merged[key] = value
    return merged
