"""``python -m facekp predict``: keypoints for every face in one or more photos.

Exit status: 0 when every photo gave at least one face, 1 when any photo failed (its
message is in the table or the JSON, and only there) or a drawing could not be written,
2 when the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facekp.predict import PhotoResult

HELP = "predict the 15 keypoints of every face in photos (JPEG, PNG, WebP, AVIF, BMP, TIFF, GIF)"

WHOLE_IMAGE_CHOICES = {"auto": None, "always": True, "never": False}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from facekp.detect import MAX_DETECTION_SIDE

    parser = subparsers.add_parser(
        "predict",
        help=HELP,
        description=HELP + ". Exit status: 0 if every photo gave at least one face, 1 if any "
        "photo failed or a drawing could not be written, 2 if the model cannot be loaded.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document with every face's box, score and keypoints in photo "
        "pixels, instead of a table",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help="also write each photo with its face boxes and keypoints drawn, as "
        "DIR/NAME-keypoints.png, where NAME is the photo's file name without its extension "
        "and with characters other than letters, digits, '.', '_' and '-' replaced by '_'",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="model checkpoint to use (default: the model shipped with facekp)",
    )
    parser.add_argument(
        "--whole-image",
        choices=tuple(WHOLE_IMAGE_CHOICES),
        default="auto",
        help="treat each photo as one face crop: 'auto' (default) does so only for a small, "
        "near-square image in which the detector finds no face or one that fills most of it, "
        "such as a 96x96 Kaggle face",
    )
    parser.add_argument(
        "--detection-side",
        type=int,
        default=None,
        metavar="PIXELS",
        help="search photos longer than this on a copy scaled down to this many pixels "
        f"(default: {MAX_DETECTION_SIDE}); smaller is faster but misses faces narrower than "
        "24 px in the copy",
    )
    parser.add_argument(
        "--labels", action="store_true", help="number the keypoints in --out-dir drawings"
    )
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    import warnings

    from PIL import Image
    from tqdm import tqdm

    from facekp.checkpoint import load_model
    from facekp.detect import MAX_DETECTION_SIDE, default_detector
    from facekp.predict import predict_photo, results_to_json

    # Oversized images are rejected with a clear message; Pillow's warning would only repeat it.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)

    if args.detection_side is not None and args.detection_side < 64:
        args.parser.error(f"--detection-side must be at least 64 pixels, got {args.detection_side}")
    detection_side = args.detection_side or MAX_DETECTION_SIDE

    keypoint_model = load_model(args.checkpoint)
    detector = default_detector()
    whole_image = WHOLE_IMAGE_CHOICES[args.whole_image]

    results = []
    progress = tqdm(args.images, desc="photos", unit="photo", disable=len(args.images) < 2 or None)
    for image in progress:
        result = predict_photo(
            image,
            keypoint_model,
            detector,
            whole_image=whole_image,
            detection_side=detection_side,
        )
        results.append(result)

    drawing_failed = False
    if args.out_dir is not None:
        drawing_failed = not _write_drawings(results, args.images, args.out_dir, args.labels)

    if args.json:
        print(json.dumps(results_to_json(results, keypoint_model.name), indent=2))
    else:
        print(format_table(results, keypoint_model.name))
    failed = any(not result.ok for result in results)
    return 1 if failed or drawing_failed else 0


def format_table(results: list[PhotoResult], model_name: str) -> str:
    """Format results as a table: one row per face, then each face's keypoints."""
    from facekp.keypoints import KEYPOINT_NAMES

    lines = [f"model: {model_name}"]
    lines.append(
        f"{'IMAGE':<32} {'SIZE':>11} {'FACE':>4}  {'FOUND BY':<11} {'BOX (x, y, w, h)':<26} SCORE"
    )
    for result in results:
        size = f"{result.width}x{result.height}" if result.width is not None else "-"
        name = _shorten(result.path, 32)
        if not result.ok:
            lines.append(f"{name:<32} {size:>11} {'-':>4}  error: {result.error}")
            continue
        for index, face in enumerate(result.faces):
            box = ", ".join(f"{v:.0f}" for v in face.box)
            score = "-" if face.score is None else f"{face.score:g}"
            row = f"{name:<32} {size:>11} {index:>4}  {face.found_by:<11} {box:<26} {score}"
            lines.append(row)
            for keypoint, (x, y) in zip(KEYPOINT_NAMES, face.keypoints.tolist()):
                lines.append(f"{'':>50}{keypoint:<26} {x:8.1f} {y:8.1f}")
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _write_drawings(
    results: list[PhotoResult], images: list[str], out_dir: Path, labels: bool
) -> bool:
    """Write each successful photo with its faces drawn; return False if any write failed."""
    from PIL import Image

    from facekp.errors import ImageError
    from facekp.imageio import read_rgb
    from facekp.viz import draw_photo_result

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot create output folder {out_dir}: {error}", file=sys.stderr)
        return False

    used: set[str] = set()
    all_written = True
    for result, image in zip(results, images):
        if not result.ok:
            continue
        path = out_dir / _drawing_name(image, used)
        try:
            drawing = draw_photo_result(read_rgb(image).pixels, result, labels=labels)
            Image.fromarray(drawing).save(path)
        except (OSError, ImageError) as error:
            print(f"error: cannot write {path}: {error}", file=sys.stderr)
            all_written = False
    return all_written


def _drawing_name(image: str, used: set[str]) -> str:
    """Derive a safe, unused file name ``STEM-keypoints.png`` from a photo path.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``, and a
    number is appended when two photos share a stem.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(image).stem).lstrip(".") or "photo"
    stem = stem[:100]
    name = f"{stem}-keypoints.png"
    counter = 2
    while name in used:
        name = f"{stem}-{counter}-keypoints.png"
        counter += 1
    used.add(name)
    return name
