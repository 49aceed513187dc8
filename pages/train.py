"""Train: start ``python -m facekp train`` in the background, watch it, stop or resume it.

Runs live on disk under the runs folder, so every browser session lists the same runs, and a
run keeps going when its tab closes or the page changes.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from facekp import runs
from facekp.data import split_indices
from facekp.errors import FacekpError
from facekp.models import MODELS
from facekp.train import TrainConfig
from pages import common

REFRESH_SECONDS = 2.0
TABLE_REFRESH_SECONDS = 10.0
# The form starts at the trainer's own defaults (the fields of facekp.train.TrainConfig).
DEFAULTS = TrainConfig(data="", out="")
SELECTED_RUN_KEY = "train_selected_run"

common.require_router()
st.title("Train")


def start_form() -> None:
    """Collect the training options and start a run when the form is submitted."""
    data_path = common.dataset_picker("train_data")
    data_problem = common.dataset_problem(data_path) if data_path is not None else ""
    if data_problem:
        common.show_error(
            f"{common.code_span(common.display_name(data_path))} cannot be used for training:",
            data_problem,
        )
    with st.form("train_form"):
        columns = st.columns(3)
        models = sorted(MODELS)
        model = columns[0].selectbox(
            "Model", models, index=models.index(DEFAULTS.model), key="train_model"
        )
        epochs = columns[1].number_input("Epochs", 1, 10_000, DEFAULTS.epochs, key="train_epochs")
        lr = columns[2].number_input(
            "Learning rate (peak)", 1e-6, 1.0, DEFAULTS.lr, format="%.6f", key="train_lr"
        )
        batch_size = columns[0].number_input(
            "Batch size", 1, 4096, DEFAULTS.batch_size, key="train_batch_size"
        )
        val_fraction = columns[1].slider(
            "Validation split", 0.0, 0.5, DEFAULTS.val_fraction, 0.05, key="train_val_fraction",
            help="Share of the people held out to measure validation RMSE",
        )
        augment = columns[2].checkbox("Augmentation", DEFAULTS.augment, key="train_augment",
                                      help="Random flips, rotations, shifts and brightness")
        submitted = st.form_submit_button("Start training", type="primary")

    if not submitted:
        return
    if data_path is None:
        st.error("Choose a data set above before starting a run.")
        return
    if data_problem:
        st.error("No run was started: choose a data set that loads (see the error above).")
        return
    training_problem = training_data_problem(data_path, float(val_fraction))
    if training_problem:
        common.show_error(
            f"No run was started: {common.code_span(common.display_name(data_path))} cannot be "
            "trained on with these settings:",
            training_problem,
        )
        return

    settings = runs.TrainSettings(
        data=data_path,
        model=model,
        epochs=int(epochs),
        lr=float(lr),
        batch_size=int(batch_size),
        augment=bool(augment),
        val_fraction=float(val_fraction),
    )
    try:
        run = runs.start_run(settings)
    except runs.RunError as error:
        common.show_error("The run could not be started:", error)
        return
    st.session_state[SELECTED_RUN_KEY] = run.name
    st.success(f"Started run {run.name}.")


def training_data_problem(data_path: Path, val_fraction: float) -> str:
    """Return why the trainer would stop on this data set and split, or "" when it can start.

    Mirrors the trainer's own checks: some keypoint is labelled, and at a ``val_fraction``
    above 0, :func:`facekp.data.split_indices` with the trainer's default seed gives a
    training and a validation part that each have a labelled keypoint.
    """
    faces = common.load_dataset_cached(data_path)
    if np.isnan(faces.keypoints).all():
        return (
            f"every keypoint cell of its {len(faces)} rows is empty; training needs a "
            "training.csv with keypoint coordinates"
        )
    if val_fraction <= 0:
        return ""

    try:
        train_rows, val_rows = split_indices(faces, val_fraction, DEFAULTS.seed)
    except (FacekpError, ValueError) as error:
        return str(error)
    if len(train_rows) == 0 or len(val_rows) == 0:
        return (
            f"a validation fraction of {val_fraction:.2f} leaves {len(train_rows)} training and "
            f"{len(val_rows)} validation faces out of {len(faces)}; choose another fraction, "
            "or 0 to train without validation"
        )
    for part, rows in (("training", train_rows), ("validation", val_rows)):
        if np.isnan(faces.keypoints[rows]).all():
            return (
                f"none of the {len(rows)} {part} faces at a validation fraction of "
                f"{val_fraction:.2f} has a labelled keypoint; choose another fraction"
            )
    return ""


def loss_chart(run: runs.RunInfo) -> alt.Chart | None:
    """Build the train and validation RMSE curve of a run, or None before its first epoch."""
    rows = []
    for record in run.metrics:
        for column, label in (("train_rmse", "train"), ("val_rmse", "validation")):
            value = record.get(column)
            if isinstance(value, (int, float)) and isinstance(record.get("epoch"), int):
                rows.append({"epoch": record["epoch"], "RMSE (px)": value, "split": label})
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    return (
        alt.Chart(frame, title=f"Loss of {run.name}")
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("RMSE (px):Q", title="RMSE (px of the 96x96 face)"),
            color=alt.Color("split:N", title=None),
            tooltip=["epoch", "split", alt.Tooltip("RMSE (px):Q", format=".3f")],
        )
    )


def progress_text(run: runs.RunInfo) -> str:
    progress = run.progress or {}
    epoch = progress.get("epoch", "?")
    epochs = progress.get("epochs", run.config.get("epochs", "?"))
    text = f"{run.status}: epoch {epoch} of {epochs}"
    if run.is_active and progress.get("batches"):
        text += f", batch {progress.get('batch', 0)} of {progress['batches']}"
    left = runs.time_left_seconds(run.progress)
    if run.is_active and left is not None:
        minutes, seconds = divmod(int(round(left)), 60)
        text += f", about {minutes} min {seconds:02d} s left"
    return text


def run_controls(run: runs.RunInfo) -> None:
    """Show Stop for an active run and Resume for a stopped or failed one with a checkpoint."""
    if run.is_active:
        if st.button("Stop", key=f"stop_{run.name}", help="Saves a checkpoint, then stops"):
            runs.stop_run(run.path)
            st.toast(f"Asked run {run.name} to stop after saving.")
        return
    if run.status not in ("stopped", "failed") or run.last_checkpoint is None:
        return
    if st.button("Resume", key=f"resume_{run.name}", help="Continue from last.pt"):
        try:
            runs.resume_run(run.path)
        except runs.RunError as error:
            common.show_error(f"Run {run.name} could not be resumed:", error)
        else:
            st.toast(f"Resumed run {run.name}.")


@st.fragment(run_every=REFRESH_SECONDS)
def live_view() -> None:
    """Redraw the chosen run's progress, loss curve and controls every few seconds."""
    all_runs = runs.list_runs()
    if not all_runs:
        st.info(f"No runs yet under {runs.runs_dir()}. Start one above.")
        return

    names = [run.name for run in all_runs]
    if st.session_state.get(SELECTED_RUN_KEY) not in names:
        active = [run.name for run in all_runs if run.is_active]
        st.session_state[SELECTED_RUN_KEY] = active[0] if active else names[0]
    name = st.selectbox("Run", names, key=SELECTED_RUN_KEY)
    run = next(run for run in all_runs if run.name == name)

    st.progress(runs.fraction_done(run.progress), text=progress_text(run))
    if run.status == "failed" and run.error:
        common.show_error(f"Run {run.name} failed:", run.error)
    elif run.status == "stopped":
        st.warning(f"Run {run.name} was stopped; resume it to continue from its last checkpoint.")
    elif run.status == "finished":
        st.success(f"Run {run.name} finished. Pick its checkpoint in the sidebar to use it.")

    chart = loss_chart(run)
    if chart is None:
        st.caption("The loss curve appears after the first epoch.")
    else:
        st.altair_chart(chart, width="stretch")
    run_controls(run)


@st.fragment(run_every=TABLE_REFRESH_SECONDS)
def past_runs_table() -> None:
    """Show every run with its status and best validation RMSE, then their curves."""
    rows = []
    all_runs = runs.list_runs()
    for run in all_runs:
        best = run.best_val_rmse
        rows.append({
            "run": run.name,
            "model": run.model_name,
            "status": run.status,
            "epochs done": len(run.metrics),
            "best val RMSE (px)": round(best, 3) if best is not None else None,
            "checkpoint": str(run.best_checkpoint or run.last_checkpoint or ""),
        })
    if not rows:
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    chart = validation_curves(all_runs)
    if chart is not None:
        st.altair_chart(chart, width="stretch")


def validation_curves(all_runs: list[runs.RunInfo]) -> alt.Chart | None:
    """Build one validation RMSE curve per run, or None when no run has finished an epoch."""
    rows = [
        {"run": run.name, "epoch": record["epoch"], "val RMSE (px)": record["val_rmse"]}
        for run in all_runs
        for record in run.metrics
        if isinstance(record.get("val_rmse"), (int, float))
        and isinstance(record.get("epoch"), int)
    ]
    if not rows:
        return None
    return (
        alt.Chart(pd.DataFrame(rows), title="Validation RMSE of every run")
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("val RMSE (px):Q", title="validation RMSE (px of the 96x96 face)"),
            color=alt.Color("run:N"),
            tooltip=["run", "epoch", alt.Tooltip("val RMSE (px):Q", format=".3f")],
        )
    )


st.subheader("New run")
start_form()

st.subheader("Runs")
live_view()
st.subheader("All runs")
past_runs_table()
