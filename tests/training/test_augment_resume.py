"""`femb train --augment`: augmented training resumes exactly (the draws come from the seeded generator)."""

import pytest

from femb.training.config import TrainConfig
from femb.training.control import TrainingControl
from femb.training.recipe import load_run_config, train

TINY = dict(
    data="synthetic:6",
    val="synthetic:4",
    backbone="iresnet_tiny",
    embed_dim=16,
    batch_size=16,
    steps=6,
    eval_every=0,
    checkpoint_every=100,
    warmup_steps=2,
    augment=True,
)


def step_losses(result) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in result.history if h["event"] == "step"}


def test_augmented_run_resumed_mid_way_logs_the_same_losses(tmp_path):
    full = train(TrainConfig(**TINY, run_dir=str(tmp_path / "full")), tensorboard=False)
    assert full.reason == "completed"

    control = TrainingControl()

    def stop_at_three(event):
        if event["event"] == "step" and event["step"] == 3:
            control.request_stop()

    split = tmp_path / "split"
    stopped = train(
        TrainConfig(**TINY, run_dir=str(split)), control=control, callbacks=[stop_at_three], tensorboard=False
    )
    assert stopped.step == 3
    config, folder = load_run_config(split)
    assert config.augment is True  # recorded in config.toml, so the resume augments too
    resumed = train(config, run_dir=folder, resume=True, tensorboard=False)
    after = step_losses(resumed)
    assert sorted(after) == [4, 5, 6]
    assert after == pytest.approx({k: step_losses(full)[k] for k in after}, rel=1e-5, abs=1e-6)
