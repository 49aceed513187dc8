"""``python -m facekp gradcam``: which parts of a face drive one keypoint's prediction.

Writes the 96x96 face crop, enlarged, with the Grad-CAM heatmap (or the input-gradient
saliency with ``--saliency``) blended over it and the predicted keypoints in blue. Exit
status: 0 on success (also when the map is empty, which is logged as a warning), 1 when
the photo fails, 2 for a bad layer name or an unloadable model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from facekp.keypoints import KEYPOINT_NAMES

if TYPE_CHECKING:
    import numpy as np

    from facekp.checkpoint import KeypointModel
    from facekp.gradcam import AttributionMap
    from facekp.predict import FaceResult

log = logging.getLogger(__name__)

HELP = "draw a Grad-CAM or saliency map of what moves a keypoint, for one face in a photo"

# The face crop is drawn this many times larger, so the overlay is legible.
ENLARGE = 4


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gradcam", help=HELP, description=HELP + ".")
    parser.add_argument(
        "image", nargs="?", metavar="IMAGE", help="a photo, or a 96x96 face crop"
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="model checkpoint to use (default: the model shipped with facekp)",
    )
    parser.add_argument(
        "--list-layers",
        action="store_true",
        help="print the layers that Grad-CAM can explain, with their output shapes, and exit",
    )

    explained = parser.add_argument_group("what to explain")
    explained.add_argument(
        "--layer",
        metavar="NAME",
        help="layer to explain, as printed by --list-layers (default: the layer that feeds the "
        "model's last activation, such as stage4.1.bn2 of the shipped model)",
    )
    explained.add_argument(
        "--keypoint",
        choices=("all", *KEYPOINT_NAMES),
        default="all",
        metavar="NAME",
        help="keypoint whose position is explained, or 'all' (default); names as in Kaggle's "
        "columns without _x/_y, e.g. nose_tip",
    )
    explained.add_argument(
        "--coordinate",
        choices=("x", "y", "both"),
        default="both",
        help="explain the x coordinate, the y coordinate, or their sum (default: both)",
    )
    explained.add_argument(
        "--sign",
        choices=("+", "-"),
        default="+",
        help="'+' shows what moves the point right/down (default), '-' what moves it left/up",
    )
    explained.add_argument(
        "--face",
        type=int,
        default=0,
        metavar="N",
        help="which face of the photo, numbered from 0 as 'facekp predict' lists them "
        "(default: 0, the detector's best)",
    )
    explained.add_argument(
        "--saliency",
        action="store_true",
        help="draw the input-gradient saliency |d target / d pixel| instead of Grad-CAM",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, metavar="PNG", help="image file to write")
    output.add_argument(
        "--alpha", type=float, default=0.5, help="heatmap opacity from 0 to 1 (default: 0.5)"
    )
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    from facekp.checkpoint import load_model
    from facekp.gradcam import default_layer, grad_cam, keypoint_target, list_layers, saliency

    if not args.list_layers:
        _check_arguments(args)

    keypoint_model = load_model(args.checkpoint)
    model = keypoint_model.model
    layers = list_layers(model)

    if args.list_layers:
        print(f"{'LAYER':<28} {'KIND':<16} OUTPUT (C x H x W)")
        for layer in layers:
            print(f"{layer.name:<28} {layer.kind:<16} {' x '.join(map(str, layer.shape))}")
        return 0

    layer = args.layer or default_layer(model)
    if args.layer is not None and args.layer not in {info.name for info in layers}:
        print(
            f"error: unknown layer {args.layer!r}; run with --list-layers to see the choices",
            file=sys.stderr,
        )
        return 2

    face = _pick_face(args, keypoint_model)
    if face is None:
        return 1

    target = keypoint_target(args.keypoint, args.coordinate, args.sign)
    if args.saliency:
        attribution = saliency(model, face.crop, target)
    else:
        attribution = grad_cam(model, face.crop, layer, target)
    if attribution.empty:
        log.warning("%s", attribution.message)

    if not _write_overlay(args.out, face.crop, attribution, args.alpha):
        return 1
    print(f"{attribution.layer}: {attribution.target} -> {args.out}")
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Exit with a usage error for arguments that are wrong before any work is done."""
    from PIL import Image

    if args.image is None or args.out is None:
        args.parser.error("IMAGE and --out are required unless --list-layers is given")
    if not 0.0 <= args.alpha <= 1.0:
        args.parser.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.out.suffix.lower() not in Image.registered_extensions():
        args.parser.error(f"--out {args.out}: unknown image file extension; use .png or .jpg")


def _pick_face(args: argparse.Namespace, keypoint_model: KeypointModel) -> FaceResult | None:
    """Return face ``--face`` of the photo, or ``None`` after printing why there is none."""
    from facekp.predict import predict_photo

    result = predict_photo(args.image, keypoint_model)
    if not result.ok:
        print(f"error: {args.image}: {result.error}", file=sys.stderr)
        return None
    if not 0 <= args.face < len(result.faces):
        print(
            f"error: {args.image} has {len(result.faces)} face(s), numbered 0 to "
            f"{len(result.faces) - 1}; --face {args.face} does not exist",
            file=sys.stderr,
        )
        return None
    face = result.faces[args.face]
    log.info("face %d (%s) at box %s", args.face, face.found_by, [round(v) for v in face.box])
    return face


def _write_overlay(
    out: Path, crop: np.ndarray, attribution: AttributionMap, alpha: float
) -> bool:
    """Write the enlarged crop with the heatmap and keypoints; return False if writing failed."""
    from PIL import Image

    from facekp.viz import draw_keypoints, enlarge, enlarge_points, overlay_heatmap

    large = enlarge(crop, ENLARGE)
    drawing = large if attribution.empty else overlay_heatmap(large, attribution.heatmap, alpha)
    drawing = draw_keypoints(drawing, enlarge_points(attribution.keypoints, ENLARGE))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawing).save(out)
    except (OSError, ValueError) as error:
        print(f"error: cannot write {out}: {error}", file=sys.stderr)
        return False
    return True

