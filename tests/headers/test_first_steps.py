"""Every head at its defaults learns from the first steps (issue 12): the loss never climbs first.

The stand-in backbone and data of ``benchmarks/bench_first_steps.py`` (which runs the full grid of
batches, class counts and seeds), at one small setting per head.
"""

import pytest

from femb.headers import list_headers


@pytest.fixture(scope="module")
def bench(benchmark):
    return benchmark("bench_first_steps")


@pytest.mark.parametrize("head", list_headers())
def test_the_loss_falls_from_the_start_at_the_defaults(head, bench):
    losses = bench.first_losses(head, classes=50, batch=32, steps=100)
    assert bench.falls(bench.window_means(losses)), bench.window_means(losses)
    assert bench.climb_percent(losses) < 1.0


@pytest.mark.parametrize(
    "head, classes, batch, options",
    [("arcface", 200, 16, {"s": 64.0}), ("magface", 50, 32, {"easy_margin": True})],
)
def test_the_climbs_the_defaults_avoid_are_seen(head, classes, batch, options, bench):
    """The papers' s = 64 and MagFace's official easy margin both climb first: the check can fail."""
    losses = bench.first_losses(head, classes=classes, batch=batch, steps=100, **options)
    assert bench.climb_percent(losses) > 1.0
