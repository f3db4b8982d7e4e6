"""The fit loop: limits, events, checkpoints, stop/pause, non-finite losses, resume equality."""

import threading

import pytest
import torch
from torch.utils.data import TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.checkpoint import load_checkpoint
from femb.headers import CosFaceHeader
from femb.training.control import TrainingControl, send_request
from femb.training.events import read_events


def make_data(n=48, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 112, 112, generator=generator)
    labels = torch.arange(n) % classes
    return TensorDataset(images, labels)


def make_model(seed=0, classes=4, loss=None):
    torch.manual_seed(seed)
    backbone = build_backbone("iresnet_tiny", embed_dim=16)
    return FaceEmbeddingModel(backbone, CosFaceHeader(16, classes, s=16.0, m=0.2), loss)


def run(model, data, tmp_path, **kwargs):
    optimizer = torch.optim.SGD(model.params, lr=0.05, momentum=0.9)
    defaults = dict(batch_size=8, device="cpu", optimizer=optimizer, run_dir=tmp_path / "run", seed=0)
    defaults.update(kwargs)
    return model.fit(data, **defaults)


def test_steps_and_epochs_whichever_first(tmp_path):
    data = make_data(n=32)  # 4 steps per epoch at batch 8
    result = run(make_model(), data, tmp_path, max_training_steps=100, max_epochs=2)
    assert result.step == 8 and result.reason == "completed"
    result = run(make_model(), data, tmp_path / "b", max_training_steps=3, max_epochs=5)
    assert result.step == 3


def test_events_checkpoints_and_final_weights(tmp_path):
    result = run(make_model(), make_data(), tmp_path, max_training_steps=6, checkpoint_every=3)
    events = read_events(tmp_path / "run" / "metrics.jsonl")
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    steps = [event for event in events if event["event"] == "step"]
    assert [event["step"] for event in steps] == [1, 2, 3, 4, 5, 6]
    assert all(event["images_per_s"] > 0 and event["emb_norm_mean"] > 0 for event in steps)
    assert load_checkpoint(tmp_path / "run", prefer="last")["training"]["step"] == 6
    assert (tmp_path / "run" / "backbone.pt").is_file()
    assert result.reason == "completed"


def test_stop_request_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    control = TrainingControl()

    def stop_at_three(event):
        if event["event"] == "step" and event["step"] == 3:
            control.request_stop()

    result = run(
        make_model(), make_data(), tmp_path, max_training_steps=20, control=control, callbacks=[stop_at_three]
    )
    assert result.reason == "stopped" and result.step == 3
    end = read_events(tmp_path / "run" / "metrics.jsonl")[-1]
    assert end["resume_from"] == str(tmp_path / "run")  # the state; the command line composes the hint
    assert load_checkpoint(tmp_path / "run", prefer="last")["training"]["step"] == 3


def test_requests_from_another_process_through_the_run_directory(tmp_path):
    def ask(event):
        if event["event"] == "step" and event["step"] == 2:
            send_request(tmp_path / "run", "checkpoint")
        if event["event"] == "step" and event["step"] == 4:
            send_request(tmp_path / "run", "stop")

    result = run(make_model(), make_data(), tmp_path, max_training_steps=20, callbacks=[ask])
    kinds = [(e["event"], e.get("kind")) for e in read_events(tmp_path / "run" / "metrics.jsonl")]
    assert ("checkpoint", "manual") in kinds
    assert result.step == 4


def test_pause_and_resume_between_steps(tmp_path):
    control = TrainingControl()

    def pause_at_two(event):
        if event["event"] == "step" and event["step"] == 2:
            control.set_paused(True)
            threading.Timer(0.3, control.set_paused, args=(False,)).start()

    run(make_model(), make_data(), tmp_path, max_training_steps=4, control=control, callbacks=[pause_at_two])
    pauses = [e["paused"] for e in read_events(tmp_path / "run" / "metrics.jsonl") if e["event"] == "pause"]
    assert pauses == [True, False]


class NaNAfter(torch.nn.Module):
    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def forward(self, logits, labels):
        self.calls -= 1
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if self.calls < 0 else loss


def test_nonfinite_loss_stops_with_the_last_good_checkpoint(tmp_path):
    model = make_model(loss=NaNAfter(calls=4))
    result = run(model, make_data(), tmp_path, max_training_steps=20, checkpoint_every=2)
    assert result.reason == "nonfinite" and result.step == 5
    state = load_checkpoint(tmp_path / "run", prefer="last")
    assert state["training"]["step"] == 4
    assert all(
        torch.isfinite(v).all() for v in state["backbone"]["state_dict"].values() if v.is_floating_point()
    )
    end = read_events(tmp_path / "run" / "metrics.jsonl")[-1]
    assert end["reason"] == "nonfinite" and "nan" in end["message"]


def test_skip_nonfinite_keeps_going(tmp_path):
    model = make_model(loss=NaNAfter(calls=2))
    result = run(model, make_data(), tmp_path, max_training_steps=4, skip_nonfinite=True)
    assert result.reason == "completed"
    warnings = [e for e in read_events(tmp_path / "run" / "metrics.jsonl") if e["event"] == "log"]
    assert warnings and "skipped" in warnings[0]["message"]


def test_resumed_run_logs_the_same_losses(tmp_path):
    data = make_data(n=40)  # 5 steps per epoch: the stop falls mid-epoch
    full = run(
        make_model(),
        data,
        tmp_path / "full",
        max_training_steps=9,
        lr_global_step_scheduler=None,
        run_dir=tmp_path / "full",
    )
    full_losses = [h["loss"] for h in full.history if h["event"] == "step"]

    control = TrainingControl()
    control_stop = lambda e: e["event"] == "step" and e["step"] == 3 and control.request_stop()  # noqa: E731
    run(
        make_model(),
        data,
        tmp_path,
        max_training_steps=9,
        run_dir=tmp_path / "split",
        control=control,
        callbacks=[control_stop],
    )
    model = make_model(seed=123)  # different initial weights: everything must come from the checkpoint
    resumed = run(
        model, data, tmp_path, max_training_steps=9, run_dir=tmp_path / "split", resume=tmp_path / "split"
    )
    resumed_losses = [h["loss"] for h in resumed.history if h["event"] == "step"]
    assert resumed.step == 9
    assert resumed_losses == pytest.approx(full_losses[3:], rel=1e-6, abs=1e-6)


def test_misuse_errors(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match="empty"):
        model.fit(
            TensorDataset(torch.empty(0, 3, 112, 112), torch.empty(0, dtype=torch.long)),
            max_training_steps=1,
            device="cpu",
        )
    # A bad value is named as it was given: the seed API's keyword, not the schema's field.
    with pytest.raises(ValueError, match=r"^max_training_steps must be an integer ≥ 0 and ≤ 1,000,000,000"):
        model.fit(make_data(), device="cpu", max_training_steps=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            model.fit(make_data(), device="cuda", max_training_steps=1)


def test_tensorboard_projector_with_a_pairs_validation_set(tmp_path):
    from femb.data import SyntheticFaces, pairs_from_labelled
    from femb.evaluation import VerificationEvaluator

    pairs = pairs_from_labelled(SyntheticFaces(num_identities=4, images_per_identity=4), num_pairs=16, seed=0)
    run(
        make_model(),
        make_data(),
        tmp_path,
        max_training_steps=2,
        tensorboard=True,
        evaluator=VerificationEvaluator(n_folds=2),
        val_dataset=pairs,
    )
    assert (tmp_path / "run" / "tensorboard" / "projector_config.pbtxt").is_file()
