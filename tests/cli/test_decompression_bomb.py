"""An image past Pillow's decompression-bomb limit is a bad image like any other (issue 22.6).

A PNG that declares 40000×40000 pixels makes Pillow raise ``DecompressionBombError``, which is no
OSError: it used to end `train --on-bad-image skip`, `data inspect`, `data pack`, `verify --csv`
and `embed` as "internal error". Now it is skipped and counted where bad images are skipped, and
one error line elsewhere. Skipped training images are femb's own count and names at the end of the
run, with DataLoader workers too (their finds are shared with the main process), never a raw
UserWarning naming torch's fetch.py.
"""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from femb.data import ImageFolderDataset
from femb.data.transforms import ImageLoadError, load_image
from femb_cli.main import app, main

runner = CliRunner()


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG whose header declares ``width × height`` grey pixels; only its first rows are stored
    (Pillow refuses it from the header, before reading any pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes((width + 1) * 4), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("bomb") / "faces"
    rng = np.random.default_rng(0)
    for person in range(4):
        (root / f"p{person}").mkdir(parents=True)
        for k in range(4):
            pixels = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"p{person}" / f"{k}.png")
    (root / "p1" / "bomb.png").write_bytes(bomb_png())
    return root


@pytest.fixture(scope="module")
def trained(faces, tmp_path_factory):
    """A two-step run on the folder with its bomb, DataLoader workers on; (run dir, its output)."""
    run = tmp_path_factory.mktemp("bomb") / "run"
    arguments = ["train", "--backbone", "iresnet_tiny", "--embed-dim", "16", "--data", str(faces)]
    arguments += ["--val", "synthetic:6", "--batch-size", "20", "--steps", "2", "--warmup-steps", "1"]
    arguments += ["--eval-every", "0", "--workers", "2", "--no-dashboard", "--run-dir", str(run)]
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as done:
        warnings.simplefilter("always")
        main(arguments)
    return run, done.value.code, caught


def test_the_bomb_is_an_image_load_error(faces):
    with pytest.raises(ImageLoadError, match=r"bomb.png: Image size \(1600000000 pixels\) exceeds limit"):
        load_image(faces / "p1" / "bomb.png")
    dataset = ImageFolderDataset(faces)
    bomb = next(i for i, (path, _) in enumerate(dataset.samples) if path.name == "bomb.png")
    image, label = dataset[bomb]
    assert image.shape == (3, 112, 112) and label == 1 and dataset.skipped == 1


def test_training_skips_and_counts_it_with_workers(trained, capfd):
    run, code, caught = trained
    assert code == 0
    assert not [w for w in caught if "bomb" in str(w.message)], "a raw warning named the bad image"
    from femb.training.events import read_events

    logs = [e["message"] for e in read_events(run / "metrics.jsonl") if e["event"] == "log"]
    skipped = [message for message in logs if message.startswith("skipped")]
    assert len(skipped) == 1 and skipped[0].startswith("skipped 1 unreadable training images; first: ")
    assert "bomb.png: Image size (1600000000 pixels)" in skipped[0]


def test_the_other_commands_skip_or_refuse_it_in_one_line(faces, trained, tmp_path):
    inspect = runner.invoke(app, ["data", "inspect", str(faces), "--json"])
    assert inspect.exit_code == 0, inspect.output
    assert '"bad": 1' in inspect.stdout and "bomb.png" in inspect.stdout

    pack = runner.invoke(app, ["data", "pack", str(faces), str(tmp_path / "rec")])
    assert pack.exit_code == 0, pack.output
    assert "packed 16 images of 4 identities" in pack.stdout and "skipped 1 unreadable" in pack.stderr

    run = trained[0]
    embed = runner.invoke(app, ["embed", str(run), str(faces), "-o", str(tmp_path / "e.npy")])
    assert embed.exit_code == 0, embed.output
    assert "skipped 1 unreadable" in embed.stdout and "internal error" not in embed.output

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path1,path2,same\np1/bomb.png,p1/0.png,1\np0/0.png,p2/0.png,0\n")
    verify = runner.invoke(app, ["verify", "pairs", str(run), "--csv", str(pairs), "--root", str(faces)])
    errors = [line for line in verify.stderr.splitlines() if line.startswith("error:")]
    assert verify.exit_code == 2 and len(errors) == 1, verify.output
    assert "bomb.png" in errors[0] and "internal error" not in errors[0]
