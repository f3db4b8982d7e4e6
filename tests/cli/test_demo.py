"""`femb demo`, shortened: the same train → export → verify path the README's first command runs."""

from typer.testing import CliRunner

from femb_cli.main import app


def test_demo_trains_exports_and_verifies(tmp_path):
    onnx_path = tmp_path / "demo.onnx"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--steps",
            "2",
            "--identities",
            "4",
            "--no-dashboard",
            "--run-dir",
            str(tmp_path / "run"),
            "-o",
            str(onnx_path),
            "--provider",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    for stage in ("[1/3] femb train", "[2/3] femb export onnx", "[3/3] femb verify pairs"):
        assert stage in result.output
    assert "parity ok" in result.output and "face verification" in result.output
    assert onnx_path.is_file() and (tmp_path / "run" / "val_pairs.bin").is_file()
