"""Widgets and cached loaders that several pages share. Not a page itself.

Models are cached with ``st.cache_resource`` (one object shared by every session, used
read-only) and parsed data sets with ``st.cache_data``. Both caches are keyed by the file's
path, size and modification time, so a checkpoint or CSV that is rewritten is read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image

from facekp import imageio, runs
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
# How many data set checks (a short message per file version) stay cached.
MAX_CHECKED_DATASETS = 64

# The names that accepted uploads had on the user's machine, by their file name under
# uploads/. The names are only displayed, never used as paths.
UPLOAD_INDEX_FILE = "uploads.json"
MAX_UPLOAD_NAME_CHARS = 200
# Every browser session is a thread of one server process, so a lock keeps their updates of
# the index from overwriting each other.
# NOTE: two server processes that share one data folder can still lose an index update.
_UPLOAD_INDEX_LOCK = threading.Lock()


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
    labels = {
        "best_val_rmse": "Best validation RMSE",
        "val_rmse": "Validation RMSE",
        "train_rmse": "Training RMSE",
    }
    for key, label in labels.items():
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            st.caption(f"{label}: {value:.2f} px")
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
        show_error("The model could not be loaded:", error)
        st.stop()


def photo_extensions() -> list[str]:
    """Return the file extensions, without the dot, of the photo formats facekp.imageio decodes.

    They come from Pillow's extension table for the formats in :data:`facekp.imageio.FORMATS`,
    plus MPO, the multi-picture JPEG that Pillow opens through its JPEG plugin.
    """
    formats = {*imageio.FORMATS, "MPO"}
    extensions = Image.registered_extensions()
    return sorted(suffix.lstrip(".") for suffix, name in extensions.items() if name in formats)


def clamp_state(key: str, low: int, high: int) -> None:
    """Pull a number widget's kept value into ``[low, high]`` before the widget is drawn.

    A page count or a row count shrinks when the data set or a filter changes, and a kept
    value outside the new range would make Streamlit reject the widget.
    """
    value = st.session_state.get(key)
    if isinstance(value, (int, float)) and not low <= value <= high:
        st.session_state[key] = min(max(value, low), high)


# -- messages --------------------------------------------------------------------------------


def code_span(text: str) -> str:
    """Return Markdown that shows ``text`` verbatim on one line, as an inline code span.

    Streamlit renders every message as Markdown, so a file name such as ``*:x:*.csv`` would
    otherwise turn into italics and an emoji. Line breaks in ``text`` become spaces.
    """
    flat = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each end of a code span, so the padding never shows,
    # and it lets a text that starts or ends with a backtick sit inside the fence.
    return f"{fence} {flat} {fence}"


def literal_text(text: str) -> str:
    """Return Markdown that shows ``text`` verbatim: each line a code span, with line breaks.

    Inline code wraps long lines inside an alert, where a fenced code block would make the
    reader scroll sideways through a one-line message.
    NOTE: Streamlit 1.67 rewrites ``:material/`` to ``:material_`` anywhere in a Markdown
    string before parsing it, code included, so that one sequence is shown changed.
    """
    lines = [code_span(line) if line.strip() else "" for line in str(text).splitlines()]
    return "  \n".join(lines)


def show_error(summary: str, detail: object = None) -> None:
    """Show an error box: ``summary`` as Markdown, then ``detail`` verbatim as code.

    ``summary`` is the app's own sentence. File names and other user input in it belong in a
    :func:`code_span`. ``detail`` is a library message, which can quote the contents of any
    file the user chose, so it is never interpreted as Markdown.
    """
    text = str(detail) if detail is not None else ""
    st.error(f"{summary}\n\n{literal_text(text)}" if text.strip() else summary)


# -- data sets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetChoice:
    """One entry of the list of CSV files under the data folder: a label and a path."""

    label: str
    path: Path


@dataclass(frozen=True)
class UploadOutcome:
    """An uploaded CSV after its check: the saved path, or None and why it was rejected."""

    path: Path | None
    problem: str


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


@st.cache_data(max_entries=MAX_CHECKED_DATASETS, show_spinner="Checking the data set...")
def _dataset_problem_cached(path: str, size: int, mtime_ns: int) -> str:
    try:
        faces = _load_dataset_cached(path, size, mtime_ns)
    except FacekpError as error:
        return str(error)
    except (OSError, ValueError) as error:
        return f"{path} cannot be read: {error}"
    if len(faces) == 0:
        return f"{path} has a header but no faces"
    return ""


def dataset_problem(path: Path) -> str:
    """Return why ``path`` cannot be used as a data set, or "" when it loads with faces.

    The result is cached per (path, size, modification time), so a file that fails is not
    parsed again on every rerun of a page. The message names ``path`` as it is on the server.
    """
    try:
        stat = path.stat()
    except OSError as error:
        return f"{path} cannot be read: {error.strerror or error}"
    return _dataset_problem_cached(str(path), stat.st_size, stat.st_mtime_ns)


def data_dir() -> Path:
    """Return the folder of converted sets and saved uploads: ``$FACEKP_DATA_DIR`` or ``data/``."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "data")


def uploads_dir() -> Path:
    """Return the folder of uploaded CSV files, ``uploads/`` inside :func:`data_dir`."""
    return data_dir() / "uploads"


def save_upload(data: bytes, suffix: str = ".csv") -> Path:
    """Store uploaded bytes under ``data/uploads/`` with a name made from their SHA-256.

    The uploaded file's own name is never used, so it cannot point anywhere on the server.
    Saving the same bytes twice reuses the first file.
    """
    digest = hashlib.sha256(data).hexdigest()[:24]
    uploads = uploads_dir()
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{digest}{suffix}"
    if not path.is_file() or path.stat().st_size != len(data):
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    return path


def _upload_index_path() -> Path:
    return data_dir() / UPLOAD_INDEX_FILE


def _clean_upload_name(name: str) -> str:
    """Drop control characters and cut the name to ``MAX_UPLOAD_NAME_CHARS`` for display."""
    printable = "".join(character for character in str(name) if character.isprintable())
    return printable[:MAX_UPLOAD_NAME_CHARS] or "unnamed upload"


def read_upload_index() -> dict[str, str]:
    """Return the accepted uploads as {file name under uploads/: the name it was uploaded as}.

    A missing or unreadable index reads as empty. Only uploads that loaded as a data set are in
    it, so the pickers list nothing else from ``uploads/``.
    """
    path = _upload_index_path()
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("the upload index %s cannot be read, so no upload is listed: %s", path, error)
        return {}
    if not isinstance(value, dict):
        log.warning("the upload index %s is not a JSON object, so no upload is listed", path)
        return {}
    return {
        str(key): _clean_upload_name(name)
        for key, name in value.items()
        if isinstance(name, str) and "/" not in str(key) and "\\" not in str(key)
    }


def _update_upload_index(file_name: str, upload_name: str | None) -> None:
    """Add ``file_name`` under ``upload_name`` to the index, or remove it when that is None."""
    with _UPLOAD_INDEX_LOCK:
        index = read_upload_index()
        if upload_name is None:
            if index.pop(file_name, None) is None:
                return
        else:
            index[file_name] = _clean_upload_name(upload_name)
        path = _upload_index_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(index, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)


def accept_upload(data: bytes, upload_name: str) -> UploadOutcome:
    """Save an uploaded CSV and keep it only if it loads as a data set with faces.

    A rejected file is deleted again and left out of the upload index. Its message names the
    file as the user uploaded it, not the server's copy.
    """
    path = save_upload(data)
    problem = dataset_problem(path)
    if not problem:
        _update_upload_index(path.name, upload_name)
        log.info("accepted upload %r as %s", upload_name, path)
        return UploadOutcome(path=path, problem="")

    log.info("rejected upload %r (saved as %s): %s", upload_name, path, problem)
    path.unlink(missing_ok=True)
    _update_upload_index(path.name, None)
    shown_name = _clean_upload_name(upload_name)
    message = problem.replace(str(path), shown_name).replace(path.name, shown_name)
    return UploadOutcome(path=None, problem=message)


def display_name(path: Path) -> str:
    """Return the name the app shows for a data set: its upload name, path under data/ or path."""
    upload_name = read_upload_index().get(path.name) if path.parent == uploads_dir() else None
    if upload_name is not None:
        return upload_name
    try:
        return str(path.relative_to(data_dir()))
    except ValueError:
        return str(path)


def dataset_choices() -> list[DatasetChoice]:
    """List the CSV files under the data folder, in the order the picker offers them.

    Converted sets come first, then accepted uploads, each group newest first. Files under
    ``uploads/`` that are missing from the upload index (rejected ones, or ones saved before the
    index existed) are left out.
    """
    folder = data_dir()
    if not folder.is_dir():
        return []
    uploads = uploads_dir()
    accepted = read_upload_index()
    converted: list[tuple[float, DatasetChoice]] = []
    uploaded: list[tuple[float, DatasetChoice]] = []
    for path in folder.rglob("*.csv"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if not path.is_file():
            continue
        relative = str(path.relative_to(folder))
        if uploads not in path.parents:
            converted.append((mtime, DatasetChoice(relative, path)))
        elif path.parent == uploads and path.name in accepted:
            label = f"{accepted[path.name]} (uploaded, {relative})"
            uploaded.append((mtime, DatasetChoice(label, path)))
    newest_first = sorted(converted, key=lambda item: (-item[0], item[1].label))
    newest_first += sorted(uploaded, key=lambda item: (-item[0], item[1].label))
    return [choice for _, choice in newest_first]


def dataset_picker(key: str) -> Path | None:
    """Let the user choose a Kaggle-format CSV; return its path on this server, or None.

    Three sources: a CSV under ``data/``, an upload (saved under a generated name), or a path
    typed by the user.
    """
    sources = ["A data set under data/", "Upload a training.csv", "A path on this server"]
    source = st.radio("Data set", sources, key=f"{key}_source", horizontal=True)
    if source == sources[0]:
        return _pick_converted(key)
    if source == sources[1]:
        return _pick_upload(key)
    return _pick_typed_path(key)


def _pick_converted(key: str) -> Path | None:
    choices = dataset_choices()
    if not choices:
        st.info(
            "No CSV files under data/ yet. Convert photos with `python -m facekp convert`, "
            "or upload a Kaggle training.csv."
        )
        return None

    # The first file that loads is the default, so a page never opens on a broken file.
    default = next(
        (index for index, choice in enumerate(choices) if not dataset_problem(choice.path)), None
    )
    if default is None:
        st.warning(
            "None of the CSV files under data/ loads as a data set. Choose one to see why, or "
            "upload a Kaggle training.csv."
        )
    labels = [choice.label for choice in choices]
    label = st.selectbox(
        "CSV file under data/", labels, index=default, key=f"{key}_converted",
        placeholder="Choose a CSV file",
    )
    if label is None:
        return None
    return choices[labels.index(label)].path


def _pick_upload(key: str) -> Path | None:
    upload = st.file_uploader("Kaggle-format training.csv", type=["csv"], key=f"{key}_upload")
    if upload is None:
        return None

    # Hashing and checking a 230 MB upload takes a moment, so do it once per uploaded file.
    state_key = f"{key}_saved"
    saved = st.session_state.get(state_key)
    if not (
        isinstance(saved, tuple)
        and saved[0] == upload.file_id
        and (saved[1].path is None or saved[1].path.is_file())
    ):
        saved = (upload.file_id, accept_upload(upload.getvalue(), upload.name))
        st.session_state[state_key] = saved

    outcome: UploadOutcome = saved[1]
    if outcome.path is None:
        show_error(
            f"The upload {code_span(upload.name)} cannot be used as a data set, so it was not "
            "kept. Upload a Kaggle-format training.csv.",
            outcome.problem,
        )
    return outcome.path


def _pick_typed_path(key: str) -> Path | None:
    # NOTE: any file the server process can read may be typed here. Its contents are only
    # parsed as a CSV, but error messages may quote a bad cell, so a public deployment
    # should run the app as a user that can read nothing private.
    typed = st.text_input("Path of a CSV file on this server", key=f"{key}_path").strip()
    if not typed:
        return None
    path = Path(typed).expanduser()
    if not path.is_file():
        st.error(
            f"{code_span(str(path))} is not a file on this server. Enter the path of a CSV file."
        )
        return None
    return path


def load_dataset_or_stop(path: Path) -> KeypointSet:
    """Load a data set for a page, or show why it cannot be used and stop the page."""
    try:
        return load_dataset_cached(path)
    except FacekpError as error:
        log.warning("data set %s cannot be used: %s", path, error)
        show_error(f"The data set {code_span(display_name(path))} cannot be used:", error)
    except (OSError, ValueError) as error:
        log.warning("data set %s cannot be read: %s", path, error)
        show_error(f"The data set {code_span(display_name(path))} cannot be read:", error)
    st.stop()
