"""femb: train face-embedding backbones with angular-margin heads, export them to ONNX, verify.

``FaceEmbeddingModel`` is imported on first use, so that the torch-free parts (the run files'
readers, the dashboard) start without importing torch.
"""

__version__ = "0.1.0"

__all__ = ["FaceEmbeddingModel", "__version__"]


def __getattr__(name: str):
    if name == "FaceEmbeddingModel":
        from femb.model import FaceEmbeddingModel

        return FaceEmbeddingModel
    raise AttributeError(f"module 'femb' has no attribute {name!r}")
