"""Score a model on labelled faces: RMSE in pixels beside the mean-face baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facekp.checkpoint import KeypointModel
from facekp.data import KeypointSet
from facekp.keypoints import KEYPOINT_NAMES


@dataclass
class EvaluationResult:
    """Errors of a model on a keypoint set, in pixels of the 96x96 face.

    RMSE values cover labelled coordinates only (x and y count separately, as in Kaggle's
    score); a value is None where nothing was labelled. ``baseline`` values score the
    checkpoint's training-mean keypoints on the same coordinates. ``predictions`` is
    ``(N, 15, 2)`` pixels, ``face_rmse`` ``(N,)`` per face (NaN for a face without labels),
    ``names`` the set's row names.
    """

    rmse: float | None
    baseline_rmse: float | None
    count: int
    coordinates: int
    per_keypoint: dict[str, float | None]
    per_keypoint_baseline: dict[str, float | None]
    per_keypoint_count: dict[str, int]
    predictions: np.ndarray
    face_rmse: np.ndarray
    names: list[str] = field(default_factory=list)

    def worst_faces(self, limit: int | None = None) -> np.ndarray:
        """Row indices sorted by per-face RMSE, worst first; faces without labels come last."""
        errors = np.where(np.isnan(self.face_rmse), -np.inf, self.face_rmse)
        order = np.argsort(-errors, kind="stable")
        return order if limit is None else order[:limit]

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON types, without the per-face arrays."""
        return {
            "rmse": self.rmse,
            "baseline_rmse": self.baseline_rmse,
            "count": self.count,
            "coordinates": self.coordinates,
            "per_keypoint": dict(self.per_keypoint),
            "per_keypoint_baseline": dict(self.per_keypoint_baseline),
            "per_keypoint_count": dict(self.per_keypoint_count),
        }


def _rmse(squared: np.ndarray, labelled: np.ndarray) -> float | None:
    count = int(labelled.sum())
    return math.sqrt(float(squared[labelled].sum()) / count) if count else None


def keypoint_errors(
    predictions: np.ndarray, keypoints: np.ndarray
) -> tuple[float | None, dict[str, float | None], np.ndarray]:
    """Overall RMSE, per-keypoint RMSE and per-face RMSE ``(N,)`` over labelled coordinates.

    ``predictions`` and ``keypoints`` are ``(N, 15, 2)`` pixels; NaN in ``keypoints`` marks a
    missing label. A face without labels gets NaN.
    """
    labelled = ~np.isnan(keypoints)
    squared = np.where(labelled, (predictions.astype(np.float64) - keypoints) ** 2, 0.0)

    overall = _rmse(squared, labelled)
    per_keypoint = {
        name: _rmse(squared[:, index], labelled[:, index])
        for index, name in enumerate(KEYPOINT_NAMES)
    }
    counts = labelled.reshape(len(keypoints), -1).sum(axis=1)
    sums = squared.reshape(len(keypoints), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        face_rmse = np.where(counts > 0, np.sqrt(sums / np.maximum(counts, 1)), np.nan)
    return overall, per_keypoint, face_rmse.astype(np.float32)


def evaluate(keypoint_model: KeypointModel, keypoint_set: KeypointSet) -> EvaluationResult:
    """Predict every face of ``keypoint_set`` and score the predictions against its labels."""
    predictions = keypoint_model.predict(keypoint_set.images)
    keypoints = keypoint_set.keypoints.astype(np.float32)
    rmse, per_keypoint, face_rmse = keypoint_errors(predictions, keypoints)

    mean = keypoint_model.mean_keypoints
    baseline = np.broadcast_to(mean, keypoints.shape)
    baseline_labelled = ~np.isnan(keypoints) & ~np.isnan(baseline)
    if baseline_labelled.sum() == (~np.isnan(keypoints)).sum():
        baseline_rmse, per_keypoint_baseline, _ = keypoint_errors(baseline, keypoints)
    else:
        # The checkpoint has no mean for some labelled keypoint, so the baseline is undefined.
        baseline_rmse, per_keypoint_baseline = None, {name: None for name in KEYPOINT_NAMES}

    labelled = ~np.isnan(keypoints)
    per_keypoint_count = {
        name: int(labelled[:, index].all(axis=-1).sum())
        for index, name in enumerate(KEYPOINT_NAMES)
    }
    return EvaluationResult(
        rmse=rmse,
        baseline_rmse=baseline_rmse,
        count=len(keypoint_set),
        coordinates=int(labelled.sum()),
        per_keypoint=per_keypoint,
        per_keypoint_baseline=per_keypoint_baseline,
        per_keypoint_count=per_keypoint_count,
        predictions=predictions,
        face_rmse=face_rmse,
        names=list(keypoint_set.names),
    )
