"""The inference table: PyTorch eager, ONNX fp32, ONNX fp16 and ONNX int8 on the CPU, in one run.

    python benchmarks/bench_onnx_inference.py --backbones iresnet50,mobilefacenet_fast \\
        --batches 1,32 --threads 1,2 --repeats 3

Each backbone is built untrained, its BatchNorm statistics set from synthetic face batches (so
activations look like a trained network's), exported with ``femb.export.export_onnx`` (fp32 and
fp16, parity checked) and quantized to int8 with ``femb.export.quantize.quantize_int8``
(calibrated on synthetic faces: speed does not depend on what the weights learned; the accuracy
cost of int8 is measured on a trained model by bench_int8_calibration.py). For each thread count
and batch size the runtimes run round-robin (one forward of each per round), so that load from
other processes spreads over all of them; the table gives the median seconds per forward, images/s
and the speed relative to ONNX fp32. The CPU's int8 and fp16 instructions are printed first: int8
pays on x86 only with VNNI (AVX512-VNNI, AVX-VNNI) or AMX.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from femb.backbones import build_backbone
from femb.export import export_onnx
from femb.export.calibration_images import load_calibration_images
from femb.export.parity import face_batch
from femb.export.quantize import DEFAULT_METHOD, quantize_int8
from femb.inference.runtime import create_session

CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
)


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor, batches: int = 2) -> nn.Module:
    """Replace BatchNorm running statistics by those of ``images`` (cumulative average)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in images.chunk(batches):
            model(chunk)
    return model.eval()


def cpu_description() -> str:
    """The CPU model and which of :data:`CPU_FLAGS` it has, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or 'unknown CPU'} (no /proc/cpuinfo: instruction sets unknown)"
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?"
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    has = [flag for flag in CPU_FLAGS if flag in flags]
    missing = [flag for flag in CPU_FLAGS if flag not in flags]
    return f"{model}; has {' '.join(has) or 'none'}; lacks {' '.join(missing) or 'none'}"


def build_models(
    name: str, embed_dim: int, calibration: int, folder: Path
) -> tuple[nn.Module, dict[str, bytes]]:
    """The eager backbone and its serialized ONNX models by precision."""
    torch.manual_seed(0)
    backbone = build_backbone(name, embed_dim=embed_dim)
    calibrate_batchnorm(backbone, (face_batch(16).float() - 127.5) / 127.5)
    models = {}
    for precision in ("fp32", "fp16"):
        started = time.perf_counter()
        report = export_onnx(
            backbone, folder / f"{name}_{precision}.onnx", fp16=precision == "fp16", parity_batches=(2,)
        )
        models[precision] = report.path.read_bytes()
        print(
            f"  {precision}: exported and parity-checked in {time.perf_counter() - started:.1f} s "
            f"({report.file_size / 1e6:.1f} MB, min cosine to PyTorch {report.min_cosine:.6f})"
        )
    started = time.perf_counter()
    faces = load_calibration_images("synthetic", calibration).faces
    models["int8"] = quantize_int8(models["fp32"], faces)
    print(
        f"  int8: quantized ({DEFAULT_METHOD}, {calibration} synthetic faces) in "
        f"{time.perf_counter() - started:.1f} s ({len(models['int8']) / 1e6:.1f} MB)"
    )
    return backbone, models


def int8_cosine(models: dict[str, bytes]) -> float:
    """Mean cosine between the int8 and fp32 models' embeddings of 32 synthetic faces."""
    faces = ((face_batch(32).float() - 127.5) / 127.5).numpy()
    out = [create_session(models[p]).run(None, {"input": faces})[0] for p in ("fp32", "int8")]
    out = [o / np.linalg.norm(o, axis=1, keepdims=True) for o in out]
    return float((out[0] * out[1]).sum(axis=1).mean())


def time_runtimes(backbone: nn.Module, models: dict[str, bytes], threads: int, batch: int, repeats: int):
    """Median seconds per forward of each runtime, round-robin."""
    torch.set_num_threads(threads)
    images = (face_batch(batch).float() - 127.5) / 127.5
    feed = images.numpy()
    runners = {}

    def eager() -> None:
        with torch.no_grad():
            backbone(images)

    runners["PyTorch eager"] = eager
    for precision, data in models.items():
        try:
            session = create_session(data, threads=threads)
            session.run(None, {"input": feed})
        except Exception as error:  # noqa: BLE001 - a provider without fp16 kernels: reported, not fatal
            print(f"  ONNX {precision}: not run ({type(error).__name__}: {str(error)[:80]})")
            continue
        runners[f"ONNX {precision}"] = lambda session=session: session.run(None, {"input": feed})
    for run in runners.values():
        run()  # warm-up: allocations, kernel caches
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(spent) for name, spent in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="iresnet50,mobilefacenet_fast")
    parser.add_argument("--embed-dim", type=int, default=512)
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (both runtimes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per runtime and setting")
    parser.add_argument("--calibration-images", type=int, default=64)
    args = parser.parse_args()
    import onnxruntime as ort

    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    print(f"CPU: {cpu_description()}")
    print(
        f"onnxruntime {ort.__version__} (CPU execution provider), torch {torch.__version__}; "
        f"median of {args.repeats} forwards, round-robin"
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            print(f"{name}:")
            backbone, models = build_models(name, args.embed_dim, args.calibration_images, Path(folder))
            print(
                f"  int8 vs fp32 mean cosine on 32 synthetic faces: {int8_cosine(models):.4f} "
                "(untrained weights)"
            )
            for threads in thread_counts:
                for batch in batches:
                    medians = time_runtimes(backbone, models, threads, batch, args.repeats)
                    fp32 = medians.get("ONNX fp32")
                    print(
                        f"  {threads} threads, batch {batch}: "
                        + ", ".join(
                            f"{runtime} {batch / seconds:.1f}/s" for runtime, seconds in medians.items()
                        )
                        + (
                            f"; int8/fp32 {fp32 / medians['ONNX int8']:.2f}×"
                            if fp32 and "ONNX int8" in medians
                            else ""
                        ),
                        flush=True,
                    )
                    rows.extend(
                        (name, threads, batch, runtime, s, medians.get("ONNX fp32"))
                        for runtime, s in medians.items()
                    )
    print()
    columns = ("backbone", "threads", "batch", "runtime", "s/forward", "images/s", "vs ONNX fp32")
    widths = (-20, 7, 5, -14, 9, 9, 12)
    header = " ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    print(header)
    print("-" * len(header))
    for name, threads, batch, runtime, seconds, fp32 in rows:
        ratio = f"{fp32 / seconds:.2f}×" if fp32 else "n/a"
        print(
            f"{name:<20} {threads:>7} {batch:>5} {runtime:<14} {seconds:>9.4f} "
            f"{batch / seconds:>9.1f} {ratio:>12}"
        )


if __name__ == "__main__":
    main()
