"""IResNet (InsightFace layout): 112×112 input, BN–dropout–FC–BN embedding tail."""

from __future__ import annotations

import torch
from torch import nn

from femb.backbones.registry import register_backbone


class IBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class IResNet(nn.Module):
    """``layers`` blocks per stage; ``width`` scales the stage widths (64·width … 512·width)."""

    def __init__(self, layers: list[int], embed_dim: int = 512, dropout: float = 0.0, width: float = 1.0):
        super().__init__()
        widths = [max(8, int(c * width)) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-5)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(widths[0], layers[0], stride=2)
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(widths[3], eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(widths[3] * 7 * 7, embed_dim)
        self.features = nn.BatchNorm1d(embed_dim, eps=1e-5)
        # InsightFace fixes the last BN's scale at 1: the embedding's norm is learnt by the layers before.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )
        modules = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        modules += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


@register_backbone
def iresnet18(embed_dim: int = 512, **kwargs) -> IResNet:
    return IResNet([2, 2, 2, 2], embed_dim, **kwargs)


@register_backbone
def iresnet34(embed_dim: int = 512, **kwargs) -> IResNet:
    return IResNet([3, 4, 6, 3], embed_dim, **kwargs)


@register_backbone
def iresnet50(embed_dim: int = 512, **kwargs) -> IResNet:
    return IResNet([3, 4, 14, 3], embed_dim, **kwargs)


@register_backbone
def iresnet100(embed_dim: int = 512, **kwargs) -> IResNet:
    return IResNet([3, 13, 30, 3], embed_dim, **kwargs)


@register_backbone
def iresnet200(embed_dim: int = 512, **kwargs) -> IResNet:
    return IResNet([6, 26, 60, 6], embed_dim, **kwargs)


@register_backbone
def iresnet_tiny(embed_dim: int = 512, **kwargs) -> IResNet:
    """One block per stage at 1/8 width: the iresnet code path at test speed."""
    return IResNet([1, 1, 1, 1], embed_dim, width=0.125, **kwargs)
