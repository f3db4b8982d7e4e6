"""Step time and memory of the margin head against the number of classes: the full head on one
process, the class-sharded head on two (gloo) and Partial FC at r = 0.1 on two.

    python benchmarks/bench_scaled_heads.py --classes 10000 100000 1000000 --dim 512 --batch 128

A step is the head's forward, backward and optimizer step (SGD, momentum 0.9, weight decay 5e-4)
for a global batch of ``--batch`` embeddings (split evenly over the ranks), as the head sees them
from a backbone; no backbone runs. Each configuration runs in fresh processes, and all use the
same number of CPU threads in total (``--threads`` for the one process, half each for two), so
the ratios compare the head's algorithms, not the core count.

* step ms: median wall-clock time of ``--steps`` steps after ``--warmup`` (the two-process
  timings are rank 0's, between barriers, so they include waiting for the slower rank).
* logits MB: the float32 logits one step holds, computed (global batch × the classes whose
  logits are computed), summed over the ranks. The full head's ``cross_entropy`` keeps a second
  N×C buffer (its log-softmax) and a third for the gradient; the sharded loss reuses one.
* step peak MB: measured — the growth of the resident set during one step (peak RSS ``VmHWM``,
  reset through ``/proc/self/clear_refs``, minus the RSS before the step), summed over the
  ranks. The workers run with ``MALLOC_MMAP_THRESHOLD_`` at 128 KiB so that freed buffers go
  back to the system and every step's allocations show. It counts everything a step allocates
  (logits, their gradient, the centres' gradient, Partial FC's sampled copies), not the
  centres and optimizer state that persist between steps (reported as ``state MB``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from femb.headers import build_header
from femb.training.sharded_head import ShardedMarginLoss, shard_range

MODES = {"full head": (1, None), "sharded": (2, 1.0), "partial FC": (2, 0.1)}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _worker(rank: int, world_size: int, rate: float | None, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(max(1, args.threads // world_size))
    if world_size > 1:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{out}.store",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=600),
        )
    classes = args.classes
    start, stop = shard_range(classes, rank, world_size)
    torch.manual_seed(rank)
    header = build_header(args.head, args.dim, stop - start)
    loss_module = None if rate is None else ShardedMarginLoss(header, classes, sample_rate=rate)
    optimizer = torch.optim.SGD(header.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    local = args.batch // world_size
    rows = slice(rank * local, (rank + 1) * local)

    def step(seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        embeddings = torch.randn(args.batch, args.dim, generator=generator)[rows].requires_grad_()
        labels = torch.randint(0, classes, (args.batch,), generator=generator)[rows]
        if loss_module is None:
            loss = F.cross_entropy(header(embeddings, labels), labels)
        else:
            loss = loss_module(embeddings, labels)
        loss.backward()
        if loss_module is None:
            optimizer.step()
        else:
            with loss_module.sampled_step(optimizer):
                optimizer.step()

    def barrier() -> None:
        if world_size > 1:
            dist.barrier()

    for seed in range(args.warmup):
        optimizer.zero_grad(set_to_none=True)
        step(seed)
    times, peaks = [], []
    for seed in range(args.warmup, args.warmup + args.steps):
        # The last step's gradients go before the baseline: the peak is this step's allocations.
        optimizer.zero_grad(set_to_none=True)
        barrier()
        resettable = _reset_peak_rss()
        before = _status_kib("VmRSS")
        started = time.perf_counter()
        step(seed)
        barrier()
        times.append(time.perf_counter() - started)
        if resettable:
            peaks.append(_status_kib("VmHWM") - before)
    computed = stop - start if loss_module is None else loss_module.num_sampled
    state_bytes = sum(p.numel() * p.element_size() for p in header.parameters())
    for entry in optimizer.state.values():
        state_bytes += sum(v.numel() * v.element_size() for v in entry.values() if torch.is_tensor(v))
    if loss_module is not None:
        for entry in loss_module.row_state.values():
            state_bytes += sum(v.numel() * v.element_size() for v in entry.values() if torch.is_tensor(v))
    result = {
        "step_s": statistics.median(times),
        "logits_bytes": args.batch * computed * 4,
        "peak_bytes": max(peaks) * 1024 if peaks else None,
        "state_bytes": state_bytes,
    }
    Path(f"{out}.rank{rank}.json").write_text(json.dumps(result))
    if world_size > 1:
        dist.destroy_process_group()


def run(mode: str, args: argparse.Namespace, folder: Path) -> dict:
    world_size, rate = MODES[mode]
    out = str(folder / f"{mode.replace(' ', '_')}_{args.classes}")
    context = mp.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(rank, world_size, rate, args, out))
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if any(process.exitcode for process in processes):
        raise RuntimeError(f"{mode} at {args.classes} classes failed: {[p.exitcode for p in processes]}")
    ranks = [json.loads(Path(f"{out}.rank{rank}.json").read_text()) for rank in range(world_size)]
    peaks = [r["peak_bytes"] for r in ranks]
    return {
        "step_s": ranks[0]["step_s"],
        "logits_bytes": sum(r["logits_bytes"] for r in ranks),
        "peak_bytes": None if None in peaks else sum(peaks),
        "state_bytes": sum(r["state_bytes"] for r in ranks),
    }


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f}"


def _ratio(value: float | None, reference: float | None) -> str:
    return "n/a" if value is None or not reference else f"{value / reference:.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--head", default="arcface")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in total per configuration")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    # Freed buffers go back to the system, so that each step's allocations show in the RSS peak.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))

    print(
        f"head {args.head}, D={args.dim}, global batch {args.batch}, SGD(momentum 0.9, wd 5e-4), "
        f"{args.threads} CPU threads per configuration, torch {torch.__version__}\n"
    )
    print(
        "| classes | head | processes | step ms | vs full | logits MB | vs full | step peak MB | vs full "
        "| state MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for classes in args.classes:
            args.classes = classes
            reference = None
            for mode in args.modes:
                result = run(mode, args, Path(folder))
                if mode == "full head":
                    reference = result
                ref = reference or {}
                print(
                    f"| {classes:,} | {mode} | {MODES[mode][0]} | {result['step_s'] * 1e3:,.1f} "
                    f"| {_ratio(result['step_s'], ref.get('step_s'))} | {_mb(result['logits_bytes'])} "
                    f"| {_ratio(result['logits_bytes'], ref.get('logits_bytes'))} "
                    f"| {_mb(result['peak_bytes'])} | {_ratio(result['peak_bytes'], ref.get('peak_bytes'))} "
                    f"| {_mb(result['state_bytes'])} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
