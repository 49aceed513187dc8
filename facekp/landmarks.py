"""Read 68-point iBUG 300-W landmarks: a CSV of file names and points, or a folder of ``.pts`` files.

Landmarks are ``(N, 68, 2)`` float64 arrays of ``x, y`` pixels of the photo they label, with
pixel centres at integer coordinates and the origin at the top-left pixel. Points are in the
300-W order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp.errors import DataFormatError

log = logging.getLogger(__name__)

NUM_LANDMARKS = 68
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

# Header cells that name the file column of a landmark CSV.
_NAME_HEADERS = {"", "image", "file", "filename", "file_name", "name", "path"}


@dataclass
class LandmarkSet:
    """Photos and their 68 landmarks.

    ``names`` are image file names relative to the image folder, or a ``.pts`` file's stem
    when no image was found beside it. ``points`` is ``(N, 68, 2)`` float64 in photo pixels.
    ``source`` is the file or folder that the landmarks were read from.
    """

    names: list[str]
    points: np.ndarray
    source: Path

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: list[int] | np.ndarray) -> LandmarkSet:
        """Return the rows at ``indices`` as a new set, in that order."""
        indices = [int(i) for i in indices]
        return LandmarkSet(
            names=[self.names[i] for i in indices],
            points=self.points[indices].copy(),
            source=self.source,
        )


def load_landmarks(path: str | Path, *, pts_one_based: bool = True) -> LandmarkSet:
    """Read landmarks from a CSV file, a single ``.pts`` file or a folder of ``.pts`` files.

    With ``pts_one_based``, ``.pts`` coordinates are taken to count pixels from 1, as the
    300-W annotations do, so 1 is subtracted. CSV coordinates are taken as they are.
    """
    path = Path(path)
    if path.is_dir():
        return read_pts_folder(path, one_based=pts_one_based)
    if not path.is_file():
        raise DataFormatError(
            "landmark file or folder not found; pass a CSV file or a folder of .pts files",
            path=str(path),
        )
    if path.suffix.lower() == ".pts":
        points = read_pts_file(path, one_based=pts_one_based)
        return LandmarkSet(names=[path.stem], points=points[None], source=path)
    return read_landmark_csv(path)


def read_landmark_csv(path: str | Path) -> LandmarkSet:
    """Read a CSV of ``file name, x0, y0, ..., x67, y67`` rows, one photo per row.

    The first line is a header when its first cell is empty or names the file column
    (``image``, ``file``, ``name`` ...), or when one of its other cells is not a number.
    Otherwise it is a data row. Errors give the 1-based line number as the row.
    """
    path = Path(path)
    names: list[str] = []
    rows: list[list[float]] = []
    expected_cells = 1 + 2 * NUM_LANDMARKS

    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"not a UTF-8 text file ({error.reason}); expected a CSV of file names and "
            f"{NUM_LANDMARKS} x, y landmark pairs",
            path=str(path),
        ) from error
    except csv.Error as error:
        raise DataFormatError(f"not a valid CSV file ({error})", path=str(path)) from error

    for line_number, cells in enumerate(lines, start=1):
        if not cells or all(not cell.strip() for cell in cells):
            continue
        if line_number == 1 and _is_header(cells):
            if len(cells) != expected_cells:
                raise DataFormatError(
                    f"the header has {len(cells)} columns; expected {expected_cells}: the image "
                    f"file name, then x0, y0, ..., x67, y67",
                    path=str(path),
                    row=line_number,
                )
            continue
        names.append(_parse_name(cells, path, line_number))
        rows.append(_parse_coordinates(cells, expected_cells, path, line_number))

    if not rows:
        raise DataFormatError("contains no landmark rows", path=str(path))
    _reject_duplicates(names, path)
    points = np.asarray(rows, dtype=np.float64).reshape(-1, NUM_LANDMARKS, 2)
    log.debug("read %d landmark rows from %s", len(names), path)
    return LandmarkSet(names=names, points=points, source=path)


def _is_header(cells: list[str]) -> bool:
    if cells[0].strip().lower() in _NAME_HEADERS:
        return True
    return not all(_is_number(cell) for cell in cells[1:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_name(cells: list[str], path: Path, line_number: int) -> str:
    name = cells[0].strip()
    if not name:
        raise DataFormatError(
            "the image file name (first column) is empty", path=str(path), row=line_number
        )
    return name


def _parse_coordinates(
    cells: list[str], expected_cells: int, path: Path, line_number: int
) -> list[float]:
    if len(cells) != expected_cells:
        raise DataFormatError(
            f"has {len(cells)} columns; expected {expected_cells}: the image file name, "
            f"then x0, y0, ..., x67, y67",
            path=str(path),
            row=line_number,
        )

    values = []
    for index, cell in enumerate(cells[1:]):
        column = f"{'xy'[index % 2]}{index // 2}"
        try:
            value = float(cell)
        except ValueError:
            problem = "is empty" if not cell.strip() else f"is {cell!r}, not a number"
            raise DataFormatError(
                f"the landmark coordinate {problem}; every landmark needs x and y in pixels",
                path=str(path),
                row=line_number,
                column=column,
            ) from None
        if not math.isfinite(value):
            raise DataFormatError(
                f"the landmark coordinate is {cell!r}; expected a finite number of pixels",
                path=str(path),
                row=line_number,
                column=column,
            )
        values.append(value)
    return values


def _reject_duplicates(names: list[str], path: Path) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataFormatError(
                f"the image {name!r} is listed more than once; keep one row per image",
                path=str(path),
            )
        seen.add(name)


def read_pts_file(path: str | Path, *, one_based: bool = True) -> np.ndarray:
    """Read one iBUG ``.pts`` file and return its 68 points as ``(68, 2)`` float64.

    The expected layout is ``version: 1``, ``n_points: 68``, ``{``, 68 lines of ``x y`` and
    ``}``. With ``one_based`` the coordinates count pixels from 1 (the 300-W convention) and
    are shifted to count from 0.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"not a text file ({error.reason}); expected an iBUG .pts landmark file", path=str(path)
        ) from error
    except OSError as error:
        raise DataFormatError(f"cannot be read ({error.strerror})", path=str(path)) from error

    # Keep 1-based line numbers for messages, and drop blank lines.
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line]
    reader = _PtsReader(path, lines)

    reader.expect_key("version")
    count_line, count_text = reader.expect_key("n_points")
    if count_text != str(NUM_LANDMARKS):
        raise DataFormatError(
            f"line {count_line}: n_points is {count_text!r}; expected {NUM_LANDMARKS} "
            "(iBUG 300-W 68-point landmarks)",
            path=str(path),
            row=count_line,
        )
    reader.expect_exact("{")
    points = np.array([reader.expect_point() for _ in range(NUM_LANDMARKS)], dtype=np.float64)
    reader.expect_exact("}")
    reader.expect_end()

    if one_based:
        points -= 1.0
    return points


class _PtsReader:
    """Walks the non-blank lines of a ``.pts`` file and raises on the first unexpected one."""

    def __init__(self, path: Path, lines: list[tuple[int, str]]) -> None:
        self.path = path
        self.lines = lines
        self.position = 0

    def _next(self, expected: str) -> tuple[int, str]:
        if self.position >= len(self.lines):
            last = self.lines[-1][0] if self.lines else 0
            raise DataFormatError(
                f"the file ends after line {last}; expected {expected}", path=str(self.path)
            )
        line = self.lines[self.position]
        self.position += 1
        return line

    def _fail(self, number: int, line: str, expected: str) -> DataFormatError:
        return DataFormatError(
            f"line {number} is {line[:40]!r}; expected {expected}", path=str(self.path), row=number
        )

    def expect_key(self, key: str) -> tuple[int, str]:
        number, line = self._next(f"'{key}: ...'")
        name, colon, value = line.partition(":")
        if not colon or name.strip().lower() != key:
            raise self._fail(number, line, f"'{key}: ...'")
        return number, value.strip()

    def expect_exact(self, text: str) -> None:
        number, line = self._next(f"'{text}'")
        if line != text:
            raise self._fail(number, line, f"'{text}'")

    def expect_point(self) -> tuple[float, float]:
        expected = f"a point 'x y' ({NUM_LANDMARKS} of them between '{{' and '}}')"
        number, line = self._next(expected)
        parts = line.split()
        try:
            x, y = (float(part) for part in parts)
        except ValueError:
            raise self._fail(number, line, expected) from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise self._fail(number, line, "finite x and y pixel coordinates")
        return x, y

    def expect_end(self) -> None:
        if self.position < len(self.lines):
            number, line = self.lines[self.position]
            raise self._fail(number, line, "the end of the file after '}'")


def read_pts_folder(folder: str | Path, *, one_based: bool = True) -> LandmarkSet:
    """Read every ``*.pts`` file in ``folder`` (not its subfolders), sorted by name.

    Each name is the file name of the image beside the ``.pts`` file with the same stem: the
    first of ``.jpg``, ``.jpeg``, ``.png`` and ``.bmp`` that exists, in lower or upper case.
    Without such an image the name is the bare stem, and the conversion looks for the image
    in its image folder instead.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".pts" and p.is_file())
    if not files:
        raise DataFormatError(
            "contains no .pts landmark files; pass a folder of iBUG .pts files or a CSV file",
            path=str(folder),
        )

    names = [_image_beside(file) for file in files]
    points = np.stack([read_pts_file(file, one_based=one_based) for file in files])
    log.debug("read %d .pts files from %s", len(files), folder)
    return LandmarkSet(names=names, points=points, source=folder)


def _image_beside(pts_path: Path) -> str:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (suffix, suffix.upper()):
            image = pts_path.with_suffix(candidate)
            if image.is_file():
                return image.name
    return pts_path.stem


def write_pts_file(path: str | Path, points: np.ndarray, *, one_based: bool = True) -> None:
    """Write ``(68, 2)`` photo-pixel ``points`` as an iBUG ``.pts`` file.

    With ``one_based`` (the 300-W convention) 1 is added so the file counts pixels from 1.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected points of shape ({NUM_LANDMARKS}, 2), got {points.shape}")
    offset = 1.0 if one_based else 0.0
    lines = ["version: 1", f"n_points: {NUM_LANDMARKS}", "{"]
    lines += [f"{x + offset:.3f} {y + offset:.3f}" for x, y in points]
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
