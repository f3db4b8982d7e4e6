"""Run a configured training with plain progress lines or inside the live dashboard."""

from __future__ import annotations

from femb.training.config import TrainConfig
from femb.training.control import TrainingControl
from femb.training.run_dir import RunDir
from femb_cli.errors import fail
from femb_cli.progress import ProgressPrinter

EXIT_CODES = {"completed": 0, "stopped": 0, "interrupted": 130, "terminated": 143, "nonfinite": 3}


def run_with_progress(config: TrainConfig, run_dir: RunDir, *, datasets=None, resume: bool = False) -> int:
    from femb.training.recipe import train

    try:
        result = train(config, callbacks=[ProgressPrinter()], run_dir=run_dir, resume=resume, datasets=datasets)
    except ValueError as error:
        raise fail(str(error)) from None
    return EXIT_CODES.get(result.reason, 1)


def run_with_dashboard(config: TrainConfig, run_dir: RunDir, *, datasets=None, resume: bool = False) -> int:
    from femb.training.recipe import train
    from femb_cli.dashboard import create_dashboard_app

    control = TrainingControl(run_dir.control)
    outcome: dict = {}

    def run_training(sink, control_: TrainingControl):
        outcome["result"] = train(config, callbacks=[sink], control=control_, run_dir=run_dir, resume=resume,
                                  datasets=datasets)
        return outcome["result"]

    app = create_dashboard_app(run_training=run_training, control=control, title=f"femb train · {run_dir.name}")
    app.run()
    result = outcome.get("result")
    printer = ProgressPrinter()
    if result is None:
        raise fail(f"training did not finish; see {run_dir.metrics_file}", code=1)
    printer({"event": "end", "step": result.step, "reason": result.reason,
             "message": f"best verification accuracy {result.best_accuracy}",
             "resume_command": f"femb train --resume {run_dir.path}" if result.reason != "completed" else None})
    return EXIT_CODES.get(result.reason, 1)
