"""Training: the loop (`fit`), its options, runtime, checkpoints, sinks and the recipe behind `femb train`.

``FitOptions`` is imported on first use: the run files' readers (events, control, run
directories) are torch-free, and the dashboard imports them without torch.
"""

__all__ = ["FitOptions"]


def __getattr__(name: str):
    if name == "FitOptions":
        from femb.training.options import FitOptions

        return FitOptions
    raise AttributeError(f"module 'femb.training' has no attribute {name!r}")
