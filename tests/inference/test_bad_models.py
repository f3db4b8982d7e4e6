"""ONNX files that cannot be a face model, or whose metadata does not parse: one clear error (issue 11)."""

import onnx
import pytest
import torch

from femb.export import export_onnx
from femb.export.metadata import read_metadata, set_metadata
from femb.inference import OnnxEmbedder
from femb.inference.embedder import ModelLoadError


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    from femb.backbones import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone("iresnet_tiny", embed_dim=8).eval()
    return export_onnx(backbone, tmp_path_factory.mktemp("m") / "tiny.onnx", parity_batches=(2,)).path


class SpatialOutput(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=1)  # N×112×112: rank 3, not N×D


def test_an_output_that_is_not_n_by_d_is_refused_at_load(tmp_path):
    path = tmp_path / "rank3.onnx"
    torch.onnx.export(
        SpatialOutput(),
        torch.zeros(2, 3, 112, 112),
        path,
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "n"}},
        dynamo=False,
    )
    with pytest.raises(ModelLoadError, match=r"rank3.onnx: its output 'embedding' has shape .*N×D"):
        OnnxEmbedder(path, provider="cpu")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mean", "xyz", "mean='xyz' is not a number"),
        ("std", "0", "std > 0"),
        ("input_size", "a,b", "input_size='a,b'"),
        ("embed_dim", "abc", "embed_dim='abc'"),
    ],
)
def test_unparsable_metadata_is_one_error_naming_the_file(onnx_path, tmp_path, key, value, message):
    model = onnx.load(onnx_path)
    meta = read_metadata(model)
    set_metadata(model, {**meta, key: value})
    edited = tmp_path / "edited.onnx"
    onnx.save(model, edited)
    with pytest.raises(ModelLoadError, match=message) as caught:
        OnnxEmbedder(edited, provider="cpu")
    assert str(edited) in str(caught.value)


def test_export_meta_cannot_override_what_readers_trust(tmp_path):
    from femb.backbones import build_backbone

    backbone = build_backbone("iresnet_tiny", embed_dim=8)
    with pytest.raises(ValueError, match="'mean' is written by femb itself"):
        export_onnx(backbone, tmp_path / "x.onnx", metadata={"mean": "0"})
    assert not (tmp_path / "x.onnx").exists()
