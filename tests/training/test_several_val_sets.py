"""Several named validation sets during training (issue 19 item 1): every set scored, best_on,
decode once, set names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from ranks import leave_after_the_last_barrier, run_ranks
from torch import nn

from femb.data.decoded_images import DecodedImages
from femb.data.pairs import PairsDataset
from femb.data.set_names import named_paths, split_name
from femb.data.transforms import normalize
from femb.evaluation.verification import VerificationEvaluator
from femb.model import FaceEmbeddingModel
from femb.training.checkpointing import Progress
from femb.training.runtime import Runtime
from femb.training.validation import Validation, summarize


class CountingImages(torch.utils.data.Dataset):
    """Face tensors from uint8 pixels, counting every read (a decode, for a .bin)."""

    def __init__(self, pixels: torch.Tensor):
        self.pixels, self.reads = pixels, 0

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> torch.Tensor:
        self.reads += 1
        return normalize(self.pixels[index])


def channel_pairs(channel: int, num_pairs: int = 40, seed: int = 0) -> PairsDataset:
    """Pairs whose 'same' images share ``channel``'s pattern and differ elsewhere; 'different'
    images differ everywhere. A model that looks at ``channel`` alone scores them perfectly."""
    gen = torch.Generator().manual_seed(seed)
    images, pairs, issame = [], [], []
    for k in range(num_pairs):
        a = torch.randint(0, 256, (3, 112, 112), generator=gen, dtype=torch.uint8)
        b = torch.randint(0, 256, (3, 112, 112), generator=gen, dtype=torch.uint8)
        same = k % 2 == 0
        if same:
            b[channel] = a[channel]
        images += [a, b]
        pairs.append((2 * k, 2 * k + 1))
        issame.append(same)
    return PairsDataset(CountingImages(torch.stack(images)), np.array(pairs), np.array(issame))


class ChannelNet(nn.Module):
    """A real backbone that sees one colour channel only (a fixed random projection of it)."""

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel
        self.project = nn.Conv2d(1, 8, kernel_size=16, stride=16, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(images[:, self.channel : self.channel + 1]).flatten(1)


def validation(best_on: str = "mean", sets=None) -> Validation:
    torch.manual_seed(0)
    model = FaceEmbeddingModel(ChannelNet(0))
    sets = sets if sets is not None else {"red": channel_pairs(0), "green": channel_pairs(1, seed=1)}
    evaluator = VerificationEvaluator(n_folds=4, far_targets=(1e-1,))
    return Validation(evaluator, sets, model, Runtime.create("cpu", "none"), batch_size=16, best_on=best_on)


def test_every_set_is_scored_under_its_name_with_the_mean_on_top():
    val = validation()
    metrics, is_best = val.run(Progress())
    assert set(metrics["sets"]) == {"red", "green"}
    red, green = metrics["sets"]["red"], metrics["sets"]["green"]
    for figures in (red, green):
        assert {"accuracy", "accuracy_std", "eer", "auc", "tar_at_far_1e-1", "num_pairs"} <= set(figures)
    assert red["accuracy"] == 1.0 and green["accuracy"] < 0.8  # the model sees red only
    assert metrics["accuracy"] == pytest.approx((red["accuracy"] + green["accuracy"]) / 2)
    assert metrics["num_pairs"] == red["num_pairs"] + green["num_pairs"]
    assert metrics["best_on"] == "mean" and is_best


@pytest.mark.parametrize("best_on, second_is_best", [("red", False), ("green", True), ("mean", False)])
def test_best_on_chooses_the_set_whose_accuracy_decides(best_on, second_is_best):
    """Red then green: the first evaluation's model sees red only, the second's green only, so
    the sets disagree on which is better (the mean ties, which is not an improvement)."""
    val = validation(best_on)
    progress = Progress()
    first, first_best = val.run(progress)
    val.model.backbone.channel = 1
    second, now_best = val.run(progress)
    assert first["sets"]["red"]["accuracy"] > second["sets"]["red"]["accuracy"]
    assert first["sets"]["green"]["accuracy"] < second["sets"]["green"]["accuracy"]
    assert first_best and now_best is second_is_best
    expected = max(first["accuracy"], second["accuracy"])
    assert progress.best_accuracy == pytest.approx(expected)
    if best_on != "mean":
        assert second["accuracy"] == second["sets"][best_on]["accuracy"]


def test_an_unknown_best_on_is_one_error_naming_the_field_before_any_evaluation():
    with pytest.raises(ValueError, match=r"best_on 'lfw' is not a validation set; choices: mean, red, green"):
        validation("lfw")


def test_each_set_is_decoded_once_per_run_not_once_per_evaluation():
    sets = {"red": channel_pairs(0), "green": channel_pairs(1, seed=1)}
    val = validation(sets=sets)
    assert val.decoded_images() == 0  # nothing read before the first evaluation
    images = sum(len(s.images) for s in sets.values())
    first, _ = val.run(Progress())
    assert val.decoded_images() == images
    for _ in range(2):
        again, _ = val.run(Progress())
    assert val.decoded_images() == images and sum(s.images.reads for s in sets.values()) == images
    assert again["sets"] == first["sets"]  # served from memory: the same figures


def test_decoded_images_keep_float_sources_exactly():
    floats = torch.rand(3, 3, 112, 112) * 2 - 1  # not uint8 pixels: kept as float32, unchanged
    decoded = DecodedImages(list(floats))
    assert torch.equal(torch.stack(decoded.__getitems__([0, 1, 2])), floats)
    pixels = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    decoded = DecodedImages([(normalize(p), 7) for p in pixels])
    assert torch.equal(decoded[1], normalize(pixels[1])) and decoded.decodes == 2


def test_one_set_keeps_the_figures_of_a_single_validation_set_at_the_top():
    per_set = {"val": {"accuracy": 0.9, "threshold": 0.3, "num_pairs": 10}}
    assert summarize(per_set) == {**per_set["val"], "best_on": "mean", "sets": per_set}
    two = {"a": {"accuracy": 0.9, "threshold": 0.3}, "b": {"accuracy": 0.7, "threshold": 0.5}}
    assert summarize(two)["threshold"] is None and summarize(two, "b")["threshold"] == 0.5


def test_set_names_from_paths_pairs_and_tables():
    assert split_name("lfw=data/lfw.bin")[0] == "lfw"
    assert named_paths(["lfw=a/lfw.bin", "b/cfp_fp.bin", "synthetic:20"]) == {
        "lfw": "a/lfw.bin",
        "cfp_fp": "b/cfp_fp.bin",
        "synthetic": "synthetic:20",
    }
    assert named_paths({"agedb_30": "x.bin"}) == {"agedb_30": "x.bin"}
    assert named_paths("one.bin") == {"one": "one.bin"}
    with pytest.raises(ValueError, match="val: two sets are named 'lfw'"):
        named_paths(["a/lfw.bin", "b/lfw.bin"])
    with pytest.raises(ValueError, match="set name"):
        named_paths({"bad name": "x.bin"})


def _evaluate_as_rank(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    sets = {"red": channel_pairs(0, num_pairs=8), "green": channel_pairs(1, num_pairs=8, seed=1)}
    metrics, is_best = validation(sets=sets).run(Progress())  # the runtime joins the group
    reads = {name: dataset.images.reads for name, dataset in sets.items()}
    result = {"reads": reads, "has_metrics": metrics is not None, "is_best": is_best}
    (Path(out_dir) / f"{rank}.json").write_text(json.dumps(result))
    leave_after_the_last_barrier()


def test_with_two_processes_only_rank_0_decodes_and_evaluates(tmp_path):
    run_ranks(_evaluate_as_rank, (str(tmp_path / "init"), str(tmp_path)))
    first, second = (json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1))
    assert first == {"reads": {"red": 16, "green": 16}, "has_metrics": True, "is_best": True}
    assert second == {"reads": {"red": 0, "green": 0}, "has_metrics": False, "is_best": True}  # agreed
