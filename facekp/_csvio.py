"""CSV plumbing shared by the Kaggle-format loaders in :mod:`facekp.data` and :mod:`facekp.kaggle`.

It opens a source (a path, bytes or a binary file object) and rejects files that are not CSV
text before parsing. It iterates CSV records with their file line numbers, converts pixel
strings, writes files atomically, and keeps an on-disk cache of parsed arrays.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np

from facekp._atomic import atomic_open
from facekp.errors import DataFormatError
from facekp.keypoints import FACE_SIZE

log = logging.getLogger(__name__)

NUM_PIXELS = FACE_SIZE * FACE_SIZE

# A path, the raw bytes of a file (an upload), or a binary file object opened by the caller.
Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# Bump when the parsed arrays or their meaning change, so older cache entries are ignored.
CACHE_FORMAT_VERSION = 1

# Entries cached for byte sources (uploads) are kept for the most recent ones only.
MAX_CACHED_UPLOADS = 8

# Leading bytes of common binary formats, so the error message can name what the file is.
_MAGIC_NUMBERS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a ZIP archive (extract the CSV file from it first)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip archive (decompress it first)"),
    (b"BZh", "a bzip2 archive (decompress it first)"),
    (b"\xfd7zXZ\x00", "an xz archive (decompress it first)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive (extract the CSV file from it first)"),
    (b"%PDF", "a PDF document"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x80\x02", "a Python pickle"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_BYTES = 4096


class RowValueError(ValueError):
    """A bad cell in one CSV record: ``column`` names it, the message states what was expected."""

    def __init__(self, message: str, column: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass
class OpenedSource:
    """A source ready to read: ``label`` names it in messages and ``size`` is in bytes."""

    label: str
    stream: BinaryIO
    size: int
    _identify: Callable[[], dict[str, object]]

    @functools.cached_property
    def identity(self) -> dict[str, object]:
        """The cache key of the source, computed on first use (hashing bytes takes time)."""
        return self._identify()


@contextlib.contextmanager
def open_source(source: Source, name: str | None = None) -> Iterator[OpenedSource]:
    """Open ``source`` for binary reading and check that it looks like CSV text.

    A path is identified for the cache by its absolute path, size and modification time;
    bytes and file objects by the SHA-256 of their content. ``name`` labels a byte source
    in messages (for example the file name of an upload). Raises :class:`DataFormatError`
    for a missing or unreadable file, an empty file and a binary file.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        with _open_file(path) as stream:
            # Stat the opened file, so the cache key describes the bytes about to be read.
            stat = os.fstat(stream.fileno())
            identity = {
                "path": str(path.resolve()),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
            }
            check_text_head(stream.read(_SNIFF_BYTES), label)
            stream.seek(0)
            yield OpenedSource(label, stream, stat.st_size, lambda: identity)
        return

    if isinstance(source, (bytes, bytearray, memoryview)):
        content = bytes(source)
        label = name or "uploaded file"
    elif hasattr(source, "read"):
        content = source.read()
        if not isinstance(content, bytes):
            raise TypeError("open the file in binary mode ('rb') or pass its bytes")
        label = name or str(getattr(source, "name", "file object"))
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source)}")
    check_text_head(content[:_SNIFF_BYTES], label)

    def identify() -> dict[str, object]:
        return {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}

    yield OpenedSource(label, io.BytesIO(content), len(content), identify)


def _open_file(path: Path) -> BinaryIO:
    if path.is_dir():
        raise DataFormatError("is a folder; pass the path of a CSV file", path=str(path))
    try:
        return path.open("rb")
    except FileNotFoundError as error:
        raise DataFormatError("file not found; check the path", path=str(path)) from error
    except OSError as error:
        raise DataFormatError(f"cannot be opened ({error.strerror})", path=str(path)) from error


def check_text_head(head: bytes, label: str) -> None:
    """Raise :class:`DataFormatError` unless ``head``, a file's first bytes, can start CSV text."""
    if not head:
        raise DataFormatError(
            "the file is empty; expected a CSV file with a header line", path=label
        )
    for magic, description in _MAGIC_NUMBERS:
        if head.startswith(magic):
            raise DataFormatError(f"not a CSV file: it is {description}", path=label)
    if head.startswith(_UTF16_BOMS):
        raise DataFormatError(
            "the file is encoded as UTF-16; save it as UTF-8 (or ASCII) CSV text", path=label
        )
    if b"\x00" in head:
        raise DataFormatError(
            "not a CSV file: it contains NUL bytes, so it is binary, not text", path=label
        )


def read_records(stream: BinaryIO, label: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for each CSV record, the header included.

    ``line_number`` is the 1-based line of the file on which the record ends. Text is read as
    UTF-8, and a byte order mark is skipped. Bytes that are not UTF-8 come through as lone
    surrogates, which :func:`has_invalid_bytes` detects, so one bad record can be skipped
    without losing the rest of the file. Blank lines are skipped. A record that the CSV parser
    cannot split raises :class:`DataFormatError` naming its line.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, strict=True)
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataFormatError(
                f"the record that starts on line {first_line} is not valid CSV ({error}); "
                "check the quotes on that line",
                path=label,
            ) from error
        if fields:
            yield reader.line_num, fields


def read_header(records: Iterator[tuple[int, list[str]]], label: str) -> list[str]:
    """Return the first record of ``records`` as column names with surrounding spaces removed.

    Raises :class:`DataFormatError` when there is no record or a name is not valid UTF-8.
    """
    first = next(records, None)
    if first is None:
        raise DataFormatError("contains only blank lines; expected a CSV header line", path=label)
    header = [cell.strip() for cell in first[1]]
    for cell in header:
        if has_invalid_bytes(cell):
            raise DataFormatError(
                f"the header line is not valid text: {describe_invalid_bytes(cell)}", path=label
            )
    return header


def has_invalid_bytes(text: str) -> bool:
    """Return whether ``text``, decoded by :func:`read_records`, held bytes that are not UTF-8."""
    return any("\udc80" <= character <= "\udcff" for character in text)


def describe_invalid_bytes(text: str) -> str:
    """Describe the first non-UTF-8 byte in ``text`` for an error message."""
    for character in text:
        if "\udc80" <= character <= "\udcff":
            return (
                f"byte 0x{ord(character) - 0xDC00:02x} is not valid UTF-8; save the file as UTF-8"
            )
    return "the text is valid UTF-8"


def parse_pixels(text: str, column: str) -> np.ndarray:
    """Parse a Kaggle pixel string into a ``(96, 96)`` uint8 image.

    The string must hold exactly 9216 integers 0-255, separated by spaces. Raises
    :class:`RowValueError` naming the first bad value or the number of values found.
    """
    # np.fromstring parses all values in C; only a string it rejects is examined in Python.
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        values = None
    if values is not None and values.size == NUM_PIXELS:
        if values.min() >= 0 and values.max() <= 255 and text.strip():
            return values.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)
    raise RowValueError(_describe_bad_pixels(text), column)


def _describe_bad_pixels(text: str) -> str:
    if has_invalid_bytes(text):
        return describe_invalid_bytes(text)
    tokens = text.split()
    for position, token in enumerate(tokens, start=1):
        if not token.isdigit() or not token.isascii() or int(token) > 255:
            excerpt = token if len(token) <= 20 else token[:20] + "..."
            return (
                f"pixel value {position} is {excerpt!r}; expected {NUM_PIXELS} integers 0-255 "
                "separated by spaces"
            )
    return (
        f"found {len(tokens)} pixel values; expected {NUM_PIXELS} "
        f"({FACE_SIZE}x{FACE_SIZE}) integers 0-255 separated by spaces"
    )


# Each gray value 0-255 as up to three ASCII digits plus a trailing space, and which of
# the four bytes are used, so a whole image formats with two array lookups.
_PIXEL_BYTES = np.zeros((256, 4), dtype=np.uint8)
_PIXEL_USED = np.zeros((256, 4), dtype=bool)
for _value in range(256):
    _encoded = f"{_value} ".encode("ascii")
    _PIXEL_BYTES[_value, : len(_encoded)] = np.frombuffer(_encoded, dtype=np.uint8)
    _PIXEL_USED[_value, : len(_encoded)] = True


def format_pixels(image: np.ndarray) -> str:
    """Format a ``(96, 96)`` uint8 image as Kaggle's string of 9216 space-separated values."""
    flat = np.asarray(image, dtype=np.uint8).reshape(-1)
    joined = _PIXEL_BYTES[flat][_PIXEL_USED[flat]]
    return joined[:-1].tobytes().decode("ascii")


def format_coordinate(value: float) -> str:
    """Format one coordinate as the shortest text that reads back as the same float32."""
    if np.isnan(value):
        return ""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def write_atomically(path: str | Path, write: Callable[[TextIO], None]) -> Path:
    """Write a text file through ``write(handle)`` into a temporary file, then rename it.

    The rename replaces ``path`` in one step, so a failed or interrupted write leaves the
    previous file, if any, untouched. Returns the written path.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFormatError("is a folder; pass the path of the CSV file to write", path=str(path))
    with atomic_open(path, "w") as handle:
        write(handle)
    return path


def cache_dir() -> Path:
    """Return the folder for cached arrays.

    It is ``$FACEKP_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/facekp``, else ``~/.cache/facekp``.
    """
    configured = os.environ.get("FACEKP_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facekp"


def _cache_stem(
    kind: str, identity: dict[str, object], options: dict[str, object]
) -> tuple[str, str]:
    """Return the file-name prefix shared by every version of one source, and the full stem.

    The prefix covers the path and the options, so entries of one file loaded with different
    options do not replace each other.
    """
    if "path" in identity:
        owner = json.dumps({"path": identity["path"], "options": options}, sort_keys=True)
        owner_hash = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()
        prefix = f"{kind}-{owner_hash[:16]}-"
    else:
        prefix = f"{kind}-upload-"
    key = json.dumps(
        {"version": CACHE_FORMAT_VERSION, "kind": kind, "identity": identity, "options": options},
        sort_keys=True,
    )
    return prefix, prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def load_cached(
    kind: str,
    identity: dict[str, object],
    options: dict[str, object],
    expected: dict[str, str],
) -> dict[str, np.ndarray] | None:
    """Return the cached arrays for a source, or None when there is no valid entry.

    ``expected`` maps each array name to its dtype kind (``"u"``, ``"f"``, ``"U"`` ...).
    An entry that cannot be read or lacks an expected array is deleted and None is returned,
    so the caller parses the source again.
    """
    _, stem = _cache_stem(kind, identity, options)
    path = cache_dir() / f"{stem}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in expected}
        for name, dtype_kind in expected.items():
            if arrays[name].dtype.kind != dtype_kind:
                raise ValueError(f"array {name!r} has dtype {arrays[name].dtype}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log.warning("ignoring corrupt cache entry %s (%s); parsing the source again", path, error)
        path.unlink(missing_ok=True)
        return None
    log.debug("read %s from cache %s", kind, path)
    return arrays


def store_cached(
    kind: str,
    identity: dict[str, object],
    options: dict[str, object],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write arrays to the cache atomically and drop older entries of the same source.

    A cache that cannot be written (a read-only home folder, a full disk) is logged and
    otherwise ignored, because the parsed data is still returned to the caller.
    """
    prefix, stem = _cache_stem(kind, identity, options)
    folder = cache_dir()
    path = folder / f"{stem}.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _prune_cache(folder, prefix, keep=path)
    except OSError as error:
        log.warning("cannot write the cache entry %s (%s); continuing without it", path, error)
        return
    log.debug("cached %s in %s", kind, path)


def _prune_cache(folder: Path, prefix: str, keep: Path) -> None:
    # Entries of an older version of the same file are stale. For uploads, where no two
    # entries share a file, only the most recent few are kept.
    siblings = sorted(
        (entry for entry in folder.glob(f"{prefix}*.npz") if entry != keep),
        key=_modification_time,
        reverse=True,
    )
    allowed = MAX_CACHED_UPLOADS - 1 if prefix.endswith("-upload-") else 0
    for entry in siblings[allowed:]:
        entry.unlink(missing_ok=True)


def _modification_time(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # removed by another process since the listing
        return 0
