"""Training: the loop (`fit`), its options, runtime, checkpoints, sinks and the recipe behind `femb train`."""

from femb.training.options import FitOptions

__all__ = ["FitOptions"]
