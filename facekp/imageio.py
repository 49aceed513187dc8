"""Decode photos from any common format into 8-bit grayscale or RGB arrays, upright.

Every decoder applies the EXIF orientation first, so the arrays and every coordinate
derived from them are in the pixels of the photo as a viewer shows it. Formats: JPEG
(and MPO, the multi-picture JPEG of some cameras), PNG, WebP, AVIF, BMP, TIFF and GIF.
Animated images give their first frame. Bad input raises :class:`facekp.errors.ImageError`
with a message that names the file and the problem.

Conversion to gray, by Pillow mode:

- ``L``, ``1``, ``P`` (any palette), ``RGB``, ``CMYK``, ``YCbCr``: Pillow's conversion
  (ITU-R 601-2 luma for colour). JPEGs in YCbCr are decoded straight to their luma channel,
  which is the same formula and skips the colour conversion.
- Modes with transparency (``LA``, ``PA``, ``RGBA``, ``P`` with a transparent colour):
  composited onto a white background first.
- High bit depths (``I;16`` in either byte order, ``I`` 32-bit integers, ``F`` floats):
  stretched linearly so the lowest finite value becomes 0 and the highest 255. These
  formats have no fixed white level (a 16-bit file may hold 12-bit sensor data), and
  Pillow's own conversion would clip everything above 255 to white.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from facekp.errors import ImageError

log = logging.getLogger(__name__)

# Photos above this many pixels are rejected before decoding. It is above the largest
# default mode of phone cameras (12-50 MP) and below Pillow's own decompression-bomb
# warning (about 89 MP), so a small file that claims a huge size costs no memory.
MAX_PIXELS = 80_000_000

# Images smaller than this on either side cannot hold a face the detector can find
# (its smallest search window is 24 px).
MIN_SIDE = 24

# Formats that Pillow may open. Restricting them keeps Pillow from running plugins with
# side effects for formats no photo comes in (EPS, for example, starts Ghostscript).
# Pillow opens MPO files (multi-picture JPEGs from some cameras) through its JPEG plugin.
FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "BMP", "TIFF", "GIF")

# Pillow reports corrupt or truncated data with any of these exception types.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")

ImageSource = str | os.PathLike | bytes | bytearray | memoryview


@dataclass(frozen=True)
class DecodedImage:
    """An upright photo: ``pixels`` is ``(H, W)`` uint8 gray or ``(H, W, 3)`` uint8 RGB.

    ``format`` and ``mode`` are Pillow's names for the file's format and its original pixel
    mode. ``orientation`` is the EXIF orientation tag that was applied (1 when none).
    ``frame_count`` counts the frames of an animated file, of which only the first is decoded.
    """

    pixels: np.ndarray
    format: str
    mode: str
    orientation: int
    frame_count: int

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def source_name(source: ImageSource) -> str:
    """Return a short name for a source in messages: the path, or ``<N bytes>``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(source)


def read_gray(source: ImageSource) -> DecodedImage:
    """Decode a photo file or its bytes to upright 8-bit grayscale ``(H, W)``.

    Raises :class:`ImageError` for a missing, empty, truncated, corrupt, oversized or
    undersized image, or one in an unsupported format or colour mode.
    """
    with _open(source) as image:
        return _decode(image, source, color=False)


def read_rgb(source: ImageSource) -> DecodedImage:
    """Decode a photo file or its bytes to upright 8-bit RGB ``(H, W, 3)``, for drawing.

    Transparency is composited onto white and gray images are repeated on the three
    channels. Raises :class:`ImageError` like :func:`read_gray`.
    """
    with _open(source) as image:
        return _decode(image, source, color=True)


def _open(source: ImageSource) -> Image.Image:
    """Open ``source`` and read its header only, rejecting it if it is not a usable image."""
    name = source_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(f"{name}: the image data is empty; upload or pass a photo file")
        stream: io.BytesIO | Path = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        stream = Path(source)
        if not stream.is_file():
            what = "is a directory, not a file" if stream.is_dir() else "does not exist"
            raise ImageError(f"{name}: {what}; pass the path of a photo file")
        if stream.stat().st_size == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); pass a photo file")
    else:
        raise TypeError(
            f"expected a path or the image's bytes, got {type(source).__name__}; "
            "pass stream.read() for an open file"
        )

    try:
        image = Image.open(stream, formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image in a supported format ({', '.join(FORMATS)}); "
            "convert it to JPEG or PNG"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name}: {_bomb_message(error)}") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied; check the file's read permission") from None
    except _DECODE_ERRORS as error:
        raise ImageError(f"{name}: the image header is corrupt ({error})") from None

    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise ImageError(
            f"{name}: the image is {width}x{height} pixels; {_too_many_pixels_message()}"
        )
    return image


def _too_many_pixels_message() -> str:
    return (
        f"images over {MAX_PIXELS / 1e6:.0f} megapixels are rejected as a possible "
        "decompression bomb; scale the photo down first"
    )


def _bomb_message(error: Exception) -> str:
    """Describe an image that Pillow rejected as too large, stating only this module's limit.

    Pillow raises before this module can read the size for images over twice its own limit
    (about 179 megapixels). Its message, such as ``Image size (1600000000 pixels) exceeds
    limit of 178956970 pixels``, gives the pixel count, which is kept when it can be read.
    """
    found = re.search(r"\((\d+) pixels\)", str(error))
    if found is None:
        return _too_many_pixels_message()
    megapixels = int(found.group(1)) / 1e6
    return f"the image has {megapixels:.0f} megapixels; {_too_many_pixels_message()}"


def _decode(image: Image.Image, source: ImageSource, color: bool) -> DecodedImage:
    """Decode the first frame of an opened image, upright, as gray or RGB pixels."""
    name = source_name(source)
    original_mode = image.mode
    frame_count = int(getattr(image, "n_frames", 1))

    # A JPEG decoder can emit the luma channel directly, which skips the colour conversion.
    if not color and image.format in ("JPEG", "MPO"):
        image.draft("L", image.size)

    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name}: {_bomb_message(error)}") from None
    except _DECODE_ERRORS as error:
        raise ImageError(
            f"{name}: the image data is truncated or corrupt ({error}); "
            "re-save or re-export the photo"
        ) from None

    orientation = _apply_orientation(image, name)
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{name}: the image is only {width}x{height} pixels; a face needs at least "
            f"{MIN_SIDE} pixels on each side"
        )

    try:
        pixels = _to_rgb(image) if color else _to_gray(image)
    except ValueError as error:
        raise ImageError(
            f"{name}: colour mode {original_mode} cannot be converted ({error}); "
            "save the photo as 8-bit RGB or grayscale"
        ) from None

    return DecodedImage(
        pixels=pixels,
        format=str(image.format or "unknown"),
        mode=original_mode,
        orientation=orientation,
        frame_count=frame_count,
    )


def _apply_orientation(image: Image.Image, name: str) -> int:
    """Transpose a loaded image in place by its EXIF orientation; return the tag applied."""
    try:
        orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except _DECODE_ERRORS as error:
        log.warning("%s: ignoring unreadable EXIF data (%s)", name, error)
        return 1
    if orientation not in range(2, 9):
        return 1
    ImageOps.exif_transpose(image, in_place=True)
    return orientation


def _to_gray(image: Image.Image) -> np.ndarray:
    """Convert a loaded image of any supported mode to ``(H, W)`` uint8."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in _HIGH_DEPTH_MODES:
        return _stretch_to_uint8(np.asarray(image))
    if _has_transparency(image):
        return np.asarray(_composite_on_white(image).convert("L"), dtype=np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a loaded image of any supported mode to ``(H, W, 3)`` uint8."""
    if image.mode in _HIGH_DEPTH_MODES:
        gray = _stretch_to_uint8(np.asarray(image))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if _has_transparency(image):
        return np.asarray(_composite_on_white(image), dtype=np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white; returns an RGB image."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map the finite range of a high-bit-depth ``(H, W)`` array linearly onto 0..255.

    Non-finite values become 0; a constant image becomes all zeros.
    """
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = values[finite].min()
    high = values[finite].max()
    scaled = np.zeros(values.shape, dtype=np.float64)
    if high > low:
        scaled[finite] = (values[finite] - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)
