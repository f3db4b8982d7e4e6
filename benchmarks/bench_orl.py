"""A small-data recipe on real faces: train on 30 ORL people, verify 800 pairs of the other 10.

    python benchmarks/bench_orl.py                        # the recipe of tests/training/test_learning_orl.py
    python benchmarks/bench_orl.py --augment --label-smoothing 0.1 --steps 250

Each seed trains from scratch (the seed sets the weights, the batches and the augmentations)
and is verified on the same 800 balanced pairs of the 10 people it never saw (flip-summed
cosine, 10-fold threshold). "s" is the time in ``fit`` alone: the evaluation is timed apart.
Raw-pixel cosine on the same pairs is the floor (ORL is well aligned: it is a strong one).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import ImageFolderDataset, split_by_identity
from femb.data.transforms import FaceAugment
from femb.evaluation import VerificationEvaluator
from femb.headers import build_header

ORL = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "orl_faces").resolve()
TRAIN_PEOPLE = 30


def train_one(args, train_set, seed: int) -> tuple[FaceEmbeddingModel, float]:
    """Train one model from scratch with the recipe in ``args``; (model, seconds in fit)."""
    torch.manual_seed(seed)
    head_options = {key: getattr(args, key) for key in ("s", "m") if getattr(args, key) is not None}
    model = FaceEmbeddingModel(
        build_backbone(args.backbone, embed_dim=args.embed_dim),
        build_header(args.head, args.embed_dim, TRAIN_PEOPLE, **head_options),
        torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing),
    )
    optimizer = torch.optim.SGD(model.params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=args.warmup
    )
    started = time.perf_counter()
    model.fit(
        train_set,
        batch_size=args.batch,
        device="cpu",
        optimizer=optimizer,
        lr_global_step_scheduler=scheduler,
        max_training_steps=args.steps,
        seed=seed,
    )
    return model, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ORL, help="the ORL faces (s1..s40)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--backbone", default="iresnet_tiny")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--head", default="cosface")
    parser.add_argument("--s", type=float, default=30.0, help="head scale; 0: the head's default (AdaCos)")
    parser.add_argument("--m", type=float, default=0.2, help="head margin")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05, help="OneCycle peak lr (SGD, momentum 0.9)")
    parser.add_argument("--warmup", type=float, default=0.15, help="OneCycle pct_start")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true", help="FaceAugment (else the flip only)")
    for name, default in zip(FaceAugment.NAMES, FaceAugment().options().values(), strict=True):
        parser.add_argument(f"--{name}", type=float, default=default, help=f"with --augment: {name}")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.s == 0:
        args.s = None
    torch.set_num_threads(args.threads)

    train_set, test_set = split_by_identity(ImageFolderDataset(args.root, cache=True), TRAIN_PEOPLE)
    augment = (
        FaceAugment(**{name: getattr(args, name) for name in FaceAugment.NAMES}) if args.augment else None
    )
    train_set.augment = augment
    evaluator = VerificationEvaluator(similarity="cos", num_pairs=800, seed=0)
    raw = evaluator.evaluate(lambda batch: batch.flatten(1), test_set).accuracy

    rows = []
    for seed in args.seeds:
        model, seconds = train_one(args, train_set, seed)
        model.backbone.eval()
        accuracy = evaluator.evaluate(model.backbone, test_set).accuracy
        rows.append((seed, accuracy, seconds))
        print(f"seed {seed}: {accuracy:.4f} in {seconds:.1f} s", flush=True)

    scale = "default" if args.s is None else f"{args.s:g}"
    print(
        f"\n{args.backbone} ({args.embed_dim}-d) + {args.head} (s={scale}, m={args.m:g}), {args.steps} steps "
        f"at batch {args.batch}, lr {args.lr:g} (OneCycle, warm-up {args.warmup:g}), "
        f"wd {args.weight_decay:g}, label smoothing {args.label_smoothing:g}, "
        f"{augment if augment else 'flip only'}, {args.threads} threads; "
        f"{TRAIN_PEOPLE} ORL people, 800 pairs of the other 10\n"
    )
    print("| seed | accuracy | s training |")
    print("|---:|---:|---:|")
    for seed, accuracy, seconds in rows:
        print(f"| {seed} | {accuracy:.4f} | {seconds:.1f} |")
    accuracies = [accuracy for _, accuracy, _ in rows]
    print(f"| mean | {statistics.mean(accuracies):.4f} | {statistics.mean(s for *_, s in rows):.1f} |")
    print(f"| min | {min(accuracies):.4f} | {max(s for *_, s in rows):.1f} (max) |")
    print(f"| raw pixels | {raw:.4f} | |")


if __name__ == "__main__":
    main()
