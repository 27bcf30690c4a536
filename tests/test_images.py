"""Image loading: every PIL mode, arrays, EXIF, animation and every failure."""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sktip._images import content_key, load_rgb, read_item
from sktip.exceptions import ImageLoadError

# Every test pixel is blown up into an 8x8 block: JPEG codes 8x8 blocks, so a
# uniform block survives compression almost exactly and lossy formats can be
# checked pixel by pixel.
_BLOCK = 8
_ORIENTATION = 0x0112

_PALETTE_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [40, 40, 40]])
_PALETTE_INDICES = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
_GRAY = np.array([[0, 64, 128, 255], [255, 128, 64, 0]], np.uint8)
_ALPHA = np.array([[255, 255, 0, 0], [0, 255, 0, 255]], np.uint8)
# The same four levels at 16 bits: 257 * v maps back onto v exactly.
_GRAY16 = _GRAY.astype(np.uint16) * 257


def _blocks(array):
    return np.repeat(np.repeat(array, _BLOCK, axis=0), _BLOCK, axis=1)


def _rgb(gray):
    return np.repeat(np.asarray(gray, dtype=np.uint8)[..., np.newaxis], 3, axis=2)


def _palette_image(transparency=None):
    indices = _blocks(_PALETTE_INDICES.astype(np.uint8))
    image = Image.frombytes("P", indices.shape[::-1], indices.tobytes())
    image.putpalette(_PALETTE_COLOURS.ravel().tolist())
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def _case_1():
    bits = _GRAY > 100
    return Image.fromarray(_blocks(bits)), "png", _rgb(_blocks(bits * 255))


def _case_l():
    return Image.fromarray(_blocks(_GRAY)), "png", _rgb(_blocks(_GRAY))


def _case_la():
    image = Image.merge(
        "LA", [Image.fromarray(_blocks(_GRAY)), Image.fromarray(_blocks(_ALPHA))]
    )
    expected = np.where(_ALPHA == 255, _GRAY, 255)
    return image, "png", _rgb(_blocks(expected))


def _case_p():
    expected = _PALETTE_COLOURS[_PALETTE_INDICES]
    return _palette_image(), "png", _blocks(expected)


def _case_p_transparency():
    expected = _PALETTE_COLOURS[_PALETTE_INDICES]
    expected[_PALETTE_INDICES == 1] = 255
    return _palette_image(transparency=1), "png", _blocks(expected)


def _case_rgba():
    colours = np.array(
        [
            [[255, 0, 0, 255], [0, 0, 255, 0], [0, 0, 0, 128], [10, 20, 30, 255]],
            [[0, 255, 0, 0], [0, 0, 0, 255], [200, 0, 0, 255], [0, 0, 0, 0]],
        ],
        np.uint8,
    )
    expected = np.array(
        [
            [[255, 0, 0], [255, 255, 255], [127, 127, 127], [10, 20, 30]],
            [[255, 255, 255], [0, 0, 0], [200, 0, 0], [255, 255, 255]],
        ]
    )
    return Image.fromarray(_blocks(colours)), "png", _blocks(expected)


def _case_cmyk():
    inks = np.array(
        [
            [[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 0]],
            [[0, 0, 0, 255], [255, 255, 0, 0], [0, 0, 0, 0], [0, 0, 0, 255]],
        ],
        np.uint8,
    )
    image = Image.frombytes("CMYK", (4 * _BLOCK, 2 * _BLOCK), _blocks(inks).tobytes())
    expected = np.array(
        [
            [[0, 255, 255], [255, 0, 255], [255, 255, 0], [255, 255, 255]],
            [[0, 0, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]],
        ]
    )
    return image, "jpg", _blocks(expected)


def _case_i16():
    return Image.fromarray(_blocks(_GRAY16)), "png", _rgb(_blocks(_GRAY))


def _case_i():
    pixels = _blocks(_GRAY16).astype(np.int32)
    return Image.fromarray(pixels), "tif", _rgb(_blocks(_GRAY))


def _case_i_eight_bit_range():
    # 32-bit pixels that stay within 0-255 already are 8-bit levels.
    pixels = _blocks(_GRAY).astype(np.int32)
    return Image.fromarray(pixels), "tif", _rgb(_blocks(_GRAY))


def _case_f():
    # Levels inside [0, 1] are intensities, not stretched to the full range.
    levels = _GRAY * 0.4
    pixels = _blocks(levels / 255).astype(np.float32)
    return Image.fromarray(pixels), "tif", _rgb(_blocks(np.round(levels)))


_MODE_CASES = {
    "1": (_case_1, 0),
    "L": (_case_l, 0),
    "LA": (_case_la, 0),
    "P": (_case_p, 0),
    "P-transparency": (_case_p_transparency, 0),
    "RGBA": (_case_rgba, 1),
    "CMYK": (_case_cmyk, 3),
    "I;16": (_case_i16, 0),
    "I": (_case_i, 0),
    "I-8bit": (_case_i_eight_bit_range, 0),
    "F": (_case_f, 0),
}


@pytest.mark.parametrize("source", ["file", "memory"])
@pytest.mark.parametrize("case", list(_MODE_CASES))
def test_every_pil_mode_becomes_rgb(case, source, tmp_path):
    build, atol = _MODE_CASES[case]
    image, suffix, expected = build()
    assert image.mode == case.split("-")[0]
    if source == "file":
        item = tmp_path / f"image.{suffix}"
        # Chroma subsampling would bleed colours across blocks in the JPEG.
        options = {"quality": 100, "subsampling": 0} if suffix == "jpg" else {}
        image.save(item, **options)
    else:
        item = image

    loaded = load_rgb(item)

    assert loaded.mode == "RGB"
    assert loaded.size == image.size
    np.testing.assert_allclose(np.asarray(loaded), expected, atol=atol, rtol=0)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    # Pillow's own convert("RGB") clips 16-bit pixels at 255, so that a
    # photograph whose levels sit in the thousands turns white.
    path = tmp_path / "sixteen.png"
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(path)

    pixels = np.asarray(load_rgb(path))

    np.testing.assert_array_equal(pixels, np.full((8, 8, 3), round(30000 / 257)))


def test_float_image_outside_unit_range_is_stretched():
    pixels = np.array([[-1.0, 0.0, 1.0]], np.float32)

    loaded = np.asarray(load_rgb(Image.fromarray(pixels)))

    np.testing.assert_array_equal(loaded[0, :, 0], [0, 128, 255])


def _quadrants():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:10, :20] = (255, 0, 0)
    pixels[:10, 20:] = (0, 255, 0)
    pixels[10:, :20] = (0, 0, 255)
    pixels[10:, 20:] = (255, 255, 255)
    return pixels


def _quadrant_centres(pixels):
    height, width = pixels.shape[:2]
    rows, cols = (height // 4, 3 * height // 4), (width // 4, 3 * width // 4)
    return np.array([[pixels[row, col] for col in cols] for row in rows])


# Orientation 6 asks viewers to turn the stored picture 90 degrees clockwise,
# 8 counter-clockwise; np.rot90 turns counter-clockwise for positive k.
@pytest.mark.parametrize("orientation, turns", [(6, -1), (8, 1), (3, 2)])
@pytest.mark.parametrize("source", ["file", "memory"])
def test_exif_orientation_is_applied(orientation, turns, source, tmp_path):
    stored = _quadrants()
    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    with Image.open(path) as image:
        loaded = np.asarray(load_rgb(path if source == "file" else image))

    upright = np.rot90(stored, turns)
    assert loaded.shape == upright.shape
    np.testing.assert_allclose(
        _quadrant_centres(loaded), _quadrant_centres(upright), atol=8
    )


@pytest.mark.parametrize("source", ["file", "memory"])
def test_animated_gif_gives_first_frame(source, tmp_path):
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    frames = [Image.new("RGB", (8, 8), colour) for colour in colours]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=20)
    with Image.open(path) as image:
        assert image.n_frames == 3
        # A caller may hand over an image left on a later frame.
        image.seek(2)
        loaded = np.asarray(load_rgb(path if source == "file" else image))

    np.testing.assert_array_equal(loaded, np.full((8, 8, 3), colours[0]))


_RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [30, 60, 90]]], np.uint8)


@pytest.mark.parametrize(
    "array, expected",
    [
        pytest.param(_GRAY, _rgb(_GRAY), id="uint8-HxW"),
        pytest.param(_GRAY[..., np.newaxis], _rgb(_GRAY), id="uint8-HxWx1"),
        pytest.param(_RGB, _RGB, id="uint8-HxWx3"),
        pytest.param(
            np.concatenate([_RGB, np.full((2, 2, 1), 255, np.uint8)], axis=2),
            _RGB,
            id="uint8-HxWx4-opaque",
        ),
        pytest.param(
            np.concatenate([_RGB, np.zeros((2, 2, 1), np.uint8)], axis=2),
            np.full((2, 2, 3), 255),
            id="uint8-HxWx4-transparent",
        ),
        pytest.param(_GRAY16, _rgb(_GRAY), id="uint16-HxW"),
        pytest.param(_GRAY16[..., np.newaxis], _rgb(_GRAY), id="uint16-HxWx1"),
        pytest.param(_RGB.astype(np.uint16) * 257, _RGB, id="uint16-HxWx3"),
        pytest.param(
            np.concatenate([_RGB, np.full((2, 2, 1), 255, np.uint8)], axis=2).astype(
                np.uint16
            )
            * 257,
            _RGB,
            id="uint16-HxWx4",
        ),
        pytest.param(_GRAY16.astype(">u2"), _rgb(_GRAY), id="uint16-big-endian"),
        pytest.param(_RGB[:, ::-1], _RGB[:, ::-1], id="uint8-non-contiguous"),
    ],
)
def test_arrays(array, expected):
    loaded = load_rgb(array)

    assert loaded.mode == "RGB"
    assert loaded.size == (array.shape[1], array.shape[0])
    np.testing.assert_array_equal(np.asarray(loaded), expected)


def test_rgba_is_composited_on_white():
    # Black under full transparency, as many encoders store it: dropping the
    # alpha channel would show black instead of the white a viewer shows.
    pixels = np.zeros((1, 3, 4), np.uint8)
    pixels[0, 1, 3] = 128
    pixels[0, 2, 3] = 255

    loaded = np.asarray(load_rgb(Image.fromarray(pixels)))

    np.testing.assert_array_equal(loaded[0, 0], [255, 255, 255])
    np.testing.assert_allclose(loaded[0, 1], [127, 127, 127], atol=1)
    np.testing.assert_array_equal(loaded[0, 2], [0, 0, 0])


@pytest.mark.parametrize("shape", [(1, 1), (1, 4000), (4000, 1)])
@pytest.mark.parametrize("source", ["file", "array"])
def test_tiny_and_extreme_aspect_images(shape, source, tmp_path):
    pixels = np.arange(np.prod(shape), dtype=np.uint32).reshape(shape) % 256
    pixels = pixels.astype(np.uint8)
    item = pixels
    if source == "file":
        item = tmp_path / "strip.png"
        Image.fromarray(pixels).save(item)

    loaded = load_rgb(item)

    assert loaded.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(loaded), _rgb(pixels))


def _missing(tmp_path):
    return tmp_path / "missing.png", "no such file"


def _missing_as_str(tmp_path):
    return str(tmp_path / "missing.png"), "no such file"


def _directory(tmp_path):
    return tmp_path, "is a directory"


def _empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path, "empty file"


def _truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "truncated.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "truncated or corrupt"


def _text_as_jpeg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not the pixels you are looking for\n")
    return path, "not an image file"


_BAD_FILES = {
    "missing-path": _missing,
    "missing-str": _missing_as_str,
    "directory": _directory,
    "zero-bytes": _empty_file,
    "truncated-jpeg": _truncated_jpeg,
    "text-named-jpg": _text_as_jpeg,
}


@pytest.mark.parametrize("case", list(_BAD_FILES))
def test_bad_files_raise_image_load_error(case, tmp_path):
    path, reason = _BAD_FILES[case](tmp_path)

    with pytest.raises(ImageLoadError) as info:
        load_rgb(path, index=7)

    message = str(info.value)
    assert "index 7" in message
    assert str(path) in message
    assert reason in message
    assert info.value.index == 7
    assert info.value.source == str(path)


# Pillow raises above twice its limit and only warns between the limit and
# twice the limit; both must be refused. The picture has 32 * 32 = 1024 pixels.
@pytest.mark.parametrize("limit", [100, 600])
def test_decompression_bomb_is_refused(limit, tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (32, 32)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)

    with pytest.raises(ImageLoadError, match="decompression-bomb") as info:
        load_rgb(path, index=3)

    assert "index 3" in str(info.value)
    assert str(path) in str(info.value)
    assert (info.value.index, info.value.source) == (3, str(path))


def test_decompression_limit_lets_smaller_images_through(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("L", (32, 32)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024)

    assert load_rgb(path).size == (32, 32)


@pytest.mark.parametrize(
    "item, reason",
    [
        pytest.param(np.zeros((4, 4, 3), np.float32), "dtype", id="float32"),
        pytest.param(np.zeros((4, 4), np.float64), "dtype", id="float64"),
        pytest.param(np.zeros((4, 4), np.int16), "dtype", id="int16"),
        pytest.param(np.zeros((4, 4), bool), "dtype", id="bool"),
        pytest.param(np.zeros((4, 4, 2), np.uint8), "shape", id="HxWx2"),
        pytest.param(np.zeros((4, 4, 5), np.uint8), "shape", id="HxWx5"),
        pytest.param(np.zeros(16, np.uint8), "shape", id="1-d"),
        pytest.param(np.zeros((1, 4, 4, 3), np.uint8), "shape", id="4-d"),
        pytest.param(np.zeros((0, 5), np.uint8), "no pixels", id="empty-array"),
        pytest.param(Image.new("RGB", (0, 0)), "no pixels", id="empty-pil"),
        pytest.param(5, "not an image", id="int"),
        pytest.param(None, "not an image", id="None"),
        pytest.param(b"/some/path.png", "not an image", id="bytes"),
    ],
)
def test_bad_objects_raise_image_load_error(item, reason):
    with pytest.raises(ImageLoadError) as info:
        load_rgb(item, index=11)

    message = str(info.value)
    assert "index 11" in message
    assert reason in message
    assert info.value.index == 11
    # The source describes the object, and the message repeats it.
    assert info.value.source
    assert info.value.source in message


def test_image_load_error_survives_pickling():
    # Loader workers send errors back to the caller's process by pickle.
    error = ImageLoadError("image at index 2 ('a.png') is broken", 2, "a.png")

    restored = pickle.loads(pickle.dumps(error))

    assert (str(restored), restored.index, restored.source) == (
        str(error),
        2,
        "a.png",
    )


def _key(item):
    return content_key(read_item(item, 0))


def test_content_key_of_files_follows_bytes_not_paths(tmp_path):
    first = tmp_path / "first.png"
    Image.fromarray(_blocks(_GRAY)).save(first)
    copy = tmp_path / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    changed = tmp_path / "changed.png"
    pixels = _blocks(_GRAY)
    pixels[0, 0] += 1
    Image.fromarray(pixels).save(changed)

    assert _key(first) == _key(copy) == _key(str(copy))
    assert _key(first) != _key(changed)


def test_content_key_of_arrays_follows_pixels():
    pixels = _blocks(_GRAY)
    changed = pixels.copy()
    changed[-1, -1] ^= 1

    assert _key(pixels) == _key(pixels.copy())
    assert _key(pixels[:, ::-1]) == _key(np.ascontiguousarray(pixels[:, ::-1]))
    assert _key(pixels) != _key(changed)
    # Same bytes, other pictures.
    assert _key(pixels) != _key(pixels.reshape(pixels.shape[1], pixels.shape[0]))
    assert _key(pixels) != _key(pixels.view(np.int8))


def test_content_key_of_pil_images_follows_pixels_and_palette():
    image = _palette_image()
    recoloured = _palette_image()
    recoloured.putpalette([0, 0, 0, 255, 255, 255, 9, 9, 9, 1, 2, 3])

    assert _key(image) == _key(_palette_image())
    assert _key(image) != _key(recoloured)
    assert _key(image) != _key(_palette_image(transparency=2))
    assert _key(image.convert("L")) != _key(image.convert("RGB"))


def test_read_item_returns_file_bytes(tmp_path):
    path = tmp_path / "image.png"
    Image.new("L", (2, 2)).save(path)

    assert read_item(Path(path), 0) == path.read_bytes()
