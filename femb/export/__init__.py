"""ONNX export of a backbone (header stripped) with preprocessing metadata and a parity check."""

from femb.export.metadata import Preprocessing, read_metadata
from femb.export.onnx_export import (
    DEFAULT_MIN_COSINE,
    DEFAULT_MIN_COSINE_FP16,
    ExportError,
    ExportReport,
    ParityError,
    check_parity,
    default_output_path,
    export_onnx,
)
from femb.export.parity import ParityResult, compare_embeddings, format_cosine

__all__ = [
    "DEFAULT_MIN_COSINE",
    "DEFAULT_MIN_COSINE_FP16",
    "ExportError",
    "ExportReport",
    "ParityError",
    "ParityResult",
    "Preprocessing",
    "check_parity",
    "compare_embeddings",
    "default_output_path",
    "export_onnx",
    "format_cosine",
    "read_metadata",
]
