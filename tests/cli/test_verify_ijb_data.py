"""`femb data align` and `femb data ijb-synthetic`: crops that match the faces drawn, and one-line errors."""

from __future__ import annotations

import numpy as np
from cli_helpers import assert_one_line_error
from PIL import Image
from typer.testing import CliRunner

from femb.data import render_face
from femb.data.align import align_face, read_landmarks
from femb_cli.main import app

runner = CliRunner()


def test_ijb_synthetic_writes_the_layout_with_true_points(tmp_path):
    root = tmp_path / "IJBB"
    result = runner.invoke(app, ["data", "ijb-synthetic", str(root), "--set", "IJBB", "--subjects", "4"])
    assert result.exit_code == 0, result.output
    assert "32 faces, 8 templates of 4 subjects and 28 pairs (4 genuine)" in result.output
    names = sorted(p.name for p in (root / "meta").iterdir())
    assert names == [
        "ijbb_1N_gallery_G1.csv",
        "ijbb_1N_gallery_G2.csv",
        "ijbb_1N_probe_mixed.csv",
        "ijbb_face_tid_mid.txt",
        "ijbb_name_5pts_score.txt",
        "ijbb_template_pair_label.txt",
    ]
    entries = read_landmarks(root / "meta" / "ijbb_name_5pts_score.txt", score=True)
    assert len(entries) == 32 and all(0.6 <= e.score <= 1.0 for e in entries)
    for entry in entries[:4]:
        loose = Image.open(root / "loose_crop" / entry.path)
        assert min(loose.size) > 112
        # Aligning from the written points gives back the drawn face (the points are the true ones).
        face = render_face(0, 1000 + 0, int(entry.path.split(".")[0]) - 1)
        aligned = align_face(loose.convert("RGB"), entry.points).astype(float)
        assert np.abs(aligned[10:102, 10:102] - face[10:102, 10:102]).mean() < 8.0
        # and the points are not simply the ArcFace template: the face was moved
        assert np.abs(entry.points[0] - [38.2946, 51.6963]).max() > 1.0
    header = (root / "meta" / "ijbb_1N_probe_mixed.csv").read_text().splitlines()[0]
    assert header.startswith("TEMPLATE_ID,SUBJECT_ID,FILENAME")


def test_align_writes_crops_at_the_same_relative_paths(tmp_path):
    root = tmp_path / "set"
    runner.invoke(app, ["data", "ijb-synthetic", str(root), "--subjects", "2"])
    out = tmp_path / "aligned"
    marks = root / "meta" / "ijbc_name_5pts_score.txt"
    result = runner.invoke(
        app, ["data", "align", str(root / "loose_crop"), str(out), "--landmarks", str(marks)]
    )
    assert result.exit_code == 0, result.output
    assert "aligned 16 faces" in result.output
    first = np.asarray(Image.open(out / "1.jpg"))
    assert first.shape == (112, 112, 3)
    face = render_face(0, 1000, 0)
    assert np.abs(first[10:102, 10:102].astype(float) - face[10:102, 10:102]).mean() < 10.0


def test_align_names_the_bad_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (150, 150), (90, 90, 90)).save(src / "a.png")
    marks = tmp_path / "marks.txt"
    marks.write_text("a.png 50 60 90 60 70 80 55 100 85 100\na.png 1 2 3\n")
    line = assert_one_line_error(
        runner.invoke(app, ["data", "align", str(src), str(tmp_path / "o"), "--landmarks", str(marks)])
    )
    assert "marks.txt:2: expected an image path and 10 or 11 numbers" in line
    marks.write_text("a.png 50 60 90 60 70 80 55 100 85 100\nb.png 50 60 90 60 70 80 55 100 85 100\n")
    line = assert_one_line_error(
        runner.invoke(app, ["data", "align", str(src), str(tmp_path / "o"), "--landmarks", str(marks)])
    )
    assert "b.png" in line and "marks.txt:2" in line
    skipped = runner.invoke(
        app,
        ["data", "align", str(src), str(tmp_path / "o"), "--landmarks", str(marks), "--on-bad-image", "skip"],
    )
    assert skipped.exit_code == 0 and "skipped 1 unreadable images" in skipped.stderr
    marks.write_text("a.png 5 5 5 5 5 5 5 5 5 5\n")
    line = assert_one_line_error(
        runner.invoke(app, ["data", "align", str(src), str(tmp_path / "o"), "--landmarks", str(marks)])
    )
    assert "marks.txt:1: degenerate landmarks" in line


def test_stage_progress_off_a_terminal_prints_counts_and_eta(capsys):
    from femb_cli.stages import stage_progress

    with stage_progress(interval_s=0.0) as update:
        update("aligning", 0, 40)
        update("aligning", 10, 40)
        update("embedding", 10, 40)
        update("aligning", 40, 40)
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("aligning: 10/40, ETA ") for line in lines)
    assert any(line.startswith("aligning: 40/40 in ") for line in lines)
    assert any(line.startswith("embedding: 10/40") for line in lines)
