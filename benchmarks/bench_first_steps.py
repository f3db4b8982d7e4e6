"""The loss over the first steps of every registered head at its defaults: does it fall from the start?

    python benchmarks/bench_first_steps.py                       # batch 16 and 64, 50 … 100k classes
    python benchmarks/bench_first_steps.py --heads arcface --classes 200 --scale 64   # the papers' s

A trainable stand-in for a face backbone on stand-in data, cheap enough for 100k classes on a
CPU: each class is a fixed random 256-d prototype, a sample is its prototype plus Gaussian noise
(3× the prototype's scale, so classes overlap), and the "backbone" is Linear-BN-ReLU-Linear-BN
to 128-d (a face net ends with BN as well). The optimiser is ``femb train``'s default: SGD, lr
0.1 with a linear warm-up over 50 steps, momentum 0.9, weight decay 5e-4.

Each cell is the mean over ``--seeds`` runs (one run's batches are noisy). The loss columns are
the means over steps 1–10, 11–40 and 41–100. "Falls": each of those windows is lower than the
one before. "Climb": how far the 5-step running mean ever rises above the steps-1–5 mean, in per
cent of it (0: it never does) — the failure this benchmark was written for is ArcFace at the
papers' s = 64 climbing for ~50 steps. With 100k classes a batch of 64 sees each class about
0.06 times in 100 steps, so little more than the start can be learnt there: the question for
those rows is whether the loss climbs. ``--scale`` overrides every head's ``s`` (e.g. 64, to
see the climb the default scale avoids).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from femb.headers import MarginHeader, build_header, header_class, list_headers

INPUT_DIM, EMBED_DIM, WARMUP, LR = 256, 128, 50, 0.1
NOISE = 3.0  # overlapping classes: the backbone has to learn, as on faces
WINDOWS = ((0, 10), (10, 40), (40, 100))


def backbone(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(INPUT_DIM, 256, bias=False),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, EMBED_DIM, bias=False),
        nn.BatchNorm1d(EMBED_DIM),
    )


def first_losses(head: str, classes: int, batch: int, steps: int, seed: int = 0, **options) -> list[float]:
    """The training loss at each of the first ``steps`` steps (head at its defaults plus ``options``)."""
    net = backbone(seed)
    header = build_header(head, EMBED_DIM, classes, **options)
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, INPUT_DIM, generator=generator)
    optimizer = torch.optim.SGD(
        [*net.parameters(), *header.parameters()], lr=LR, momentum=0.9, weight_decay=5e-4
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (WARMUP + 1)))
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        labels = torch.randint(classes, (batch,), generator=generator)
        inputs = prototypes[labels] + NOISE * torch.randn(batch, INPUT_DIM, generator=generator)
        embeddings = net(inputs)
        loss = loss_fn(header(embeddings, labels), labels)
        extra = header.extra_loss(embeddings)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def window_means(losses: list[float]) -> list[float]:
    return [sum(losses[a:b]) / len(losses[a:b]) for a, b in WINDOWS if b <= len(losses)]


def falls(means: list[float]) -> bool:
    return len(means) > 1 and all(later < earlier for earlier, later in zip(means, means[1:], strict=False))


def climb_percent(losses: list[float]) -> float:
    """How far the 5-step running mean ever rises above the first five steps' mean, in %."""
    running = [sum(losses[i - 5 : i]) / 5 for i in range(5, len(losses) + 1)]
    return max(0.0, 100.0 * (max(running) / running[0] - 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heads", nargs="*", default=list_headers())
    parser.add_argument("--batches", nargs="*", type=int, default=[16, 64])
    parser.add_argument("--classes", nargs="*", type=int, default=[50, 1000, 100_000])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3, help="runs averaged per cell")
    parser.add_argument("--scale", type=float, default=None, help="every head's s (default: the head's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    windows = [(a, b) for a, b in WINDOWS if b <= args.steps]

    print(
        "| head | s | batch | classes | "
        + " | ".join(f"loss {a + 1}–{b}" for a, b in windows)
        + " | falls | climb |"
    )
    print("|---|---|---|---|" + "---|" * len(windows) + "---|---|")
    started = time.perf_counter()
    for head in args.heads:
        has_scale = issubclass(header_class(head), MarginHeader) and any(
            option.name == "s" for option in header_class(head).options
        )
        options = {"s": args.scale} if args.scale is not None and has_scale else {}
        for batch in args.batches:
            for classes in args.classes:
                seeds = range(args.seeds)
                runs = [first_losses(head, classes, batch, args.steps, seed, **options) for seed in seeds]
                losses = [sum(step) / len(step) for step in zip(*runs, strict=True)]
                values = window_means(losses)
                scale = getattr(build_header(head, 2, classes, **options), "s", None) if has_scale else None
                shown = "‖x‖" if head == "sphereface" else ("—" if scale is None else f"{scale:.1f}")
                cells = " | ".join(f"{v:.2f}" for v in values)
                verdict = "yes" if falls(values) else "no"
                row = f"| {head} | {shown} | {batch} | {classes:,} | {cells} | {verdict}"
                print(f"{row} | {climb_percent(losses):.1f} % |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
