"""The header-only upload check the API runs: the full decoder's answers for what a header shows, and
nothing read past it (the model side's full decode judges the pixels)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fashion_clip.errors import FashionClipError
from fashion_clip.images import check_image_header, decode_image


def image_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not an image at all",
        image_bytes(Image.new("RGB", (32, 32)), "ICO"),
        image_bytes(Image.new("1", (7000, 6000)), "PNG"),
        image_bytes(Image.new("1", (15000, 15000)), "PNG"),
    ],
    ids=["empty", "text", "ico", "over-pixel-limit", "decompression-bomb"],
)
def test_header_faults_get_the_decoders_own_answer(data: bytes) -> None:
    with pytest.raises(FashionClipError) as want:
        decode_image(data)
    with pytest.raises(FashionClipError) as got:
        check_image_header(data)
    assert (type(got.value), got.value.message) == (type(want.value), want.value.message)


def test_a_good_image_and_a_truncated_body_pass_the_header_check() -> None:
    assert check_image_header(image_bytes(Image.new("RGB", (64, 64), (200, 30, 40)), "JPEG")) is None
    photo = image_bytes(Image.effect_noise((320, 240), 64).convert("RGB"), "JPEG")
    truncated = photo[: len(photo) // 2]  # cut inside the pixel data, past the header
    check_image_header(truncated)  # the pixels are the model side's to judge ...
    with pytest.raises(FashionClipError) as caught:
        decode_image(truncated)  # ... where the shared decoder refuses them
    assert caught.value.code == "invalid_image"
