"""The original femb README example, as written, with its undefined names filled and tiny sizes."""

import pytest
import torch

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import SyntheticFaces
from femb.evaluation import VerificationEvaluator
from femb.headers import ArcFaceHeader, MagFaceHeader  # noqa: F401  (imported by the example)
from femb.training.events import read_events


@pytest.mark.filterwarnings("ignore:only .* pairs are available")
def test_original_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes TensorBoard events under ./runs
    embed_dim = 32
    train_dataset = SyntheticFaces(num_identities=6, images_per_identity=4, train=True)
    val_dataset = SyntheticFaces(num_identities=4, images_per_identity=4, identity_offset=6)
    train_n_classes = train_dataset.num_classes

    # --- the example (sizes: batch 4, 2 steps, evaluation every 2 steps; device 'cpu') ---
    backbone = build_backbone(backbone="iresnet18", embed_dim=embed_dim)
    header = MagFaceHeader(in_features=embed_dim, out_features=train_n_classes)
    loss = torch.nn.CrossEntropyLoss()
    face_model = FaceEmbeddingModel(backbone=backbone, header=header, loss=loss)
    evaluator = VerificationEvaluator(similarity="cos")
    optimizer = torch.optim.SGD(params=face_model.params, lr=1e-2, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer=optimizer, milestones=[8000, 10000, 160000], gamma=0.1
    )
    face_model.fit(
        train_dataset=train_dataset,
        batch_size=4,
        device="cpu",
        optimizer=optimizer,
        lr_epoch_scheduler=None,
        lr_global_step_scheduler=scheduler,
        evaluator=evaluator,
        val_dataset=val_dataset,
        evaluation_steps=2,
        max_training_steps=2,
        max_epochs=0,
        tensorboard=True,
    )
    # --- end of the example ---

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    events = read_events(runs[0] / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "eval"] == [2]
    assert all(0.0 <= e["accuracy"] <= 1.0 for e in events if e["event"] == "eval")
    assert list((runs[0] / "tensorboard").glob("events.out.tfevents.*"))
    assert (runs[0] / "tensorboard" / "projector_config.pbtxt").is_file()
    assert scheduler.last_epoch == 2
