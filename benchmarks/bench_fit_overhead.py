"""femb's fit loop against a bare PyTorch loop: same model, head, optimizer and in-memory data.

Runs alternate (bare, fit, bare, fit, …) in one process so machine noise hits both alike, and
prints steps/s of each and the ratio fit / bare (the claim: ≥ 0.97).

    python benchmarks/bench_fit_overhead.py --steps 30 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from femb import FaceEmbeddingModel
from femb.backbones import build_backbone
from femb.headers import build_header


def make_model(args) -> FaceEmbeddingModel:
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, embed_dim=args.embed_dim)
    header = build_header(args.head, args.embed_dim, args.classes)
    return FaceEmbeddingModel(backbone, header, torch.nn.CrossEntropyLoss())


def make_optimizer(model: FaceEmbeddingModel) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.params, lr=0.01, momentum=0.9, weight_decay=5e-4)


def bare_loop(args, data: TensorDataset) -> float:
    model = make_model(args)
    optimizer = make_optimizer(model)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model.train()
    step, start = 0, time.perf_counter()
    while step < args.steps:
        for images, labels in loader:
            embeddings = model.backbone(images)
            loss = torch.nn.functional.cross_entropy(model.header(embeddings, labels), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # the bare loop reads its loss too, as any loop that logs does
            step += 1
            if step == args.steps:
                break
    return args.steps / (time.perf_counter() - start)


def femb_fit(args, data: TensorDataset) -> float:
    model = make_model(args)
    start = time.perf_counter()
    model.fit(
        data,
        batch_size=args.batch_size,
        device="cpu",
        optimizer=make_optimizer(model),
        max_training_steps=args.steps,
        seed=None,
    )
    return args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="mobilefacenet_small")
    parser.add_argument("--head", default="arcface")
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    count = args.batch_size * 8
    data = TensorDataset(
        torch.randn(count, 3, 112, 112, generator=generator),
        torch.randint(0, args.classes, (count,), generator=generator),
    )
    bare, fit = [], []
    femb_fit(args, data)  # warm-up: allocator, thread pools
    for _ in range(args.rounds):
        bare.append(bare_loop(args, data))
        fit.append(femb_fit(args, data))
    bare_rate, fit_rate = statistics.median(bare), statistics.median(fit)
    print(
        f"{args.backbone} + {args.head}, batch {args.batch_size}, {args.steps} steps × {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"bare PyTorch loop : {bare_rate:.3f} steps/s  (runs: {', '.join(f'{r:.3f}' for r in bare)})")
    print(f"femb fit          : {fit_rate:.3f} steps/s  (runs: {', '.join(f'{r:.3f}' for r in fit)})")
    print(f"ratio fit / bare  : {fit_rate / bare_rate:.3f}")


if __name__ == "__main__":
    main()
