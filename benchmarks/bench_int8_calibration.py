"""Which int8 calibration method, and which nodes kept in float, lose the least verification accuracy.

    python benchmarks/bench_int8_calibration.py --orl ../shared/data/orl_faces --steps 150

Trains a small network on the first 30 ORL people (femb's recipe of tests/training/
test_learning_orl.py), exports it to fp32 ONNX, then quantizes it once per calibration method
(MinMax, Entropy, Percentile) × nodes kept in float (none, the first convolution, the embedding
layer, both), calibrated on images of the training people and gated on pairs of the 10 unseen
people: 10-fold accuracy and TAR at FAR 1e-3 against the fp32 model, the mean cosine between the
two models' embeddings, and the int8 model's images/s. One table, one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import ImageFolderDataset, split_by_identity
from femb.evaluation import VerificationEvaluator
from femb.export import export_onnx
from femb.export.calibration_images import load_calibration_images
from femb.export.int8 import throughput
from femb.export.quantize import CALIBRATION_METHODS, gate, quantize_int8
from femb.headers import CosFaceHeader

TRAIN_PEOPLE = 30
KEEP_FLOAT_CHOICES = ((), ("first_conv",), ("embedding",), ("first_conv", "embedding"))


def train(orl: ImageFolderDataset, backbone: str, steps: int) -> torch.nn.Module:
    """The recipe's backbone after ``steps`` steps; with 0 steps, untrained with BatchNorm statistics
    from 64 training images (the cosine to fp32 still measures int8's fidelity, accuracy does not)."""
    train_set, test_set = split_by_identity(orl, TRAIN_PEOPLE)
    torch.manual_seed(0)
    if steps == 0:
        backbone_module = build_backbone(backbone, embed_dim=64)
        images = torch.stack(
            [train_set[i][0] for i in range(0, len(train_set), max(1, len(train_set) // 64))]
        )
        for module in backbone_module.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None
        backbone_module.train()
        with torch.no_grad():
            backbone_module(images)
        return backbone_module.eval()
    model = FaceEmbeddingModel(
        build_backbone(backbone, embed_dim=64), CosFaceHeader(64, TRAIN_PEOPLE, s=30, m=0.2)
    )
    optimizer = torch.optim.SGD(model.params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps, pct_start=0.15)
    model.fit(
        train_set,
        batch_size=32,
        device="cpu",
        optimizer=optimizer,
        lr_global_step_scheduler=scheduler,
        evaluator=VerificationEvaluator(num_pairs=800, seed=0),
        val_dataset=test_set,
        max_training_steps=steps,
        seed=0,
    )
    return model.backbone.eval()


def train_people_of(root: Path) -> list[Path]:
    """The identity folders split_by_identity trains on: the first TRAIN_PEOPLE in the dataset's order."""
    orl = ImageFolderDataset(root)
    return [root / name for name in orl.classes[:TRAIN_PEOPLE]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orl", type=Path, default=Path("../shared/data/orl_faces"))
    parser.add_argument("--backbone", default="iresnet_tiny")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--no-speed", action="store_true", help="skip the int8/fp32 throughput column")
    args = parser.parse_args()

    orl = ImageFolderDataset(args.orl, cache=True)
    started = time.perf_counter()
    backbone = train(orl, args.backbone, args.steps)
    print(
        f"{args.backbone}: {args.steps} training steps on {TRAIN_PEOPLE} ORL people, "
        f"{time.perf_counter() - started:.0f} s"
    )
    _, unseen = split_by_identity(orl, TRAIN_PEOPLE)
    with tempfile.TemporaryDirectory() as folder:
        train_people = Path(folder) / "train_people"
        train_people.mkdir()
        for person in train_people_of(args.orl):
            (train_people / person.name).symlink_to(person.resolve())
        calibration = load_calibration_images(train_people, args.calibration_images)
        report = export_onnx(backbone, Path(folder) / "fp32.onnx", parity_batches=(2,))
        fp32 = report.path.read_bytes()
    print(f"calibration: {calibration.count} images of the training people; gate: unseen people")
    print(
        f"{'method':<11} {'kept in float':<22} {'acc fp32':>8} {'acc int8':>8} {'Δacc pt':>8} "
        f"{'TAR fp32':>8} {'TAR int8':>8} {'ΔTAR pt':>8} {'mean cos':>8} {'int8/fp32 speed':>15}"
    )
    for method in CALIBRATION_METHODS:
        for keep in KEEP_FLOAT_CHOICES:
            int8 = quantize_int8(fp32, calibration.faces, method, keep)
            result = gate(fp32, int8, unseen, "unseen ORL people")
            fp32_rate, int8_rate = (1.0, float("nan")) if args.no_speed else throughput(fp32, int8)
            print(
                f"{method:<11} {'+'.join(keep) or 'none':<22} {100 * result.fp32_accuracy:>8.2f} "
                f"{100 * result.int8_accuracy:>8.2f} {-100 * result.accuracy_drop:>+8.2f} "
                f"{100 * result.fp32_tar:>8.2f} {100 * result.int8_tar:>8.2f} "
                f"{-100 * result.tar_drop:>+8.2f} "
                f"{result.mean_cosine:>8.5f} {int8_rate / fp32_rate:>14.2f}×",
                flush=True,
            )


if __name__ == "__main__":
    main()
