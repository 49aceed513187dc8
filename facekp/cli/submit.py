"""``python -m facekp submit``: write a Kaggle submission for ``test.csv``."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="write a Kaggle submission CSV",
        description=(
            "Predict the faces of Kaggle's test.csv and write RowId,Location for every row "
            "of IdLookupTable.csv, in RowId order, with locations clipped to the 96x96 face."
        ),
    )
    parser.add_argument("--test", required=True, help="Kaggle test.csv (ImageId,Image)")
    parser.add_argument("--lookup", required=True, help="Kaggle IdLookupTable.csv")
    parser.add_argument(
        "--checkpoint", help="checkpoint file (default: the model shipped with facekp)"
    )
    parser.add_argument("--out", required=True, help="submission CSV to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from facekp.checkpoint import load_model
    from facekp.kaggle import check_submission, load_id_lookup, load_test_csv
    from facekp.submit import check_output_path, submission_locations, write_submission

    inputs = {"--test": args.test, "--lookup": args.lookup}
    if args.checkpoint:
        inputs["--checkpoint"] = args.checkpoint
    check_output_path(args.out, inputs)
    keypoint_model = load_model(args.checkpoint)
    lookup = load_id_lookup(args.lookup)
    image_ids, images = load_test_csv(args.test)
    row_ids, locations = submission_locations(keypoint_model, image_ids, images, lookup)
    path = write_submission(args.out, row_ids, locations)

    # Read the file back with the same checks Kaggle's format implies.
    check_submission(path, lookup)
    print(f"wrote {len(row_ids)} rows for {len(set(lookup.image_ids.tolist()))} images to {path}")
    return 0
