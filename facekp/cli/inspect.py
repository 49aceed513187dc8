"""``python -m facekp inspect CSV``: check a Kaggle-format CSV file and summarise its contents.

The file's kind comes from its header: a training file (keypoints and images), ``test.csv``,
``IdLookupTable.csv`` or a submission. Exit status: 0 when the file can be used as it is (or,
with ``--skip-bad-rows``, when at least one row is good), 1 when it has invalid rows, 2 when
the file as a whole cannot be read.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

EXIT_USABLE = 0
EXIT_INVALID_ROWS = 1
EXIT_UNREADABLE = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="check a Kaggle-format CSV file and summarise it",
        description=(
            "Check training.csv, test.csv, IdLookupTable.csv or a submission and print row "
            "counts, keypoint label counts and ranges, image statistics and every invalid row. "
            "Exit status 0: usable; 1: has invalid rows; 2: cannot be read at all."
        ),
    )
    parser.add_argument("csv", type=Path, help="the CSV file to check")
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="treat a training file with some invalid rows as usable (they would be skipped) "
        "and exit 0 if any row is good",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--max-problems",
        type=int,
        default=10,
        metavar="N",
        help="list at most N invalid rows (default 10); all are counted",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="parse the file even if a cached copy of an unchanged file exists",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facekp.errors import DataFormatError
    from facekp.kaggle import (
        ID_LOOKUP_KIND,
        SUBMISSION_KIND,
        TEST_KIND,
        detect_csv_kind,
    )

    try:
        kind = detect_csv_kind(args.csv)
        if kind == TEST_KIND:
            report = _inspect_test(args)
        elif kind == ID_LOOKUP_KIND:
            report = _inspect_id_lookup(args)
        elif kind == SUBMISSION_KIND:
            report = _inspect_submission(args)
        else:
            report = _inspect_training(args)
    except DataFormatError as error:
        if not args.json:
            raise
        print(json.dumps({"path": str(args.csv), "usable": False, "error": str(error)}, indent=2))
        return EXIT_UNREADABLE

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_format_report(report))
    return report["exit_status"]


def _inspect_training(args: argparse.Namespace) -> dict:
    from facekp.data import load_training_csv, summarize_keypoint_set

    # Always load leniently, so every invalid row is found and listed, not only the first.
    keypoint_set = load_training_csv(args.csv, skip_bad_rows=True, use_cache=not args.no_cache)
    summary = summarize_keypoint_set(keypoint_set)
    problems = keypoint_set.skipped_rows
    usable = not problems or args.skip_bad_rows
    return {
        "path": str(args.csv),
        "kind": "training",
        "usable": usable,
        "exit_status": EXIT_USABLE if usable else EXIT_INVALID_ROWS,
        "rows": len(keypoint_set) + len(problems),
        "invalid_rows": len(problems),
        "has_names": keypoint_set.groups is not None,
        "summary": summary.to_dict(),
        "problems": [str(problem) for problem in problems[: args.max_problems]],
    }


def _inspect_test(args: argparse.Namespace) -> dict:
    from facekp.data import summarize_images
    from facekp.kaggle import load_test_csv

    image_ids, images = load_test_csv(args.csv, use_cache=not args.no_cache)
    names = [f"ImageId {image_id}" for image_id in image_ids.tolist()]
    return {
        "path": str(args.csv),
        "kind": "test",
        "usable": True,
        "exit_status": EXIT_USABLE,
        "rows": len(image_ids),
        "image_id_min": int(image_ids.min()),
        "image_id_max": int(image_ids.max()),
        "images": asdict(summarize_images(images, names)),
    }


def _inspect_id_lookup(args: argparse.Namespace) -> dict:
    import numpy as np

    from facekp.kaggle import load_id_lookup

    lookup = load_id_lookup(args.csv)
    image_ids, per_image = np.unique(lookup.image_ids, return_counts=True)
    values, images_with = np.unique(per_image, return_counts=True)
    return {
        "path": str(args.csv),
        "kind": "id_lookup",
        "usable": True,
        "exit_status": EXIT_USABLE,
        "rows": len(lookup),
        "images": len(image_ids),
        "image_id_min": int(image_ids.min()),
        "image_id_max": int(image_ids.max()),
        "coordinates_per_image": {
            str(value): int(count)
            for value, count in zip(values.tolist(), images_with.tolist(), strict=True)
        },
    }


def _inspect_submission(args: argparse.Namespace) -> dict:
    from facekp.kaggle import load_submission

    row_ids, locations = load_submission(args.csv)
    return {
        "path": str(args.csv),
        "kind": "submission",
        "usable": True,
        "exit_status": EXIT_USABLE,
        "rows": len(row_ids),
        "row_id_min": int(row_ids.min()),
        "row_id_max": int(row_ids.max()),
        "location_min": float(locations.min()),
        "location_max": float(locations.max()),
    }


def _format_report(report: dict) -> str:
    kind = report["kind"]
    lines = [f"{report['path']}: {kind.replace('_', ' ')} file, {report['rows']} rows"]
    if kind == "training":
        lines += _format_training(report)
    elif kind == "test":
        lines.append(f"  ImageIds {report['image_id_min']} .. {report['image_id_max']}")
        lines += _format_images(report["images"])
    elif kind == "id_lookup":
        lines.append(
            f"  {report['images']} images, ImageIds {report['image_id_min']} .. "
            f"{report['image_id_max']}"
        )
        for count, images in report["coordinates_per_image"].items():
            noun = "image asks" if images == 1 else "images ask"
            lines.append(f"  {images} {noun} for {count} coordinates")
    else:
        lines.append(f"  RowIds {report['row_id_min']} .. {report['row_id_max']}")
        lines.append(f"  Locations {report['location_min']:.2f} .. {report['location_max']:.2f}")
    lines.append("verdict: " + _verdict(report))
    return "\n".join(lines)


def _format_training(report: dict) -> list[str]:
    summary = report["summary"]
    good = summary["rows"]
    persons = summary["persons"]
    complete, core_only = summary["complete_rows"], summary["core_only_rows"]
    lines = [
        f"  good rows        {good}",
        f"  invalid rows     {report['invalid_rows']}",
        "  Name column      " + (f"yes, {persons} persons" if report["has_names"] else "no"),
        f"  complete rows    {complete} ({_percent(complete, good)}) with all 15 keypoints",
        f"  core-only rows   {core_only} ({_percent(core_only, good)}) with only the eye centres, "
        "nose tip and bottom-lip centre",
        f"  unlabelled rows  {summary['unlabelled_rows']}",
        "keypoints (pixels of the 96x96 face)",
        f"  {'name':<26}{'labelled':>14}  {'x range':>16}  {'y range':>16}",
    ]
    for keypoint in summary["keypoints"]:
        labelled = keypoint["labelled"]
        lines.append(
            f"  {keypoint['name']:<26}{labelled:>7} {_percent(labelled, good):>6}  "
            f"{_range(keypoint['x_min'], keypoint['x_max']):>16}  "
            f"{_range(keypoint['y_min'], keypoint['y_max']):>16}"
        )
    lines += _format_images(summary["images"])
    if report["invalid_rows"]:
        listed = len(report["problems"])
        lines.append(f"invalid rows: {report['invalid_rows']} (showing {listed})")
        lines += [f"  {problem}" for problem in report["problems"]]
    return lines


def _format_images(images: dict) -> list[str]:
    from facekp.data import LOW_CONTRAST_STD

    lines = [
        "images (gray values 0-255)",
        f"  brightness mean {images['brightness_mean']:.1f}, std {images['brightness_std']:.1f}; "
        f"median contrast (per-image std) {images['contrast_median']:.1f}",
        f"  blank (single-value) images {len(images['constant_images'])}, low-contrast "
        f"(std < {LOW_CONTRAST_STD:g}) {len(images['low_contrast_images'])}, duplicates "
        f"{images['duplicate_images']}",
    ]
    for label, names in (
        ("blank", images["constant_images"]),
        ("low-contrast", images["low_contrast_images"]),
    ):
        if names:
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            lines.append(f"  {label}: {', '.join(names[:5])}{more}")
    return lines


def _verdict(report: dict) -> str:
    if report["kind"] != "training" or not report["invalid_rows"]:
        return "usable"
    if report["usable"]:
        return (
            f"usable with --skip-bad-rows: {report['invalid_rows']} of {report['rows']} rows "
            "would be skipped"
        )
    return (
        f"not usable as it is: {report['invalid_rows']} of {report['rows']} rows are invalid; "
        "fix them, or skip them with --skip-bad-rows (skip_bad_rows=True in Python)"
    )


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:.1f} .. {high:.1f}"
