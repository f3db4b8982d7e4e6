"""onnxruntime (CPU execution provider) against eager PyTorch: embeddings per second, same process.

    python benchmarks/bench_onnx_inference.py --backbone iresnet50 --batches 1,32 --repeats 3

The backbone is built untrained, its BatchNorm statistics set from a few synthetic face batches
(so activations look like a trained network's rather than an untrained one's), exported with
``femb.export.export_onnx`` (which also runs the parity check), then both runtimes embed the same
face batches. They run round-robin (one forward of each per round) so that load from other
processes spreads over both; the table gives the median seconds per forward, embeddings/s and
the ratio onnxruntime / PyTorch. Both use the same number of threads (``--threads``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from femb.backbones import build_backbone
from femb.export import export_onnx, format_cosine
from femb.export.parity import face_batch


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--embed-dim", type=int, default=512)
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per runtime and batch size")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="threads for both runtimes"
    )
    parser.add_argument("--fp16", action="store_true", help="benchmark the fp16 export instead")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]

    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, embed_dim=args.embed_dim)
    calibrate_batchnorm(backbone, (face_batch(16).float() - 127.5) / 127.5)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{args.backbone}.onnx"
        started = time.perf_counter()
        report = export_onnx(backbone, path, fp16=args.fp16, parity_batches=tuple(batch_sizes))
        export_seconds = time.perf_counter() - started
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        print(
            f"{args.backbone} ({report.num_parameters / 1e6:.1f} M parameters, {args.embed_dim}-d), "
            f"onnxruntime {ort.__version__} CPU EP vs torch {torch.__version__} eager, {args.threads} threads"
        )
        print(
            f"export {export_seconds:.1f} s ({report.exporter} exporter, opset {report.opset}, "
            f"{report.file_size / 1e6:.1f} MB{', fp16' if args.fp16 else ''}, parity included)"
        )
        for result in report.parity:
            print(
                f"parity batch {result.batch_size:>3}: max |ONNX − PyTorch| {result.max_abs_diff:.3g}, "
                f"min cosine {format_cosine(result.min_cosine)}"
            )
        print()
        columns = ("batch", "torch s/fwd", "ORT s/fwd", "torch emb/s", "ORT emb/s", "ORT/torch")
        header = "  ".join(f"{c:>{w}}" for c, w in zip(columns, (5, 11, 10, 11, 10, 9), strict=True))
        print(header)
        print("-" * len(header))
        for batch_size in batch_sizes:
            images = (face_batch(batch_size).float() - 127.5) / 127.5
            feed = images.numpy()

            def run_torch(images=images) -> None:
                with torch.no_grad():
                    backbone(images)

            def run_ort(feed=feed) -> None:
                session.run(None, {"input": feed})

            run_torch(), run_ort()  # warm-up: allocations, oneDNN primitive caches
            times: dict[str, list[float]] = {"torch": [], "ort": []}
            for _ in range(args.repeats):
                for name, fn in (("torch", run_torch), ("ort", run_ort)):
                    started = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - started)
            t_torch, t_ort = statistics.median(times["torch"]), statistics.median(times["ort"])
            print(
                f"{batch_size:>5}  {t_torch:>11.4f}  {t_ort:>10.4f}  {batch_size / t_torch:>11.1f}  "
                f"{batch_size / t_ort:>10.1f}  {t_torch / t_ort:>8.2f}×"
            )


if __name__ == "__main__":
    main()
