"""Compare: a checkpoint's predictions against the labels of a data set, worst faces first."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from facekp import viz
from facekp.data import KeypointSet, split_indices
from facekp.errors import FacekpError
from facekp.evaluate import EvaluationResult, evaluate
from pages import common

GRID_COLUMNS = 6
WORST_PER_PAGE = 18
ZOOM = 2
SPLITS = ("Validation part", "Training part", "All faces")
# The validation fraction offered for a checkpoint that does not record its own.
DEFAULT_VAL_FRACTION = 0.1


@st.cache_data(max_entries=8, show_spinner="Predicting every face...")
def evaluate_cached(
    data_path: str,
    data_mtime_ns: int,
    model_path: str,
    model_mtime_ns: int,
    split: str,
    fraction: float,
    seed: int,
) -> tuple[EvaluationResult, np.ndarray]:
    """Score a checkpoint on one part of a data set; returns the result and the row indices."""
    del data_mtime_ns, model_mtime_ns  # Part of the cache key only.
    faces = common.load_dataset_cached(Path(data_path))
    model = common.load_model_cached(Path(model_path))
    rows = select_rows(faces, split, fraction, seed)
    return evaluate(model, faces.subset(rows)), rows


def select_rows(faces: KeypointSet, split: str, fraction: float, seed: int) -> np.ndarray:
    """Return the row indices of one part of a data set, split by person as the trainer does.

    Raises ValueError for a fraction outside 0..1 and DataFormatError when the set cannot be
    split into two parts.
    """
    if split == "All faces":
        return np.arange(len(faces))
    train_rows, val_rows = split_indices(faces, fraction, seed)
    return val_rows if split == "Validation part" else train_rows


def empty_part_message(split: str, fraction: float, face_count: int) -> str:
    """Explain why the chosen part of a data set holds no faces, and what to choose instead."""
    if face_count == 0:
        return "The data set has a header but no faces, so there is nothing to compare."
    if split == "Validation part":
        return (
            f"The validation part is empty at a validation fraction of {fraction:.2f}. Choose "
            "All faces, or a fraction above 0 to hold some people out."
        )
    return (
        f"The training part is empty at a validation fraction of {fraction:.2f}. Choose All "
        "faces, or a smaller fraction."
    )


def per_keypoint_chart(result: EvaluationResult) -> alt.Chart:
    rows = []
    for name, value in result.per_keypoint.items():
        rows.append({"keypoint": name, "RMSE (px)": value, "predictor": "model"})
        baseline = result.per_keypoint_baseline.get(name)
        if baseline is not None:
            rows.append({"keypoint": name, "RMSE (px)": baseline, "predictor": "mean keypoints"})
    frame = pd.DataFrame(rows).dropna()
    return (
        alt.Chart(frame, title="RMSE per keypoint (px of the 96x96 face)")
        .mark_bar()
        .encode(
            x=alt.X("RMSE (px):Q"),
            y=alt.Y(
                "keypoint:N", sort=list(result.per_keypoint), title=None,
                axis=alt.Axis(labelLimit=220),
            ),
            yOffset="predictor:N",
            color=alt.Color("predictor:N", title=None),
            tooltip=["keypoint", "predictor", alt.Tooltip("RMSE (px):Q", format=".3f")],
        )
    )


def error_histogram(result: EvaluationResult) -> alt.Chart:
    frame = pd.DataFrame({"face RMSE (px)": result.face_rmse}).dropna()
    return (
        alt.Chart(frame, title="Error distribution over faces")
        .mark_bar()
        .encode(
            x=alt.X("face RMSE (px):Q", bin=alt.Bin(maxbins=40)),
            y=alt.Y("count():Q", title="faces"),
        )
    )


def worst_faces(faces: KeypointSet, rows: np.ndarray, result: EvaluationResult) -> None:
    order = result.worst_faces()
    pages = max(1, -(-len(order) // WORST_PER_PAGE))
    common.clamp_state("compare_page", 1, pages)
    page = st.number_input(f"Page (of {pages}), worst first", 1, pages, 1, key="compare_page")
    shown = order[(int(page) - 1) * WORST_PER_PAGE : int(page) * WORST_PER_PAGE]
    for start in range(0, len(shown), GRID_COLUMNS):
        columns = st.columns(GRID_COLUMNS)
        for column, position in zip(columns, shown[start : start + GRID_COLUMNS], strict=False):
            row = int(rows[position])
            image = viz.enlarge(faces.images[row], ZOOM)
            drawn = viz.draw_comparison(
                image,
                viz.enlarge_points(faces.keypoints[row], ZOOM),
                viz.enlarge_points(result.predictions[position], ZOOM),
            )
            name = faces.names[row] if faces.names else str(row)
            error = result.face_rmse[position]
            label = "no labels" if np.isnan(error) else f"{error:.2f} px"
            column.image(drawn, caption=f"#{row} {name}: {label}", width="stretch")


common.require_router()
st.title("Compare")
st.caption("Labels in red, predictions in blue. RMSE is in pixels of the 96x96 face.")
model = common.selected_model()
path = common.dataset_picker("compare_data")
if path is None:
    st.info("Choose a labelled data set to compare against.")
    st.stop()
faces = common.load_dataset_or_stop(path)
shown_name = common.code_span(common.display_name(path))

# Default to the split the checkpoint was trained with. On its training data set, the
# "Validation part" then holds only people the model never trained on. A checkpoint trained
# without a validation split has no such part, so it starts on all faces.
trained = (model.info.get("config") or {}) if isinstance(model.info.get("config"), dict) else {}
trained_fraction = min(float(trained.get("val_fraction", DEFAULT_VAL_FRACTION) or 0.0), 0.95)
columns = st.columns(3)
split = columns[0].selectbox(
    "Faces", SPLITS, index=SPLITS.index("Validation part" if trained_fraction > 0 else "All faces"),
    key="compare_split",
)
fraction = columns[1].number_input(
    "Validation fraction", 0.0, 0.95, trained_fraction, 0.05,
    key="compare_fraction", disabled=split == "All faces",
)
seed = columns[2].number_input(
    "Split seed", 0, 2**31 - 1, int(trained.get("seed") or 0), key="compare_seed",
    disabled=split == "All faces",
)

try:
    rows = select_rows(faces, split, float(fraction), int(seed))
except (FacekpError, ValueError) as error:
    common.show_error(
        f"The faces of {shown_name} cannot be split into training and validation parts:", error
    )
    st.stop()
if len(rows) == 0:
    st.warning(empty_part_message(split, float(fraction), len(faces)))
    st.stop()

try:
    result, rows = evaluate_cached(
        str(path), path.stat().st_mtime_ns, str(model.path), model.path.stat().st_mtime_ns,
        split, float(fraction), int(seed),
    )
except (FacekpError, ValueError) as error:
    common.show_error(f"Cannot compare on {shown_name}:", error)
    st.stop()

if result.rmse is None:
    st.warning("None of the chosen faces has a label, so there is nothing to compare.")
    st.stop()

metrics = st.columns(3)
metrics[0].metric("Faces", result.count)
metrics[1].metric("RMSE (px)", f"{result.rmse:.3f}")
if result.baseline_rmse is not None:
    metrics[2].metric(
        "Mean-keypoint baseline (px)", f"{result.baseline_rmse:.3f}",
        delta=f"{result.rmse - result.baseline_rmse:+.3f} px", delta_color="inverse",
    )
left, right = st.columns(2)
left.altair_chart(per_keypoint_chart(result), width="stretch")
right.altair_chart(error_histogram(result), width="stretch")
st.subheader("Worst faces first")
worst_faces(faces, rows, result)
