"""Registered keypoint models: shapes, gradients, named conv layers, soft-argmax."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facekp.models import MODELS, SezanNet, create_model, list_conv_layers, soft_argmax_2d


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_output_shape(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    faces = torch.rand(3, 1, 96, 96)

    with torch.no_grad():
        output = model(faces)

    assert output.shape == (3, 30)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_gradient_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    faces = torch.rand(4, 1, 96, 96)

    model(faces).square().sum().backward()

    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conv_layers_have_spatial_outputs(name: str) -> None:
    model = create_model(name).eval()
    layers = list_conv_layers(model)
    outputs: dict[str, tuple[int, ...]] = {}
    hooks = [
        model.get_submodule(layer).register_forward_hook(
            lambda module, inputs, output, layer=layer: outputs.__setitem__(layer, output.shape)
        )
        for layer in layers
    ]

    with torch.no_grad():
        model(torch.rand(1, 1, 96, 96))
    for hook in hooks:
        hook.remove()

    assert layers
    assert set(outputs) == set(layers)
    for layer, shape in outputs.items():
        assert len(shape) == 4, layer
        assert shape[2] > 1, layer
        assert shape[3] > 1, layer


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_relus_not_inplace(name: str) -> None:
    model = create_model(name)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert all(not relu.inplace for relu in relus)


def test_sezannet_matches_notebook_layers() -> None:
    model = SezanNet()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    dropouts = [m for m in model.features if isinstance(m, nn.Dropout)]
    relus = [m for m in model.features if isinstance(m, nn.ReLU)]

    shapes = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs]
    assert shapes == [
        (1, 32, (4, 4), (2, 2), (0, 0)),
        (32, 64, (4, 4), (2, 2), (0, 0)),
        (64, 128, (3, 3), (2, 2), (0, 0)),
        (128, 256, (1, 1), (2, 2), (0, 0)),
    ]
    assert len(relus) == 4
    assert [d.p for d in dropouts] == [0.5] * 4
    assert (model.head.in_features, model.head.out_features) == (256 * 5 * 5, 30)


def test_soft_argmax_finds_peak_cell_centre() -> None:
    logits = torch.full((1, 2, 24, 24), -50.0)
    logits[0, 0, 5, 7] = 50.0  # row 5, column 7
    logits[0, 1, 23, 0] = 50.0

    positions = soft_argmax_2d(logits, stride=4.0)

    # Cell i of a stride-4 map is centred on input pixel (i + 0.5) * 4 - 0.5.
    assert positions[0, 0].tolist() == pytest.approx([29.5, 21.5], abs=1e-3)
    assert positions[0, 1].tolist() == pytest.approx([1.5, 93.5], abs=1e-3)


def test_soft_argmax_interpolates_between_cells() -> None:
    logits = torch.full((1, 1, 24, 24), -50.0)
    logits[0, 0, 10, 10] = 50.0
    logits[0, 0, 10, 11] = 50.0

    positions = soft_argmax_2d(logits, stride=4.0)

    assert positions[0, 0].tolist() == pytest.approx([43.5, 41.5], abs=1e-3)


def test_create_model_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope")
