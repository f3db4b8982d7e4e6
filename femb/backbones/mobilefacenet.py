"""MobileFaceNet (InsightFace ``mbf`` layout): depthwise-separable blocks and a GDC embedding tail."""

from __future__ import annotations

import torch
from torch import nn

from femb.backbones.registry import register_backbone


def conv_bn(
    in_c: int,
    out_c: int,
    kernel: int = 1,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    activation: bool = True,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
    ]
    if activation:
        layers.append(nn.PReLU(out_c))
    return nn.Sequential(*layers)


class DepthWise(nn.Module):
    """1×1 expand, k×k depthwise, 1×1 linear projection; a residual when shapes allow."""

    def __init__(self, in_c: int, out_c: int, groups: int, stride: int = 1, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            conv_bn(in_c, groups, 1),
            conv_bn(groups, groups, 3, stride, 1, groups=groups),
            conv_bn(groups, out_c, 1, activation=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


def residual_stage(channels: int, num_blocks: int, groups: int) -> nn.Sequential:
    return nn.Sequential(*[DepthWise(channels, channels, groups, residual=True) for _ in range(num_blocks)])


def gdc_embedding(channels: int, embed_dim: int) -> nn.Sequential:
    """MobileFaceNet's tail: a global depthwise convolution over the 7×7 map, then a linear
    embedding and BN (its keys, ``features.*``, are what InsightFace's ``mbf`` maps to)."""
    return nn.Sequential(
        conv_bn(channels, channels, 7, groups=channels, activation=False),
        nn.Flatten(),
        nn.Linear(channels, embed_dim, bias=False),
        nn.BatchNorm1d(embed_dim),
    )


def init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class MobileFaceNet(nn.Module):
    def __init__(
        self,
        embed_dim: int = 512,
        blocks: tuple[int, ...] = (1, 4, 6, 2),
        scale: int = 2,
        expansion: int = 128,
        tail_channels: int = 512,
    ):
        super().__init__()
        # Channel widths scale with ``scale``; the expanded (depthwise) widths do not, as in InsightFace.
        c64, c128 = 64 * scale, 128 * scale
        e1, e2, e4 = expansion, expansion * 2, expansion * 4
        stem: list[nn.Module] = [conv_bn(3, c64, 3, 2, 1)]
        if blocks[0] == 1:
            stem.append(conv_bn(c64, c64, 3, 1, 1, groups=e1 // 2))
        else:
            stem.append(residual_stage(c64, blocks[0], groups=e1))
        self.body = nn.Sequential(
            *stem,
            DepthWise(c64, c64, groups=e1, stride=2),
            residual_stage(c64, blocks[1], groups=e1),
            DepthWise(c64, c128, groups=e2, stride=2),
            residual_stage(c128, blocks[2], groups=e2),
            DepthWise(c128, c128, groups=e4, stride=2),
            residual_stage(c128, blocks[3], groups=e2),
            conv_bn(c128, tail_channels, 1),
        )
        self.features = gdc_embedding(tail_channels, embed_dim)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.body(x))


@register_backbone
def mobilefacenet(embed_dim: int = 512, **kwargs) -> MobileFaceNet:
    return MobileFaceNet(embed_dim, **kwargs)


@register_backbone
def mobilefacenet_small(embed_dim: int = 128, **kwargs) -> MobileFaceNet:
    """0.31M parameters at D=128: the CPU default until ``mobilefacenet_fast`` (same stages from
    28×28 on, faster per CPU step); kept for its checkpoints and tests."""
    kwargs.setdefault("blocks", (1, 2, 2, 1))
    kwargs.setdefault("scale", 1)
    kwargs.setdefault("expansion", 64)
    kwargs.setdefault("tail_channels", 256)
    return MobileFaceNet(embed_dim, **kwargs)


class MobileFaceNetFast(nn.Module):
    """``mobilefacenet_small`` with a cheap full-resolution stage: the CPU default ``mobilefacenet_fast``.

    On a CPU the 56×56 layers dominate a training step. In ``mobilefacenet_small`` they are the
    stem's 64 maps, InsightFace's 3×3 conv with ``groups=expansion // 2`` (2 channels per group,
    with no fast CPU kernel: its backward alone took a fifth to a third of a step) and the first
    downsampling block's 1×1 expansion, each with BatchNorm and PReLU over 64×56×56 values an image.
    Changed here, and why (step-time and accuracy figures: ``benchmarks/bench_cpu_backbone.py``):

    - the stem conv (3×3, stride 2) gives ``stem_channels`` (32) maps instead of 64, and they are
      the only layer at 56×56: the grouped conv is gone and the first downsampling block is
      separable (3×3 depthwise with stride 2, then a 1×1 to 64 channels at 28×28) instead of an
      inverted residual that expands at 56×56;
    - on a CPU the input is made ``channels_last``, oneDNN's native layout, so no conv reorders
      its input and output (the weights keep their layout; its share: benchmarks/RESULTS.md);
    - unchanged: MobileFaceNet's blocks at 28×28, 14×14 and 7×7 (``blocks`` per stage, as
      ``mobilefacenet_small``: 2, 2, 1), PReLU (ReLU was faster still but scored lower) and the
      GDC embedding tail.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        blocks: tuple[int, int, int] = (2, 2, 1),
        stem_channels: int = 32,
        scale: int = 1,
        expansion: int = 64,
        tail_channels: int = 256,
    ):
        super().__init__()
        if len(blocks) != 3:
            raise ValueError(f"blocks: one count per stage (28×28, 14×14, 7×7), got {tuple(blocks)}")
        c64, c128 = 64 * scale, 128 * scale
        e1, e2, e4 = expansion, expansion * 2, expansion * 4
        self.body = nn.Sequential(
            conv_bn(3, stem_channels, 3, 2, 1),  # 112 → 56
            conv_bn(stem_channels, stem_channels, 3, 2, 1, groups=stem_channels),  # 56 → 28
            conv_bn(stem_channels, c64, 1),
            residual_stage(c64, blocks[0], groups=e1),
            DepthWise(c64, c128, groups=e2, stride=2),  # 28 → 14
            residual_stage(c128, blocks[1], groups=e2),
            DepthWise(c128, c128, groups=e4, stride=2),  # 14 → 7
            residual_stage(c128, blocks[2], groups=e2),
            conv_bn(c128, tail_channels, 1),
        )
        self.features = gdc_embedding(tail_channels, embed_dim)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.features(self.body(x))


@register_backbone
def mobilefacenet_fast(embed_dim: int = 128, **kwargs) -> MobileFaceNetFast:
    """0.30M parameters at D=128, faster per CPU training step than ``mobilefacenet_small`` at
    accuracy within seed noise of it: the CPU default (see :class:`MobileFaceNetFast`; the
    figures are in benchmarks/RESULTS.md)."""
    return MobileFaceNetFast(embed_dim, **kwargs)
