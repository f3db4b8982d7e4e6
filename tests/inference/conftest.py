"""Fixtures for the inference tests."""

from __future__ import annotations

import inspect
import io
import warnings

import onnx
import pytest
import torch
from torch import nn

import femb
from femb.export.metadata import build_metadata, set_metadata


class _Uint8Graph(nn.Module):
    """A uint8 NHWC input normalised inside: an input layout femb refuses to feed."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone((x.permute(0, 3, 1, 2).to(torch.float32) - 127.5) / 127.5)


@pytest.fixture(scope="session")
def legacy_uint8_export():
    """``write(backbone, path)``: an ONNX file with a uint8 ``N×112×112×3`` input and metadata
    ``input_dtype=uint8``, ``input_layout=NHWC`` (a format femb never released)."""

    def write(backbone: nn.Module, path):
        buffer = io.BytesIO()
        kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                _Uint8Graph(backbone).eval(),
                (torch.zeros(2, 112, 112, 3, dtype=torch.uint8),),
                buffer,
                input_names=["input"],
                output_names=["embedding"],
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=17,
                **kwargs,
            )
        model = onnx.load_model_from_string(buffer.getvalue())
        meta = build_metadata(
            femb_version=femb.__version__,
            backbone="iresnet_tiny",
            backbone_kwargs={},
            embed_dim=16,
            head=None,
            run_name=None,
            training=None,
            fp16=False,
            normalize_in_graph=True,
            exporter="torchscript",
        )
        meta.update(mean="127.5", std="127.5", input_layout="NHWC", input_dtype="uint8")
        set_metadata(model, meta)
        onnx.save(model, str(path))
        return path

    return write
