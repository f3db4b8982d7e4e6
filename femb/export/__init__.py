"""ONNX export of a backbone (header stripped) with preprocessing metadata and a parity check;
a calibrated threshold written into an exported model."""

from femb.export.calibration import file_sha256, image_pairs_sha256, write_threshold
from femb.export.graph import ExportError
from femb.export.metadata import ModelThreshold, Preprocessing, read_metadata
from femb.export.onnx_export import (
    DEFAULT_MIN_COSINE,
    DEFAULT_MIN_COSINE_FP16,
    ExportReport,
    ParityError,
    export_onnx,
)
from femb.export.parity import ParityResult, check_parity, compare_embeddings, format_cosine
from femb.export.source import default_output_path, name_from_path

__all__ = [
    "DEFAULT_MIN_COSINE",
    "DEFAULT_MIN_COSINE_FP16",
    "ExportError",
    "ExportReport",
    "ModelThreshold",
    "ParityError",
    "ParityResult",
    "Preprocessing",
    "check_parity",
    "compare_embeddings",
    "default_output_path",
    "export_onnx",
    "file_sha256",
    "format_cosine",
    "image_pairs_sha256",
    "name_from_path",
    "read_metadata",
    "write_threshold",
]
