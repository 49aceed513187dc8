"""``python -m facekp convert``: turn photos with 68-point landmarks into a Kaggle-format CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from facekp.errors import DataFormatError

HELP = "convert photos with 68-point landmarks (CSV or .pts) into 96x96 Kaggle-format faces"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help=HELP,
        description=HELP + ". Faces are found and framed exactly as the photo pipeline does it.",
    )
    parser.add_argument(
        "--landmarks",
        required=True,
        type=Path,
        metavar="FILE_OR_DIR",
        help="a CSV of image file name, x0, y0, ..., x67, y67 rows, a .pts file, "
        "or a folder of iBUG .pts files",
    )
    parser.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="folder of the labelled photos (default: the .pts folder, or the CSV file's folder)",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="CSV", help="Kaggle-format CSV file to write"
    )
    parser.add_argument(
        "--pts-origin",
        type=int,
        choices=(0, 1),
        default=1,
        help="pixel number of the top-left pixel in .pts files: 1 for 300-W files (default), "
        "0 for files that count from 0",
    )
    parser.add_argument(
        "--keep-partial",
        action="store_true",
        help="keep faces whose keypoints leave the 96x96 crop, with those keypoints missing "
        "(default: skip such faces)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facekp.convert import convert_landmarks
    from facekp.data import write_training_csv
    from facekp.landmarks import load_landmarks

    landmarks_path: Path = args.landmarks
    images_dir: Path = args.images or (
        landmarks_path if landmarks_path.is_dir() else landmarks_path.parent
    )
    _reject_overwriting_input(args.out, landmarks_path)

    landmarks = load_landmarks(landmarks_path, pts_one_based=args.pts_origin == 1)
    conversion = convert_landmarks(
        landmarks, images_dir, keep_partial=args.keep_partial, progress=True
    )
    if len(conversion.faces) == 0:
        raise DataFormatError(
            f"no face of the {len(landmarks)} photos could be converted "
            f"({_describe_skips(conversion.skipped)}); check that --images is the folder "
            "of the labelled photos",
            path=str(landmarks_path),
        )
    written = write_training_csv(args.out, conversion.faces)

    print(f"converted {len(conversion.faces)} of {len(landmarks)} photos")
    if conversion.partial:
        print(f"kept {len(conversion.partial)} with keypoints outside the crop set missing")
    print(f"skipped {conversion.num_skipped}" + (
        f": {_describe_skips(conversion.skipped)}" if conversion.skipped else ""
    ))
    print(f"wrote {written}")
    return 0


def _describe_skips(skipped: dict[str, list[str]]) -> str:
    return ", ".join(f"{reason} {len(names)}" for reason, names in skipped.items()) or "none"


def _reject_overwriting_input(out: Path, landmarks_path: Path) -> None:
    if out.exists() and landmarks_path.exists() and out.resolve() == landmarks_path.resolve():
        raise DataFormatError(
            "the output file is the landmark file; pass another path to --out", path=str(out)
        )
    if out.is_dir():
        raise DataFormatError("is a folder; pass the path of the CSV file to --out", path=str(out))
