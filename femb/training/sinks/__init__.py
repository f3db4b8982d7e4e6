"""Consumers of training events: the metrics file and TensorBoard (the CLI adds progress lines
and the dashboard). A sink is any callable ``sink(event) -> None``."""

from femb.training.sinks.metrics_file import JsonlSink

__all__ = ["JsonlSink"]
