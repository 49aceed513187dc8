"""Keypoint models by name: each maps a ``(B, 1, 96, 96)`` face scaled to 0..1 to ``(B, 30)``.

The 30 outputs are ``x, y`` of the 15 keypoints in Kaggle column order, normalised to -1..1
by ``(v - 48) / 48``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

MODELS: dict[str, Callable[[], nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
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
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
    return factory()


class SezanNet(nn.Module):
    """The original notebook's network: four strided convolutions, then one linear layer."""

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2), nn.ReLU(), nn.Dropout(dropout),    # 32 x 47 x 47
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(), nn.Dropout(dropout),   # 64 x 22 x 22
            nn.Conv2d(64, 128, 3, stride=2), nn.ReLU(), nn.Dropout(dropout),  # 128 x 10 x 10
            nn.Conv2d(128, 256, 1, stride=2), nn.ReLU(), nn.Dropout(dropout),  # 256 x 5 x 5
        )
        self.head = nn.Linear(256 * 5 * 5, 30)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(faces).flatten(1))


@register_model("sezannet")
def sezannet() -> nn.Module:
    return SezanNet()
