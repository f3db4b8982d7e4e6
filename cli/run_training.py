"""Run a configured training: here with plain progress lines, or in a child process of its own that
the dashboard attaches to (or that goes on alone: ``--detach``).

Every run with a dashboard has one shape: ``femb train`` starts ``python -m femb_cli.run_training
train --no-dashboard …`` (the same resolved options, the same run directory; with
``--nproc-per-node N`` that child is the torchrun launch) in a new session, so a closed terminal
never reaches it; its stdout and stderr go to ``RUN_DIR/train.log``. The dashboard in the
foreground attaches to the run directory exactly as ``femb dashboard RUN`` does.

This module is also the child's entry point, so its top imports nothing heavy: the child says
``importing torch`` on ``train.log`` before it does.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_CODES = {"completed": 0, "stopped": 0, "interrupted": 130, "terminated": 143, "nonfinite": 3}

# The child says how far its start-up has come on lines of train.log, before anything else of it
# exists (its metrics.jsonl begins with the start event).
PHASE_PREFIX = "femb phase: "
CHILD_ENV = "FEMB_TRAINING_CHILD"


def phase(text: str) -> None:
    if os.environ.get(CHILD_ENV):
        print(f"{PHASE_PREFIX}{text}", flush=True)


def parse_phase(line: bytes) -> str | None:
    text = line.decode("utf-8", "replace").strip()
    return text[len(PHASE_PREFIX) :] if text.startswith(PHASE_PREFIX) else None


def run_with_progress(
    config, run_dir, *, datasets=None, resume: bool = False, overwrite: bool = False
) -> int:
    """Train in this process, printing progress lines; the training's exit code."""
    from femb.training.recipe import train
    from femb_cli.errors import fail, with_flags
    from femb_cli.progress import ProgressPrinter

    phase("building the model")
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
        raise fail(with_flags(error)) from None
    return EXIT_CODES.get(result.reason, 1)


def run_in_child(
    config,
    run_dir,
    *,
    resume: bool = False,
    overwrite: bool = False,
    nproc: int = 1,
    detach: bool = False,
    exit_on_end: bool = False,
) -> int:
    """Start the training as a child process; attach the dashboard to it, or (``detach``) leave it be.

    Returns the training's exit code (0 after a detach, or when the dashboard was left while the
    training goes on).
    """
    import typer

    from femb_cli.dashboard.starting import CANCELLED_EXIT, current
    from femb_cli.launch import start_training_process

    drawn = current()  # the dashboard already on screen, drawn before the options were read
    if drawn is not None and drawn.cancelled:
        run_dir.discard_if_unused()
        return CANCELLED_EXIT
    popen, started_at = start_training_process(
        config, run_dir, resume=resume, nproc=nproc, overwrite=overwrite
    )
    if detach:
        typer.echo(f"training in the background: {run_dir.path} (pid {popen.pid})")
        typer.echo(f"its output:  {run_dir.path}/train.log")
        typer.echo(f"watch it:    femb dashboard {run_dir.path}")
        typer.echo(f"stop it:     femb stop {run_dir.path}")
        return 0
    from femb_cli.dashboard import create_dashboard_app
    from femb_cli.dashboard.process import ChildProcess

    process, title = ChildProcess(popen, started_at), f"femb train · {run_dir.name}"
    if drawn is not None:
        app = drawn.attach(run_dir, process, title, exit_on_end)
        if app is None and drawn.cancelled:  # q in the moment between: the training had only begun
            os.killpg(popen.pid, signal.SIGINT)
            wait_for_child(popen)
            run_dir.discard_if_unused()
            return CANCELLED_EXIT
        # None otherwise: the dashboard failed or lost its terminal before it attached; the
        # training goes on, as it does when that happens after.
        return after_dashboard(app or drawn.app, popen, run_dir)
    app = create_dashboard_app(
        follow_run_dir=run_dir.path, process=process, title=title, exit_on_end=exit_on_end
    )
    app.run()
    return after_dashboard(app, popen, run_dir)


def after_dashboard(app, popen, run_dir) -> int:
    """The dashboard has closed: the training's exit code and closing lines, or where it goes on."""
    import typer

    from femb_cli.errors import fail

    stopping = app.stop_requested and app.run_live  # it saves a checkpoint first
    if popen.poll() is None and not app.detached and not app.return_code and (stopping or not app.run_live):
        if stopping:
            typer.echo("waiting for the training to stop…", err=True)
        wait_for_child(popen)
    if popen.poll() is None:
        if app.return_code:  # Textual has printed what crashed
            typer.secho("error: the dashboard failed; the training goes on.", err=True, fg="red")
        typer.echo(
            f"the training goes on in the background (pid {popen.pid}): "
            f"femb dashboard {run_dir.path} to watch it, femb stop {run_dir.path} to stop it"
        )
        return app.return_code or 0
    code = popen.returncode if popen.returncode >= 0 else 128 - popen.returncode
    end = app.state.end if app.state.ended else None
    if end is not None and end.get("reason") != "died" and code in EXIT_CODES.values():
        _print_end(app.state, end, run_dir)
        return code
    tail = "\n".join(f"  {line}" for line in app.log_tail)
    raise fail(
        f"training failed (exit code {code}); {_resume_hint(run_dir)}; "
        f"the last lines of {run_dir.path}/train.log:\n{tail}",
        code=code or 1,
    )


def wait_for_child(popen) -> None:
    """Wait for the training to end; Ctrl-C here passes on to it (a second one then stops it hard)."""
    while popen.poll() is None:
        try:
            popen.wait()
        except KeyboardInterrupt:
            try:
                os.killpg(popen.pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass


def _print_end(state, end: dict, run_dir) -> None:
    from femb_cli.progress import ProgressPrinter

    best = (state.best_eval or {}).get("accuracy")
    verdict = f"best verification accuracy {best:.4f}" if best is not None else "no verification run"
    ProgressPrinter()(
        {
            "event": "end",
            "step": end.get("step"),
            "reason": end.get("reason"),
            "message": f"{verdict}; run directory {run_dir.path}",
            "resume_from": str(run_dir.path)
            if end.get("reason") != "completed" and run_dir.last_checkpoint.is_file()
            else None,
        }
    )


def _resume_hint(run_dir) -> str:
    """Said truthfully: resume only when a checkpoint exists."""
    if run_dir.last_checkpoint.is_file():
        return f"resume with: femb train --resume {run_dir.path}"
    return "no checkpoint was written, so there is nothing to resume"


def child_main(args: list[str]) -> None:
    """The training child: ``python -m femb_cli.run_training train --no-dashboard …``."""
    phase("importing torch and femb")
    if "--nproc-per-node" in args:
        # The workers take the run's lock themselves (rank 0); this launcher must not hold it.
        from femb.training.run_dir import LOCK_FD_ENV

        inherited = os.environ.pop(LOCK_FD_ENV, "")
        if inherited.isdigit():
            os.close(int(inherited))
    from femb_cli.main import main

    phase("reading the options and building the data")
    main(args)


if __name__ == "__main__":
    child_main(sys.argv[1:])
