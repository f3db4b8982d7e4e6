"""Hand-edited checkpoints give one clear error naming the file (issue 11, item 8)."""

import pytest
import torch

from femb.backbones import build_backbone
from femb.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from femb.model import FaceEmbeddingModel, load_backbone


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=8)).save(path)
    payload = load_checkpoint(path)
    payload.pop("path")
    return payload


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: {**b, "name": "resnet9000"}, "cannot rebuild backbone 'resnet9000' .*unknown backbone"),
        (lambda b: {**b, "kwargs": {"embed_dim": 8, "bogus": 1}}, "cannot rebuild backbone .*bogus"),
        (lambda b: {**b, "kwargs": {"embed_dim": 4}}, "do not fit backbone 'iresnet_tiny' with embed_dim=4"),
        (lambda b: None, "no backbone entry"),
        (lambda b: {**b, "kwargs": [1, 2]}, "malformed"),
    ],
)
def test_each_edit_is_one_checkpoint_error_naming_the_file(saved, tmp_path, edit, message):
    path = tmp_path / "edited.pt"
    save_checkpoint({**saved, "backbone": edit(saved["backbone"])}, path)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_backbone(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)
