"""Run a configured training with plain progress lines or inside the live dashboard."""

from __future__ import annotations

from femb.training.config import TrainConfig
from femb.training.control import TrainingControl
from femb.training.run_dir import RunDir
from femb_cli.errors import fail
from femb_cli.progress import ProgressPrinter

EXIT_CODES = {"completed": 0, "stopped": 0, "interrupted": 130, "terminated": 143, "nonfinite": 3}


def run_with_progress(
    config: TrainConfig, run_dir: RunDir, *, datasets=None, resume: bool = False, overwrite: bool = False
) -> int:
    from femb.training.recipe import train

    try:
        result = train(
            config,
            callbacks=[ProgressPrinter()],
            run_dir=run_dir,
            resume=resume,
            datasets=datasets,
            overwrite=overwrite,
        )
    except ValueError as error:
        raise fail(str(error)) from None
    return EXIT_CODES.get(result.reason, 1)


def run_with_dashboard(
    config: TrainConfig,
    run_dir: RunDir,
    *,
    datasets=None,
    resume: bool = False,
    exit_on_end: bool = False,
    overwrite: bool = False,
) -> int:
    from femb.training.recipe import train
    from femb_cli.dashboard import create_dashboard_app

    control = TrainingControl(run_dir.control)

    def run_training(sink, control_: TrainingControl):
        return train(
            config,
            callbacks=[sink],
            control=control_,
            run_dir=run_dir,
            resume=resume,
            datasets=datasets,
            overwrite=overwrite,
        )

    app = create_dashboard_app(
        run_training=run_training,
        control=control,
        title=f"femb train · {run_dir.name}",
        exit_on_end=exit_on_end,
    )
    app.run()
    error = getattr(app, "training_error", None)
    if isinstance(error, ValueError):
        raise fail(str(error)) from None
    if error is not None:
        raise fail(
            f"training failed: {type(error).__name__}: {error} (events in {run_dir.metrics_file}); "
            f"{_resume_hint(run_dir)}",
            code=1,
        )
    result = getattr(app, "training_result", None)
    if result is None:
        raise fail(f"the dashboard closed before training ended; {_resume_hint(run_dir)}", code=1)
    ProgressPrinter()(
        {
            "event": "end",
            "step": result.step,
            "reason": result.reason,
            "message": _summary(result),
            "resume_command": f"femb train --resume {run_dir.path}"
            if result.reason != "completed" and run_dir.last_checkpoint.is_file()
            else None,
        }
    )
    return EXIT_CODES.get(result.reason, 1)


def _resume_hint(run_dir: RunDir) -> str:
    """Said truthfully: resume only when a checkpoint exists."""
    if run_dir.last_checkpoint.is_file():
        return f"resume with: femb train --resume {run_dir.path}"
    return "no checkpoint was written, so there is nothing to resume"


def _summary(result) -> str:
    best = (
        f"best verification accuracy {result.best_accuracy:.4f}"
        if result.best_accuracy is not None
        else "no verification run"
    )
    return f"{best}; run directory {result.run_dir}"
