"""int8 export: calibration images, the verification gate against fp32, metadata, and loading.

The model that passes is a pixel projection (4×4 average pooling by a convolution, then a fixed
random projection by a linear layer): on ORL's real faces it verifies about as well as raw pixels,
so its gate measures something, and it has a convolution and a Gemm to quantize. The one that
fails has one more convolution channel, a constant 1000 that the projection ignores: the same
embeddings in fp32, but the convolution's output is quantized per tensor, so its step (about 4)
wipes out the pixel channels (about ±1). Outlier channels are the classic int8 failure.
"""

from __future__ import annotations

import json

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from export_helpers import write_identity_folder
from hypothesis import HealthCheck, given, settings
from PIL import Image
from torch import nn

from femb.export import export_onnx, read_metadata
from femb.export.calibration_images import load_calibration_images
from femb.export.int8 import Int8Options
from femb.export.onnx_export import GateError
from femb.export.quantize import keep_float_nodes
from femb.inference import OnnxEmbedder


class PixelProjection(nn.Module):
    def __init__(self, dim: int = 64, outlier: bool = False):
        super().__init__()
        channels = 4 if outlier else 3
        self.pool = nn.Conv2d(3, channels, 4, stride=4)
        self.fc = nn.Linear(channels * 28 * 28, dim)
        with torch.no_grad():
            self.pool.weight.zero_()
            self.pool.bias.zero_()
            for channel in range(3):
                self.pool.weight[channel, channel] = 1.0 / 16
            self.fc.weight.zero_()
            generator = torch.Generator().manual_seed(0)
            self.fc.weight[:, : 3 * 28 * 28] = torch.randn(dim, 3 * 28 * 28, generator=generator) / 28
            self.fc.bias.zero_()
            if outlier:
                self.pool.bias[3] = 1000.0  # read by no weight of fc

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture(scope="module")
def black_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("black")
    for index in range(4):
        Image.fromarray(np.zeros((112, 112, 3), np.uint8)).save(folder / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def passed(orl_root, orl_dataset, tmp_path_factory):
    calibration = load_calibration_images(orl_root, 32)
    out = tmp_path_factory.mktemp("int8") / "pixels_int8.onnx"
    report = export_onnx(
        PixelProjection(), out, parity_batches=(2,), int8=Int8Options(calibration, orl_dataset, "ORL")
    )
    return report, calibration


def test_int8_model_that_passes_its_gate_is_written_with_its_figures(passed, orl_dataset):
    report, calibration = passed
    gate = report.int8.gate
    assert gate.passed and gate.pairs >= 1000 and gate.tar_measured
    assert gate.fp32_accuracy > 0.8  # the gate measures a model that verifies
    assert abs(gate.accuracy_drop) <= 0.005 and gate.mean_cosine > 0.99
    assert report.int8.fp32_images_per_second > 0 and report.int8.int8_images_per_second > 0
    meta = read_metadata(report.path)
    assert meta["precision"] == "int8" and report.precision == "int8"
    assert meta["int8_calibration_set"] == "orl_faces" and meta["int8_calibration_images"] == "32"
    assert meta["int8_calibration_sha256"] == calibration.sha256 and len(calibration.sha256) == 64
    assert meta["int8_calibration_method"] == report.int8.method
    assert json.loads(meta["int8_keep_float"]) == list(report.int8.keep_float)
    figures = json.loads(meta["int8_gate"])
    assert figures["passed"] is True and figures["int8_accuracy"] == pytest.approx(gate.int8_accuracy)
    assert "int8_gate_forced" not in meta


def test_int8_model_loads_in_onnx_embedder_like_fp32(passed, orl_dataset):
    report, _ = passed
    embedder = OnnxEmbedder(report.path, provider="cpu")
    assert embedder.precision == "int8" and "int8" in embedder.describe()
    faces = torch.stack([orl_dataset[i][0] for i in range(8)])
    got = embedder.embed(faces, normalize=True)
    expected = PixelProjection()(faces).detach().numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert (got * expected).sum(axis=1).min() > 0.99


def test_failing_gate_writes_nothing_and_force_writes_the_figures(passed, orl_dataset, tmp_path):
    _, calibration = passed
    outlier = PixelProjection(outlier=True)
    out = tmp_path / "bad.onnx"
    with pytest.raises(GateError, match="int8 gate failed.*was not written") as caught:
        export_onnx(outlier, out, parity_batches=(2,), int8=Int8Options(calibration, orl_dataset, "ORL"))
    assert not out.exists() and not caught.value.report.int8.gate.passed
    report = export_onnx(
        outlier, out, parity_batches=(2,), int8=Int8Options(calibration, orl_dataset, "ORL", force=True)
    )
    meta = read_metadata(out)
    assert meta["int8_gate_forced"] == "true" and json.loads(meta["int8_gate"])["passed"] is False
    assert report.int8.forced and report.int8.gate.accuracy_drop > 0.005


def test_fewer_calibration_images_than_asked_are_used_and_said(black_folder):
    calibration = load_calibration_images(black_folder, 32)
    assert calibration.count == 4 and "4 readable images, fewer than the 32 asked for" in calibration.notes[0]


def test_int8_and_fp16_exclude_each_other(black_folder, orl_dataset, tmp_path):
    options = Int8Options(load_calibration_images(black_folder, 2), orl_dataset, "ORL")
    with pytest.raises(ValueError, match="int8 and fp16 exclude each other"):
        export_onnx(PixelProjection(), tmp_path / "x.onnx", fp16=True, int8=options)


def test_calibration_sources_and_their_errors(tmp_path):
    synthetic = load_calibration_images("synthetic", 6, seed=1)
    assert synthetic.count == 6 and synthetic.name == "synthetic" and not synthetic.notes
    assert load_calibration_images("synthetic", 6, seed=1).sha256 == synthetic.sha256  # seeded
    with pytest.raises(ValueError, match="no such file or folder"):
        load_calibration_images(tmp_path / "missing", 4)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="no readable image"):
        load_calibration_images(tmp_path, 4)
    with pytest.raises(ValueError, match="calibration_images must be at least 1"):
        load_calibration_images("synthetic", 0)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=3), st.integers(1, 5))
def test_calibration_folder_of_any_bytes_gives_images_or_one_error(tmp_path_factory, blobs, count):
    folder = tmp_path_factory.mktemp("blobs")
    for index, blob in enumerate(blobs):
        (folder / f"{index}.png").write_bytes(blob)
    try:
        images = load_calibration_images(folder, count)
    except ValueError as error:
        assert "calibration" in str(error) and "\n" not in str(error)
    else:
        assert 1 <= images.count <= count and images.faces.shape[1:] == (3, 112, 112)


def test_keep_float_roles_name_the_first_conv_and_the_embedding_layer(passed):
    import onnx

    report, _ = passed
    model = onnx.load(str(report.path))
    fp32_like = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    names = keep_float_nodes(model, ("first_conv", "embedding"))
    assert fp32_like[0].name in names and fp32_like[-1].name in names
    with pytest.raises(ValueError, match="unknown role 'stem'"):
        keep_float_nodes(model, ("stem",))


@pytest.fixture(scope="module")
def identity_folder(tmp_path_factory):
    """Three identities × two synthetic faces, one folder each."""
    return write_identity_folder(tmp_path_factory.mktemp("ids"), 3, 2, seed=4)


def test_calibration_reads_bin_recordio_and_symlinked_folders(identity_folder, tmp_path):
    from femb.data.recordio_pack import pack_image_folder
    from femb.data.verification_bin import write_verification_bin

    pictures = sorted(identity_folder.rglob("*.png"))
    arrays = [np.asarray(Image.open(p)) for p in pictures]
    write_verification_bin(tmp_path / "pairs.bin", arrays, [True, False, True])
    pack_image_folder(identity_folder, tmp_path / "rec")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "id0").symlink_to(identity_folder / "id0")
    for source, name, count in ((tmp_path / "pairs.bin", "pairs.bin", 6), (tmp_path / "rec", "rec", 6)):
        images = load_calibration_images(source, 4)
        assert (images.name, images.count, images.notes) == (name, 4, [])
        assert load_calibration_images(source, 10).count == count  # all there are, said in a note
    assert load_calibration_images(linked, 5).count == 2


@pytest.mark.parametrize("method", ["percentile", "entropy", "minmax"])
def test_a_calibration_count_that_is_no_multiple_of_the_batch_quantizes(
    method, orl_root, orl_dataset, tmp_path
):
    """40 images (no multiple of 32): the histogram calibrators stack equal batches or fail."""
    from femb.export.quantize import even_batch_size

    assert [even_batch_size(n) for n in (40, 64, 37, 1, 512)] == [20, 32, 1, 1, 32]
    calibration = load_calibration_images(orl_root, 40)
    options = Int8Options(calibration, orl_dataset, "ORL", method=method, force=True)
    report = export_onnx(PixelProjection(), tmp_path / "ragged.onnx", parity_batches=(2,), int8=options)
    assert read_metadata(tmp_path / "ragged.onnx")["int8_calibration_images"] == "40"
    assert report.int8.method == method
