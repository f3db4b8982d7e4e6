"""Time the scoring stage of `femb verify ijb` on a problem of IJB-C's size.

23,000 random L2-normalised templates of 512 floats and 15.66 million pairs (19,557 genuine), as
IJB-C's 1:1 list. femb scores pairs in blocks of first templates: one matrix product per block
against the second templates it needs (or row-wise dot products where few are needed). The
reference is InsightFace's way: gather both templates' features for 100,000 pairs at a time and
multiply them (measured on ``--reference-pairs`` pairs and scaled to the full count).

Pairs are drawn as IJB-C's are laid out: each probe (verification) template against many
enrolment templates, the list sorted by its first template. ``--uniform`` draws both templates
uniformly at random instead (the worst case for femb's blocks).

    python benchmarks/bench_ijb_scoring.py [--templates 23000] [--pairs 15660000] [--uniform]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from femb.evaluation.ijb import score_pairs, verification_at_far


def synthetic_problem(templates: int, dim: int, pairs: int, genuine: int, uniform: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((templates, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = np.sort(rng.choice(10 * templates, templates, replace=False)).astype(np.int64)
    if uniform:
        picks = rng.integers(0, templates, (pairs, 2))
    else:
        enrolment = templates // 6  # IJB-C: ~3.5k enrolment templates against ~19.6k probes
        first = np.sort(rng.integers(enrolment, templates, pairs))
        picks = np.stack([first, rng.integers(0, enrolment, pairs)], axis=1)
    labels = np.zeros(pairs, dtype=np.int8)
    labels[rng.choice(pairs, genuine, replace=False)] = 1
    return ids, matrix, ids[picks], labels


def reference_scores(
    ids: np.ndarray, matrix: np.ndarray, pairs: np.ndarray, batch: int = 100_000
) -> np.ndarray:
    """InsightFace's way: gather both sides' features per batch of pairs, multiply, sum."""
    first, second = np.searchsorted(ids, pairs[:, 0]), np.searchsorted(ids, pairs[:, 1])
    scores = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), batch):
        part = slice(start, start + batch)
        scores[part] = np.sum(matrix[first[part]] * matrix[second[part]], axis=-1)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--templates", type=int, default=23_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=15_660_000)
    parser.add_argument("--genuine", type=int, default=19_557)
    parser.add_argument("--uniform", action="store_true", help="uniformly random pairs (worst case)")
    parser.add_argument("--reference-pairs", type=int, default=1_000_000, help="0: skip the reference")
    args = parser.parse_args()

    ids, matrix, pairs, labels = synthetic_problem(
        args.templates, args.dim, args.pairs, args.genuine, args.uniform
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu = time.perf_counter(), time.process_time()
    scores = score_pairs(ids, matrix, pairs)
    scoring, scoring_cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu = time.perf_counter(), time.process_time()
    result = verification_at_far(labels, scores)
    roc, roc_cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_roc = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    layout = "uniform random pairs" if args.uniform else "IJB-C-like pairs (probe × enrolment)"
    print(f"{args.templates:,} templates × {args.dim}, {args.pairs:,} pairs, {layout}")
    print(
        f"femb score_pairs: {scoring:.2f} s wall, {scoring_cpu:.2f} s CPU (all threads); "
        f"process peak RSS {peak:,.0f} MB (problem alone {before:,.0f} MB)"
    )
    print(
        f"ROC and TAR@FAR (sklearn roc_curve): {roc:.2f} s wall, {roc_cpu:.2f} s CPU; "
        f"peak RSS {peak_roc:,.0f} MB; AUC {result.auc:.3f}"
    )
    if args.reference_pairs:
        count = min(args.reference_pairs, args.pairs)
        started, cpu = time.perf_counter(), time.process_time()
        reference = reference_scores(ids, matrix, pairs[:count])
        seconds = (time.perf_counter() - started) * args.pairs / count
        reference_cpu = (time.process_time() - cpu) * args.pairs / count
        gap = float(np.abs(reference - scores[:count]).max())
        print(
            f"reference (gather 100k-pair batches): {seconds:.1f} s wall, {reference_cpu:.1f} s CPU, "
            f"scaled from {count:,} pairs → femb {seconds / scoring:.1f}× faster (wall), "
            f"{reference_cpu / scoring_cpu:.1f}× (CPU); max |score difference| {gap:.1e}"
        )


if __name__ == "__main__":
    main()
