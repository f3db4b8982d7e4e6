"""`femb train --on-bad-image skip|error` on an image folder holding one corrupt file."""

import numpy as np
import pytest
from PIL import Image

from femb.training.config import TrainConfig
from femb_cli.main import main

TINY = [
    "--backbone",
    "iresnet_tiny",
    "--embed-dim",
    "16",
    "--val",
    "synthetic:6",
    "--batch-size",
    "16",  # more than the folder holds: every step sees every image, the bad one included
    "--no-dashboard",
    "--warmup-steps",
    "1",
    "--steps",
    "2",
    "--eval-every",
    "0",
]


@pytest.fixture
def folder_with_a_bad_image(tmp_path):
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for identity in ("alice", "bob"):
        (root / identity).mkdir(parents=True)
        for index in range(4):
            pixels = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / identity / f"{index}.jpg", quality=90)
    bad = root / "bob" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root, bad


def run(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *TINY, *map(str, args)])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_skip_is_the_default_and_trains(tmp_path, capsys, folder_with_a_bad_image):
    root, bad = folder_with_a_bad_image
    code, output = run(capsys, "--data", root, "--run-dir", tmp_path / "run")
    assert code == 0, output
    assert "completed at step 2" in output
    assert f"skipped 1 unreadable training images; first: cannot read image {bad}" in output
    assert "Traceback" not in output and "UserWarning" not in output


def test_error_fails_with_one_line_naming_the_file(tmp_path, capsys, folder_with_a_bad_image):
    root, bad = folder_with_a_bad_image
    code, output = run(capsys, "--data", root, "--on-bad-image", "error", "--run-dir", tmp_path / "run")
    assert code != 0, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], output
    assert "Traceback" not in output


def test_an_unknown_policy_is_refused_before_training(tmp_path, capsys, folder_with_a_bad_image):
    root, _ = folder_with_a_bad_image
    code, output = run(capsys, "--data", root, "--on-bad-image", "ignore", "--run-dir", tmp_path / "run")
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--on-bad-image='ignore' is not one of skip, error" in lines[0], output
    assert not (tmp_path / "run").exists()


def test_the_config_field_is_checked():
    assert TrainConfig().on_bad_image == "skip"
    assert TrainConfig.from_dict({"on_bad_image": "error"}).on_bad_image == "error"
    with pytest.raises(ValueError, match="on_bad_image"):
        TrainConfig.from_dict({"on_bad_image": "raise"})
