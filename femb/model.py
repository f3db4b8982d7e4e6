"""FaceEmbeddingModel: a backbone, a training-only header and a loss, with fit/encode/save/load."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from femb import checkpoint as ckpt
from femb.backbones import backbone_spec, build_backbone
from femb.data.batches import face_batches
from femb.errors import one_line


class FaceEmbeddingModel(nn.Module):
    """``backbone`` maps N×3×112×112 images to N×D embeddings; ``header`` (training only) maps
    (embeddings, labels) to margin logits for ``loss`` (``torch.nn.CrossEntropyLoss`` by default)."""

    def __init__(self, backbone: nn.Module, header: nn.Module | None = None, loss: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.header = header
        self.loss = loss if loss is not None else nn.CrossEntropyLoss()

    # ------------------------------------------------------------------ training objective
    @property
    def params(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer: the backbone, then the header."""
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "name": "backbone"}]
        if self.header is not None:
            groups.append(
                {"params": [p for p in self.header.parameters() if p.requires_grad], "name": "header"}
            )
        return groups

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    @property
    def num_classes(self) -> int | None:
        weight = getattr(self.header, "weight", None)
        return None if weight is None else int(weight.shape[0])

    def check_batch(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """One clear error for the usual misuses instead of a stack of tensor errors."""
        if self.header is None:
            raise ValueError(
                "this model has no header (it was stripped for inference); it cannot compute a loss"
            )
        weight = getattr(self.header, "weight", None)
        if weight is not None and embeddings.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"embedding size mismatch: the backbone gives {embeddings.shape[-1]}-d embeddings "
                f"but the header expects in_features={weight.shape[1]}"
            )
        num_classes = self.num_classes
        if num_classes is not None and labels.numel():
            bad = labels[(labels < -1) | (labels >= num_classes)]
            if bad.numel():
                raise ValueError(
                    f"label {int(bad[0])} is outside [0, {num_classes}) (header out_features={num_classes}); "
                    "use -1 for samples whose class is not held by this header"
                )

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training objective: loss(header logits, labels) plus any header regulariser
        (MagFace's λ_g·mean g(a)). Rows labelled −1 are left out of the loss."""
        self.check_batch(embeddings, labels)
        # Margin maths and the loss stay in fp32 under autocast: exp(64) overflows fp16.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            logits = self.header(embeddings, labels)
            held = labels != -1
            if bool(held.all()):
                loss = self.loss(logits.float(), labels)
            elif bool(held.any()):
                loss = self.loss(logits[held].float(), labels[held])
            else:
                loss = logits.sum() * 0.0
            extra_loss = getattr(self.header, "extra_loss", None)
            regularizer = extra_loss(embeddings) if extra_loss is not None else None
            if regularizer is not None:
                loss = loss + regularizer
        return loss

    # ------------------------------------------------------------------ fit / encode
    def fit(self, train_dataset, *args, **kwargs):
        """Train. The keywords are the loop's options of :class:`femb.training.config.TrainConfig`
        and the objects of :class:`femb.training.options.FitOptions`; the original femb API's
        first eleven may be given by position, and its names (``evaluation_steps``,
        ``max_training_steps``, ``max_epochs``, ``num_workers``, ``run_name``) still work.
        See :func:`femb.training.loop.fit`."""
        from femb.training.loop import fit
        from femb.training.options import split_fit_arguments

        config, options = split_fit_arguments(args, kwargs)
        return fit(self, train_dataset, config, options)

    @torch.no_grad()
    def encode(
        self,
        data,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        normalize: bool = False,
        flip: bool = False,
    ) -> torch.Tensor:
        """Embeddings (on the CPU) of an image tensor N×3×112×112 or a dataset of images / (image, label)."""
        device = torch.device(device) if device is not None else next(self.backbone.parameters()).device
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            chunks = [
                embed_batch(self.backbone, batch.to(device), flip).cpu()
                for batch in face_batches(data, batch_size)
            ]
        finally:
            self.backbone.train(was_training)
        if not chunks:
            raise ValueError("encode: the dataset is empty")
        out = torch.cat(chunks)
        return torch.nn.functional.normalize(out, dim=1) if normalize else out

    # ------------------------------------------------------------------ save / load
    def checkpoint_payload(
        self,
        training: dict | None = None,
        config: dict | None = None,
        run_name: str | None = None,
        include_header: bool = True,
    ) -> dict:
        from femb.headers import header_spec

        header = None
        if include_header and self.header is not None:
            header = {**header_spec(self.header), "state_dict": self.header.state_dict()}
        import femb

        return {
            "femb_version": femb.__version__,
            "backbone": {**backbone_spec(self.backbone), "state_dict": self.backbone.state_dict()},
            "header": header,
            "training": training,
            "config": config or {},
            "run_name": run_name,
        }

    def save(self, path: str | os.PathLike, include_header: bool = True) -> None:
        """Save backbone and header weights with what is needed to rebuild them (atomic write)."""
        ckpt.save_checkpoint(self.checkpoint_payload(include_header=include_header), path)

    @classmethod
    def load(cls, path: str | os.PathLike, loss: nn.Module | None = None) -> FaceEmbeddingModel:
        """Rebuild a model saved by :meth:`save` or a training checkpoint (read with weights_only=True)."""
        return cls.from_checkpoint(ckpt.load_checkpoint(path), loss=loss)

    @classmethod
    def from_checkpoint(cls, payload: dict, loss: nn.Module | None = None) -> FaceEmbeddingModel:
        backbone = backbone_from_checkpoint(payload)
        header = None
        if payload.get("header"):
            from femb.headers import build_header

            spec = payload["header"]
            header = build_header(spec["name"], **spec["kwargs"])
            header.load_state_dict(spec["state_dict"])
        return cls(backbone, header, loss)


def embed_batch(backbone: nn.Module, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Raw float32 embeddings of one batch; ``flip`` adds those of the mirrored images."""
    out = backbone(images).float()
    if flip:
        out = out + backbone(torch.flip(images, dims=[3])).float()
    return out


def backbone_from_checkpoint(payload: dict) -> nn.Module:
    """The backbone of a loaded checkpoint, rebuilt by name and filled with its weights.

    A hand-edited or foreign checkpoint (no backbone entry, an unknown name, arguments the network
    does not take, weights of other shapes) gives one :class:`~femb.checkpoint.CheckpointError`
    naming the file, never a stack of tensor errors.
    """
    where = payload.get("path", "checkpoint")
    spec = payload.get("backbone")
    if not isinstance(spec, dict) or not {"name", "kwargs", "state_dict"} <= set(spec):
        raise ckpt.CheckpointError(
            f"{where}: no backbone entry (name, kwargs, state_dict) in this checkpoint"
        )
    name, kwargs = spec["name"], dict(spec["kwargs"]) if isinstance(spec["kwargs"], dict) else None
    if not isinstance(name, str) or kwargs is None:
        raise ckpt.CheckpointError(f"{where}: the backbone entry's name or kwargs is malformed")
    embed_dim = kwargs.pop("embed_dim", 512)
    try:
        backbone = build_backbone(
            name,
            embed_dim=embed_dim,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()},
        )
    except (TypeError, ValueError) as error:
        raise ckpt.CheckpointError(f"{where}: cannot rebuild backbone {name!r} ({one_line(error)})") from None
    try:
        backbone.load_state_dict(spec["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ckpt.CheckpointError(
            f"{where}: the weights do not fit backbone {name!r} with embed_dim={embed_dim} "
            f"({one_line(error, limit=300)})"
        ) from None
    return backbone


def load_backbone(source: str | os.PathLike) -> tuple[nn.Module, dict]:
    """An eval-mode backbone and its checkpoint dict from a run directory, checkpoint or saved model."""
    payload = ckpt.load_checkpoint(source)
    backbone = backbone_from_checkpoint(payload)
    backbone.eval()
    return backbone, payload


def _signature_of_fit() -> None:
    """``help(FaceEmbeddingModel.fit)`` lists its keywords, generated from the schema."""
    from femb.training.options import fit_signature

    FaceEmbeddingModel.fit.__signature__ = fit_signature(("self", "train_dataset"))  # type: ignore[attr-defined]


_signature_of_fit()
