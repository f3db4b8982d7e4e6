"""Per backbone: does a training step go faster with channels-last input and weights on this device?

The measurement behind ``femb.backbones.registry.CHANNELS_LAST`` (the trainer converts the input
and the backbone for the pairs listed there). Each round times every backbone in both layouts,
alternating the order, so that machine noise hits both alike; prints the median seconds per step
of each layout, their ratio, and the verdict (channels-last listed when it is at least 5% faster
in the median and faster in most rounds).

    python benchmarks/bench_channels_last.py --device cpu --batch 32 --steps 3 --rounds 3
    python benchmarks/bench_channels_last.py --device cuda --batch 128 --amp bf16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from femb.backbones import build_backbone, list_backbones
from femb.headers import build_header

# Not iresnet_tiny: its channels-last backward crashes PyTorch's CPU kernels (a segmentation fault in
# layer1's 8-channel convolutions at 112×112, seen with torch 2.13), so it is never listed.
SMALL = ["iresnet18", "mobilefacenet_small", "mobilefacenet", "mobilefacenet_fast"]


def seconds_per_step(name: str, channels_last: bool, args, images, labels) -> float:
    torch.manual_seed(0)
    backbone = build_backbone(name, embed_dim=args.embed_dim).to(args.device)
    head = build_header("arcface", args.embed_dim, args.classes).to(args.device)
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.01, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def step() -> None:
        with torch.autocast(args.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            embeddings = backbone(images)
        loss = nn.functional.cross_entropy(head(embeddings.float(), labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the device

    step()  # warm-up: allocator, kernel choice
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return (time.perf_counter() - start) / args.steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbones", nargs="+", help="default: the small ones on CPU, all on a GPU")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    names = args.backbones or (SMALL if args.device.type == "cpu" else list_backbones())
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, 112, 112, generator=generator).to(args.device)
    labels = torch.randint(0, args.classes, (args.batch,), generator=generator).to(args.device)
    print(
        f"channels-last vs NCHW training step on {args.device} ({torch.get_num_threads()} threads), batch "
        f"{args.batch}, {args.embed_dim}-d + ArcFace ({args.classes} classes), amp {args.amp}; "
        f"{args.steps} steps per run, {args.rounds} rounds in alternating order\n",
        flush=True,
    )
    runs = [(name, layout) for name in names for layout in (False, True)]
    times: dict[tuple[str, bool], list[float]] = {run: [] for run in runs}
    for round_ in range(args.rounds):
        for name, layout in runs if round_ % 2 == 0 else runs[::-1]:
            times[name, layout].append(seconds_per_step(name, layout, args, images, labels))
        print(f"  round {round_ + 1} done", file=sys.stderr, flush=True)
    print("| backbone | NCHW s/step | channels-last s/step | speedup | rounds faster | verdict |")
    print("|---|---|---|---|---|---|")
    for name in names:
        plain, last = times[name, False], times[name, True]
        speedup = statistics.median(plain) / statistics.median(last)
        wins = sum(p > c for p, c in zip(plain, last, strict=True))
        verdict = "channels-last" if speedup >= 1.05 and wins > len(plain) / 2 else "NCHW"
        print(
            f"| {name} | {statistics.median(plain):.3f} | {statistics.median(last):.3f} | "
            f"{speedup:.2f}× | {wins}/{len(plain)} | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
