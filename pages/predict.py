"""Predict: keypoints for every face in uploaded, camera or sample photos."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from facekp import viz
from facekp.imageio import read_rgb
from facekp.keypoints import KEYPOINT_NAMES
from facekp.predict import PhotoResult, predict_photo, results_to_json
from pages import common

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "facekp" / "assets" / "samples"
CROP_ZOOM = 3  # Face crops are shown at 288x288.
FACES_PER_ROW = 4


@st.cache_data(max_entries=64, show_spinner="Finding faces...")
def predict_cached(data: bytes, name: str, model_path: str, model_mtime_ns: int) -> PhotoResult:
    """Predict one photo's keypoints, once per (photo bytes, name, checkpoint version)."""
    del model_mtime_ns  # Part of the cache key only.
    model = common.load_model_cached(Path(model_path))
    return predict_photo(data, model, name=name)


def sample_photos() -> list[Path]:
    return sorted(p for p in SAMPLES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".png"))


def keypoint_table(result: PhotoResult) -> pd.DataFrame:
    """Build a table with one row per face and keypoint, in photo pixels."""
    rows = []
    for index, face in enumerate(result.faces):
        for name, (x, y) in zip(KEYPOINT_NAMES, face.keypoints.tolist(), strict=True):
            rows.append({"face": index, "keypoint": name, "x": round(x, 2), "y": round(y, 2)})
    return pd.DataFrame(rows, columns=["face", "keypoint", "x", "y"])


def face_crops(result: PhotoResult) -> None:
    """Show each face as the model saw it (96x96 gray, enlarged) with its keypoints."""
    columns = st.columns(FACES_PER_ROW)
    for index, face in enumerate(result.faces):
        image = viz.enlarge(face.crop, CROP_ZOOM)
        points = viz.enlarge_points(face.keypoints_crop, CROP_ZOOM)
        drawn = viz.draw_keypoints(image, points, viz.PREDICTED_COLOR)
        score = "" if face.score is None else f", score {face.score:.0f}"
        columns[index % FACES_PER_ROW].image(
            drawn, caption=f"face {index} ({face.found_by}{score})", width="stretch"
        )


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def show_result(result: PhotoResult, data: bytes, model_name: str, index: int) -> None:
    """Show one photo: the drawing, the keypoint table and the three downloads."""
    st.subheader(common.code_span(result.path))
    if not result.ok:
        common.show_error(f"{common.code_span(result.path)} cannot be used:", result.error)
        return

    annotated = viz.draw_photo_result(read_rgb(data).pixels, result, labels=False)
    table = keypoint_table(result)
    columns = st.columns([3, 2])
    with columns[0]:
        st.image(
            annotated,
            caption=f"{len(result.faces)} face(s), predicted keypoints in blue",
            width="stretch",
        )
        face_crops(result)
    with columns[1]:
        st.dataframe(table, hide_index=True, height=320, width="stretch")
        stem = Path(result.path).stem or "photo"
        document = json.dumps(results_to_json([result], model_name), indent=2)
        st.download_button(
            "Download CSV", table.to_csv(index=False), f"{stem}_keypoints.csv", "text/csv",
            key=f"csv_{index}",
        )
        st.download_button(
            "Download JSON", document, f"{stem}_keypoints.json", "application/json",
            key=f"json_{index}",
        )
        st.download_button(
            "Download annotated PNG", png_bytes(annotated), f"{stem}_keypoints.png", "image/png",
            key=f"png_{index}",
        )


common.require_router()
st.title("Predict facial keypoints")
st.caption(
    "Every face the detector finds is cropped to 96x96 gray, the model predicts 15 keypoints, "
    "and they are mapped back onto the photo."
)
model = common.selected_model()

uploads = st.file_uploader(
    "Photos", type=common.photo_extensions(), accept_multiple_files=True, key="predict_uploads"
)
with st.expander("Take a photo with the camera"):
    camera = st.camera_input("Camera", key="predict_camera", label_visibility="collapsed")

# Each photo is (label, bytes). Labels only name results and files to download; no photo is
# ever written to a path made from its name.
photos: list[tuple[str, bytes]] = [(upload.name, upload.getvalue()) for upload in uploads or []]
if camera is not None:
    photos.append(("camera.jpg", camera.getvalue()))

# The sample photos stand in until the user brings a photo, so every result and download
# below is about the user's own photos once there are any.
if photos:
    st.caption("Sample photos are hidden while you have your own photos here. Remove them to "
               "try a sample.")
else:
    samples = st.multiselect(
        "Sample photos",
        [path.name for path in sample_photos()],
        default=[path.name for path in sample_photos()[:1]],
        help="Photos that ship with facekp (public domain); see facekp/assets/samples/README.md",
        key="predict_samples",
    )
    photos = [(name, (SAMPLES_DIR / name).read_bytes()) for name in samples]

if not photos:
    st.info("Upload a photo, take one with the camera, or pick a sample photo.")
    st.stop()

checkpoint = model.path or Path()
mtime_ns = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else 0
results = [predict_cached(data, name, str(checkpoint), mtime_ns) for name, data in photos]

if len(photos) > 1:
    st.download_button(
        f"Download JSON of all {len(photos)} photos",
        json.dumps(results_to_json(results, model.name), indent=2),
        "keypoints.json",
        "application/json",
        key="json_all",
    )
for index, (result, (_, data)) in enumerate(zip(results, photos, strict=True)):
    show_result(result, data, model.name, index)
