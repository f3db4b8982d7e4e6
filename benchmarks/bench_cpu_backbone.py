"""The CPU default backbone: step time against ``mobilefacenet_small`` and held-out accuracy.

    python benchmarks/bench_cpu_backbone.py                      # step time, 1 and 2 threads
    python benchmarks/bench_cpu_backbone.py --levers             # + what each change buys
    python benchmarks/bench_cpu_backbone.py --no-timing --accuracy --seeds 0 1 2 --jobs 2
    python benchmarks/bench_cpu_backbone.py --no-timing --orl --seeds 0 1 2 3

Step time: one training step is forward, backward and an SGD step of backbone + ArcFace head on
one in-memory batch (default 32 × 3×112×112), the loss read back. Every candidate runs
``--steps`` steps after one warm-up step, in one process; each of ``--rounds`` rounds runs every
backbone at every thread setting, in alternating order (A B …, then … B A); "speedup" is the
median over rounds of (baseline s/step ÷ candidate s/step) within the same round, so machine
noise that hits a whole round cancels. Timings are wall-clock (``time.perf_counter``).

``--accuracy``: each backbone is trained by the library's own recipe (``femb.training.recipe.train``
with the ``TrainConfig`` defaults: ArcFace, SGD, cosine schedule) on ``synthetic:N`` and scored
on the held-out synthetic identities of that seed (same pairs for every backbone). ``--orl``:
the recipe of ``benchmarks/bench_orl.py`` (30 ORL people, 800 pairs of the other 10).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from femb.backbones import build_backbone
from femb.headers import build_header

BASELINE = "mobilefacenet_small"
CANDIDATE = "mobilefacenet_fast"


def _depthwise_stem(model: nn.Module) -> nn.Module:
    """mobilefacenet_small with its 56×56 grouped conv (2 channels per group) made depthwise."""
    conv = model.body[1][0]
    model.body[1][0] = nn.Conv2d(
        conv.in_channels, conv.out_channels, 3, 1, 1, groups=conv.in_channels, bias=False
    )
    return model


def _relu(model: nn.Module) -> nn.Module:
    """Every PReLU replaced by an in-place ReLU (faster, but it scored lower on held-out pairs)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.PReLU):
                setattr(module, name, nn.ReLU(inplace=True))
    return model


def _nchw(model: nn.Module) -> nn.Module:
    """mobilefacenet_fast without its channels_last input: the plain NCHW layout."""
    model.forward = types.MethodType(lambda self, x: self.features(self.body(x)), model)
    return model


# label -> (backbone name, build kwargs, post-build change, input made channels_last here)
Variant = tuple[str, dict, Callable[[nn.Module], nn.Module] | None, bool]
MAIN: dict[str, Variant] = {
    BASELINE: (BASELINE, {}, None, False),
    CANDIDATE: (CANDIDATE, {}, None, False),
}
# One change at a time, from either end.
LEVERS: dict[str, Variant] = {
    "small, 56×56 grouped conv → depthwise": (BASELINE, {}, _depthwise_stem, False),
    "small, channels_last input": (BASELINE, {}, None, True),
    "fast, NCHW input (no channels_last)": (CANDIDATE, {}, _nchw, False),
    "fast, stem 64 channels": (CANDIDATE, {"stem_channels": 64}, None, False),
    "fast, blocks (2, 3, 2)": (CANDIDATE, {"blocks": (2, 3, 2)}, None, False),
    "fast, ReLU for PReLU": (CANDIDATE, {}, _relu, False),
}


def build_variant(variant: Variant, embed_dim: int) -> nn.Module:
    name, kwargs, change, _ = variant
    model = build_backbone(name, embed_dim=embed_dim, **kwargs)
    return change(model) if change else model


def seconds_per_step(variant: Variant, args, images: torch.Tensor, labels: torch.Tensor) -> float:
    torch.manual_seed(0)
    backbone = build_variant(variant, args.embed_dim)
    head = build_header("arcface", args.embed_dim, args.classes)
    if variant[3]:
        images = images.contiguous(memory_format=torch.channels_last)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    backbone.train()

    def step() -> None:
        loss = nn.functional.cross_entropy(head(backbone(images), labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    step()  # warm-up: allocator, oneDNN primitives
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return (time.perf_counter() - start) / args.steps


def timing(args) -> None:
    variants = dict(MAIN)
    if args.levers:
        variants.update(LEVERS)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, 112, 112, generator=generator)
    labels = torch.randint(0, args.classes, (args.batch,), generator=generator)
    print(
        f"Step time: batch {args.batch}, 112×112, {args.embed_dim}-d + ArcFace ({args.classes} classes), "
        f"SGD; {args.steps} steps per run, {args.rounds} rounds, each running every backbone at every "
        f"thread setting in alternating order (torch's default here: {torch.get_num_threads()} threads)\n",
        flush=True,
    )
    runs = [(threads, label) for threads in args.threads for label in variants]
    times: dict[tuple[int, str], list[float]] = {run: [] for run in runs}
    for round_ in range(args.rounds):
        for threads, label in runs if round_ % 2 == 0 else runs[::-1]:
            torch.set_num_threads(threads)
            times[threads, label].append(seconds_per_step(variants[label], args, images, labels))
        print(
            f"  round {round_ + 1}: "
            + ", ".join(f"{t}t {label} {times[t, label][-1]:.3f}" for t, label in runs),
            file=sys.stderr,
            flush=True,
        )
    print("| threads | backbone | parameters | s/step (median) | speedup vs small | per-round speedups |")
    print("|---:|---|---:|---:|---:|---|")
    for threads, label in runs:
        ratios = [
            base / mine for base, mine in zip(times[threads, BASELINE], times[threads, label], strict=True)
        ]
        params = sum(p.numel() for p in build_variant(variants[label], args.embed_dim).parameters())
        print(
            f"| {threads} | {label} | {params / 1e6:.3f}M | {statistics.median(times[threads, label]):.3f} | "
            f"{statistics.median(ratios):.2f}× | {' / '.join(f'{r:.2f}' for r in ratios)} |"
        )
    if {1, 2} <= set(args.threads):
        print("\n| backbone | speedup of 2 threads over 1 (median of per-round ratios) |")
        print("|---|---:|")
        for label in variants:
            ratios = [one / two for one, two in zip(times[1, label], times[2, label], strict=True)]
            print(f"| {label} | {statistics.median(ratios):.2f}× |")
    print(flush=True)


def synthetic_run(backbone: str, seed: int, args_dict: dict) -> tuple[str, int, float, float]:
    """One training run by the library's recipe; (backbone, seed, held-out accuracy, seconds)."""
    torch.set_num_threads(args_dict["threads_per_job"])
    from femb.training.config import TrainConfig
    from femb.training.recipe import train
    from femb.training.run_dir import RunDir

    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        config = TrainConfig(
            data=f"synthetic:{args_dict['identities']}",
            backbone=backbone,
            seed=seed,
            steps=args_dict["train_steps"],
            batch_size=args_dict["train_batch"],
            eval_every=args_dict["train_steps"],
            checkpoint_every=10**9,
            run_dir=str(run_dir),
        )
        start = time.perf_counter()
        result = train(config, run_dir=RunDir(run_dir), tensorboard=False)
        return backbone, seed, float(result.last_eval["accuracy"]), time.perf_counter() - start


def orl_run(backbone: str, seed: int, args_dict: dict) -> tuple[str, int, float, float]:
    """One run of bench_orl.py's recipe with this backbone; (backbone, seed, accuracy, seconds in fit)."""
    torch.set_num_threads(args_dict["threads_per_job"])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_orl

    from femb.data import ImageFolderDataset, split_by_identity
    from femb.evaluation import VerificationEvaluator

    recipe = argparse.Namespace(
        backbone=backbone,
        embed_dim=64,
        head="cosface",
        s=30.0,
        m=0.2,
        steps=args_dict["orl_steps"],
        batch=32,
        lr=0.05,
        warmup=0.15,
        weight_decay=5e-4,
        label_smoothing=0.0,
    )
    train_set, test_set = split_by_identity(
        ImageFolderDataset(bench_orl.ORL, cache=True), bench_orl.TRAIN_PEOPLE
    )
    model, seconds = bench_orl.train_one(recipe, train_set, seed)
    model.backbone.eval()
    evaluator = VerificationEvaluator(similarity="cos", num_pairs=800, seed=0)
    return backbone, seed, float(evaluator.evaluate(model.backbone, test_set).accuracy), seconds


def accuracy_table(title: str, run: Callable, args) -> None:
    backbones = [BASELINE, CANDIDATE]
    jobs = [(backbone, seed) for seed in args.seeds for backbone in backbones]
    settings = vars(args).copy()
    results: dict[tuple[str, int], tuple[float, float]] = {}
    context = multiprocessing.get_context("spawn")  # no fork of an initialised OpenMP pool
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [pool.submit(run, backbone, seed, settings) for backbone, seed in jobs]
        for future in concurrent.futures.as_completed(futures):
            backbone, seed, accuracy, seconds = future.result()
            results[backbone, seed] = accuracy, seconds
            print(
                f"  {title}: {backbone} seed {seed}: {accuracy:.4f} in {seconds:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    print(f"{title}\n")
    print(f"| seed | {BASELINE} | {CANDIDATE} | difference |")
    print("|---:|---:|---:|---:|")
    for seed in args.seeds:
        base, mine = results[BASELINE, seed][0], results[CANDIDATE, seed][0]
        print(f"| {seed} | {base:.4f} | {mine:.4f} | {mine - base:+.4f} |")
    base = statistics.mean(results[BASELINE, s][0] for s in args.seeds)
    mine = statistics.mean(results[CANDIDATE, s][0] for s in args.seeds)
    print(f"| mean | {base:.4f} | {mine:.4f} | {mine - base:+.4f} |")
    seconds = {b: statistics.mean(results[b, s][1] for s in args.seeds) for b in backbones}
    print(
        f"\nmean s per run: {BASELINE} {seconds[BASELINE]:.0f}, {CANDIDATE} {seconds[CANDIDATE]:.0f} "
        f"({args.jobs} run(s) at a time, {args.threads_per_job} thread(s) each)\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="skip the step-time table")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads settings"
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per candidate per round")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--levers", action="store_true", help="also time the single changes (ablations)")
    parser.add_argument("--accuracy", action="store_true", help="train both by the recipe on synthetic faces")
    parser.add_argument("--orl", action="store_true", help="train both by bench_orl.py's recipe on ORL")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--identities", type=int, default=200, help="--accuracy: synthetic identities")
    parser.add_argument("--train-steps", type=int, default=120, help="--accuracy: training steps")
    parser.add_argument("--train-batch", type=int, default=64, help="--accuracy: batch size (the recipe's)")
    parser.add_argument("--orl-steps", type=int, default=150, help="--orl: training steps")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time (one process each)")
    parser.add_argument("--threads-per-job", type=int, default=1)
    args = parser.parse_args()

    if args.timing:
        timing(args)
    if args.accuracy:
        accuracy_table(
            f"Held-out accuracy: recipe defaults (ArcFace, SGD lr 0.1, cosine), synthetic:{args.identities}, "
            f"{args.train_steps} steps at batch {args.train_batch}",
            synthetic_run,
            args,
        )
    if args.orl:
        accuracy_table(
            f"ORL: bench_orl.py's recipe (64-d, CosFace s=30 m=0.2, {args.orl_steps} steps at batch 32), "
            "800 pairs of 10 unseen people",
            orl_run,
            args,
        )


if __name__ == "__main__":
    main()
