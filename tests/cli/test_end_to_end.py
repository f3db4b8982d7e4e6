"""Train → export → verify from the command line on real faces, and a `kill -9` that loses nothing saved."""

import json
import signal
import subprocess
import time

from typer.testing import CliRunner

from femb.training.events import read_events
from femb_cli.main import app

runner = CliRunner()


def test_train_export_verify_on_orl(tmp_path, orl_root):
    run_dir, onnx_path, report = tmp_path / "run", tmp_path / "orl.onnx", tmp_path / "verify.json"
    trained = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(orl_root),
            "--val",
            str(orl_root),
            "--val-pairs",
            "400",
            "--backbone",
            "iresnet_tiny",
            "--embed-dim",
            "32",
            "--head",
            "cosface",
            "--s",
            "30",
            "--m",
            "0.2",
            "--lr",
            "0.05",
            "--batch-size",
            "32",
            "--steps",
            "30",
            "--eval-every",
            "0",
            "--warmup-steps",
            "5",
            "--run-dir",
            str(run_dir),
            "--no-dashboard",
        ],
    )
    assert trained.exit_code == 0, trained.output

    exported = runner.invoke(app, ["export", "onnx", str(run_dir), "-o", str(onnx_path)])
    assert exported.exit_code == 0, exported.output
    assert "parity ok" in exported.output and "header cosface" in exported.output

    verified = runner.invoke(
        app,
        [
            "verify",
            "pairs",
            str(onnx_path),
            "--folder",
            str(orl_root),
            "--num-pairs",
            "400",
            "--provider",
            "cpu",
            "--json",
            str(report),
            "--no-roc",
        ],
    )
    assert verified.exit_code == 0, verified.output
    summary = json.loads(report.read_text())
    assert summary["provider"] == "cpu" and summary["num_pairs"] == 400
    assert 0.6 < summary["accuracy"] <= 1.0  # 30 steps on ORL's own people: well above chance


def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path, tiny_train_command):
    run_dir = tmp_path / "run"
    command = [
        *tiny_train_command,
        "--steps",
        "12",
        "--eval-every",
        "0",
        "--checkpoint-every",
        "2",
        "--run-dir",
        str(run_dir),
        "--no-dashboard",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    metrics = run_dir / "metrics.jsonl"

    def checkpoints():
        return [e for e in read_events(metrics) if e["event"] == "checkpoint"] if metrics.exists() else []

    while time.monotonic() < deadline and not checkpoints():
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    saved = max(e["step"] for e in checkpoints())
    assert saved < 12

    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--no-dashboard"])
    assert resumed.exit_code == 0, resumed.output
    assert f"from step {saved}" in resumed.output and "completed at step 12" in resumed.output
