"""`femb train` from the command line: options, config files, errors, stop and resume."""

import os
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import TINY_TRAIN
from typer.testing import CliRunner

from femb.training.events import read_events
from femb.training.run_dir import read_toml
from femb_cli.main import app

runner = CliRunner()
TINY = TINY_TRAIN


def train(*args):
    return runner.invoke(app, ["train", *TINY, *map(str, args)])


def losses(run_dir):
    return {e["step"]: e["loss"] for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "step"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/folder"], "--data /no/such/folder: no such folder"),
        (["--lr", "nan"], "--lr must be a number > 0, got nan"),
        (["--sample-rate", "0"], "--sample-rate must be a number > 0 and ≤ 1, got 0.0"),
        (["--backbone-lr-scale", "-1"], "--backbone-lr-scale must be a number ≥ 0"),
        (["--head", "softmaxx"], "--head='softmaxx' is not one of"),
        (["--optimizer", "rmsprop"], "optimizer='rmsprop' is not one of sgd, adamw"),
        (["--batch-size", "0"], "--batch-size must be an integer ≥ 1"),
        (["--backbone", "resnet9"], "unknown backbone 'resnet9'"),
        (["--head", "magface", "--m", "0.5"], "--m: head 'magface' has no option 'm'; its options: s="),
        (["--resume", "/no/such/run"], "--resume /no/such/run: no such run directory"),
        (["--config", "/no/such.toml"], "/no/such.toml: no such file"),
        (["--amp", "fp16", "--device", "cpu"], "amp='fp16' needs a CUDA device"),
        (["--amp", "fp8"], "amp='fp8' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, args, message):
    result = runner.invoke(app, ["train", "--no-dashboard", "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_short_run_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = train("--steps", 4, "--eval-every", 2, "--checkpoint-every", 2, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert "verify @ 4: accuracy" in result.output and "completed at step 4" in result.output
    config = read_toml(run_dir / "config.toml")
    assert config["backbone"] == "iresnet_tiny" and config["steps"] == 4
    assert {"last.pt", "best.pt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert (run_dir / "backbone.pt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    kinds = {e["event"] for e in read_events(run_dir / "metrics.jsonl")}
    assert {"start", "step", "eval", "checkpoint", "end"} <= kinds


def test_config_file_with_command_line_overrides(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('head = "cosface"\nsteps = 2\nlr = 0.05\n[head_options]\nm = 0.25\n')
    run_dir = tmp_path / "run"
    result = train("--config", config, "--steps", 3, "--run-dir", run_dir, "--eval-every", 0)
    assert result.exit_code == 0, result.output
    resolved = read_toml(run_dir / "config.toml")
    assert (resolved["head"], resolved["head_options"], resolved["lr"], resolved["steps"]) == (
        "cosface",
        {"m": 0.25},
        0.05,
        3,
    )
    # --eval-every 0: no evaluation at all, not even at the end (and so no best checkpoint).
    kinds = [e["event"] for e in read_events(run_dir / "metrics.jsonl")]
    assert "eval" not in kinds and "progress" not in kinds
    assert not (run_dir / "checkpoints" / "best.pt").exists()


def test_unknown_key_in_a_config_file_names_the_file_and_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("learning_rate = 0.1\n")
    result = train("--config", config, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2
    assert f"{config}: unknown option 'learning_rate'" in result.output


def test_sigterm_stops_gracefully_and_resume_logs_the_same_losses(tmp_path):
    common = [*TINY, "--steps", "10", "--eval-every", "0", "--checkpoint-every", "100"]
    full = tmp_path / "full"
    assert train(*common[len(TINY) :], "--run-dir", full).exit_code == 0

    split = tmp_path / "split"
    command = [sys.executable, "-m", "femb_cli.main", "train", *common, "--run-dir", str(split)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline and len(losses(split) if (split / "metrics.jsonl").exists() else {}) < 3
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    assert f"resume with: femb train --resume {split}" in output
    stopped_at = max(losses(split))
    assert stopped_at < 10

    resumed = runner.invoke(app, ["train", "--resume", str(split), "--no-dashboard"])
    assert resumed.exit_code == 0, resumed.output
    after = {step: loss for step, loss in losses(split).items() if step > stopped_at}
    assert sorted(after) == list(range(stopped_at + 1, 11))
    assert after == pytest.approx({step: losses(full)[step] for step in after}, rel=1e-5, abs=1e-6)


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_help_lists_option_panels():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for panel in ("Data", "Model", "Head", "Optimisation", "Run"):
        assert panel in result.output
