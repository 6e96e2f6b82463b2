"""Checked decoding: conversions to RGB uint8, EXIF orientation, limits, typed one-line errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.errors import ImageDecodeError, ImageTooLargeError
from core.imageio import DecodeLimits, load_image
from tests.hostile import encode, hostile_corpus, png_header_only


def _gradient(width: int = 120, height: int = 80) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2))


def test_rgb_jpeg_png_webp_decode_to_rgb_uint8():
    source = _gradient()
    for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"):
        out = load_image(encode(source, fmt))
        assert out.dtype == np.uint8 and out.shape == (80, 120, 3), fmt
        assert np.abs(out.astype(int) - np.asarray(source, int)).mean() < 6, fmt


def test_greyscale_palette_cmyk_rgba_convert_to_rgb():
    source = _gradient()
    grey = load_image(encode(source.convert("L"), "PNG"))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and grey.shape == (80, 120, 3)
    palette = load_image(encode(source.convert("P"), "PNG"))
    assert palette.shape == (80, 120, 3)
    cmyk = load_image(encode(source.convert("CMYK"), "JPEG"))
    assert np.abs(cmyk.astype(int) - np.asarray(source, int)).mean() < 12
    rgba = source.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited on white
    assert load_image(encode(rgba, "PNG")).min() == 255


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 100 * 100).reshape(100, 100).astype(np.uint16)
    out = load_image(encode(Image.fromarray(values), "PNG"))
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert 120 < out[50, 50, 0] < 136  # mid-grey stays mid-grey


def test_exif_orientation_is_applied():
    source = _gradient(120, 80)
    rotated = source.transpose(Image.Transpose.ROTATE_90)  # stored sideways (80 wide, 120 high)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes ROTATE_90 (which is CCW)
    out = load_image(encode(rotated, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (80, 120, 3)
    assert np.abs(out.astype(int) - np.asarray(source, int)).mean() < 6


def test_animated_gif_and_webp_take_the_first_frame():
    frames = [Image.new("RGB", (96, 96), colour) for colour in ((250, 10, 10), (10, 250, 10), (10, 10, 250))]
    for fmt in ("GIF", "WEBP"):
        buffer = io.BytesIO()
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
        out = load_image(buffer.getvalue())
        assert out[48, 48, 0] > 200 and out[48, 48, 1] < 60, fmt


def test_heic_decodes_when_pillow_heif_is_installed():
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    out = load_image(encode(_gradient(), "HEIF", quality=90))
    assert out.shape == (80, 120, 3)


def test_arrays_and_pil_images_are_accepted():
    array = np.asarray(_gradient())
    assert load_image(array) is not array and np.array_equal(load_image(array), array)
    assert np.array_equal(load_image(_gradient()), array)
    with pytest.raises(ImageDecodeError, match="uint8"):
        load_image(array.astype(np.float32))


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_image(png_header_only(30000, 30000))
    with pytest.raises(ImageTooLargeError, match="9000x9000 pixels"):  # over our 50 MP limit, under Pillow's
        load_image(png_header_only(9000, 9000))
    with pytest.raises(ImageTooLargeError, match="MB"):
        load_image(encode(_gradient(), "PNG"), DecodeLimits(max_bytes=100))


def test_missing_file_and_folder_say_what_to_do(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="not a file"):
        load_image(tmp_path)


def test_hostile_corpus_raises_typed_one_line_errors(tmp_path, portrait_path):
    corpus = hostile_corpus(tmp_path, portrait_path)
    assert len(corpus) >= 30
    decodable = {"jpeg_garbage_body.jpg"}  # decodes to noise: refused later, as "no face"
    for name, path in corpus.items():
        if name in decodable:
            continue
        with pytest.raises(ImageDecodeError) as info:
            load_image(path)
        message = str(info.value)
        assert "\n" not in message and len(message) < 240, name
        assert path.name in message, name


def _photo(width: int, height: int) -> Image.Image:
    """A smooth test photo with some detail (gradients and a few edges), large like a phone's."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 128 + 100 * np.sin(x / 97.0) * np.cos(y / 131.0)
    green = 255 * x / width
    blue = np.where(((x // 400) + (y // 400)) % 2 == 0, 200, 60)
    return Image.fromarray(np.stack([red, green, blue], axis=2).clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize(("orientation", "fmt"), [(1, "JPEG"), (6, "JPEG"), (1, "MPO")])
def test_a_big_jpeg_decodes_at_a_reduced_scale_to_the_same_photo(orientation, fmt):
    """load_photo: a 12 MP JPEG (stored sideways with EXIF 6, or not; or a phone's two-picture MPO)
    comes out at the size and scale of a full decode followed by an area resize, within a grey
    level, but decoded at half scale."""
    import cv2

    from core.imageio import _decode, load_photo

    upright = _photo(3000, 4000)
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    if fmt == "MPO":
        buffer = io.BytesIO()
        stored.save(buffer, "MPO", save_all=True, append_images=[_photo(400, 300)], quality=92)
        data = buffer.getvalue()
        assert Image.open(io.BytesIO(data)).format == "MPO"
    else:
        data = encode(stored, "JPEG", exif=exif.tobytes(), quality=92)

    full = load_image(data)
    assert full.shape == (4000, 3000, 3)
    expected = cv2.resize(full, (1200, 1600), interpolation=cv2.INTER_AREA)
    photo, scale = load_photo(data, max_side=1600)
    assert photo.shape == expected.shape and scale == pytest.approx(0.4)
    difference = np.abs(photo.astype(int) - expected)
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 3
    reduced, size = _decode(data, DecodeLimits(), draft_side=1600)
    assert reduced.shape == (2000, 1500, 3) and size == (3000, 4000)  # libjpeg's 1/2 scale, upright


def test_small_photos_pngs_and_arrays_are_not_reduced():
    from core.imageio import load_photo

    small = encode(_photo(1000, 800), "JPEG", quality=92)
    photo, scale = load_photo(small, max_side=1600)
    assert scale == 1.0 and np.array_equal(photo, load_image(small))
    big_png = encode(_photo(2000, 3400), "PNG")
    photo, scale = load_photo(big_png, max_side=1600)
    assert photo.shape == (1600, 941, 3) and scale == pytest.approx(1600 / 3400)
    array = np.asarray(_photo(1700, 300))
    photo, scale = load_photo(array, max_side=1600)
    assert photo.shape == (282, 1600, 3)


def test_a_truncated_big_jpeg_is_still_a_typed_error():
    from core.imageio import load_photo

    data = encode(_photo(3200, 3200), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError):
        load_photo(data[: len(data) // 3], max_side=1600)
