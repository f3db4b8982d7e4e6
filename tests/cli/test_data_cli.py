"""`femb data pack|inspect|pairs`: what they write reads back; bad input gives one `error:` line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from PIL import Image
from typer.testing import CliRunner

from femb.data import RecordIODataset, load_lfw_pairs, load_verification_bin
from femb_cli.main import app

runner = CliRunner()


@pytest.fixture
def faces(tmp_path):
    """5 identities × 4 small images (PNG, 92×112 like ORL), one folder each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for person in range(5):
        (root / f"p{person}").mkdir(parents=True)
        for k in range(4):
            pixels = rng.integers(0, 255, (112, 92, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"p{person}" / f"p{person}_{k + 1:04d}.png")
    return root


def test_pack_then_inspect(faces, tmp_path):
    result = runner.invoke(app, ["data", "pack", str(faces), str(tmp_path / "out"), "--quality", "90"])
    assert result.exit_code == 0, result.output
    assert "packed 20 images of 5 identities" in result.stdout
    assert RecordIODataset(tmp_path / "out").labels == [i // 4 for i in range(20)]

    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["kind"] == "recordio" and facts["images"] == 20 and facts["identities"] == 5
    assert facts["images_per_identity"] == {"min": 4, "median": 4, "max": 4}
    assert facts["image_sizes"] == {"112x112": 20} and facts["bad"] == 0 and facts["first_bad"] is None

    result = runner.invoke(app, ["data", "inspect", str(faces)])
    assert result.exit_code == 0, result.output
    assert "92x112 ×20" in result.stdout and "identities   5" in result.stdout


def test_inspect_names_the_first_bad_image(faces):
    (faces / "p2" / "p2_0002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = runner.invoke(app, ["data", "inspect", str(faces), "--json"])
    facts = json.loads(result.stdout)
    assert facts["bad"] == 1 and "p2_0002.png" in facts["first_bad"]


def test_pairs_writes_lfw_txt_and_bin_that_read_back(faces, tmp_path):
    args = ["data", "pairs", str(faces), "--num-pairs", "40", "--seed", "3"]
    result = runner.invoke(
        app, [*args, "--pairs-out", str(tmp_path / "pairs.txt"), "--bin", str(tmp_path / "x.bin")]
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "pairs.txt").read_text().splitlines()
    assert lines[0].split() == ["10", "2"] and len(lines) == 1 + 40
    for fold in range(10):  # each fold: 2 same-identity lines, then 2 different-identity lines
        block = [line.split() for line in lines[1 + 4 * fold : 5 + 4 * fold]]
        assert [len(tokens) for tokens in block] == [3, 3, 4, 4]
        assert all(tokens[0] != tokens[2] for tokens in block[2:])
    # The numbers are LFW's (1-based per identity), so the faces' LFW-style names resolve.
    from_txt = load_lfw_pairs(tmp_path / "pairs.txt", faces, ext="png")
    from_bin = load_verification_bin(tmp_path / "x.bin")
    assert from_bin.issame.tolist() == from_txt.issame.tolist()
    assert len(from_bin) == 40 and from_bin.num_same == 20

    again = runner.invoke(app, [*args, "--pairs-out", str(tmp_path / "again.txt")])
    other = runner.invoke(
        app, ["data", "pairs", str(faces), "--num-pairs", "40", "--pairs-out", str(tmp_path / "o.txt")]
    )
    assert again.exit_code == 0 and other.exit_code == 0
    assert (tmp_path / "again.txt").read_text() == "\n".join(lines) + "\n"
    assert (tmp_path / "o.txt").read_text() != (tmp_path / "again.txt").read_text()


def test_bad_input_gives_one_error_line(faces, tmp_path):
    line = assert_one_line_error(
        runner.invoke(app, ["data", "pack", str(tmp_path / "nope"), str(tmp_path / "o")])
    )
    assert "does not exist" in line
    assert_one_line_error(runner.invoke(app, ["data", "inspect", str(tmp_path / "nope")]))
    assert_one_line_error(runner.invoke(app, ["data", "pairs", str(faces)]))

    (tmp_path / "garbage.bin").write_bytes(b"\x80\x04not a pickle")
    line = assert_one_line_error(runner.invoke(app, ["data", "inspect", str(tmp_path / "garbage.bin")]))
    assert "garbage.bin" in line

    assert runner.invoke(app, ["data", "pack", str(faces), str(tmp_path / "out")]).exit_code == 0
    rec = tmp_path / "out" / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-5])
    line = assert_one_line_error(runner.invoke(app, ["data", "inspect", str(tmp_path / "out")]))
    assert "truncated" in line and "offset" in line
