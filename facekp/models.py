"""Keypoint models by name: each maps a ``(B, 1, 96, 96)`` face scaled to 0..1 to ``(B, 30)``.

The 30 outputs are ``x, y`` of the 15 keypoints in Kaggle column order, normalised to -1..1
by ``(v - 48) / 48``. Every convolution is a named module with a spatial output, so
:func:`list_conv_layers` can offer them to Grad-CAM, and every ReLU is out of place, so
forward and backward hooks see unmodified activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facekp.keypoints import FACE_SIZE, NUM_KEYPOINTS

MODELS: dict[str, Callable[[], nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register a factory that builds the model ``name`` with fresh weights."""

    def decorator(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        MODELS[name] = factory
        return factory

    return decorator


def create_model(name: str) -> nn.Module:
    """Build a registered model with fresh weights."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}"
        ) from None
    return factory()


def list_conv_layers(model: nn.Module) -> list[str]:
    """Return the qualified names of the model's ``nn.Conv2d`` modules, input side first.

    Each name works with ``model.get_submodule(name)``. Convolutions always have a spatial
    ``(B, C, H, W)`` output, so each is a valid Grad-CAM target layer.
    """
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


class SezanNet(nn.Module):
    """The original notebook's network: four strided convolutions, then one linear layer.

    Layer shapes: conv 1->32 (4x4, stride 2), 32->64 (4x4, stride 2), 64->128 (3x3,
    stride 2), 128->256 (1x1, stride 2), each followed by ReLU and Dropout(0.5), then
    Linear(256 * 5 * 5 -> 30). 332,286 parameters, 192,030 of them in the linear layer.
    """

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2), nn.ReLU(), nn.Dropout(dropout),    # 32 x 47 x 47
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(), nn.Dropout(dropout),   # 64 x 22 x 22
            nn.Conv2d(64, 128, 3, stride=2), nn.ReLU(), nn.Dropout(dropout),  # 128 x 10 x 10
            nn.Conv2d(128, 256, 1, stride=2), nn.ReLU(), nn.Dropout(dropout),  # 256 x 5 x 5
        )
        self.head = nn.Linear(256 * 5 * 5, 2 * NUM_KEYPOINTS)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(faces).flatten(1))


class ConvBlock(nn.Module):
    """3x3 convolution, batch norm and ReLU; ``stride=2`` halves the height and width."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    """Two 3x3 conv blocks with an identity shortcut; keeps the shape ``(B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(x + y)


def soft_argmax_2d(logits: torch.Tensor, stride: float) -> torch.Tensor:
    """Turn heatmap logits ``(B, K, H, W)`` into expected ``x, y`` positions ``(B, K, 2)``.

    A softmax over each map gives a probability per cell, and the position is the
    probability-weighted mean of the cell centres (integral regression), so it is
    differentiable and not limited to the grid. Cell ``i`` of a map at ``stride`` input
    pixels per cell has its centre at input pixel ``(i + 0.5) * stride - 0.5``.
    """
    batch, keypoints, height, width = logits.shape
    probabilities = F.softmax(logits.flatten(2).float(), dim=-1).view(
        batch, keypoints, height, width
    )
    xs = (torch.arange(width, device=logits.device, dtype=torch.float32) + 0.5) * stride - 0.5
    ys = (torch.arange(height, device=logits.device, dtype=torch.float32) + 0.5) * stride - 0.5
    x = (probabilities.sum(dim=2) * xs).sum(dim=-1)
    y = (probabilities.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


class HeatmapNet(nn.Module):
    """A small residual encoder with a feature pyramid decoder and soft-argmax heads.

    The encoder goes 96 -> 48 -> 24 -> 12 -> 6 pixels a side. The decoder upsamples the
    6x6 features back to 24x24, adding 1x1-projected encoder features at 12x12 and 24x24,
    and a final convolution gives one 24x24 heatmap per keypoint. Soft-argmax turns each map
    into a sub-pixel position (input pixels, 4 per cell), returned normalised to -1..1.
    """

    def __init__(
        self,
        widths: tuple[int, int, int, int] = (24, 48, 96, 160),
        deep_blocks: int = 2,
        refine: bool = True,
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        decoder = w2
        self.stem = ConvBlock(1, w1, stride=2)  # w1 x 48 x 48
        self.stage2 = nn.Sequential(ConvBlock(w1, w2, stride=2), ResidualBlock(w2))  # 24 x 24
        self.stage3 = nn.Sequential(ConvBlock(w2, w3, stride=2), ResidualBlock(w3))  # 12 x 12
        self.stage4 = nn.Sequential(
            ConvBlock(w3, w4, stride=2), *(ResidualBlock(w4) for _ in range(deep_blocks))
        )  # 6 x 6
        self.lateral4 = nn.Conv2d(w4, decoder, 1)
        self.lateral3 = nn.Conv2d(w3, decoder, 1)
        self.lateral2 = nn.Conv2d(w2, decoder, 1)
        self.refine = ConvBlock(decoder, decoder) if refine else nn.Identity()
        self.heatmaps = nn.Conv2d(decoder, NUM_KEYPOINTS, 3, padding=1)
        self.stride = FACE_SIZE / 24

    def forward_heatmaps(self, faces: torch.Tensor) -> torch.Tensor:
        """Return heatmap logits ``(B, 15, 24, 24)`` for faces ``(B, 1, 96, 96)`` in 0..1."""
        c2 = self.stage2(self.stem(faces))
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)

        p3 = self.lateral3(c3) + F.interpolate(self.lateral4(c4), scale_factor=2.0)
        p2 = self.lateral2(c2) + F.interpolate(p3, scale_factor=2.0)
        return self.heatmaps(self.refine(p2))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        keypoints = soft_argmax_2d(self.forward_heatmaps(faces), self.stride)  # input pixels
        half = FACE_SIZE / 2
        return ((keypoints - half) / half).flatten(1)


@register_model("sezannet")
def sezannet() -> nn.Module:
    return SezanNet()


@register_model("heatmapnet")
def heatmapnet() -> nn.Module:
    return HeatmapNet()


@register_model("heatmapnet-small")
def heatmapnet_small() -> nn.Module:
    return HeatmapNet(widths=(16, 32, 64, 128))


@register_model("heatmapnet-lite")
def heatmapnet_lite() -> nn.Module:
    return HeatmapNet(widths=(16, 32, 64, 128), deep_blocks=1, refine=False)
