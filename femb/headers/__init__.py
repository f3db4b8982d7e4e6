"""Classification heads: plain softmax and the angular-margin family, built by name.

Every head is an ``nn.Module`` ``(in_features, out_features, **kwargs)`` owning ``weight``
(``out_features × in_features``); ``forward(embeddings, labels)`` returns float32 logits for
``torch.nn.CrossEntropyLoss`` (label ``-1``: no margin), and ``extra_loss(embeddings)`` a term the
model adds to the loss, or ``None``.
"""

from femb.headers.arcface import ArcFaceHeader
from femb.headers.base import Header, MarginHeader
from femb.headers.combined import CombinedMarginHeader
from femb.headers.cosface import CosFaceHeader
from femb.headers.linear import LinearHeader
from femb.headers.magface import MagFaceHeader
from femb.headers.registry import build_header, header_class, header_spec, list_headers, register_header
from femb.headers.sphereface import SphereFaceHeader

__all__ = [
    "ArcFaceHeader",
    "CombinedMarginHeader",
    "CosFaceHeader",
    "Header",
    "LinearHeader",
    "MagFaceHeader",
    "MarginHeader",
    "SphereFaceHeader",
    "build_header",
    "header_class",
    "header_spec",
    "list_headers",
    "register_header",
]
