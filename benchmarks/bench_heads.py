"""Time one training step (forward, backward, SGD step) of each head next to plain linear + CE.

    python benchmarks/bench_heads.py --classes 100000 --dim 512 --batch 128 --repeats 10

Variants run round-robin (one step of each per round) so that load from other processes on the
machine spreads evenly over them; the table gives median wall-clock and process CPU milliseconds
and their ratios to ``linear+CE`` (CPU time is less sensitive to other processes taking the
cores, wall time is what training feels). ``arcface (autograd-normalised W)`` is ArcFace with
``F.normalize(weight)`` through autograd every step, the alternative to the in-place
renormalisation that the heads use. On a machine shared with other jobs, ``--threads 1`` avoids
the OpenMP stalls that make every small parallel op wait for a descheduled thread.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from femb.headers import build_header


def make_step(module: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One SGD step of ``module`` fed with a fresh leaf copy of ``embeddings`` (as a backbone's output)."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    extra_loss = getattr(module, "extra_loss", lambda _: None)

    def step() -> None:
        x = embeddings.detach().requires_grad_()
        logits = module(x, labels) if not isinstance(module, nn.Linear) else module(x)
        loss = F.cross_entropy(logits, labels)
        extra = extra_loss(x)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    embeddings = torch.randn(args.batch, args.dim)
    embeddings = 50.0 * embeddings / embeddings.norm(dim=1, keepdim=True)  # inside MagFace's [10, 110]
    labels = torch.randint(0, args.classes, (args.batch,))

    variants: dict[str, nn.Module] = {"linear+CE (nn.Linear)": nn.Linear(args.dim, args.classes, bias=False)}
    for name in ("linear", "cosface", "arcface", "sphereface", "magface", "combined"):
        variants[name] = build_header(name, args.dim, args.classes)
    variants["arcface (autograd-normalised W)"] = build_header(
        "arcface", args.dim, args.classes, normalize_weight_in_place=False
    )
    steps = {name: make_step(module.train(), embeddings, labels) for name, module in variants.items()}

    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(args.warmup + args.repeats):
        for name, step in steps.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step()
            if round_index >= args.warmup:
                wall[name].append(time.perf_counter() - start_wall)
                cpu[name].append(time.process_time() - start_cpu)

    print(
        f"C={args.classes} D={args.dim} B={args.batch}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} (after {args.warmup} warm-up)"
    )
    base_wall = statistics.median(wall["linear+CE (nn.Linear)"])
    base_cpu = statistics.median(cpu["linear+CE (nn.Linear)"])
    print(f"{'variant':<34}{'wall ms':>10}{'× linear+CE':>13}{'CPU ms':>10}{'× linear+CE':>13}")
    for name in steps:
        wall_ms, cpu_ms = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"{name:<34}{wall_ms * 1e3:>10.1f}{wall_ms / base_wall:>13.2f}"
            f"{cpu_ms * 1e3:>10.1f}{cpu_ms / base_cpu:>13.2f}"
        )


if __name__ == "__main__":
    main()
