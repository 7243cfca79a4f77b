"""Decoding and colour-mode normalisation: every mode a catalog photo comes in becomes RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fashion_clip.errors import InvalidImage, UnsupportedMediaType
from fashion_clip.images import decode_image, load_rgb, to_rgb


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(mode: str, size=(40, 30)) -> Image.Image:
    base = Image.fromarray(
        (np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)).astype(np.uint8)
    )
    if mode == "I;16":
        array = (np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0])).astype("<u2")
        return Image.fromarray(array)  # uint16 -> I;16
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    image = to_rgb(gradient(mode))
    assert image.mode == "RGB"
    assert image.size == (40, 30)


@pytest.mark.parametrize(("mode", "fmt"), [("CMYK", "JPEG"), ("I;16", "PNG"), ("P", "GIF"), ("LA", "PNG")])
def test_modes_survive_a_round_trip_through_their_formats(mode: str, fmt: str) -> None:
    assert load_rgb(encode(gradient(mode), fmt)).mode == "RGB"


def test_sixteen_bit_grey_is_rescaled_not_clipped() -> None:
    rgb = np.asarray(to_rgb(gradient("I;16")))
    assert rgb[0, 0, 0] == 0
    assert rgb[-1, -1, 0] == 255
    assert 100 < rgb[15, 20, 0] < 160


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encode(image, "JPEG", exif=exif.tobytes())
    assert load_rgb(data).size == (20, 40)


def test_not_an_image_is_unsupported_media_type() -> None:
    with pytest.raises(UnsupportedMediaType, match="not an image"):
        decode_image(b"hello, this is text")


def test_truncated_image_is_invalid() -> None:
    data = encode(gradient("RGB", (200, 200)), "JPEG")
    with pytest.raises(InvalidImage, match="could not be decoded"):
        decode_image(data[: len(data) // 2])


def test_empty_bytes_are_invalid() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        decode_image(b"")


def test_decompression_bomb_is_refused_by_pillows_guard() -> None:
    data = encode(Image.new("L", (10_000, 10_000)), "PNG")
    with pytest.raises(InvalidImage, match="too large to decode safely: Image size \\(100000000 pixels\\)"):
        decode_image(data)


def test_image_over_our_pixel_limit_is_refused_before_decoding() -> None:
    data = encode(Image.new("L", (7_000, 7_000)), "PNG")
    with pytest.raises(InvalidImage, match="is 7000x7000 pixels, over the limit of 40000000 pixels"):
        decode_image(data)


def test_unlisted_format_is_unsupported() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PPM")
    with pytest.raises(UnsupportedMediaType, match="Unsupported image format PPM"):
        decode_image(data)


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((4000, 3000), (500, 375)),  # 1/8: a phone photo
        ((1000, 800), (500, 400)),  # 1/2: 1/4 would leave 200 < 224 rows
        ((448, 448), (224, 224)),
        ((447, 900), (447, 900)),  # half of 447 is under 224: full size
    ],
)
def test_a_jpeg_decodes_at_the_smallest_scale_that_covers_min_size(size, decoded) -> None:
    data = encode(gradient("RGB", size), "JPEG")
    assert load_rgb(data, min_size=224).size == decoded
    assert load_rgb(data).size == size


def test_min_size_leaves_other_formats_whole_and_orientation_applies_after_it() -> None:
    assert load_rgb(encode(gradient("RGB", (1000, 800)), "PNG"), min_size=224).size == (1000, 800)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encode(Image.new("RGB", (1000, 600), (10, 20, 30)), "JPEG", exif=exif.tobytes())
    assert load_rgb(data, min_size=224).size == (300, 500)


def test_min_size_judges_the_pixel_limit_on_the_full_size() -> None:
    data = encode(gradient("RGB", (1000, 800)), "JPEG")
    with pytest.raises(InvalidImage) as refused:
        load_rgb(data, max_pixels=500_000, min_size=224)
    assert refused.value.message == "The image is 1000x800 pixels, over the limit of 500000 pixels."


def test_the_scaled_decode_is_the_same_picture_at_the_models_size() -> None:
    """What the model sees (a 224 resize) from the 1/4-scale decode and from the full decode."""
    data = encode(gradient("RGB", (1200, 900)), "JPEG", quality=95)
    full = np.asarray(load_rgb(data).resize((224, 224), Image.BICUBIC), dtype=np.float64)
    scaled = load_rgb(data, min_size=224)
    assert scaled.size == (300, 225)
    fast = np.asarray(scaled.resize((224, 224), Image.BICUBIC), dtype=np.float64)
    assert np.abs(full - fast).mean() < 1.0  # of 255
