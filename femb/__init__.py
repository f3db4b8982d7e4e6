"""femb: train face-embedding backbones with angular-margin heads, export them to ONNX, verify."""

__version__ = "0.1.0"

from femb.model import FaceEmbeddingModel  # noqa: E402

__all__ = ["FaceEmbeddingModel", "__version__"]
