"""FaceEmbeddingModel: the objective, misuse errors, encode, save/load."""

import pickle

import pytest
import torch

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import CheckpointError, load_checkpoint
from femb.headers import ArcFaceHeader, LinearHeader, MagFaceHeader


def tiny_model(header=None, embed_dim=16, classes=5):
    backbone = build_backbone("iresnet_tiny", embed_dim=embed_dim)
    return FaceEmbeddingModel(
        backbone, header or ArcFaceHeader(embed_dim, classes), torch.nn.CrossEntropyLoss()
    )


def test_params_are_backbone_then_header_groups():
    model = tiny_model()
    names = [group["name"] for group in model.params]
    assert names == ["backbone", "header"]
    assert model.params[1]["params"][0] is model.header.weight


def test_label_outside_range_names_label_and_range():
    model = tiny_model(classes=5)
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 5\)"):
        model.compute_loss(torch.randn(2, 16), torch.tensor([1, 7]))


def test_embedding_size_mismatch_names_both_sizes():
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=16), ArcFaceHeader(32, 5))
    with pytest.raises(ValueError, match="16-d embeddings.*in_features=32"):
        model.compute_loss(torch.randn(2, 16), torch.tensor([0, 1]))


def test_magface_regulariser_reaches_the_loss():
    header = MagFaceHeader(in_features=4, out_features=3)
    model = FaceEmbeddingModel(build_backbone("iresnet_tiny", embed_dim=4), header)
    embeddings = (torch.randn(6, 4) * 10).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    total = model.compute_loss(embeddings, labels)
    ce = torch.nn.functional.cross_entropy(header(embeddings, labels), labels)
    a = embeddings.norm(dim=1).clamp(10, 110)
    expected_reg = 20 * (a / 110**2 + 1 / a).mean()
    torch.testing.assert_close(total, ce + expected_reg)


def test_minus_one_labels_are_left_out_of_the_loss():
    model = tiny_model(header=LinearHeader(8, 4), embed_dim=8)
    embeddings = torch.randn(4, 8)
    labels = torch.tensor([0, -1, 2, -1])
    expected = torch.nn.functional.cross_entropy(
        model.header(embeddings[[0, 2]], labels[[0, 2]]), labels[[0, 2]]
    )
    torch.testing.assert_close(model.compute_loss(embeddings, labels), expected)


def test_compute_loss_is_fp32_under_bf16_autocast():
    model = tiny_model()
    embeddings = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.compute_loss(embeddings, torch.tensor([0, 1, 2, 3]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_encode_tensor_and_dataset_agree():
    model = tiny_model().eval()
    images = torch.randn(5, 3, 112, 112)
    from_tensor = model.encode(images, batch_size=2)
    from_dataset = model.encode([(image, 0) for image in images], batch_size=3)
    torch.testing.assert_close(from_tensor, from_dataset, rtol=1e-4, atol=1e-4)
    assert model.encode(images, normalize=True).norm(dim=1).allclose(torch.ones(5))


def test_encode_empty_dataset_says_so():
    with pytest.raises(ValueError, match="empty"):
        tiny_model().encode([])


def test_save_load_round_trip(tmp_path):
    model = tiny_model(header=MagFaceHeader(16, 5)).eval()
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = FaceEmbeddingModel.load(path).eval()
    images = torch.randn(2, 3, 112, 112)
    torch.testing.assert_close(model.encode(images), loaded.encode(images))
    assert isinstance(loaded.header, MagFaceHeader)
    torch.testing.assert_close(model.header.weight, loaded.header.weight)


def test_a_pickle_that_runs_code_is_not_loaded(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    zipped = tmp_path / "evil.pt"
    torch.save({"format": "femb.checkpoint", "x": Evil()}, zipped)
    runs_code = "evil.pt: not a femb checkpoint: it holds Python objects that would run code"
    with pytest.raises(CheckpointError, match=runs_code):
        load_checkpoint(zipped)
    plain = tmp_path / "evil.pkl"
    with open(plain, "wb") as handle:
        pickle.dump({"format": "femb.checkpoint", "x": Evil()}, handle)
    with pytest.raises(CheckpointError, match="evil.pkl: not a femb checkpoint"):
        load_checkpoint(plain)
    assert "pwned" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a femb checkpoint"):
        load_checkpoint(path)
