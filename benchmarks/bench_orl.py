"""A small-data recipe on real faces: train on 30 ORL people, verify 800 pairs of the other 10.

    python benchmarks/bench_orl.py                        # the recipe of tests/training/test_learning_orl.py
    python benchmarks/bench_orl.py --augment --label-smoothing 0.1 --steps 250
    python benchmarks/bench_orl.py --warm-start 3000 --steps 50   # 3,000 synthetic people first
    python benchmarks/bench_orl.py --ceiling                      # the 10 verified people trained on too

Each seed trains from scratch (the seed sets the weights, the batches and the augmentations)
and is verified on the same 800 balanced pairs of the 10 people it never saw (flip-summed
cosine, 10-fold threshold). "s" is the time in ``fit`` alone, a warm start's included: the
evaluation is timed apart. ``--ceiling`` is not a recipe but a bound: it trains on all 40 people,
so the gap between it and the recipe is what 30 people do not teach about the other 10.
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
from femb.data import ImageFolderDataset, SyntheticFaces, split_by_identity
from femb.data.split import IdentitySubset
from femb.data.transforms import FaceAugment
from femb.evaluation import VerificationEvaluator
from femb.headers import build_header

ORL = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "orl_faces").resolve()
TRAIN_PEOPLE = 30
# The recipe's head options (CosFace), declared once for fit_recipe and the command line.
RECIPE_HEAD = {"s": 30.0, "m": 0.2}


def fit_recipe(
    backbone,
    data,
    classes: int,
    *,
    steps: int,
    lr: float,
    seed: int,
    batch: int = 32,
    head: str = "cosface",
    head_options: dict | None = None,
    warmup: float = 0.15,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.0,
) -> float:
    """Fit ``backbone`` with a fresh head on ``data`` (SGD, momentum 0.9, one-cycle); seconds in fit."""
    torch.manual_seed(seed)
    embed_dim = backbone.femb_spec["kwargs"]["embed_dim"]
    options = RECIPE_HEAD if head_options is None else head_options
    model = FaceEmbeddingModel(
        backbone,
        build_header(head, embed_dim, classes, **options),
        torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing),
    )
    optimizer = torch.optim.SGD(model.params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=warmup)
    started = time.perf_counter()
    model.fit(
        data,
        batch_size=batch,
        device="cpu",
        optimizer=optimizer,
        lr_global_step_scheduler=scheduler,
        max_training_steps=steps,
        seed=seed,
    )
    return time.perf_counter() - started


def train_one(args, train_set, seed: int):
    """One backbone trained with the recipe in ``args``: (backbone, seconds in fit, warm-start included).

    With ``--warm-start N`` the backbone first learns N synthetic identities of its own seed
    (rendered inside that fit, so their drawing time counts), then ORL with a fresh head.
    """
    torch.manual_seed(seed)
    backbone = build_backbone(args.backbone, embed_dim=args.embed_dim)
    head_options = {key: getattr(args, key) for key in ("s", "m") if getattr(args, key) is not None}
    recipe = dict(
        seed=seed,
        batch=args.batch,
        head=args.head,
        head_options=head_options,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
    )
    seconds = 0.0
    if args.warm_start:
        synthetic = SyntheticFaces(args.warm_start, args.warm_images, seed=seed, train=True)
        seconds += fit_recipe(
            backbone, synthetic, args.warm_start, steps=args.warm_steps, lr=args.warm_lr, **recipe
        )
    seconds += fit_recipe(backbone, train_set, train_set.num_classes, steps=args.steps, lr=args.lr, **recipe)
    return backbone, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ORL, help="the ORL faces (s1..s40)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--backbone", default="iresnet_tiny")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--head", default="cosface")
    parser.add_argument("--s", type=float, default=RECIPE_HEAD["s"], help="head scale; 0: the head default")
    parser.add_argument("--m", type=float, default=RECIPE_HEAD["m"], help="head margin")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05, help="OneCycle peak lr (SGD, momentum 0.9)")
    parser.add_argument("--warmup", type=float, default=0.15, help="OneCycle pct_start")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true", help="FaceAugment (else the flip only)")
    for name, default in zip(FaceAugment.NAMES, FaceAugment().options().values(), strict=True):
        parser.add_argument(f"--{name}", type=float, default=default, help=f"with --augment: {name}")
    parser.add_argument("--warm-start", type=int, default=0, help="learn N synthetic people first")
    parser.add_argument("--warm-images", type=int, default=2, help="images per synthetic identity")
    parser.add_argument("--warm-steps", type=int, default=250)
    parser.add_argument("--warm-lr", type=float, default=0.1)
    parser.add_argument(
        "--ceiling", action="store_true", help="train on all 40 people, the 10 verified too: a bound"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.s == 0:
        args.s = None
    torch.set_num_threads(args.threads)

    faces = ImageFolderDataset(args.root, cache=True)
    train_set, test_set = split_by_identity(faces, TRAIN_PEOPLE)
    if args.ceiling:
        train_set = IdentitySubset(faces, range(faces.num_classes), train=True)
    augment = (
        FaceAugment(**{name: getattr(args, name) for name in FaceAugment.NAMES}) if args.augment else None
    )
    train_set.augment = augment
    evaluator = VerificationEvaluator(similarity="cos", num_pairs=800, seed=0)
    raw = evaluator.evaluate(lambda batch: batch.flatten(1), test_set).accuracy

    rows = []
    for seed in args.seeds:
        backbone, seconds = train_one(args, train_set, seed)
        accuracy = evaluator.evaluate(backbone.eval(), test_set).accuracy
        rows.append((seed, accuracy, seconds))
        print(f"seed {seed}: {accuracy:.4f} in {seconds:.1f} s", flush=True)

    scale = "default" if args.s is None else f"{args.s:g}"
    print(
        f"\n{args.backbone} ({args.embed_dim}-d) + {args.head} (s={scale}, m={args.m:g}), {args.steps} steps "
        f"at batch {args.batch}, lr {args.lr:g} (OneCycle, warm-up {args.warmup:g}), "
        f"wd {args.weight_decay:g}, label smoothing {args.label_smoothing:g}, "
        f"{augment if augment else 'flip only'}, {args.threads} threads; "
        + (
            f"after {args.warm_steps} steps on {args.warm_start} synthetic identities × {args.warm_images} "
            f"(lr {args.warm_lr:g}); "
            if args.warm_start
            else ""
        )
        + (f"all {train_set.num_classes} ORL people (ceiling)" if args.ceiling else f"{TRAIN_PEOPLE} people")
        + ", 800 pairs of the other 10\n"
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
