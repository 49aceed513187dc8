"""Grad-CAM: which regions of a face move a chosen keypoint coordinate, layer by layer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import streamlit as st

from facekp import gradcam, viz
from facekp.checkpoint import KeypointModel
from facekp.keypoints import KEYPOINT_NAMES
from facekp.predict import predict_photo
from pages import common

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "facekp" / "assets" / "samples"
ZOOM = 4  # The 96x96 face is shown at 384x384.
WHITE = (255, 255, 255)
SIGNS = {"+ (right / down)": 1, "- (left / up)": -1}


@st.cache_data(max_entries=8, show_spinner=False)
def layer_names(model_path: str, size: int, mtime_ns: int) -> list[str]:
    """List the layers of a checkpoint's model that Grad-CAM accepts, input side first."""
    del size, mtime_ns  # Part of the cache key only.
    model = common.load_model_cached(Path(model_path))
    return [layer.name for layer in gradcam.list_layers(model.model)]


def face_from_dataset() -> np.ndarray | None:
    path = common.dataset_picker("gradcam_data")
    if path is None:
        return None
    faces = common.load_dataset_or_stop(path)
    if len(faces) == 0:
        st.error(f"{common.code_span(common.display_name(path))} has a header but no faces.")
        return None
    common.clamp_state("gradcam_row", 0, len(faces) - 1)
    index = st.number_input("Face (row)", 0, len(faces) - 1, 0, key="gradcam_row")
    return faces.images[int(index)]


def face_from_upload(model: KeypointModel) -> np.ndarray | None:
    upload = st.file_uploader(
        "Photo with a face", type=common.photo_extensions(), key="gradcam_upload"
    )
    if upload is None:
        return None
    return face_from_photo(upload.getvalue(), upload.name, model)


def face_from_sample(model: KeypointModel) -> np.ndarray | None:
    samples = sorted(SAMPLES_DIR.glob("*.jpg"))
    if not samples:
        st.info(f"No sample photos under {SAMPLES_DIR}.")
        return None
    names = [path.name for path in samples]
    name = st.selectbox("Sample photo", names, key="gradcam_sample")
    return face_from_photo((SAMPLES_DIR / name).read_bytes(), name, model)


def face_from_photo(data: bytes, name: str, model: KeypointModel) -> np.ndarray | None:
    """Return the 96x96 crop of one face found in a photo, or None after showing why not."""
    result = predict_photo(data, model, name=name)
    if not result.ok:
        common.show_error(f"{common.code_span(name)} cannot be used:", result.error)
        return None
    index = 0
    if len(result.faces) > 1:
        index = st.selectbox("Face", range(len(result.faces)), key="gradcam_face")
    return result.faces[int(index)].crop


def show_map(column, title: str, image: np.ndarray, caption: str) -> None:
    column.markdown(f"**{title}**")
    column.image(image, caption=caption, width="stretch")


common.require_router()
st.title("Grad-CAM")
st.caption(
    "Grad-CAM weights a layer's channels by the gradient of the target (one keypoint "
    "coordinate) and keeps the regions that push it up. Saliency is the gradient with respect "
    "to the input pixels."
)
model = common.selected_model()

sources = {
    "A sample photo": face_from_sample,
    "From a data set": lambda _model: face_from_dataset(),
    "Upload a photo": face_from_upload,
}
source = st.radio("Face", list(sources), horizontal=True, key="gradcam_source")
face = sources[source](model)
if face is None:
    st.info("Choose a face to explain.")
    st.stop()

stat = model.path.stat() if model.path else None
layers = layer_names(str(model.path), stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0)
if not layers:
    st.error(f"Model {model.name} has no layer with a spatial output, so Grad-CAM cannot run.")
    st.stop()
default_layer = gradcam.default_layer(model.model)

columns = st.columns(4)
layer = columns[0].selectbox(
    "Layer", layers, index=layers.index(default_layer) if default_layer in layers else 0,
    key="gradcam_layer",
)
keypoint = columns[1].selectbox(
    "Keypoint", ["all", *KEYPOINT_NAMES], index=1 + KEYPOINT_NAMES.index("nose_tip"),
    key="gradcam_keypoint",
)
coordinate = columns[2].selectbox("Coordinate", list(gradcam.COORDINATES), key="gradcam_coordinate")
sign_label = columns[3].selectbox("Sign", list(SIGNS), key="gradcam_sign")

target = gradcam.keypoint_target(keypoint, coordinate, SIGNS[sign_label])
cam = gradcam.grad_cam(model.model, face, layer, target)
saliency = gradcam.saliency(model.model, face, target)

large_face = viz.enlarge(face, ZOOM)
points = viz.enlarge_points(cam.keypoints, ZOOM)
# White rather than the usual blue, which would vanish in the colormap's blue regions.
overlay = viz.draw_keypoints(viz.overlay_heatmap(large_face, cam.heatmap), points, WHITE)
raw = cam.layer_map
raw_scaled = raw / raw.max() if raw.max() > 0 else np.zeros_like(raw)
# Nearest-neighbour enlargement keeps the layer's own cells visible.
raw_image = cv2.resize(
    viz.colorize_heatmap(raw_scaled), large_face.shape[1::-1], interpolation=cv2.INTER_NEAREST
)
saliency_image = viz.overlay_heatmap(large_face, saliency.heatmap, alpha=0.6)

if cam.empty:
    st.warning(cam.message)
left, middle, right = st.columns(3)
show_map(
    left, "Grad-CAM overlay", overlay, f"{cam.target} at {layer}; predicted keypoints in white"
)
show_map(
    middle, "Raw map", raw_image,
    f"{raw.shape[0]}x{raw.shape[1]} at {layer}, max {raw.max():.3g}",
)
show_map(right, "Saliency", saliency_image, "|gradient| of the target with respect to the input")
if saliency.empty:
    st.warning(saliency.message)
