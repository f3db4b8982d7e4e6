"""A file system that refuses a checkpoint is one `error:` line naming the path and the free space,
during training and on --resume, and the previous checkpoint stays as it was (issue 22.5).

The refusal is real: the training runs in a child process under a file-size limit (RLIMIT_FSIZE,
SIGXFSZ ignored), so the kernel answers EFBIG exactly as a full disk answers ENOSPC.
"""

import subprocess
import sys
import threading
import time

import pytest
from cli_helpers import TINY_TRAIN
from typer.testing import CliRunner

from femb.training.control import send_request
from femb_cli.app import app

resource = pytest.importorskip("resource")

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["femb", *sys.argv[2:]]
from femb_cli.main import main
main()
"""


def femb(*arguments: str, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    if file_size_limit is None:
        command = [sys.executable, "-m", "femb_cli.main", *arguments]
    else:
        command = [sys.executable, "-c", LIMITED, str(file_size_limit), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "internal error" not in lines[0] and "Traceback" not in done.stdout + done.stderr
    return lines[0]


def test_a_refused_checkpoint_during_training_is_one_line(tmp_path):
    run = tmp_path / "run"
    done = femb(
        "train", *TINY_TRAIN, "--steps", "2", "--checkpoint-every", "1", "--eval-every", "0",
        "--run-dir", str(run), file_size_limit=64_000,
    )  # fmt: skip
    line = one_error_line(done)
    last = run / "checkpoints" / "last.pt"
    assert line.startswith(f"error: {last}: could not be written (File too large; ")
    assert "free on its file system); nothing was written" in line
    assert list((run / "checkpoints").iterdir()) == []  # no temporary file left either


def test_a_refused_checkpoint_on_resume_is_one_line_and_keeps_the_previous_one(tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"

    def stop_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not last.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        send_request(run, "stop")

    watcher = threading.Thread(target=stop_after_the_first_checkpoint, daemon=True)
    watcher.start()
    arguments = ["train", *TINY_TRAIN, "--steps", "500", "--checkpoint-every", "1", "--eval-every", "0"]
    first = CliRunner().invoke(app, [*arguments, "--run-dir", str(run)])
    assert first.exit_code == 0, first.output
    assert "stopped" in first.output
    before = last.read_bytes()

    done = femb("train", "--no-dashboard", "--resume", str(run), file_size_limit=len(before) // 2)
    line = one_error_line(done)
    assert line.startswith(f"error: {last}: could not be written (File too large; ")
    assert "free on its file system); the previous file is intact" in line
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]

    # Next to no room: the run's first writes on resume (its lock's PID; TensorBoard's event file,
    # whose writer thread dies on it) are one line too, without the thread's traceback.
    for limit, where in ((1, run / "lock"), (16, run / "tensorboard")):
        done = femb("train", "--no-dashboard", "--resume", str(run), file_size_limit=limit)
        assert one_error_line(done).startswith(f"error: {where}: could not be written (File too large; ")
        assert last.read_bytes() == before
