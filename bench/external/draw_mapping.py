"""Draw each tool's 15 keypoints next to the ytf68 labels, to check the keypoint mappings by eye.

Runs in the project environment on the JSON files that the runners wrote::

    /work/venv/bin/python bench/external/draw_mapping.py bench/out/external/mediapipe.json \
        bench/out/external/dlib.json --photos Valerie_Harper_30.jpg --out-dir bench/out/external

Each output PNG shows one photo, enlarged, with the labels as green crosses and each tool's
keypoints as coloured dots, each dot joined to its label by a thin line. Keypoint numbers
follow ``facekp.keypoints.KEYPOINT_NAMES``. Alternative readings (iris centres, brow ends on
the lower edge) are drawn as hollow circles in the tool's colour.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from facekp.keypoints import KEYPOINT_NAMES, ibug68_to_kaggle  # noqa: E402
from facekp.landmarks import read_landmark_csv  # noqa: E402

COLOURS_BGR = [(0, 0, 255), (255, 128, 0), (255, 0, 255), (0, 200, 255)]
LABEL_COLOUR = (0, 200, 0)
ENLARGE_TO = 800  # pixels on the longer side of each drawing
MARGIN = 0.25  # share of the labels' extent added around them


def draw_photo(
    image_bgr: np.ndarray,
    labels: np.ndarray,
    tools: list[tuple[str, dict]],
) -> np.ndarray:
    """Draw ``labels`` ``(15, 2)`` and every tool's first face on an enlarged cut-out of the face.

    The cut-out is the labels' bounding box grown by ``MARGIN`` of its size on every side.
    """
    low, high = labels.min(axis=0), labels.max(axis=0)
    grow = MARGIN * (high - low).max()
    left, top = np.floor(np.maximum(low - grow, 0)).astype(int)
    right, bottom = np.ceil(high + grow).astype(int) + 1
    region = image_bgr[top:bottom, left:right]
    scale = ENLARGE_TO / max(region.shape[:2])
    canvas = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)

    def to_canvas(point) -> tuple[int, int]:
        # Pixel centres sit at integers, so the enlarged position is (v + 0.5) * scale - 0.5.
        x, y = point[0] - left, point[1] - top
        return int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5))

    for number, point in enumerate(labels):
        x, y = to_canvas(point)
        cv2.drawMarker(canvas, (x, y), LABEL_COLOUR, cv2.MARKER_CROSS, 14, 2)
        cv2.putText(
            canvas, str(number), (x + 6, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, LABEL_COLOUR, 1
        )

    for (tool, face), colour in zip(tools, COLOURS_BGR):
        for point, label in zip(face["keypoints"], labels):
            cv2.line(canvas, to_canvas(point), to_canvas(label), colour, 1)
            cv2.circle(canvas, to_canvas(point), 4, colour, -1)
        for table in face.get("alternatives", {}).values():
            for name, point in table.items():
                cv2.circle(canvas, to_canvas(point), 6, colour, 1)

    y = 20
    for (tool, _), colour in zip(tools, COLOURS_BGR):
        cv2.putText(canvas, tool, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
        y += 22
    cv2.putText(canvas, "labels", (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, LABEL_COLOUR, 2)
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by the runners")
    parser.add_argument("--photos", nargs="+", required=True, help="file names to draw")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(__file__).resolve().parents[3] / "shared" / "data" / "ytf68",
        help="ytf68 folder containing test/ and test_frames_keypoints.csv (default: %(default)s)",
    )
    args = parser.parse_args()

    documents = [json.loads(path.read_text()) for path in args.results]
    landmarks = read_landmark_csv(args.data_dir / "test_frames_keypoints.csv")
    labels = dict(zip(landmarks.names, ibug68_to_kaggle(landmarks.points)))
    args.out_dir.mkdir(parents=True, exist_ok=True)

    for name in args.photos:
        if name not in labels:
            print(f"{name}: not in the test labels, skipped", file=sys.stderr)
            continue
        tools = []
        for document in documents:
            photo = next((p for p in document["photos"] if p["file"] == name), None)
            if photo and photo["faces"]:
                tools.append((document["tool"], photo["faces"][0]))
        image = cv2.imread(str(args.data_dir / "test" / name), cv2.IMREAD_COLOR)
        drawing = draw_photo(image, labels[name], tools)
        target = args.out_dir / f"mapping-{Path(name).stem}.png"
        cv2.imwrite(str(target), drawing)
        print(target)
    print("keypoint numbers:", ", ".join(f"{i} {n}" for i, n in enumerate(KEYPOINT_NAMES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
