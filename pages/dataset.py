"""Dataset: browse a Kaggle-format data set, its label counts and its mean face."""

from __future__ import annotations

import warnings
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from facekp import viz
from facekp.data import DataSummary, KeypointSet, summarize_keypoint_set
from facekp.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from pages import common

GRID_COLUMNS = 6
GRID_ROWS = 4
GRID_ZOOM = 2  # Grid faces are drawn at 192x192 so the dots stay visible.
DETAIL_ZOOM = 5
# The spread cloud on the mean face draws at most this many faces' keypoints; more hide the face.
SPREAD_MAX_FACES = 400
SPREAD_COLOR = (255, 170, 170)


@st.cache_data(max_entries=common.MAX_CACHED_DATASETS, show_spinner="Summarizing...")
def summary_cached(path: str, size: int, mtime_ns: int) -> DataSummary:
    del size, mtime_ns  # Part of the cache key only.
    return summarize_keypoint_set(common.load_dataset_cached(Path(path)))


def label_count_chart(summary: DataSummary) -> alt.Chart:
    frame = pd.DataFrame(
        {
            "keypoint": [keypoint.name for keypoint in summary.keypoints],
            "labelled faces": [keypoint.labelled for keypoint in summary.keypoints],
        }
    )
    return (
        alt.Chart(frame, title="Labelled faces per keypoint")
        .mark_bar()
        .encode(
            x=alt.X("labelled faces:Q"),
            y=alt.Y(
                "keypoint:N", sort=list(KEYPOINT_NAMES), title=None,
                axis=alt.Axis(labelLimit=220),
            ),
            tooltip=["keypoint", "labelled faces"],
        )
    )


def face_grid(faces: KeypointSet, indices: np.ndarray) -> None:
    """Draw the faces at ``indices`` with their labelled keypoints (red) in a grid."""
    for start in range(0, len(indices), GRID_COLUMNS):
        columns = st.columns(GRID_COLUMNS)
        for column, index in zip(columns, indices[start : start + GRID_COLUMNS], strict=False):
            image = viz.enlarge(faces.images[index], GRID_ZOOM)
            points = viz.enlarge_points(faces.keypoints[index], GRID_ZOOM)
            drawn = viz.draw_keypoints(image, points, viz.TRUE_COLOR)
            count = int(faces.labelled[index].sum())
            name = faces.names[index] if faces.names else str(index)
            column.image(drawn, caption=f"#{index} {name} ({count}/15)", width="stretch")


def zoomed_face(faces: KeypointSet, index: int) -> None:
    image = viz.enlarge(faces.images[index], DETAIL_ZOOM)
    points = viz.enlarge_points(faces.keypoints[index], DETAIL_ZOOM)
    drawn = viz.draw_keypoints(image, points, viz.TRUE_COLOR, labels=True)
    left, right = st.columns([3, 2])
    left.image(drawn, caption="Keypoint numbers follow the table's order", width="stretch")
    table = pd.DataFrame(
        {
            "keypoint": KEYPOINT_NAMES,
            "x": faces.keypoints[index, :, 0],
            "y": faces.keypoints[index, :, 1],
        }
    )
    right.dataframe(table, width="stretch", height=560)


def mean_face(faces: KeypointSet, indices: np.ndarray) -> None:
    """Show the mean image with every face's keypoints as a light cloud and the mean on top."""
    images = faces.images[indices]
    keypoints = faces.keypoints[indices]
    average = np.rint(images.mean(axis=0, dtype=np.float64)).astype(np.uint8)
    with warnings.catch_warnings():
        # A keypoint that no face has gives NaN, and numpy warns about the empty slice.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean_points = np.nanmean(keypoints, axis=0)
        spread = np.nanstd(keypoints, axis=0)

    canvas = viz.enlarge(average, DETAIL_ZOOM)
    cloud = keypoints[:SPREAD_MAX_FACES].reshape(-1, NUM_KEYPOINTS, 2)
    canvas = viz.draw_keypoints(
        canvas, viz.enlarge_points(cloud, DETAIL_ZOOM), SPREAD_COLOR, radius=1.0
    )
    canvas = viz.draw_keypoints(
        canvas, viz.enlarge_points(mean_points, DETAIL_ZOOM), viz.TRUE_COLOR, labels=True
    )
    left, right = st.columns([3, 2])
    left.image(
        canvas,
        caption=f"Mean of {len(indices)} faces; pink: each face's keypoints "
        f"(up to {SPREAD_MAX_FACES} faces), red: mean keypoints",
        width="stretch",
    )
    table = pd.DataFrame(
        {
            "keypoint": KEYPOINT_NAMES,
            "mean x": mean_points[:, 0],
            "mean y": mean_points[:, 1],
            "std x": spread[:, 0],
            "std y": spread[:, 1],
        }
    ).round(2)
    right.dataframe(table, hide_index=True, width="stretch", height=560)


common.require_router()
st.title("Dataset")
path = common.dataset_picker("dataset")
if path is None:
    st.info("Choose a data set to browse.")
    st.stop()

faces = common.load_dataset_or_stop(path)
if len(faces) == 0:
    st.error(f"{common.code_span(common.display_name(path))} has a header but no faces.")
    st.stop()
stat = path.stat()
summary = summary_cached(str(path), stat.st_size, stat.st_mtime_ns)

metrics = st.columns(4)
metrics[0].metric("Faces", summary.rows)
metrics[1].metric("All 15 keypoints", summary.complete_rows)
metrics[2].metric("Only the 4 core keypoints", summary.core_only_rows)
metrics[3].metric("People", summary.persons if summary.persons is not None else "unknown")
if summary.skipped_rows:
    st.warning(f"{summary.skipped_rows} rows of the file could not be read and are left out.")

browse, detail, mean, counts = st.tabs(["Faces", "One face", "Mean face", "Label counts"])

counts_per_face = faces.labelled.sum(axis=1)
with browse:
    low, high = st.slider(
        "Labelled keypoints per face", 0, NUM_KEYPOINTS, (0, NUM_KEYPOINTS), key="dataset_filter"
    )
    selected = np.flatnonzero((counts_per_face >= low) & (counts_per_face <= high))
    per_page = GRID_COLUMNS * GRID_ROWS
    pages = max(1, -(-len(selected) // per_page))
    common.clamp_state("dataset_page", 1, pages)
    page = st.number_input(
        f"Page (of {pages})", 1, pages, 1, key="dataset_page",
        help=f"{len(selected)} faces match; {per_page} per page",
    )
    st.caption(f"{len(selected)} of {len(faces)} faces have {low} to {high} labelled keypoints.")
    face_grid(faces, selected[(int(page) - 1) * per_page : int(page) * per_page])

with detail:
    common.clamp_state("dataset_face", 0, len(faces) - 1)
    index = st.number_input("Face (row)", 0, len(faces) - 1, 0, key="dataset_face")
    zoomed_face(faces, int(index))

with mean:
    mean_face(faces, selected if len(selected) else np.arange(len(faces)))

with counts:
    st.altair_chart(label_count_chart(summary), width="stretch")
