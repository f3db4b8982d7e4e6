"""Refusals that say what really is wrong, in time, and leave nothing behind (issue 22.9).

- a `femb train` start that is refused (a validation set that cannot give pairs, unreadable
  --init-backbone weights) leaves no run directory holding only a `lock`;
- `femb data inspect /dev/null` says it is a device, not that it "does not exist";
- `femb demo -o` into a folder where nothing can be written fails before the first training step.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from PIL import Image
from typer.testing import CliRunner

from femb_cli.main import app

runner = CliRunner()
TINY = ["train", "--backbone", "iresnet_tiny", "--embed-dim", "16", "--data", "synthetic:6", "--steps", "2"]
TINY += ["--batch-size", "8", "--no-dashboard"]


@pytest.fixture
def one_identity(tmp_path):
    root = tmp_path / "one"
    (root / "alice").mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((112, 112, 3), 40 * k, dtype=np.uint8)).save(root / "alice" / f"{k}.png")
    return root


def test_a_refused_start_leaves_no_run_directory(tmp_path, one_identity):
    run = tmp_path / "run"
    refused = runner.invoke(app, [*TINY, "--val", str(one_identity), "--run-dir", str(run)])
    assert "same-identity and different-identity pairs" in assert_one_line_error(refused)
    assert not run.exists()

    noise = tmp_path / "noise.pth"
    noise.write_bytes(os.urandom(2048))
    refused = runner.invoke(app, [*TINY, "--init-backbone", str(noise), "--run-dir", str(run)])
    assert "not a readable PyTorch weights file" in assert_one_line_error(refused)
    assert not run.exists()

    mine = tmp_path / "mine"  # a folder the user made is theirs: it stays, and stays empty
    mine.mkdir()
    refused = runner.invoke(app, [*TINY, "--val", str(one_identity), "--run-dir", str(mine)])
    assert refused.exit_code == 2 and mine.is_dir() and list(mine.iterdir()) == []


def test_data_inspect_names_what_a_path_that_is_no_file_is(tmp_path):
    line = assert_one_line_error(runner.invoke(app, ["data", "inspect", os.devnull]))
    assert line == f"error: {os.devnull}: is a device, not a verification file (give a regular file)"
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    line = assert_one_line_error(runner.invoke(app, ["data", "inspect", str(fifo)]))
    assert "is a FIFO (named pipe)" in line and "does not exist" not in line


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs for root (whom permission bits do not
    stop), a chmod 555 folder for anyone else."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)])
        if mounted.returncode != 0:
            pytest.skip("root, and no read-only tmpfs can be mounted here")
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_demo_refuses_an_unwritable_output_before_training(tmp_path, read_only_folder):
    run = tmp_path / "run"
    arguments = ["demo", "--steps", "2", "--identities", "4", "--no-dashboard", "--run-dir", str(run)]
    result = runner.invoke(app, [*arguments, "-o", str(read_only_folder / "model.onnx")])
    line, target = assert_one_line_error(result), read_only_folder / "model.onnx"
    assert line.startswith(f"error: {target}: cannot be written in {read_only_folder}")
    assert "[1/3]" not in result.stdout and not run.exists()

    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    result = runner.invoke(app, [*arguments, "-o", str(in_the_way / "model.onnx")])
    assert "is in the way" in assert_one_line_error(result)
    assert "[1/3]" not in result.stdout and not run.exists()
