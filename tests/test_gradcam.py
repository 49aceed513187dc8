"""Grad-CAM and saliency: agreement with Captum, and no side effects on the shared model."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from PIL import Image
from torch import nn

from facekp.checkpoint import load_model
from facekp.cli import main
from facekp.gradcam import (
    KeypointTarget,
    default_layer,
    grad_cam,
    keypoint_target,
    list_layers,
    saliency,
)
from facekp.keypoints import KEYPOINT_NAMES
from facekp.models import MODELS, create_model, list_conv_layers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def faces(real_faces) -> np.ndarray:
    """Four real 96x96 faces."""
    return real_faces.images[:4]


def seeded_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name).eval()


def captum_grad_cam(model: nn.Module, face: np.ndarray, layer: str, target) -> np.ndarray:
    """Captum's LayerGradCam map ``(h, w)`` for the same layer and target, with ReLU."""
    explainer = LayerGradCam(lambda inputs: target(model(inputs)), model.get_submodule(layer))
    inputs = torch.from_numpy(face.astype(np.float32) / 255.0)[None, None]
    return explainer.attribute(inputs, relu_attributions=True).detach()[0, 0].numpy()


def hook_counts(model: nn.Module) -> int:
    """Count every forward, pre-forward and backward hook on every module."""
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(module._backward_pre_hooks)
        for module in model.modules()
    )


def test_target_columns_and_sign() -> None:
    nose = KEYPOINT_NAMES.index("nose_tip")
    outputs = torch.arange(60, dtype=torch.float32).reshape(2, 30)

    x_plus = keypoint_target("nose_tip", "x", "+")
    y_minus = keypoint_target("nose_tip", "y", "-")
    both = keypoint_target("nose_tip", "both", 1)
    every = keypoint_target("all", "x", "+")

    assert x_plus.columns == [2 * nose]
    assert both.columns == [2 * nose, 2 * nose + 1]
    assert len(every.columns) == 15
    assert torch.equal(x_plus(outputs), outputs[:, 2 * nose])
    assert torch.equal(y_minus(outputs), -outputs[:, 2 * nose + 1])
    assert torch.equal(every(outputs), outputs[:, 0::2].sum(dim=1))
    assert x_plus.describe() == "+x of nose_tip"


def test_target_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown keypoint 'nose'"):
        keypoint_target("nose")
    with pytest.raises(ValueError, match="sign"):
        keypoint_target("nose_tip", sign="up")
    with pytest.raises(ValueError, match="coordinate"):
        KeypointTarget(keypoints=(0,), coordinate="z")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_layers_include_every_conv(name: str) -> None:
    model = seeded_model(name)

    listed = {layer.name: layer for layer in list_layers(model)}

    for conv in list_conv_layers(model):
        assert conv in listed
        assert len(listed[conv].shape) == 3
    assert default_layer(model) in listed


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_layer_has_real_weights(name: str, faces: np.ndarray) -> None:
    model = seeded_model(name)
    layer = default_layer(model)

    results = [
        grad_cam(model, faces[0], layer, keypoint_target("nose_tip", "x", sign))
        for sign in ("+", "-")
    ]

    for result in results:
        assert result.message is None or "zero up to rounding" not in result.message, layer
    assert any(not result.empty for result in results), layer


def test_default_layers_per_model() -> None:
    assert default_layer(seeded_model("sezannet")) == "features.9"
    assert default_layer(seeded_model("heatmapnet")) == "refine.bn"
    assert default_layer(seeded_model("heatmapnet-lite")) == "stage4.1.bn2"


def test_default_layer_lights_nose(shipped, real_faces) -> None:
    """The +x map of nose_tip is brighter near the predicted nose tip than on average."""
    layer = default_layer(shipped.model)
    target = keypoint_target("nose_tip", "x", "+")
    nose = KEYPOINT_NAMES.index("nose_tip")
    rows, columns = np.mgrid[:96, :96]

    ratios = []
    for face in real_faces.images:
        result = grad_cam(shipped.model, face, layer, target)
        assert not result.empty, result.message
        x, y = result.keypoints[nose]
        near = (columns - x) ** 2 + (rows - y) ** 2 < 16**2
        ratios.append(result.heatmap[near].mean() / result.heatmap.mean())

    assert np.median(ratios) > 1.3
    assert np.mean(np.array(ratios) > 1.0) >= 0.6


def test_rounding_noise_map_is_empty(shipped, faces: np.ndarray) -> None:
    """The heatmap layer's exact weights are zero, so its float32 map is only noise."""
    target = keypoint_target("nose_tip", "x", "+")

    result = grad_cam(shipped.model, faces[0], "heatmaps", target)
    noise = captum_grad_cam(shipped.model, faces[0], "heatmaps", target)

    assert noise.max() > 0
    assert result.empty
    assert "zero up to rounding" in result.message
    assert default_layer(shipped.model) in result.message
    assert not result.heatmap.any()
    assert not result.layer_map.any()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_matches_captum_on_each_model(name: str, faces: np.ndarray) -> None:
    model = seeded_model(name)
    target = keypoint_target("left_eye_center", "x", "+")
    conv_layers = list_conv_layers(model)

    for layer in (conv_layers[0], conv_layers[len(conv_layers) // 2], conv_layers[-1]):
        result = grad_cam(model, faces[0], layer, target)
        ours = result.layer_map
        theirs = captum_grad_cam(model, faces[0], layer, target)
        if result.message is not None and "zero up to rounding" in result.message:
            # Captum keeps the rounding noise that grad_cam sets to zero.
            assert not ours.any(), layer
            continue

        assert ours.shape == theirs.shape
        assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-6 * max(1e-12, np.abs(theirs).max()))


def test_matches_captum_on_shipped_model(shipped, faces: np.ndarray) -> None:
    targets = [
        keypoint_target("nose_tip", "x", "+"),
        keypoint_target("mouth_left_corner", "y", "-"),
        keypoint_target("all", "both", "+"),
    ]
    conv_layers = list_conv_layers(shipped.model)
    # Eight convolutions spread from the input to the output keep the test fast.
    chosen = [conv_layers[i] for i in np.linspace(0, len(conv_layers) - 1, 8).round().astype(int)]
    checked_nonzero = 0
    for index, layer in enumerate(dict.fromkeys(chosen)):
        target = targets[index % len(targets)]
        result = grad_cam(shipped.model, faces[1], layer, target)
        theirs = captum_grad_cam(shipped.model, faces[1], layer, target)

        if result.message is not None and "zero up to rounding" in result.message:
            # Captum keeps the rounding noise that grad_cam sets to zero.
            assert not result.layer_map.any(), layer
            continue
        tolerance = 1e-5 * np.abs(theirs).max()
        assert np.allclose(result.layer_map, theirs, rtol=1e-4, atol=tolerance), layer
        assert result.empty == (theirs.max() <= 0), layer
        checked_nonzero += int(theirs.max() > 0)
    assert checked_nonzero > 0


def test_predicted_keypoints_match_model(shipped, faces: np.ndarray) -> None:
    layer = default_layer(shipped.model)

    result = grad_cam(shipped.model, faces[2], layer, keypoint_target("nose_tip"))

    expected = shipped.predict(faces[2:3])[0]
    assert np.allclose(result.keypoints, expected, atol=1e-4)
    assert result.heatmap.shape == (96, 96)
    assert result.heatmap.dtype == np.float32
    if not result.empty:
        assert result.heatmap.max() == pytest.approx(1.0)
        assert result.heatmap.min() >= 0.0


def test_no_side_effects_on_model(shipped, faces: np.ndarray) -> None:
    model = shipped.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    training = model.training
    hooks = hook_counts(model)

    conv_layers = list_conv_layers(model)
    for layer in (conv_layers[0], conv_layers[len(conv_layers) // 2], conv_layers[-1]):
        grad_cam(model, faces[0], layer, keypoint_target("all"))
    saliency(model, faces[0], keypoint_target("nose_tip", "y"))

    assert model.training == training
    assert hook_counts(model) == hooks == 0
    for name, parameter in model.named_parameters():
        assert parameter.grad is None, name
        assert parameter.requires_grad == flags[name], name
        assert torch.equal(parameter, before[name]), name
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name]), name


def test_training_mode_model_left_alone(faces: np.ndarray) -> None:
    model = seeded_model("heatmapnet").train()
    running_means = {n: b.clone() for n, b in model.named_buffers() if "running_mean" in n}
    assert running_means

    result = grad_cam(model, faces[0], "stage3.0.conv", keypoint_target("nose_tip", "x"))

    assert model.training
    for name, mean in running_means.items():
        assert torch.equal(model.get_submodule(name.rsplit(".", 1)[0]).running_mean, mean)
    expected = grad_cam(model.eval(), faces[0], "stage3.0.conv", keypoint_target("nose_tip", "x"))
    assert np.allclose(result.layer_map, expected.layer_map)


def test_frozen_parameters_still_work(faces: np.ndarray) -> None:
    model = seeded_model("sezannet")
    for parameter in model.parameters():
        parameter.requires_grad_(False)

    result = grad_cam(model, faces[0], "features.3", keypoint_target("nose_tip", "x"))
    sal = saliency(model, faces[0], keypoint_target("nose_tip", "x"))

    assert not result.empty
    assert not sal.empty
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_hooks_removed_after_error(faces: np.ndarray) -> None:
    model = seeded_model("sezannet")

    def failing_target(outputs: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        grad_cam(model, faces[0], "features.3", failing_target)
    with pytest.raises(ValueError, match="unknown layer 'features.99'"):
        grad_cam(model, faces[0], "features.99", keypoint_target())
    with pytest.raises(ValueError, match="not a spatial"):
        grad_cam(model, faces[0], "head", keypoint_target())

    assert hook_counts(model) == 0


def test_works_inside_inference_mode(faces: np.ndarray) -> None:
    model = seeded_model("sezannet")
    expected = grad_cam(model, faces[0], "features.6", keypoint_target("nose_tip", "y"))

    with torch.inference_mode():
        result = grad_cam(model, faces[0], "features.6", keypoint_target("nose_tip", "y"))
        sal = saliency(model, faces[0], keypoint_target("nose_tip", "y"))

    assert np.array_equal(result.layer_map, expected.layer_map)
    assert not sal.empty


class SmallNet(nn.Module):
    """Two convolutions with ReLU between them, in place or not, then a linear head."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, stride=4)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.head = nn.Linear(8 * 11 * 11, 30)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu2(self.conv2(self.relu1(self.conv1(faces)))).flatten(1))


def test_inplace_relu_does_not_corrupt_activation(faces: np.ndarray) -> None:
    torch.manual_seed(1)
    plain = SmallNet(inplace=False).eval()
    inplace = SmallNet(inplace=True).eval()
    inplace.load_state_dict(plain.state_dict())

    for layer in ("conv1", "conv2"):
        nonzero_maps = 0
        for sign in ("+", "-"):
            target = keypoint_target("right_eye_center", "both", sign)
            expected = grad_cam(plain, faces[0], layer, target)
            result = grad_cam(inplace, faces[0], layer, target)

            # A conv output has negative values that an in-place ReLU would overwrite with 0.
            assert np.allclose(result.layer_map, expected.layer_map, atol=1e-7)
            nonzero_maps += int(not expected.empty)
        assert nonzero_maps >= 1, layer
    assert hook_counts(inplace) == 0


class PositiveNet(nn.Module):
    """A net whose outputs grow with every activation, so a negative target's Grad-CAM is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 8, stride=8)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4 * 12 * 12, 30)
        with torch.no_grad():
            self.conv.weight.fill_(0.01)
            self.conv.bias.fill_(0.1)
            self.head.weight.fill_(0.01)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(faces)).flatten(1))


def test_all_zero_map_is_reported(faces: np.ndarray) -> None:
    model = PositiveNet().eval()

    down = grad_cam(model, faces[0], "relu", keypoint_target("nose_tip", "y", "-"))
    up = grad_cam(model, faces[0], "relu", keypoint_target("nose_tip", "y", "+"))

    assert down.empty
    assert "zero everywhere" in down.message
    assert "opposite sign" in down.message
    assert not down.heatmap.any()
    assert not up.empty
    assert up.message is None
    assert up.heatmap.max() == pytest.approx(1.0)


class DeadBranchNet(nn.Module):
    """A net that runs a convolution whose output never reaches the keypoints."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Conv2d(1, 2, 8, stride=8)
        self.unused = nn.Conv2d(1, 2, 8, stride=8)
        self.head = nn.Linear(2 * 12 * 12, 30)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        self.unused(faces)
        return self.head(self.used(faces).flatten(1))


def test_layer_off_output_path_is_reported(faces: np.ndarray) -> None:
    model = DeadBranchNet().eval()

    result = grad_cam(model, faces[0], "unused", keypoint_target())

    assert result.empty
    assert "does not depend on this layer" in result.message
    assert not result.heatmap.any()
    assert hook_counts(model) == 0


def test_saliency_matches_finite_differences(shipped, faces: np.ndarray) -> None:
    model = shipped.model
    target = keypoint_target("nose_tip", "x", "+")

    result = saliency(model, faces[3], target)

    base = torch.from_numpy(faces[3].astype(np.float32) / 255.0)[None, None].double()
    model64 = _double_copy(model)
    step = 1e-4
    for index in np.argsort(result.layer_map, axis=None)[-3:]:
        row, column = np.unravel_index(index, result.layer_map.shape)
        plus, minus = base.clone(), base.clone()
        plus[0, 0, row, column] += step
        minus[0, 0, row, column] -= step
        with torch.no_grad():
            slope = (target(model64(plus)) - target(model64(minus))).item() / (2 * step)
        assert abs(slope) == pytest.approx(float(result.layer_map[row, column]), rel=0.05)


def _double_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double().eval()


def test_two_threads_on_one_model(shipped, faces: np.ndarray) -> None:
    model = shipped.model
    conv_layers = list_conv_layers(model)
    jobs = [
        (conv_layers[0], keypoint_target("nose_tip", "x", "+"), faces[0]),
        (conv_layers[-1], keypoint_target("left_eye_center", "y", "-"), faces[1]),
    ]
    expected = [grad_cam(model, face, layer, target).layer_map for layer, target, face in jobs]
    expected_prediction = shipped.predict(faces)
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}
    predictions: list[np.ndarray] = []
    barrier = threading.Barrier(3)

    def explain(job: int) -> None:
        layer, target, face = jobs[job]
        barrier.wait()
        for _ in range(15):
            results[job].append(grad_cam(model, face, layer, target).layer_map)

    def predict() -> None:
        barrier.wait()
        for _ in range(15):
            predictions.append(shipped.predict(faces))

    threads = [threading.Thread(target=explain, args=(job,)) for job in (0, 1)]
    threads.append(threading.Thread(target=predict))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for job in (0, 1):
        assert len(results[job]) == 15
        for layer_map in results[job]:
            assert np.allclose(layer_map, expected[job], rtol=1e-5, atol=1e-9)
    assert len(predictions) == 15
    for prediction in predictions:
        assert np.allclose(prediction, expected_prediction, atol=1e-5)
    assert hook_counts(model) == 0


def test_cli_writes_overlay(ytf68: Path, tmp_path: Path, shipped, capsys) -> None:
    out = tmp_path / "cam.png"
    photo = ytf68 / "test" / "Adam_Sandler_01.jpg"

    status = main(
        ["gradcam", str(photo), "--keypoint", "nose_tip", "--coordinate", "x", "--out", str(out)]
    )

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert out.is_file()
    with Image.open(out) as image:
        assert image.size == (384, 384)
        assert image.mode == "RGB"
    assert "+x of nose_tip" in captured.out


def test_cli_lists_layers(shipped, capsys) -> None:
    status = main(["gradcam", "--list-layers"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    for layer in list_conv_layers(shipped.model):
        assert layer in captured.out


def test_cli_rejects_bad_choices(ytf68: Path, tmp_path: Path, capsys) -> None:
    photo = str(ytf68 / "test" / "Adam_Sandler_01.jpg")
    out = str(tmp_path / "cam.png")

    bad_layer = main(["gradcam", photo, "--layer", "no.such.layer", "--out", out])
    bad_layer_err = capsys.readouterr().err
    bad_face = main(["gradcam", photo, "--face", "7", "--out", out])
    bad_face_err = capsys.readouterr().err
    text = tmp_path / "notes.png"
    text.write_text("a text file with an image extension")
    not_image = main(["gradcam", str(text), "--out", out])
    not_image_err = capsys.readouterr().err

    assert bad_layer == 2
    assert "unknown layer 'no.such.layer'" in bad_layer_err
    assert bad_face == 1
    assert "--face 7 does not exist" in bad_face_err
    assert not_image == 1
    assert "not an image" in not_image_err
    assert not Path(out).exists()


def test_cli_prints_photo_error_once(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("a text file with an image extension")

    completed = subprocess.run(
        [sys.executable, "-m", "facekp", "gradcam", str(text), "--out", str(tmp_path / "c.png")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 1
    assert completed.stderr.count("not an image in a supported format") == 1, completed.stderr


def test_cli_runs_as_module(ytf68: Path, tmp_path: Path) -> None:
    out = tmp_path / "saliency.png"
    photo = ytf68 / "test" / "Adam_Sandler_01.jpg"

    completed = subprocess.run(
        [sys.executable, "-m", "facekp", "gradcam", str(photo), "--saliency", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "input: +(x+y) of all keypoints" in completed.stdout
    assert out.is_file()
    assert "Traceback" not in completed.stderr
