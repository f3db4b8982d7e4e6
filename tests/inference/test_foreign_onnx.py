"""ONNX face models femb did not write (no metadata): fed as insightface feeds them, said in one line,
overridable with mean/std/bgr; `femb verify pairs` scores such a file on a .bin."""

from __future__ import annotations

import inspect
import io
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from femb.backbones import build_backbone
from femb.data import SyntheticFaces, write_verification_bin
from femb.export import export_onnx
from femb.export.parity import face_batch
from femb.inference import ModelLoadError, OnnxEmbedder, open_embedder
from femb.inference.embedder import insightface_input_stats
from femb_cli.main import app


class TakesBGR(nn.Module):
    """A model trained on BGR images: it sees channel 0 as blue."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x.flip(1))


def plain_export(module: nn.Module, path, raw_pixels: bool = False):
    """torch.onnx.export alone: no femb metadata, insightface-zoo names (``data`` → ``fc1``).

    ``raw_pixels``: the graph starts with its own (x - 127.5) * (1/127.5) in nodes named as MXNet's
    converter names them (``_minus0``, ``_mul0``): it takes raw pixel values.
    """
    buffer = io.BytesIO()
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            (torch.zeros(2, 3, 112, 112),),
            buffer,
            input_names=["data"],
            output_names=["fc1"],
            dynamic_axes={"data": {0: "None"}, "fc1": {0: "None"}},
            opset_version=17,
            **kwargs,
        )
    model = onnx.load_model_from_string(buffer.getvalue())
    if raw_pixels:
        graph = model.graph
        graph.input[0].name = "pixels"
        graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
                onnx.numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale"),
            ]
        )
        head = [
            onnx.helper.make_node("Sub", ["pixels", "mean"], ["centred"], name="_minus0"),
            onnx.helper.make_node("Mul", ["centred", "scale"], ["data"], name="_mul0"),
        ]
        nodes = head + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
    assert not model.metadata_props
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    model = build_backbone("iresnet_tiny", embed_dim=16)
    model.train()
    with torch.no_grad():  # realistic BatchNorm statistics, so channel order and scale matter
        model((face_batch(8).float() - 127.5) / 127.5)
    return model.eval()


@pytest.fixture(scope="module")
def foreign(backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {
        "plain": plain_export(backbone, folder / "w600k_style.onnx"),
        "raw": plain_export(backbone, folder / "mxnet_style.onnx", raw_pixels=True),
        "bgr": plain_export(TakesBGR(backbone), folder / "bgr.onnx"),
    }


@pytest.fixture(scope="module")
def faces():
    floats = (face_batch(4).float() - 127.5) / 127.5
    return floats


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def expected(backbone, faces) -> np.ndarray:
    with torch.no_grad():
        return backbone(faces).numpy()


def test_insightface_guess_from_the_graph(foreign):
    assert insightface_input_stats(foreign["plain"])[:2] == (127.5, 127.5)
    assert insightface_input_stats(foreign["raw"])[:2] == (0.0, 1.0)


def test_plain_model_is_fed_like_insightface_and_says_so(foreign, backbone, faces):
    embedder = OnnxEmbedder(foreign["plain"], provider="cpu")
    assert "no femb metadata: assuming the insightface convention (RGB, mean 127.5, std 127.5" in (
        embedder.assumption
    )
    # One line, and no CLI flag: the command line adds how to override it.
    assert "\n" not in embedder.assumption and "--" not in embedder.assumption
    np.testing.assert_allclose(embedder.embed(faces), expected(backbone, faces), rtol=1e-4, atol=1e-4)


def test_raw_pixel_model_gets_mean_0_std_1(foreign, backbone, faces):
    embedder = OnnxEmbedder(foreign["raw"], provider="cpu")
    assert "mean 0, std 1" in embedder.assumption and "Sub/Mul" in embedder.assumption
    np.testing.assert_allclose(embedder.embed(faces), expected(backbone, faces), rtol=1e-4, atol=1e-4)
    # Overridden with the wrong statistics, the same model gives other embeddings.
    wrong = OnnxEmbedder(foreign["raw"], provider="cpu", mean=127.5, std=127.5)
    assert "mean 127.5, std 127.5" in wrong.assumption and "mean, std as given" in wrong.assumption
    assert cosines(wrong.embed(faces), expected(backbone, faces)).min() < 0.99


def test_bgr_override(foreign, backbone, faces):
    assert (
        cosines(OnnxEmbedder(foreign["bgr"], provider="cpu").embed(faces), expected(backbone, faces)).min()
        < 0.99
    )
    embedder = OnnxEmbedder(foreign["bgr"], provider="cpu", bgr=True)
    assert "(BGR," in embedder.assumption
    np.testing.assert_allclose(embedder.embed(faces), expected(backbone, faces), rtol=1e-4, atol=1e-4)


def test_femb_exports_need_no_assumption(backbone, tmp_path, faces):
    path = export_onnx(backbone, tmp_path / "femb.onnx", parity_batches=(2,)).path
    assert OnnxEmbedder(path, provider="cpu").assumption == ""
    in_graph = export_onnx(backbone, tmp_path / "raw.onnx", normalize_in_graph=True, parity_batches=(2,)).path
    assert OnnxEmbedder(in_graph, provider="cpu").assumption == ""
    # Its first nodes are the Sub/Mul that insightface reads as "takes raw pixels".
    assert insightface_input_stats(in_graph)[:2] == (0.0, 1.0)


def test_overrides_do_not_apply_to_checkpoints(backbone, tmp_path):
    from femb import FaceEmbeddingModel

    FaceEmbeddingModel(backbone).save(tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match="mean apply to ONNX models only"):
        open_embedder(tmp_path / "model.pt", provider="cpu", mean=0.0)


# ------------------------------------------------------------------ femb verify pairs
@pytest.fixture(scope="module")
def bin_file(tmp_path_factory):
    data = SyntheticFaces(num_identities=8, images_per_identity=2, seed=3, cache=False)
    image = [[data.load_uint8(2 * i + j)[0].permute(1, 2, 0).numpy() for j in range(2)] for i in range(8)]
    images, issame = [], []
    for i in range(8):
        images += [image[i][0], image[i][1], image[i][0], image[(i + 1) % 8][1]]
        issame += [True, False]
    return write_verification_bin(tmp_path_factory.mktemp("bin") / "lfw.bin", images, issame)


def verify(*args):
    return CliRunner().invoke(app, ["verify", "pairs", *map(str, args), "--provider", "cpu", "--folds", "2"])


def test_verify_scores_a_zoo_style_model_on_a_bin(foreign, bin_file, tmp_path):
    result = verify(foreign["raw"], "--bin", bin_file, "--json", tmp_path / "raw.json")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "femb metadata" in line]
    assert len(notes) == 1 and notes[0].startswith("note: mxnet_style.onnx has no femb metadata"), (
        result.stderr
    )
    assert "mean 0, std 1" in notes[0]
    # The same backbone through the femb convention scores the pairs identically.
    plain = verify(foreign["plain"], "--bin", bin_file, "--json", tmp_path / "plain.json")
    assert plain.exit_code == 0, plain.output
    import json

    raw_auc = json.loads((tmp_path / "raw.json").read_text())["auc"]
    assert raw_auc == pytest.approx(json.loads((tmp_path / "plain.json").read_text())["auc"], abs=1e-6)


def test_verify_overrides_and_their_errors(foreign, bin_file, tmp_path):
    result = verify(foreign["bgr"], "--bin", bin_file, "--bgr", "--mean", "127.5", "--std", "127.5")
    assert result.exit_code == 0, result.output
    assert "(BGR, mean 127.5, std 127.5" in result.stderr
    from femb import FaceEmbeddingModel

    FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16)).save(tmp_path / "model.pt")
    bad = verify(tmp_path / "model.pt", "--bin", bin_file, "--mean", "0")
    assert (
        bad.exit_code == 2
        and bad.stderr.strip().startswith("error: ")
        and len(bad.stderr.strip().splitlines()) == 1
    )
