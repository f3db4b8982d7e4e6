"""The share of a training run spent evaluating three validation `.bin` sets every N steps.

Three `.bin` sets (lfw / cfp_fp / agedb_30 stand-ins, ``--images`` images each: 12,000 as the
field's sets) are written with femb's own `.bin` writer from held-out synthetic faces. A small
run trains on synthetic faces and evaluates all three every ``--eval-every`` steps. The script
prints the run's time, each evaluation's time (from the run's own events), the evaluations'
share of the run, how many images were decoded per set (each set's images are read through a
counter: once per run is the target, not once per evaluation), and what decoding them at every
evaluation would have added (one decoding pass of the three sets, timed here, × evaluations).

    python benchmarks/bench_eval_share.py [--images 12000] [--steps 60] [--eval-every 20]
        [--backbone mobilefacenet_fast] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.data import PairsDataset, SyntheticFaces, load_verification_bin, write_verification_bin
from femb.data.decoded_images import DecodedImages
from femb.evaluation.verification import VerificationEvaluator
from femb.headers import build_header

SETS = ("lfw", "cfp_fp", "agedb_30")


class CountingImages(torch.utils.data.Dataset):
    """A set's encoded images, counting every one decoded."""

    def __init__(self, images):
        self.images, self.decoded = images, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        self.decoded += 1
        return self.images[index]


def write_sets(folder: Path, images: int, seed: int) -> dict[str, Path]:
    """Three .bin files of ``images`` distinct JPEG images each (``images / 2`` pairs, same and
    different alternating), rendered from held-out synthetic identities of two images each."""
    paths = {}
    pairs = images // 2
    for index, name in enumerate(SETS):
        faces = SyntheticFaces(
            num_identities=pairs, images_per_identity=2, seed=seed + 1 + index, identity_offset=10_000
        )

        def face(identity: int, image: int, faces=faces):
            return faces.load_uint8(2 * identity + image)[0].permute(1, 2, 0).numpy()

        half = pairs // 2  # identities [0, half) give same pairs, [half, pairs) different ones
        flat, issame = [], []
        for k in range(half):
            other = half + (k + 1) % (pairs - half)
            flat += [face(k, 0), face(k, 1), face(half + k, 0), face(other, 1)]
            issame += [True, False]
        paths[name] = write_verification_bin(folder / f"{name}.bin", flat, issame, image_format="JPEG")
    return paths


def decode_once_seconds(sets: dict[str, PairsDataset]) -> float:
    start = time.perf_counter()
    for pairs in sets.values():
        for index in range(len(pairs.images)):
            pairs.images[index]
    return time.perf_counter() - start


def embed_once_seconds(model, sets: dict[str, PairsDataset], batch_size: int) -> float:
    """Embedding every image of the three sets once (with its flip), decoded beforehand: what an
    evaluation costs when nothing is decoded again."""
    evaluator = VerificationEvaluator()
    decoded = {name: DecodedImages(pairs.images) for name, pairs in sets.items()}
    for images in decoded.values():
        images.decode()
    backbone = model.backbone.eval()
    start = time.perf_counter()
    for images in decoded.values():
        evaluator.embed(backbone, images, batch_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000, help="images per set (pairs: half)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--backbone", default="mobilefacenet_fast")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        paths = write_sets(folder, args.images, args.seed)
        print(f"wrote 3 .bin sets of {args.images:,} images in {time.perf_counter() - started:.1f} s")
        loaded = {name: load_verification_bin(path) for name, path in paths.items()}
        decode_s = decode_once_seconds(loaded)
        counted = {
            name: PairsDataset(CountingImages(p.images), p.pairs, p.issame, name=name)
            for name, p in loaded.items()
        }
        unique = {name: len(p.images) for name, p in counted.items()}
        print(f"unique images per set: {unique}; one decoding pass of all three: {decode_s:.1f} s")

        train = SyntheticFaces(num_identities=100, images_per_identity=8, seed=args.seed)
        torch.manual_seed(args.seed)
        model = FaceEmbeddingModel(
            build_backbone(args.backbone, embed_dim=128), build_header("arcface", 128, train.num_classes)
        )
        events: list[dict] = []
        model.fit(
            train,
            batch_size=args.batch_size,
            device="cpu",
            evaluator=VerificationEvaluator(seed=args.seed),
            val_dataset=counted,
            evaluation_steps=args.eval_every,
            max_training_steps=args.steps,
            eval_batch_size=args.eval_batch_size,
            run_dir=folder / "run",
            seed=args.seed,
            callbacks=[events.append],
        )
        embed_s = embed_once_seconds(model, loaded, args.eval_batch_size)
    report(events, counted, unique, decode_s, embed_s)


def report(events: list[dict], counted: dict, unique: dict, decode_s: float, embed_s: float) -> None:
    start = next(e["time"] for e in events if e["event"] == "start")
    end = next(e["time"] for e in events if e["event"] == "end")
    run_s = end - start
    evaluations = []
    for event in events:
        if event["event"] == "eval":
            began = min(
                e["time"]
                for e in events
                if e["event"] == "progress" and e.get("task") == "evaluation" and e["step"] == event["step"]
            )
            evaluations.append((event["step"], event["time"] - began, event))
    eval_s = sum(seconds for _, seconds, _ in evaluations)
    for step, seconds, event in evaluations:
        figures = "  ".join(f"{name} {m['accuracy']:.4f}" for name, m in event["sets"].items())
        print(f"evaluation at step {step}: {seconds:.1f} s   {figures}")
    decoded = {name: pairs.images.decoded for name, pairs in counted.items()}
    print(
        f"run {run_s:.1f} s; {len(evaluations)} evaluations {eval_s:.1f} s = {eval_s / run_s:.1%} of the run"
    )
    print(f"images decoded per set over the run: {decoded} (unique images: {unique})")
    once = all(decoded[name] == unique[name] for name in decoded)
    print(f"decoded once per run: {'yes' if once else 'NO'}")
    print(f"embedding the three sets' images once (with flips), nothing decoded: {embed_s:.1f} s")
    if len(evaluations) > 1:
        later = [seconds for _, seconds, _ in evaluations[1:]]
        again = decode_s * (len(evaluations) - 1)
        print(
            f"first evaluation (it decodes) {evaluations[0][1]:.1f} s; "
            f"later ones {min(later):.1f}-{max(later):.1f} s"
        )
        print(f"later evaluation / embedding once: {min(later) / embed_s:.2f}-{max(later) / embed_s:.2f}")
        print(
            f"decoding at every evaluation would have added {again:.1f} s ({again / run_s:.1%} of this run)"
        )


if __name__ == "__main__":
    main()
