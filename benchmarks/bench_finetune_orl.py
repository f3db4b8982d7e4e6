"""Does fine-tuning pay? Pretrain on synthetic identities, fine-tune on 30 ORL people, verify 10 others.

    python benchmarks/bench_finetune_orl.py --pretrain-steps 300 --finetune-steps 60 --seeds 0 1 2

This machine has no released weights, so the "released" backbone is pretrained here on the
built-in synthetic faces (many identities, geometry-based), saved as a plain state dict the way
arcface_torch ships ``backbone.pth``, and loaded through ``build_backbone(weights=...)``. Both
arms then get the same fine-tuning budget on 30 ORL people (a fresh head, the same optimizer,
schedule, steps and seed) and are verified on 800 balanced pairs of the 10 people neither saw.
Raw-pixel cosine on the same pairs is printed as the floor.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import ImageFolderDataset, SyntheticFaces, split_by_identity
from femb.evaluation import VerificationEvaluator
from femb.headers import CosFaceHeader

ORL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "orl_faces"
TRAIN_PEOPLE = 30


def train(backbone, data, classes: int, steps: int, lr: float, seed: int, batch: int):
    torch.manual_seed(seed)
    model = FaceEmbeddingModel(
        backbone, CosFaceHeader(backbone.femb_spec["kwargs"]["embed_dim"], classes, s=30, m=0.2)
    )
    optimizer = torch.optim.SGD(model.params, lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.fit(
        data,
        batch_size=batch,
        device="cpu",
        optimizer=optimizer,
        lr_global_step_scheduler=scheduler,
        max_training_steps=steps,
        seed=seed,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="iresnet_tiny")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--identities", type=int, default=1000, help="synthetic identities to pretrain on")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train_set, test_set = split_by_identity(ImageFolderDataset(ORL, cache=True), TRAIN_PEOPLE)
    evaluator = VerificationEvaluator(similarity="cos", num_pairs=800, seed=0)
    raw = evaluator.evaluate(lambda batch: batch.flatten(1), test_set).accuracy

    started = time.perf_counter()
    torch.manual_seed(0)
    synthetic = SyntheticFaces(num_identities=args.identities, images_per_identity=8, seed=0, train=True)
    pretrained = train(
        build_backbone(args.backbone, embed_dim=args.embed_dim),
        synthetic,
        args.identities,
        args.pretrain_steps,
        lr=0.1,
        seed=0,
        batch=64,
    )
    weights = Path(tempfile.mkdtemp()) / "backbone.pth"
    torch.save(pretrained.backbone.state_dict(), weights)  # as arcface_torch ships it
    pretrain_s = time.perf_counter() - started

    rows = []
    for seed in args.seeds:
        scores = {}
        for arm in ("scratch", "fine-tuned"):
            torch.manual_seed(seed)
            source = weights if arm == "fine-tuned" else None
            backbone = build_backbone(args.backbone, embed_dim=args.embed_dim, weights=source)
            tick = time.perf_counter()
            train(backbone, train_set, TRAIN_PEOPLE, args.finetune_steps, lr=0.05, seed=seed, batch=32)
            seconds = time.perf_counter() - tick
            backbone.eval()
            scores[arm] = (evaluator.evaluate(backbone, test_set).accuracy, seconds)
        rows.append((seed, scores))

    print(
        f"\nPretrained {args.backbone} ({args.embed_dim}-d) on {args.identities} synthetic identities, "
        f"{args.pretrain_steps} steps, {pretrain_s:.0f} s; fine-tuning budget {args.finetune_steps} steps "
        f"on {TRAIN_PEOPLE} ORL people; 800 pairs of the other 10; raw pixels {raw:.4f}\n"
    )
    print("| seed | from scratch | fine-tuned | gain | s per arm |")
    print("|---:|---:|---:|---:|---:|")
    for seed, scores in rows:
        scratch, tuned = scores["scratch"][0], scores["fine-tuned"][0]
        print(
            f"| {seed} | {scratch:.4f} | {tuned:.4f} | {tuned - scratch:+.4f} | {scores['scratch'][1]:.0f} |"
        )
    scratch, tuned = (sum(s[arm][0] for _, s in rows) / len(rows) for arm in ("scratch", "fine-tuned"))
    print(f"| mean | {scratch:.4f} | {tuned:.4f} | {tuned - scratch:+.4f} | |")


if __name__ == "__main__":
    main()
