"""Does fine-tuning pay? Pretrain on synthetic identities, fine-tune on 30 ORL people, verify 10 others.

    python benchmarks/bench_finetune_orl.py                       # budgets 20/50/150, seeds 0-3
    python benchmarks/bench_finetune_orl.py --grayscale 1         # pretrain on grey synthetic faces

This machine has no released weights, so the "released" backbone is pretrained here on the
built-in synthetic faces (many identities, geometry-based), saved as a plain state dict the way
arcface_torch ships ``backbone.pth``, and loaded through ``build_backbone(weights=...)``. The
synthetic faces are in colour and ORL's are grey photographs; ``--grayscale`` turns a share of
the pretraining images grey (``FaceAugment(grayscale=...)``) to measure that gap.

Both arms then get the same fine-tuning budget on 30 ORL people (a fresh head, the same
optimizer, schedule, steps, batches and seed; only the backbone's starting weights differ) and
are verified on 800 balanced pairs of the 10 people neither saw. The zero-shot score (the
pretrained backbone, no fine-tuning) and raw-pixel cosine on the same pairs are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_orl import ORL, TRAIN_PEOPLE, fit_recipe  # a sibling script: benchmarks/ is on sys.path

from femb.backbones import build_backbone
from femb.data import ImageFolderDataset, SyntheticFaces, split_by_identity
from femb.data.transforms import FaceAugment
from femb.evaluation import VerificationEvaluator


def pretrain(args, weights: Path) -> float:
    """Train the stand-in for a released backbone and save its plain state dict; seconds taken."""
    started = time.perf_counter()
    synthetic = SyntheticFaces(args.identities, args.images_per_identity, seed=0, train=True)
    grey = {"flip": 0.5, "grayscale": args.grayscale}
    synthetic.augment = FaceAugment(**{**FaceAugment.off().options(), **grey})
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, embed_dim=args.embed_dim)
    fit_recipe(backbone, synthetic, args.identities, steps=args.pretrain_steps, lr=0.1, seed=0, batch=64)
    torch.save(backbone.state_dict(), weights)  # as arcface_torch ships it
    return time.perf_counter() - started


def fine_tune_and_verify(args, weights: Path | None, data, evaluator, test_set, steps: int, seed: int):
    torch.manual_seed(seed)
    backbone = build_backbone(args.backbone, embed_dim=args.embed_dim, weights=weights)
    seconds = fit_recipe(backbone, data, TRAIN_PEOPLE, steps=steps, lr=0.05, seed=seed, batch=32)
    backbone.eval()
    return evaluator.evaluate(backbone, test_set).accuracy, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ORL, help="the ORL faces (s1..s40)")
    parser.add_argument("--backbone", default="iresnet_tiny")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--identities", type=int, default=1000, help="synthetic identities to pretrain on")
    parser.add_argument("--images-per-identity", type=int, default=8)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--grayscale", type=float, default=0.0, help="share of grey pretraining images")
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 50, 150], help="fine-tuning steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_set, test_set = split_by_identity(ImageFolderDataset(args.root, cache=True), TRAIN_PEOPLE)
    evaluator = VerificationEvaluator(similarity="cos", num_pairs=800, seed=0)
    raw = evaluator.evaluate(lambda batch: batch.flatten(1), test_set).accuracy

    weights = Path(tempfile.mkdtemp()) / "backbone.pth"
    pretrain_s = pretrain(args, weights)
    zero_shot = build_backbone(args.backbone, embed_dim=args.embed_dim, weights=weights).eval()
    zero_shot_accuracy = evaluator.evaluate(zero_shot, test_set).accuracy

    print(
        f"\nPretrained {args.backbone} ({args.embed_dim}-d) on {args.identities} synthetic identities "
        f"× {args.images_per_identity} images (grayscale {args.grayscale:g}), {args.pretrain_steps} steps "
        f"at batch 64, {pretrain_s:.0f} s; zero-shot {zero_shot_accuracy:.4f}, raw pixels {raw:.4f}; "
        f"fine-tuned on {TRAIN_PEOPLE} ORL people, 800 pairs of the other 10\n"
    )
    print("| fine-tuning steps | seed | from scratch | fine-tuned | gain | s per arm |")
    print("|---:|---:|---:|---:|---:|---:|")
    for steps in args.budgets:
        gains = []
        for seed in args.seeds:
            scratch, seconds = fine_tune_and_verify(args, None, train_set, evaluator, test_set, steps, seed)
            tuned, _ = fine_tune_and_verify(args, weights, train_set, evaluator, test_set, steps, seed)
            gains.append((scratch, tuned))
            cells = f"{scratch:.4f} | {tuned:.4f} | {tuned - scratch:+.4f}"
            print(f"| {steps} | {seed} | {cells} | {seconds:.0f} |")
        scratch, tuned = (statistics.mean(arm) for arm in zip(*gains, strict=True))
        wins = sum(t > s for s, t in gains)
        cells = f"{scratch:.4f} | {tuned:.4f} | {tuned - scratch:+.4f}"
        print(f"| {steps} | mean | {cells} | {wins}/{len(gains)} won |")


if __name__ == "__main__":
    main()
