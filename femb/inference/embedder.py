"""Embed face images with an exported ONNX model (or a checkpoint through PyTorch), in batches.

Inputs are normalised face tensors/arrays (``3×112×112`` or ``N×3×112×112`` float,
``(x-127.5)/127.5``), uint8 images (``H×W×3``, ``H×W`` or ``N×H×W×3``, RGB; resized to 112×112 by
letterboxing when they are another size), PIL images, image file paths, a list of these, or a
map-style dataset of images or ``(image, label)`` items.
Every input is brought to femb's float tensor first and then to what the model's metadata asks
for (float NCHW with its mean/std, e.g. mean 0 and std 1 — raw pixels — for a graph that
normalises itself; its colour order), so any
femb export, and a foreign ONNX face model with a ``N×3×112×112`` float input, embeds the same
images the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from femb.data.batches import face_batches
from femb.data.transforms import MEAN, STD
from femb.export.metadata import FORMAT_KEY, ModelThreshold, Preprocessing
from femb.fileio import require_regular_file
from femb.inference.providers import CPU, ProviderChoice, select_provider, short_name
from femb.inference.runtime import FLOAT_INPUTS, create_session, input_preprocessing, model_feed
from femb.inference.speed import model_precision

DEFAULT_BATCH_SIZE = 64


class ModelLoadError(ValueError):
    """A model file that is missing or neither an ONNX model nor a femb checkpoint."""


class InferenceError(RuntimeError):
    """onnxruntime failed on a batch (wrong input size for a foreign model, out of memory, ...)."""


class NoThresholdError(ValueError):
    """``same_person`` on a model that carries no calibrated threshold."""


def embedding_norms(embeddings: np.ndarray) -> np.ndarray:
    """Raw L2 norm of each row: MagFace's quality score (the ``norm`` column of embedding files)."""
    return np.linalg.norm(np.asarray(embeddings, dtype=np.float32), axis=1)


class BatchEmbedder:
    """What both runtimes share: batching, flip and normalisation around ``_embed_batch``."""

    batch_size: int
    embed_dim: int
    metadata: dict[str, str]
    name: str

    def _embed_batch(self, faces: torch.Tensor, flip: bool) -> np.ndarray:
        raise NotImplementedError

    def embed(
        self, images: Any, normalize: bool = False, flip: bool = False, return_norms: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Embeddings ``N×D`` (float32) of one image or many; ``flip`` adds the mirrored image's.

        ``return_norms``: ``(embeddings, norms)``, the raw norms (before ``normalize``) of the
        embeddings as computed, flip-summed when ``flip``: see :meth:`quality`.
        """
        chunks = [self._embed_batch(batch, flip) for batch in face_batches(images, self.batch_size)]
        out = np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), dtype=np.float32)
        norms = embedding_norms(out)
        if normalize:
            out = out / np.maximum(norms, 1e-12)[:, None]
        return (out, norms) if return_norms else out

    def quality(self, images: Any, flip: bool = False) -> np.ndarray:
        """MagFace's quality score of each image: its raw embedding norm (without ``flip``, one
        image's own embedding; the ``norm`` column of embedding files). Meaningless for a model whose
        output is L2-normalised (every norm is 1): see :attr:`outputs_unit_vectors`."""
        return self.embed(images, flip=flip, return_norms=True)[1]

    @property
    def precision(self) -> str:
        """The model's weights: ``int8``, ``fp16`` or ``fp32`` (its metadata)."""
        return model_precision(self.metadata)

    @property
    def outputs_unit_vectors(self) -> bool:
        """Whether the model's metadata says its output is L2-normalised (no quality in the norm)."""
        return self.metadata.get("output_normalized", "false").lower() == "true"

    @property
    def threshold(self) -> ModelThreshold | None:
        """The calibrated threshold the model carries, or None (``ValueError`` when malformed)."""
        try:
            return ModelThreshold.from_metadata(self.metadata)
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None

    def same_person(self, a: Any, b: Any) -> bool | np.ndarray:
        """Whether ``a`` and ``b`` show the same person, by the model's calibrated threshold.

        Each side is embedded with the threshold's flip setting, L2-normalised and compared with
        its similarity. One pair gives a ``bool``; batches (as many images on each side) give a
        boolean array, pair by pair. :class:`NoThresholdError` when the model carries none.
        """
        from femb.evaluation import accepted, pair_scores

        threshold = self.threshold
        if threshold is None:
            raise NoThresholdError(
                f"{self.name} carries no calibrated threshold; calibrate one on a pairs set "
                "(femb.export.write_threshold)"
            )
        first = self.embed(a, normalize=True, flip=threshold.flip)
        second = self.embed(b, normalize=True, flip=threshold.flip)
        if len(first) != len(second):
            raise ValueError(f"same_person: {len(first)} images against {len(second)}")
        count = len(first)
        pairs = np.stack([np.arange(count), np.arange(count, 2 * count)], axis=1)
        scores = pair_scores(np.concatenate([first, second]), pairs, threshold.similarity)
        same = accepted(scores, threshold.threshold, threshold.higher_is_same)
        return bool(same[0]) if count == 1 else same

    def __call__(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """``embed_fn`` for :class:`femb.evaluation.VerificationEvaluator`: a float batch → raw embeddings."""
        return self.embed(batch)


class OnnxEmbedder(BatchEmbedder):
    """An onnxruntime session over a face-embedding model.

    ``provider``: ``auto`` (CUDA when it really works, else CPU; :attr:`note` says why not),
    ``cuda`` (a :class:`~femb.inference.providers.ProviderError` when it does not work) or ``cpu``.
    :attr:`provider` is the short name of the provider in use.

    A model without femb metadata (an insightface model-zoo file, say) is fed the way insightface's
    ``ArcFaceONNX`` feeds it: RGB, and mean/std guessed from its graph (see
    :func:`insightface_input_stats`); :attr:`assumption` says so in one line. ``mean``, ``std``
    and ``bgr`` override what the metadata or the guess says (float inputs only).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        provider: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        mean: float | None = None,
        std: float | None = None,
        bgr: bool | None = None,
    ):
        self.path = Path(path)
        if std is not None and not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not self.path.exists():
            raise ModelLoadError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise ModelLoadError(f"{self.path}: is a directory, not an ONNX model")
        require_regular_file(self.path, "model")  # a FIFO or a device would block the session
        self.name = self.path.name
        self.choice: ProviderChoice = select_provider(provider)
        try:
            self.session = create_session(self.path, self.choice.providers, threads)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise ModelLoadError(f"{self.path}: not a readable ONNX model ({_ort_reason(error)})") from None
        used = self.session.get_providers()
        self.providers = list(used)
        self.provider = short_name(used[0]) if used else "cpu"
        self.note = self.choice.note
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        self.input_type = model_input.type
        self.assumption = ""
        try:
            self.preprocessing = self._preprocessing(model_input, mean, std, bgr)
        except ValueError as error:
            raise ModelLoadError(f"{self.path}: unusable model metadata ({error})") from None
        fixed_batch = model_input.shape[0] if model_input.shape else None
        self.fixed_batch = fixed_batch if isinstance(fixed_batch, int) and fixed_batch > 0 else None
        self.batch_size = self.fixed_batch or int(batch_size)
        output_shape = self.session.get_outputs()[0].shape
        if output_shape is not None and len(output_shape) != 2:
            raise ModelLoadError(
                f"{self.path}: its output {self.output_name!r} has shape {list(output_shape)}; "
                "a face model gives N×D embeddings"
            )
        declared_dim = output_shape[-1] if output_shape else None
        recorded = self.metadata.get("embed_dim")
        if recorded is not None and not recorded.strip().isdigit():
            raise ModelLoadError(f"{self.path}: unusable model metadata (embed_dim={recorded!r})")
        self.embed_dim = int(recorded or (declared_dim if isinstance(declared_dim, int) else 0))

    # ------------------------------------------------------------------ public
    def describe(self) -> str:
        prep = self.preprocessing
        kind = f"{prep.dtype} NCHW" + (", raw pixels 0-255" if (prep.mean, prep.std) == (0.0, 1.0) else "")
        return f"onnxruntime ({self.provider}), {self.precision}, input {kind}"

    # ------------------------------------------------------------------ internals
    def _preprocessing(self, model_input, mean=None, std=None, bgr=None) -> Preprocessing:
        guessed = None
        if FORMAT_KEY not in self.metadata and model_input.type in FLOAT_INPUTS:
            guessed = self._insightface_convention(model_input, mean, std, bgr)
        return input_preprocessing(model_input, self.metadata, guessed, mean=mean, std=std, bgr=bgr)

    def _insightface_convention(self, model_input, mean, std, bgr) -> dict[str, str]:
        """What insightface's ArcFaceONNX would feed this model, and the one line that says so."""
        guessed_mean, guessed_std, why = insightface_input_stats(self.path)
        meta = {"mean": str(guessed_mean), "std": str(guessed_std), "color_order": "RGB"}
        shape = model_input.shape or []
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
            meta["input_size"] = f"{shape[2]},{shape[3]}"
        used_mean = guessed_mean if mean is None else float(mean)
        used_std = guessed_std if std is None else float(std)
        order = "BGR" if bgr else "RGB"
        given = [
            name for name, value in (("mean", mean), ("std", std), ("colour order", bgr)) if value is not None
        ]
        self.assumption = (
            f"{self.path.name} has no femb metadata: assuming the insightface convention "
            f"({order}, mean {used_mean:g}, std {used_std:g}; {why}"
            + (f"; {', '.join(given)} as given" if given else "")
            + ")"
        )
        return meta

    def _embed_batch(self, faces: torch.Tensor, flip: bool) -> np.ndarray:
        out = self._run(faces)
        if flip:
            out = out + self._run(torch.flip(faces, dims=[3]))
        return out

    def _run(self, faces: torch.Tensor) -> np.ndarray:
        """``faces``: femb float N×3×112×112 → the model's input → float32 embeddings."""
        feed = model_feed(faces, self.preprocessing)
        count = feed.shape[0]
        if self.fixed_batch and count < self.fixed_batch:
            feed = np.concatenate([feed, np.repeat(feed[-1:], self.fixed_batch - count, axis=0)])
        try:
            out = self.session.run([self.output_name], {self.input_name: feed})[0]
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors derive from Exception only
            raise InferenceError(
                f"{self.path.name}: onnxruntime failed on a batch of {count}: {_ort_reason(error)}"
            ) from None
        out = np.asarray(out[:count], dtype=np.float32)
        if out.ndim != 2:
            raise InferenceError(f"{self.path.name}: the model gave shape {out.shape}, not N×D embeddings")
        return out


def insightface_input_stats(path: str | os.PathLike) -> tuple[float, float, str]:
    """Input mean and std as insightface 2.1's ``ArcFaceONNX`` guesses them, and why.

    A graph whose first 8 nodes include one named ``Sub…``/``_minus…`` and one named
    ``Mul…``/``_mul…`` normalises its input itself (the converted MXNet models): raw pixels, mean 0
    and std 1. Any other graph gets (x − 127.5) / 127.5.
    """
    import onnx

    nodes = onnx.load(os.fspath(path), load_external_data=False).graph.node[:8]
    sub = any(node.name.startswith(("Sub", "_minus")) for node in nodes)
    mul = any(node.name.startswith(("Mul", "_mul")) for node in nodes)
    if sub and mul:
        return 0.0, 1.0, "its graph starts with Sub/Mul, so it takes raw pixels"
    return MEAN, STD, "no Sub/Mul at the start of its graph"


def _ort_reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from x failed:Protobuf parsing failed."
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        return "protobuf parsing failed"
    text = text.split(" : ")[-1] if "ONNXRuntimeError" in text else text
    return text[:200] or type(error).__name__


__all__ = [
    "CPU",
    "InferenceError",
    "ModelLoadError",
    "NoThresholdError",
    "OnnxEmbedder",
    "embedding_norms",
    "insightface_input_stats",
]
