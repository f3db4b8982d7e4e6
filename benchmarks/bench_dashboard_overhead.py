"""What the live dashboard costs a training loop: the same CPU-bound steps with a plain sink and
inside the (headless) dashboard app, which receives a step event after every step.

Both run the training in a worker thread (as the dashboard does), so the comparison is of the
dashboard alone. Rounds alternate (plain, dashboard, plain, …) in one process so machine noise
hits both alike; steps/s is timed inside the training function after --warmup-steps (the app's
start-up is not steady-state cost). Prints the median steps/s of each, the ratio dashboard /
plain (the claim: ≥ 0.95) and the CPU the other threads used (the UI, and torch's pool past --threads 1).

    python benchmarks/bench_dashboard_overhead.py --steps 30 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

import torch

from femb.backbones import build_backbone
from femb.headers import build_header
from femb.training.control import TrainingControl
from femb.training.events import EventSink, make_event


def make_training(args, timings: list[dict]):
    """A ``run_training(sink, control)`` doing real forward/backward steps on random data."""
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, embed_dim=args.embed_dim)
    header = build_header(args.head, args.embed_dim, args.classes)
    optimizer = torch.optim.SGD([*backbone.parameters(), *header.parameters()], lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, 112, 112, generator=generator)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator)

    def run_training(sink: EventSink, control: TrainingControl) -> None:
        if args.threads:
            torch.set_num_threads(args.threads)  # per thread in some builds: set it where the work runs
        sink(
            make_event(
                "start",
                run_name="bench",
                run_dir=None,
                config={"backbone": args.backbone, "head": args.head, "batch_size": args.batch_size},
                total_steps=args.warmup_steps + args.steps,
                steps_per_epoch=args.warmup_steps + args.steps,
                start_step=0,
                num_classes=args.classes,
                num_parameters=0,
                device="cpu",
                batch_size=args.batch_size,
            )
        )
        start = time.perf_counter()
        for step in range(1, args.warmup_steps + args.steps + 1):
            if step == args.warmup_steps + 1:
                # Timed from here: the app's start-up (first layout and paint) is not steady-state cost.
                timed_from, cpu_start, thread_start = (
                    time.perf_counter(),
                    time.process_time(),
                    time.thread_time(),
                )
            if control.poll().stop:
                break
            embeddings = backbone(images)
            loss = torch.nn.functional.cross_entropy(header(embeddings, labels), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - start
            sink(
                make_event(
                    "step",
                    step=step,
                    epoch=0,
                    loss=loss.item(),
                    lr=0.01,
                    images_per_s=step * args.batch_size / elapsed,
                    eta_s=(args.warmup_steps + args.steps - step) * elapsed / step,
                    emb_norm_mean=1.0,
                    emb_norm_std=0.0,
                )
            )
            if step % args.eval_every == 0:
                sink(
                    make_event(
                        "eval",
                        step=step,
                        epoch=0,
                        accuracy=0.5 + step / (4 * (args.steps + args.warmup_steps)),
                        accuracy_std=0.01,
                        eer=0.1,
                        auc=0.9,
                        best_accuracy=None,
                        is_best=True,
                    )
                )
        wall = time.perf_counter() - timed_from
        others = (time.process_time() - cpu_start) - (time.thread_time() - thread_start)
        timings.append({"steps_per_s": args.steps / wall, "others_share": others / wall})
        sink(make_event("end", step=step, reason="completed", message="benchmark", resume_command=None))

    return run_training


def plain(args) -> dict:
    timings: list[dict] = []
    events: list[dict] = []
    worker = threading.Thread(target=make_training(args, timings), args=(events.append, TrainingControl()))
    worker.start()
    worker.join()
    return timings[0]


def dashboard(args) -> dict:
    from femb_cli.dashboard import create_dashboard_app

    timings: list[dict] = []
    app = create_dashboard_app(run_training=make_training(args, timings), exit_on_end=True)

    # As `femb train` runs it, less the terminal: exit_on_end closes it when the run ends.
    asyncio.run(app.run_async(headless=True, size=(args.width, args.height)))
    return timings[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="mobilefacenet_small")
    parser.add_argument("--head", default="arcface")
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (both sides)")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=120)
    parser.add_argument("--height", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    plain(args)  # warm-up: allocator, thread pools
    runs: dict[str, list[dict]] = {"plain sink": [], "dashboard": []}
    for _ in range(args.rounds):
        runs["plain sink"].append(plain(args))
        runs["dashboard"].append(dashboard(args))
    print(
        f"{args.backbone} + {args.head}, batch {args.batch_size}, {args.steps} steps × {args.rounds} rounds; "
        f"torch threads {args.threads or torch.get_num_threads()}, dashboard {args.width}×{args.height}"
    )
    rates = {}
    for label, results in runs.items():
        rates[label] = statistics.median(r["steps_per_s"] for r in results)
        share = statistics.median(r["others_share"] for r in results)
        each = ", ".join(f"{r['steps_per_s']:.2f}" for r in results)
        print(f"{label:<11}: {rates[label]:7.2f} steps/s  (rounds: {each})  other threads: {share:.1%}")
    print(f"ratio dashboard / plain: {rates['dashboard'] / rates['plain sink']:.3f}  (claim ≥ 0.95)")


if __name__ == "__main__":
    main()
