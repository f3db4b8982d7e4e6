"""onnxruntime inference: provider choice that is honest about CUDA, batching, preprocessing from metadata."""

from femb.inference.embedder import (
    InferenceError,
    ModelLoadError,
    OnnxEmbedder,
    TorchEmbedder,
    is_onnx_model,
    open_embedder,
)
from femb.inference.providers import (
    PROVIDER_CHOICES,
    ProbeResult,
    ProviderChoice,
    ProviderError,
    available_providers,
    probe_provider,
    select_provider,
    working_providers,
)

__all__ = [
    "PROVIDER_CHOICES",
    "InferenceError",
    "ModelLoadError",
    "OnnxEmbedder",
    "ProbeResult",
    "ProviderChoice",
    "ProviderError",
    "TorchEmbedder",
    "available_providers",
    "is_onnx_model",
    "open_embedder",
    "probe_provider",
    "select_provider",
    "working_providers",
]
