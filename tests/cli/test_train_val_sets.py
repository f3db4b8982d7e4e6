"""`femb train --val NAME=PATH --val PATH --best-on NAME` (issue 19 item 1): every set in
metrics.jsonl and TensorBoard, a column per set in `femb runs`, the TOML forms, one error for an
unknown best_on, and each set decoded once in a run."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import TINY_TRAIN, assert_one_line_error
from typer.testing import CliRunner

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import SyntheticFaces, pairs_from_labelled, write_pairs_dataset_bin
from femb.data.pairs import PairsDataset
from femb.evaluation.verification import VerificationEvaluator
from femb.headers import CosFaceHeader
from femb.training.config import TrainConfig
from femb.training.events import read_events
from femb.training.schema import ConfigError
from femb_cli.main import app

runner = CliRunner()
_VAL = TINY_TRAIN.index("--val")  # the tiny run, without its one validation set
TINY = [*TINY_TRAIN[:_VAL], *TINY_TRAIN[_VAL + 2 :], "--images-per-identity", "4", "--batch-size", "8"]


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    """Three small .bin sets of held-out synthetic faces, written with femb's own writer."""
    folder = tmp_path_factory.mktemp("bins")
    paths = {}
    for index, name in enumerate(("lfw", "cfp_fp", "agedb_30")):
        faces = SyntheticFaces(num_identities=6, images_per_identity=4, seed=10 + index, identity_offset=100)
        paths[name] = write_pairs_dataset_bin(
            folder / f"{name}.bin", pairs_from_labelled(faces, 20, seed=index)
        )
    return paths


def test_repeatable_val_with_and_without_names_scores_every_set(bins, tmp_path):
    run_dir = tmp_path / "runs" / "three"
    result = runner.invoke(
        app,
        ["train", *TINY, "--steps", "2", "--eval-every", "1", "--run-dir", str(run_dir),
         "--val", f"LFW={bins['lfw']}", "--val", str(bins["cfp_fp"]), "--val", f"agedb={bins['agedb_30']}",
         "--best-on", "cfp_fp"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    evals = [e for e in read_events(run_dir / "metrics.jsonl") if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [1, 2]
    for event in evals:
        assert list(event["sets"]) == ["LFW", "cfp_fp", "agedb"]  # a NAME, or the file's stem
        for figures in event["sets"].values():
            assert {"accuracy", "accuracy_std", "eer", "auc", "tar_at_far_1e-3", "tar_at_far_1e-4"} <= set(
                figures
            )
            assert figures["num_pairs"] == 20
        assert event["best_on"] == "cfp_fp" and event["accuracy"] == event["sets"]["cfp_fp"]["accuracy"]
    assert evals[-1]["best_accuracy"] == max(e["sets"]["cfp_fp"]["accuracy"] for e in evals)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run_dir / "tensorboard")).Reload().Tags()["scalars"]
    for name in ("LFW", "cfp_fp", "agedb"):
        # (no TAR at FAR 1e-3 from 20 pairs)
        assert {f"val/{name}/accuracy", f"val/{name}/eer", f"val/{name}/auc"} <= set(tags)

    listed = runner.invoke(app, ["runs", str(run_dir.parent), "--json"])
    assert listed.exit_code == 0, listed.output
    (record,) = json.loads(listed.output)
    columns = list(record)
    sets = columns[columns.index("best_step") + 1 : columns.index("status")]
    assert sets == ["val/LFW", "val/cfp_fp", "val/agedb"]
    best = next(e for e in evals if e["accuracy"] == record["best_accuracy"])  # best.pt's evaluation
    assert record["val/agedb"] == pytest.approx(best["sets"]["agedb"]["accuracy"])
    table = runner.invoke(app, ["runs", str(run_dir.parent)])
    assert all(name in table.output.splitlines()[0] for name in ("LFW", "cfp_fp", "agedb"))


def test_toml_takes_a_val_table_or_a_list(bins, tmp_path):
    table = tmp_path / "table.toml"
    table.write_text(f'[val]\nlfw = "{bins["lfw"]}"\ncfp = "{bins["cfp_fp"]}"\n')
    listed = tmp_path / "list.toml"
    listed.write_text(f'val = ["lfw={bins["lfw"]}", "{bins["cfp_fp"]}"]\nbest_on = "cfp_fp"\n')
    from femb.training.run_dir import read_toml

    assert TrainConfig.from_dict(read_toml(table)).val == [f"lfw={bins['lfw']}", f"cfp={bins['cfp_fp']}"]
    assert TrainConfig.from_dict(read_toml(listed)).val == [f"lfw={bins['lfw']}", str(bins["cfp_fp"])]
    assert TrainConfig.from_dict({"val": "one.bin"}).val == ["one.bin"]  # a config.toml of one set
    # The table's names reach the command line's check: an unknown --best-on lists them.
    result = runner.invoke(app, ["train", *TINY, "--config", str(table), "--best-on", "agedb_30"])
    line = assert_one_line_error(result)
    assert line == "error: --best-on 'agedb_30' is not a validation set; choices: mean, lfw, cfp"


def test_unknown_best_on_and_clashing_names_are_one_error_before_the_first_step(bins, tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["train", *TINY, "--val", str(bins["lfw"]), "--best-on", "cfp", "--run-dir", str(run_dir)]
    )
    assert (
        assert_one_line_error(result) == "error: --best-on 'cfp' is not a validation set; choices: mean, lfw"
    )
    assert not (run_dir / "metrics.jsonl").exists()
    clash = runner.invoke(app, ["train", *TINY, "--val", str(bins["lfw"]), "--val", f"lfw={bins['cfp_fp']}"])
    assert "--val: two sets are named 'lfw'" in assert_one_line_error(clash)
    with pytest.raises(ConfigError, match="best_on 'x' is not a validation set") as caught:
        TrainConfig(val=["a.bin"], best_on="x").validate()
    assert caught.value.field == "best_on"


class CountingImages(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images, self.reads = images, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.reads += 1
        return self.images[index]


def test_each_set_is_decoded_once_per_run_across_its_evaluations(tmp_path):
    faces = SyntheticFaces(num_identities=4, images_per_identity=4, seed=3, identity_offset=50)
    sets = {}
    for name, seed in (("a", 0), ("b", 1)):
        pairs = pairs_from_labelled(faces, num_pairs=10, seed=seed)
        sets[name] = PairsDataset(CountingImages(pairs.images), pairs.pairs, pairs.issame, name=name)
    torch.manual_seed(0)
    model = FaceEmbeddingModel(
        build_backbone("iresnet_tiny", embed_dim=16), CosFaceHeader(16, 4, s=16.0, m=0.2)
    )
    train = SyntheticFaces(num_identities=4, images_per_identity=4, seed=0)
    evaluator = VerificationEvaluator(n_folds=2, seed=0)
    result = model.fit(
        train, batch_size=8, device="cpu", evaluator=evaluator, val_dataset=sets, evaluation_steps=1,
        max_training_steps=3, run_dir=tmp_path / "run", best_on="b", seed=0,
    )  # fmt: skip
    evals = [e for e in read_events(tmp_path / "run" / "metrics.jsonl") if e["event"] == "eval"]
    assert len(evals) == 3 and all(set(e["sets"]) == {"a", "b"} for e in evals)
    assert result.best_accuracy == max(e["sets"]["b"]["accuracy"] for e in evals)
    for dataset in sets.values():
        assert dataset.images.reads == len(dataset.images)  # three evaluations, one decode
