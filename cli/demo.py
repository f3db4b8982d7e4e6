"""`femb demo`: the whole path on the built-in synthetic faces — train, export, verify.

It runs the same code as the three commands it stands for and prints each of them, so a user
can repeat any step by hand:

    femb train --data synthetic:N --steps S ...
    femb export onnx RUN_DIR -o exports/RUN.onnx
    femb verify pairs exports/RUN.onnx --bin RUN_DIR/val_pairs.bin
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from femb_cli.dashboard.starting import shows_dashboard
from femb_cli.errors import fail, with_flags

# Sized for a few minutes end to end on a 2-core CPU with the default mobilefacenet_fast (the
# measured time and accuracy are in benchmarks/RESULTS.md).
DEMO_IDENTITIES = 100
DEMO_STEPS = 200
DEMO_VAL_IDENTITIES = 60


def demo_command(
    steps: Annotated[int, typer.Option(help="Training steps.", min=1)] = DEMO_STEPS,
    identities: Annotated[int, typer.Option(help="Synthetic training identities.", min=2)] = DEMO_IDENTITIES,
    dashboard: Annotated[
        bool | None,
        typer.Option(
            "--dashboard/--no-dashboard", help="The live dashboard (default: when stdout is a terminal)."
        ),
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (default: runs/demo-<time>).")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="ONNX file (default: exports/<run>.onnx).")
    ] = None,
    provider: Annotated[str, typer.Option(help="onnxruntime provider: auto | cuda | cpu.")] = "auto",
) -> None:
    """Train → export → verify on the built-in synthetic faces, printing the verification table."""
    from femb.inference.providers import parse_provider

    try:  # step 3's option, checked before step 1 spends minutes training
        provider = parse_provider(provider)
    except ValueError as error:
        raise fail(f"--provider {provider}: {error}") from None
    from femb.data import SyntheticFaces, pairs_from_labelled, write_pairs_dataset_bin
    from femb.fileio import check_writable
    from femb.training.config import TrainConfig
    from femb.training.recipe import build_datasets, prepare_run_dir
    from femb_cli.export import onnx_command
    from femb_cli.run_training import run_in_child, run_with_progress
    from femb_cli.verify import pairs_command

    config = TrainConfig(
        data=f"synthetic:{identities}",
        steps=steps,
        eval_every=max(1, steps // 2),  # each evaluation embeds 600 images twice: two are enough
        checkpoint_every=max(1, steps // 2),
        head="cosface",
        head_options={"s": 30.0, "m": 0.3},
        lr=0.1,
        warmup_steps=min(30, steps // 5),
        batch_size=64,
        val_pairs=1000,
        val=f"synthetic:{DEMO_VAL_IDENTITIES}",  # the training process builds the same set as val_set below
        run_dir=str(run_dir) if run_dir else None,
        name="demo",
    )
    try:
        train_set, _ = build_datasets(config)
        val_set = SyntheticFaces(
            num_identities=DEMO_VAL_IDENTITIES,
            images_per_identity=10,
            seed=config.seed,
            identity_offset=identities,
        )
        folder = prepare_run_dir(config)
        onnx_path = output or Path("exports") / f"{folder.name}.onnx"
        check_writable(onnx_path, "model file")  # step 2's output: said now, not after the training
    except (ValueError, OSError) as error:
        raise fail(with_flags(error)) from None

    # The verification set of step 3, written first so the dashboard's run is all there is to wait for.
    pairs_file = folder.path / "val_pairs.bin"
    pairs = pairs_from_labelled(val_set, num_pairs=2000, seed=config.seed)
    write_pairs_dataset_bin(pairs_file, pairs)

    use_dashboard = shows_dashboard(dashboard)
    typer.secho(
        f"[1/3] femb train --data synthetic:{identities} --steps {steps} --head cosface --s 30 --m 0.3 "
        f"--run-dir {folder.path}",
        bold=True,
    )
    if use_dashboard:
        code = run_in_child(config, folder, exit_on_end=True)
    else:
        code = run_with_progress(config, folder, datasets=(train_set, val_set))
    if code != 0:
        raise typer.Exit(code)

    typer.secho(f"\n[2/3] femb export onnx {folder.path} -o {onnx_path}", bold=True)
    _call(onnx_command, source=folder.path, output=onnx_path)

    typer.secho(f"\n[3/3] femb verify pairs {onnx_path} --bin {pairs_file}", bold=True)
    _call(pairs_command, model=onnx_path, bin_files=[pairs_file], provider=provider)


def _call(command, **kwargs) -> None:
    """Run another command's function in process; its own non-zero exit ends the demo."""
    try:
        command(**kwargs)
    except typer.Exit as done:
        if done.exit_code:
            raise
