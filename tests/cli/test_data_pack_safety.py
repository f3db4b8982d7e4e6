"""`femb data pack` never replaces a set unasked and never leaves temporary files behind (issue 22.4).

As `train` refuses to overwrite a run, `pack` refuses an OUT_DIR that already holds a RecordIO set
unless --overwrite. A full disk or file-size limit (RLIMIT_FSIZE in a child process: a real
refusal by the kernel), an interruption or bad input ends with no `train.rec.tmp`,
`train.idx.tmp` or `property.tmp` left, and the previous set intact.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_helpers import assert_one_line_error
from PIL import Image
from typer.testing import CliRunner

from femb.data import pack_image_folder, render_face
from femb_cli.main import app

runner = CliRunner()

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["femb", *sys.argv[2:]]
from femb_cli.main import main
main()
"""


@pytest.fixture
def faces(tmp_path):
    """5 identities × 4 of femb's synthetic faces: a few KB each once packed as JPEG."""
    root = tmp_path / "faces"
    for person in range(5):
        (root / f"p{person}").mkdir(parents=True)
        for k in range(4):
            face = Image.fromarray(render_face(seed=0, identity=person, index=k))
            face.save(root / f"p{person}" / f"{k}.png")
    return root


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_existing_set_is_replaced_only_with_overwrite(faces, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["data", "pack", str(faces), str(out)]).exit_code == 0
    before = contents(out)
    again = runner.invoke(app, ["data", "pack", str(faces), str(out), "--quality", "50"])
    line = assert_one_line_error(again)
    assert line == f"error: {out}: already holds a RecordIO set; pass --overwrite to replace it"
    assert contents(out) == before
    result = runner.invoke(app, ["data", "pack", str(faces), str(out), "--quality", "50", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert contents(out).keys() == before.keys() and contents(out) != before


def test_a_full_file_system_leaves_no_temporary_files_and_the_previous_set(faces, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["data", "pack", str(faces), str(out)]).exit_code == 0
    before = contents(out)
    for target, extra in ((tmp_path / "fresh", []), (out, ["--overwrite"])):
        command = [sys.executable, "-c", LIMITED, "20000", "data", "pack", str(faces), str(target), *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1, done.stderr
        assert errors[0].startswith(f"error: {target / 'train.rec'}: could not be written (File too large; ")
        assert "free on its file system" in errors[0] and "Traceback" not in done.stderr
    assert contents(out) == before
    assert list((tmp_path / "fresh").iterdir()) == []


def test_any_other_failure_removes_the_temporary_files(faces, tmp_path):
    def interrupt(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack_image_folder(faces, tmp_path / "a", on_image=interrupt)
    assert list((tmp_path / "a").iterdir()) == []

    one_readable = tmp_path / "one"
    for person in range(2):
        (one_readable / f"p{person}").mkdir(parents=True)
        (one_readable / f"p{person}" / "0.png").write_bytes(b"not an image" if person else b"")
    (one_readable / "p0" / "1.png").write_bytes((faces / "p0" / "0.png").read_bytes())
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="fewer than 2 identities"):
        pack_image_folder(one_readable, tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []
