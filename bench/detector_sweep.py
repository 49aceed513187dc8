"""Compare Haar cascade settings by how often they find the labelled ytf68 face, and how fast.

For each setting the sweep runs :func:`facekp.detect.find_faces` (which searches photos
larger than ``max side`` on a downscaled copy) on every labelled photo of a landmark CSV
(by default the 770 ytf68 test photos) and counts a hit when
:func:`facekp.convert.match_detection` accepts one of the boxes, the rule that conversion uses.
It times the detector on 40 of the photos, as they are and enlarged and padded to 640x480
(the size that the photo pipeline's time budget is set for), on one OpenCV thread by
default. Results print as a Markdown table.

    python bench/detector_sweep.py [--landmarks CSV --images DIR] [--full] [--threads N]

Without ``--full`` it runs a subset of settings: every cascade at scale factor 1.1 with 3
neighbours, then scale factors, neighbours, minimum sizes and maximum search sides around
the default cascade. It takes about 10 minutes on two busy cores.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facekp.convert import match_detection
from facekp.detect import MAX_DETECTION_SIDE, HaarFaceDetector, find_faces
from facekp.landmarks import read_landmark_csv

REPO = Path(__file__).resolve().parents[1]
YTF68 = REPO.parent / "shared" / "data" / "ytf68"
CASCADES = ("default", "alt", "alt2", "alt_tree")
VGA = (640, 480)
NUM_VGA_PHOTOS = 40


@dataclass(frozen=True)
class Setting:
    cascade: str
    scale_factor: float
    min_neighbors: int
    min_size: int
    max_side: int = MAX_DETECTION_SIDE

    def detector(self) -> HaarFaceDetector:
        return HaarFaceDetector(
            cascade=f"haarcascade_frontalface_{self.cascade}.xml",
            scale_factor=self.scale_factor,
            min_neighbors=self.min_neighbors,
            min_size=self.min_size,
        )


def settings(full: bool) -> list[Setting]:
    if full:
        grid = itertools.product(CASCADES, (1.05, 1.1, 1.2), (3, 5), (24,))
        return [Setting(*values) for values in grid]

    chosen = [Setting(cascade, 1.1, 3, 24) for cascade in CASCADES]
    chosen += [Setting("default", factor, 3, 24) for factor in (1.05, 1.15, 1.2)]
    chosen += [Setting("default", 1.1, 5, 24)]
    chosen += [Setting("alt2", factor, 3, 24) for factor in (1.05, 1.2)]
    chosen += [Setting("default", 1.1, 3, size) for size in (32, 48)]
    chosen += [Setting("default", 1.1, 3, 24, max_side) for max_side in (320, 640, 1024)]
    chosen += [Setting("default", 1.1, 3, 48, 1024)]
    return chosen


def vga_photo(gray: np.ndarray) -> np.ndarray:
    """Enlarge a photo to fit 640x480 and pad it with its own mirrored edges."""
    height, width = gray.shape
    factor = min(VGA[0] / width, VGA[1] / height)
    resized = cv2.resize(gray, (round(width * factor), round(height * factor)))
    pad_x, pad_y = VGA[0] - resized.shape[1], VGA[1] - resized.shape[0]
    return cv2.copyMakeBorder(
        resized, pad_y // 2, pad_y - pad_y // 2, pad_x // 2, pad_x - pad_x // 2, cv2.BORDER_REFLECT
    )


def count_hits(setting: Setting, photos: list[np.ndarray], points: np.ndarray) -> tuple[int, int]:
    """Return how many photos the labelled face was found in, and how many other boxes came."""
    detector = setting.detector()
    hits, extra = 0, 0
    for gray, landmarks in zip(photos, points):
        detections = find_faces(gray, detector, max_side=setting.max_side)
        found = match_detection(detections, landmarks) is not None
        hits += found
        extra += len(detections) - found
    return hits, extra


def time_settings(chosen: list[Setting], photo_sets: list[list[np.ndarray]], rounds: int):
    """Return, per setting and photo set, the CPU seconds per photo of the fastest round.

    Time is the CPU time of this thread (with one OpenCV thread, all detection work runs on
    it), so other processes on a shared machine inflate it far less than wall time.
    """
    detectors = [setting.detector() for setting in chosen]
    best = np.full((len(chosen), len(photo_sets)), np.inf)
    for _ in range(rounds):
        for i, (setting, detector) in enumerate(zip(chosen, detectors)):
            for j, photos in enumerate(photo_sets):
                start = time.thread_time()
                for gray in photos:
                    find_faces(gray, detector, max_side=setting.max_side)
                best[i, j] = min(best[i, j], (time.thread_time() - start) / len(photos))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landmarks", type=Path, default=YTF68 / "test_frames_keypoints.csv")
    parser.add_argument("--images", type=Path, default=YTF68 / "test")
    parser.add_argument("--full", action="store_true", help="run all 24 cascade/scale/neighbour settings")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (default: 1)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; the fastest counts")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    landmarks = read_landmark_csv(args.landmarks)
    photos = [cv2.imread(str(args.images / name), cv2.IMREAD_GRAYSCALE) for name in landmarks.names]
    readable = [i for i, photo in enumerate(photos) if photo is not None]
    photos = [photos[i] for i in readable]
    points = landmarks.points[readable]
    step = max(1, len(photos) // NUM_VGA_PHOTOS)
    vga = [vga_photo(photo) for photo in photos[::step][:NUM_VGA_PHOTOS]]

    print(f"{len(photos)} photos from {args.landmarks}; {len(vga)} of them at 640x480")
    print(f"{platform.processor() or platform.machine()}, {cv2.getNumThreads()} OpenCV threads, "
          f"OpenCV {cv2.__version__}\n")
    chosen = settings(args.full)
    counts = [count_hits(setting, photos, points) for setting in chosen]
    timed = time_settings(chosen, [photos[::step][:NUM_VGA_PHOTOS], vga], args.rounds)

    print("| cascade | scale factor | min neighbours | min size | max side | labelled face found "
          "| other boxes | CPU ms/photo (ytf68) | CPU ms/photo (640x480) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting, (hits, extra), (ytf_s, vga_s) in zip(chosen, counts, timed):
        print(f"| {setting.cascade} | {setting.scale_factor} | {setting.min_neighbors} | "
              f"{setting.min_size} | {setting.max_side} | {hits}/{len(photos)} "
              f"({100 * hits / len(photos):.1f}%) | {extra} | {1000 * ytf_s:.1f} | "
              f"{1000 * vga_s:.1f} |")


if __name__ == "__main__":
    main()
