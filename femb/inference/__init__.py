"""onnxruntime inference: provider choice that is honest about CUDA, batching, preprocessing from metadata."""

from femb.inference.embedder import (
    InferenceError,
    ModelLoadError,
    NoThresholdError,
    OnnxEmbedder,
    embedding_norms,
)
from femb.inference.opening import TorchEmbedder, is_onnx_model, open_embedder
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
from femb.inference.runtime import create_session
from femb.inference.speed import Throughput, model_precision

__all__ = [
    "PROVIDER_CHOICES",
    "InferenceError",
    "ModelLoadError",
    "NoThresholdError",
    "OnnxEmbedder",
    "ProbeResult",
    "ProviderChoice",
    "ProviderError",
    "Throughput",
    "TorchEmbedder",
    "available_providers",
    "create_session",
    "embedding_norms",
    "is_onnx_model",
    "model_precision",
    "open_embedder",
    "probe_provider",
    "select_provider",
    "working_providers",
]
