"""Grad-CAM and input-gradient saliency for keypoint regression models.

A keypoint model outputs ``(B, 30)``: ``x, y`` of the 15 keypoints in Kaggle column order,
normalised to -1..1. A *target* is a callable that reduces that output to one number per
face, ``(B,)``, for example ``+x`` of the nose tip. Grad-CAM (gradient-weighted class
activation mapping) weights each channel of a layer's activation by the mean gradient of
the target over that channel, sums the channels and keeps the positive part. The result
marks the regions whose features push the target up. With ``sign=+1`` that means moving
the point right (``x``) or down (``y``), and ``sign=-1`` explains moves left or up.

The model is shared (a web app serves several people from one cached model), so these
functions never change it. They do not switch its train/eval mode, touch ``requires_grad``
or write ``.grad`` of its parameters, because gradients come from ``torch.autograd.grad`` on
the activation or input only. Their forward hooks act only on the thread that registered
them and are removed on exit. A model in training mode is explained through an eval-mode
copy, because a forward pass in training mode would update its batch-norm statistics.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facekp.keypoints import FACE_SIZE, KEYPOINT_NAMES, denormalize_keypoints

log = logging.getLogger(__name__)

Target = Callable[[torch.Tensor], torch.Tensor]

COORDINATES = ("x", "y", "both")

# Modules that return their input unchanged in eval mode; Grad-CAM on them repeats the
# layer before, so list_layers leaves them out.
_PASS_THROUGH_KINDS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "Identity")
INPUT_LAYER = "input"

# Activation modules: default_layer picks the input of the last one that runs.
_ACTIVATION_KINDS = (
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Hardswish", "Hardtanh", "Sigmoid", "Tanh", "Softplus",
)

# Grad-CAM channel weights below this fraction of the mean absolute gradient count as zero
# (see _weight_ratio). At the heatmap layer of a soft-argmax model the exact weights are
# zero, and float32 rounding left ratios of at most 8e-6 there, measured with the shipped
# model on 49 ytf68 test faces and four targets. Its other layers gave at least 1.3e-4.
NEGLIGIBLE_WEIGHT_RATIO = 3e-5


@dataclass(frozen=True)
class KeypointTarget:
    """A target on the ``(B, 30)`` model output: the signed sum of chosen coordinates.

    ``keypoints`` are indices into :data:`facekp.keypoints.KEYPOINT_NAMES`; ``coordinate``
    is ``"x"``, ``"y"`` or ``"both"`` (``x + y``); ``sign`` is ``+1`` or ``-1``.
    """

    keypoints: tuple[int, ...]
    coordinate: str = "both"
    sign: int = 1

    def __post_init__(self) -> None:
        if self.coordinate not in COORDINATES:
            raise ValueError(f"coordinate must be one of {COORDINATES}, got {self.coordinate!r}")
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign!r}")
        if not self.keypoints or not all(0 <= k < len(KEYPOINT_NAMES) for k in self.keypoints):
            raise ValueError(f"keypoints must be indices 0..14, got {self.keypoints}")

    @property
    def columns(self) -> list[int]:
        """Indices into the 30 outputs that the target adds up."""
        axes = {"x": (0,), "y": (1,), "both": (0, 1)}[self.coordinate]
        return [2 * keypoint + axis for keypoint in self.keypoints for axis in axes]

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.sign * outputs[:, self.columns].sum(dim=1)

    def describe(self) -> str:
        """Return a short label such as ``+x of nose_tip`` or ``-x+y of all keypoints``."""
        sign = "+" if self.sign > 0 else "-"
        axes = {"x": f"{sign}x", "y": f"{sign}y", "both": f"{sign}(x+y)"}[self.coordinate]
        if len(self.keypoints) == len(KEYPOINT_NAMES):
            return f"{axes} of all keypoints"
        return f"{axes} of {', '.join(KEYPOINT_NAMES[k] for k in self.keypoints)}"


def keypoint_target(
    keypoint: str | None = None, coordinate: str = "both", sign: int | str = 1
) -> KeypointTarget:
    """Build a :class:`KeypointTarget` from a keypoint name (``None`` or ``"all"``: all 15).

    ``sign`` is ``+1``/``-1`` or ``"+"``/``"-"``. Raises ``ValueError`` for an unknown name.
    """
    if keypoint is None or keypoint == "all":
        indices = tuple(range(len(KEYPOINT_NAMES)))
    elif keypoint in KEYPOINT_NAMES:
        indices = (KEYPOINT_NAMES.index(keypoint),)
    else:
        raise ValueError(
            f"unknown keypoint {keypoint!r}; choose 'all' or one of {', '.join(KEYPOINT_NAMES)}"
        )
    signs = {"+": 1, "-": -1, 1: 1, -1: -1}
    if sign not in signs:
        raise ValueError(f"sign must be '+', '-', 1 or -1, got {sign!r}")
    return KeypointTarget(keypoints=indices, coordinate=coordinate, sign=signs[sign])


@dataclass(frozen=True)
class AttributionMap:
    """One face's Grad-CAM or saliency map.

    ``heatmap`` is ``(96, 96)`` float32 in 0..1 over the face crop (the layer map resized
    bilinearly, then divided by its maximum). ``layer_map`` is the unnormalised map at the
    layer's own resolution ``(h, w)`` (for saliency, ``|d target / d input|`` at 96x96).
    ``keypoints`` is the model's prediction ``(15, 2)`` in crop pixels from the same forward
    pass. ``empty`` is True when the map is zero everywhere, and ``message`` then explains why.
    A Grad-CAM map whose channel weights are zero up to float32 rounding (below
    :data:`NEGLIGIBLE_WEIGHT_RATIO`) counts as zero, so both maps are then all zeros.
    """

    heatmap: np.ndarray
    layer_map: np.ndarray
    layer: str
    target: str
    keypoints: np.ndarray
    empty: bool
    message: str | None = None


@dataclass(frozen=True)
class LayerInfo:
    """A layer whose output is spatial: qualified ``name``, module ``kind`` and ``(C, H, W)``."""

    name: str
    kind: str
    shape: tuple[int, int, int]


def list_layers(model: nn.Module) -> list[LayerInfo]:
    """List the modules of ``model`` with a spatial ``(B, C, H, W)`` output, in forward order.

    Grad-CAM accepts each of them. Found by one forward pass of a blank face through an
    eval-mode copy, so the shared model is untouched. Modules that run more than once per
    forward pass (a ReLU object reused inside a block) are left out, because their
    activation is ambiguous, and so are dropout and identity modules, whose eval-mode output
    is their input.
    """
    return _probe(model)[0]


def default_layer(model: nn.Module) -> str:
    """Return the layer whose output feeds the model's last activation (ReLU or similar).

    Grad-CAM weights each channel by the spatial mean of its gradient. After the last
    activation, a heatmap model is linear and translation-equivariant up to its soft-argmax,
    whose gradient sums to zero over each heatmap, so those means vanish: exactly at the
    heatmap layer, and up to border effects before it. The last activation's input is the
    deepest activation still gated by the face. For a convolutional network with a linear
    head this is the last convolution. Models without an activation module get their last
    convolution.
    """
    layers, feeding_last_activation = _probe(model)
    if feeding_last_activation is not None:
        return feeding_last_activation
    convolutions = [layer.name for layer in layers if layer.kind == "Conv2d"]
    if not convolutions:
        raise ValueError("the model has no Conv2d layer with a spatial output; pass a layer name")
    return convolutions[-1]


def _probe(model: nn.Module) -> tuple[list[LayerInfo], str | None]:
    """Run a blank face through an eval copy; return the spatial layers and the default layer.

    The second value is the listed layer that last produced an output before the last call
    of an activation module, or None when no activation module runs after a listed layer.
    NOTE: that layer is taken to be the activation's input, which holds for sequential
    blocks and for residual blocks that add a shortcut just before their final ReLU.
    """
    probe = _copy_without_hooks(model).eval()
    calls: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    # Forward order of module outputs ("output", name) and activation calls ("activation", "").
    events: list[tuple[str, str]] = []
    handles = []
    for name, module in probe.named_modules():
        if not name:
            continue

        def record(module: nn.Module, inputs: object, output: object, name: str = name) -> None:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            calls.setdefault(name, []).append((type(module).__name__, shape))
            events.append(("output", name))

        def record_activation(module: nn.Module, inputs: object) -> None:
            events.append(("activation", ""))

        handles.append(module.register_forward_hook(record))
        if type(module).__name__ in _ACTIVATION_KINDS:
            handles.append(module.register_forward_pre_hook(record_activation))
    try:
        with torch.inference_mode(False), torch.no_grad():
            probe(torch.zeros(1, 1, FACE_SIZE, FACE_SIZE))
    finally:
        for handle in handles:
            handle.remove()

    layers = []
    for name, records in calls.items():
        kind, shape = records[0]
        if kind in _PASS_THROUGH_KINDS:
            continue
        if len(records) == 1 and len(shape) == 4 and shape[2] > 1 and shape[3] > 1:
            layers.append(LayerInfo(name=name, kind=kind, shape=tuple(shape[1:])))

    listed = {layer.name for layer in layers}
    feeding: str | None = None
    last_output: str | None = None
    for kind, name in events:
        if kind == "output" and name in listed:
            last_output = name
        elif kind == "activation" and last_output is not None:
            feeding = last_output
    return layers, feeding


def grad_cam(model: nn.Module, face: np.ndarray, layer: str, target: Target) -> AttributionMap:
    """Compute Grad-CAM of ``target`` at ``layer`` for one face ``(96, 96)`` uint8.

    ``layer`` is a qualified module name from :func:`list_layers`. Raises ``ValueError`` for
    an unknown layer, a layer without a spatial output, or one that runs more than once.
    """
    _find_layer(model, layer)
    description = _describe(target)

    # Step 1: one forward pass that records the layer's activation, then its gradient.
    with _explainable(model) as explained:
        faces = _face_tensor(face)
        with _LayerRecorder(explained.get_submodule(layer)) as recorder:
            outputs = explained(faces)
        activation = recorder.activation(layer)
        gradient = _gradient(target(outputs), activation)

    # Step 2: weight each channel by its mean gradient, sum, keep the positive part.
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    weight_ratio = _weight_ratio(weights, gradient)
    if weight_ratio < NEGLIGIBLE_WEIGHT_RATIO:
        weights = torch.zeros_like(weights)
    layer_map = F.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
    heatmap = F.interpolate(
        layer_map, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False
    )

    if not gradient.any():
        empty_message = (
            f"the gradient of {description} with respect to {layer} is zero everywhere, so "
            "the target does not depend on this layer for this face; pick another layer"
        )
    elif weight_ratio < NEGLIGIBLE_WEIGHT_RATIO:
        empty_message = (
            f"the Grad-CAM channel weights of {layer} for {description} are zero up to "
            f"rounding ({weight_ratio:.1e} of the mean absolute gradient). The gradient "
            "cancels over each channel, as it does for a heatmap layer read out by "
            "soft-argmax, so the map would only show rounding noise. Pick a layer before "
            f"the model's last activation, such as the default {default_layer(model)}"
        )
    else:
        empty_message = (
            f"the Grad-CAM map of {layer} for {description} is zero everywhere: no region of "
            "this layer pushes the target up (every weighted channel sum is negative or zero, "
            "so ReLU removes it); try the opposite sign or another layer"
        )
    return _attribution(heatmap[0, 0], layer_map[0, 0], layer, description, outputs, empty_message)


def _weight_ratio(weights: torch.Tensor, gradient: torch.Tensor) -> float:
    """Return the Grad-CAM weights' size relative to the gradient's: 0..1, 0 when all zero.

    ``weights`` ``(1, C, 1, 1)`` are the spatial means of ``gradient`` ``(1, C, H, W)``. The
    ratio is ``sum |weight| / sum mean |gradient|`` over the channels, which does not depend
    on the scale of the target or the activation.
    """
    scale = float(gradient.abs().mean(dim=(2, 3)).sum())
    return float(weights.abs().sum()) / scale if scale > 0 else 0.0


def saliency(model: nn.Module, face: np.ndarray, target: Target) -> AttributionMap:
    """Compute the input-gradient saliency ``|d target / d input|`` for one face ``(96, 96)``."""
    description = _describe(target)
    with _explainable(model) as explained:
        faces = _face_tensor(face)
        outputs = explained(faces)
        gradient = _gradient(target(outputs), faces)

    layer_map = gradient.abs().detach()[0, 0]
    empty_message = (
        f"the gradient of {description} with respect to the input is zero everywhere; "
        "the model output does not depend on this face's pixels"
    )
    return _attribution(layer_map, layer_map, INPUT_LAYER, description, outputs, empty_message)


def _gradient(score: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """Return ``d score.sum() / d tensor``; zeros where ``score`` does not depend on ``tensor``."""
    if not score.requires_grad or not tensor.requires_grad:
        return torch.zeros_like(tensor)
    (gradient,) = torch.autograd.grad(score.sum(), tensor, allow_unused=True)
    return torch.zeros_like(tensor) if gradient is None else gradient


def _find_layer(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = ", ".join(info.name for info in list_layers(model))
        raise ValueError(f"unknown layer {layer!r}; choose one of: {names}") from None


def _describe(target: Target) -> str:
    describe = getattr(target, "describe", None)
    return describe() if callable(describe) else getattr(target, "__name__", "the target")


@contextmanager
def _explainable(model: nn.Module) -> Iterator[nn.Module]:
    """Yield a model to differentiate: ``model`` itself, or an eval copy if it is training.

    Gradients are enabled (and inference mode disabled) inside the block, whatever the
    caller's mode, so create the input tensors inside it.
    """
    explained = model
    if model.training:
        log.debug("explaining an eval-mode copy of a model that is in training mode")
        explained = _copy_without_hooks(model).eval()
    with torch.inference_mode(False), torch.enable_grad():
        yield explained


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """Deep-copy ``model`` with empty hook tables.

    Another thread may be explaining the shared model at the same moment, and its hooks
    hold that thread's activations, which ``copy.deepcopy`` cannot copy.
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        for name, value in vars(module).items():
            if "hooks" in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    return copy.deepcopy(model, memo)


class _LayerRecorder:
    """Record one module's output during a forward pass on the current thread.

    The hook hands the rest of the network a clone of the output, so an in-place operation
    after the layer (``ReLU(inplace=True)``) changes the clone, never the recorded
    activation. Forward passes on other threads pass through untouched.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.thread = threading.get_ident()
        self.outputs: list[object] = []
        self.handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> _LayerRecorder:
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def _hook(self, module: nn.Module, inputs: object, output: object) -> object:
        if threading.get_ident() != self.thread:
            return None
        self.outputs.append(output)
        return output.clone() if isinstance(output, torch.Tensor) else None

    def activation(self, layer: str) -> torch.Tensor:
        """Return the recorded ``(B, C, H, W)`` activation, checking that it is usable."""
        if len(self.outputs) != 1:
            raise ValueError(
                f"layer {layer!r} ran {len(self.outputs)} times in one forward pass; "
                "Grad-CAM needs a layer that runs exactly once (see list_layers)"
            )
        output = self.outputs[0]
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise ValueError(
                f"layer {layer!r} outputs {shape}, not a spatial (B, C, H, W) tensor; "
                "pick a convolution or another layer from list_layers"
            )
        return output


def _face_tensor(face: np.ndarray) -> torch.Tensor:
    """Turn a ``(96, 96)`` uint8 face into a ``(1, 1, 96, 96)`` input that requires grad."""
    face = np.asarray(face)
    if face.shape != (FACE_SIZE, FACE_SIZE) or face.dtype != np.uint8:
        raise ValueError(
            f"face must be a ({FACE_SIZE}, {FACE_SIZE}) uint8 array, got {face.shape} {face.dtype}"
        )
    tensor = torch.from_numpy(face.astype(np.float32) / 255.0)[None, None]
    return tensor.requires_grad_(True)


def _attribution(
    heatmap: torch.Tensor,
    layer_map: torch.Tensor,
    layer: str,
    description: str,
    outputs: torch.Tensor,
    empty_message: str,
) -> AttributionMap:
    """Normalise ``heatmap`` to 0..1 and package the result, flagging an all-zero map."""
    heatmap = heatmap.detach().float().numpy()
    peak = float(heatmap.max())
    empty = not np.isfinite(peak) or peak <= 0.0
    normalised = np.zeros_like(heatmap) if empty else heatmap / peak
    keypoints = denormalize_keypoints(outputs.detach()[0].reshape(-1, 2).numpy())
    return AttributionMap(
        heatmap=normalised.astype(np.float32),
        layer_map=layer_map.detach().float().numpy(),
        layer=layer,
        target=description,
        keypoints=keypoints,
        empty=empty,
        message=empty_message if empty else None,
    )
