"""Widgets and cached loaders that several pages share. Not a page itself.

Models are cached with ``st.cache_resource`` (one object shared by every session, used
read-only) and parsed data sets with ``st.cache_data``. Both caches are keyed by the file's
path, size and modification time, so a checkpoint or CSV that is rewritten is read again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from facekp import runs
from facekp.checkpoint import KeypointModel, load_model, shipped_model_path
from facekp.data import KeypointSet, load_training_csv
from facekp.errors import FacekpError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "FACEKP_DATA_DIR"
DEFAULT_LABEL = "Default model"
# A checkpoint to offer as the default model in place of the shipped one, for a deployment
# that serves its own model.
DEFAULT_MODEL_ENV = "FACEKP_MODEL"
# The chosen model's label. Streamlit drops a widget's own state when the page changes, so
# the choice is kept under a separate key and copied into the widget on every run.
MODEL_STATE_KEY = "model_choice"
MODEL_WIDGET_KEY = "model_choice_widget"

# How many models and data sets stay loaded at once. A parsed 7049-row training.csv is about
# 65 MB of images, so a few of each stay well under a gigabyte.
MAX_CACHED_MODELS = 4
MAX_CACHED_DATASETS = 3


def setup_logging() -> None:
    """Send facekp's log records to stderr at INFO once per server process."""
    logger = logging.getLogger("facekp")
    if any(getattr(handler, "_facekp_app", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._facekp_app = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logging.getLogger("pages").addHandler(handler)
    logging.getLogger("pages").setLevel(logging.INFO)


ROUTER_KEY = "facekp_router_ran"


def mark_router_ran() -> None:
    """Record that ``app.py`` routed this run, so its page passes ``require_router``."""
    st.session_state[ROUTER_KEY] = True


def require_router() -> None:
    """Restart a page run that did not come through ``app.py`` from ``app.py``.

    Only the first request on a fresh server can do that: Streamlit runs a ``pages/`` file on
    its own until some session has called ``st.navigation``.
    """
    if not st.session_state.get(ROUTER_KEY):
        st.switch_page("app.py")


# -- models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the sidebar's model list: a label and a checkpoint path."""

    label: str
    path: Path


def default_model_path() -> Path:
    """Return ``$FACEKP_MODEL`` if set, else the model that ships in ``facekp/assets/``."""
    configured = os.environ.get(DEFAULT_MODEL_ENV)
    return Path(configured) if configured else shipped_model_path()


def model_choices() -> list[ModelChoice]:
    """Return the default model, then ``best.pt`` and ``last.pt`` of every run, newest first."""
    choices = [ModelChoice(DEFAULT_LABEL, default_model_path())]
    for run in runs.list_runs():
        for checkpoint in (run.best_checkpoint, run.last_checkpoint):
            if checkpoint is not None:
                label = f"{run.name} / {checkpoint.name} ({run.status})"
                choices.append(ModelChoice(label, checkpoint))
    return choices


@st.cache_resource(max_entries=MAX_CACHED_MODELS, show_spinner="Loading the model...")
def _load_model_cached(path: str, size: int, mtime_ns: int) -> KeypointModel:
    del size, mtime_ns  # Part of the cache key only.
    return load_model(path)


def load_model_cached(path: Path) -> KeypointModel:
    """Load a checkpoint once per (path, size, modification time) and share it.

    Raises :class:`facekp.errors.CheckpointError` for a missing or unusable file.
    """
    try:
        stat = path.stat()
    except OSError:
        return load_model(path)  # Raises CheckpointError with the reason.
    return _load_model_cached(str(path), stat.st_size, stat.st_mtime_ns)


def model_sidebar() -> None:
    """Show the model picker and the chosen model's metrics in the sidebar."""
    choices = model_choices()
    labels = [choice.label for choice in choices]
    if st.session_state.get(MODEL_STATE_KEY) not in labels:
        st.session_state[MODEL_STATE_KEY] = DEFAULT_LABEL
    st.session_state[MODEL_WIDGET_KEY] = st.session_state[MODEL_STATE_KEY]

    def remember_choice() -> None:
        st.session_state[MODEL_STATE_KEY] = st.session_state[MODEL_WIDGET_KEY]

    with st.sidebar:
        label = st.selectbox(
            "Model",
            labels,
            key=MODEL_WIDGET_KEY,
            on_change=remember_choice,
            help=f"The default model ({default_model_path()}), or a checkpoint of a training "
            f"run under {runs.runs_dir()}",
        )
        choice = choices[labels.index(label)]
        try:
            model = load_model_cached(choice.path)
        except FacekpError as error:
            log.warning("model %s cannot be loaded: %s", choice.path, error)
            st.error("This model cannot be loaded; pages that need it show why.")
            return
        _show_model_summary(model)


def _show_model_summary(model: KeypointModel) -> None:
    metrics = model.info.get("metrics") or {}
    data = model.info.get("data") or {}
    st.caption(f"Architecture: **{model.name}**")
    for key in ("best_val_rmse", "val_rmse", "train_rmse"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            st.caption(f"{key.replace('_', ' ')}: {value:.2f} px")
    rows = data.get("rows")
    if rows:
        st.caption(f"Trained on {rows} faces")


def selected_model() -> KeypointModel:
    """Return the model picked in the sidebar, or show the error and stop the page."""
    labels = {choice.label: choice for choice in model_choices()}
    choice = labels.get(st.session_state.get(MODEL_STATE_KEY, DEFAULT_LABEL))
    if choice is None:
        choice = ModelChoice(DEFAULT_LABEL, default_model_path())
    try:
        return load_model_cached(choice.path)
    except FacekpError as error:
        log.warning("model %s cannot be loaded: %s", choice.path, error)
        st.error(f"The model could not be loaded: {error}")
        st.stop()


def clamp_state(key: str, low: int, high: int) -> None:
    """Pull a number widget's kept value into ``[low, high]`` before the widget is drawn.

    A page count or a row count shrinks when the data set or a filter changes, and a kept
    value outside the new range would make Streamlit reject the widget.
    """
    value = st.session_state.get(key)
    if isinstance(value, (int, float)) and not low <= value <= high:
        st.session_state[key] = min(max(value, low), high)


# -- data sets -------------------------------------------------------------------------------


@st.cache_data(max_entries=MAX_CACHED_DATASETS, show_spinner="Reading the data set...")
def _load_dataset_cached(path: str, size: int, mtime_ns: int) -> KeypointSet:
    del size, mtime_ns  # Part of the cache key only.
    return load_training_csv(path)


def load_dataset_cached(path: Path) -> KeypointSet:
    """Parse a Kaggle-format CSV once per (path, size, modification time).

    Raises :class:`facekp.errors.DataFormatError` for a file that cannot be read or used.
    """
    try:
        stat = path.stat()
    except OSError:
        return load_training_csv(path)  # Raises with the reason.
    return _load_dataset_cached(str(path), stat.st_size, stat.st_mtime_ns)


def save_upload(data: bytes, suffix: str = ".csv") -> Path:
    """Store uploaded bytes under ``data/uploads/`` with a name made from their SHA-256.

    The uploaded file's own name is never used, so it cannot point anywhere on the server.
    Saving the same bytes twice reuses the first file.
    """
    digest = hashlib.sha256(data).hexdigest()[:24]
    uploads = data_dir() / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{digest}{suffix}"
    if not path.is_file() or path.stat().st_size != len(data):
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    return path


def data_dir() -> Path:
    """Return the folder of converted sets and saved uploads: ``$FACEKP_DATA_DIR`` or ``data/``."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "data")


def converted_sets() -> list[Path]:
    """Return the CSV files under the data folder (converted sets and saved uploads), sorted."""
    folder = data_dir()
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*.csv") if path.is_file())


def dataset_picker(key: str) -> Path | None:
    """Let the user choose a Kaggle-format CSV; return its path on this server, or None.

    Three sources: a CSV under ``data/``, an upload (saved under a generated name), or a path
    typed by the user.
    """
    sets = converted_sets()
    sources = ["A data set under data/", "Upload a training.csv", "A path on this server"]
    source = st.radio("Data set", sources, key=f"{key}_source", horizontal=True)

    if source == sources[0]:
        if not sets:
            st.info(
                "No CSV files under data/ yet. Convert photos with `python -m facekp convert`, "
                "or upload a Kaggle training.csv."
            )
            return None
        labels = [str(path.relative_to(data_dir())) for path in sets]
        label = st.selectbox("CSV file under data/", labels, key=f"{key}_converted")
        return sets[labels.index(label)]

    if source == sources[1]:
        upload = st.file_uploader(
            "Kaggle-format training.csv", type=["csv"], key=f"{key}_upload"
        )
        if upload is None:
            return None
        # Hashing a 230 MB upload takes a moment, so do it once per uploaded file.
        saved = st.session_state.get(f"{key}_saved")
        if saved is None or saved[0] != upload.file_id or not saved[1].is_file():
            saved = (upload.file_id, save_upload(upload.getvalue()))
            st.session_state[f"{key}_saved"] = saved
        return saved[1]

    # NOTE: any file the server process can read may be typed here. Its contents are only
    # parsed as a CSV, but error messages may quote a bad cell, so a public deployment
    # should run the app as a user that can read nothing private.
    typed = st.text_input("Path of a CSV file on this server", key=f"{key}_path").strip()
    if not typed:
        return None
    path = Path(typed).expanduser()
    if not path.is_file():
        st.error(f"{path} is not a file on this server. Enter the path of a CSV file.")
        return None
    return path


def load_dataset_or_stop(path: Path) -> KeypointSet:
    """Load a data set for a page, or show why it cannot be used and stop the page."""
    try:
        return load_dataset_cached(path)
    except FacekpError as error:
        log.warning("data set %s cannot be used: %s", path, error)
        st.error(f"The data set cannot be used: {error}")
    except (OSError, ValueError) as error:
        log.warning("data set %s cannot be read: %s", path, error)
        st.error(f"The data set {path} cannot be read: {error}")
    st.stop()
