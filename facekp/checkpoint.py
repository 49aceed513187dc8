"""Save and load keypoint model checkpoints.

A checkpoint is a dict of plain tensors, dicts, lists, strings and numbers, so
``torch.load(path, weights_only=True)`` can read it without running any pickled code::

    {
        "format": "facekp-checkpoint", "format_version": 1,
        "model_name": "heatmapnet",            # a name in facekp.models.MODELS
        "state_dict": {...},                   # the model's weights
        "keypoint_names": [...],               # the 15 names, in output order
        "input_size": 96,                      # faces are input_size x input_size
        "normalization": {...},                # how inputs and outputs are scaled
        "data": {"path", "rows", "keypoint_counts"},   # the training data
        "mean_keypoints": [[x, y], ...],       # (15, 2) training mean, pixels of the face
        "metrics": {...},                      # e.g. best validation RMSE in pixels
        "command": "python -m facekp train ...",
        "flip_average": False,                 # optional: average with mirrored predictions
        "training": {...},                     # optional: optimizer and RNG state to resume
    }

Everything except ``state_dict`` and ``training`` is available as ``KeypointModel.info``.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facekp._atomic import atomic_open
from facekp.errors import CheckpointError, ImageError
from facekp.keypoints import (
    FACE_SIZE,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    denormalize_keypoints,
    flip_keypoints,
)
from facekp.models import MODELS, create_model

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "facekp-checkpoint"
CHECKPOINT_VERSION = 1

# The input and output scaling of every checkpoint's model.
NORMALIZATION: dict[str, str] = {
    "image": "uint8 gray value / 255, shape (B, 1, 96, 96)",
    "keypoints": "(pixel - 48) / 48, x then y per keypoint in Kaggle column order",
}

PREDICT_BATCH_SIZE = 256

_REQUIRED_KEYS = ("model_name", "state_dict", "keypoint_names", "input_size")


class NotACheckpointError(CheckpointError):
    """A file that cannot be read as a facekp checkpoint, with ``reason`` giving the cause."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"{path} is not a facekp checkpoint ({reason}); pass a best.pt or last.pt written "
            "by python -m facekp train"
        )


# Leading bytes of files that users pass by mistake, to name them in the error message.
_FILE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a NumPy .npy array"),
)
_ZIP_SIGNATURE = b"PK\x03\x04"
_PICKLE_SIGNATURE = b"\x80"


def _unreadable_reason(path: Path, error: BaseException) -> str:
    """Describe in a few words why ``torch.load`` failed on ``path``, from the file's content.

    PyTorch's own message is left out because it suggests ``weights_only=False``, which would
    run code from the file.
    """
    try:
        with path.open("rb") as stream:
            head = stream.read(64)
    except OSError as read_error:
        return f"it cannot be read: {read_error.strerror}"
    if not head:
        return "the file is empty"
    if head.startswith(_ZIP_SIGNATURE) or head.startswith(_PICKLE_SIGNATURE):
        # PyTorch files are ZIP archives (or, before PyTorch 1.6, bare pickles).
        if head.startswith(_ZIP_SIGNATURE) and not zipfile.is_zipfile(path):
            return "the file is truncated or damaged"
        if isinstance(error, pickle.UnpicklingError):
            return (
                "it contains pickled Python objects, such as a whole model, which facekp does "
                "not load because loading them runs code from the file"
            )
        return "the file is truncated or damaged"
    for signature, description in _FILE_SIGNATURES:
        if head.startswith(signature):
            return f"it is {description}"
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "it is JSON text"
    if text.isascii() and all(byte >= 32 or byte in b"\t\r\n" for byte in text):
        return "it is a text file"
    return "it is not a PyTorch file"


def shipped_model_path() -> Path:
    """Return the path of the model that ships inside the package, ``facekp/assets/model.pt``."""
    return Path(__file__).resolve().parent / "assets" / "model.pt"


@dataclass
class KeypointModel:
    """A loaded model ready for inference.

    ``model`` is in eval mode, and facekp never switches it to training mode. ``name`` is the
    registered architecture name and ``info`` contains the checkpoint's metadata (everything
    except the weights and the optimizer state). With ``flip_average`` (the checkpoint's
    ``"flip_average"`` entry), :meth:`predict` also runs each face mirrored and averages
    the two predictions; ``model`` itself only ever receives the faces it is given.
    """

    model: nn.Module
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    flip_average: bool = False

    @property
    def mean_keypoints(self) -> np.ndarray:
        """The training data's mean keypoints ``(15, 2)`` float32, pixels of the 96x96 face.

        NaN where the training data had no label for that keypoint, or where the checkpoint
        does not record a mean.
        """
        mean = self.info.get("mean_keypoints")
        if mean is None:
            return np.full((NUM_KEYPOINTS, 2), np.nan, dtype=np.float32)
        return np.asarray(mean, dtype=np.float32).reshape(NUM_KEYPOINTS, 2)

    def predict(self, faces: np.ndarray, batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
        """Predict keypoints for faces ``(N, 96, 96)`` uint8; returns ``(N, 15, 2)`` float32.

        The result is in pixels of the 96x96 face (``x`` right, ``y`` down, pixel centres
        at integers). Runs under ``torch.no_grad`` in batches of ``batch_size`` faces.
        """
        faces = _check_faces(faces)
        outputs = []
        with torch.no_grad():
            for start in range(0, len(faces), batch_size):
                batch = torch.from_numpy(faces[start : start + batch_size]).float().div_(255.0)
                batch = batch.unsqueeze(1).contiguous(memory_format=torch.channels_last)
                count = len(batch)
                if self.flip_average:
                    batch = torch.cat([batch, batch.flip(-1)])
                output = self.model(batch).float().numpy().reshape(-1, NUM_KEYPOINTS, 2)
                keypoints = denormalize_keypoints(output[:count])
                if self.flip_average:
                    mirrored = flip_keypoints(denormalize_keypoints(output[count:]))
                    keypoints = (keypoints + mirrored) / 2
                outputs.append(keypoints)
        if not outputs:
            return np.zeros((0, NUM_KEYPOINTS, 2), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)


def _check_faces(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise ImageError(
            f"faces must be an array of shape (N, {FACE_SIZE}, {FACE_SIZE}), got {faces.shape}; "
            "crop and resize each face to 96x96 grayscale first"
        )
    if faces.dtype != np.uint8:
        raise ImageError(
            f"faces must be uint8 gray values 0..255, got dtype {faces.dtype}; "
            "convert with np.clip(faces, 0, 255).astype(np.uint8)"
        )
    return np.ascontiguousarray(faces)


def build_checkpoint(
    model: nn.Module,
    model_name: str,
    *,
    data: dict[str, Any] | None = None,
    mean_keypoints: np.ndarray | None = None,
    metrics: dict[str, Any] | None = None,
    command: str = "",
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict for ``model``.

    ``mean_keypoints`` is ``(15, 2)`` pixels of the face (NaN allowed), stored as a nested list.
    ``training`` contains what resuming needs (optimizer state, RNG state, history) and is left
    out of the shipped model. ``extra`` adds more plain metadata keys.
    """
    if model_name not in MODELS:
        raise ValueError(f"model name {model_name!r} is not registered in facekp.models.MODELS")
    state_dict = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    checkpoint: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_name": model_name,
        "state_dict": state_dict,
        "keypoint_names": list(KEYPOINT_NAMES),
        "input_size": FACE_SIZE,
        "normalization": dict(NORMALIZATION),
        "data": dict(data or {}),
        "mean_keypoints": None,
        "metrics": dict(metrics or {}),
        "command": command,
    }
    if mean_keypoints is not None:
        mean = np.asarray(mean_keypoints, dtype=np.float64).reshape(NUM_KEYPOINTS, 2)
        checkpoint["mean_keypoints"] = mean.tolist()
    if extra:
        checkpoint.update(extra)
    if training is not None:
        checkpoint["training"] = training
    return checkpoint


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically and return the path.

    The data goes to a temporary file in the same folder, is flushed and fsynced, and then
    replaces ``path`` with ``os.replace``. A reader therefore gets either the old file or the
    complete new one, even if the process dies while writing.
    """
    path = Path(path)
    with atomic_open(path, "wb") as stream:
        torch.save(checkpoint, stream)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint file into its dict, on the CPU.

    Raises :class:`CheckpointError` when the file is missing, is not a file, is truncated or
    corrupt, is some other torch file, or lacks a required entry.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} not found; pass the path of a .pt file written by "
            "'python -m facekp train' (for example RUN_DIR/best.pt)"
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} is not a file; pass a .pt file, e.g. RUN_DIR/best.pt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile, AttributeError, TypeError, IndexError, KeyError) as error:
        log.debug("torch.load failed on %s: %s", path, error)
        raise NotACheckpointError(path, _unreadable_reason(path, error)) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise NotACheckpointError(
            path,
            f"it is a PyTorch file without the format entry {CHECKPOINT_FORMAT!r}, such as "
            "a plain state dict",
        )
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, but this facekp reads versions "
            f"up to {CHECKPOINT_VERSION}; upgrade facekp or retrain"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}; retrain the model")
    return checkpoint


def load_model(path: str | Path | None = None) -> KeypointModel:
    """Load a checkpoint into a :class:`KeypointModel` in eval mode on the CPU.

    ``path=None`` loads the shipped model (:func:`shipped_model_path`). Raises
    :class:`CheckpointError` for a missing, corrupt, truncated or non-facekp file, for an
    unknown model name, and for weights that do not fit the named architecture.
    """
    path = shipped_model_path() if path is None else Path(path)
    checkpoint = read_checkpoint(path)

    name = checkpoint["model_name"]
    if name not in MODELS:
        raise CheckpointError(
            f"checkpoint {path} is for model {name!r}, which this facekp does not have; "
            f"known models: {', '.join(sorted(MODELS))}"
        )
    if list(checkpoint["keypoint_names"]) != list(KEYPOINT_NAMES):
        raise CheckpointError(
            f"checkpoint {path} predicts keypoints {checkpoint['keypoint_names']}, not the 15 "
            "Kaggle keypoints in Kaggle column order; retrain with this facekp"
        )
    if checkpoint["input_size"] != FACE_SIZE:
        raise CheckpointError(
            f"checkpoint {path} expects {checkpoint['input_size']}-pixel faces, not "
            f"{FACE_SIZE}; retrain with this facekp"
        )

    model = create_model(name)
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {path} has no weight dict under 'state_dict'; retrain")
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first_line[:3])
        raise CheckpointError(
            f"checkpoint {path} does not fit model {name!r}: {detail}. The weights were saved "
            "from a different architecture or the file was altered; retrain"
        ) from error
    model.eval()
    # channels_last measured faster than the default layout at batch 1 on one thread.
    model = model.to(memory_format=torch.channels_last)

    info = {
        key: value for key, value in checkpoint.items() if key not in ("state_dict", "training")
    }
    log.debug("loaded %s model from %s", name, path)
    flip_average = bool(info.get("flip_average", False))
    return KeypointModel(model=model, name=name, info=info, path=path, flip_average=flip_average)
