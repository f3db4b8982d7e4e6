"""Time femb's verification_metrics against the classic threshold-grid loop.

The reference is the way InsightFace-style evaluation code finds the k-fold threshold: for each
fold, try every threshold of a fixed grid (here 400 steps) on the other folds. femb sorts once
and reads the accuracy of every possible cut from cumulative sums, so it is exact and its cost
does not depend on a grid. The reference is skipped above 100k pairs (it takes minutes).

    python benchmarks/bench_verification_metrics.py [--sizes 10000 100000 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from femb.evaluation import verification_metrics


def grid_kfold_accuracy(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10, steps: int = 400) -> float:
    """k-fold accuracy with a threshold grid and a loop over it (the common slow way)."""
    thresholds = np.linspace(scores.min(), scores.max(), steps)
    accuracies = []
    for fold in np.array_split(np.arange(len(scores)), n_folds):
        train = np.ones(len(scores), dtype=bool)
        train[fold] = False
        best = max(thresholds, key=lambda t: np.mean((scores[train] > t) == issame[train]))
        accuracies.append(np.mean((scores[fold] > best) == issame[fold]))
    return float(np.mean(accuracies))


def synthetic_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    scores = (rng.normal(0.0, 0.15, n) + 0.35 * issame).astype(np.float32)
    return scores, issame


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-max", type=int, default=100_000, help="largest size for the grid loop")
    args = parser.parse_args()

    columns = [("pairs", 10), ("femb s", 9), ("pairs/s", 12), ("acc femb", 9)]
    columns += [("grid-loop s", 12), ("speed-up", 9), ("acc grid", 9)]
    print(" ".join(f"{name:>{width}}" for name, width in columns))
    for n in args.sizes:
        scores, issame = synthetic_scores(n)
        femb_s = best_time(lambda s=scores, y=issame: verification_metrics(s, y), args.repeats)
        accuracy = verification_metrics(scores, issame).accuracy
        if n <= args.reference_max:
            grid_s = best_time(lambda s=scores, y=issame: grid_kfold_accuracy(s, y), 1)
            grid_acc = grid_kfold_accuracy(scores, issame)
            reference = f"{grid_s:12.3f} {grid_s / femb_s:8.1f}x {grid_acc:9.4f}"
        else:
            reference = f"{'-':>12} {'-':>9} {'-':>9}"
        print(f"{n:>10} {femb_s:9.3f} {n / femb_s:12,.0f} {accuracy:9.4f} {reference}")
    print("femb: 10-fold accuracy + ROC + AUC + EER + TAR@FAR (1e-3, 1e-4); grid loop: 10-fold accuracy only")


if __name__ == "__main__":
    main()
