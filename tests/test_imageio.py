"""Decoding photos: every Pillow mode and format, EXIF orientation, and bad input."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekp.errors import ImageError
from facekp.imageio import MAX_PIXELS, MIN_SIDE, read_gray, read_rgb

PHOTO_NAME = "Adam_Sandler_01.jpg"


@pytest.fixture(scope="module")
def photo(ytf68: Path) -> Image.Image:
    """A real ytf68 test photo as an RGB Pillow image."""
    with Image.open(ytf68 / "test" / PHOTO_NAME) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def photo_gray(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo.convert("L"))


def encode(image: Image.Image, file_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, file_format, **options)
    return buffer.getvalue()


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def stretched(values: np.ndarray) -> np.ndarray:
    """The expected 0..255 gray of a high-bit-depth image: its range mapped linearly."""
    values = values.astype(np.float64)
    return np.rint((values - values.min()) * 255.0 / (values.max() - values.min())).astype(np.uint8)


# Lossless formats, the Pillow mode each stores the image in, and the gray levels each may
# lose (P quantises colour to a 256-entry palette; GIF stores L as a gray palette).
LOSSLESS_CASES = [
    ("L", "PNG", "L", 0.0),
    ("L", "TIFF", "L", 0.0),
    ("L", "BMP", "L", 0.0),
    ("L", "GIF", "P", 0.0),
    ("LA", "PNG", "LA", 0.0),
    ("LA", "TIFF", "LA", 0.0),
    ("RGB", "PNG", "RGB", 0.0),
    ("RGB", "BMP", "RGB", 0.0),
    ("RGB", "TIFF", "RGB", 0.0),
    ("RGBA", "PNG", "RGBA", 0.0),
    ("RGBA", "TIFF", "RGBA", 0.0),
    ("CMYK", "TIFF", "CMYK", 0.0),
    ("P", "PNG", "P", 12.0),
    ("P", "GIF", "P", 12.0),
    ("P", "BMP", "P", 12.0),
    ("PA", "TIFF", "PA", 12.0),
]


@pytest.mark.parametrize(("mode", "file_format", "stored_mode", "tolerance"), LOSSLESS_CASES)
def test_gray_matches_photo_per_mode(
    photo: Image.Image,
    photo_gray: np.ndarray,
    mode: str,
    file_format: str,
    stored_mode: str,
    tolerance: float,
) -> None:
    data = encode(photo.convert(mode), file_format)
    assert Image.open(io.BytesIO(data)).mode == stored_mode

    decoded = read_gray(data)

    assert decoded.pixels.shape == photo_gray.shape
    assert decoded.pixels.dtype == np.uint8
    assert decoded.mode == stored_mode
    assert decoded.format == file_format
    assert mean_difference(decoded.pixels, photo_gray) <= tolerance + 0.5


@pytest.mark.parametrize("file_format", ["JPEG", "WEBP", "AVIF"])
def test_lossy_formats_decode(photo: Image.Image, photo_gray: np.ndarray, file_format: str) -> None:
    decoded = read_gray(encode(photo, file_format, quality=95))

    assert decoded.pixels.shape == photo_gray.shape
    assert mean_difference(decoded.pixels, photo_gray) < 3.0


def test_cmyk_jpeg_decodes(photo: Image.Image, photo_gray: np.ndarray) -> None:
    data = encode(photo.convert("CMYK"), "JPEG", quality=95)

    gray = read_gray(data)
    rgb = read_rgb(data)

    assert gray.mode == "CMYK"
    assert mean_difference(gray.pixels, photo_gray) < 3.0
    assert rgb.pixels.shape == photo_gray.shape + (3,)


def test_bilevel_image_is_black_and_white(photo: Image.Image) -> None:
    decoded = read_gray(encode(photo.convert("1"), "PNG"))

    assert decoded.mode == "1"
    assert set(np.unique(decoded.pixels)) == {0, 255}


def test_rgb_decode_keeps_colour(photo: Image.Image) -> None:
    decoded = read_rgb(encode(photo, "PNG"))

    assert decoded.pixels.shape == (photo.height, photo.width, 3)
    assert np.array_equal(decoded.pixels, np.asarray(photo))


def test_transparent_pixels_become_white(photo: Image.Image, photo_gray: np.ndarray) -> None:
    rgba = photo.convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, dtype=np.uint8)
    alpha[:, :40] = 0
    rgba.putalpha(Image.fromarray(alpha))
    data = encode(rgba, "PNG")

    gray = read_gray(data).pixels
    rgb = read_rgb(data).pixels

    assert (gray[:, :40] == 255).all()
    assert np.array_equal(gray[:, 40:], photo_gray[:, 40:])
    assert (rgb[:, :40] == 255).all()


def test_palette_transparency_becomes_white(photo: Image.Image) -> None:
    palette = photo.convert("P")
    pixels = np.asarray(palette).copy()
    transparent_index = int(pixels[0, 0])
    data = encode(palette, "GIF", transparency=transparent_index)

    gray = read_gray(data).pixels

    assert (gray[pixels == transparent_index] == 255).all()
    assert (gray[pixels != transparent_index] < 255).any()


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_gray_is_stretched_not_clipped(photo_gray: np.ndarray, mode: str) -> None:
    # 12-bit data in a 16-bit file, as many sensors produce: Pillow's own conversion to L
    # would clip almost every pixel to 255.
    values = photo_gray.astype(np.uint16) * 16 + 3
    image = Image.frombytes(mode, (values.shape[1], values.shape[0]), values.astype(
        ">u2" if mode == "I;16B" else "<u2"
    ).tobytes())
    data = encode(image, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode

    decoded = read_gray(data)

    assert decoded.mode == mode
    assert np.array_equal(decoded.pixels, stretched(values))
    assert (decoded.pixels < 255).mean() > 0.5


def test_32_bit_integer_is_stretched(photo_gray: np.ndarray) -> None:
    values = photo_gray.astype(np.int32) * 100_000 - 7_000_000
    data = encode(Image.fromarray(values), "TIFF")

    decoded = read_gray(data)

    assert decoded.mode == "I"
    assert np.array_equal(decoded.pixels, stretched(values))


def test_float_image_is_stretched_ignoring_nan(photo_gray: np.ndarray) -> None:
    values = photo_gray.astype(np.float32) / 255.0 - 0.25
    values[0, 0] = np.nan
    data = encode(Image.fromarray(values), "TIFF")

    decoded = read_gray(data)

    finite = np.isfinite(values)
    expected = np.rint((values[finite] - values[finite].min()) * 255.0 / np.ptp(values[finite]))
    assert decoded.mode == "F"
    assert decoded.pixels[0, 0] == 0
    assert np.abs(decoded.pixels[finite].astype(np.int32) - expected.astype(np.int32)).max() <= 1
    assert decoded.pixels.max() == 255


def test_high_depth_rgb_repeats_gray(photo_gray: np.ndarray) -> None:
    values = photo_gray.astype(np.uint16) * 200
    data = encode(Image.fromarray(values), "PNG")

    rgb = read_rgb(data).pixels

    assert rgb.shape == photo_gray.shape + (3,)
    assert np.array_equal(rgb[:, :, 0], stretched(values))
    assert np.array_equal(rgb[:, :, 0], rgb[:, :, 2])


@pytest.mark.parametrize("file_format", ["GIF", "WEBP", "PNG"])
def test_animation_gives_first_frame(photo: Image.Image, file_format: str) -> None:
    first = photo.convert("L")
    frames = [first, Image.new("L", photo.size, 0), Image.new("L", photo.size, 255)]
    options = {"save_all": True, "append_images": frames[1:], "duration": 100}
    if file_format == "WEBP":
        options["lossless"] = True
    data = encode(frames[0], file_format, **options)

    decoded = read_gray(data)

    assert decoded.frame_count == 3
    assert mean_difference(decoded.pixels, np.asarray(first)) < 1.0


# What a viewer shows for each EXIF orientation value, given the stored pixels.
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(photo_gray: np.ndarray, orientation: int) -> None:
    stored = Image.fromarray(photo_gray)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "PNG", exif=exif.tobytes())

    decoded = read_gray(data)

    expected = ORIENTATIONS[orientation](photo_gray)
    assert decoded.orientation == orientation
    assert (decoded.height, decoded.width) == expected.shape
    assert np.array_equal(decoded.pixels, expected)


def test_exif_orientation_on_jpeg_rgb(photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(photo, "JPEG", quality=95, exif=exif.tobytes())

    gray = read_gray(data)
    rgb = read_rgb(data)

    assert (gray.width, gray.height) == (photo.height, photo.width)
    assert rgb.pixels.shape == (photo.width, photo.height, 3)
    upright = np.rot90(np.asarray(photo.convert("L")), k=-1)
    assert mean_difference(gray.pixels, upright) < 3.0


def test_path_and_bytes_decode_alike(ytf68: Path) -> None:
    path = ytf68 / "test" / PHOTO_NAME

    from_path = read_gray(path)
    from_bytes = read_gray(path.read_bytes())
    from_string = read_gray(str(path))

    assert np.array_equal(from_path.pixels, from_bytes.pixels)
    assert np.array_equal(from_path.pixels, from_string.pixels)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def zero_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A PNG of ``width`` x ``height`` black gray pixels, with pixel data for ``rows`` rows.

    ``rows=None`` writes every row, a valid file; fewer rows make a file that only claims
    its size.
    """
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte 0, then the row's pixels
    count = height if rows is None else rows
    compressed = b"".join(compressor.compress(row) for _ in range(count)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", compressed)
        + png_chunk(b"IEND", b"")
    )


# Pillow itself warns about images over its own limit (about 89 MP) while opening them.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_rejected_before_decoding() -> None:
    side = 12_000  # 144 megapixels in a file of about 140 kB
    data = zero_png(side, side)
    assert len(data) < 1_000_000
    assert side * side > MAX_PIXELS

    started = time.perf_counter()
    with pytest.raises(ImageError, match="megapixels") as caught:
        read_gray(data)
    elapsed = time.perf_counter() - started

    assert "12000x12000" in str(caught.value)
    assert "scale the photo down" in str(caught.value)
    # Decoding 144 MP would take seconds and 144 MB; rejecting the header takes none of that.
    assert elapsed < 1.0


def test_huge_claimed_size_rejected() -> None:
    # Over twice Pillow's own limit, where Image.open itself raises DecompressionBombError.
    data = zero_png(40_000, 40_000, rows=1)

    with pytest.raises(ImageError, match="megapixels") as caught:
        read_gray(data)

    message = str(caught.value)
    assert "the image has 1600 megapixels" in message
    assert f"images over {MAX_PIXELS / 1e6:.0f} megapixels are rejected" in message
    # One limit only: Pillow's own limit and wording stay out of the message.
    assert "exceeds limit" not in message
    assert "178956970" not in message
    assert message.count("megapixels") == 2


BAD_INPUTS = [
    (b"this is a text file, not a photo\n", "not an image in a supported format"),
    (b"", "empty"),
    (b"P5\n40 40\n255\n" + bytes(1600), "not an image in a supported format"),
]


@pytest.mark.parametrize(("data", "message"), BAD_INPUTS)
def test_bad_bytes_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        read_gray(data)


def test_truncated_jpeg_rejected(photo: Image.Image) -> None:
    data = encode(photo, "JPEG", quality=95)

    with pytest.raises(ImageError, match="truncated or corrupt") as caught:
        read_gray(data[: len(data) // 2])

    assert "re-save" in str(caught.value)


def test_truncated_png_rejected(photo: Image.Image) -> None:
    data = encode(photo, "PNG")

    with pytest.raises(ImageError, match="truncated or corrupt"):
        read_rgb(data[: len(data) // 3])


def test_too_small_image_rejected() -> None:
    data = encode(Image.new("L", (MIN_SIDE - 4, 200), 128), "PNG")

    with pytest.raises(ImageError, match=rf"only {MIN_SIDE - 4}x200 pixels"):
        read_gray(data)


def test_unconvertible_mode_rejected() -> None:
    data = encode(Image.new("LAB", (64, 64)), "TIFF")

    with pytest.raises(ImageError, match="colour mode LAB"):
        read_gray(data)


def test_missing_and_empty_files_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")

    with pytest.raises(ImageError, match="does not exist") as missing:
        read_gray(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)") as empty_error:
        read_gray(empty)
    with pytest.raises(ImageError, match="is a directory"):
        read_gray(tmp_path)

    assert str(tmp_path / "missing.jpg") in str(missing.value)
    assert str(empty) in str(empty_error.value)
