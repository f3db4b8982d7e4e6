"""Run this first on a machine with a GPU: femb's CUDA paths, checked in under five minutes.

Prints one table and exits non-zero when any check fails:

1. every head trains a few steps under AMP fp16 and bf16 (the margin maths stays fp32): the losses
   are finite, and the first one is within tolerance of an fp32 step from the same weights;
2. iresnet50 training throughput (images/s at batch 128, AMP) through femb's loop beside a bare
   PyTorch loop of the same model and head, both layouts measured (NCHW and channels-last; femb
   uses the layout ``femb.backbones.registry.CHANNELS_LAST`` lists for the device);
3. ``femb train`` → ``femb export onnx`` → ``femb verify pairs --provider cuda``: the CUDA provider
   really used, and its accuracy equal to the CPU provider's to 1e-3;
4. with two or more GPUs, a 2-process NCCL run (sharded head) stopped, then resumed in one process.

Without CUDA it says so in one line and exits 0. ``--device cpu --quick`` runs what a CPU can of
it, small, to check this script itself.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from femb.backbones import build_backbone
from femb.backbones.registry import prefers_channels_last
from femb.headers import build_header, list_headers
from femb.model import FaceEmbeddingModel
from femb.training.config import TrainConfig
from femb.training.loop import fit
from femb.training.options import FitOptions

TOLERANCE = {"fp16": 0.02, "bf16": 0.05}  # relative, on the first loss: same weights, same batch
MIN_FEMB_SHARE = 0.85  # femb's loop below this share of the bare loop's images/s is a failure
MIN_STEPS_FOR_SPEED = 20


class Row:
    def __init__(self, check: str, detail: str, ok: bool | None):
        self.check, self.detail, self.ok = check, detail, ok

    @property
    def result(self) -> str:
        return {True: "ok", False: "FAIL", None: "skipped"}[self.ok]


class TensorFaces(Dataset):
    """Fixed random faces and labels: the loop's cost without the input pipeline's."""

    def __init__(self, count: int, classes: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(count, 3, 112, 112, generator=generator)
        self.labels = torch.randint(0, classes, (count,), generator=generator)
        self.num_classes = classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


def femb_steps(model, data, device, amp, steps: int, batch: int) -> tuple[list[float], list[float]]:
    """(losses, times) of ``steps`` steps of femb's own loop (one step event per step)."""
    losses, times = [], []

    def record(event):
        if event["event"] == "step":
            losses.append(event["loss"])
            times.append(time.perf_counter())

    config = TrainConfig(
        batch_size=batch, device=str(device), amp=amp, steps=steps, seed=0, log_every=1,
        checkpoint_every=0, eval_every=0,
    )  # fmt: skip
    fit(model, data, config, FitOptions(callbacks=[record], tensorboard=False))
    return losses, times


def check_amp(device: torch.device, heads: list[str], quick: bool) -> list[Row]:
    backbone_name, batch, steps = ("mobilefacenet_small", 8, 2) if quick else ("iresnet18", 64, 5)
    data = TensorFaces(batch * steps, classes=200)
    precisions = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    rows = []
    for head in heads:
        torch.manual_seed(0)
        model = FaceEmbeddingModel(
            build_backbone(backbone_name, embed_dim=128),
            build_header(head, 128, 200),
            torch.nn.CrossEntropyLoss(),
        )
        reference, _ = femb_steps(copy.deepcopy(model), data, device, "none", steps, batch)
        for amp in precisions:
            losses, _ = femb_steps(copy.deepcopy(model), data, device, amp, steps, batch)
            finite = len(losses) == steps and all(v is not None and math.isfinite(v) for v in losses)
            gap = abs(losses[0] - reference[0]) / max(1.0, abs(reference[0])) if finite else math.inf
            first = f"{losses[0]:.4f}" if finite else str(losses[:1])
            detail = f"first loss {first} vs fp32 {reference[0]:.4f} (gap {gap:.4f}), finite: {finite}"
            rows.append(Row(f"{head} AMP {amp}", detail, finite and gap <= TOLERANCE[amp]))
    if device.type != "cuda":
        rows.append(Row("AMP fp16", "needs CUDA", None))
    return rows


def bare_images_per_s(backbone, head, images, labels, dtype, steps: int) -> float:
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast(images.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            embeddings = backbone(images)
        loss = torch.nn.functional.cross_entropy(head(embeddings.float(), labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return len(labels) * steps / (time.perf_counter() - start)


def check_throughput(device: torch.device, quick: bool) -> list[Row]:
    # quick: not iresnet_tiny, whose channels-last backward crashes PyTorch's CPU kernels
    name, batch, steps = ("mobilefacenet_small", 8, 4) if quick else ("iresnet50", 128, MIN_STEPS_FOR_SPEED)
    amp, dtype = ("bf16", torch.bfloat16) if device.type == "cuda" else ("none", None)
    classes = 1000
    images = torch.randn(batch, 3, 112, 112, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    bare = {}
    for layout in (False, True):
        torch.manual_seed(0)
        backbone = build_backbone(name, embed_dim=512).to(device)
        head = build_header("arcface", 512, classes).to(device)
        if layout:
            backbone = backbone.to(memory_format=torch.channels_last)
        inputs = images.contiguous(memory_format=torch.channels_last) if layout else images
        bare[layout] = bare_images_per_s(backbone, head, inputs, labels, dtype, steps)
    torch.manual_seed(0)
    model = FaceEmbeddingModel(
        build_backbone(name, embed_dim=512),
        build_header("arcface", 512, classes),
        torch.nn.CrossEntropyLoss(),
    )
    warm = 3
    _, times = femb_steps(
        model, TensorFaces(batch * (steps + warm), classes), device, amp, steps + warm, batch
    )
    femb = batch * (len(times) - warm - 1) / (times[-1] - times[warm])
    used = prefers_channels_last(name, device.type)
    share = femb / bare[used]
    layouts = f"bare NCHW {bare[False]:.4g}, channels-last {bare[True]:.4g} img/s"
    return [
        Row(f"{name} layouts", f"{layouts} ({bare[True] / bare[False]:.2f}×)", True),
        Row(
            f"{name} femb vs bare",
            f"femb {femb:.4g} img/s = {share:.2f}× bare ({'channels-last' if used else 'NCHW'}, amp {amp})"
            + (" (quick: sizes too small to judge)" if quick else ""),
            share >= MIN_FEMB_SHARE or quick,
        ),
    ]


def femb_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "femb_cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def check_export_verify(device: torch.device, folder: Path, quick: bool) -> list[Row]:
    from femb.data import SyntheticFaces, pairs_from_labelled, write_pairs_dataset_bin

    run, onnx, pairs = folder / "run", folder / "model.onnx", folder / "pairs.bin"
    size = ["--steps", "3", "--batch-size", "16"] if quick else ["--steps", "60"]
    trained = femb_cli(
        "train", "--data", "synthetic:50", *size, "--eval-every", "0", "--device", device.type,
        "--run-dir", str(run), "--no-dashboard",
    )  # fmt: skip
    if trained.returncode != 0:
        return [Row("femb train", trained.stderr.strip()[-200:], False)]
    exported = femb_cli("export", "onnx", str(run), "-o", str(onnx))
    if exported.returncode != 0:
        return [Row("femb export onnx", exported.stderr.strip()[-200:], False)]
    faces = SyntheticFaces(num_identities=20, images_per_identity=6, seed=1, identity_offset=50)
    write_pairs_dataset_bin(pairs, pairs_from_labelled(faces, num_pairs=200, seed=0))
    results = {}
    for provider in ("cpu", "cuda") if device.type == "cuda" else ("cpu",):
        report = folder / f"verify-{provider}.json"
        done = femb_cli(
            "verify", "pairs", str(onnx), "--bin", str(pairs), "--provider", provider, "--json", str(report)
        )
        if done.returncode != 0:
            return [Row(f"femb verify --provider {provider}", done.stderr.strip()[-200:], False)]
        results[provider] = json.loads(report.read_text())
    rows = [Row("train → export → verify (cpu)", f"accuracy {results['cpu']['accuracy']:.4f}", True)]
    if "cuda" not in results:
        return rows + [Row("verify --provider cuda", "needs CUDA", None)]
    cuda, cpu = results["cuda"], results["cpu"]
    same = abs(cuda["accuracy"] - cpu["accuracy"]) <= 1e-3
    detail = (
        f"provider used: {cuda['provider']}; accuracy {cuda['accuracy']:.4f} vs cpu {cpu['accuracy']:.4f}"
    )
    return rows + [Row("verify --provider cuda", detail, cuda["provider"] == "cuda" and same)]


def check_two_gpus(folder: Path) -> list[Row]:
    if torch.cuda.device_count() < 2:
        return [Row("2-process NCCL, stop, resume", f"{torch.cuda.device_count()} GPU(s)", None)]
    from femb.training.events import read_events

    run = folder / "nccl"
    started = femb_cli(
        "train", "--nproc-per-node", "2", "--device", "cuda", "--data", "synthetic:400", "--steps", "60",
        "--checkpoint-every", "5", "--eval-every", "0", "--run-dir", str(run), "--detach",
    )  # fmt: skip
    if started.returncode != 0:
        return [Row("2-process NCCL run", started.stderr.strip()[-200:], False)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(
        e["event"] == "step" and e["step"] >= 10 for e in read_events(run / "metrics.jsonl")
    ):
        time.sleep(1)
    stopped = femb_cli("stop", str(run), "--wait")
    resumed = femb_cli("train", "--resume", str(run), "--device", "cuda", "--no-dashboard")
    events = read_events(run / "metrics.jsonl")
    worlds = [e.get("world_size") for e in events if e["event"] == "start"]
    ends = [e.get("reason") for e in events if e["event"] == "end"]
    ok = (
        stopped.returncode == 0
        and resumed.returncode == 0
        and worlds[:1] == [2]
        and ends[-2:] == ["stopped", "completed"]
    )
    return [Row("2-process NCCL, stop, resume", f"world sizes {worlds}, ends {ends}", ok)]


def print_table(rows: list[Row]) -> None:
    width = max(len(row.check) for row in rows)
    print(f"{'check':<{width}}  result   detail")
    for row in rows:
        print(f"{row.check:<{width}}  {row.result:<7}  {row.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="femb's GPU check (see the module's docstring)")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to check this script")
    parser.add_argument("--quick", action="store_true", help="small sizes (a check of the script)")
    parser.add_argument("--heads", nargs="+", default=None, help="default: every registered head")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
        return 0
    started = time.perf_counter()
    rows = check_amp(device, args.heads or list_headers(), args.quick)
    rows += check_throughput(device, args.quick)
    with tempfile.TemporaryDirectory(prefix="femb-gpu-check-") as folder:
        rows += check_export_verify(device, Path(folder), args.quick)
        rows += check_two_gpus(Path(folder)) if device.type == "cuda" else []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"femb GPU check on {name} (torch {torch.__version__}), {time.perf_counter() - started:.0f} s\n")
    print_table(rows)
    failed = [row.check for row in rows if row.ok is False]
    print(f"\n{len(failed)} failed: {', '.join(failed)}" if failed else "\nall checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
