"""Issue 11: every bad input gives one `error:` line and a non-zero exit, never a traceback or a hang.

`femb_cli.main.main` is the one place where an exception no command handled becomes that line;
a bug shows its traceback under `--debug` / `FEMB_DEBUG=1`.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path, save_checkpoint
from femb.fileio import require_regular_file
from femb.headers import build_header
from femb.inference import open_embedder
from femb_cli.main import app, main

runner = CliRunner()
TINY_WITHOUT_VAL = ["--backbone", "iresnet_tiny", "--embed-dim", "16", "--data", "synthetic:6"]
TINY_WITHOUT_VAL += ["--batch-size", "16", "--no-dashboard", "--steps", "2", "--warmup-steps", "0"]
TINY = [*TINY_WITHOUT_VAL, "--val", "synthetic:4"]


# A job slower than the plain progress interval (a loaded machine) prints "exporting: 3/4 stages ...".
PROGRESS_LINE = re.compile(r"^[a-z][\w ]*: \d+(/\d+)? \w+")


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


def run_main(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------- main()


@pytest.fixture
def boom(monkeypatch):
    """A throw-away command raising what the test asks for."""
    monkeypatch.setenv("FEMB_DEBUG", "")  # restored after the test, whatever --debug sets
    errors = {
        "value": ValueError("run.toml: lr must be a number"),
        "os": PermissionError(13, "Permission denied", "/runs/x"),
        "bug": ZeroDivisionError("division by zero"),
        "memory": MemoryError(),
    }

    def boom_command(kind: str) -> None:
        raise errors[kind]

    app.command("boom-test")(boom_command)
    yield
    app.registered_commands.pop()


def test_value_and_os_errors_become_one_line_with_exit_2(boom, capsys):
    code, err = run_main(capsys, "boom-test", "value")
    assert code == 2 and one_error_line(err) == "error: run.toml: lr must be a number"
    code, err = run_main(capsys, "boom-test", "os")
    assert code == 2 and one_error_line(err) == "error: /runs/x: Permission denied"
    code, err = run_main(capsys, "boom-test", "memory")
    assert code == 2 and "out of memory" in one_error_line(err)


def test_a_library_bug_says_internal_error_and_how_to_see_the_traceback(boom, capsys):
    code, err = run_main(capsys, "boom-test", "bug")
    line = one_error_line(err)
    assert code == 1 and "internal error: ZeroDivisionError: division by zero" in line
    assert "FEMB_DEBUG=1" in line


@pytest.mark.parametrize("how", ["env", "option-after", "option-before"])
def test_debug_shows_the_traceback(boom, monkeypatch, how):
    args = ["boom-test", "bug"]
    if how == "env":
        monkeypatch.setenv("FEMB_DEBUG", "1")
    elif how == "option-after":
        args.append("--debug")
    else:
        args.insert(0, "--debug")
    with pytest.raises(ZeroDivisionError):
        main(args)


def test_commands_own_fail_calls_still_work(capsys):
    code, err = run_main(capsys, "dashboard", "/no/such/run")
    assert code == 2 and "no such run directory" in one_error_line(err)


# ---------------------------------------------------------------------------------------- --config


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('lr = "0.1"', "lr must be a number, got '0.1'"),
        ("steps = [1, 2]", "steps must be an integer, got [1, 2]"),
        ('milestones = "abc"', "milestones must be a list of integers"),
        ('skip_nonfinite = "no"', "skip_nonfinite must be true or false, got 'no'"),
        ('[head_options]\neasy_margin = "no"', "easy_margin must be true or false"),
        ("batch_size = true", "batch_size must be an integer, got True"),
        ("[head_options]\ns = -1.0", "head 'arcface': option s=-1.0: expected a float in (0, inf)"),
        ("s = 30.0", "unknown option 's'"),  # head options at the top level: a shape never released
        ("[head_options]\nm = 10.0", "head 'arcface': option m=10.0: expected a float in [0, 1.5708]"),
        ('[head]\nname = "cosface"\nm = "0.3"', "m must be a number, got '0.3'"),
        ("lr = [", "not valid TOML"),
    ],
)
def test_config_values_of_the_wrong_type(tmp_path, capsys, toml, message):
    config = tmp_path / "run.toml"
    config.write_text(toml + "\n")
    code, err = run_main(capsys, "train", "--no-dashboard", "--run-dir", tmp_path / "run", "--config", config)
    line = one_error_line(err)
    assert code == 2 and message in line and str(config) in line
    assert not (tmp_path / "run").exists()


def test_config_that_is_a_directory(tmp_path, capsys):
    code, err = run_main(
        capsys, "train", "--no-dashboard", "--run-dir", tmp_path / "run", "--config", tmp_path
    )
    assert code == 2 and str(tmp_path) in one_error_line(err)


# ---------------------------------------------------------------------------------------- sizes, heads


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--s", "-1"], "--s: head 'arcface': option s=-1.0: expected a float in (0, inf)"),
        (["--m", "10"], "--m: head 'arcface': option m=10.0: expected a float in [0, 1.5708]"),
        (["--head", "cosface", "--m", "-0.5"], "head 'cosface': option m=-0.5"),
        (["--embed-dim", "1000000000"], "--embed-dim must be an integer ≥ 1 and ≤ 65,536"),
        (["--data", "synthetic:100000000"], "--data synthetic:100000000: 100,000,000 identities need"),
        (["--val", "synthetic:10000000000"], "--val synthetic:10000000000: 10,000,000,000 identities"),
    ],
)
def test_meaningless_heads_and_absurd_sizes_are_refused_up_front(tmp_path, args, message):
    base = TINY_WITHOUT_VAL if "--val" in args else TINY  # --val repeats: TINY's set would be a second
    result = runner.invoke(app, ["train", *base, "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result.output)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_demo_rejects_a_bogus_provider_before_training(tmp_path):
    result = runner.invoke(app, ["demo", "--provider", "bogus", "--run-dir", str(tmp_path / "demo")])
    assert result.exit_code == 2, result.output
    assert "--provider bogus: unknown provider 'bogus'" in one_error_line(result.output)
    assert not (tmp_path / "demo").exists() and "[1/3]" not in result.output


# ---------------------------------------------------------------------------------------- no hangs


def finishes(call, seconds: float = 30.0):
    """Run ``call`` in a thread; fail (instead of hanging the suite) when it blocks."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call} blocked"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "model.onnx"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_model_path_that_is_no_regular_file_is_refused_at_once(request, kind):
    path = request.getfixturevalue("fifo") if kind == "fifo" else Path("/dev/zero")
    word = "FIFO" if kind == "fifo" else "device"
    for call in (
        lambda: open_embedder(path, provider="cpu"),
        lambda: resolve_checkpoint_path(path),
        lambda: load_checkpoint(path),
        lambda: require_regular_file(path, "model"),
    ):
        with pytest.raises(ValueError, match=word) as info:
            finishes(call)
        assert str(path) in str(info.value)
    with pytest.raises(CheckpointError):
        finishes(lambda: load_checkpoint(path))


def test_cli_refuses_a_fifo_model(fifo, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "femb_cli.main", "export", "onnx", str(fifo), "-o", str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "FIFO" in one_error_line(done.stderr)


# ------------------------------------------------------------------------------ read-only, size limits


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold (root ignores them without it)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: read-only folders cannot be tested")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


def femb(*args, limit_bytes: int | None = None, prefix: list[str] | None = None, cwd=None):
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "femb_cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        cwd=cwd,
    )


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.txt").write_text("keep me")
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16), build_header("arcface", 16, 10))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(model.checkpoint_payload(training={"step": 1}, run_name="tiny"), path)
    return path


def test_train_into_a_read_only_parent(read_only):
    done = femb("train", *TINY, "--run-dir", read_only / "run", prefix=unprivileged())
    line = one_error_line(done.stderr)
    assert done.returncode == 2 and str(read_only) in line and "permission denied" in line.lower(), (
        done.stderr
    )
    assert sorted(p.name for p in read_only.iterdir()) == ["old.txt"]
    assert (read_only / "old.txt").read_text() == "keep me"


def test_export_into_a_read_only_folder(read_only, checkpoint):
    done = femb("export", "onnx", checkpoint, "-o", read_only / "old.txt.onnx", prefix=unprivileged())
    line = one_error_line(done.stderr)
    assert done.returncode == 2 and str(read_only) in line and "permission denied" in line.lower(), (
        done.stderr
    )
    assert sorted(p.name for p in read_only.iterdir()) == ["old.txt"]


def test_export_under_a_file_size_limit_keeps_the_old_file(tmp_path, checkpoint):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old model")
    done = femb("export", "onnx", checkpoint, "-o", out, limit_bytes=50_000)
    line = one_error_line(done.stderr)
    assert done.returncode == 2 and "too large" in line.lower(), done.stderr
    assert out.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left
