"""Classification heads: plain softmax and the angular-margin family, built by name.

Every head is an ``nn.Module`` ``(in_features, out_features, **options)`` owning ``weight``
(``out_features × in_features``; sub-centre heads: ``out_features·K × in_features``);
``forward(embeddings, labels)`` returns float32 logits for ``torch.nn.CrossEntropyLoss`` (label
``-1``: no margin), and ``extra_loss(embeddings)`` a term the model adds to the loss, or ``None``.
Each head declares its options once (:class:`HeadOption`), read by :func:`head_options` and
:func:`parse_head_options`.

Every module of this package is imported below, so a new head registers itself by its file alone.
"""

import importlib
import pkgutil

from femb.headers.adaface import AdaFaceHeader
from femb.headers.arcface import ArcFaceHeader
from femb.headers.base import Header, MarginHeader
from femb.headers.combined import CombinedMarginHeader
from femb.headers.cosface import CosFaceHeader
from femb.headers.curricularface import CurricularFaceHeader
from femb.headers.elasticface import ElasticFaceHeader
from femb.headers.linear import LinearHeader
from femb.headers.magface import MagFaceHeader
from femb.headers.options import HeadOption
from femb.headers.registry import (
    build_header,
    head_options,
    header_class,
    header_spec,
    list_headers,
    parse_head_options,
    register_header,
)
from femb.headers.sphereface import SphereFaceHeader
from femb.headers.subcenter_arcface import SubCenterArcFaceHeader, find_dominant_centre_outliers

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AdaFaceHeader",
    "ArcFaceHeader",
    "CombinedMarginHeader",
    "CosFaceHeader",
    "CurricularFaceHeader",
    "ElasticFaceHeader",
    "HeadOption",
    "Header",
    "LinearHeader",
    "MagFaceHeader",
    "MarginHeader",
    "SphereFaceHeader",
    "SubCenterArcFaceHeader",
    "build_header",
    "find_dominant_centre_outliers",
    "head_options",
    "header_class",
    "header_spec",
    "list_headers",
    "parse_head_options",
    "register_header",
]
