"""Images per second through the training input pipeline, next to a plain PIL ImageFolder loader.

    python benchmarks/bench_input_pipeline.py --data ../shared/data/orl_faces --workers 0 1 2 --rounds 5

From the source folder (one folder per identity; ORL's PGMs) the benchmark writes, in a temporary
directory that it deletes afterwards, (a) an InsightFace RecordIO pack (``femb data pack``: 112×112
JPEGs, q95) and (b) a JPEG image folder of the same faces at their own size (q95), so that every
loader decodes JPEGs. Then it times, through ``torch.utils.data.DataLoader`` at batch 64 (shuffled,
``--images`` images per measurement, persistent workers warmed up first):

* ``plain PIL folder``: what a user writes without torchvision: ``Image.open``, ``convert("RGB")``,
  ``resize((112, 112))``, to tensor, ``(x - 127.5) / 127.5``, random horizontal flip;
* ``femb ImageFolderDataset`` on the JPEG folder and ``femb RecordIODataset`` on the pack, both with
  ``train=True`` (the training transforms: letterbox, normalise, random flip);
* the same two with femb's JPEG decode forced through PIL (``(PIL decode)``: femb before simplejpeg).

Configurations run in alternating rounds (one measurement of each per round) so that load from
other processes spreads evenly; the table gives the median images/s and the ratio to the plain
loader with the same number of workers. A decode micro-benchmark (one process, one thread) compares
the JPEG decoders available from PyPI on the same bytes; ones that are not installed are left out.
Last, the images/s one worker delivers is set against what a training step consumes
(``--step-seconds``, measured separately: iresnet50 and mobilefacenet at batch 32 on this CPU).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

import femb.data.decode as femb_decode
from femb.data import ImageFolderDataset, RecordIODataset, pack_image_folder
from femb.data.transforms import image_files

BATCH = 64
# Seconds per training step at batch 32 (forward + backward + SGD) with femb's own loop, from the
# machine of benchmarks/RESULTS.md's input-pipeline section; override with --step-seconds NAME=SECONDS.
STEP_SECONDS = {"iresnet50": 15.0, "mobilefacenet": 2.9}
STEP_BATCH = 32


class PlainImageFolder(Dataset):
    """The loader a user writes with PIL alone (no torchvision)."""

    def __init__(self, root: Path):
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        self.samples = [
            (path, label)
            for label, name in enumerate(classes)
            for path in sorted((root / name).iterdir())
            if path.suffix.lower() in (".jpg", ".jpeg", ".png")
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = Image.open(path).convert("RGB").resize((112, 112), Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float()
        tensor = (tensor - 127.5) / 127.5
        if random.random() < 0.5:
            tensor = torch.flip(tensor, dims=(-1,))
        return tensor, label


class PILDecode(Dataset):
    """A femb dataset with its JPEG decode forced through PIL (femb before simplejpeg)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        saved, femb_decode.simplejpeg = femb_decode.simplejpeg, None
        try:
            return self.dataset[index]
        finally:
            femb_decode.simplejpeg = saved


def write_inputs(source: Path, workdir: Path, quality: int) -> tuple[Path, Path]:
    """The RecordIO pack and the JPEG folder, both made from ``source`` under ``workdir``."""
    rec = workdir / "rec"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pack_image_folder(source, rec, quality=quality)
    jpeg = workdir / "jpeg"
    for path in image_files(source, (".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".ppm")):
        out = jpeg / path.relative_to(source).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            img.convert("RGB").save(out, format="JPEG", quality=quality)
    return rec, jpeg


def make_loader(dataset: Dataset, workers: int, images: int) -> DataLoader:
    sampler = RandomSampler(dataset, num_samples=images)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=BATCH,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )


def time_loader(loader: DataLoader) -> float:
    """Images per second of one pass over ``loader`` (the batches land in this process)."""
    count = 0
    start = time.perf_counter()
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


def decoder_candidates() -> dict[str, Callable[[bytes], np.ndarray]]:
    """JPEG bytes → H×W×3 RGB uint8, for every decoder that is installed."""

    def pil(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))

    def pil_draft(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (112, 112))
            return np.asarray(img.convert("RGB"))

    candidates: dict[str, Callable[[bytes], np.ndarray]] = {"PIL": pil, "PIL + draft(112)": pil_draft}
    try:
        import simplejpeg

        candidates["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        candidates["cv2.imdecode (+BGR→RGB)"] = lambda data: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
    except ImportError:
        pass
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        turbo = TurboJPEG()  # needs the system's libturbojpeg
        candidates["PyTurboJPEG"] = lambda data: turbo.decode(data, pixel_format=TJPF_RGB)
    except Exception:  # not installed, or no libturbojpeg on the system
        pass
    candidates["femb decode_face (→ 3×112×112)"] = lambda data: femb_decode.decode_face(data).numpy()
    return candidates


def bench_decoders(rec: RecordIODataset, jpeg: Path, rounds: int) -> list[tuple[str, float, float]]:
    """Median µs per image for each decoder, on the packed 112×112 JPEGs and the folder's JPEGs."""
    packed = [rec.encoded_image(i) for i in range(len(rec))]
    folder = [path.read_bytes() for path in image_files(jpeg, (".jpg",))]
    candidates = decoder_candidates()
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in candidates}
    for _ in range(rounds):
        for name, decode in candidates.items():
            for column, blobs in enumerate((packed, folder)):
                start = time.perf_counter()
                for blob in blobs:
                    decode(blob)
                times[name][column].append((time.perf_counter() - start) / len(blobs) * 1e6)
    return [(name, statistics.median(a), statistics.median(b)) for name, (a, b) in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--data", type=Path, default=here.parent.parent / "shared" / "data" / "orl_faces")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=1280, help="images per measurement (20 batches)")
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    parser.add_argument("--no-pil-rows", action="store_true", help="leave out the femb (PIL decode) rows")
    parser.add_argument(
        "--step-seconds",
        nargs="*",
        default=[],
        metavar="NAME=SECONDS",
        help="seconds per training step at batch 32 (default: iresnet50=15 mobilefacenet=2.9)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = dict(STEP_SECONDS)
    for item in args.step_seconds:
        name, _, seconds = item.partition("=")
        steps[name] = float(seconds)

    with tempfile.TemporaryDirectory(prefix="femb-bench-input-") as tmp:
        rec_dir, jpeg_dir = write_inputs(args.data, Path(tmp), args.quality)
        rec = RecordIODataset(rec_dir, train=True)
        folder = ImageFolderDataset(jpeg_dir, train=True)
        plain = PlainImageFolder(jpeg_dir)
        pipelines: dict[str, Dataset] = {
            "plain PIL folder": plain,
            "femb ImageFolderDataset": folder,
            "femb RecordIODataset": rec,
        }
        if not args.no_pil_rows:
            pipelines["femb ImageFolderDataset (PIL decode)"] = PILDecode(folder)
            pipelines["femb RecordIODataset (PIL decode)"] = PILDecode(rec)
        with Image.open(plain.samples[0][0]) as first:
            width, height = first.size
        print(
            f"{len(rec)} images of {rec.num_classes} identities; pack (112×112 JPEG q{args.quality}), "
            f"folder of {len(plain)} JPEGs ({width}×{height}); batch {BATCH}, {args.images} images "
            f"per measurement, {args.rounds} rounds; simplejpeg "
            f"{'on' if femb_decode.simplejpeg is not None else 'MISSING'}; {os.cpu_count()} CPUs"
        )

        decoders = bench_decoders(rec, jpeg_dir, args.rounds)

        loaders = {
            (name, workers): make_loader(dataset, workers, args.images)
            for workers in args.workers
            for name, dataset in pipelines.items()
        }
        for loader in loaders.values():  # start the workers, fill the page cache
            time_loader(loader)
        results: dict[tuple[str, int], list[float]] = {key: [] for key in loaders}
        for _ in range(args.rounds):
            for key, loader in loaders.items():
                results[key].append(time_loader(loader))
        del loaders

    print("\n### JPEG decode, µs per image (one process, one thread; median)\n")
    print(f"| decoder | packed 112×112 | folder {width}×{height} | vs PIL (packed) |")
    print("|---|---:|---:|---:|")
    pil_packed = decoders[0][1]
    for name, packed_us, folder_us in decoders:
        print(f"| {name} | {packed_us:.0f} | {folder_us:.0f} | {pil_packed / packed_us:.2f}× |")

    print(f"\n### DataLoader, images/s at batch {BATCH} (median of {args.rounds} rounds)\n")
    print("| pipeline | " + " | ".join(f"{w} worker{'s' if w != 1 else ''}" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for name in pipelines:
        cells = []
        for workers in args.workers:
            rate = statistics.median(results[(name, workers)])
            base = statistics.median(results[("plain PIL folder", workers)])
            cells.append(f"{rate:,.0f}" + ("" if name == "plain PIL folder" else f" ({rate / base:.2f}×)"))
        print(f"| {name} | " + " | ".join(cells) + " |")

    if 1 in args.workers:
        print("\n### Does one worker keep a training step fed?\n")
        print("| model (batch 32) | s/step | images/s needed | femb RecordIO, 1 worker | margin | busy |")
        print("|---|---:|---:|---:|---:|---:|")
        supply = statistics.median(results[("femb RecordIODataset", 1)])
        for model, seconds in steps.items():
            need = STEP_BATCH / seconds
            print(
                f"| {model} | {seconds:g} | {need:.1f} | {supply:,.0f} | {supply / need:,.0f}× | "
                f"{100 * need / supply:.2f}% |"
            )


if __name__ == "__main__":
    main()
